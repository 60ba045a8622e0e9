"""Channels consumers of the risk app: staff alerts of risk stops.

Guards: staff only (an active staff user with view permission on risk stops; anyone else
is closed with 4401 before accept); it joins one group and forwards, never writes.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .monitors import STAFF_ALERT_GROUP

CLOSE_UNAUTHORIZED = 4401


@database_sync_to_async
def _may_watch(user: Any) -> bool:
    return bool(
        user is not None
        and getattr(user, "is_authenticated", False)
        and user.is_active
        and user.is_staff
        and user.has_perm("risk.view_riskstop")
    )


class RiskAlertsConsumer(AsyncJsonWebsocketConsumer):
    """`ws/risk/alerts/`: every risk stop as it fires, `{"type": "risk_stop", "stop":
    {...}}` (the stop's id, rule, policy, detail, subscription or master, times)."""

    async def connect(self) -> None:
        if not await _may_watch(self.scope.get("user")):
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        await self.channel_layer.group_add(STAFF_ALERT_GROUP, self.channel_name)
        self.groups.append(STAFF_ALERT_GROUP)
        await self.accept()

    async def risk_alert(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "risk_stop", "stop": event["stop"]})
