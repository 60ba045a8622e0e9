"""Post-trade monitors: every account update and price move, checked against the limits.

How the back office learns of a change (and why this meets "within 1 s of a breach"):
the venue's stream sends `account_updated` (balance, equity, margin) for every change,
price moves included, at once when the account was quiet for a second and otherwise at
most a second later. The listener of each broker server already holds that stream (the
manager view, `all=1`, sees every account; a sharded listener also subscribes to the
accounts this module names in `monitored_logins`), so it hands the readings of monitored
accounts, the trade events of masters with declared limits, and every `stop_out` close to
one `risk.monitor_accounts` task per stored batch. The account sync task (60 s) and the
live price page (quotes polled for staff) are too slow or too partial for this: they are
not used. A listener is started for every server that has masters *or* monitored
followers (copytrading.services.listening).

The stream's throttle is the one gap: a change that comes less than a second after the
account's previous update is reported when that second is over. So an account whose
closest limit is RISK_NEAR_LIMIT_PCT used (70% by default) is also read over REST every
RISK_NEAR_LIMIT_POLL_SECONDS (0.2 s) while it stays near (`risk.monitor_poll`, one chain
per account): a breach from near the limit is acted on within about 0.2 s plus the work,
whatever the throttle. A jump from far below straight past a limit inside the throttle's
second is still seen up to a second late (the venue offers no faster signal).

Cost when nothing is near a limit: one task per listener batch that holds a monitored
account, which reads the subscriptions' limits and monitor states in one query, computes
in Python (risk.rules) and writes the new readings back in one UPDATE per state. Nothing
else is written, nothing is sent.

A breach (services below, each in its own transaction, network only after commit):
- subscription: status 2 with the rule and figures, a RiskStop with every input, and by
  policy close instructions for every open copy (origin `staff`, rule version `risk-1`,
  client order id `sfr<stop>l<link>` so a retry queues nothing twice), executed by the
  engine like any other close (closes always go through); staff are told on the
  Channels group `risk.alerts.staff` and see the stop in the admin.
- master: paused for every follower (copytrading master_pause, with the rule as reason),
  a RiskStop on the master, staff told.
- margin stop-out at the venue: the copies it closed are marked closed by stop-out, the
  subscription stopped (openings only: the venue already cut what it had to) with a
  MARGIN_STOP_OUT stop, and reconciliation does not re-open them (it asks this module).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import TradingAccount
from copytrading import decision as d
from copytrading.choices import (
    CopyInstructionAction,
    CopyInstructionOrigin,
    CopyInstructionStatus,
    CopySubscriptionStatus,
    TradeLinkStatus,
)
from copytrading.models import CopyInstruction, CopyMaster, CopySubscription, TradeLink

from . import rules
from .choices import BreachPolicy, RiskRule
from .models import MasterLimits, MonitorState, RiskStop, SubscriptionLimits

logger = logging.getLogger(__name__)

RISK_RULE_VERSION = "risk-1"
STAFF_ALERT_GROUP = "risk.alerts.staff"
STOP_OUT_REASON = "closed by margin stop-out at the venue"
_OPEN_WORK = [
    CopyInstructionStatus.READY,
    CopyInstructionStatus.IN_FLIGHT,
    CopyInstructionStatus.WAITING,
]
_POSTTRADE_SET = (
    Q(equity_floor__gt=0)
    | Q(max_drawdown_pct__gt=0)
    | Q(daily_loss_limit__gt=0)
    | Q(weekly_loss_limit__gt=0)
    | Q(monthly_loss_limit__gt=0)
)
_MASTER_SET = Q(max_lots__gt=0) | Q(max_open_positions__gt=0) | Q(max_drawdown_pct__gt=0)


# -- what the listener watches -----------------------------------------------------------


def monitored_logins(*, server_id: int) -> set[int]:
    """Logins on a server whose account updates the monitors need: followers of a live
    subscription with a post-trade limit, and masters with a declared limit."""
    followers = SubscriptionLimits.objects.filter(
        _POSTTRADE_SET,
        subscription__deleted_at__isnull=True,
        subscription__follower_account__broker_server_id=server_id,
    ).values_list("subscription__follower_account__login", flat=True)
    masters = MasterLimits.objects.filter(
        _MASTER_SET,
        master__deleted_at__isnull=True,
        master__account__broker_server_id=server_id,
    ).values_list("master__account__login", flat=True)
    return set(followers) | set(masters)


def monitored_server_ids() -> set[int]:
    """Servers with a monitored follower: they need a listener even without masters."""
    return set(
        SubscriptionLimits.objects.filter(
            _POSTTRADE_SET, subscription__deleted_at__isnull=True
        ).values_list("subscription__follower_account__broker_server_id", flat=True)
    )


# -- readings in, evaluations out ----------------------------------------------------------


@dataclass(frozen=True)
class AccountReading:
    """One account_updated from the stream, by login (JSON-safe for the task)."""

    login: int
    balance: Decimal
    equity: Decimal
    margin: Decimal
    at: datetime
    source: str = "stream"  # or "poll": read over REST while near a limit

    def to_json(self) -> dict[str, Any]:
        return {
            "login": self.login,
            "balance": str(self.balance),
            "equity": str(self.equity),
            "margin": str(self.margin),
            "at": self.at.isoformat(),
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AccountReading:
        return cls(
            login=int(data["login"]),
            balance=Decimal(data["balance"]),
            equity=Decimal(data["equity"]),
            margin=Decimal(data.get("margin") or "0"),
            at=datetime.fromisoformat(data["at"]),
            source=data.get("source", "stream"),
        )


def _limit_set(limits: SubscriptionLimits) -> rules.SubscriptionLimitSet:
    return rules.SubscriptionLimitSet(
        equity_floor=limits.equity_floor,
        max_drawdown_pct=limits.max_drawdown_pct,
        daily_loss_limit=limits.daily_loss_limit,
        weekly_loss_limit=limits.weekly_loss_limit,
        monthly_loss_limit=limits.monthly_loss_limit,
        loss_unit=limits.loss_unit,
        loss_basis=limits.loss_basis,
        period_timezone=limits.period_timezone or "UTC",
    )


def _figures_of(state: MonitorState) -> rules.MonitorFigures:
    last = None
    if state.equity is not None and state.balance is not None and state.reading_at:
        last = rules.Reading(
            balance=state.balance,
            equity=state.equity,
            margin=state.margin or Decimal(0),
            at=state.reading_at,
        )
    return rules.MonitorFigures(
        hwm=state.equity_hwm, periods=rules.periods_from_json(state.periods), last=last
    )


def _store_figures(
    state: MonitorState, figures: rules.MonitorFigures, evaluated: list[rules.Figure], now: datetime
) -> None:
    if figures.hwm != state.equity_hwm:
        state.hwm_at = figures.last.at if figures.last else now
    state.equity_hwm = figures.hwm
    state.periods = rules.figures_to_json(figures)
    if figures.last is not None:
        state.balance = figures.last.balance
        state.equity = figures.last.equity
        state.margin = figures.last.margin
        state.reading_at = figures.last.at
    state.figures = [f.to_dict() for f in evaluated]
    state.evaluated_at = now


_STATE_FIELDS = [
    "equity_hwm",
    "hwm_at",
    "periods",
    "balance",
    "equity",
    "margin",
    "reading_at",
    "open_lots",
    "open_positions",
    "figures",
    "evaluated_at",
]


def accounts_monitor(
    *,
    server_id: int,
    readings: list[AccountReading],
    master_logins: list[int] | None = None,
    stop_outs: list[dict[str, Any]] | None = None,
    now: datetime | None = None,
) -> list[int]:
    """Evaluates what one listener batch says about monitored accounts; returns the ids
    of the RiskStops it fired. Readings of one login keep only the newest."""
    now = now or timezone.now()
    fired: list[int] = []
    if stop_outs:
        fired += stop_outs_record(server_id=server_id, stop_outs=stop_outs, now=now)
    newest: dict[int, AccountReading] = {}
    for r in readings:
        if r.login not in newest or r.at >= newest[r.login].at:
            newest[r.login] = r
    logins = set(newest) | set(master_logins or [])
    if not logins:
        return fired
    accounts = dict(
        TradingAccount.objects.filter(broker_server_id=server_id, login__in=logins).values_list(
            "id", "login"
        )
    )
    by_account = {aid: newest[login] for aid, login in accounts.items() if login in newest}
    if by_account:
        fired += subscriptions_monitor(readings=by_account, now=now)
    fired += masters_monitor(
        readings=by_account,
        traded_account_ids=[
            aid for aid, login in accounts.items() if login in (master_logins or [])
        ],
        now=now,
    )
    return fired


def subscriptions_monitor(
    *, readings: dict[int, AccountReading], now: datetime | None = None
) -> list[int]:
    """Evaluates every limited subscription of these follower accounts ({account id:
    reading}); stores the readings and fires what breached. Returns fired stop ids."""
    now = now or timezone.now()
    subs = list(
        CopySubscription.objects.filter(follower_account_id__in=list(readings))
        .filter(risk_limits__isnull=False)
        .select_related("risk_limits")
        .order_by("id")
    )
    if not subs:
        return []
    changed: list[MonitorState] = []
    breaches: list[tuple[CopySubscription, rules.Figure, rules.Reading, str]] = []
    sweep: list[int] = []
    near: set[int] = set()
    with transaction.atomic():
        # The states are locked (in id order) so a stream reading and a poll of the same
        # account, or two batches, are evaluated one after the other: the mark and the
        # period starts are never computed from a stale row.
        states = _locked_states([s.id for s in subs])
        for sub in subs:
            limits = _limit_set(sub.risk_limits)
            if not limits.any_set:
                continue
            r = readings[sub.follower_account_id]
            reading = rules.Reading(balance=r.balance, equity=r.equity, margin=r.margin, at=r.at)
            state = states[sub.id]
            if state.reading_at is not None and reading.at < state.reading_at:
                continue  # older than the reading stored (two batches raced)
            figures = rules.advance(_figures_of(state), reading, tz=limits.period_timezone)
            evaluated = rules.evaluate_subscription(limits, figures, reading)
            _store_figures(state, figures, evaluated, now)
            changed.append(state)
            if sub.status == CopySubscriptionStatus.STOPPED_BY_RISK:
                sweep.append(sub.id)
                continue
            first = next((f for f in evaluated if f.fired), None)
            if first is not None:
                breaches.append((sub, first, reading, r.source))
            elif any(f.used_pct >= settings.RISK_NEAR_LIMIT_PCT for f in evaluated):
                near.add(sub.follower_account_id)
        if changed:
            MonitorState.objects.bulk_update(changed, _STATE_FIELDS)
    fired = []
    for sub, figure, reading, source in breaches:
        stop = subscription_breach(
            subscription=sub, figure=figure, reading=reading, now=now, source=source
        )
        if stop is not None:
            fired.append(stop.id)
    for sub_id in sweep:
        _close_remaining(sub_id, now=now)
    for account_id in sorted(near):
        _poll_soon(account_id)
    return fired


def _poll_soon(account_id: int) -> None:
    """Reads a near-limit account again over REST shortly, whatever the stream does: the
    venue's stream reports a change up to a second late when the account changed in the
    second before, and a breach must be acted on within one. One poll chain per account
    (a Redis marker that lives as long as the interval)."""
    from config.redis import get_redis

    from .tasks import monitor_poll

    interval = settings.RISK_NEAR_LIMIT_POLL_SECONDS
    if get_redis().set(f"risk:poll:{account_id}", "1", nx=True, px=int(interval * 1000)):
        monitor_poll.apply_async((account_id,), countdown=interval)


def account_poll(*, account_id: int) -> list[int]:
    """Reads one account's figures over REST and evaluates its limits (the near-limit
    path); returns fired stop ids. A venue that does not answer: the stream goes on."""
    from brokers.gateways import sync_gateway_for
    from brokers.gateways.errors import GatewayError

    account = TradingAccount.objects.select_related("broker_server").filter(pk=account_id).first()
    if account is None:
        return []
    gateway = sync_gateway_for(account.broker_server)
    try:
        snapshot = gateway.run(gateway.gateway.get_account(account.login), timeout=2)
    except (GatewayError, RuntimeError, TimeoutError):
        return []
    reading = AccountReading(
        login=account.login,
        balance=snapshot.balance,
        equity=snapshot.equity,
        margin=snapshot.margin,
        at=timezone.now(),
        source="poll",
    )
    return subscriptions_monitor(readings={account.id: reading})


def _locked_states(subscription_ids: list[int]) -> dict[int, MonitorState]:
    """{subscription id: its MonitorState, locked}; missing rows are created first."""
    query = MonitorState.objects.select_for_update().order_by("subscription_id")
    states = {s.subscription_id: s for s in query.filter(subscription_id__in=subscription_ids)}
    missing = [i for i in subscription_ids if i not in states]
    if missing:
        MonitorState.objects.bulk_create(
            [MonitorState(subscription_id=i) for i in missing], ignore_conflicts=True
        )
        states.update({s.subscription_id: s for s in query.filter(subscription_id__in=missing)})
    return states


def _reading_inputs(reading: rules.Reading) -> dict[str, str]:
    return {
        "balance": str(reading.balance),
        "equity": str(reading.equity),
        "margin": str(reading.margin),
        "reading_at": reading.at.isoformat(),
    }


def subscription_breach(
    *,
    subscription: CopySubscription,
    figure: rules.Figure,
    reading: rules.Reading | None,
    now: datetime | None = None,
    source: str = "stream",
) -> RiskStop | None:
    """Stops a subscription for a fired rule: status 2 with the rule and figures, a
    RiskStop with every input, and by policy the close of every open copy.

    Guards: the subscription row is locked first, and a subscription already stopped by
    risk gets no second stop (two batches racing fire once). Closes are queued after
    commit; their client order ids (`sfr<stop>l<link>`) make a repeat queue nothing.
    Returns the stop, or None when nothing fired.
    """
    from copytrading.services import subscription_stop_by_risk

    now = now or timezone.now()
    with transaction.atomic():
        sub = CopySubscription.all_objects.select_for_update().get(pk=subscription.pk)
        if sub.status == CopySubscriptionStatus.STOPPED_BY_RISK or sub.deleted_at is not None:
            return None
        limits = SubscriptionLimits.objects.get(subscription_id=sub.id)
        _close_superseded_stops(sub.id, now=now)
        policy = limits.breach_policy
        resumes_at = None
        if figure.rule in rules.PERIODIC_RULES and limits.resume_next_period:
            kind = {v: k for k, v in rules.PERIOD_RULE.items()}[figure.rule]
            at = reading.at if reading else now
            resumes_at = rules.next_period_start(kind, at, limits.period_timezone or "UTC")
        stop = RiskStop.objects.create(
            subscription=sub,
            rule=figure.rule,
            policy=policy,
            detail=figure.detail[:500],
            inputs={
                "rules_version": rules.RULES_VERSION,
                "figure": figure.to_dict(),
                "reading": {**_reading_inputs(reading), "source": source} if reading else {},
                "limits": _limits_inputs(limits),
            },
            fired_at=now,
            resumes_at=resumes_at,
        )
        reason = f"{figure.rule}: {figure.detail}"
        subscription_stop_by_risk(subscription=sub, reason=reason[:500])
        if policy == BreachPolicy.CLOSE_POSITIONS:
            _queue_closes(sub, stop, now=now)
        transaction.on_commit(lambda: _alert(stop.id))
    logger.warning("risk stop %s on subscription %s: %s", stop.id, sub.id, reason)
    return stop


def _limits_inputs(limits: SubscriptionLimits) -> dict[str, str]:
    fields = [
        "equity_floor",
        "max_drawdown_pct",
        "daily_loss_limit",
        "weekly_loss_limit",
        "monthly_loss_limit",
        "loss_unit",
        "loss_basis",
        "period_timezone",
        "breach_policy",
        "resume_next_period",
    ]
    return {f: str(getattr(limits, f)) for f in fields}


def _close_superseded_stops(subscription_id: int, *, now: datetime) -> None:
    """Stops still open on a subscription that is no longer stopped were resumed from the
    subscription page (its own resume path): they are closed with that said."""
    for stop in RiskStop.objects.select_for_update().filter(
        subscription_id=subscription_id, cleared_at__isnull=True
    ):
        stop.cleared_at = now
        stop.clear_reason = "the subscription was resumed outside the risk stop page"
        stop.save(update_fields=["cleared_at", "clear_reason"])


def _queue_closes(sub: CopySubscription, stop: RiskStop, *, now: datetime) -> list[int]:
    """Close instructions for every open copy of the subscription without work in flight;
    queued after commit. Returns the instruction ids inserted."""
    from config.bulk import insert_rows
    from copytrading.services.fanout import INSTRUCTION_COLUMNS, enqueue_execution
    from copytrading.services.reconcile import ready_instruction_row

    links = list(
        TradeLink.objects.filter(subscription_id=sub.id, status=TradeLinkStatus.OPEN)
        .exclude(follower_position_id="")
        .order_by("id")
    )
    if not links:
        return []
    busy = set(
        CopyInstruction.objects.filter(
            trade_link_id__in=[link.id for link in links], status__in=_OPEN_WORK
        ).values_list("trade_link_id", flat=True)
    )
    rows = []
    for link in links:
        if link.id in busy:
            continue  # its open or close is under way: the next reading's sweep closes it
        decision = d.CopyDecision(
            rule_version=RISK_RULE_VERSION,
            action=d.CopyAction.CLOSE,
            follower_symbol=link.follower_symbol,
            side=d.Side(link.side),
            volume=link.follower_volume,
            follower_position_ids=(link.follower_position_id,),
        )
        rows.append(
            ready_instruction_row(
                origin=CopyInstructionOrigin.STAFF,
                rule_version=RISK_RULE_VERSION,
                sub=sub,
                link=link,
                action=CopyInstructionAction.CLOSE,
                reason=f"RISK_{stop.rule}"[:40],
                detail=f"risk stop {stop.id}: {stop.detail}",
                coid=f"sfr{stop.id}l{link.id}",
                decision=decision,
                now=now,
                inputs={"risk_stop": stop.id, "rule": stop.rule},
            )
        )
    if not rows:
        return []
    inserted = insert_rows(CopyInstruction, rows, columns=INSTRUCTION_COLUMNS)
    if inserted:
        server_id = TradingAccount.objects.values_list("broker_server_id", flat=True).get(
            pk=sub.follower_account_id
        )
        transaction.on_commit(lambda: enqueue_execution({server_id: list(inserted)}))
    return inserted


def _close_remaining(subscription_id: int, *, now: datetime) -> int:
    """A stopped subscription whose open stop closes positions: copies that were busy when
    it fired (an open in flight) are closed once they land."""
    stop = (
        RiskStop.objects.filter(
            subscription_id=subscription_id,
            cleared_at__isnull=True,
            policy=BreachPolicy.CLOSE_POSITIONS,
        )
        .order_by("-fired_at")
        .first()
    )
    if stop is None:
        return 0
    if not TradeLink.objects.filter(
        subscription_id=subscription_id, status=TradeLinkStatus.OPEN
    ).exists():
        return 0
    with transaction.atomic():
        sub = CopySubscription.all_objects.select_for_update().get(pk=subscription_id)
        return len(_queue_closes(sub, stop, now=now))


# -- masters ------------------------------------------------------------------------------

_MASTER_OPEN_SQL = """
SELECT count(*), coalesce(sum(volume), 0) FROM (
  SELECT DISTINCT ON (master_position_id) event_type,
         CASE WHEN event_type = 'position_closed' THEN coalesce(remaining_volume, 0)
              ELSE volume END AS volume
  FROM copytrading_masterevent
  WHERE account_id = %s AND master_position_id <> ''
    AND event_type IN ('position_opened', 'position_modified', 'position_closed')
  ORDER BY master_position_id, id DESC
) latest WHERE volume > 0
"""


def master_open_book(account_id: int) -> tuple[int, Decimal]:
    """(open positions, open lots) of a master account, from its stored events (the
    latest event of each position says its volume now)."""
    with connection.cursor() as cursor:
        cursor.execute(_MASTER_OPEN_SQL, [account_id])
        count, lots = cursor.fetchone()
    return int(count), Decimal(lots)


def masters_monitor(
    *,
    readings: dict[int, AccountReading],
    traded_account_ids: list[int],
    now: datetime | None = None,
) -> list[int]:
    """Evaluates the declared limits of masters whose account changed (a reading, or a
    trade event stored); a breach pauses the master. Returns fired stop ids."""
    now = now or timezone.now()
    account_ids = set(readings) | set(traded_account_ids)
    if not account_ids:
        return []
    masters = list(
        CopyMaster.objects.filter(account_id__in=account_ids)
        .filter(
            Q(risk_limits__max_lots__gt=0)
            | Q(risk_limits__max_open_positions__gt=0)
            | Q(risk_limits__max_drawdown_pct__gt=0)
        )
        .select_related("risk_limits")
    )
    fired = []
    for master in masters:
        limits = master.risk_limits
        with transaction.atomic():
            MonitorState.objects.get_or_create(master_id=master.id)
            state = MonitorState.objects.select_for_update().get(master_id=master.id)
            first = _master_evaluate(master, limits, state, readings, traded_account_ids, now)
        if first is not None and not master.paused:
            stop = master_breach(master=master, figure=first, now=now)
            if stop is not None:
                fired.append(stop.id)
    return fired


def _master_evaluate(
    master: CopyMaster,
    limits: MasterLimits,
    state: MonitorState,
    readings: dict[int, AccountReading],
    traded_account_ids: list[int],
    now: datetime,
) -> rules.Figure | None:
    """Updates a master's (locked) state from a reading and its open book; returns the
    first fired figure."""
    r = readings.get(master.account_id)
    if r is not None and (state.reading_at is None or r.at >= state.reading_at):
        state.equity_hwm = r.equity if state.equity_hwm is None else max(state.equity_hwm, r.equity)
        if state.equity_hwm == r.equity:
            state.hwm_at = r.at
        state.balance, state.equity, state.margin, state.reading_at = (
            r.balance,
            r.equity,
            r.margin,
            r.at,
        )
    if master.account_id in traded_account_ids or state.open_positions is None:
        state.open_positions, state.open_lots = master_open_book(master.account_id)
    evaluated = rules.evaluate_master(
        rules.MasterLimitSet(
            max_lots=limits.max_lots,
            max_open_positions=limits.max_open_positions,
            max_drawdown_pct=limits.max_drawdown_pct,
        ),
        open_lots=state.open_lots,
        open_positions=state.open_positions,
        hwm=state.equity_hwm,
        equity=state.equity,
    )
    state.figures = [f.to_dict() for f in evaluated]
    state.evaluated_at = now
    state.save(update_fields=_STATE_FIELDS)
    return next((f for f in evaluated if f.fired), None)


def master_breach(
    *, master: CopyMaster, figure: rules.Figure, now: datetime | None = None
) -> RiskStop | None:
    """Pauses copying from a master for every follower (copytrading master_pause, with the
    rule as reason) and records a RiskStop on the master; staff are told.

    Guards: the master row is locked; a master already paused gets no second stop. From
    the moment this commits no new opening is copied from it; closes go through.
    """
    from copytrading.services import master_pause

    now = now or timezone.now()
    with transaction.atomic():
        locked = CopyMaster.all_objects.select_for_update().get(pk=master.pk)
        if locked.paused or locked.deleted_at is not None:
            return None
        stop = RiskStop.objects.create(
            master=locked,
            rule=figure.rule,
            policy=BreachPolicy.STOP_OPENINGS,
            detail=figure.detail[:500],
            inputs={"rules_version": rules.RULES_VERSION, "figure": figure.to_dict()},
            fired_at=now,
        )
        master_pause(master=locked, reason=f"{figure.rule}: {figure.detail}"[:500], actor=None)
        transaction.on_commit(lambda: _alert(stop.id))
    logger.warning("risk stop %s: master %s paused: %s", stop.id, master.id, figure.detail)
    return stop


# -- margin stop-out ------------------------------------------------------------------------


def stop_outs_record(
    *, server_id: int, stop_outs: list[dict[str, Any]], now: datetime | None = None
) -> list[int]:
    """Marks the copies the venue closed by margin stop-out and stops their subscriptions.

    `stop_outs`: [{"login", "position_id", "price"?, "profit"?, "at"?}]. Guards: only an
    open link of that follower position is marked (a repeat changes nothing); each
    subscription gets one MARGIN_STOP_OUT stop while it stays stopped (later positions of
    the same stop-out are added to its inputs). Policy: stop openings (the venue already
    closed what it had to); staff clear it. Reconciliation sees the link closed and the
    subscription stopped, so nothing is re-opened.
    """
    from copytrading.services import subscription_stop_by_risk

    now = now or timezone.now()
    logins = {int(s["login"]) for s in stop_outs}
    accounts = dict(
        TradingAccount.objects.filter(broker_server_id=server_id, login__in=logins).values_list(
            "login", "id"
        )
    )
    fired = []
    for item in stop_outs:
        account_id = accounts.get(int(item["login"]))
        if account_id is None:
            continue
        with transaction.atomic():
            link = (
                TradeLink.objects.select_for_update()
                .filter(
                    follower_account_id=account_id,
                    follower_position_id=str(item["position_id"]),
                    status__in=[TradeLinkStatus.OPEN, TradeLinkStatus.OPENING],
                )
                .first()
            )
            if link is None:
                continue
            link.status = TradeLinkStatus.CLOSED
            link.reason = STOP_OUT_REASON
            link.closed_at = now
            if item.get("price") not in (None, ""):
                link.close_price = Decimal(str(item["price"]))
            if item.get("profit") not in (None, ""):
                link.profit = Decimal(str(item["profit"]))
            link.save(
                update_fields=[
                    "status",
                    "reason",
                    "closed_at",
                    "close_price",
                    "profit",
                    "updated_at",
                ]
            )
            sub = CopySubscription.all_objects.select_for_update().get(pk=link.subscription_id)
            detail_item = {
                "link": link.id,
                "position_id": link.follower_position_id,
                "symbol": link.follower_symbol,
                "volume": str(link.follower_volume),
                "price": str(item.get("price") or ""),
                "profit": str(item.get("profit") or ""),
            }
            open_stop = (
                RiskStop.objects.select_for_update()
                .filter(subscription=sub, rule=RiskRule.MARGIN_STOP_OUT, cleared_at__isnull=True)
                .first()
            )
            if open_stop is not None and sub.status == CopySubscriptionStatus.STOPPED_BY_RISK:
                open_stop.inputs.setdefault("positions", []).append(detail_item)
                open_stop.save(update_fields=["inputs"])
            else:
                if sub.status != CopySubscriptionStatus.STOPPED_BY_RISK:
                    _close_superseded_stops(sub.id, now=now)
                detail = (
                    f"margin stop-out at the venue closed position {link.follower_position_id} "
                    f"({link.follower_volume} {link.follower_symbol})"
                )
                stop = RiskStop.objects.create(
                    subscription=sub,
                    rule=RiskRule.MARGIN_STOP_OUT,
                    policy=BreachPolicy.STOP_OPENINGS,
                    detail=detail,
                    inputs={"rules_version": rules.RULES_VERSION, "positions": [detail_item]},
                    fired_at=now,
                )
                if sub.status != CopySubscriptionStatus.STOPPED_BY_RISK:
                    subscription_stop_by_risk(
                        subscription=sub, reason=f"{RiskRule.MARGIN_STOP_OUT}: {detail}"[:500]
                    )
                transaction.on_commit(lambda stop_id=stop.id: _alert(stop_id))
                fired.append(stop.id)
            transaction.on_commit(lambda link_id=link.id: _push_links([link_id]))
    return fired


def stopped_out_positions(*, account: TradingAccount, position_ids: list[str]) -> set[str]:
    """Of these follower positions (gone from the venue), those the venue closed by margin
    stop-out, from its deals. Network: call outside any transaction. Used by
    reconciliation before it re-opens a copy closed behind the back office's back."""
    from brokers.gateways import sync_gateway_for
    from brokers.gateways.errors import GatewayError
    from brokers.gateways.types import CloseReason, DealEntry

    if not position_ids:
        return set()
    wanted = {str(p) for p in position_ids}
    since = (
        TradeLink.objects.filter(follower_account=account, follower_position_id__in=wanted)
        .order_by("opened_at")
        .values_list("opened_at", flat=True)
        .first()
    )
    gateway = sync_gateway_for(account.broker_server)
    try:
        deals = gateway.run(gateway.gateway.list_deals(account.login, since), timeout=5)
    except (GatewayError, RuntimeError, TimeoutError):
        logger.warning("deals of account %s unavailable; stop-outs not checked", account.id)
        return set()
    return {
        str(deal.position_id)
        for deal in deals
        if deal.entry == DealEntry.OUT
        and deal.reason == CloseReason.STOP_OUT
        and str(deal.position_id) in wanted
    }


