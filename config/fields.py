"""Field factories for money, volume and prices: one place for digits and places."""

from decimal import Decimal

from django.conf import settings
from django.db import models


def money_field(**kwargs: object) -> models.DecimalField:
    """A money amount; the currency lives in a sibling field."""
    kwargs.setdefault("default", Decimal("0"))
    return models.DecimalField(
        max_digits=settings.MONEY_MAX_DIGITS,
        decimal_places=settings.MONEY_DECIMAL_PLACES,
        **kwargs,
    )


def volume_field(**kwargs: object) -> models.DecimalField:
    """A volume in lots."""
    kwargs.setdefault("default", Decimal("0"))
    return models.DecimalField(
        max_digits=settings.VOLUME_MAX_DIGITS,
        decimal_places=settings.VOLUME_DECIMAL_PLACES,
        **kwargs,
    )


def price_field(**kwargs: object) -> models.DecimalField:
    """A price or a contract size."""
    return models.DecimalField(
        max_digits=settings.PRICE_MAX_DIGITS,
        decimal_places=settings.PRICE_DECIMAL_PLACES,
        **kwargs,
    )
