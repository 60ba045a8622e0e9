"""Helpers shared by the gateway test modules (waiting on streams, checking Decimals)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from brokers.gateways.rest_ws import RetryPolicy
from brokers.gateways.types import StreamEvent

# Short delays so that retry paths run in milliseconds; many attempts so that a
# seeded 50% fault rate cannot exhaust them.
FAST_RETRY = RetryPolicy(attempts=12, base_delay=0.002, max_delay=0.02, rate_limit_max_wait=1.0)


async def next_event(stream: AsyncIterator[StreamEvent], timeout: float = 5.0) -> StreamEvent:
    """The stream's next event, or TimeoutError after `timeout` seconds."""
    return await asyncio.wait_for(anext(stream), timeout)


async def read_until(
    stream: AsyncIterator[StreamEvent],
    done: Callable[[StreamEvent], bool],
    timeout: float = 5.0,
) -> list[StreamEvent]:
    """Events up to and including the first for which `done` is true, within a deadline."""
    deadline = time.monotonic() + timeout
    seen: list[StreamEvent] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"condition not met in {timeout}s; got {[e.type for e in seen]}")
        try:
            event = await next_event(stream, left)
        except TimeoutError:
            raise TimeoutError(
                f"condition not met in {timeout}s; got {[(e.seq, e.type.value) for e in seen]}"
            ) from None
        seen.append(event)
        if done(event):
            return seen


def floats_in(value: Any, path: str = "result") -> list[str]:
    """Paths of every float inside a normalized value (dataclasses, lists), `raw` excluded."""
    found: list[str] = []
    if isinstance(value, float):
        found.append(path)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            if f.name != "raw":
                found += floats_in(getattr(value, f.name), f"{path}.{f.name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found += floats_in(item, f"{path}[{i}]")
    return found


def assert_decimal_fields(value: Any, *names: str) -> None:
    """Each named field is a Decimal (or None), and nothing in `value` is a float."""
    for name in names:
        field_value = getattr(value, name)
        assert field_value is None or isinstance(field_value, Decimal), (name, field_value)
    assert floats_in(value) == []


def aware(value: datetime | None) -> bool:
    return value is not None and value.tzinfo is not None
