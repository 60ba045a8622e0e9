"""Tenant isolation of the client API, driven by its OpenAPI schema (issue 10).

Every operation the schema publishes is called with customer A's token on customer B's
records: an operation addressing a record by id, or naming B's account in its body, must
answer 403 or 404 and change nothing; a list, even filtered by B's logins, must show none
of B's rows. An operation added to the API without a case here fails the test (CASES is
compared with the schema), so isolation is decided for each new route.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.admin.support import copied_trade
from tests.api.support import Side, db_state, make_side, token_client
from tests.factories import make_subscription

pytestmark = pytest.mark.django_db

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass
class World:
    a: Side
    b: Side
    b_subscription: Any
    b_link: Any

    def b_id(self, resource: str) -> int:
        return {
            "master": self.b.master.pk,
            "follower": self.b.follower.pk,
            "subscription": self.b_subscription.pk,
        }[resource]

    def b_logins(self) -> set[int]:
        accounts = (self.b.master_account, self.b.follower_account, self.b.spare_account)
        return {account.login for account in accounts}


Call = tuple[str, dict[str, Any] | None]  # (path with query, JSON body)


def on_b_record(w: World, method: str, path: str) -> list[Call]:
    """The path's {id} is B's record of the kind the path names."""
    resource = path.split("/")[2]
    body = {"enabled": 0} if method == "put" else None
    return [(path.replace("{id}", str(w.b_id(resource))), body)]


def lists_filtered_by_b(w: World, method: str, path: str) -> list[Call]:
    b_master, b_follower = w.b.master_account.login, w.b.follower_account.login
    return [
        (path, None),
        (f"{path}?master_login={b_master}", None),
        (f"{path}?follower_login={b_follower}", None),
        (f"{path}?master_login={b_master}&follower_login={b_follower}&status=open", None),
    ]


# (method, path) -> (kind, calls). Kinds: "refused" must answer 403/404 and change nothing;
# "list" must answer 200 without any of B's rows; "auth" is checked by its own test below.
CASES: dict[tuple[str, str], tuple[str, Callable[[World, str, str], list[Call]]]] = {
    ("PUT", "/copytrade/master/{id}"): ("refused", on_b_record),
    ("DELETE", "/copytrade/master/{id}"): ("refused", on_b_record),
    ("PUT", "/copytrade/follower/{id}"): ("refused", on_b_record),
    ("DELETE", "/copytrade/follower/{id}"): ("refused", on_b_record),
    ("PUT", "/copytrade/subscription/{id}"): ("refused", on_b_record),
    ("DELETE", "/copytrade/subscription/{id}"): ("refused", on_b_record),
    ("POST", "/copytrade/master"): (
        "refused",
        lambda w, m, p: [(p, {"login": w.b.spare_account.login, "strategy_name": "Mine now"})],
    ),
    (
        "POST",
        "/copytrade/follower",
    ): ("refused", lambda w, m, p: [(p, {"login": w.b.spare_account.login, "enabled": 1})]),
    ("POST", "/copytrade/subscription"): (
        "refused",
        lambda w, m, p: [
            # B's follower account under A's token; A's follower on B's private master.
            (
                p,
                {
                    "master_login": w.a.master_account.login,
                    "follower_login": w.b.follower_account.login,
                },
            ),
            (
                p,
                {
                    "master_login": w.b.master_account.login,
                    "follower_login": w.a.follower_account.login,
                },
            ),
        ],
    ),
    ("GET", "/copytrade/masters"): ("list", lists_filtered_by_b),
    ("GET", "/copytrade/my"): ("list", lists_filtered_by_b),
    ("GET", "/copytrade/trade-links"): ("list", lists_filtered_by_b),
    ("GET", "/copytrade/rewards"): ("list", lists_filtered_by_b),
    ("POST", "/auth/login"): ("auth", lambda w, m, p: []),
    ("POST", "/auth/logout"): ("auth", lambda w, m, p: []),
}


@pytest.fixture
def world() -> World:
    a, b, carol = make_side(name="alice"), make_side(name="bob"), make_side(name="carol")
    # B's master is private: nothing of B is public, so any B row A sees is a leak.
    b.master.visibility = "private"
    b.master.save()
    b_subscription = make_subscription(follower=b.follower, master=carol.master)
    b_link = copied_trade(b_subscription).link
    return World(a=a, b=b, b_subscription=b_subscription, b_link=b_link)


def schema_operations(client: APIClient) -> set[tuple[str, str]]:
    schema = client.get("/api/schema/", {"format": "json"}).json()
    return {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in HTTP_METHODS
    }


def test_every_route_refuses_another_customers_records(world: World):
    operations = schema_operations(APIClient())
    assert operations == set(CASES), (
        "The API's operations and the isolation cases differ; add a case for each new "
        f"operation: missing {sorted(operations - set(CASES))}, "
        f"stale {sorted(set(CASES) - operations)}"
    )
    # The lists have B rows to leak: B sees its own link and its private master.
    assert str(world.b_link.pk) in str(
        [r["id"] for r in world.b.client.get("/copytrade/trade-links").json()]
    )
    assert world.b.master.pk in [m["id"] for m in world.b.client.get("/copytrade/masters").json()]
    client = world.a.client
    before = db_state()
    refused, leaks, calls = [], [], 0
    for (method, path), (kind, make_calls) in sorted(CASES.items()):
        for url, body in make_calls(world, method.lower(), path):
            calls += 1
            response = getattr(client, method.lower())(url, body, format="json")
            if kind == "refused" and response.status_code not in (403, 404):
                refused.append((method, url, response.status_code, response.content[:200]))
            if kind == "list":
                text = response.content.decode()
                shown = [login for login in world.b_logins() if str(login) in text]
                if response.status_code != 200 or shown:
                    leaks.append((method, url, response.status_code, shown))
    assert refused == [], f"answered other than 403/404: {refused}"
    assert leaks == [], f"B's rows shown to A: {leaks}"
    assert db_state() == before  # nothing of anyone's changed
    # Every id-addressed and create operation, and every list (4 filter variants each).
    assert calls == 6 + 4 + 4 * 4


def test_login_and_logout_act_for_their_own_customer_only(world: World):
    b_client = world.b.client
    body = {"username": world.a.customer.user.username, "password": "pw-" + "alice" * 3}
    response = APIClient().post(
        "/auth/login", {**body, "customer_id": world.b.customer.pk}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["customer_id"] == world.a.customer.pk  # a body's customer_id: ignored
    a_client = token_client(world.a.customer)
    assert a_client.post("/auth/logout").status_code == 204
    assert a_client.get("/copytrade/my").status_code == 401
    assert b_client.get("/copytrade/my").status_code == 200  # B's session is untouched
