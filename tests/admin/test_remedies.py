"""Staff remedies: instructions like reconciliation's repairs, an audit row each, and a
double click that sends nothing twice."""

from decimal import Decimal

import pytest
from django.utils import timezone

from brokers.gateways.types import Position, Side
from copytrading.errors import CopyTradingError
from copytrading.models import CopyInstruction, StaffRemedy, TradeLink
from copytrading.services import remedies
from tests.admin.support import copied_trade
from tests.factories import make_staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch):
    """Instruction ids queued for execution (after commit), instead of Celery."""
    sent: list[int] = []
    monkeypatch.setattr(
        "copytrading.services.fanout.enqueue_execution",
        lambda ready, **kw: sent.extend(i for ids in ready.values() for i in ids),
    )
    return sent


@pytest.fixture
def venue(monkeypatch):
    """The follower venue's open positions, as remedies read them."""
    held: list[Position] = []
    monkeypatch.setattr(remedies, "venue_positions", lambda account: list(held))
    return held


def position(pid, *, volume="0.3", side="buy", symbol="EURUSD"):
    return Position(
        position_id=pid,
        account=1,
        symbol=symbol,
        side=Side(side),
        volume=Decimal(volume),
        open_price=Decimal("1.1"),
        open_ts=timezone.now(),
    )


def test_force_close_link_queues_one_close_and_records_who_and_why(
    trade, queued, django_capture_on_commit_callbacks
):
    actor = make_staff(group="Operations")
    with django_capture_on_commit_callbacks(execute=True):
        result = remedies.force_close_link(link=trade.link, reason="customer request", actor=actor)
    inst = CopyInstruction.objects.get(pk=result.instruction_id)
    assert (inst.origin, inst.action, inst.status) == ("staff", "close", "ready")
    assert inst.client_order_id == f"sf{trade.link.pk}n0"
    assert inst.decision["follower_position_ids"] == [trade.link.follower_position_id]
    assert inst.inputs == {
        "remedy": "force_close",
        "actor": actor.username,
        "reason": "customer request",
    }
    assert queued == [inst.pk]
    remedy = StaffRemedy.objects.get()
    assert (remedy.actor, remedy.reason, remedy.instruction_id) == (
        actor,
        "customer request",
        inst.pk,
    )


