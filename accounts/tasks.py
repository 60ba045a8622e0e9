"""Celery tasks of the accounts app."""

from celery import shared_task


@shared_task(name="accounts.purge_api_tokens", ignore_result=True)
def purge_api_tokens() -> None:
    """Deletes customer API tokens that expired or were revoked a day ago or more."""
    from .api.tokens import customer_tokens_purge

    customer_tokens_purge()
