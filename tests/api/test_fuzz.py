"""Schema-driven fuzzing: schemathesis generates requests from the published schema
(valid ones and, separately, invalid ones) and sends them in-process, as a logged-in
customer, to the WSGI application. No answer may be a 5xx, and every answer must match
the schema (status, content type, body); invalid input must be refused with a 4xx.

Bounded: a fixed number of examples per operation, derandomized, no example database.
"""

import os
import time
from collections import Counter
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.api.tokens import customer_token_issue
from tests.api.support import make_side
from tests.factories import make_account, make_subscription

pytestmark = pytest.mark.django_db

# Per operation, kept small for CI time; API_FUZZ_EXAMPLES=40 (or more) for a deeper run.
POSITIVE_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "20"))
NEGATIVE_EXAMPLES = max(1, POSITIVE_EXAMPLES * 3 // 5)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Logging out would end the session the rest of the run uses; it is tested in test_auth.
SKIPPED = {("POST", "/auth/logout")}


@pytest.fixture
def wsgi_app():
    # A real WSGI handler closes "old" connections at the start and end of each request;
    # inside a test transaction that would drop the transaction, so not here (Django's
    # test client does the same).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield WSGIHandler()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_customer():
    """A customer owning the logins of the schema's examples (100001, 100002), so the
    explicit examples reach the success paths, plus the usual two-sided world."""
    side = make_side(name="fuzz")
    make_account(customer=side.customer, login=100001, mode="REAL")
    make_account(customer=side.customer, login=100002, mode="DEMO")
    other = make_side(name="other")
    sub = make_subscription(follower=side.follower, master=other.master)
    raw, _ = customer_token_issue(customer=side.customer)
    return {
        "headers": {"Authorization": f"Bearer {raw}"},
        # Ids of the customer's own records, so updates and deletes reach success too.
        "own_ids": {
            "/copytrade/master/{id}": side.master.pk,
            "/copytrade/follower/{id}": side.follower.pk,
            "/copytrade/subscription/{id}": sub.pk,
        },
    }


def _run(
    operation: Any,
    mode: Any,
    examples: int,
    headers: dict,
    checks: list,
    statuses: Counter,
    **strategy: Any,
) -> int:
    calls = 0

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, **strategy))
    def check(case: Any) -> None:
        nonlocal calls
        calls += 1
        response = case.call(headers=headers)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=checks, headers=headers)

    check()
    return calls


def test_fuzz_the_api_against_its_schema(wsgi_app, fuzz_customer):
    schema = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)
    started = time.monotonic()
    calls = 0
    statuses: Counter = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 15
    headers = fuzz_customer["headers"]
    for operation in operations:
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        positive = schemathesis.GenerationMode.POSITIVE
        calls += _run(operation, positive, POSITIVE_EXAMPLES, headers, CHECKS, statuses)
        own_id = fuzz_customer["own_ids"].get(operation.path)
        if own_id is not None:
            calls += _run(
                operation,
                positive,
                POSITIVE_EXAMPLES,
                headers,
                CHECKS,
                statuses,
                path_parameters={"id": own_id},
            )
        calls += _run(
            operation,
            schemathesis.GenerationMode.NEGATIVE,
            NEGATIVE_EXAMPLES,
            headers,
            [*CHECKS, negative_data_rejection],
            statuses,
        )
    elapsed = time.monotonic() - started
    print(
        f"schemathesis: {calls} requests over {len(operations)} operations in {elapsed:.1f}s, "
        f"statuses {dict(sorted(statuses.items()))}"
    )
    assert calls >= 300
    # Valid requests reached the success paths too, not only refusals.
    assert all(statuses[status] for status in (200, 201, 204)), statuses
    assert not any(status >= 500 for status in statuses)