def test_double_click_sends_nothing_twice(trade, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        remedies.force_close_link(link=trade.link, reason="one", actor=None)
        second = remedies.force_close_link(link=trade.link, reason="two", actor=None)
    assert second.instruction_id is None
    assert "already under way" in second.message
    assert CopyInstruction.objects.filter(origin="staff").count() == 1
    assert len(queued) == 1
    # Once the first has finished (say the venue refused it), a new click gets a new id.
    CopyInstruction.objects.filter(origin="staff").update(status="failed")
    third = remedies.force_close_link(link=trade.link, reason="three", actor=None)
    assert CopyInstruction.objects.get(pk=third.instruction_id).client_order_id.endswith("n1")


def test_force_close_needs_a_reason_and_an_open_link(trade):
    with pytest.raises(CopyTradingError):
        remedies.force_close_link(link=trade.link, reason=" ", actor=None)
    TradeLink.objects.filter(pk=trade.link.pk).update(status="closed")
    with pytest.raises(CopyTradingError, match="NOTHING_TO_CLOSE"):
        remedies.force_close_link(link=trade.link, reason="x", actor=None)


def test_force_close_subscription_closes_every_open_copy(trade, queued):
    copied_trade(trade.sub)
    results = remedies.force_close_subscription(subscription=trade.sub, reason="x", actor=None)
    assert len(results) == 2
    assert CopyInstruction.objects.filter(origin="staff", action="close").count() == 2


def test_drift_close_of_a_position_nobody_opened(trade, venue, queued):
    venue.append(position("manual7"))
    account = trade.sub.follower_account
    first = remedies.drift_close(account=account, position_id="manual7", reason="x", actor=None)
    inst = CopyInstruction.objects.get(pk=first.instruction_id)
    assert inst.client_order_id == f"sfa{account.pk}pmanual7n0"
    assert inst.trade_link_id is None
    assert inst.volume == Decimal("0.3")
    again = remedies.drift_close(account=account, position_id="manual7", reason="x", actor=None)
    assert again.instruction_id is None
    with pytest.raises(CopyTradingError, match="POSITION_NOT_FOUND"):
        remedies.drift_close(account=account, position_id="gone", reason="x", actor=None)


def test_drift_close_of_an_orphan_goes_through_its_link(trade, venue, queued):
    venue.append(position(trade.link.follower_position_id))
    result = remedies.drift_close(
        account=trade.sub.follower_account,
        position_id=trade.link.follower_position_id,
        reason="master closed",
        actor=None,
    )
    inst = CopyInstruction.objects.get(pk=result.instruction_id)
    assert inst.trade_link_id == trade.link.pk
    assert inst.reason == "STAFF_DRIFT_CLOSE"


def test_drift_adopt_links_the_position_to_the_master_position(trade, venue):
    TradeLink.objects.filter(pk=trade.link.pk).update(status="closed", follower_position_id="")
    venue.append(position("hand9", volume="0.4"))
    result = remedies.drift_adopt(
        account=trade.sub.follower_account,
        position_id="hand9",
        subscription=trade.sub,
        master_position_id=trade.event.master_position_id,
        reason="customer re-opened by hand",
        actor=None,
    )
    link = TradeLink.objects.get(pk=trade.link.pk)
    assert (link.status, link.follower_position_id, link.follower_volume) == (
        "open",
        "hand9",
        Decimal("0.4"),
    )
    assert result.remedy.trade_link_id == link.pk
    assert result.instruction_id is None


def test_drift_adopt_refuses_a_master_position_that_has_its_copy(trade, venue):
    venue.append(position("hand9"))
    with pytest.raises(CopyTradingError, match="ALREADY_LINKED"):
        remedies.drift_adopt(
            account=trade.sub.follower_account,
            position_id="hand9",
            subscription=trade.sub,
            master_position_id=trade.event.master_position_id,
            reason="x",
            actor=None,
        )


def test_drift_reopen_opens_the_copy_again_once(trade, queued):
    TradeLink.objects.filter(pk=trade.link.pk).update(status="closed", reason="closed at the venue")
    result = remedies.drift_reopen(
        subscription=trade.sub,
        master_position_id=trade.event.master_position_id,
        reason="x",
        actor=None,
    )
    inst = CopyInstruction.objects.get(pk=result.instruction_id)
    assert (inst.action, inst.volume, inst.trade_link_id) == ("open", Decimal("0.5"), trade.link.pk)
    assert TradeLink.objects.get(pk=trade.link.pk).status == "opening"
    with pytest.raises(CopyTradingError, match="ALREADY_LINKED"):
        remedies.drift_reopen(
            subscription=trade.sub,
            master_position_id=trade.event.master_position_id,
            reason="x",
            actor=None,
        )


def test_drift_dismiss_is_recorded_once(trade):
    account = trade.sub.follower_account
    first = remedies.drift_dismiss(
        account=account, position_key="f:abc", reason="known", actor=None
    )
    second = remedies.drift_dismiss(
        account=account, position_key="f:abc", reason="again", actor=None
    )
    assert second.remedy.pk == first.remedy.pk
    assert StaffRemedy.objects.filter(kind="drift_dismiss").count() == 1
    with pytest.raises(CopyTradingError):
        remedies.drift_dismiss(account=account, position_key="nonsense", reason="x", actor=None)


def test_resync_runs_reconciliation_for_the_follower(trade, monkeypatch):
    asked = []

    def fake(*, account_ids=None):
        asked.append(account_ids)
        return {trade.sub.pk: ("drifting", Decimal("0.3"))}

    monkeypatch.setattr("copytrading.services.reconcile.followers_reconcile", fake)
    result = remedies.subscription_resync(
        subscription=trade.sub, reason="customer says", actor=None
    )
    assert asked == [[trade.sub.follower_account_id]]
    assert "drifting" in result.message
    assert StaffRemedy.objects.get().kind == "resync"


def test_drift_page_offers_remedies_and_applies_one(client, login, trade, venue, queued):
    venue.append(position(trade.link.follower_position_id))
    venue.append(position("manual5"))
    login("Operations")
    url = f"/admin/ops/drift/{trade.sub.follower_account_id}/"
    body = client.get(url).content.decode()
    assert 'data-key="f:manual5"' in body
    assert f'data-key="f:{trade.link.follower_position_id}"' not in body  # linked, master open
    client.post(url, {"remedy": "dismiss", "position_key": "f:manual5", "reason": "hedge"})
    assert 'data-key="f:manual5"' not in client.get(url).content.decode()


def test_drift_lists_master_positions_opened_before_the_subscription(client, login, trade, venue):
    """A master position open before a follower subscribed has no decision at all for it:
    the drift page still lists it as missing, so staff can re-open (copy) or dismiss it."""
    from copytrading.models import MasterEvent

    venue.append(position(trade.link.follower_position_id))
    master = trade.sub.master_account
    MasterEvent.objects.create(
        broker_server_id=master.broker_server_id,
        account=master,
        venue_event_id="early-1",
        event_type="position_opened",
        master_position_id="early-pos",
        symbol="GBPUSD",
        side="sell",
        volume=Decimal("2"),
        raw={},
        venue_ts=timezone.now(),
        received_at=timezone.now(),
        fanout_state="done",
    )
    login("Operations")
    body = client.get(f"/admin/ops/drift/{trade.sub.follower_account_id}/").content.decode()
    assert 'data-key="m:early-pos"' in body
    assert "never copied" in body


def test_drift_reopen_of_a_never_copied_position_reads_the_follower_quote(
    trade, queued, monkeypatch
):
    from copytrading.models import MasterEvent
    from risk.models import SubscriptionLimits

    sub = trade.sub
    type(sub).all_objects.filter(pk=sub.pk).update(copy_existing_positions=True)
    SubscriptionLimits.objects.create(subscription=sub, max_slippage=Decimal("0.001"))
    event = MasterEvent.objects.create(
        broker_server_id=sub.master_account.broker_server_id,
        account=sub.master_account,
        venue_event_id="ev-never-copied",
        venue_seq=10_000,
        event_type="position_opened",
        master_position_id="mp-never-copied",
        symbol="EURUSD",
        side="buy",
        order_type="market",
        volume=Decimal("1"),
        price=Decimal("1.10000"),
        raw={},
        venue_ts=timezone.now(),
        received_at=timezone.now(),
        fanout_state="done",
    )
    asked = []

    def venue_quotes(server, symbols):
        asked.append(set(symbols))
        return {s: {"bid": "1.09998", "ask": "1.10002"} for s in symbols}

    monkeypatch.setattr("copytrading.prices.quotes", venue_quotes)
    result = remedies.drift_reopen(
        subscription=sub, master_position_id=event.master_position_id, reason="x", actor=None
    )
    inst = CopyInstruction.objects.get(pk=result.instruction_id)
    assert (inst.action, inst.status) == ("open", "ready")
    assert asked == [{"EURUSD"}]
    (check,) = inst.decision["checks"]
    assert (check["code"], check["outcome"]) == ("MAX_SLIPPAGE", "pass")
