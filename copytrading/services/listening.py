"""Keeping one listener running per shard, on whatever worker picks it up."""

from django.conf import settings

from brokers.models import BrokerServer, ListenerShard
from config.redis import get_redis

from ..leases import lease_holder
from ..listeners import shard_lease_name
from ..models import CopyMaster

# While a listener task is queued but not yet running, do not queue another.
_STARTING_TTL_MS = 15_000


def listener_shards_ensure() -> list[ListenerShard]:
    """The shards that should run: one set per enabled server that has master accounts,
    or followers the risk monitors watch (their account updates come from the stream)."""
    from risk.monitors import monitored_server_ids

    count = settings.LISTENER_SHARDS_PER_SERVER
    server_ids = (
        set(
            CopyMaster.objects.filter(account__broker_server__enabled=True).values_list(
                "account__broker_server_id", flat=True
            )
        )
        | monitored_server_ids()
    )
    shards = []
    servers = BrokerServer.objects.filter(id__in=server_ids, enabled=True).order_by("id")
    for server in servers:
        for index in range(count):
            shard, _ = ListenerShard.objects.get_or_create(
                broker_server=server, shard_index=index, shard_count=count
            )
            shards.append(shard)
    return shards


def listeners_supervise() -> list[int]:
    """Queues a listener for every shard whose lease is free; returns the shard ids queued.

    Guards: a shard whose holder died loses its lease after the lease TTL (10 s) and is
    queued again on the next run of this task (every few seconds), so a dead listener
    is replaced within 15 s; a marker keeps a queued-but-not-started task from being
    queued twice.
    """
    from ..tasks import listen_shard

    queued = []
    redis = get_redis()
    for shard in listener_shards_ensure():
        if lease_holder(shard_lease_name(shard)) is not None:
            continue
        if not redis.set(f"ct:starting:{shard.key}", "1", nx=True, px=_STARTING_TTL_MS):
            continue
        listen_shard.delay(shard.id)
        queued.append(shard.id)
    return queued