# -- resuming and clearing ----------------------------------------------------------------


def risk_stops_resume_due(*, now: datetime | None = None) -> list[int]:
    """Clears periodic stops whose next period has started (resumes_at <= now) and resumes
    their subscriptions when no other stop holds them. Returns the stops cleared.

    Guards: each stop is cleared once (row lock, cleared_at checked); a subscription with
    another open stop (a drawdown stop, say) stays stopped. The clock is an argument so
    tests and a catch-up run decide what "now" is.
    """
    now = now or timezone.now()
    due = list(
        RiskStop.objects.filter(
            cleared_at__isnull=True, resumes_at__isnull=False, resumes_at__lte=now
        ).values_list("id", flat=True)
    )
    cleared = []
    for stop_id in due:
        if _clear(stop_id, reason="the next period started", actor=None, now=now):
            cleared.append(stop_id)
    return cleared


def risk_stop_clear(*, stop: RiskStop, reason: str, actor: Any) -> RiskStop:
    """Staff clear a stop with a reason: the subscription resumes (or the master is no
    longer paused) when no other stop holds it. Clearing a drawdown stop restarts the
    high-water mark at the last equity seen, or the stop would fire again at once.

    Guards: a reason is required; a stop is cleared once; history names the actor.
    """
    if not (reason or "").strip():
        raise ValueError("a reason is required to clear a risk stop")
    if not _clear(stop.id, reason=reason.strip(), actor=actor, now=timezone.now()):
        raise ValueError(f"risk stop {stop.id} was cleared already")
    return RiskStop.objects.get(pk=stop.id)


