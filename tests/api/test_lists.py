"""Lists: what each customer sees, filters, paging, and queries that do not grow with rows."""

from decimal import Decimal

import pytest
from django.utils import timezone
from model_bakery import baker

from copytrading.models import TradeLink
from tests.api.support import make_side, token_client
from tests.factories import make_account, make_follower, make_master, make_subscription

pytestmark = pytest.mark.django_db


def make_link(sub, *, status="open", **kwargs):
    values = {
        "subscription": sub,
        "master_account": sub.master_account,
        "follower_account": sub.follower_account,
        "master_position_id": f"mp-{TradeLink.objects.count() + 1}",
        "follower_position_id": "fp-1",
        "symbol": "EURUSD",
        "follower_symbol": "EURUSDm",
        "side": "buy",
        "master_volume": Decimal("1.00"),
        "follower_volume": Decimal("0.50"),
        "open_price": Decimal("1.08321"),
        "status": status,
        "opened_at": timezone.now(),
        "profit": Decimal("12.5"),
    }
    values.update(kwargs)
    return baker.make(TradeLink, **values)


@pytest.fixture
def links(alice, bob):
    carol = make_side(name="carol")
    alice_follows_bob = make_subscription(follower=alice.follower, master=bob.master)
    bob_follows_alice = make_subscription(follower=bob.follower, master=alice.master)
    carol_follows_bob = make_subscription(follower=carol.follower, master=bob.master)
    return {
        "opening": make_link(alice_follows_bob, status="opening"),
        "pending": make_link(alice_follows_bob, status="pending"),
        "closed": make_link(alice_follows_bob, status="closed", closed_at=timezone.now()),
        "as_master": make_link(bob_follows_alice, status="failed", reason="no margin"),
        "foreign": make_link(carol_follows_bob, status="open"),
    }


def test_trade_links_touch_the_customers_accounts_only(alice, links):
    response = alice.client.get("/copytrade/trade-links")
    assert response.status_code == 200
    ids = [link["id"] for link in response.json()]
    assert ids == sorted(links[k].pk for k in ("opening", "pending", "closed", "as_master"))


def test_trade_link_shape_and_status_mapping(alice, links):
    by_id = {link["id"]: link for link in alice.client.get("/copytrade/trade-links/").json()}
    opening = by_id[links["opening"].pk]
    assert set(opening) == {
        "id",
        "subscription_id",
        "master_login",
        "follower_login",
        "master_position_id",
        "follower_position_id",
        "symbol",
        "follower_symbol",
        "side",
        "master_volume",
        "follower_volume",
        "open_price",
        "status",
        "reason",
        "opened_at",
        "closed_at",
        "profit",
    }
    assert (opening["status"], opening["master_volume"], opening["open_price"]) == (
        "open",
        "1.0000",
        "1.08321000",
    )
    assert opening["closed_at"] is None
    assert by_id[links["pending"].pk]["status"] == "open"
    assert by_id[links["closed"].pk]["status"] == "closed"
    assert by_id[links["as_master"].pk]["reason"] == "no margin"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=open", {"opening", "pending"}),
        ("status=closed", {"closed"}),
        ("status=failed", {"as_master"}),
        ("status=skipped", set()),
    ],
)
def test_trade_link_status_filter(alice, links, query, expected):
    ids = {link["id"] for link in alice.client.get(f"/copytrade/trade-links?{query}").json()}
    assert ids == {links[k].pk for k in expected}


def test_trade_link_login_filters(alice, bob, links):
    by_master = alice.client.get(
        f"/copytrade/trade-links?master_login={alice.master_account.login}"
    )
    assert {link["id"] for link in by_master.json()} == {links["as_master"].pk}
    by_follower = alice.client.get(
        f"/copytrade/trade-links?follower_login={alice.follower_account.login}"
    )
    assert {link["id"] for link in by_follower.json()} == {
        links[k].pk for k in ("opening", "pending", "closed")
    }
    # Filtering by another customer's login shows only links that touch alice anyway.
    foreign = alice.client.get(
        f"/copytrade/trade-links?follower_login={bob.follower_account.login}"
    )
    assert {link["id"] for link in foreign.json()} == {links["as_master"].pk}


def test_rewards_are_empty_for_a_customer_with_no_fees(alice):
    response = alice.client.get("/copytrade/rewards")
    assert response.status_code == 200
    assert response.json() == []


def test_paging_with_limit_and_offset(alice):
    masters = [make_master(account=make_account(customer=alice.customer)).pk for _ in range(4)]
    everything = [m["id"] for m in alice.client.get("/copytrade/masters").json()]
    assert set(masters) <= set(everything)
    page = alice.client.get("/copytrade/masters?limit=2&offset=1").json()
    assert [m["id"] for m in page] == everything[1:3]
    assert alice.client.get("/copytrade/masters?offset=1000").json() == []


def test_limit_defaults_to_100_and_is_cut_to_the_maximum(alice, settings):
    settings.API_PAGE_SIZE = 2
    settings.API_MAX_PAGE_SIZE = 3
    for _ in range(4):
        make_master(account=make_account(customer=alice.customer))
    assert len(alice.client.get("/copytrade/masters").json()) == 2
    assert len(alice.client.get("/copytrade/masters?limit=1000").json()) == 3


# Query counts: one for the token (with customer and user), one per list. ---------


def _grow(alice, bob, n):
    """n more masters, followers, subscriptions and links touching alice."""
    for _ in range(n):
        master = make_master(account=make_account(customer=alice.customer))
        follower = make_follower(account=make_account(customer=bob.customer, mode="DEMO"))
        sub = make_subscription(follower=follower, master=master)
        make_link(sub)
        mine = make_follower(account=make_account(customer=alice.customer))
        make_subscription(follower=mine, master=bob.master)


@pytest.mark.parametrize(
    ("path", "queries"),
    [
        ("/copytrade/masters", 3),  # + their fee schedules
        ("/copytrade/my", 5),
        ("/copytrade/trade-links", 2),
        ("/copytrade/rewards", 2),
    ],
)
def test_list_queries_do_not_grow_with_rows(alice, bob, django_assert_num_queries, path, queries):
    client = token_client(alice.customer)
    _grow(alice, bob, 2)
    with django_assert_num_queries(queries):
        small = client.get(path)
    _grow(alice, bob, 15)
    with django_assert_num_queries(queries):
        large = client.get(path)
    assert small.status_code == large.status_code == 200
    if path != "/copytrade/rewards":
        assert len(str(large.json())) > len(str(small.json()))


def test_write_queries_are_bounded(alice, bob, django_assert_max_num_queries):
    with django_assert_max_num_queries(20):
        response = alice.client.post(
            "/copytrade/subscription",
            {
                "master_login": bob.master_account.login,
                "follower_login": alice.follower_account.login,
            },
            format="json",
        )
    assert response.status_code == 201
