"""The listener's lease keeper outlives transient errors: a Redis restart or a terminated
database connection must not let the lease lapse under a listener that is still streaming."""

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from brokers.models import ListenerShard
from copytrading import listeners
from copytrading.listeners import ShardListener
from tests.factories import make_server

pytestmark = pytest.mark.django_db(transaction=True)


def test_lease_keeper_survives_transient_errors_and_stops_only_when_the_lease_is_gone(
    monkeypatch,
):
    shard = ListenerShard.objects.create(broker_server=make_server())
    listener = ShardListener(shard.pk)
    monkeypatch.setattr(listeners, "HEARTBEAT_SECONDS", 0.01)
    answers = iter([RedisConnectionError("restarting"), RedisConnectionError("again"), True, False])
    calls = []

    def renew() -> bool:
        calls.append(1)
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(listener.lease, "renew", renew)
    refreshed = []

    async def refresh() -> None:
        refreshed.append(1)
        if len(refreshed) == 1:
            raise RedisConnectionError("heartbeat write failed")

    monkeypatch.setattr(listener, "_refresh", refresh)
    asyncio.run(asyncio.wait_for(listener._keep_lease(), timeout=5))
    assert len(calls) == 4  # two failures, one renewal, then "not yours": stop
    assert listener._lost
    assert listener.stop.is_set()
