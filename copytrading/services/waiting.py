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

Closes, partial closes and cancels the venue refused with MARKET_CLOSED wait too, whatever
the subscription's policy and with no expiry (a follower must not keep what its master
closed; the executor puts them in `market`). They are not decided again: a refused order did
nothing at the venue, so each pass

- ends one whose link is no longer open or pending (the follower position or order gone
  meanwhile: reconciliation saw a stop-out, a staff remedy closed it): skipped,
  ALREADY_CLOSED;
- ends one whose follower position the venue no longer holds while its market is still
  closed (its positions are asked, one call per follower account): a margin stop-out is
  recorded by risk (link closed as stopped out, the subscription stopped), any other close
  (its own stop, by hand) closes the link "closed at the venue, not by the back office";
  the close is skipped, ALREADY_CLOSED, at once rather than when the market reopens;
- keeps one waiting while the follower's market is closed;
- otherwise sends it again as it was (same client order id and volume), the oldest waiting
  one of each link per pass and none while another close of the link is ready or in flight,
  so the closes of one position go out in order, one at a time. A position gone
  at the venue answers POSITION_NOT_FOUND, and the executor ends the close and its link.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from brokers.gateways.errors import GatewayError
from brokers.models import BrokerServer, Symbol
from brokers.services import symbols_sync

