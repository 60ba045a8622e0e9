from django.db import models
from simple_history.models import HistoricalRecords

from config.fields import price_field, volume_field

from .choices import BrokerServerGatewayKind, BrokerServerPlatform


class BrokerServer(models.Model):
    """A trading server of a broker, reached through one gateway kind.

    Guards: credentials are stored only encrypted (`credentials_encrypted`, see
    brokers/crypto.py) and never enter history, logs or the admin; history records
    when they were rotated instead.
    """

    name = models.CharField(max_length=100, unique=True)
    platform = models.CharField(max_length=16, choices=BrokerServerPlatform.choices)
    gateway_kind = models.CharField(
        max_length=16,
        choices=BrokerServerGatewayKind.choices,
        default=BrokerServerGatewayKind.REST_WS,
    )
    base_url = models.URLField(max_length=300)
    credentials_encrypted = models.TextField(blank=True, editable=False)
    credentials_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    symbol_suffix = models.CharField(max_length=16, blank=True)
    dedupes_client_order_ids = models.BooleanField(
        default=False,
        help_text="The platform answers a repeated client order id with the first order. "
        "Off: the gateway looks an order up by its id before any retry.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords(excluded_fields=["credentials_encrypted"])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_credentials(self) -> bool:
        return bool(self.credentials_encrypted)


class Symbol(models.Model):
    """A tradable symbol on one broker server with its lot rules.

    Guards: one row per (server, name); lot rules are positive and ordered so that
    sizing can round down to the step without special cases.
    """

    broker_server = models.ForeignKey(
        BrokerServer, on_delete=models.CASCADE, related_name="symbols"
    )
    name = models.CharField(max_length=32)
    contract_size = price_field()
    min_volume = volume_field()
    max_volume = volume_field()
    volume_step = volume_field()
    digits = models.PositiveSmallIntegerField(default=5)
    margin_currency = models.CharField(max_length=3, blank=True)
    trading = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["broker_server_id", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["broker_server", "name"], name="symbol_unique_per_server"
            ),
            models.CheckConstraint(
                condition=models.Q(volume_step__gt=0)
                & models.Q(min_volume__gt=0)
                & models.Q(max_volume__gte=models.F("min_volume"))
                & models.Q(contract_size__gt=0),
                name="symbol_lot_rules_sane",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class SymbolMap(models.Model):
    """An explicit master symbol -> follower symbol mapping.

    Without a row, the suffix rule applies: strip the master server's suffix, add the
    follower server's. A row with `account` set overrides the server-wide row; a row
    with `source_server` set applies only to masters on that server.

    Guards: at most one mapping per (follower server, account, source server, master
    symbol), NULLs included, so a lookup never finds two answers.
    """

    broker_server = models.ForeignKey(
        BrokerServer,
        on_delete=models.CASCADE,
        related_name="symbol_maps",
        help_text="The follower's server.",
    )
    account = models.ForeignKey(
        "accounts.TradingAccount",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="symbol_maps",
        help_text="Only for this follower account; empty for the whole server.",
    )
    source_server = models.ForeignKey(
        BrokerServer,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Only for masters on this server; empty for any.",
    )
    master_symbol = models.CharField(max_length=32)
    follower_symbol = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["broker_server_id", "master_symbol"]
        constraints = [
            models.UniqueConstraint(
                fields=["broker_server", "account", "source_server", "master_symbol"],
                name="symbolmap_unique_mapping",
                nulls_distinct=False,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.master_symbol} -> {self.follower_symbol}"


class ListenerShard(models.Model):
    """Health of one listener shard: a stream of master events from one broker server.

    Guards nothing by itself (the Redis lease decides who runs a shard); it is what
    staff see: connected or not, last event, lag, reconnects, and the last venue
    sequence stored, from which the shard resumes.
    """

    broker_server = models.ForeignKey(
        BrokerServer, on_delete=models.CASCADE, related_name="listener_shards"
    )
    shard_index = models.PositiveSmallIntegerField(default=0)
    shard_count = models.PositiveSmallIntegerField(default=1)
    last_seq = models.BigIntegerField(default=0)
    connected = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    lag_ms = models.FloatField(null=True, blank=True, help_text="venue ts -> stored, last event")
    reconnects = models.PositiveIntegerField(default=0)
    resyncs = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["broker_server_id", "shard_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["broker_server", "shard_index", "shard_count"],
                name="listenershard_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.broker_server_id}:{self.shard_index}/{self.shard_count}"

    @property
    def key(self) -> str:
        return f"{self.broker_server_id}:{self.shard_index}:{self.shard_count}"
