"""Reads for staff about the pre-trade limits: how close each is to firing now, and the
history of the opens they stopped or cut (the copy instructions, with every check result).

The figures have the shape of the post-trade monitor's (risk.admin.closeness_html shows
both): {"rule", "value", "limit", "used_pct", "fired", "unit", "detail"}.
"""

from __future__ import annotations

import contextlib
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import Q, Sum

from copytrading.choices import TradeLinkStatus
from copytrading.models import CopyInstruction, TradeLink

from .models import SubscriptionLimits

# Skip reasons a pre-trade check gives (copytrading.decision.SkipReason).
PRETRADE_REASONS = (
    "NO_MASTER_SL",
    "MAX_SLIPPAGE",
    "NO_PRICE",
    "MAX_LOTS_PER_SYMBOL",
    "MAX_LOTS_TOTAL",
    "MAX_LEVERAGE",
    "MAX_RISK_PER_TRADE",
    "INSUFFICIENT_MARGIN",
    "MARKET_WAIT_EXPIRED",
    "MASTER_POSITION_CLOSED",
)
_HELD = [TradeLinkStatus.OPENING, TradeLinkStatus.OPEN, TradeLinkStatus.PENDING]
_PCT = Decimal("0.1")


def _figure(
    rule: str, value: Decimal, limit: Decimal, detail: str, *, reached_fires: bool = True
) -> dict[str, Any]:
    """One closeness line. A lots limit fires once reached (no further lot fits); a
    per-trade limit only beyond it (equal passes)."""
    used = (value / limit * 100).quantize(_PCT, rounding=ROUND_HALF_UP) if limit else Decimal(0)
    return {
        "rule": rule,
        "value": str(value),
        "limit": str(limit),
        "used_pct": str(used),
        "fired": value >= limit if reached_fires else value > limit,
        "unit": "amount",
        "detail": detail,
    }


def pretrade_closeness(limits: SubscriptionLimits) -> list[dict[str, Any]]:
    """How close each pre-trade limit that is set is to firing now: open copied lots (in
    total, and on the most held symbol), the per-trade limits as the last checked open saw
    them (risk per trade, slippage, margin), and the follower account's leverage (used margin x
    account leverage / equity, from the last account snapshot). A lots figure at 100% means
    the next open is skipped; below, it is cut to what is left."""
    figures: list[dict[str, Any]] = []
    if limits.max_lots_total or limits.max_lots_per_symbol:
        per_symbol = list(
            TradeLink.objects.filter(subscription_id=limits.subscription_id, status__in=_HELD)
            .values("follower_symbol")
            .annotate(lots=Sum("follower_volume"))
            .order_by("-lots", "follower_symbol")
        )
        if limits.max_lots_total:
            total = sum((row["lots"] for row in per_symbol), Decimal(0))
            figures.append(
                _figure(
                    "MAX_LOTS_TOTAL",
                    total,
                    limits.max_lots_total,
                    "open copied lots of this subscription",
                )
            )
        if limits.max_lots_per_symbol:
            top = per_symbol[0] if per_symbol else {"follower_symbol": "-", "lots": Decimal(0)}
            figures.append(
                _figure(
                    "MAX_LOTS_PER_SYMBOL",
                    top["lots"],
                    limits.max_lots_per_symbol,
                    f"most held symbol: {top['follower_symbol']}",
                )
            )
    figures.extend(_last_open_figures(limits))
    if limits.max_leverage:
        account = limits.subscription.follower_account
        leverage = (
            (account.margin * account.leverage / account.equity).quantize(Decimal("0.01"))
            if account.equity > 0
            else Decimal(0)
        )
        figures.append(
            _figure(
                "MAX_LEVERAGE",
                leverage,
                limits.max_leverage,
                "account notional / equity from the last snapshot",
            )
        )
    return figures


# Per-trade checks: (check code, figure compared, the limit's figure), read from the last
# open the checks ran on: what the next one of the same size and price would see.
_PER_TRADE = (
    ("MAX_RISK_PER_TRADE", "risk_pct", "max_risk_pct"),
    ("MAX_SLIPPAGE", "distance", "max_slippage"),
    ("INSUFFICIENT_MARGIN", "required_margin", "free_margin"),
)


def _last_open_figures(limits: SubscriptionLimits) -> list[dict[str, Any]]:
    """How close each per-trade limit that is set (risk per trade, slippage, margin) came on
    the latest open that check ran on: one query per such limit."""
    wanted = {
        "MAX_RISK_PER_TRADE": bool(limits.max_risk_per_trade_pct),
        "MAX_SLIPPAGE": bool(limits.max_slippage),
        "INSUFFICIENT_MARGIN": limits.margin_policy != "off",
    }
    found = []
    for code, value, limit in _PER_TRADE:
        if not wanted[code]:
            continue
        last = (
            CopyInstruction.objects.filter(
                subscription_id=limits.subscription_id,
                decision__checks__contains=[{"code": code}],
            )
            .order_by("-id")
            .values_list("id", "decision")
            .first()
        )
        if last is None:
            continue
        inst_id, decision = last
        for check in decision.get("checks") or []:
            figures = check.get("figures") or {}
            if check.get("code") != code or value not in figures or limit not in figures:
                continue
            with contextlib.suppress(ArithmeticError):
                found.append(
                    _figure(
                        code,
                        Decimal(figures[value]),
                        Decimal(figures[limit]),
                        f"at the last open checked (instruction {inst_id}): {check['outcome']}",
                        reached_fires=False,
                    )
                )
    return found


def pretrade_stops(subscription_id: int, *, limit: int = 10) -> list[CopyInstruction]:
    """The latest opens a pre-trade check skipped or cut on this subscription, newest first."""
    return list(
        CopyInstruction.objects.filter(subscription_id=subscription_id)
        .filter(Q(reason__in=PRETRADE_REASONS) | Q(decision__checks__contains=[{"outcome": "cut"}]))
        .order_by("-id")[:limit]
    )