from .. import decision as d
from ..choices import CopyInstructionAction as Action
from ..choices import CopyInstructionStatus as Status
from ..choices import MasterEventType, TradeLinkStatus
from ..models import CopyInstruction, FollowerOrder, MasterEvent, TradeLink
from .execution import (
    REDECIDED_COLUMNS,
    WAITS_FOR_MARKET,
    _release_waiting,
    apply_redecision,
)
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
    """Decides again the opens waiting for their market, and sends again the closes that
    waited for it (see the module docstring); returns how many were looked at. One query
    when nothing waits."""
    waiting = list(
        CopyInstruction.objects.filter(status=Status.MARKET)
        .order_by("created_at")
        .values_list("id", "follower_account__broker_server_id", "master_event_id", "action")[
            :BATCH
        ]
    )
    if not waiting:
        return 0
    # The venues say which markets are open again (network, before any transaction).
    for server in BrokerServer.objects.filter(id__in={s for _i, s, _e, _a in waiting}):
        try:
            symbols_sync(server=server)
        except GatewayError as exc:
            logger.warning("market waits: symbols of %s not read: %s", server, exc)
    clear_reference_cache()
    closes_at = {i: s for i, s, _e, action in waiting if action in WAITS_FOR_MARKET}
    close_ids = list(closes_at)
    # (follower server, symbol) of the markets still closed, as just synced: read once for
    # the pass, by the vanished-position check and by the closes' release.
    closed_markets = (
        set(
            Symbol.objects.filter(
                trading=False, broker_server_id__in=set(closes_at.values())
            ).values_list("broker_server_id", "name")
        )
        if closes_at
        else set()
    )
    gone = _gone_positions(close_ids, closed_markets)
    quotes: dict[Any, Any] = {}
    open_events = {e for _i, _s, e, action in waiting if action not in WAITS_FOR_MARKET}
    for event in MasterEvent.objects.filter(id__in=open_events).select_related(
        "account__broker_server"
    ):
        quotes.update(prefetch_quotes(EventRow.from_model(event)))
    now = now or timezone.now()
    ready: dict[int, list[int]] = defaultdict(list)
    with transaction.atomic():
        instructions = list(
            CopyInstruction.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(id__in=[i for i, _s, _e, _a in waiting], status=Status.MARKET)
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
        closes = [i for i in instructions if i.action in WAITS_FOR_MARKET]
        if closes:
            _closes_release(closes, ready, now, closed_markets=closed_markets, gone=gone)
        skipped_links = []
        for inst in instructions:
            if inst.action in WAITS_FOR_MARKET:
                continue  # released above
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


def _gone_positions(close_ids: list[int], closed_markets: set[tuple[int, str]]) -> set[int]:
    """Links of the waiting closes whose follower position has gone from the venue while its
    market is closed: one positions call per follower account (network, before any
    transaction; an account whose venue does not answer is asked again next pass). Those the
    venue's margin stop-out closed are recorded by risk here (it closes their links, with its
    reason); the others are returned, their links closed by `_closes_release`."""
    from risk.monitors import stop_outs_record, stopped_out_positions

    from .reconcile import _positions_of

    if not close_ids or not closed_markets:
        return set()
    links = [
        (link_id, position_id, account_id, server_id, symbol)
        for link_id, position_id, account_id, server_id, symbol in CopyInstruction.objects.filter(
            id__in=close_ids,
            action__in=(Action.CLOSE, Action.PARTIAL_CLOSE),
            trade_link__status=TradeLinkStatus.OPEN,
        )
        .exclude(trade_link__follower_position_id="")
        .values_list(
            "trade_link_id",
            "trade_link__follower_position_id",
            "follower_account_id",
            "follower_account__broker_server_id",
            "follower_symbol",
        )
        if (server_id, symbol) in closed_markets  # an open market: the venue answers
    ]
    if not links:
        return set()
    from accounts.models import TradingAccount
    from brokers.gateways import sync_gateway_for

    accounts = TradingAccount.objects.filter(id__in={a for _l, _p, a, _s, _y in links})
    by_server: dict[int, list[TradingAccount]] = defaultdict(list)
    for account in accounts.select_related("broker_server"):
        by_server[account.broker_server_id].append(account)
    gone: set[int] = set()
    for server_accounts in by_server.values():
        gateway = sync_gateway_for(server_accounts[0].broker_server)
        held = gateway.run(_positions_of(gateway.gateway, [a.login for a in server_accounts]))
        for account in server_accounts:
            positions = held.get(account.login)
            if positions is None:
                continue
            live = {str(p.position_id) for p in positions}
            vanished = {
                link_id: str(position_id)
                for link_id, position_id, account_id, _s, _y in links
                if account_id == account.id and str(position_id) not in live
            }
            if not vanished:
                continue
            stopped = stopped_out_positions(account=account, position_ids=list(vanished.values()))
            if stopped:
                stop_outs_record(
                    server_id=account.broker_server_id,
                    stop_outs=[{"login": account.login, "position_id": p} for p in sorted(stopped)],
                )
            gone |= {link_id for link_id, pid in vanished.items() if pid not in stopped}
    return gone


def _closes_release(
    closes: list[CopyInstruction],
    ready: dict[int, list[int]],
    now: datetime,
    *,
    closed_markets: set[tuple[int, str]],
    gone: set[int] = frozenset(),  # type: ignore[assignment]
) -> None:
    """The waiting closes (locked, in id order): ended, kept waiting or made ready (added to
    `ready` by follower server), as the module docstring says. `closed_markets`: (follower
    server, symbol) still closed; `gone`: links whose follower position the venue no longer
    holds (`_gone_positions`): closed here, their closes ended."""
    ended_links: dict[int, TradeLink] = {}
    for inst in closes:
        link = inst.trade_link
        if link is None or link.id not in gone:
            continue
        if link.id not in ended_links and link.status == TradeLinkStatus.OPEN:
            link.status = TradeLinkStatus.CLOSED
            link.reason = "closed at the venue, not by the back office"
            link.follower_volume = Decimal(0)
            link.closed_at = now
            link.save(
                update_fields=["status", "reason", "follower_volume", "closed_at", "updated_at"]
            )
            ended_links[link.id] = link
        if link.id in ended_links:
            inst.trade_link = ended_links[link.id]
    # A link with a close already on its way gets the next one on a later pass.
    sent_links = set(
        CopyInstruction.objects.filter(
            trade_link_id__in={i.trade_link_id for i in closes if i.trade_link_id},
            status__in=(Status.READY, Status.IN_FLIGHT),
        ).values_list("trade_link_id", flat=True)
    )
    changed = []
    for inst in closes:
        link, server_id = inst.trade_link, inst.subscription.follower_account.broker_server_id
        market_closed = (server_id, inst.follower_symbol) in closed_markets
        if link is not None and link.status not in (TradeLinkStatus.OPEN, TradeLinkStatus.PENDING):
            inst.status = Status.SKIPPED
            inst.reason = d.SkipReason.ALREADY_CLOSED.value
            inst.detail = (
                f"the follower's {'order' if inst.action == Action.CANCEL_PENDING else 'position'}"
                f" was gone before its market reopened (link {link.status}"
                f"{': ' + link.reason if link.reason else ''})"
            )[:500]
            inst.completed_at = now
        elif market_closed or inst.trade_link_id in sent_links:
            continue
        else:
            inst.status = Status.READY
            ready[server_id].append(inst.id)
            if inst.trade_link_id:
                sent_links.add(inst.trade_link_id)
        changed.append(inst)
    for inst in changed:
        inst.save(update_fields=["status", "reason", "detail", "completed_at"])