def _clear(stop_id: int, *, reason: str, actor: Any, now: datetime) -> bool:
    from config.history import save_audited
    from copytrading.services import master_resume, subscription_resume

    with transaction.atomic():
        stop = RiskStop.objects.select_for_update().get(pk=stop_id)
        if stop.cleared_at is not None:
            return False
        stop.cleared_at = now
        stop.cleared_by = actor if getattr(actor, "is_authenticated", False) else None
        stop.clear_reason = reason[:500]
        save_audited(stop, actor=actor, reason=f"cleared: {reason}"[:100])
        others = RiskStop.objects.filter(cleared_at__isnull=True).exclude(pk=stop.pk)
        if stop.subscription_id:
            if stop.rule in (RiskRule.MAX_DRAWDOWN,):
                MonitorState.objects.filter(subscription_id=stop.subscription_id).update(
                    equity_hwm=F("equity"), hwm_at=now
                )
            sub = CopySubscription.all_objects.get(pk=stop.subscription_id)
            if (
                sub.status == CopySubscriptionStatus.STOPPED_BY_RISK
                and not others.filter(subscription_id=sub.id).exists()
            ):
                subscription_resume(
                    subscription=sub,
                    reason=f"risk stop {stop.id} ({stop.rule}) cleared: {reason}"[:500],
                    actor=actor,
                    clear_risk_stop=True,
                )
        else:
            master = CopyMaster.all_objects.get(pk=stop.master_id)
            if master.paused and not others.filter(master_id=master.id).exists():
                if stop.rule == RiskRule.MASTER_MAX_DRAWDOWN:
                    MonitorState.objects.filter(master_id=master.id).update(
                        equity_hwm=F("equity"), hwm_at=now
                    )
                master_resume(
                    master=master,
                    reason=f"risk stop {stop.id} ({stop.rule}) cleared: {reason}"[:500],
                    actor=actor,
                )
    return True


