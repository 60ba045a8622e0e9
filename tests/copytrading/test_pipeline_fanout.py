"""The fan-out task's own path, in process against a real paper venue (no workers): a small
fan-out claims, sends and records its orders itself, in order; what it stores replays to the
same decisions; a paused subscription gets no order; a close never overtakes its open."""

from decimal import Decimal

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from brokers.paper.testing import running_venue
from copytrading import decision as d
from copytrading.models import CopyInstruction, FollowerOrder, MasterEvent, TradeLink
from copytrading.services import fanout as fanout_module
from copytrading.services import subscription_pause
from copytrading.services.execution import instructions_execute
from copytrading.services.fanout import fanout_and_execute, fanout_events, instruction_inputs
from tests.copytrading.copy_world import build_world

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture(scope="module")
def venue():
    with running_venue(ticks_ms=0) as v:
        yield v


@pytest.fixture
def world(venue):
    w = build_world([venue])
    yield w
    w.stack.close()


@pytest.fixture
def queued(monkeypatch):
    """Execution handed to the execute workers (none run here), and no live pushes."""
    sent: list[tuple[int, list[int]]] = []
    monkeypatch.setattr(
        "copytrading.tasks.execute_instructions.delay", lambda *args: sent.append(args)
    )
    monkeypatch.setattr("copytrading.tasks.push_positions.delay", lambda *args: None)
    return sent


_ids = iter(range(1, 10**6))


def master_event(world, master, kind: str, position_id: str, **fields) -> MasterEvent:
    now = timezone.now()
    return MasterEvent.objects.create(
        broker_server=world.servers[0],
        account=master.account,
        venue_event_id=f"p{next(_ids)}",
        event_type=kind,
        master_position_id=position_id,
        symbol="EURUSD",
        side="buy",
        volume=Decimal("1"),
        price=Decimal("1.1"),
        raw={},
        venue_ts=now,
        received_at=now,
        **fields,
    )


def assert_replays() -> None:
    for inst in CopyInstruction.objects.select_related("master_event"):
        again = d.decide(instruction_inputs(inst), rule_version=inst.rule_version)
        assert again == d.CopyDecision.from_dict(inst.decision), inst.client_order_id


def test_small_fanout_claims_sends_and_records_in_its_own_task(world, queued):
    master = world.master(0)
    subs = [world.follower(master, 0) for _ in range(3)]
    paused = world.follower(master, 0)
    subscription_pause(subscription=paused, reason="customer asked", actor=None)
    event = master_event(world, master, "position_opened", "777")

    assert fanout_and_execute(event_ids=[event.id]) == 1

    assert queued == []  # nothing handed to the execute workers
    for sub in subs:
        inst = CopyInstruction.objects.get(subscription=sub)
        assert (inst.status, inst.attempts) == ("done", 1)
        order = FollowerOrder.objects.get(instruction=inst)
        assert order.status == "filled"
        transitions = list(order.transitions.order_by("id"))
        assert [t.status for t in transitions] == ["sent", "filled"]
        assert transitions[1].venue_ts is not None
        assert order.fills.count() == 1
        link = TradeLink.objects.get(subscription=sub)
        assert (link.status, link.follower_position_id) == ("open", order.venue_position_id)
        assert len(world.positions(sub.follower_account.login)) == 1
    skipped = CopyInstruction.objects.get(subscription=paused)
    assert (skipped.status, skipped.reason) == ("skipped", "SUBSCRIPTION_PAUSED")
    assert not FollowerOrder.objects.filter(instruction=skipped).exists()
    assert world.positions(paused.follower_account.login) == []
    event.refresh_from_db()
    assert event.fanout_state == "done"
    assert event.decision_context["kill_switches"]["platform"] is False
    assert_replays()
    # A redelivered fan-out sends nothing twice.
    MasterEvent.objects.filter(id=event.id).update(fanout_state="pending")
    fanout_and_execute(event_ids=[event.id])
    assert FollowerOrder.objects.count() == 3


def test_close_fanned_out_with_its_open_waits_for_the_open_fill(world, queued):
    master = world.master(0)
    sub = world.follower(master, 0)
    opened = master_event(world, master, "position_opened", "778")
    closed = master_event(world, master, "position_closed", "778", remaining_volume=Decimal("0"))

    # One task, both events: the open is claimed and the close decided before anything is
    # sent; the close waits for the open's fill, which releases it to the execute workers.
    assert fanout_and_execute(event_ids=[opened.id, closed.id]) == 2
    close = CopyInstruction.objects.get(master_event=closed)
    assert close.status == "ready"
    ((server_id, ids),) = queued
    assert ids == [close.id]
    instructions_execute(server_id=server_id, instruction_ids=ids)

    open_ = CopyInstruction.objects.get(master_event=opened)
    close.refresh_from_db()
    assert (open_.status, close.status) == ("done", "done")
    assert close.order.sent_at >= open_.order.completed_at
    assert TradeLink.objects.get(subscription=sub).status == "closed"
    assert world.positions(sub.follower_account.login) == []
    assert_replays()


