"""The only permission of the client API: the request acts for an active customer."""

from typing import Any

from rest_framework.permissions import BasePermission

from .authentication import customer_of_user


class IsCustomer(BasePermission):
    """Authenticated as a customer (DRF turns a refusal here into 401, since the
    authentication classes name a WWW-Authenticate scheme)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return customer_of_user(request.user) is not None
