"""The copy pipeline's live pushes are coalesced: many recorded batches queue one push task,
which sends every waiting link (the default queue is not flooded under load)."""

import pytest
from django.test import override_settings

from config.redis import get_redis
from copytrading.services import live
from copytrading.services.live import (
    PENDING_KEY,
    positions_push_pending,
    positions_push_soon,
)
from copytrading.tasks import push_positions
from tests.copytrading.test_live_positions import _make_subscription, make_link

pytestmark = pytest.mark.django_db

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def test_many_batches_queue_one_push_task_that_sends_them_all(monkeypatch):
    redis = get_redis()
    redis.flushdb()
    sub = _make_subscription()
    links = [make_link(sub) for _ in range(30)]
    for start in range(0, 30, 3):  # ten executor batches
        positions_push_soon(link_ids=[link.id for link in links[start : start + 3]])
    assert redis.llen("default") == 1  # one push task, not ten
    assert redis.scard(PENDING_KEY) == 30
    with override_settings(CHANNEL_LAYERS=IN_MEMORY):
        assert positions_push_pending() == 30
        # Ids added after the task started queue a new task of their own.
        positions_push_soon(link_ids=[links[0].id])
        assert redis.llen("default") == 2
        push_positions()  # the task with no ids drains the set
    assert redis.scard(PENDING_KEY) == 0


def test_a_drain_past_its_limit_hands_the_rest_to_a_fresh_task(monkeypatch):
    redis = get_redis()
    redis.flushdb()
    monkeypatch.setattr(live, "DRAIN_MAX_LINKS", 1000)
    sub = _make_subscription()
    links = [make_link(sub) for _ in range(3)]
    positions_push_soon(link_ids=[link.id for link in links])
    redis.sadd(PENDING_KEY, *range(10**6, 10**6 + 1500))  # ids of links long gone
    with override_settings(CHANNEL_LAYERS=IN_MEMORY):
        positions_push_pending()
    assert 0 < redis.scard(PENDING_KEY) <= 503
    assert redis.llen("default") == 2  # the first task, and the one for the rest
