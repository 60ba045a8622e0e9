"""Recording master events: once per venue event, masters only, an outbox the sweeper drains."""

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from brokers.gateways.rest_ws import parse_stream_event
from brokers.models import ListenerShard
from config.redis import get_redis
from copytrading.listeners import open_positions_from_events, snapshot_diff
from copytrading.models import MasterEvent
from copytrading.services.events import master_events_record, master_events_sweep
from copytrading.services.fanout import fanout_events
from tests.factories import make_account, make_master

pytestmark = pytest.mark.django_db


def opened(seq, login, position_id, volume="0.10"):
    return parse_stream_event(
        {
            "seq": seq,
            "type": "position_opened",
            "account": login,
            "ts": time.time() * 1000,
            "data": {
                "position_id": position_id,
                "account": login,
                "symbol": "EURUSD",
                "side": "buy",
                "volume": volume,
                "open_price": 1.1,
                "open_ts": time.time() * 1000,
                "sl": None,
                "tp": 1.2,
                "profit": 0,
                "client_order_id": None,
                "comment": "",
            },
        }
    )


@pytest.fixture
def shard_and_master():
    master = make_master()
    shard = ListenerShard.objects.create(broker_server=master.account.broker_server)
    get_redis().flushdb()
    return shard, master


def record(shard, master, events):
    return master_events_record(
        shard=shard,
        events=events,
        accounts_by_login={master.account.login: master.account_id},
        received_at=timezone.now(),
    )


def test_replayed_events_stored_once_and_resume_point_never_moves_back(shard_and_master):
    shard, master = shard_and_master
    login = master.account.login
    events = [opened(s, login, 500 + s) for s in (5, 6, 7)]
    assert len(record(shard, master, events)) == 3
    assert record(shard, master, events[:2]) == []  # a replay after reconnect
    assert MasterEvent.objects.count() == 3
    shard.refresh_from_db()
    assert shard.last_seq == 7
    stale = ListenerShard.objects.get(pk=shard.pk)
    stale.last_seq = 2
    record(stale, master, [opened(3, login, 503)])
    shard.refresh_from_db()
    assert shard.last_seq == 7


def test_events_of_other_accounts_are_not_stored_but_move_the_resume_point(shard_and_master):
    shard, master = shard_and_master
    other = make_account(server=master.account.broker_server)
    assert record(shard, master, [opened(9, other.login, 900)]) == []
    assert not MasterEvent.objects.exists()
    shard.refresh_from_db()
    assert shard.last_seq == 9


def test_normalized_fields_and_raw_payload_kept(shard_and_master):
    shard, master = shard_and_master
    record(shard, master, [opened(11, master.account.login, 777, volume="0.37")])
    event = MasterEvent.objects.get()
    assert event.master_position_id == "777"
    assert str(event.volume) == "0.3700"
    assert event.tp is not None
    assert event.sl is None
    assert event.raw["data"]["position_id"] == 777
    assert event.fanout_state == "pending"


def test_sweeper_reenqueues_only_old_pending_events(shard_and_master):
    shard, master = shard_and_master
    record(shard, master, [opened(s, master.account.login, s) for s in (1, 2)])
    redis = get_redis()
    redis.delete("fanout")  # the enqueue was lost (a process died after commit)
    assert master_events_sweep() == 0  # still within the grace period
    MasterEvent.objects.update(stored_at=timezone.now() - timedelta(seconds=10))
    assert master_events_sweep() == 2
    assert redis.llen("fanout") == 1  # one task carrying both ids
    ids = list(MasterEvent.objects.values_list("id", flat=True))
    assert fanout_events(event_ids=ids) == 2
    assert fanout_events(event_ids=ids) == 0  # a second delivery does nothing
    assert master_events_sweep() == 0


def test_snapshot_diff_finds_what_happened_while_away(shard_and_master):
    from decimal import Decimal

    from brokers.gateways.types import Position, Side

    shard, master = shard_and_master
    login = master.account.login
    record(shard, master, [opened(1, login, 1), opened(2, login, 2), opened(3, login, 3)])
    recorded = open_positions_from_events(master.account_id)
    assert set(recorded) == {"1", "2", "3"}
    now = timezone.now()
    live = [
        Position(
            "2",
            login,
            "EURUSD",
            Side.BUY,
            Decimal("0.04"),
            Decimal("1.1"),
            now,
            None,
            Decimal("1.2"),
        ),
        Position(
            "3",
            login,
            "EURUSD",
            Side.BUY,
            Decimal("0.10"),
            Decimal("1.1"),
            now,
            Decimal("1.0"),
            Decimal("1.2"),
        ),
        Position("4", login, "GBPUSD", Side.SELL, Decimal("0.20"), Decimal("1.3"), now),
    ]
    events = snapshot_diff(account_id=master.account_id, recorded=recorded, positions=live, now=now)
    kinds = sorted((e.fields["master_position_id"], e.event_type) for e in events)
    assert kinds == [
        ("1", "position_closed"),
        ("2", "position_closed"),
        ("3", "position_modified"),
        ("4", "position_opened"),
    ]
    partial = next(e for e in events if e.fields["master_position_id"] == "2")
    assert partial.fields["remaining_volume"] == Decimal("0.04")
    assert partial.fields["volume"] == Decimal("0.06")
    again = snapshot_diff(account_id=master.account_id, recorded=recorded, positions=live, now=now)
    assert [e.venue_event_id for e in again] == [e.venue_event_id for e in events]


def test_sweeper_queues_one_task_per_master_for_its_whole_backlog(shard_and_master):
    shard, master = shard_and_master
    other = make_master(account=make_account(server=master.account.broker_server))
    logins = {master.account.login: master.account_id, other.account.login: other.account_id}
    events = [opened(s, master.account.login, s) for s in range(1, 251)]
    events += [opened(s, other.account.login, s) for s in range(251, 261)]
    master_events_record(
        shard=shard, events=events, accounts_by_login=logins, received_at=timezone.now()
    )
    redis = get_redis()
    redis.delete("fanout")
    MasterEvent.objects.update(stored_at=timezone.now() - timedelta(seconds=10))
    assert master_events_sweep() == 260
    assert redis.llen("fanout") == 2  # one per master, not one per event (or per 100)
    ids = [MasterEvent.objects.filter(account_id=a).latest("id").id for a in logins.values()]
    queued = [json.loads(m)["headers"]["argsrepr"] for m in redis.lrange("fanout", 0, -1)]
    assert sorted(queued) == sorted(f"([{i}],)" for i in ids)  # each master's newest event
    assert fanout_events(event_ids=[ids[0]]) == 250  # the master's whole backlog, in order
    assert fanout_events(event_ids=[ids[1]]) == 10
    assert not MasterEvent.objects.exclude(fanout_state="done").exists()


def test_a_fanout_task_clears_the_masters_later_pending_events_too(shard_and_master):
    """Under a backlog, each queued task carries the event stored with it; the first to run
    clears every pending event of the master (in order), the others then find nothing."""
    shard, master = shard_and_master
    record(shard, master, [opened(s, master.account.login, s) for s in (1, 2, 3)])
    first, *_rest = MasterEvent.objects.order_by("id").values_list("id", flat=True)
    assert fanout_events(event_ids=[first]) == 3
    assert fanout_events(event_ids=list(_rest)) == 0
