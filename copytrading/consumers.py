"""Channels consumers of the copytrading app: live positions.

Guards: a consumer authenticates, joins the groups its user may watch, and forwards;
it never writes to the database. What a user may watch is decided by
copytrading.selectors (one place), once per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .selectors import (
    LiveScope,
    live_positions_scope,
    trade_links_in_scope,
    trade_links_open_in_scope,
)
from .services.live import STAFF_GROUP, follower_group, link_payload, master_group

# Close code for "not signed in, or not allowed": 4000-4999 are free for applications,
# and 4401 reads as HTTP 401. Sent before accept, so servers answer the handshake 403.
CLOSE_UNAUTHORIZED = 4401

# Live prices of watched links are pushed this often (quotes are cached 1 s per symbol,
# so many pages watching the same links ask the venue once a second).
PRICE_PUSH_SECONDS = 1.0
MAX_WATCHED = 500

# How many link versions a connection remembers to drop duplicates (a customer who owns
# both ends of a link is in both of its groups and gets each update twice).
_SEEN_MAX = 2048


@database_sync_to_async
def _scope_for(user: Any) -> LiveScope | None:
    return live_positions_scope(user)


@database_sync_to_async
def _prices(scope: LiveScope, link_ids: list[int]) -> dict[str, Any]:
    from .prices import link_prices

    return link_prices(link_ids, links=trade_links_in_scope(scope))


@database_sync_to_async
def _snapshot(scope: LiveScope) -> list[dict[str, Any]]:
    return [link_payload(link) for link in trade_links_open_in_scope(scope)]


class PositionsConsumer(AsyncJsonWebsocketConsumer):
    """`ws/positions/`: live trade link updates for staff (everything, batched) and for
    customers (links touching their own trading accounts).

    Frames sent: `{"type": "snapshot", "links": [...]}` once after connect (the open
    links the user may see, so a page that reconnects converges from the database), then
    `{"type": "position", "link": {...}}` per update, or `{"type": "positions", "links":
    [...]}` for a staff batch. Anyone else is closed with 4401 before accept.
    """

    async def connect(self) -> None:
        self._seen: OrderedDict[tuple[int, str | None], None] = OrderedDict()
        self._watched: list[int] = []
        self._price_task: asyncio.Task | None = None
        scope = await _scope_for(self.scope.get("user"))
        self._live_scope = scope
        if scope is None:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        if scope.staff:
            names = [STAFF_GROUP]
        else:
            names = [g(a) for a in scope.account_ids for g in (follower_group, master_group)]
        # Channels' base consumer discards `self.groups` on disconnect.
        # Join before reading the snapshot: an update committed after the read then
        # arrives as a message, so nothing falls between the two (at worst it comes twice,
        # and a client keeps the newer by `updated_at`).
        for name in names:
            await self.channel_layer.group_add(name, self.channel_name)
            self.groups.append(name)
        await self.accept()
        await self.send_json({"type": "snapshot", "links": await _snapshot(scope)})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The only message a client may send: `{"type": "watch_prices", "links": [ids]}`,
        the links whose live price and P&L it wants pushed (`{"type": "prices", ...}` every
        second, limited to what its scope may see). Anything else is ignored."""
        if not isinstance(content, dict) or content.get("type") != "watch_prices":
            return
        links = content.get("links")
        if not isinstance(links, list):
            return
        self._watched = [x for x in links if isinstance(x, int) and not isinstance(x, bool)][
            :MAX_WATCHED
        ]
        if self._price_task is None:
            self._price_task = asyncio.create_task(self._push_prices())

    async def _push_prices(self) -> None:
        while True:
            if self._watched and self._live_scope is not None:
                prices = await _prices(self._live_scope, list(self._watched))
                if prices:
                    await self.send_json({"type": "prices", "prices": prices})
            await asyncio.sleep(PRICE_PUSH_SECONDS)

    async def disconnect(self, code: int) -> None:
        if getattr(self, "_price_task", None) is not None:
            self._price_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._price_task

    async def position_update(self, event: dict[str, Any]) -> None:
        """A `position.update` from copytrading.services.live.positions_push: one link
        (follower or master group) or a batch (staff group), forwarded as one frame."""
        if "links" in event:
            await self.send_json({"type": "positions", "links": event["links"]})
            return
        link = event["link"]
        key = (link["id"], link.get("updated_at"))
        if key in self._seen:
            return
        self._seen[key] = None
        if len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)
        await self.send_json({"type": "position", "link": link})
