"""What the fault scenarios share: many copiers at once, master trades, settling (with the
beat's sweepers run by hand, as if a minute later), and the closing invariants check."""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from accounts.models import TradingAccount
from brokers.models import ListenerShard
from copytrading.models import CopyInstruction, CopySubscription, MasterEvent
from copytrading.services.demo import DemoResult, demo_seed
from copytrading.services.events import master_events_sweep
from copytrading.services.execution import instructions_recover
from copytrading.services.listening import listeners_supervise
from tests.copytrading.copy_world import World
from tests.faults.invariants import OPEN_WORK, CopyCheck, check_copies
from tests.processes import wait_for

_coids = itertools.count(1)


def seed_copy_everything(*, masters: int, followers: int, servers: list) -> DemoResult:
    """demo_seed's masters and followers (round-robin over `servers`), every follower copying
    0.01 lot per master lot of every symbol: every master event is a trade for every one of
    its followers (the faults suite and benchmarks/load.py count on it)."""
    seeded = demo_seed(masters=masters, followers=followers, servers=servers)
    CopySubscription.objects.filter(master_account__login__in=seeded.masters).update(
        volume_mode=0,
        risk_multiplier=Decimal("0.01"),
        symbols_mode=0,
        symbols="",
        max_volume=0,
        min_volume=0,
        max_positions=0,
        reverse_direction=False,
        copy_mode=0,
    )
    return seeded


def seed_copiers(world: World, followers: int, *, masters: int = 1) -> list[TradingAccount]:
    """`masters` masters on the world's first venue, `followers` followers spread over its
    venues (seed_copy_everything); returns the master accounts."""
    seeded = seed_copy_everything(masters=masters, followers=followers, servers=world.servers)
    return list(TradingAccount.objects.filter(login__in=seeded.masters).order_by("login"))


def clients(world: World) -> dict:
    return {server.id: world.api(i) for i, server in enumerate(world.servers)}


def _until_known(world: World, i: int, path: str, body: dict) -> dict:
    """Posts a master's call again under the same client order id while the venue answers
    503 (an error_rate fault may hit the master's own orders too)."""
    for _ in range(20):
        status, answer = world.api(i).post(path, body)
        if status != 503:
            assert status in (200, 201), answer
            return answer
    raise AssertionError(f"{path}: 503 twenty times")


def master_burst(
    world: World, login: int, *, opens: int, closes: int, rng: random.Random, i: int = 0
) -> list[str]:
    """The master opens `opens` positions then closes `closes` of them (chosen by `rng`);
    returns the venue's position ids opened."""
    symbol = "EURUSD" + world.servers[i].symbol_suffix
    positions = []
    for _ in range(opens):
        body = {
            "account": login,
            "symbol": symbol,
            "side": rng.choice(["buy", "sell"]),
            "type": "market",
            "volume": rng.choice([1, 2]),
            "client_order_id": f"fm-{login}-{next(_coids)}",
        }
        positions.append(str(_until_known(world, i, "/v1/orders", body)["position_id"]))
    for pid in rng.sample(positions, closes):
        body = {"account": login, "client_order_id": f"fc-{login}-{next(_coids)}"}
        _until_known(world, i, f"/v1/positions/{pid}/close", body)
    return positions


_events = itertools.count(1)


def master_event(
    world: World, account: TradingAccount, kind: str, answer: dict, **fields: Any
) -> MasterEvent:
    """The event the listener would store for the master's trade (no listener runs here)."""
    now = timezone.now()
    return MasterEvent.objects.create(
        broker_server=world.servers[0],
        account=account,
        venue_event_id=f"by-hand-{next(_events)}",
        event_type=kind,
        master_position_id=str(answer["position_id"]),
        symbol="EURUSD",
        side="buy",
        volume=Decimal("1"),
        price=Decimal(str(answer["price"])),
        raw={},
        venue_ts=now,
        received_at=now,
        **fields,
    )


def sweep_as_if_later() -> None:
    """What beat's periodic jobs do, run now as if their grace periods had passed: restart
    a listener whose lease is free, re-enqueue pending events, and instructions ready or in
    flight whose task was lost."""
    listeners_supervise()
    later = timezone.now() + timedelta(minutes=2)
    master_events_sweep(now=later)
    instructions_recover(now=later)


def settle(master_ids: list[int], *, events: int, timeout: float = 60) -> None:
    """Waits until the masters' `events` events are stored and fanned out and no instruction
    is left to send; sweeps every few seconds meanwhile (the beat is not running)."""
    last_sweep = time.monotonic()

    def settled() -> bool:
        nonlocal last_sweep
        stored = MasterEvent.objects.filter(account_id__in=master_ids)
        done = (
            stored.count() >= events
            and not stored.exclude(fanout_state="done").exists()
            and not CopyInstruction.objects.filter(
                subscription__master_account_id__in=master_ids, status__in=OPEN_WORK
            ).exists()
        )
        if not done and time.monotonic() - last_sweep > 3:
            sweep_as_if_later()
            last_sweep = time.monotonic()
        return done

    try:
        wait_for(settled, timeout=timeout, interval=0.2, what=f"{events} events copied and settled")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {_state(master_ids)}") from None


def _state(master_ids: list[int]) -> str:
    """Where the copies stand (for a scenario that did not settle)."""
    events = Counter(
        MasterEvent.objects.filter(account_id__in=master_ids).values_list("fanout_state", flat=True)
    )
    instructions = Counter(
        CopyInstruction.objects.filter(subscription__master_account_id__in=master_ids).values_list(
            "status", flat=True
        )
    )
    shards = list(ListenerShard.objects.values("connected", "last_seq", "last_error"))
    return f"events {dict(events)}, instructions {dict(instructions)}, shards {shards}"


def checked(world: World, masters: list[TradingAccount], *, repairs: int | None = 0) -> CopyCheck:
    """The closing check of a scenario: prints its summary, fails on any broken invariant."""
    check = check_copies(clients(world), master_account_ids=[m.id for m in masters])
    print(f"[faults] {check.summary()}")  # noqa: T201 - the scenario's figures, in -s / -rA
    check.assert_ok(repairs=repairs)
    return check
