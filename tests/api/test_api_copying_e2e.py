"""The client API and the copy engine together: what a customer does over the API takes
effect on copying at once (real venue, real workers)."""

import uuid

import pytest
from rest_framework.test import APIClient

from brokers.paper.testing import running_venue
from copytrading.models import CopyInstruction
from tests.copytrading.copy_world import build_world
from tests.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture(autouse=True)
def _throttles_apart(settings):
    settings.API_THROTTLE_KEY_PREFIX = f"api-e2e-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def venue():
    with running_venue(ticks_ms=0) as v:
        yield v


@pytest.fixture
def world(venue):
    w = build_world([venue])
    yield w
    w.stack.close()


def api_for(customer) -> APIClient:
    client = APIClient()
    response = client.post(
        "/auth/login",
        {"username": customer.user.username, "password": "correct-horse-battery"},
        format="json",
    )
    assert response.status_code == 200, response.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['token']}")
    return client


def test_subscribe_copy_existing_then_pause_over_the_api(world):
    from copytrading.services import follower_create
    from tests.factories import make_account, make_customer

    master = world.master(0)
    world.start()
    opened = world.order(master.account.login, volume=1)
    customer = make_customer()
    login = world.venue_account(0)
    account = make_account(server=world.servers[0], login=login, customer=customer)
    follower_create(account=account)
    api = api_for(customer)
    response = api.post(
        "/copytrade/subscription",
        {
            "master_login": master.account.login,
            "follower_login": login,
            "copy_existing_positions": 1,
            "volume_mode": 0,
            "risk_multiplier": "0.5",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    sub_id = response.json()["id"]
    wait_for(lambda: len(world.positions(login)) == 1, what="the existing position copied")
    links = api.get("/copytrade/trade-links").json()
    assert [(link["master_position_id"], link["status"]) for link in links] == [
        (str(opened["position_id"]), "open")
    ]
    # Paused over the API: the next master trade is not copied to it.
    response = api.put(f"/copytrade/subscription/{sub_id}", {"status": 1}, format="json")
    assert response.status_code == 200, response.content
    world.order(master.account.login, volume=1)
    skipped = wait_for(
        lambda: CopyInstruction.objects.filter(
            subscription_id=sub_id, reason="SUBSCRIPTION_PAUSED"
        ).first(),
        what="the paused skip",
    )
    assert skipped.status == "skipped"
    assert len(world.positions(login)) == 1
    # Deleted over the API: nothing is closed, copying stops.
    assert api.delete(f"/copytrade/subscription/{sub_id}").status_code == 204
    world.close(master.account.login, opened["position_id"])
    wait_for(lambda: world.positions(master.account.login).__len__() == 1, what="master close")
    assert len(world.positions(login)) == 1
