"""Client API fixtures: two customers with accounts and profiles, and throttle counts
kept apart per test (they live in the shared Redis)."""

import uuid
from typing import Any

import pytest

from tests.api.support import HIGH_RATES, Side, make_side


@pytest.fixture(autouse=True)
def _api_throttles_apart(settings: Any) -> None:
    # A fresh key prefix per test: counts from other tests (or a concurrent run) never
    # leak in. High rates, so only the throttling tests ever see a 429.
    settings.API_THROTTLE_KEY_PREFIX = f"api-throttle-test-{uuid.uuid4().hex}"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": HIGH_RATES}


@pytest.fixture
def alice(db: Any) -> Side:
    return make_side(name="alice")


@pytest.fixture
def bob(db: Any) -> Side:
    return make_side(name="bob")
