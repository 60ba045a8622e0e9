"""OpenAPI pieces drf-spectacular cannot infer: the auth schemes, the decimal input
field, the error answers of each operation, and one path per route in the schema
(each route also answers with a trailing slash; the schema lists the bare one)."""

from collections import defaultdict
from typing import Any

from django.conf import settings
from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.utils import OpenApiResponse

from .errors import STATUS_BY_CODE
from .fields import DECIMAL_STRING
from .serializers import ErrorSerializer

# Every client API operation may answer these.
ALWAYS = ("INVALID_CUSTOMER_SESSION", "RATE_LIMITED", "METHOD_NOT_ALLOWED")


def error_responses(*codes: str, authenticated: bool = True) -> dict[int, OpenApiResponse]:
    """The error answers of an operation, one per HTTP status, naming the codes behind it."""
    always = ALWAYS if authenticated else ("RATE_LIMITED", "METHOD_NOT_ALLOWED")
    by_status: dict[int, list[str]] = defaultdict(list)
    for code in (*codes, *always):
        if code not in by_status[STATUS_BY_CODE[code]]:
            by_status[STATUS_BY_CODE[code]].append(code)
    return {
        status: OpenApiResponse(ErrorSerializer, description="Error: " + ", ".join(names) + ".")
        for status, names in sorted(by_status.items())
    }


class CustomerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.CustomerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The token from POST /auth/login; it expires "
            f"{settings.API_TOKEN_LIFETIME_SECONDS} s after the login.",
        }


class CustomerSessionScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.CustomerSessionAuthentication"
    name = "cookieAuth"
    priority = 1

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "The session cookie set by POST /auth/login. Writes with the "
            "cookie need the CSRF token (X-CSRFToken header); with a bearer token they do not.",
        }


class DecimalInFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "copytrading.api.fields.DecimalInField"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        field = self.target
        # OpenAPI 3.0: exclusiveMinimum is a flag on minimum.
        number: dict[str, Any] = {
            "type": "number",
            "minimum": float(field.low),
            "maximum": float(field.high),
        }
        if field.low_open:
            number["exclusiveMinimum"] = True
        return {
            "oneOf": [number, {"type": "string", "pattern": DECIMAL_STRING.pattern}],
            "description": f"A decimal as a JSON number or a string, at most {field.places} "
            "decimal places; answers write it as a string.",
        }


def drop_trailing_slash_twins(endpoints: list[tuple], **kwargs: Any) -> list[tuple]:
    """Preprocessing hook: `/x/` answers like `/x`; the schema lists `/x` only."""
    return [endpoint for endpoint in endpoints if not endpoint[0].endswith("/")]


def query_parameters_may_be_empty(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: `?status=&limit=` (an empty value) means "not given" in this API,
    as the spec writes its filters; say so on every query parameter."""
    for item in result.get("paths", {}).values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query":
                    parameter["allowEmptyValue"] = True
    return result
