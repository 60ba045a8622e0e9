"""Copy health figures for the staff dashboard: reads only, each a fixed number of queries.

Latency of a copied trade is the venue's time of the follower order minus the venue's
time of the master event it copies (both venue clocks, so our queueing is inside it
and the clock of this machine is not). Slippage is the follower's fill price against
the master's fill price, signed so that a positive figure is worse for the follower
(paid more on a buy, got less on a sell), in price units of the symbol.

Guards: every figure comes from stored rows (orders, fills, events, instructions), so
what the dashboard shows can be recomputed by anyone with the database; nothing here
writes or calls a venue. Percentiles are PostgreSQL's `percentile_cont`, so a page does
not load a window's rows into Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from brokers.models import ListenerShard

from .choices import (
    CopyInstructionOrigin,
    CopyInstructionStatus,
    FollowerOrderStatus,
    SubscriptionSyncStatus,
    TradeLinkStatus,
)
from .models import CopyInstruction, CopySubscription, FollowerOrder, TradeLink

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(days=1)}
CHART_BUCKETS = 12

# Follower side of the order -> +1 when a higher fill price is worse for the follower.
# Opens buy (or sell) the position's side; closes trade the other way.
_SLIPPAGE_SQL = """
    CASE
        WHEN (o.action IN ('open', 'place_pending')) = (o.side = 'buy') THEN 1
        ELSE -1
    END * (o.price - e.price)
"""
_LATENCY_SQL = "EXTRACT(EPOCH FROM (o.venue_ts - e.venue_ts)) * 1000"
_COPIED_FROM = """
    FROM copytrading_followerorder o
    JOIN copytrading_copyinstruction i ON i.id = o.instruction_id
    JOIN copytrading_masterevent e ON e.id = i.master_event_id
    WHERE o.venue_ts IS NOT NULL AND o.venue_ts >= %s
      AND o.status IN ('filled', 'partially_filled')
"""


@dataclass(frozen=True)
class CopiedTrade:
    """One copied order with its latency (ms) and slippage (price units)."""

    order_id: int
    client_order_id: str
    action: str
    symbol: str
    side: str
    master_price: Decimal | None
    follower_price: Decimal | None
    latency_ms: float | None
    slippage: Decimal | None
    venue_ts: datetime


@dataclass
class CopyHealth:
    """Every figure of the copy health page for one window."""

    window: str
    since: datetime
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    slippage_avg: Decimal | None = None
    slippage_p99: Decimal | None = None
    copied: int = 0
    orders_sent: int = 0
    orders_filled: int = 0
    orders_failed: int = 0
    instructions: int = 0
    instructions_failed: int = 0
    skips_by_reason: list[tuple[str, int]] = field(default_factory=list)
    rejections_by_reason: list[tuple[str, int]] = field(default_factory=list)
    latency_series: list[float | None] = field(default_factory=list)
    volume_series: list[int] = field(default_factory=list)
    trades: list[CopiedTrade] = field(default_factory=list)
    listeners: list[ListenerShard] = field(default_factory=list)
    drifting: list[CopySubscription] = field(default_factory=list)

    @property
    def fill_rate(self) -> float | None:
        """Filled (fully or partly) over orders that got an answer, 0..1."""
        answered = self.orders_filled + self.orders_failed
        return self.orders_filled / answered if answered else None

    @property
    def error_rate(self) -> float | None:
        """Failed over decided-to-act instructions (skips excluded), 0..1."""
        return self.instructions_failed / self.instructions if self.instructions else None

    @property
    def skips(self) -> int:
        return sum(n for _, n in self.skips_by_reason)

    @property
    def rejections(self) -> int:
        return sum(n for _, n in self.rejections_by_reason)


def _latency_and_slippage(since: datetime) -> tuple[Any, ...]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY {_LATENCY_SQL}),
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY {_LATENCY_SQL}),
                   AVG({_SLIPPAGE_SQL}) FILTER (WHERE o.price IS NOT NULL AND e.price IS NOT NULL),
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY {_SLIPPAGE_SQL})
                       FILTER (WHERE o.price IS NOT NULL AND e.price IS NOT NULL),
                   COUNT(*)
            {_COPIED_FROM}
            """,  # noqa: S608 - constant SQL fragments, values are parameters
            [since],
        )
        return cursor.fetchone()


