"""Builders for the staff back office tests: one copied trade's full evidence trail.

The evidence rows (event, instruction, order, states, fills, link) are written the way
the engine writes them, directly: these tests read them, the engine's own tests make them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from brokers.models import Symbol
from copytrading.models import (
    CopyInstruction,
    CopySubscription,
    Fill,
    FollowerOrder,
    FollowerOrderTransition,
    MasterEvent,
    TradeLink,
)
from tests.factories import make_subscription

_n = iter(range(1, 1_000_000))


@dataclass
class Trade:
    sub: CopySubscription
    event: MasterEvent
    instruction: CopyInstruction
    order: FollowerOrder
    link: TradeLink
    fill: Fill


def copied_trade(
    sub: CopySubscription | None = None,
    *,
    latency_ms: int = 40,
    master_price: str = "1.10000",
    follower_price: str = "1.10002",
    side: str = "buy",
    at: Any = None,
) -> Trade:
    """A master open copied to `sub`: event -> instruction -> order (sent, filled) -> fill
    -> open link, with the venue times `latency_ms` apart."""
    sub = sub or make_subscription()
    n = next(_n)
    venue_ts = at or timezone.now() - timedelta(minutes=5)
    event = MasterEvent.objects.create(
        broker_server_id=sub.master_account.broker_server_id,
        account=sub.master_account,
        venue_event_id=f"ev{n}",
        venue_seq=n,
        event_type="position_opened",
        master_position_id=f"mp{n}",
        symbol="EURUSD",
        side=side,
        order_type="market",
        volume=Decimal("1"),
        price=Decimal(master_price),
        raw={"type": "position_opened", "position": {"id": f"mp{n}", "price": master_price}},
        decision_context={"event": {"symbol": "EURUSD"}, "kill_switches": {"platform": False}},
        venue_ts=venue_ts,
        received_at=venue_ts,
        fanout_state="done",
    )
    link = TradeLink.objects.create(
        subscription=sub,
        master_account=sub.master_account,
        follower_account=sub.follower_account,
        master_position_id=f"mp{n}",
        follower_position_id=f"fp{n}",
        symbol="EURUSD",
        follower_symbol="EURUSD",
        side=side,
        master_volume=Decimal("1"),
        follower_volume=Decimal("0.5"),
        open_price=Decimal(follower_price),
        status="open",
        opened_at=venue_ts,
    )
    instruction = CopyInstruction.objects.create(
        origin="event",
        master_event=event,
        subscription=sub,
        follower_account=sub.follower_account,
        trade_link=link,
        action="open",
        status="done",
        rule_version="r1",
        inputs={"subscription": {"risk_multiplier": "0.5"}},
        decision={"action": "open", "volume": "0.5", "side": side},
        client_order_id=f"ct{event.id}s{sub.id}",
        follower_symbol="EURUSD",
        side=side,
        volume=Decimal("0.5"),
    )
    filled_at = venue_ts + timedelta(milliseconds=latency_ms)
    order = FollowerOrder.objects.create(
        instruction=instruction,
        broker_server_id=sub.follower_account.broker_server_id,
        account=sub.follower_account,
        client_order_id=instruction.client_order_id,
        action="open",
        symbol="EURUSD",
        side=side,
        order_type="market",
        requested_volume=Decimal("0.5"),
        filled_volume=Decimal("0.5"),
        price=Decimal(follower_price),
        venue_position_id=f"fp{n}",
        status="filled",
        sent_at=venue_ts,
        venue_ts=filled_at,
        completed_at=filled_at,
    )
    FollowerOrderTransition.objects.create(order=order, status="sent", at=venue_ts)
    FollowerOrderTransition.objects.create(
        order=order, status="filled", at=filled_at, venue_ts=filled_at
    )
    fill = Fill.objects.create(
        order=order,
        volume=Decimal("0.5"),
        price=Decimal(follower_price),
        venue_position_id=f"fp{n}",
        venue_ts=filled_at,
    )
    Symbol.objects.get_or_create(
        broker_server_id=sub.follower_account.broker_server_id,
        name="EURUSD",
        defaults={
            "contract_size": Decimal("100000"),
            "min_volume": Decimal("0.01"),
            "max_volume": Decimal("100"),
            "volume_step": Decimal("0.01"),
        },
    )
    return Trade(sub, event, instruction, order, link, fill)
