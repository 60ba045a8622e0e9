"""Issuing, resolving and revoking client API tokens.

Guards: the raw token exists only in the login answer; the database holds its SHA-256.
A token resolves only while it is unexpired, unrevoked, and its customer is active.
"""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from ..choices import CustomerStatus
from ..models import Customer, CustomerApiToken


def token_lifetime() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "API_TOKEN_LIFETIME_SECONDS", 12 * 3600)))


def hash_token(raw: str) -> str:
    # A random 256-bit token needs no salt or slow hash: it cannot be guessed from a list.
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def customer_token_issue(
    *, customer: Customer, session_key: str = ""
) -> tuple[str, CustomerApiToken]:
    """Creates a token for `customer`; returns the raw token (shown once) and its row."""
    raw = secrets.token_urlsafe(32)
    token = CustomerApiToken.objects.create(
        customer=customer,
        key_hash=hash_token(raw),
        session_key=session_key or "",
        expires_at=timezone.now() + token_lifetime(),
    )
    return raw, token


def live_tokens() -> QuerySet[CustomerApiToken]:
    return CustomerApiToken.objects.filter(
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
        customer__status=CustomerStatus.ACTIVE,
    )


def customer_token_resolve(raw: str) -> CustomerApiToken | None:
    """The live token `raw` stands for, with its customer and user, in one query; else None."""
    if not raw or len(raw) > 200:
        return None
    return live_tokens().select_related("customer__user").filter(key_hash=hash_token(raw)).first()


def customer_token_revoke(*, token: CustomerApiToken) -> None:
    """Ends a token now; revoking twice keeps the first time."""
    CustomerApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def customer_tokens_purge(*, older_than: timedelta = timedelta(days=1)) -> int:
    """Deletes token rows expired or revoked more than `older_than` ago; returns how many.
    (They can never authenticate again; keeping them a day helps support answer questions.)"""
    cutoff = timezone.now() - older_than
    deleted, _ = CustomerApiToken.objects.filter(
        Q(expires_at__lt=cutoff) | Q(revoked_at__lt=cutoff)
    ).delete()
    return deleted