def _series(since: datetime, span: timedelta) -> tuple[list[float | None], list[int]]:
    """p50 latency and copied-order count per bucket of the window, oldest first."""
    bucket = span.total_seconds() / CHART_BUCKETS
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT LEAST(FLOOR(EXTRACT(EPOCH FROM (o.venue_ts - %s)) / %s), %s)::int AS b,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY {_LATENCY_SQL}),
                   COUNT(*)
            {_COPIED_FROM}
            GROUP BY b ORDER BY b
            """,  # noqa: S608 - constant SQL fragments, values are parameters
            [since, bucket, CHART_BUCKETS - 1, since],
        )
        rows = {b: (p50, n) for b, p50, n in cursor.fetchall()}
    latency = [rows[b][0] if b in rows else None for b in range(CHART_BUCKETS)]
    counts = [rows[b][1] if b in rows else 0 for b in range(CHART_BUCKETS)]
    return latency, counts


def copied_trades(*, since: datetime, limit: int = 50) -> list[CopiedTrade]:
    """The latest copied orders since `since` with their latency and slippage."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT o.id, o.client_order_id, o.action, o.symbol, o.side, e.price, o.price,
                   {_LATENCY_SQL}, {_SLIPPAGE_SQL}, o.venue_ts
            {_COPIED_FROM}
            ORDER BY o.venue_ts DESC, o.id DESC
            LIMIT %s
            """,  # noqa: S608 - constant SQL fragments, values are parameters
            [since, limit],
        )
        return [CopiedTrade(*row) for row in cursor.fetchall()]


def copy_health(*, window: str = "1h", now: datetime | None = None) -> CopyHealth:
    """The copy health figures of the last hour ("1h") or day ("24h")."""
    if window not in WINDOWS:
        window = "1h"
    now = now or timezone.now()
    span = WINDOWS[window]
    since = now - span
    health = CopyHealth(window=window, since=since)
    p50, p99, slip_avg, slip_p99, copied = _latency_and_slippage(since)
    health.latency_p50_ms = float(p50) if p50 is not None else None
    health.latency_p99_ms = float(p99) if p99 is not None else None
    health.slippage_avg = (
        Decimal(slip_avg).quantize(Decimal("0.00000001")) if slip_avg is not None else None
    )
    health.slippage_p99 = (
        Decimal(str(slip_p99)).quantize(Decimal("0.00000001")) if slip_p99 is not None else None
    )
    health.copied = copied
    orders = FollowerOrder.objects.filter(created_at__gte=since).aggregate(
        sent=Count("id"),
        filled=Count(
            "id",
            filter=Q(status__in=[FollowerOrderStatus.FILLED, FollowerOrderStatus.PARTIALLY_FILLED]),
        ),
        failed=Count(
            "id", filter=Q(status__in=[FollowerOrderStatus.REJECTED, FollowerOrderStatus.FAILED])
        ),
    )
    health.orders_sent = orders["sent"]
    health.orders_filled = orders["filled"]
    health.orders_failed = orders["failed"]
    instructions = CopyInstruction.objects.filter(created_at__gte=since).aggregate(
        acted=Count("id", filter=~Q(status=CopyInstructionStatus.SKIPPED)),
        failed=Count("id", filter=Q(status=CopyInstructionStatus.FAILED)),
    )
    health.instructions = instructions["acted"]
    health.instructions_failed = instructions["failed"]
    health.skips_by_reason = list(
        CopyInstruction.objects.filter(
            created_at__gte=since,
            status=CopyInstructionStatus.SKIPPED,
            origin=CopyInstructionOrigin.EVENT,
        )
        .values_list("reason")
        .annotate(n=Count("id"))
        .order_by("-n", "reason")
    )
    health.rejections_by_reason = list(
        FollowerOrder.objects.filter(
            created_at__gte=since,
            status__in=[FollowerOrderStatus.REJECTED, FollowerOrderStatus.FAILED],
        )
        .values_list("reason")
        .annotate(n=Count("id"))
        .order_by("-n", "reason")
    )
    health.latency_series, health.volume_series = _series(since, span)
    health.trades = copied_trades(since=since)
    health.listeners = list(ListenerShard.objects.select_related("broker_server"))
    health.drifting = drifting_subscriptions()
    return health


def drifting_subscriptions(limit: int = 200) -> list[CopySubscription]:
    """Subscriptions whose follower does not hold what its links say, worst drift first."""
    return list(
        CopySubscription.objects.exclude(sync_status=SubscriptionSyncStatus.IN_SYNC)
        .select_related("follower_account", "master_account", "master")
        .order_by("-drift", "id")[:limit]
    )


@dataclass(frozen=True)
class Overview:
    """The landing dashboard's headline figures."""

    open_positions: int
    drifting: int
    listeners_up: int
    listeners: int
    skips_1h: int
    rejections_1h: int
    latency_p50_ms: float | None
    risk_stops_open: int = 0


