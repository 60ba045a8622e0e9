"""Broker gateways: one interface (`Gateway`), one implementation per platform protocol.

- Async code (listeners): `gateway = gateway_for(server)`, then `await` its
  methods; `await gateway.close()` (or `async with`) when done. One gateway per
  event loop.
- Sync code (Celery tasks): `sync_gateway_for(server)` returns this process's
  `SyncGateway` for the server, created on first use and reused by every later
  task, so one pooled HTTP session serves them all. Do not close it in a task;
  `close_sync_gateways()` runs at interpreter exit (and can be wired to worker
  shutdown).

Credentials are decrypted here and only here, handed to the gateway, and never
logged or shown.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import threading
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from brokers.choices import BrokerServerGatewayKind, BrokerServerPlatform
from brokers.crypto import decrypt_credentials

from .base import UNCHANGED, EventStream, Gateway
from .errors import GatewayError, GatewayReason
from .rest_ws import RestWsGateway, RetryPolicy
from .sync import SyncGateway
from .types import (
    AccountSnapshot,
    CloseResult,
    Deal,
    OrderRequest,
    OrderResult,
    OrderStatus,
    OrderType,
    PendingOrder,
    Position,
    Side,
    StreamEvent,
    StreamEventType,
    SymbolSpec,
)

if TYPE_CHECKING:
    from brokers.models import BrokerServer

__all__ = [
    "UNCHANGED",
    "AccountSnapshot",
    "CloseResult",
    "Deal",
    "EventStream",
    "Gateway",
    "GatewayError",
    "GatewayReason",
    "OrderRequest",
    "OrderResult",
    "OrderStatus",
    "OrderType",
    "PendingOrder",
    "Position",
    "RestWsGateway",
    "RetryPolicy",
    "Side",
    "StreamEvent",
    "StreamEventType",
    "SymbolSpec",
    "SyncGateway",
    "close_sync_gateways",
    "gateway_for",
    "sync_gateway_for",
]


def _api_key_for(server: BrokerServer) -> str:
    credentials = decrypt_credentials(server.credentials_encrypted)
    api_key = credentials.get("api_key") or ""
    if not api_key and server.platform == BrokerServerPlatform.PAPER:
        # The embedded paper venue runs with the project's own key by default.
        api_key = settings.PAPER_VENUE_KEY
    if not api_key:
        raise GatewayError(
            GatewayReason.UNAUTHORIZED,
            f"broker server {server.name!r} has no API key in its credentials",
        )
    return api_key


def gateway_for(server: BrokerServer, **options: Any) -> Gateway:
    """A new gateway for a broker server, by its `gateway_kind`.

    Guarantees: credentials are decrypted only here and go straight into the
    gateway (never into a log, a message or the gateway's repr); the paper
    venue, which deduplicates client order ids, gets resend-on-retry, every other
    platform gets lookup-before-retry. `options` go to the implementation
    (timeouts, RetryPolicy...). Raises ImproperlyConfigured for a kind with no
    implementation, GatewayError(unauthorized) when no API key is available.
    The caller owns the gateway and closes it.
    """
    kind = server.gateway_kind
    if kind == BrokerServerGatewayKind.REST_WS:
        options.setdefault("dedupes_client_order_ids", server.dedupes_client_order_ids)
        return RestWsGateway(
            server.base_url,
            _api_key_for(server),
            platform=server.platform,
            name=server.name,
            **options,
        )
    raise ImproperlyConfigured(f"no gateway implements kind {kind!r} (server {server.name!r})")


# One SyncGateway per broker server per process, keyed by everything that would
# make an existing one wrong (URL, kind, platform, credentials), so an edit or a
# key rotation gets a fresh gateway on the next task.
_sync_gateways: dict[object, tuple[tuple[object, ...], SyncGateway]] = {}
_sync_pid = os.getpid()
_sync_lock = threading.Lock()


def _sync_key(server: BrokerServer) -> tuple[object, ...]:
    fingerprint = hashlib.sha256(server.credentials_encrypted.encode()).hexdigest()
    return (server.gateway_kind, server.base_url, server.platform, server.name, fingerprint)


def sync_gateway_for(server: BrokerServer) -> SyncGateway:
    """This process's SyncGateway for a broker server, made on first use and then reused.

    Guarantees: one pooled session per (process, server) across every task; a
    server whose URL, platform or credentials changed gets a new gateway (the
    old one is closed); after a fork (Celery prefork) the child never reuses the
    parent's loop thread, which does not exist in it.
    """
    global _sync_pid
    with _sync_lock:
        if os.getpid() != _sync_pid:
            # Inherited from the parent: their threads did not survive the fork.
            _sync_gateways.clear()
            _sync_pid = os.getpid()
        key = _sync_key(server)
        entry = _sync_gateways.get(server.pk)
        if entry is not None and entry[0] == key and not entry[1].closed:
            return entry[1]
        stale = entry[1] if entry is not None else None
        sync_gateway = SyncGateway(gateway_for(server))
        _sync_gateways[server.pk] = (key, sync_gateway)
    if stale is not None:
        stale.close()
    return sync_gateway


def close_sync_gateways() -> None:
    """Closes every SyncGateway of this process (worker shutdown, tests)."""
    with _sync_lock:
        if os.getpid() != _sync_pid:
            _sync_gateways.clear()
            return
        entries = list(_sync_gateways.values())
        _sync_gateways.clear()
    for _, sync_gateway in entries:
        sync_gateway.close()


atexit.register(close_sync_gateways)
