"""Live positions end to end: positions_push over the real channels_redis layer, to a real
uvicorn serving PositionsConsumer over a real socket, read by an aiohttp WebSocket client
signed in with a real session cookie."""

import json
import socket
import time
import uuid
from decimal import Decimal

import pytest
from channels.layers import get_channel_layer
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.utils import timezone
from model_bakery import baker

from copytrading.choices import TradeLinkStatus
from copytrading.models import CopyMaster, CopySubscription, TradeLink
from copytrading.selectors import trade_links_open_for_user
from copytrading.services import live
from copytrading.services.live import (
    PUSH_TIMEOUT_SECONDS,
    STAFF_GROUP,
    follower_group,
    link_payload,
    master_group,
    positions_push,
)
from tests.asgi import HandshakeRefused, asgi_server, prefixed_channel_layers, websocket
from tests.factories import make_account, make_customer, make_follower, make_master, make_staff
from tests.factories import make_subscription as _make_subscription

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

WS_PATH = "/ws/positions/"

# Other test runs share the test Redis, and their account and link ids are ours too (every
# fresh test database starts at 1): our own channel layer prefix keeps their pushes out.
CHANNELS_PREFIX = f"asgi-live-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def own_channel_layer():
    with override_settings(CHANNEL_LAYERS=prefixed_channel_layers(CHANNELS_PREFIX)):
        yield


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    # The server only needs the test database's name (set up by django_db_setup).
    with asgi_server(channels_prefix=CHANNELS_PREFIX) as s:
        yield s


