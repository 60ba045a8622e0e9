"""Who a client API request acts for: a customer, by bearer token or by session cookie.

Staff users are never customers here, even with a Customer row: the API answers 401
INVALID_CUSTOMER_SESSION to them, as to anyone without a live customer session.
"""

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from rest_framework.authentication import (
    BaseAuthentication,
    SessionAuthentication,
    get_authorization_header,
)
from rest_framework.exceptions import AuthenticationFailed

from ..choices import CustomerStatus
from ..models import Customer, CustomerApiToken
from .tokens import customer_token_resolve

# The session key under which a login stores the id of the token it issued.
SESSION_TOKEN_KEY = "client_api_token_id"  # noqa: S105 - a key name, not a secret


def customer_of_user(user: AbstractBaseUser | AnonymousUser | None) -> Customer | None:
    """The active customer a user logs in as, or None (anonymous, inactive, staff, no customer)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_staff or user.is_superuser:
        return None
    try:
        customer = user.customer  # type: ignore[union-attr]
    except Customer.DoesNotExist:
        return None
    return customer if customer.status == CustomerStatus.ACTIVE else None


class CustomerTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <token>`; a bearer header that does not resolve is a 401,
    never a fall-through to the cookie, so a stale token is noticed at once."""

    keyword = b"bearer"

    def authenticate(self, request: Any) -> tuple[Any, CustomerApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Malformed Authorization header: use 'Bearer <token>'.")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("The token is unknown, expired or revoked.") from None
        token = customer_token_resolve(raw)
        if token is None:
            raise AuthenticationFailed("The token is unknown, expired or revoked.")
        user = token.customer.user
        if customer_of_user(user) is None:
            raise AuthenticationFailed("The token is unknown, expired or revoked.")
        return user, token

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="copytrade"'


class CustomerSessionAuthentication(SessionAuthentication):
    """The session cookie set by /auth/login. CSRF is enforced, as for any cookie: a page
    on another site must not act for a logged-in customer. Token requests need none."""

    def authenticate(self, request: Any) -> tuple[Any, None] | None:
        user = getattr(request._request, "user", None)
        if customer_of_user(user) is None:
            return None
        self.enforce_csrf(request)
        return user, None
