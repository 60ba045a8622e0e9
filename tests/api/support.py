"""Helpers of the client API tests: two-sided worlds, token clients, DB snapshots."""

import uuid
from dataclasses import dataclass
from typing import Any

from rest_framework.test import APIClient

from accounts.api.tokens import customer_token_issue
from accounts.models import Customer, TradingAccount
from copytrading.models import CopyFollower, CopyMaster, CopySubscription
from tests.factories import make_account, make_customer, make_follower, make_master, make_server

HIGH_RATES = {"api_ip": "100000/min", "api_customer": "100000/min", "api_login": "100000/min"}


def token_client(customer: Customer, **kwargs: Any) -> APIClient:
    """An API client sending a fresh bearer token of `customer`."""
    raw, _ = customer_token_issue(customer=customer)
    client = APIClient(**kwargs)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@dataclass
class Side:
    """One customer with a master account (profiled), a follower account (profiled), and a
    spare account without profiles."""

    customer: Customer
    client: APIClient
    master_account: TradingAccount
    follower_account: TradingAccount
    spare_account: TradingAccount
    master: CopyMaster
    follower: CopyFollower


_logins = iter(range(700_000, 10**9, 10))


def make_side(*, name: str) -> Side:
    customer = make_customer(username=f"{name}-{uuid.uuid4().hex[:8]}", password="pw-" + name * 3)
    server = make_server()
    base = next(_logins)
    master_account = make_account(customer=customer, server=server, login=base + 1, mode="REAL")
    follower_account = make_account(customer=customer, server=server, login=base + 2, mode="DEMO")
    spare_account = make_account(customer=customer, server=server, login=base + 3, mode="DEMO")
    master = make_master(account=master_account, strategy_name=f"{name} FX")
    follower = make_follower(account=follower_account, max_master_count=3)
    return Side(
        customer=customer,
        client=token_client(customer),
        master_account=master_account,
        follower_account=follower_account,
        spare_account=spare_account,
        master=master,
        follower=follower,
    )


def db_state() -> dict[str, Any]:
    """Every profile and subscription row (deleted ones too) and every history row: what a
    refused request must leave exactly as it was."""
    state: dict[str, Any] = {}
    for model in (CopyMaster, CopyFollower, CopySubscription):
        state[model.__name__] = list(model.all_objects.order_by("pk").values())
        state[model.__name__ + ".history"] = model.history.count()
    return state


def assert_error(response: Any, status: int, code: str, *fields: str) -> dict[str, Any]:
    """The spec's error shape with this code and status, naming at least these fields."""
    assert response.status_code == status, (response.status_code, response.content)
    body = response.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str)
    assert body["message"]
    assert set(body) <= {"error", "message", "fields"}, body
    for field in fields:
        assert field in body.get("fields", {}), body
    return body
