"""Reconciliation racing the fills: a snapshot of the follower's positions fetched before a
copy filled (or closed) must not make reconciliation re-open or close it again. Found under
load: 238 of 120,000 copies were opened twice (REPAIR_REOPEN of a position that had just
filled) before reconciliation compared with the snapshot's time."""

from decimal import Decimal

import pytest
from django.utils import timezone

from brokers.gateways import sync_gateway_for
from copytrading.models import CopyInstruction, MasterEvent
from copytrading.services.execution import instructions_execute
from copytrading.services.fanout import fanout_events
from copytrading.services.reconcile import followers_reconcile, reconcile_account
from tests.faults.harness import checked, master_event

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def copy_now(event: MasterEvent) -> None:
    fanout_events(event_ids=[event.id])
    for inst in CopyInstruction.objects.filter(master_event=event, status="ready"):
        instructions_execute(
            server_id=inst.follower_account.broker_server_id, instruction_ids=[inst.id]
        )


def follower_positions(world, sub):
    gateway = sync_gateway_for(world.servers[0])
    return gateway.run(gateway.gateway.list_positions(sub.follower_account.login))


@pytest.mark.faults_budget(45)
def test_a_snapshot_older_than_the_fill_or_the_close_repairs_nothing(world, deadline):
    master = world.master()
    sub = world.follower(master)
    opened = world.order(master.account.login, volume=1)
    event = master_event(world, master.account, "position_opened", opened)
    fanout_events(event_ids=[event.id])
    # Reconciliation fetches the follower's positions: the copy has not filled yet...
    fetched_at = timezone.now()
    before_fill = follower_positions(world, sub)
    assert before_fill == []
    (inst,) = CopyInstruction.objects.filter(master_event=event)
    instructions_execute(server_id=world.servers[0].id, instruction_ids=[inst.id])
    # ...and compares after the fill was recorded: nothing to repair.
    repairs, _ = reconcile_account(
        account=sub.follower_account, positions=before_fill, fetched_at=fetched_at
    )
    assert repairs == {}
    # The same with a close: the snapshot still holds the follower's copy...
    fetched_at = timezone.now()
    before_close = follower_positions(world, sub)
    assert len(before_close) == 1
    world.close(master.account.login, opened["position_id"])
    closed = master_event(
        world, master.account, "position_closed", opened, remaining_volume=Decimal("0")
    )
    copy_now(closed)
    repairs, _ = reconcile_account(
        account=sub.follower_account, positions=before_close, fetched_at=fetched_at
    )
    assert repairs == {}
    # A fresh snapshot finds everything in order.
    followers_reconcile()
    assert not CopyInstruction.objects.filter(origin="repair").exists()
    checked(world, [master.account])


@pytest.mark.faults_budget(45)
def test_a_copy_close_recorded_while_reconcile_judges_gets_no_orphan_repair(
    world, monkeypatch, deadline
):
    """The master closed; its copy's close is recorded after reconciliation read the links
    (and the instructions under way) but before it wrote its repairs: no orphan close."""
    from copytrading.models import TradeLink
    from copytrading.services import reconcile

    master = world.master()
    sub = world.follower(master)
    opened = world.order(master.account.login, volume=1)
    copy_now(master_event(world, master.account, "position_opened", opened))
    world.close(master.account.login, opened["position_id"])
    # The close event is fanned out (its instruction ready), not yet executed.
    closed = master_event(
        world, master.account, "position_closed", opened, remaining_volume=Decimal("0")
    )
    fanout_events(event_ids=[closed.id])
    snapshot = follower_positions(world, sub)
    assert len(snapshot) == 1
    (close,) = CopyInstruction.objects.filter(master_event=closed)
    judged = reconcile._stopped_out

    def close_lands_meanwhile(*args, **kwargs):
        # Reconciliation has read the link (open) and the work under way (the close, ready):
        # pretend it read them just before the close was sent and recorded.
        result = judged(*args, **kwargs)
        instructions_execute(server_id=world.servers[0].id, instruction_ids=[close.id])
        return result

    monkeypatch.setattr(reconcile, "_stopped_out", close_lands_meanwhile)
    monkeypatch.setattr(reconcile, "_OPEN_WORK", [])  # as if read before the close existed
    repairs, _ = reconcile_account(
        account=sub.follower_account, positions=snapshot, fetched_at=timezone.now()
    )
    assert repairs == {}
    assert TradeLink.objects.get(subscription=sub).status == "closed"
    assert not CopyInstruction.objects.filter(origin="repair").exists()
