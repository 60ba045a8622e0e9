"""Writes to broker servers, symbols and symbol maps."""

from typing import Any

from django.db import transaction
from django.utils import timezone

from config.history import save_audited

from .crypto import encrypt_credentials
from .models import BrokerServer


@transaction.atomic
def broker_server_create(
    *,
    name: str,
    platform: str,
    base_url: str,
    gateway_kind: str = "rest_ws",
    symbol_suffix: str = "",
    credentials: dict[str, str] | None = None,
    enabled: bool = True,
    actor: Any = None,
) -> BrokerServer:
    """Creates a broker server; credentials, if given, are stored encrypted only."""
    server = BrokerServer(
        name=name,
        platform=platform,
        base_url=base_url,
        gateway_kind=gateway_kind,
        symbol_suffix=symbol_suffix,
        enabled=enabled,
    )
    if credentials:
        server.credentials_encrypted = encrypt_credentials(credentials)
        server.credentials_rotated_at = timezone.now()
    save_audited(server, actor=actor, reason="broker server created")
    return server


@transaction.atomic
def broker_server_set_credentials(
    *, server: BrokerServer, credentials: dict[str, str], actor: Any, reason: str = ""
) -> None:
    """Replaces a server's credentials. Guards: the plain text is never stored or logged;
    history shows only that (and when, and by whom) they were rotated."""
    server.credentials_encrypted = encrypt_credentials(credentials)
    server.credentials_rotated_at = timezone.now()
    save_audited(server, actor=actor, reason=reason or "credentials rotated")
