"""Celery tasks of the brokers app: thin wrappers that load by id and call a service."""

from celery import shared_task

from .models import BrokerServer


@shared_task(name="brokers.sync_symbols", ignore_result=True)
def sync_symbols(server_id: int) -> None:
    """Loads a server's symbols and lot rules into the back office."""
    from .services import symbols_sync

    server = BrokerServer.objects.filter(pk=server_id, enabled=True).first()
    if server is not None:
        symbols_sync(server=server)


@shared_task(name="brokers.sync_accounts", ignore_result=True)
def sync_accounts() -> None:
    """Refreshes balance, equity and margin of every account in use, server by server."""
    from .services import accounts_sync

    for server in BrokerServer.objects.filter(enabled=True):
        accounts_sync(server=server)
