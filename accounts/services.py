"""Writes to customers and trading accounts."""

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from brokers.models import BrokerServer
from config.history import save_audited

from .choices import TradingAccountMode
from .models import Customer, TradingAccount


@transaction.atomic
def customer_create(
    *,
    username: str,
    password: str,
    name: str,
    email: str,
    country: str = "",
    actor: Any = None,
) -> Customer:
    """Creates a customer with its login user. The user is never staff."""
    user = get_user_model().objects.create_user(
        username=username, password=password, email=email, is_staff=False
    )
    customer = Customer(user=user, name=name, email=email, country=country.upper())
    save_audited(customer, actor=actor, reason="customer created")
    return customer


def trading_account_create(
    *,
    customer: Customer,
    broker_server: BrokerServer,
    login: int,
    mode: str = TradingAccountMode.DEMO,
    currency: str = "USD",
    leverage: int = 100,
    group: str = "",
    actor: Any = None,
) -> TradingAccount:
    """Registers a venue account in the back office; (server, login) is unique in the database."""
    account = TradingAccount(
        customer=customer,
        broker_server=broker_server,
        login=login,
        mode=mode,
        currency=currency,
        leverage=leverage,
        group=group,
    )
    with transaction.atomic():
        save_audited(account, actor=actor, reason="account registered")
    return account


def trading_account_record_snapshot(
    *, account: TradingAccount, balance: Decimal, equity: Decimal, margin: Decimal
) -> None:
    """Stores the last balance, equity and margin read from the venue (not audited: a reading)."""
    TradingAccount.objects.filter(pk=account.pk).update(
        balance=balance, equity=equity, margin=margin, snapshot_at=timezone.now()
    )
