"""Writes to broker servers, symbols and symbol maps."""

from typing import Any

from django.db import transaction
from django.utils import timezone

from config.history import save_audited

from .crypto import CredentialsError, encrypt_credentials, reencrypt_credentials
from .models import BrokerServer, Symbol


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
        # The paper venue deduplicates client order ids by its spec; others must say so.
        dedupes_client_order_ids=platform == "Paper",
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


def broker_credentials_reencrypt() -> dict[str, int]:
    """Re-encrypts every server's stored credentials under the first key of
    CREDENTIALS_KEYS (key rotation: add the new key first, run this, then drop the old
    keys). Returns {"servers": with credentials, "reencrypted": rows written}.

    Guards: each row is locked while it is rewritten, in id order; the credentials
    themselves do not change, so history (which never holds the ciphertext) records
    nothing; a row no configured key decrypts stops the run, naming the server, with the
    rows before it already re-encrypted (rerunning is harmless).
    """
    servers = reencrypted = 0
    ids = BrokerServer.objects.exclude(credentials_encrypted="").order_by("id")
    for server_id in ids.values_list("id", flat=True):
        with transaction.atomic():
            server = BrokerServer.objects.select_for_update().get(pk=server_id)
            if not server.credentials_encrypted:
                continue
            servers += 1
            try:
                token = reencrypt_credentials(server.credentials_encrypted)
            except CredentialsError as exc:
                raise CredentialsError(f"broker server {server.name!r}: {exc}") from exc
            # Only the ciphertext, a field history does not track (see BrokerServer).
            BrokerServer.objects.filter(pk=server.pk).update(credentials_encrypted=token)
            reencrypted += 1
    return {"servers": servers, "reencrypted": reencrypted}


def symbols_sync(*, server: BrokerServer, actor: Any = None) -> dict[str, int]:
    """Loads the server's symbols and lot rules into `Symbol`; returns counts.

    Guards: the network call happens before any transaction; rows change only where
    a value differs, each change kept in history with the actor; symbols the
    server no longer lists are marked not trading, never deleted (links point at them).
    """
    from .gateways import sync_gateway_for

    specs = sync_gateway_for(server).list_symbols()
    created = updated = retired = 0
    with transaction.atomic():
        existing = {
            s.name: s for s in Symbol.objects.select_for_update().filter(broker_server=server)
        }
        for spec in specs:
            values = {
                "contract_size": spec.contract_size,
                "min_volume": spec.min_volume,
                "max_volume": spec.max_volume,
                "volume_step": spec.volume_step,
                "digits": spec.digits,
                "margin_currency": spec.margin_currency,
                "trading": spec.trading,
            }
            symbol = existing.pop(spec.symbol, None)
            if symbol is None:
                symbol = Symbol(broker_server=server, name=spec.symbol, **values)
                save_audited(symbol, actor=actor, reason="symbol sync")
                created += 1
            elif any(getattr(symbol, k) != v for k, v in values.items()):
                for k, v in values.items():
                    setattr(symbol, k, v)
                save_audited(symbol, actor=actor, reason="symbol sync")
                updated += 1
        for symbol in existing.values():
            if symbol.trading:
                symbol.trading = False
                save_audited(symbol, actor=actor, reason="symbol sync: no longer listed")
                retired += 1
    return {"created": created, "updated": updated, "retired": retired, "listed": len(specs)}


def accounts_sync(*, server: BrokerServer, logins: list[int] | None = None) -> int:
    """Refreshes balance, equity and margin of the server's accounts in use (those with a
    live master or follower profile, or `logins`); returns how many were read."""
    from accounts.models import TradingAccount
    from accounts.services import trading_account_record_snapshot

    from .gateways import sync_gateway_for

    accounts = TradingAccount.objects.filter(broker_server=server)
    if logins is None:
        from django.db.models import Q

        accounts = accounts.filter(
            Q(copy_masters__deleted_at__isnull=True, copy_masters__isnull=False)
            | Q(copy_followers__deleted_at__isnull=True, copy_followers__isnull=False)
        ).distinct()
    else:
        accounts = accounts.filter(login__in=logins)
    by_login = {a.login: a for a in accounts}
    if not by_login:
        return 0
    gateway = sync_gateway_for(server)
    snapshots = gateway.run(_read_accounts(gateway.gateway, sorted(by_login)))
    for snap in snapshots:
        trading_account_record_snapshot(
            account=by_login[snap.login],
            balance=snap.balance,
            equity=snap.equity,
            margin=snap.margin,
        )
    return len(snapshots)


async def _read_accounts(gateway: Any, logins: list[int], concurrency: int = 20) -> list[Any]:
    """Reads many account snapshots over the pooled session, `concurrency` at a time;
    an account the venue no longer knows is skipped, not fatal."""
    import asyncio

    from .gateways.errors import GatewayError

    limit = asyncio.Semaphore(concurrency)

    async def one(login: int) -> Any:
        async with limit:
            try:
                return await gateway.get_account(login)
            except GatewayError:
                return None

    results = await asyncio.gather(*(one(login) for login in logins))
    return [r for r in results if r is not None]
