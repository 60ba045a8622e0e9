"""Listeners against the real paper venue, real Redis and real Celery workers.

Every master event is stored exactly once whatever happens to the stream or the
workers; events of accounts that are not masters are not stored. A stream dropped in a
burst, a listener worker killed and two listeners racing for a shard are in the faults
suite (tests/faults/test_listener_faults.py), checked down to the followers' copies.
"""

import itertools

import pytest
from django.db.models import Count

from brokers.models import ListenerShard
from brokers.paper.testing import running_venue
from brokers.services import broker_server_create
from config.redis import get_redis
from copytrading.models import MasterEvent
from copytrading.services.listening import listeners_supervise
from tests.factories import make_account, make_master
from tests.processes import celery_worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def venue():
    with running_venue(ticks_ms=0, api_key="listener-test-key") as v:
        yield v


@pytest.fixture
def setup(venue):
    """A fresh venue state and Redis, a master and a non-master account on the venue."""
    api = venue.client()
    assert api.post("/v1/admin/reset")[0] == 200
    get_redis().flushdb()
    server = broker_server_create(
        name="paper", platform="Paper", base_url=venue.url, credentials={"api_key": venue.api_key}
    )
    logins = []
    for _ in range(2):
        status, account = api.post(
            "/v1/accounts", {"balance": 100000, "currency": "USD", "leverage": 100, "mode": "DEMO"}
        )
        assert status == 201
        logins.append(account["login"])
    master = make_master(account=make_account(server=server, login=logins[0]))
    return {
        "api": api,
        "server": server,
        "master": master,
        "master_login": logins[0],
        "other": logins[1],
    }


def open_orders(api, login, n):
    for _ in range(n):
        status, answer = api.post(
            "/v1/orders",
            {
                "account": login,
                "symbol": "EURUSD",
                "side": "buy",
                "type": "market",
                "volume": 0.01,
                "client_order_id": f"l-{next(_ids)}",
            },
        )
        assert status == 201, answer


def venue_positions(api, login):
    status, positions = api.get(f"/v1/accounts/{login}/positions")
    assert status == 200
    return {str(p["position_id"]) for p in positions}


def stored_opens(master):
    return set(
        MasterEvent.objects.filter(
            account=master.account, event_type="position_opened"
        ).values_list("master_position_id", flat=True)
    )


def assert_stored_once():
    dupes = (
        MasterEvent.objects.values("broker_server", "venue_event_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert list(dupes) == []


def shard_connected():
    return ListenerShard.objects.filter(connected=True).first()


def start_listener():
    listeners_supervise()
    return wait_for(shard_connected, timeout=30, what="the listener to connect")


def test_close_while_disconnected_recovered_from_snapshot(setup):
    api, master = setup["api"], setup["master"]
    with celery_worker(queues="listeners,fanout,default") as worker:
        start_listener()
        open_orders(api, setup["master_login"], 3)
        wait_for(lambda: len(stored_opens(master)) == 3, what="3 opens")
        worker.kill()
    ListenerShard.objects.update(connected=False)
    closed = sorted(venue_positions(api, setup["master_login"]))[0]
    status, answer = api.post(
        f"/v1/positions/{closed}/close",
        {"account": setup["master_login"], "client_order_id": f"close-{closed}"},
    )
    assert status in (200, 201), answer
    # The venue lost its log (as after a restart): the resume point is beyond what it has,
    # so it answers `reset` and the listener must resynchronise from the snapshot.
    ListenerShard.objects.update(last_seq=10**9)
    with celery_worker(queues="listeners,fanout,default"):
        wait_for(
            lambda: listeners_supervise() or shard_connected(),
            timeout=30,
            interval=0.5,
            what="a new listener",
        )
        synthetic = wait_for(
            lambda: MasterEvent.objects.filter(
                synthetic=True, event_type="position_closed", master_position_id=closed
            ).first(),
            timeout=30,
            what="the synthetic close",
        )
    assert synthetic.remaining_volume == 0
    assert synthetic.symbol == "EURUSD"
    assert ListenerShard.objects.get().resyncs >= 1
    # The two positions still open were known already: no synthetic opens for them.
    assert not MasterEvent.objects.filter(synthetic=True, event_type="position_opened").exists()


def test_sharded_listener_picks_up_a_new_master(setup, settings):
    """With several shards per server, a shard streams only its masters; a master created
    while it runs is added by reconnecting, and its trades are stored."""
    settings.LISTENER_SHARDS_PER_SERVER = 2
    api, first = setup["api"], setup["master"]
    with celery_worker(
        queues="listeners,fanout,default", concurrency=3, LISTENER_SHARDS_PER_SERVER="2"
    ):
        listeners_supervise()
        wait_for(
            lambda: ListenerShard.objects.filter(
                shard_count=2, shard_index=setup["master_login"] % 2, connected=True
            ).exists(),
            timeout=30,
            what="the first master's shard connected",
        )
        # A second master on the same shard (same login parity) as the first.
        login = setup["master_login"] + 2
        status, _ = api.post(
            "/v1/accounts",
            {"login": login, "balance": 100000, "currency": "USD", "leverage": 100, "mode": "DEMO"},
        )
        assert status == 201
        second = make_master(account=make_account(server=setup["server"], login=login))
        # Wait until the shard has resubscribed with the new master before it trades.
        from brokers.models import ListenerShard as Shard

        shard = Shard.objects.get(shard_count=2, shard_index=login % 2)
        wait_for(
            lambda: Shard.objects.get(pk=shard.pk).reconnects >= 1, timeout=15, what="resubscribe"
        )
        open_orders(api, login, 3)
        open_orders(api, setup["master_login"], 2)
        wait_for(lambda: len(stored_opens(second)) == 3, timeout=30, what="the new master's opens")
        wait_for(lambda: len(stored_opens(first)) == 2, timeout=30, what="the first master's opens")
    assert_stored_once()
