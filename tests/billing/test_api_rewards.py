"""`/copytrade/rewards` and the masters' `fee_schedule`, as spec/client-api.md says."""

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from tests.api.support import token_client
from tests.factories import make_customer

pytestmark = pytest.mark.django_db

FIELDS = {
    "id",
    "subscription_id",
    "master_login",
    "follower_login",
    "kind",
    "period_start",
    "period_end",
    "base_amount",
    "rate",
    "amount",
    "currency",
    "status",
    "created_at",
}


def test_rewards_list_what_a_follower_pays_and_a_master_earns(desk):
    master = desk.master(performance_pct=20, management_pct=2, subscription_amount=15)
    sub = desk.follower(master)
    other = desk.follower(desk.master(subscription_amount=7))
    desk.run(datetime.now(UTC))
    follower_client = token_client(sub.follower_account.customer)
    rows = follower_client.get("/copytrade/rewards").json()
    (row,) = rows
    assert set(row) == FIELDS
    assert row["kind"] == "subscription"
    assert (row["subscription_id"], row["master_login"], row["follower_login"]) == (
        sub.pk,
        master.account.login,
        sub.follower_account.login,
    )
    assert (D(row["base_amount"]), D(row["rate"]), D(row["amount"])) == (D("15"), D("1"), D("15"))
    assert (row["currency"], row["status"]) == ("USD", "accrued")
    master_rows = token_client(master.account.customer).get("/copytrade/rewards").json()
    assert [r["id"] for r in master_rows] == [row["id"]]
    # Nobody else sees them; the other subscription's owner sees only its own.
    assert token_client(make_customer()).get("/copytrade/rewards").json() == []
    theirs = token_client(other.follower_account.customer).get("/copytrade/rewards").json()
    assert [(r["subscription_id"], r["amount"]) for r in theirs] == [(other.pk, "7.0000")]
    # Paging and validation follow the other lists.
    assert follower_client.get("/copytrade/rewards?offset=1").json() == []
    assert follower_client.get("/copytrade/rewards?limit=x").json()["error"] == "VALIDATION_ERROR"


def test_a_master_profile_publishes_its_latest_fee_schedule(desk):
    master = desk.master(performance_pct=20, volume_per_lot="2.5")
    from billing.services import fee_schedule_create

    fee_schedule_create(
        master=master,
        values={"performance_pct": D("25"), "management_pct": D("1.5")},
        actor=None,
    )
    client = token_client(make_customer())
    (shown,) = [m for m in client.get("/copytrade/masters").json() if m["id"] == master.pk]
    assert shown["fee_schedule"] == [
        {"kind": "performance", "rate": "0.25000000", "currency": None},
        {"kind": "management", "rate": "0.01500000", "currency": None},
    ]
