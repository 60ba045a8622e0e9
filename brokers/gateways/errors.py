"""One set of reason codes for every broker failure, whatever the platform says.

The copy engine stores these codes (a skipped or rejected follower order names
one), so they are stable strings; a gateway maps its platform's error codes onto
them and nothing above the gateway ever sees a platform code.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import models


class GatewayReason(models.TextChoices):
    """Why a broker call failed or an order was rejected, platform-neutral."""

    INSUFFICIENT_MARGIN = "insufficient_margin", "Insufficient margin"
    INVALID_VOLUME = "invalid_volume", "Invalid volume"
    INVALID_STOPS = "invalid_stops", "Invalid stops"
    MARKET_CLOSED = "market_closed", "Market closed"
    SYMBOL_NOT_FOUND = "symbol_not_found", "Symbol not found"
    ACCOUNT_DISABLED = "account_disabled", "Account disabled"
    ACCOUNT_NOT_FOUND = "account_not_found", "Account not found"
    POSITION_NOT_FOUND = "position_not_found", "Position not found"
    ORDER_NOT_FOUND = "order_not_found", "Order not found"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict", "Idempotency conflict"
    RATE_LIMITED = "rate_limited", "Rate limited"
    UNAVAILABLE = "unavailable", "Broker unavailable"
    TIMEOUT = "timeout", "Timeout"
    VALIDATION = "validation", "Validation error"
    UNAUTHORIZED = "unauthorized", "Unauthorized"
    UNKNOWN = "unknown", "Unknown"


# Reasons after which the same call may succeed later unchanged. A rejection for
# margin or volume is not among them: resending the same order gives the same answer.
RETRYABLE_REASONS: frozenset[GatewayReason] = frozenset(
    {GatewayReason.RATE_LIMITED, GatewayReason.UNAVAILABLE, GatewayReason.TIMEOUT}
)

# The venue protocol's error codes (spec/paper-venue.md, "Errors"), each to one reason.
VENUE_ERROR_REASONS: Mapping[str, GatewayReason] = {
    "UNAUTHORIZED": GatewayReason.UNAUTHORIZED,
    "ACCOUNT_NOT_FOUND": GatewayReason.ACCOUNT_NOT_FOUND,
    "POSITION_NOT_FOUND": GatewayReason.POSITION_NOT_FOUND,
    "ORDER_NOT_FOUND": GatewayReason.ORDER_NOT_FOUND,
    "IDEMPOTENCY_CONFLICT": GatewayReason.IDEMPOTENCY_CONFLICT,
    "INVALID_VOLUME": GatewayReason.INVALID_VOLUME,
    "INVALID_STOPS": GatewayReason.INVALID_STOPS,
    "SYMBOL_NOT_FOUND": GatewayReason.SYMBOL_NOT_FOUND,
    "INSUFFICIENT_MARGIN": GatewayReason.INSUFFICIENT_MARGIN,
    "MARKET_CLOSED": GatewayReason.MARKET_CLOSED,
    "ACCOUNT_DISABLED": GatewayReason.ACCOUNT_DISABLED,
    "VALIDATION_ERROR": GatewayReason.VALIDATION,
    "RATE_LIMITED": GatewayReason.RATE_LIMITED,
    "UNAVAILABLE": GatewayReason.UNAVAILABLE,
}

# Used only when a body carries no code we know (a proxy's HTML 502, say): the
# status is then the best evidence of what happened.
_STATUS_REASONS: Mapping[int, GatewayReason] = {
    401: GatewayReason.UNAUTHORIZED,
    403: GatewayReason.UNAUTHORIZED,
    408: GatewayReason.TIMEOUT,
    422: GatewayReason.VALIDATION,
    429: GatewayReason.RATE_LIMITED,
    502: GatewayReason.UNAVAILABLE,
    503: GatewayReason.UNAVAILABLE,
    504: GatewayReason.TIMEOUT,
}


def reason_for_venue_code(code: object) -> GatewayReason:
    """Maps a venue error code to its reason; any code not in the protocol is UNKNOWN."""
    if isinstance(code, str):
        return VENUE_ERROR_REASONS.get(code.strip().upper(), GatewayReason.UNKNOWN)
    return GatewayReason.UNKNOWN


def reason_for_response(status: int, code: object) -> GatewayReason:
    """The reason for an error answer: its code when known, else its HTTP status.

    A known code always wins over the status, so a venue that answers 400 with
    INVALID_VOLUME is still an invalid volume.
    """
    reason = reason_for_venue_code(code)
    if reason is not GatewayReason.UNKNOWN:
        return reason
    return _STATUS_REASONS.get(status, GatewayReason.UNKNOWN)


class GatewayError(Exception):
    """A broker call that did not succeed, with a platform-neutral reason.

    Guarantees: `reason` is always a GatewayReason; `retryable` says whether the
    same call may succeed later unchanged (defaults from the reason); `message`
    never contains credentials (gateways build it from the broker's answer only).
    `code` keeps the platform's own error code for the record, when there was one.
    `outcome_unknown` is True when the request may have been acted on before it
    failed (a timeout or a 503 after sending an order): the caller must not assume
    nothing happened, and resends only under the same client order id.
    """

    def __init__(
        self,
        reason: GatewayReason,
        message: str = "",
        http_status: int | None = None,
        retryable: bool | None = None,
        *,
        code: str | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        self.reason = GatewayReason(reason)
        self.message = message or self.reason.label
        self.http_status = http_status
        self.retryable = self.reason in RETRYABLE_REASONS if retryable is None else retryable
        self.code = code
        self.outcome_unknown = outcome_unknown
        super().__init__(self.message)

    def __str__(self) -> str:
        status = f" (HTTP {self.http_status})" if self.http_status is not None else ""
        return f"{self.reason.value}: {self.message}{status}"

    def __repr__(self) -> str:
        return (
            f"GatewayError(reason={self.reason.value!r}, message={self.message!r}, "
            f"http_status={self.http_status!r}, retryable={self.retryable!r}, "
            f"outcome_unknown={self.outcome_unknown!r})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # Celery pickles exceptions between processes; keep every attribute.
        return (
            _rebuild_gateway_error,
            (
                self.reason.value,
                self.message,
                self.http_status,
                self.retryable,
                self.code,
                self.outcome_unknown,
            ),
        )


def _rebuild_gateway_error(
    reason: str,
    message: str,
    http_status: int | None,
    retryable: bool,
    code: str | None,
    outcome_unknown: bool,
) -> GatewayError:
    return GatewayError(
        GatewayReason(reason),
        message,
        http_status,
        retryable,
        code=code,
        outcome_unknown=outcome_unknown,
    )