def session_for(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def live_staff():
    user = make_staff()
    user.user_permissions.add(
        Permission.objects.get(
            content_type__app_label="copytrading", codename="view_copysubscription"
        )
    )
    return user


def subscription(*, follower_account, master_account) -> CopySubscription:
    master = CopyMaster.objects.filter(account=master_account).first()
    return _make_subscription(
        follower=make_follower(account=follower_account),
        master=master or make_master(account=master_account),
    )


_position = iter(range(1, 10**9))


def make_link(sub: CopySubscription, status: str = TradeLinkStatus.OPEN, **kwargs) -> TradeLink:
    n = next(_position)
    values = {
        "subscription": sub,
        "master_account": sub.master_account,
        "follower_account": sub.follower_account,
        "master_position_id": f"M{n}",
        "follower_position_id": f"F{n}" if status != TradeLinkStatus.OPENING else "",
        "symbol": "EURUSD",
        "follower_symbol": "EURUSD",
        "side": "buy",
        "master_volume": Decimal("1.00"),
        "follower_volume": Decimal("0.50"),
        "open_price": Decimal("1.08512"),
        "status": status,
        "opened_at": timezone.now(),
        "profit": Decimal("0"),
    }
    values.update(kwargs)
    return TradeLink.objects.create(**values)


def close_link(link: TradeLink, profit: str) -> None:
    # Stands in for the copy engine's close (no service owns links yet).
    link.status = TradeLinkStatus.CLOSED
    link.profit = Decimal(profit)
    link.closed_at = timezone.now()
    link.save()


def is_position(link_id: int):
    return lambda f: f["type"] == "position" and f["link"]["id"] == link_id


def test_group_names_are_valid_channels_group_names():
    layer = get_channel_layer()
    for name in (follower_group(123456789012), master_group(1), STAFF_GROUP):
        assert layer.require_valid_group_name(name)
    assert follower_group(7) != master_group(7)


def test_link_payload_is_the_client_api_trade_link_and_json_safe():
    sub = _make_subscription()
    link = make_link(sub, TradeLinkStatus.OPENING, profit=Decimal("12.5"))
    link = TradeLink.objects.select_related("master_account", "follower_account").get(pk=link.pk)
    payload = json.loads(json.dumps(link_payload(link)))
    assert payload["status"] == "open"
    assert payload["state"] == "opening"
    assert payload["master_login"] == sub.master_account.login
    assert payload["follower_login"] == sub.follower_account.login
    assert payload["subscription_id"] == sub.id
    assert payload["master_volume"] == "1.0000"
    assert payload["open_price"] == "1.08512000"
    assert payload["profit"] == "12.5000"
    assert payload["closed_at"] is None
    assert payload["opened_at"] == link.opened_at.isoformat()
    spec = {
        "id", "subscription_id", "master_login", "follower_login", "master_position_id",
        "follower_position_id", "symbol", "follower_symbol", "side", "master_volume",
        "follower_volume", "open_price", "status", "reason", "opened_at", "closed_at", "profit",
    }  # fmt: skip
    assert spec <= set(payload)


def test_push_reads_links_in_one_query(django_assert_num_queries):
    sub = _make_subscription()
    ids = [make_link(sub).id for _ in range(5)]
    with django_assert_num_queries(1):
        assert positions_push(link_ids=ids + [ids[0], 10**12]) == 5


def test_customer_gets_updates_of_its_own_accounts_only(server):
    master_owner = make_customer()
    master_account = make_account(customer=master_owner)
    alice, bob = make_customer(), make_customer()
    alice_account = make_account(customer=alice)
    # Bob's account has Alice's login on another broker: logins are unique per server only.
    bob_account = make_account(customer=bob, login=alice_account.login)
    alice_link = make_link(
        subscription(follower_account=alice_account, master_account=master_account)
    )
    bob_link = make_link(subscription(follower_account=bob_account, master_account=master_account))

    with (
        websocket(server, WS_PATH, session=session_for(alice.user)) as alice_ws,
        websocket(server, WS_PATH, session=session_for(master_owner.user)) as master_ws,
    ):
        # The snapshot comes after the groups are joined: from here on nothing is missed.
        alice_ws.wait_frame(lambda f: f["type"] == "snapshot")
        master_ws.wait_frame(lambda f: f["type"] == "snapshot")

        close_link(bob_link, "-3.25")
        assert positions_push(link_ids=[bob_link.id]) == 1
        close_link(alice_link, "7.50")
        assert positions_push(link_ids=[alice_link.id]) == 1

        got = alice_ws.wait_frame(is_position(alice_link.id))
        assert got["link"]["status"] == "closed"
        assert got["link"]["profit"] == "7.5000"
        # Bob's update was sent first; had it leaked, it would be here before the marker.
        before = alice_ws.frames_before(is_position(alice_link.id))
        assert [f["type"] for f in before] == ["snapshot"]
        assert bob_link.id not in {link["id"] for link in before[0]["links"]}

        # The master's owner sees both copies of its trades.
        assert master_ws.wait_frame(is_position(bob_link.id))["link"]["profit"] == "-3.2500"
        master_ws.wait_frame(is_position(alice_link.id))


def test_customer_owning_both_ends_gets_each_update_once(server):
    owner = make_customer()
    sub = subscription(
        follower_account=make_account(customer=owner), master_account=make_account(customer=owner)
    )
    link, marker = make_link(sub), make_link(sub)
    with websocket(server, WS_PATH, session=session_for(owner.user)) as ws:
        ws.wait_frame(lambda f: f["type"] == "snapshot")
        positions_push(link_ids=[link.id])
        positions_push(link_ids=[marker.id])
        ws.wait_frame(is_position(marker.id))
        before = ws.frames_before(is_position(marker.id))
        assert [f["link"]["id"] for f in before if f["type"] == "position"] == [link.id]


def test_staff_get_one_batched_frame_per_push(server):
    staff = live_staff()
    subs = [_make_subscription() for _ in range(3)]
    links = [make_link(sub) for sub in subs for _ in range(2)]
    ids = {link.id for link in links}
    with websocket(server, WS_PATH, session=session_for(staff)) as ws:
        ws.wait_frame(lambda f: f["type"] == "snapshot")
        assert positions_push(link_ids=sorted(ids)) == len(ids)
        frame = ws.wait_frame(lambda f: f["type"] == "positions")
        assert {link["id"] for link in frame["links"]} == ids
        assert [f["type"] for f in ws.snapshot()] == ["snapshot", "positions"]


@pytest.mark.parametrize("who", ["anonymous", "user_without_customer", "staff_without_permission"])
def test_connection_refused_without_a_live_scope(server, who):
    session = None
    if who == "user_without_customer":
        session = session_for(baker.make("auth.User", username="nobody"))
    elif who == "staff_without_permission":
        session = session_for(make_staff())
    # Closed before accept (4401), which the server answers as a refused handshake.
    with pytest.raises(HandshakeRefused) as refused, websocket(server, WS_PATH, session=session):
        pass
    assert refused.value.status == 403


def test_snapshot_lists_the_open_links_the_user_may_see(server):
    alice, bob = make_customer(), make_customer()
    alice_sub = subscription(
        follower_account=make_account(customer=alice), master_account=make_account()
    )
    bob_sub = subscription(
        follower_account=make_account(customer=bob), master_account=make_account()
    )
    visible = {
        make_link(alice_sub, TradeLinkStatus.OPEN).id,
        make_link(alice_sub, TradeLinkStatus.OPENING).id,
        make_link(alice_sub, TradeLinkStatus.PENDING, master_order_id="O1").id,
    }
    closed = make_link(alice_sub, TradeLinkStatus.CLOSED, closed_at=timezone.now()).id
    bobs = make_link(bob_sub).id

    with websocket(server, WS_PATH, session=session_for(alice.user)) as ws:
        snapshot = ws.wait_frame(lambda f: f["type"] == "snapshot")
    assert {link["id"] for link in snapshot["links"]} == visible
    assert {link["status"] for link in snapshot["links"]} == {"open"}
    assert {link["state"] for link in snapshot["links"]} == {"open", "opening", "pending"}

    with websocket(server, WS_PATH, session=session_for(live_staff())) as ws:
        snapshot = ws.wait_frame(lambda f: f["type"] == "snapshot")
    staff_ids = {link["id"] for link in snapshot["links"]}
    assert visible | {bobs} <= staff_ids
    assert closed not in staff_ids


def test_selector_scopes_open_links(django_assert_num_queries):
    alice = make_customer()
    sub = subscription(follower_account=make_account(customer=alice), master_account=make_account())
    mine = [make_link(sub) for _ in range(3)]
    make_link(_make_subscription())
    links = trade_links_open_for_user(alice.user, limit=2)
    assert [link.id for link in links] == [mine[2].id, mine[1].id]
    assert trade_links_open_for_user(baker.make("auth.User", username="stranger")) == []


def test_push_with_the_channel_layer_down_returns_zero_without_raising(caplog):
    link = make_link(_make_subscription())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    dead = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{dead_port}/0"]},
        }
    }
    with override_settings(CHANNEL_LAYERS=dead):
        started = time.monotonic()
        assert positions_push(link_ids=[link.id]) == 0
        took = time.monotonic() - started
    assert took < PUSH_TIMEOUT_SECONDS + 2
    assert "channel layer unavailable" in caplog.text


def test_push_to_a_channel_layer_that_hangs_gives_up_and_returns_zero(monkeypatch, caplog):
    link = make_link(_make_subscription())
    monkeypatch.setattr(live, "PUSH_TIMEOUT_SECONDS", 0.5)
    # Listens (the kernel completes the TCP handshake) but never answers a command.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        hung = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [f"redis://127.0.0.1:{port}/0"]},
            }
        }
        with override_settings(CHANNEL_LAYERS=hung):
            started = time.monotonic()
            assert positions_push(link_ids=[link.id]) == 0
            took = time.monotonic() - started
    assert took < 5
    assert "channel layer unavailable" in caplog.text