# -- telling staff ------------------------------------------------------------------------


def stop_payload(stop: RiskStop) -> dict[str, Any]:
    return {
        "id": stop.id,
        "rule": stop.rule,
        "policy": stop.policy,
        "detail": stop.detail,
        "subscription": stop.subscription_id,
        "master": stop.master_id,
        "fired_at": stop.fired_at.isoformat(),
        "resumes_at": stop.resumes_at.isoformat() if stop.resumes_at else None,
    }


def _alert(stop_id: int) -> None:
    from .tasks import risk_alert_push

    risk_alert_push.delay(stop_id)


def risk_alert_push(*, stop_id: int) -> bool:
    """Sends a stop to the staff group `risk.alerts.staff` (best effort: the admin's stop
    list is the record; a layer that is down is logged, never raised)."""
    from channels.layers import get_channel_layer

    stop = RiskStop.objects.filter(pk=stop_id).first()
    layer = get_channel_layer()
    if stop is None or layer is None:
        return False
    try:
        async_to_sync(layer.group_send)(
            STAFF_ALERT_GROUP, {"type": "risk.alert", "stop": stop_payload(stop)}
        )
    except Exception as exc:  # the channel layer is optional to risk; never break a stop
        logger.warning("risk alert %s not pushed: %s", stop_id, exc)
        return False
    return True


def _push_links(link_ids: list[int]) -> None:
    from copytrading.tasks import push_positions

    push_positions.delay(link_ids)


def subscription_limits_overview(subscription: CopySubscription) -> dict[str, Any]:
    """What the admin shows per subscription: the last figures (how close each limit is to
    firing), the mark, and the stops, newest first."""
    state = MonitorState.objects.filter(subscription=subscription).first()
    return {
        "state": state,
        "figures": state.figures if state else [],
        "stops": list(RiskStop.objects.filter(subscription=subscription)[:50]),
    }
