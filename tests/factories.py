"""Canonical test objects, built through the services where the state matters."""

import itertools
from typing import Any

from model_bakery import baker

from accounts.models import Customer, TradingAccount
from accounts.services import customer_create, trading_account_create
from brokers.models import BrokerServer
from brokers.services import broker_server_create
from copytrading.models import CopyFollower, CopyMaster, CopySubscription
from copytrading.services import follower_create, master_create, subscription_create

_seq = itertools.count(1)


def make_server(**kwargs: Any) -> BrokerServer:
    n = next(_seq)
    values = {"name": f"paper-{n}", "platform": "Paper", "base_url": f"http://127.0.0.1:{8700 + n}"}
    values.update(kwargs)
    return broker_server_create(**values)


def make_customer(**kwargs: Any) -> Customer:
    n = next(_seq)
    values = {
        "username": f"customer{n}",
        "password": "correct-horse-battery",
        "name": f"Customer {n}",
        "email": f"customer{n}@example.com",
        "country": "GB",
    }
    values.update(kwargs)
    return customer_create(**values)


def make_account(
    *, customer: Customer | None = None, server: BrokerServer | None = None, **kwargs: Any
) -> TradingAccount:
    return trading_account_create(
        customer=customer or make_customer(),
        broker_server=server or make_server(),
        login=kwargs.pop("login", 100000 + next(_seq)),
        **kwargs,
    )


def make_master(*, account: TradingAccount | None = None, **kwargs: Any) -> CopyMaster:
    kwargs.setdefault("strategy_name", "Conservative FX")
    return master_create(account=account or make_account(), **kwargs)


def make_follower(*, account: TradingAccount | None = None, **kwargs: Any) -> CopyFollower:
    return follower_create(account=account or make_account(), **kwargs)


def make_subscription(
    *, follower: CopyFollower | None = None, master: CopyMaster | None = None, **settings: Any
) -> CopySubscription:
    follower = follower or make_follower()
    master = master or make_master()
    return subscription_create(
        follower_account=follower.account, master_account=master.account, settings=settings
    )


def make_staff(*, group: str | None = None, **kwargs: Any) -> Any:
    from django.contrib.auth.models import Group

    user = baker.make("auth.User", is_staff=True, username=f"staff{next(_seq)}", **kwargs)
    user.set_password("staff-password-123")
    user.save()
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


def verify_staff_session(client: Any, user: Any) -> Any:
    """Marks the test client's session as verified by a confirmed TOTP device of `user`
    (what the two-factor admin login does); returns the device."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device, _ = TOTPDevice.objects.get_or_create(
        user=user, name="test authenticator", defaults={"confirmed": True}
    )
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return device


def totp_code(device: Any) -> str:
    """The code an authenticator app shows now for a TOTP device."""
    from django_otp.oath import TOTP

    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return str(totp.token()).zfill(device.digits)
