"""Serializer fields that take the spec's wire types and nothing looser.

DRF's own fields coerce ("1" -> 1, 1.0 -> 1, 123 -> "123", true -> 1); a terminal that
sends the wrong type must hear VALIDATION_ERROR instead, so these refuse it.
"""

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from rest_framework import serializers

MAX_BIGINT = 2**63 - 1
DECIMAL_STRING = re.compile(r"^[0-9]{1,16}(\.[0-9]{1,16})?$")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: not a string, not a float, not true/false."""

    default_error_messages = {"invalid": "must be an integer"}

    def to_internal_value(self, data: Any) -> int:
        if not _is_int(data):
            self.fail("invalid")
        return int(data)

    def to_representation(self, value: Any) -> int:
        return int(value)


class LoginField(StrictIntegerField):
    """A trading account login: a positive 64-bit integer."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_BIGINT)
        super().__init__(**kwargs)


class IntChoiceField(serializers.ChoiceField):
    """An integer enum (flags are the enum 0/1); answers with the integer, never a bool."""

    default_error_messages = {"invalid_choice": "must be one of {choices}"}

    def __init__(self, choices: list[int], **kwargs: Any) -> None:
        self.allowed = list(choices)
        super().__init__(choices=[(c, c) for c in choices], **kwargs)

    def to_internal_value(self, data: Any) -> int:
        if not _is_int(data) or data not in self.allowed:
            self.fail("invalid_choice", choices=self.allowed)
        return int(data)

    def to_representation(self, value: Any) -> int:
        return int(value)


def FlagField(**kwargs: Any) -> IntChoiceField:  # noqa: N802 - reads as a field class
    """A flag: the integer 0 or 1 (the seed's wire type)."""
    return IntChoiceField([0, 1], **kwargs)


class StrictCharField(serializers.CharField):
    """A JSON string (a number is not a string)."""

    default_error_messages = {"invalid": "must be a string"}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    """A string enum."""

    default_error_messages = {"invalid_choice": "must be one of {choices}"}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str) or data not in self.choices:
            self.fail("invalid_choice", choices=list(self.choices))
        return data


class DecimalInField(serializers.Field):
    """A decimal given as a JSON number or a plain decimal string ("0.5"), kept exact.

    Bounds: `low` (exclusive when `low_open`) to `high`; at most `places` decimal places
    once trailing zeros are dropped. Exponents, signs and spaces in strings are refused.
    """

    default_error_messages = {
        "invalid": 'must be a decimal number (a JSON number or a string like "0.5")',
        "range": "must be {bound} and <= {high}",
        "places": "must have at most {places} decimal places",
    }

    def __init__(
        self, *, low: Decimal, high: Decimal, low_open: bool = False, places: int = 4, **kwargs: Any
    ) -> None:
        self.low, self.high, self.low_open, self.places = low, high, low_open, places
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, str):
            if not DECIMAL_STRING.match(data):
                self.fail("invalid")
            number = Decimal(data)
        elif isinstance(data, int | Decimal):
            number = Decimal(data)
        else:
            self.fail("invalid")
        if not number.is_finite():
            self.fail("invalid")
        too_low = number <= self.low if self.low_open else number < self.low
        if too_low or number > self.high:
            bound = f"> {self.low}" if self.low_open else f">= {self.low}"
            self.fail("range", bound=bound, high=self.high)
        try:
            exact = number.quantize(Decimal(1).scaleb(-self.places))
        except InvalidOperation:
            self.fail("invalid")
        if exact != number:
            self.fail("places", places=self.places)
        return exact

    def to_representation(self, value: Any) -> str:
        return str(value)
