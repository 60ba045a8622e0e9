"""Deposits and withdrawals on follower accounts, read from the venue's balance deals.

A withdrawal crystallises every subscription of the account at once (so a fee cannot be
dodged by taking the money out before period end) and settles what it owes, fee debts
included; a deposit collects the fee debts. The back office's own fee operations (client
op ids `fee-...`) are not cash movements.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Max, Min, Q
from django.utils import timezone

from accounts.models import TradingAccount
from brokers.gateways.errors import GatewayError
from brokers.gateways.types import DealEntry

from ..choices import CashMovementKind, FeeAccrualTrigger, SettlementReason
from ..models import CashMovement, Settlement, SubscriptionFeeState
from ..venue import Venue
from .accruals import account_data_read, fee_state_crystallise_now, settlement_plan

logger = logging.getLogger(__name__)


def cash_scan(*, venue: Venue) -> list[Settlement]:
    """Records new deposits and withdrawals of every follower account that pays fees or
    owes fee debt (an unsubscribed follower too), then handles each one not handled yet;
    returns the settlements it planned."""
    owing = SubscriptionFeeState.objects.filter(
        Q(closed_at__isnull=True) | Q(subscription__fee_debts__remaining__gt=0)
    )
    starts = dict(
        owing.values("subscription__follower_account")
        .annotate(joined=Min("joined_at"))
        .values_list("subscription__follower_account", "joined")
    )
    accounts = TradingAccount.objects.filter(pk__in=starts).select_related("broker_server")
    seen = dict(
        CashMovement.objects.filter(trading_account__in=starts)
        .values("trading_account")
        .annotate(last=Max("venue_ts"))
        .values_list("trading_account", "last")
    )
    for account in accounts:
        since = seen.get(account.pk) or starts[account.pk]
        try:
            deals = venue.deals(account, since)
        except GatewayError as exc:
            logger.warning("cash scan of #%s: %s", account.login, exc)
            continue
        rows = [
            CashMovement(
                trading_account=account,
                venue_deal_id=d.deal_id,
                kind=CashMovementKind.DEPOSIT if d.profit > 0 else CashMovementKind.WITHDRAWAL,
                amount=abs(d.profit),
                venue_ts=d.ts,
                comment=d.comment[:300],
            )
            for d in deals
            if d.entry == DealEntry.BALANCE
            and not (d.client_order_id or "").startswith("fee-")
            and d.ts >= starts[account.pk]
        ]
        CashMovement.objects.bulk_create(rows, ignore_conflicts=True)
    planned: list[Settlement] = []
    pending = CashMovement.objects.filter(handled_at__isnull=True).order_by("venue_ts", "id")
    for movement_id in pending.values_list("id", flat=True):
        try:
            planned += cash_movement_handle(movement_id=movement_id, venue=venue)
        except GatewayError as exc:
            logger.warning("cash movement %s: %s (retried next scan)", movement_id, exc)
    return planned


def cash_movement_handle(*, movement_id: int, venue: Venue) -> list[Settlement]:
    """A withdrawal crystallises and settles each of the account's subscriptions; a
    deposit collects their fee debts. Done once per movement (`handled_at`)."""
    movement = CashMovement.objects.select_related("trading_account").get(pk=movement_id)
    if movement.handled_at is not None:
        return []
    of_account = SubscriptionFeeState.objects.filter(
        subscription__follower_account=movement.trading_account_id,
        joined_at__lt=movement.venue_ts,
    ).order_by("id")
    states = list(of_account.filter(closed_at__isnull=True))
    planned: list[Settlement] = []
    for closed in of_account.filter(
        closed_at__isnull=False, subscription__fee_debts__remaining__gt=0
    ).distinct():
        # Unsubscribed with fee debt left: any deposit or withdrawal collects it.
        with transaction.atomic():
            locked = SubscriptionFeeState.objects.select_for_update().get(pk=closed.pk)
            settlement = settlement_plan(
                state=locked,
                key=f"{movement.kind}:{closed.subscription_id}:{movement.pk}",
                reason=SettlementReason(movement.kind),
                cutoff=None,
            )
        if settlement is not None:
            planned.append(settlement)
    if movement.kind == CashMovementKind.WITHDRAWAL and states:
        since = min(s.period_start for s in states)
        data = account_data_read(venue=venue, account=movement.trading_account, since=since)
        for state in states:
            planned += fee_state_crystallise_now(
                state_id=state.pk,
                at=movement.venue_ts,
                trigger=FeeAccrualTrigger.WITHDRAWAL,
                key=f"withdrawal:{state.subscription_id}:{movement.pk}",
                reason=SettlementReason.WITHDRAWAL,
                data=data,
            )
    elif movement.kind == CashMovementKind.DEPOSIT:
        for state in states:
            with transaction.atomic():
                locked = SubscriptionFeeState.objects.select_for_update().get(pk=state.pk)
                settlement = settlement_plan(
                    state=locked,
                    key=f"deposit:{state.subscription_id}:{movement.pk}",
                    reason=SettlementReason.DEPOSIT,
                    cutoff=None,
                )
            if settlement is not None:
                planned.append(settlement)
    CashMovement.objects.filter(pk=movement.pk, handled_at__isnull=True).update(
        handled_at=timezone.now()
    )
    return planned
