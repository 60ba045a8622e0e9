"""Live prices and floating P&L of open trade links, from the follower venues' quotes.

Read by the live positions pages: pushed over their WebSocket every second while a page
watches links, and served over HTTP as the page's fallback while the socket is down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.core.cache import cache

from brokers.gateways.errors import GatewayError
from brokers.models import Symbol

from .models import TradeLink
from .selectors import OPEN_LINK_STATUSES

QUOTE_CACHE_SECONDS = 1.0
MAX_LINKS = 500


def quotes(server: Any, symbols: set[str]) -> dict[str, Any]:
    """Current quotes of `symbols` on one server, cached for a second so a room of staff
    watching the same page asks the venue once."""
    from brokers.gateways import sync_gateway_for

    found: dict[str, Any] = {}
    missing = []
    for symbol in sorted(symbols):
        hit = cache.get(f"staff-quote:{server.pk}:{symbol}")
        if hit is not None:
            found[symbol] = hit
        else:
            missing.append(symbol)
    if not missing:
        return found
    gateway = sync_gateway_for(server)

    async def all_quotes() -> list[Any]:
        return await asyncio.gather(
            *(gateway.gateway.get_quote(s) for s in missing), return_exceptions=True
        )

    try:
        answers = gateway.run(all_quotes(), timeout=5)
    except (GatewayError, RuntimeError):
        return found
    for symbol, quote in zip(missing, answers, strict=True):
        if isinstance(quote, BaseException):
            continue
        value = {"bid": str(quote.bid), "ask": str(quote.ask), "ts": quote.ts.isoformat()}
        cache.set(f"staff-quote:{server.pk}:{symbol}", value, QUOTE_CACHE_SECONDS)
        found[symbol] = value
    return found


def position_pnl(
    *,
    side: str,
    volume: Decimal,
    open_price: Decimal | None,
    bid: Decimal,
    ask: Decimal,
    contract: Decimal,
) -> tuple[Decimal, Decimal | None]:
    """(the price the position would close at, its floating P&L in the symbol's quote
    currency): a buy closes at the bid, a sell at the ask."""
    price = bid if side == "buy" else ask
    if open_price is None:
        return price, None
    move = price - open_price if side == "buy" else open_price - price
    return price, (move * volume * contract).quantize(Decimal("0.01"))


def link_prices(link_ids: Iterable[int], *, links: Any = None) -> dict[str, Any]:
    """{link id: {"price", "pnl", "ts"}} of the given open links (at most 500), in Decimal
    strings. `links` narrows the query (a queryset already scoped to what the user may see)."""
    ids = list(link_ids)[:MAX_LINKS]
    queryset = links if links is not None else TradeLink.objects.all()
    links = list(
        queryset.filter(id__in=ids, status__in=OPEN_LINK_STATUSES).select_related(
            "follower_account__broker_server"
        )
    )
    by_server: dict[int, tuple[Any, set[str]]] = {}
    for link in links:
        server = link.follower_account.broker_server
        by_server.setdefault(server.pk, (server, set()))[1].add(link.follower_symbol)
    current = {sid: quotes(server, symbols) for sid, (server, symbols) in by_server.items()}
    contracts = {
        (s.broker_server_id, s.name): s.contract_size
        for s in Symbol.objects.filter(
            broker_server_id__in=list(by_server),
            name__in={link.follower_symbol for link in links},
        )
    }
    prices: dict[str, Any] = {}
    for link in links:
        server_id = link.follower_account.broker_server_id
        quote = current.get(server_id, {}).get(link.follower_symbol)
        if quote is None:
            prices[str(link.id)] = {"price": None, "pnl": None}
            continue
        price, pnl = position_pnl(
            side=link.side,
            volume=link.follower_volume,
            open_price=link.open_price,
            bid=Decimal(quote["bid"]),
            ask=Decimal(quote["ask"]),
            contract=contracts.get((server_id, link.follower_symbol), Decimal(1)),
        )
        prices[str(link.id)] = {
            "price": format(price, "f"),
            "pnl": format(pnl, "f") if pnl is not None else None,
            "ts": quote["ts"],
        }
    return prices
