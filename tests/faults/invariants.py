"""The check every fault scenario ends with: the venue's own order log against the database.

For every (master event, subscription) of the masters under test:
- exactly one copy instruction (0 missing), and none left ready, in flight or waiting;
- every skipped or failed instruction carries its reason;
- every instruction done with an order that trades (open, close, partial close) has exactly
  one follower order and exactly one deal at the venue under its client order id;
- no deal at the venue under a client order id of ours that the database does not know as
  done, and no client order id with two deals (0 duplicated);
- each follower's open positions at the venue are exactly its open trade links'.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from accounts.models import TradingAccount
from brokers.paper.testing import VenueClient
from copytrading.models import CopyInstruction, CopySubscription, MasterEvent, TradeLink

OPEN_WORK = ("ready", "in_flight", "waiting")
TRADING_ACTIONS = ("open", "close", "partial_close")
OUR_PREFIXES = ("ct", "rp", "sf")


@dataclass
class CopyCheck:
    """What the check found; `problems` is empty when every invariant holds."""

    events: int = 0
    pairs: int = 0
    instructions: Counter = field(default_factory=Counter)
    venue_deals: int = 0
    repairs: int = 0
    problems: list[str] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)  # problems by kind (see `_problem`)

    def _problem(self, kind: str, text: str) -> None:
        """kind: duplicated, unknown_deal (a deal the database does not know as done),
        no_deal (done in the database, nothing at the venue), unfinished (not copied yet),
        no_reason, positions (venue positions vs open links), orders."""
        self.kinds[kind] += 1
        self.problems.append(text)

    def summary(self) -> str:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.instructions.items()))
        return (
            f"{self.events} events x subscriptions = {self.pairs} pairs; instructions: "
            f"{statuses}; venue deals {self.venue_deals}; repairs {self.repairs}; "
            f"problems {len(self.problems)}"
        )

    def assert_ok(self, *, repairs: int | None = 0) -> None:
        problems = list(self.problems)
        if repairs is not None and self.repairs != repairs:
            problems.append(f"{self.repairs} repair instructions (expected {repairs})")
        assert not problems, self.summary() + "\n" + "\n".join(problems[:30])


def _venue_deals(
    clients: dict[int, VenueClient], accounts: list[TradingAccount]
) -> dict[int, list[dict]]:
    deals = {}
    for account in accounts:
        status, body = clients[account.broker_server_id].get(f"/v1/accounts/{account.login}/deals")
        assert status == 200, body
        deals[account.id] = body
    return deals


def _venue_positions(
    clients: dict[int, VenueClient], accounts: list[TradingAccount]
) -> dict[int, set[str]]:
    held = {}
    for account in accounts:
        client = clients[account.broker_server_id]
        status, body = client.get(f"/v1/accounts/{account.login}/positions")
        assert status == 200, body
        held[account.id] = {str(p["position_id"]) for p in body}
    return held


def check_copies(clients: dict[int, VenueClient], *, master_account_ids: list[int]) -> CopyCheck:
    """Checks the invariants for the events of these master accounts and their subscribers;
    `clients` maps a broker server id to a client of its venue."""
    check = CopyCheck()
    subs = defaultdict(set)
    for sub_id, master_id in CopySubscription.all_objects.filter(
        master_account_id__in=master_account_ids
    ).values_list("id", "master_account_id"):
        subs[master_id].add(sub_id)
    events = list(
        MasterEvent.objects.filter(account_id__in=master_account_ids).values_list(
            "id", "account_id", "fanout_state"
        )
    )
    check.events = len(events)
    instructions = list(
        CopyInstruction.objects.filter(
            subscription__master_account_id__in=master_account_ids
        ).values_list(
            "id",
            "master_event_id",
            "subscription_id",
            "origin",
            "action",
            "status",
            "reason",
            "client_order_id",
            "follower_account_id",
            "order__id",
            "order__filled_volume",
        )
    )
    by_pair = Counter((i[1], i[2]) for i in instructions if i[3] == "event")
    for event_id, master_id, fanout_state in events:
        if fanout_state != "done":
            check._problem("unfinished", f"event {event_id}: fan-out {fanout_state}")
        for sub_id in subs[master_id]:
            check.pairs += 1
            n = by_pair.get((event_id, sub_id), 0)
            if n != 1:
                check._problem(
                    "unfinished" if n == 0 else "duplicated",
                    f"event {event_id} x subscription {sub_id}: {n} instructions",
                )
    done_coids: dict[str, int] = {}
    open_coids = {i[7] for i in instructions if i[5] in OPEN_WORK}
    follower_ids = {i[8] for i in instructions}
    for inst_id, _e, _s, origin, action, status, reason, coid, _a, order, filled in instructions:
        check.instructions[status] += 1
        check.repairs += origin == "repair"
        if status in OPEN_WORK:
            check._problem("unfinished", f"instruction {inst_id} left {status}")
        if status in ("skipped", "failed") and not reason:
            check._problem("no_reason", f"instruction {inst_id} {status} without a reason")
        if status == "done" and action in TRADING_ACTIONS:
            if order is None:
                check._problem("orders", f"instruction {inst_id} done without a follower order")
            elif filled:
                done_coids[coid] = inst_id  # one order per instruction: a OneToOne
    accounts = list(TradingAccount.objects.filter(id__in=follower_ids))
    deals = _venue_deals(clients, accounts)
    per_coid: Counter = Counter()
    for account_deals in deals.values():
        for deal in account_deals:
            coid = deal.get("client_order_id") or ""
            if deal["entry"] in ("in", "out") and coid.startswith(OUR_PREFIXES):
                per_coid[coid] += 1
    check.venue_deals = sum(per_coid.values())
    for coid, n in per_coid.items():
        if n > 1:
            check._problem("duplicated", f"{coid}: {n} deals at the venue (duplicated)")
        if coid in open_coids:
            check._problem("unfinished", f"{coid}: a deal for an instruction still in flight")
        elif coid not in done_coids:
            check._problem(
                "unknown_deal", f"{coid}: a deal at the venue the database does not know"
            )
    for coid, inst_id in done_coids.items():
        if coid not in per_coid:
            check._problem("no_deal", f"instruction {inst_id} ({coid}) done: no deal at the venue")
    held = _venue_positions(clients, accounts)
    linked = defaultdict(set)
    for account_id, position_id in TradeLink.objects.filter(
        follower_account_id__in=follower_ids, status="open"
    ).values_list("follower_account_id", "follower_position_id"):
        linked[account_id].add(position_id)
    for account in accounts:
        extra = held[account.id] - linked[account.id]
        gone = linked[account.id] - held[account.id]
        if extra or gone:
            check._problem(
                "positions",
                f"follower {account.login}: unlinked positions {sorted(extra)}, "
                f"links without a position {sorted(gone)}",
            )
    return check
