"""The database itself refuses what the rules forbid, whatever code path tries."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from accounts.models import TradingAccount
from copytrading.models import CopySubscription
from tests.factories import make_account, make_follower, make_master, make_server, make_subscription

pytestmark = pytest.mark.django_db


def test_login_unique_per_server_but_not_across_servers():
    server = make_server()
    make_account(server=server, login=555)
    make_account(server=make_server(), login=555)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_account(server=server, login=555)
    assert TradingAccount.objects.filter(login=555).count() == 2


def test_one_subscription_per_follower_and_master_in_database():
    sub = make_subscription()
    with pytest.raises(IntegrityError), transaction.atomic():
        CopySubscription.objects.create(
            follower=sub.follower,
            master=sub.master,
            follower_account=sub.follower_account,
            master_account=sub.master_account,
        )


def test_no_self_follow_in_database():
    account = make_account()
    follower = make_follower(account=account)
    master = make_master(account=account)
    with pytest.raises(IntegrityError), transaction.atomic():
        CopySubscription.objects.create(
            follower=follower, master=master, follower_account=account, master_account=account
        )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("risk_multiplier", Decimal("0")),
        ("risk_multiplier", Decimal("-1")),
        ("fixed_volume", Decimal("-0.01")),
        ("min_volume", Decimal("-1")),
        ("status", 3),
        ("volume_mode", 4),
        ("symbols_mode", 9),
    ],
)
def test_out_of_range_settings_refused_by_database(field, value):
    sub = make_subscription()
    with pytest.raises(IntegrityError), transaction.atomic():
        CopySubscription.objects.filter(pk=sub.pk).update(**{field: value})


def test_max_volume_below_min_volume_refused_by_database():
    sub = make_subscription()
    with pytest.raises(IntegrityError), transaction.atomic():
        CopySubscription.objects.filter(pk=sub.pk).update(
            min_volume=Decimal("1"), max_volume=Decimal("0.5")
        )