def overview(*, now: datetime | None = None) -> Overview:
    """Headline figures for the admin index: a handful of cheap aggregate queries."""
    now = now or timezone.now()
    since = now - WINDOWS["1h"]
    shards = ListenerShard.objects.aggregate(
        up=Count("id", filter=Q(connected=True)), total=Count("id")
    )
    p50 = _latency_and_slippage(since)[0]
    return Overview(
        open_positions=TradeLink.objects.filter(status=TradeLinkStatus.OPEN).count(),
        drifting=CopySubscription.objects.exclude(
            sync_status=SubscriptionSyncStatus.IN_SYNC
        ).count(),
        listeners_up=shards["up"],
        listeners=shards["total"],
        skips_1h=CopyInstruction.objects.filter(
            created_at__gte=since, status=CopyInstructionStatus.SKIPPED
        ).count(),
        rejections_1h=FollowerOrder.objects.filter(
            created_at__gte=since,
            status__in=[FollowerOrderStatus.REJECTED, FollowerOrderStatus.FAILED],
        ).count(),
        latency_p50_ms=float(p50) if p50 is not None else None,
        risk_stops_open=_open_risk_stops(),
    )


def _open_risk_stops() -> int:
    from risk.models import RiskStop

    return RiskStop.objects.filter(cleared_at__isnull=True).count()


def sparkline_svg(
    values: list[float | None] | list[int], *, width: int = 240, height: int = 48
) -> str:
    """A small server-rendered SVG line of `values` (None leaves a gap), no JavaScript.
    Returns markup built only from numbers, so it is safe to mark safe."""
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    if not points:
        return (
            f'<svg class="spark" width="{width}" height="{height}" role="img" '
            f'aria-label="no data"><text x="4" y="{height // 2}" font-size="11">no data</text>'
            "</svg>"
        )
    top = max(float(v) for _, v in points) or 1.0
    step = width / max(len(values) - 1, 1)
    coords = " ".join(
        f"{i * step:.1f},{height - 2 - (float(v) / top) * (height - 6):.1f}" for i, v in points
    )
    dots = "".join(
        f'<circle cx="{i * step:.1f}" cy="{y:.1f}" r="2"/>'
        for i, v in points
        for y in [height - 2 - (float(v) / top) * (height - 6)]
    )
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="max {top:g}"><polyline fill="none" stroke-width="1.5" '
        f'points="{coords}"/>{dots}</svg>'
    )
