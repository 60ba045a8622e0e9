"""Opens waiting for a closed market (instruction status `market`), decided again.

A subscription whose limits say `market_closed_policy` wait gets, for a master open while the
follower's market is closed, an open that waits instead of a MARKET_CLOSED skip: decided so
by the fan-out (the follower symbol was known closed) or by the executor (the venue answered
MARKET_CLOSED). Its link stays `opening`, so the master's close waits behind it.

The recovery task (copytrading.recover_instructions, every 5 s) calls
`market_waits_redecide`: it reads the markets of the servers concerned from the venues
(symbols_sync, before any transaction) and decides every waiting open again from fresh
inputs, under its own rule version, with how long it waited and whether the master position
is still open:

- the master position closed meanwhile: skipped, MASTER_POSITION_CLOSED;
- waited longer than the limits' `market_wait_seconds`: skipped, MARKET_WAIT_EXPIRED;
- the market still closed: it keeps waiting;
- otherwise the usual decision (switches, pauses, sizing, every pre-trade check on the
  prices of now): ready, sent under its own client order id.

A skipped open closes its link (status skipped) and releases the closes that waited for it
(they are decided again: OPEN_FAILED).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from brokers.gateways.errors import GatewayError
from brokers.models import BrokerServer
from brokers.services import symbols_sync

from .. import decision as d
from ..choices import CopyInstructionStatus as Status
from ..choices import MasterEventType, TradeLinkStatus
from ..models import CopyInstruction, FollowerOrder, MasterEvent, TradeLink
from .execution import REDECIDED_COLUMNS, _release_waiting, apply_redecision
from .fanout import (
    EventRow,
    build_inputs,
    clear_reference_cache,
    enqueue_execution,
    prefetch_quotes,
    split_inputs,
)

logger = logging.getLogger(__name__)

BATCH = 500


def _master_position_open(event: MasterEvent) -> bool:
    """Whether the master position of this open has not been closed in full since."""
    return not MasterEvent.objects.filter(
        Q(remaining_volume__isnull=True) | Q(remaining_volume=0),
        account_id=event.account_id,
        master_position_id=event.master_position_id,
        event_type=MasterEventType.POSITION_CLOSED,
    ).exists()


def market_waits_redecide(*, now: datetime | None = None) -> int:
    """Decides again the opens waiting for their market (see the module docstring); returns
    how many were decided again. One query when nothing waits."""
    waiting = list(
        CopyInstruction.objects.filter(status=Status.MARKET)
        .order_by("created_at")
        .values_list("id", "follower_account__broker_server_id", "master_event_id")[:BATCH]
    )
    if not waiting:
        return 0
    # The venues say which markets are open again (network, before any transaction).
    for server in BrokerServer.objects.filter(id__in={s for _i, s, _e in waiting}):
        try:
            symbols_sync(server=server)
        except GatewayError as exc:
            logger.warning("market waits: symbols of %s not read: %s", server, exc)
    clear_reference_cache()
    quotes: dict[Any, Any] = {}
    for event in MasterEvent.objects.filter(id__in={e for _i, _s, e in waiting}).select_related(
        "account__broker_server"
    ):
        quotes.update(prefetch_quotes(EventRow.from_model(event)))
    now = now or timezone.now()
    ready: dict[int, list[int]] = defaultdict(list)
    with transaction.atomic():
        instructions = list(
            CopyInstruction.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(id__in=[i for i, _s, _e in waiting], status=Status.MARKET)
            .select_related(
                "master_event__account__broker_server",
                "subscription__follower_account__broker_server",
                "subscription__master_account",
                "subscription__follower",
                "subscription__master",
                "trade_link",
            )
            .order_by("id")
        )
        skipped_links = []
        for inst in instructions:
            event = inst.master_event
            ((_, inputs, _),) = build_inputs(event, [inst.subscription], quotes=quotes)
            own_link = inst.trade_link is not None and inst.trade_link.status == "opening"
            inputs = dataclasses.replace(
                inputs,
                # The link is this open's own, not a copy made before; nor is it one of the
                # open copies max_positions counts.
                link=None,
                open_copied_positions=max(inputs.open_copied_positions - own_link, 0),
                waited_seconds=int((now - inst.created_at).total_seconds()),
                master_position_open=_master_position_open(event),
            )
            decision = d.decide(inputs, rule_version=inst.rule_version)
            shared, own = split_inputs(inputs)
            # Full inputs: the switches may differ from the event's stored ones.
            apply_redecision(inst, decision, own_inputs={**shared, **own})
            if decision.skipped:
                inst.status = Status.SKIPPED
                inst.completed_at = now
                if inst.trade_link_id:
                    skipped_links.append(inst.trade_link_id)
            elif decision.waits_for_market:
                inst.status = Status.MARKET
            else:
                inst.status = Status.READY
                ready[inst.subscription.follower_account.broker_server_id].append(inst.id)
                # A venue's MARKET_CLOSED left the order recorded: it is sent again under
                # its client order id, with the volume decided now.
                FollowerOrder.objects.filter(instruction=inst).update(
                    requested_volume=decision.volume
                )
            inst.save(update_fields=[*REDECIDED_COLUMNS, "status", "completed_at"])
        if skipped_links:
            TradeLink.objects.filter(id__in=skipped_links, status=TradeLinkStatus.OPENING).update(
                status=TradeLinkStatus.SKIPPED, reason="market wait ended", updated_at=now
            )
            for server_id, ids in _release_waiting(skipped_links).items():
                ready[server_id].extend(ids)
        if ready:
            transaction.on_commit(lambda: enqueue_execution(dict(ready)))
    return len(instructions)
