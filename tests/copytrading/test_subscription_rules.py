"""The client API's rules, enforced by the services every entry point uses."""

from decimal import Decimal

import pytest

from copytrading.choices import CopySubscriptionStatus
from copytrading.errors import CopyTradingError
from copytrading.services import (
    follower_create,
    master_create,
    subscription_create,
    subscription_pause,
    subscription_resume,
    subscription_stop_by_risk,
    subscription_update,
)
from tests.factories import (
    make_account,
    make_customer,
    make_follower,
    make_master,
    make_staff,
    make_subscription,
)

pytestmark = pytest.mark.django_db


def subscribe(follower, master, customer=None, **settings):
    return subscription_create(
        follower_account=follower.account,
        master_account=master.account,
        customer=customer if customer is not None else follower.account.customer,
        settings=settings,
    )


def expect_code(code, func, *args, **kwargs):
    with pytest.raises(CopyTradingError) as info:
        func(*args, **kwargs)
    assert info.value.code == code, info.value
    return info.value


def test_master_on_another_customers_account_is_invalid_account():
    account = make_account()
    expect_code(
        "INVALID_ACCOUNT",
        master_create,
        account=account,
        customer=make_customer(),
        strategy_name="x",
    )


def test_second_profile_on_same_account_already_exists():
    account = make_account()
    make_follower(account=account)
    expect_code("ALREADY_EXISTS", follower_create, account=account)


def test_private_master_of_other_customer_not_available():
    master = make_master(visibility="private")
    expect_code("MASTER_NOT_AVAILABLE", subscribe, make_follower(), master)


def test_own_private_master_is_available():
    customer = make_customer()
    master = make_master(account=make_account(customer=customer), visibility="private")
    follower = make_follower(account=make_account(customer=customer))
    assert subscribe(follower, master).pk


def test_disabled_master_not_available_even_to_owner():
    customer = make_customer()
    master = make_master(account=make_account(customer=customer), enabled=False)
    follower = make_follower(account=make_account(customer=customer))
    expect_code("MASTER_NOT_AVAILABLE", subscribe, follower, master)


def test_master_refuses_follower_mode():
    master = make_master(allowed_follower_modes=1)
    follower = make_follower(account=make_account(mode="DEMO"))
    expect_code("FOLLOWER_MODE_NOT_ALLOWED", subscribe, follower, master)


def test_follower_without_profile_not_found():
    account = make_account()
    master = make_master()
    expect_code(
        "FOLLOWER_NOT_FOUND",
        subscription_create,
        follower_account=account,
        master_account=master.account,
        customer=account.customer,
    )


def test_master_login_without_profile_not_found():
    follower = make_follower()
    expect_code(
        "MASTER_NOT_FOUND",
        subscription_create,
        follower_account=follower.account,
        master_account=make_account(),
        customer=follower.account.customer,
    )


def test_self_follow_refused():
    account = make_account()
    error = expect_code(
        "VALIDATION_ERROR",
        subscribe,
        make_follower(account=account),
        make_master(account=account),
    )
    assert "master_login" in error.fields


def test_duplicate_subscription_already_exists():
    follower = make_follower(max_master_count=3)
    master = make_master()
    subscribe(follower, master)
    expect_code("ALREADY_EXISTS", subscribe, follower, master)


def test_max_master_count_enforced():
    follower = make_follower(max_master_count=1)
    subscribe(follower, make_master())
    expect_code("LIMIT_REACHED", subscribe, follower, make_master())


def test_copy_cycle_refused():
    a, b, c = make_account(), make_account(), make_account()
    fa, fb, fc = (make_follower(account=x) for x in (a, b, c))
    ma, mb, mc = (make_master(account=x) for x in (a, b, c))
    subscribe(fb, ma)  # b copies a
    subscribe(fc, mb)  # c copies b
    error = expect_code("VALIDATION_ERROR", subscribe, fa, mc)  # a copies c: a cycle
    assert "cycle" in error.message


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"risk_multiplier": 0}, "risk_multiplier"),
        ({"risk_multiplier": -2}, "risk_multiplier"),
        ({"risk_multiplier": "abc"}, "risk_multiplier"),
        ({"risk_multiplier": 1e9}, "risk_multiplier"),
        ({"fixed_volume": -1}, "fixed_volume"),
        ({"volume_mode": 7}, "volume_mode"),
        ({"copy_sl": 2}, "copy_sl"),
        ({"max_positions": -1}, "max_positions"),
        ({"volume_mode": 2, "fixed_volume": 0}, "fixed_volume"),
        ({"min_volume": 2, "max_volume": 1}, "max_volume"),
        ({"symbols_mode": 1, "symbols": ""}, "symbols"),
        ({"symbols": "EURUSD,<script>"}, "symbols"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_settings_name_the_field_and_store_nothing(settings, field):
    follower, master = make_follower(), make_master()
    error = expect_code("VALIDATION_ERROR", subscribe, follower, master, **settings)
    assert field in error.fields
    assert not follower.subscriptions.exists()


def test_settings_normalized_and_kept():
    sub = subscribe(
        make_follower(),
        make_master(),
        risk_multiplier="1.5",
        symbols=" EURUSD , XAUUSD,",
        symbols_mode=1,
        copy_sl=0,
    )
    sub.refresh_from_db()
    assert sub.risk_multiplier == Decimal("1.5")
    assert sub.symbols == "EURUSD,XAUUSD"
    assert sub.copy_sl is False


def test_update_keeps_other_fields_and_records_actor():
    customer = make_customer()
    sub = make_subscription(follower=make_follower(account=make_account(customer=customer)))
    subscription_update(subscription=sub, settings={"risk_multiplier": 2}, actor=customer.user)
    sub.refresh_from_db()
    assert sub.risk_multiplier == Decimal("2")
    assert sub.copy_tp is True
    latest = sub.history.first()
    assert latest.history_user == customer.user
    assert latest.history_change_reason == "subscription settings updated"


def test_pause_requires_reason_and_is_recorded():
    sub = make_subscription()
    staff = make_staff(group="Support")
    with pytest.raises(CopyTradingError):
        subscription_pause(subscription=sub, reason=" ", actor=staff)
    subscription_pause(subscription=sub, reason="customer asked by phone", actor=staff)
    sub.refresh_from_db()
    assert sub.status == CopySubscriptionStatus.PAUSED
    record = sub.history.first()
    assert record.history_user == staff
    assert record.history_change_reason == "customer asked by phone"


def test_risk_stop_cleared_only_with_permission():
    sub = make_subscription()
    subscription_stop_by_risk(subscription=sub, reason="drawdown 30% > 25%")
    expect_code(
        "PERMISSION_DENIED", subscription_resume, subscription=sub, reason="please", actor=None
    )
    subscription_resume(subscription=sub, reason="reviewed", actor=None, clear_risk_stop=True)
    sub.refresh_from_db()
    assert sub.status == CopySubscriptionStatus.ACTIVE


def test_deleted_subscription_is_kept_for_lineage_and_can_be_recreated():
    from copytrading.models import CopySubscription
    from copytrading.services import subscription_delete

    sub = make_subscription()
    subscription_delete(subscription=sub, actor=None)
    assert not CopySubscription.objects.filter(pk=sub.pk).exists()
    assert CopySubscription.all_objects.get(pk=sub.pk).deleted_at is not None
    again = subscribe(sub.follower, sub.master)
    assert again.pk != sub.pk
    assert sub.history.first().history_change_reason == "subscription deleted"
