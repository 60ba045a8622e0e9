"""seed_demo: accounts on two venues and in the back office, printed as JSON."""

import io
import json

import pytest
from django.core.management import call_command

from accounts.models import TradingAccount
from brokers.paper.testing import VenueClient, running_venue
from copytrading.models import CopyMaster, CopySubscription

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def two_venues():
    with (
        running_venue(ticks_ms=0) as a,
        running_venue(ticks_ms=0, symbol_suffix="m", min_volume="0.1", volume_step="0.1") as b,
    ):
        yield a, b


def test_seed_demo_on_two_venues(two_venues):
    a, b = two_venues
    out = io.StringIO()
    call_command(
        "seed_demo",
        "--masters", "3",
        "--followers", "40",
        "--venue", a.url,
        "--second-venue", b.url,
        "--api-key", a.api_key,
        stdout=out,
    )  # fmt: skip
    result = json.loads(out.getvalue())
    assert len(result["masters"]) == 3
    assert len(result["followers"]) == 40
    assert result["venues"] == [a.url, b.url]
    logins = result["masters"] + result["followers"]
    assert len(set(logins)) == 43  # unique across venues
    on_b = [login for login in result["followers"] if result["venue_of"][str(login)] == b.url]
    assert len(on_b) == 20
    # Every account exists on its venue and in the back office.
    for login in logins[:5] + on_b[:5]:
        url = result["venue_of"][str(login)]
        venue = a if url == a.url else b
        client = VenueClient(venue.host, venue.port, venue.api_key)
        assert client.get(f"/v1/accounts/{login}")[0] == 200
    assert TradingAccount.objects.filter(login__in=logins).count() == 43
    assert CopyMaster.objects.count() == 3
    subs = CopySubscription.objects.all()
    assert subs.count() == 40
    per_master = {m: subs.filter(master_account__login=m).count() for m in result["masters"]}
    assert sorted(per_master.values()) == [13, 13, 14]  # round-robin
    assert len({s.volume_mode for s in subs}) == 4  # a spread of settings
    # The second venue's server knows its own suffix and lot rules.
    b_account = TradingAccount.objects.get(login=on_b[0])
    assert b_account.broker_server.symbol_suffix == "m"
    eurusd = b_account.broker_server.symbols.get(name="EURUSDm")
    assert str(eurusd.min_volume) == "0.1000"
    # Every master charges fees; the subscription fee of the period started is accrued.
    from billing.models import FeeAccrual, FeeSchedule

    assert FeeSchedule.objects.filter(master__account__login__in=result["masters"]).count() == 3
    assert FeeAccrual.objects.filter(kind="subscription").count() == 13  # the second master's
    # Customers can log in with the printed password.
    from django.contrib.auth import authenticate

    first = result["customers"][0]
    assert authenticate(username=first["username"], password=first["password"]) is not None


def test_seed_demo_without_venue_says_so():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="runvenue"):
        call_command("seed_demo", "--venue", "http://127.0.0.1:1", stdout=io.StringIO())
