"""Celery tasks of the copy pipeline: thin wrappers that load by id and call a service."""

import asyncio
import logging

from celery import shared_task
from django.conf import settings

from config.redis import get_redis

logger = logging.getLogger(__name__)


# Acknowledged on start, not on finish: a task that runs for minutes would be
# redelivered by the Redis visibility timeout and run twice. A lost listener is
# restarted by listeners_supervise instead.
@shared_task(name="copytrading.listen_shard", acks_late=False, ignore_result=True)
def listen_shard(shard_id: int, max_seconds: float | None = None) -> str:
    """Runs one shard's listener for a session, then hands over to a fresh task."""
    from brokers.models import ListenerShard

    from .listeners import ShardListener

    try:
        listener = ShardListener(
            shard_id, max_seconds=max_seconds or settings.LISTENER_SESSION_SECONDS
        )
    except ListenerShard.DoesNotExist:
        return "gone"
    get_redis().delete(f"ct:starting:{listener.shard.key}")
    outcome = asyncio.run(listener.run())
    if outcome == "stopped":
        # The session ended on time (bounded so a worker can shut down): hand over at
        # once rather than wait for the supervisor.
        listen_shard.delay(shard_id)
    logger.info("listener %s ended: %s", listener.shard.key, outcome)
    return outcome


@shared_task(name="copytrading.supervise_listeners", ignore_result=True)
def supervise_listeners() -> None:
    """Queues a listener for every shard whose lease is free."""
    from .services.listening import listeners_supervise

    listeners_supervise()


@shared_task(name="copytrading.fanout_events", ignore_result=True)
def fanout_events(event_ids: list[int]) -> None:
    """Fans out stored master events (idempotent), then sends the first batch of orders."""
    from .services.fanout import fanout_and_execute

    fanout_and_execute(event_ids=event_ids)


@shared_task(name="copytrading.sweep_master_events", ignore_result=True)
def sweep_master_events() -> None:
    """Re-enqueues the fan-out of events whose enqueue was lost."""
    from .services.events import master_events_sweep

    master_events_sweep()


@shared_task(name="copytrading.execute_instructions", ignore_result=True)
def execute_instructions(server_id: int, instruction_ids: list[int]) -> None:
    """Sends a batch of ready instructions of one follower server (idempotent: claims first)."""
    from .services.execution import instructions_execute

    instructions_execute(server_id=server_id, instruction_ids=instruction_ids)


@shared_task(name="copytrading.recover_instructions", ignore_result=True)
def recover_instructions() -> None:
    """Queues again instructions stuck in flight or whose task was lost, and decides again
    the opens waiting for a closed market."""
    from .services.execution import instructions_recover
    from .services.waiting import market_waits_redecide

    instructions_recover()
    market_waits_redecide()


@shared_task(name="copytrading.push_positions", ignore_result=True, acks_late=False)
def push_positions(link_ids: list[int] | None = None) -> None:
    """Pushes trade link changes to the live pages (best effort: pages resync on reconnect):
    these links, or (no ids) every link waiting in the coalesced set (positions_push_soon)."""
    from .services.live import positions_push, positions_push_pending

    if link_ids is None:
        positions_push_pending()
    else:
        positions_push(link_ids=link_ids)


@shared_task(name="copytrading.reconcile_followers", ignore_result=True)
def reconcile_followers(account_ids: list[int] | None = None) -> None:
    """Compares follower positions at the venues with their trade links and repairs."""
    from .services.reconcile import followers_reconcile

    followers_reconcile(account_ids=account_ids)


@shared_task(name="copytrading.hop_probe", ignore_result=True)
def hop_probe(sent_at: float) -> None:
    """Measures the queue hop (benchmarks only): pushes ms from enqueue to start to Redis."""
    import time

    get_redis().rpush("hop", (time.time() - sent_at) * 1000)


@shared_task(name="copytrading.copy_existing_positions", ignore_result=True)
def copy_existing_positions(subscription_id: int) -> None:
    """Opens copies of the master's open positions for a new subscription (if it asks to)."""
    from .services.existing import subscription_copy_existing

    subscription_copy_existing(subscription_id=subscription_id)
