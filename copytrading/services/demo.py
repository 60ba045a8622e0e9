"""Demo data: customers, accounts on the paper venue(s) and in the back office, masters,
followers and subscriptions, created in bulk so thousands take seconds."""

import asyncio
import itertools
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.db.models import Max
from simple_history.utils import bulk_create_with_history

from accounts.models import Customer, TradingAccount
from brokers.choices import BrokerServerPlatform
from brokers.gateways.types import AccountMode
from brokers.models import BrokerServer

from ..models import CopyFollower, CopyMaster, CopySubscription

STRATEGIES = [
    ("Conservative FX", "Low risk major pairs strategy"),
    ("Gold Momentum", "Trend following on XAUUSD"),
    ("Index Swing", "Swing trades on US30"),
    ("Crypto Breakout", "Breakouts on BTCUSD"),
    ("Scalper Pro", "Short-term EURUSD and GBPUSD"),
]
# A spread of copy settings, handed out round-robin.
SETTING_PRESETS: list[dict[str, Any]] = [
    {"volume_mode": 0, "risk_multiplier": Decimal("1")},
    {"volume_mode": 1, "risk_multiplier": Decimal("1")},
    {"volume_mode": 0, "risk_multiplier": Decimal("0.5"), "max_volume": Decimal("1")},
    {"volume_mode": 2, "fixed_volume": Decimal("0.1")},
    {"volume_mode": 3, "fixed_volume": Decimal("0.2"), "base_equity": Decimal("10000")},
    {"volume_mode": 0, "risk_multiplier": Decimal("2"), "copy_sl": False, "copy_tp": False},
    {"volume_mode": 0, "risk_multiplier": Decimal("1"), "reverse_direction": True},
    {
        "volume_mode": 0,
        "risk_multiplier": Decimal("1"),
        "symbols_mode": 1,
        "symbols": "EURUSD,XAUUSD",
    },
]


@dataclass
class DemoResult:
    customers: list[dict[str, Any]] = field(default_factory=list)
    masters: list[int] = field(default_factory=list)
    followers: list[int] = field(default_factory=list)
    venues: list[str] = field(default_factory=list)
    venue_of: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "masters": self.masters,
            "followers": self.followers,
            "venues": self.venues,
            "venue_of": self.venue_of,
        }


def demo_server(*, url: str, name: str, api_key: str) -> BrokerServer:
    """The broker server of a paper venue, created on first use, with its symbols synced."""
    from brokers.services import broker_server_create, symbols_sync

    server = BrokerServer.objects.filter(base_url=url.rstrip("/")).first()
    if server is None:
        server = broker_server_create(
            name=name,
            platform=BrokerServerPlatform.PAPER,
            base_url=url.rstrip("/"),
            credentials={"api_key": api_key},
        )
    symbols_sync(server=server)
    names = list(server.symbols.values_list("name", flat=True))
    suffix = next((n[len("EURUSD") :] for n in names if n.startswith("EURUSD")), "")
    if server.symbol_suffix != suffix:
        server.symbol_suffix = suffix
        server.save(update_fields=["symbol_suffix"])
    return server


async def _create_venue_accounts(gateway: Any, specs: list[tuple[int, Decimal]]) -> None:
    limit = asyncio.Semaphore(50)

    async def one(login: int, balance: Decimal) -> None:
        async with limit:
            await gateway.create_account(
                login=login, balance=balance, currency="USD", leverage=100, mode=AccountMode.DEMO
            )

    await asyncio.gather(*(one(login, balance) for login, balance in specs))