def test_rerun_under_another_kill_switch_keeps_each_decision_replayable(world, queued, monkeypatch):
    from risk.services import kill_switch_set

    master = world.master(0)
    subs = [world.follower(master, 0) for _ in range(2)]
    event = master_event(world, master, "position_opened", "779")
    monkeypatch.setattr(fanout_module, "FANOUT_CHUNK", 1)
    decide_chunk = fanout_module._fanout_event
    calls = []

    def crash_on_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("worker died")
        return decide_chunk(*args, **kwargs)

    monkeypatch.setattr(fanout_module, "_fanout_event", crash_on_second_chunk)
    with pytest.raises(RuntimeError):
        fanout_events(event_ids=[event.id])
    # The first chunk committed with the event's shared inputs; the event is still pending.
    event.refresh_from_db()
    assert event.fanout_state == "pending"
    assert event.decision_context["kill_switches"]["platform"] is False

    kill_switch_set(active=True, reason="venue incident", actor=None)
    fanout_events(event_ids=[event.id])  # the sweeper's re-run

    first, second = (CopyInstruction.objects.get(subscription=s) for s in subs)
    assert (first.action, first.status) == ("open", "ready")
    assert (second.status, second.reason) == ("skipped", "KILL_SWITCH")
    assert "kill_switches" not in first.inputs
    assert second.inputs["kill_switches"]["platform"] is True  # its own, full inputs
    assert_replays()


def test_close_fanout_holds_its_links_until_it_commits(world, queued):
    """A close decided as waiting for an open in flight commits before the open's record can
    change the link, so the record's release of waiting closes always sees it."""
    master = world.master(0)
    sub = world.follower(master, 0)
    opened = master_event(world, master, "position_opened", "780")
    fanout_events(event_ids=[opened.id])
    link = TradeLink.objects.get(subscription=sub)
    assert link.status == "opening"
    closed = master_event(world, master, "position_closed", "780", remaining_volume=Decimal("0"))
    event = fanout_module._pending_events(master.account_id, closed.id)[-1]
    rows = fanout_module._subscriptions(master.account_id, lock=False)
    dsn = connection.get_connection_params()
    with transaction.atomic():
        ready, _claimed = fanout_module._fanout_event(event, rows, lock_links=True)
        assert ready == {}  # the close waits
        with psycopg.connect(**{k: v for k, v in dsn.items() if k != "cursor_factory"}) as other:
            other.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute(
                    "UPDATE copytrading_tradelink SET status = 'open' WHERE id = %s", [link.id]
                )
    assert CopyInstruction.objects.get(master_event=closed).status == "waiting"


def test_large_fanout_hands_early_chunks_to_workers_and_sends_its_last_chunk(
    world, queued, monkeypatch
):
    """The last chunk is decided on its subscriptions read again in its own transaction: a
    pause committed after the first chunks is respected by the orders this task claims."""
    master = world.master(0)
    subs = [world.follower(master, 0) for _ in range(4)]
    event = master_event(world, master, "position_opened", "781")
    monkeypatch.setattr(fanout_module, "FANOUT_CHUNK", 2)
    decide_chunk = fanout_module._fanout_chunk

    def pause_after_first_chunk(event, subscriptions, *, n, last, kept, **more):
        decide_chunk(event, subscriptions, n=n, last=last, kept=kept, **more)
        if n == 0:
            subscription_pause(subscription=subs[2], reason="customer asked", actor=None)

    monkeypatch.setattr(fanout_module, "_fanout_chunk", pause_after_first_chunk)

    assert fanout_and_execute(event_ids=[event.id]) == 1

    first, second, paused, sent = (CopyInstruction.objects.get(subscription=s) for s in subs)
    ((_server_id, ids),) = queued
    assert ids == [first.id, second.id]  # the first chunk, to the execute workers
    assert (first.status, second.status) == ("ready", "ready")
    assert (paused.status, paused.reason) == ("skipped", "SUBSCRIPTION_PAUSED")
    assert sent.status == "done"  # the last chunk, claimed and sent by this task
    assert list(FollowerOrder.objects.values_list("instruction_id", flat=True)) == [sent.id]
    assert world.positions(subs[2].follower_account.login) == []
    assert len(world.positions(subs[3].follower_account.login)) == 1
    event.refresh_from_db()
    assert event.fanout_state == "done"
    assert_replays()
