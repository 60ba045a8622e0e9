"""`?limit=&offset=` of every list endpoint: lists stay plain JSON arrays (the spec's shape).

Bad values are refused (VALIDATION_ERROR naming the parameter), not silently replaced:
a terminal paging with a typo should learn of it. A limit above the maximum is cut to it.
"""

from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from .errors import ApiError

# Far beyond any real page, well inside PostgreSQL's bigint OFFSET.
MAX_OFFSET = 2**31 - 1


def page_size_default() -> int:
    return int(getattr(settings, "API_PAGE_SIZE", 100))


def page_size_max() -> int:
    return int(getattr(settings, "API_MAX_PAGE_SIZE", 1000))


def _int_param(params: Any, name: str, *, default: int, low: int, high: int | None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(
            "VALIDATION_ERROR",
            f"{name} must be a whole number.",
            fields={name: ["must be a whole number"]},
        )
    value = int(raw)
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ApiError(
            "VALIDATION_ERROR", f"{name} must be {bound}.", fields={name: [f"must be {bound}"]}
        )
    return value


def page_bounds(request: Any) -> tuple[int, int]:
    """(offset, limit) of the request; limit defaults to API_PAGE_SIZE, capped at the max."""
    params = request.query_params
    limit = _int_param(params, "limit", default=page_size_default(), low=1, high=None)
    offset = _int_param(params, "offset", default=0, low=0, high=MAX_OFFSET)
    return offset, min(limit, page_size_max())


def paginate(queryset: QuerySet, request: Any) -> QuerySet:
    """One page of an ordered queryset: a LIMIT/OFFSET query, never the whole table."""
    offset, limit = page_bounds(request)
    return queryset[offset : offset + limit]
