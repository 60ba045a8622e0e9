"""The client API's error shape: `{"error": CODE, "message": ..., "fields"?: {...}}`.

Every refusal of the API, whether raised by a service (CopyTradingError), by DRF
(validation, authentication, throttling, parsing) or by a view, leaves through
`api_exception_handler`, so a terminal sees one shape and one status per code.
"""

import logging
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

from ..errors import CopyTradingError

logger = logging.getLogger(__name__)

# spec/client-api.md, "Errors". The last two are HTTP-level answers the spec does not
# list: a method a path does not have, and a request that is not JSON at all.
STATUS_BY_CODE: dict[str, int] = {
    "INVALID_CREDENTIALS": 401,
    "INVALID_CUSTOMER_SESSION": 401,
    "INVALID_ACCOUNT": 403,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "MASTER_NOT_FOUND": 404,
    "MASTER_NOT_AVAILABLE": 403,
    "FOLLOWER_NOT_FOUND": 404,
    "FOLLOWER_MODE_NOT_ALLOWED": 403,
    "ALREADY_EXISTS": 409,
    "LIMIT_REACHED": 409,
    "VALIDATION_ERROR": 400,
    "RATE_LIMITED": 429,
    "METHOD_NOT_ALLOWED": 405,
}
ERROR_CODES = tuple(STATUS_BY_CODE)


class ApiError(Exception):
    """A refusal raised by the API layer itself (not by a service), with a spec code."""

    def __init__(self, code: str, message: str, *, fields: Mapping[str, list[str]] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = dict(fields or {})


def error_response(
    code: str,
    message: str,
    *,
    fields: Mapping[str, list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The one way an error leaves the API: the code decides the HTTP status."""
    body: dict[str, Any] = {"error": code, "message": message}
    if fields or code == "VALIDATION_ERROR":
        # Validation errors always carry `fields`, so a client can rely on the key.
        body["fields"] = {
            name: [str(m) for m in messages] for name, messages in (fields or {}).items()
        }
    return Response(body, status=STATUS_BY_CODE[code], headers=dict(headers or {}))


def flatten_detail(detail: Any, name: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as `{"field": ["message", ...]}`; body-level errors under
    "body", nested ones under "outer.inner"."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            if not name:
                sub = "body" if key == "non_field_errors" else str(key)
            else:
                sub = f"{name}.{key}"
            for sub_name, messages in flatten_detail(value, sub).items():
                flat.setdefault(sub_name, []).extend(messages)
    elif isinstance(detail, list | tuple):
        for item in detail:
            for sub_name, messages in flatten_detail(item, name).items():
                flat.setdefault(sub_name, []).extend(messages)
    else:
        flat[name or "body"] = [str(detail)]
    return flat


def validation_message(fields: Mapping[str, list[str]]) -> str:
    """A one-line summary naming each bad field, for clients that only show `message`."""
    parts = [f"{name}: {messages[0]}" for name, messages in fields.items() if messages]
    return "Invalid input. " + "; ".join(parts) if parts else "Invalid input."


def api_exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    """Maps every exception a client API view raises to the spec's error shape.

    Anything not recognised returns None, so DRF re-raises it and it is a 500 (a bug)."""
    if isinstance(exc, CopyTradingError | ApiError):
        code = exc.code if exc.code in STATUS_BY_CODE else "VALIDATION_ERROR"
        return error_response(code, exc.message, fields=exc.fields)
    if isinstance(exc, drf.ValidationError):
        fields = flatten_detail(exc.detail)
        return error_response("VALIDATION_ERROR", validation_message(fields), fields=fields)
    if isinstance(exc, drf.ParseError):
        return error_response(
            "VALIDATION_ERROR", str(exc.detail), fields={"body": [str(exc.detail)]}
        )
    if isinstance(exc, drf.UnsupportedMediaType):
        # The spec has no 415; a body that is not JSON is a body that is not a JSON object.
        message = "The body must be JSON (Content-Type: application/json)."
        return error_response("VALIDATION_ERROR", message, fields={"body": [message]})
    if isinstance(exc, RequestDataTooBig):
        message = "The body is too large."
        return error_response("VALIDATION_ERROR", message, fields={"body": [message]})
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        message = (
            str(exc.detail)
            if isinstance(exc, drf.AuthenticationFailed)
            else "A customer session is required: a bearer token or the session cookie."
        )
        response = error_response("INVALID_CUSTOMER_SESSION", message)
        if getattr(exc, "auth_header", None):
            response["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
        return response
    if isinstance(exc, drf.Throttled):
        headers = {"Retry-After": str(int(exc.wait))} if exc.wait is not None else {}
        return error_response("RATE_LIMITED", "Too many requests; retry later.", headers=headers)
    if isinstance(exc, drf.MethodNotAllowed):
        return error_response("METHOD_NOT_ALLOWED", str(exc.detail))
    if isinstance(exc, drf.PermissionDenied | DjangoPermissionDenied):
        return error_response("PERMISSION_DENIED", str(getattr(exc, "detail", "")) or "Denied.")
    if isinstance(exc, drf.NotFound | Http404):
        return error_response("NOT_FOUND", "No such record.")
    if isinstance(exc, drf.NotAcceptable):
        # Unreachable with the JSON-only negotiation; kept so no DRF error escapes the shape.
        return error_response(
            "VALIDATION_ERROR", str(exc.detail), fields={"Accept": [str(exc.detail)]}
        )
    if isinstance(exc, drf.APIException):
        logger.warning("Unmapped API exception %s", type(exc).__name__)
        return error_response("VALIDATION_ERROR", str(exc.detail))
    return None
