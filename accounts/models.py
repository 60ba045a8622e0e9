from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from config.fields import money_field

from .choices import CustomerStatus, TradingAccountMode, TradingAccountStatus


class Customer(models.Model):
    """A broker's customer; the only principal the client API acts as.

    Guards: one customer per Django user, so a session maps to exactly one customer.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="customer"
    )
    name = models.CharField(max_length=200)
    email = models.EmailField(db_index=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2 code")
    status = models.CharField(
        max_length=16, choices=CustomerStatus.choices, default=CustomerStatus.ACTIVE
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


class TradingAccount(models.Model):
    """A trading account on one broker server, owned by one customer.

    Guards: a login is unique per broker server (the same number may exist on two
    brokers). Balance, equity and margin are the last values read from the venue,
    with the time they were read: a snapshot, never the source of truth.
    """

    login = models.BigIntegerField()
    broker_server = models.ForeignKey(
        "brokers.BrokerServer", on_delete=models.PROTECT, related_name="accounts"
    )
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="accounts")
    mode = models.CharField(max_length=4, choices=TradingAccountMode.choices)
    group = models.CharField(max_length=100, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    leverage = models.PositiveIntegerField(default=100)
    balance = money_field()
    equity = money_field()
    margin = money_field()
    snapshot_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=TradingAccountStatus.choices, default=TradingAccountStatus.ACTIVE
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords(excluded_fields=["balance", "equity", "margin", "snapshot_at"])

    class Meta:
        ordering = ["broker_server_id", "login"]
        constraints = [
            models.UniqueConstraint(
                fields=["broker_server", "login"], name="tradingaccount_login_unique_per_server"
            ),
            models.CheckConstraint(
                condition=models.Q(leverage__gte=1), name="tradingaccount_leverage_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.login}"


class CustomerApiToken(models.Model):
    """A bearer token of the client API, issued by `POST /auth/login` to one customer.

    Guards: only the SHA-256 of the token is stored (unique, so indexed), so a copy of the
    database gives no usable token; a token is good only before `expires_at` and while
    `revoked_at` is empty (logout sets it; the row stays as a record of the login).
    `session_key` is the session made by the same login, so that logging out with either
    ends both.
    """

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="api_tokens")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    session_key = models.CharField(max_length=40, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "customer API token"

    def __str__(self) -> str:
        return f"API token {self.id} of customer {self.customer_id}"