def demo_seed(
    *, masters: int, followers: int, servers: list[BrokerServer], password: str | None = None
) -> DemoResult:
    """Creates `masters` masters on the first server and `followers` followers split across
    `servers`, each follower subscribed to one master (round-robin) with a spread of settings.

    Logins are unique across the servers (taken above every login already known).
    """
    from brokers.gateways import sync_gateway_for

    password = password or secrets.token_urlsafe(9)
    result = DemoResult(venues=[s.base_url for s in servers])
    next_login = itertools.count(
        (TradingAccount.objects.aggregate(m=Max("login"))["m"] or 100000) + 1
    )
    master_specs = [(next(next_login), servers[0]) for _ in range(masters)]
    follower_specs = [(next(next_login), servers[i % len(servers)]) for i in range(followers)]

    # Venue accounts first (the network, outside any transaction).
    for server in servers:
        specs = [(login, Decimal("100000")) for login, s in master_specs if s == server]
        specs += [(login, Decimal("10000")) for login, s in follower_specs if s == server]
        gateway = sync_gateway_for(server)
        gateway.run(_create_venue_accounts(gateway.gateway, specs))

    hashed = make_password(password)  # one hash for every demo user: hashing is slow
    user_model = get_user_model()
    tag = secrets.token_hex(3)
    with transaction.atomic():
        all_specs = master_specs + follower_specs
        users = user_model.objects.bulk_create(
            [
                user_model(
                    username=f"demo-{tag}-{login}", password=hashed, email=f"{login}@demo.test"
                )
                for login, _ in all_specs
            ]
        )
        customers = bulk_create_with_history(
            [
                Customer(
                    user=u, name=f"Demo customer {login}", email=f"{login}@demo.test", country="GB"
                )
                for u, (login, _) in zip(users, all_specs, strict=True)
            ],
            Customer,
        )
        customers = list(Customer.objects.filter(user__in=users).order_by("id"))
        accounts = bulk_create_with_history(
            [
                TradingAccount(
                    login=login,
                    broker_server=server,
                    customer=c,
                    mode="DEMO",
                    currency="USD",
                    leverage=100,
                    balance=Decimal("100000") if i < masters else Decimal("10000"),
                    equity=Decimal("100000") if i < masters else Decimal("10000"),
                )
                for i, (c, (login, server)) in enumerate(zip(customers, all_specs, strict=True))
            ],
            TradingAccount,
        )
        accounts = list(
            TradingAccount.objects.filter(customer__in=customers).order_by("customer_id")
        )
        master_accounts, follower_accounts = accounts[:masters], accounts[masters:]
        bulk_create_with_history(
            [
                CopyMaster(
                    account=a,
                    strategy_name=STRATEGIES[i % len(STRATEGIES)][0],
                    description=STRATEGIES[i % len(STRATEGIES)][1],
                )
                for i, a in enumerate(master_accounts)
            ],
            CopyMaster,
        )
        bulk_create_with_history([CopyFollower(account=a) for a in follower_accounts], CopyFollower)
        master_rows = {
            m.account_id: m for m in CopyMaster.objects.filter(account__in=master_accounts)
        }
        follower_rows = {
            f.account_id: f for f in CopyFollower.objects.filter(account__in=follower_accounts)
        }
        subs = []
        for i, a in enumerate(follower_accounts):
            master_account = master_accounts[i % masters]
            subs.append(
                CopySubscription(
                    follower=follower_rows[a.id],
                    master=master_rows[master_account.id],
                    follower_account=a,
                    master_account=master_account,
                    **SETTING_PRESETS[i % len(SETTING_PRESETS)],
                )
            )
        bulk_create_with_history(subs, CopySubscription, batch_size=1000)

    # Billing: each demo master charges fees (billing/services/demo.py).
    from billing.services.demo import demo_fee_schedules

    demo_fee_schedules(masters=list(master_rows.values()))

    for customer, account in zip(customers, accounts, strict=True):
        result.customers.append(
            {"username": customer.user.username, "password": password, "accounts": [account.login]}
        )
        result.venue_of[str(account.login)] = account.broker_server.base_url
    result.masters = [a.login for a in master_accounts]
    result.followers = [a.login for a in follower_accounts]
    return result
