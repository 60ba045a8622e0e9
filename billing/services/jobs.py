"""The billing jobs: the periodic run, and an unsubscribe crystallised at once."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.utils import timezone

from brokers.gateways.errors import GatewayError
from copytrading.models import CopySubscription

from ..choices import FeeAccrualTrigger, SettlementReason, SettlementStatus
from ..models import Settlement, SubscriptionFeeState
from ..venue import GatewayVenue, Venue
from .accruals import account_data_read, fee_state_crystallise_now, fee_state_run, fee_states_ensure
from .cash import cash_scan
from .settlement import settlement_execute

logger = logging.getLogger(__name__)


def settlements_execute_open(*, venue: Venue) -> dict[str, int]:
    """Moves every settlement that is not final as far as the venue allows."""
    counts: dict[str, int] = {}
    for pk in (
        Settlement.objects.exclude(status=SettlementStatus.SETTLED)
        .order_by("id")
        .values_list("id", flat=True)
    ):
        status = settlement_execute(settlement_id=pk, venue=venue)
        counts[status] = counts.get(status, 0) + 1
    return counts


def billing_run(*, as_of: datetime | None = None, venue: Venue | None = None) -> dict[str, Any]:
    """Accrue, crystallise and settle whatever is due by `as_of` (now by default).

    Idempotent: every step is keyed in the database, so running it twice, or on two
    schedulers at once, changes nothing the second time."""
    as_of = as_of or timezone.now()
    venue = venue or GatewayVenue()
    report: dict[str, Any] = {"states_made": fee_states_ensure(), "planned": 0, "errors": 0}
    for state_id, deleted in SubscriptionFeeState.objects.filter(
        closed_at__isnull=True
    ).values_list("id", "subscription__deleted_at"):
        try:
            if deleted is not None:
                planned = fee_unsubscribe(state_id=state_id, venue=venue)
            else:
                planned = fee_state_run(state_id=state_id, as_of=as_of, venue=venue)
        except GatewayError as exc:
            logger.warning("billing run: fee state %s waits for its venue (%s)", state_id, exc)
            report["errors"] += 1
            continue
        except Exception:
            # One subscription's failure must not hold up everyone's billing: logged with its
            # traceback, retried at the next run (every step is idempotent).
            logger.exception("billing run: fee state %s failed", state_id)
            report["errors"] += 1
            continue
        report["planned"] += len(planned)
    report["settlements"] = settlements_execute_open(venue=venue)
    return report


def fee_unsubscribe(*, state_id: int, venue: Venue) -> list[Settlement]:
    """A subscription was deleted: crystallise at its deletion time and settle everything
    it owes (fee debts included); its billing ends there."""
    state = SubscriptionFeeState.objects.select_related("subscription__follower_account").get(
        pk=state_id
    )
    if state.closed_at is not None:
        return []
    sub = state.subscription
    at = sub.deleted_at or timezone.now()
    data = account_data_read(venue=venue, account=sub.follower_account, since=state.period_start)
    return fee_state_crystallise_now(
        state_id=state_id,
        at=at,
        trigger=FeeAccrualTrigger.UNSUBSCRIBE,
        key=f"unsubscribe:{sub.pk}",
        reason=SettlementReason.UNSUBSCRIBE,
        data=data,
        close=True,
    )


def billing_unsubscribe(*, subscription_id: int, venue: Venue | None = None) -> list[Settlement]:
    """The unsubscribe job: crystallise and settle at once."""
    venue = venue or GatewayVenue()
    sub = CopySubscription.all_objects.filter(pk=subscription_id).first()
    state = SubscriptionFeeState.objects.filter(subscription_id=subscription_id).first()
    if sub is None or sub.deleted_at is None or state is None:
        return []
    planned = fee_unsubscribe(state_id=state.pk, venue=venue)
    for settlement in planned:
        settlement_execute(settlement_id=settlement.pk, venue=venue)
    return planned


def billing_scan_cash(*, venue: Venue | None = None) -> list[Settlement]:
    """The cash job: record deposits and withdrawals and settle what they trigger."""
    venue = venue or GatewayVenue()
    planned = cash_scan(venue=venue)
    for settlement in planned:
        settlement_execute(settlement_id=settlement.pk, venue=venue)
    return planned
