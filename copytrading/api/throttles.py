"""Rate limits of the client API, per connecting IP and per customer, counted in the cache
(Redis), so every ASGI server of a deployment shares one count.

Rates come from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] and are read on every request
(DRF's own throttles freeze them at import), so settings and tests can change them.
"""

import logging
from typing import Any

from django.conf import settings
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


class _ApiRateThrottle(SimpleRateThrottle):
    cache_format = "%(prefix)s:%(scope)s:%(ident)s"

    def get_rate(self) -> str | None:
        # A scope without a rate is not limited.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def cache_key_for(self, ident: str) -> str:
        prefix = getattr(settings, "API_THROTTLE_KEY_PREFIX", "api-throttle")
        return self.cache_format % {"prefix": prefix, "scope": self.scope, "ident": ident}

    def allow_request(self, request: Any, view: Any) -> bool:
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except Exception:
            # Fail open: a cache outage must not lock every customer out of the API.
            logger.warning("Throttle cache unavailable; %s not counted", self.scope, exc_info=True)
            return True


class IpRateThrottle(_ApiRateThrottle):
    """Every request, authenticated or not, counted against the connecting address
    (REST_FRAMEWORK["NUM_PROXIES"] decides whether X-Forwarded-For is trusted)."""

    scope = "api_ip"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_key_for(self.get_ident(request))


class CustomerRateThrottle(_ApiRateThrottle):
    """Requests of one customer, whatever token, session or address it uses."""

    scope = "api_customer"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        customer = getattr(request.user, "customer", None)
        return self.cache_key_for(str(customer.pk)) if customer is not None else None


class LoginRateThrottle(_ApiRateThrottle):
    """Login attempts per address: password guessing is slowed down whatever the username."""

    scope = "api_login"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_key_for(self.get_ident(request))
