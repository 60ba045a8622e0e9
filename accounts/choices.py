from django.db import models


class CustomerStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    CLOSED = "closed", "Closed"


class TradingAccountMode(models.TextChoices):
    REAL = "REAL", "Real"
    DEMO = "DEMO", "Demo"


class TradingAccountStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DISABLED = "disabled", "Disabled"
    ARCHIVED = "archived", "Archived"
