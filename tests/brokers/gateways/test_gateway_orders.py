"""The REST gateway against the real paper venue over real sockets: reads and trading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from brokers.gateways import UNCHANGED, GatewayError, GatewayReason
from brokers.gateways.rest_ws import RestWsGateway
from brokers.gateways.types import (
    AccountMode,
    DealEntry,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
)
from tests.brokers.gateways.gateway_helpers import assert_decimal_fields, aware, floats_in

pytestmark = pytest.mark.e2e


def buy(login: int, cid: str, volume: str = "0.10", **fields: object) -> OrderRequest:
    return OrderRequest(
        account=login,
        symbol=str(fields.pop("symbol", "EURUSD")),
        side=Side(fields.pop("side", Side.BUY)),
        volume=Decimal(volume),
        client_order_id=cid,
        **fields,  # type: ignore[arg-type]
    )


async def new_account(gw: RestWsGateway, balance: str = "100000") -> int:
    account = await gw.create_account(balance=Decimal(balance), leverage=100)
    return account.login


def test_account_symbols_and_quote_are_normalized(run):
    async def scenario(gw: RestWsGateway):
        created = await gw.create_account(
            balance=Decimal("2500.50"), currency="USD", leverage=200, mode=AccountMode.DEMO
        )
        account = await gw.get_account(created.login)
        symbols = await gw.list_symbols()
        quote = await gw.get_quote("EURUSD")
        return created, account, symbols, quote

    created, account, symbols, quote = run(scenario)
    assert account.login == created.login
    assert account.balance == Decimal("2500.50")
    assert (account.leverage, account.currency, account.mode, account.enabled) == (
        200,
        "USD",
        "DEMO",
        True,
    )
    assert_decimal_fields(account, "balance", "equity", "margin", "free_margin")
    eurusd = next(s for s in symbols if s.symbol == "EURUSD")
    assert (eurusd.contract_size, eurusd.min_volume, eurusd.volume_step) == (
        Decimal(100000),
        Decimal("0.01"),
        Decimal("0.01"),
    )
    assert {s.symbol for s in symbols} >= {"EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "US30"}
    assert floats_in(symbols) == []
    assert (quote.bid, quote.ask) == (Decimal("1.10000"), Decimal("1.10010"))
    assert aware(quote.ts)


def test_symbols_carry_the_venue_suffix_and_lot_rules():
    # A second venue playing another broker: suffix and lot rules differ.
    import asyncio

    from brokers.paper.testing import running_venue

    with running_venue(api_key="k2", symbol_suffix="m", min_volume="0.1", volume_step="0.1") as v2:

        async def main():
            async with RestWsGateway(v2.url, "k2", dedupes_client_order_ids=True) as gw:
                return await gw.list_symbols()

        symbols = asyncio.run(main())
    eurusd = next(s for s in symbols if s.symbol == "EURUSDm")
    assert (eurusd.min_volume, eurusd.volume_step) == (Decimal("0.1"), Decimal("0.1"))


def test_market_order_fills_with_decimal_volumes_and_prices(run, admin):
    async def scenario(gw: RestWsGateway):
        login = await new_account(gw)
        result = await gw.place_order(buy(login, "open-1", "0.25", sl=Decimal("1.09")))
        positions = await gw.list_positions(login)
        return login, result, positions

    login, result, positions = run(scenario)
    assert result.status is OrderStatus.FILLED
    assert (result.requested_volume, result.filled_volume) == (Decimal("0.25"), Decimal("0.25"))
    assert result.price == Decimal("1.10010")  # a buy fills at the ask
    assert result.client_order_id == "open-1"
    assert result.replayed is False
    assert aware(result.ts)
    assert_decimal_fields(result, "requested_volume", "filled_volume", "price")
    [position] = positions
    assert position.position_id == result.position_id
    assert (position.volume, position.sl, position.tp) == (Decimal("0.25"), Decimal("1.09"), None)
    assert position.client_order_id == "open-1"
    assert_decimal_fields(position, "volume", "open_price", "sl", "tp", "profit")


def test_the_same_order_sent_twice_is_one_position_and_the_second_answer_a_replay(run, admin):
    async def scenario(gw: RestWsGateway):
        login = await new_account(gw)
        first = await gw.place_order(buy(login, "dup-1"))
        second = await gw.place_order(buy(login, "dup-1"))
        conflict = await gw.place_order(buy(login, "dup-1", "0.20"))
        return login, first, second, conflict

    login, first, second, conflict = run(scenario)
    assert second.replayed is True
    assert (second.position_id, second.price) == (first.position_id, first.price)
    assert second.ts == first.ts
    assert conflict.status is OrderStatus.REJECTED
    assert conflict.reason is GatewayReason.IDEMPOTENCY_CONFLICT
    assert len(admin.positions(login)) == 1


def test_partial_fill_reports_what_was_filled(run, admin):
    admin.faults(partial_fill_rate=1.0, seed=3)

    async def scenario(gw: RestWsGateway):
        login = await new_account(gw)
        return await gw.place_order(buy(login, "part-1", "1.00"))

    result = run(scenario)
    assert result.status is OrderStatus.PARTIALLY_FILLED
    assert Decimal(0) < result.filled_volume < Decimal("1.00")
    assert result.requested_volume == Decimal("1.00")


def test_batch_answers_one_result_per_order_in_order_with_partial_success(run, admin):
    async def scenario(gw: RestWsGateway):
        login = await new_account(gw)
        requests = [
            buy(login, "b-1", "0.10"),
            buy(login, "b-2", "0.10", symbol="NOPE"),
            buy(login, "b-3", "0.20", side=Side.SELL),
            buy(login, "b-4", "0.001"),
            buy(login, "b-5", "0.30", symbol="GBPUSD"),
        ]
        return login, await gw.place_orders(requests)

    login, results = run(scenario)
    assert [r.client_order_id for r in results] == ["b-1", "b-2", "b-3", "b-4", "b-5"]
    assert [r.status for r in results] == [
        OrderStatus.FILLED,
        OrderStatus.REJECTED,
        OrderStatus.FILLED,
        OrderStatus.REJECTED,
        OrderStatus.FILLED,
    ]
    assert results[1].reason is GatewayReason.SYMBOL_NOT_FOUND
    assert results[3].reason is GatewayReason.INVALID_VOLUME
    assert results[2].price == Decimal("1.10000")  # a sell fills at the bid
    assert floats_in(results) == []
    held = {p["client_order_id"] for p in admin.positions(login)}
    assert held == {"b-1", "b-3", "b-5"}


def test_batch_is_chunked_and_keeps_request_order(run, admin):
    async def scenario(gw: RestWsGateway):
        login = await new_account(gw, "10000000")
        requests = [buy(login, f"c-{i}", "0.01") for i in range(7)]
        requests[4] = buy(login, "c-4", "0.01", symbol="NOPE")
        return login, await gw.place_orders(requests)

    login, results = run(scenario, batch_size=3)
    assert [r.client_order_id for r in results] == [f"c-{i}" for i in range(7)]
    assert [r.ok for r in results] == [True, True, True, True, False, True, True]
    assert len(admin.positions(login)) == 6


def test_a_batch_over_one_thousand_is_split_at_the_protocol_limit(run, admin):
    async def scenario(gw: RestWsGateway):
        login = await new_account(gw, "100000000")
        requests = [buy(login, f"k-{i}", "0.01") for i in range(1001)]
        return login, await gw.place_orders(requests)

    login, results = run(scenario)
    assert len(results) == 1001
    assert all(r.status is OrderStatus.FILLED for r in results)
    assert results[1000].client_order_id == "k-1000"
    assert admin.stats()["orders"] == 1001


def test_batch_refuses_two_requests_with_one_client_order_id(run):
    async def scenario(gw: RestWsGateway):
        with pytest.raises(ValueError, match="client_order_id"):
            await gw.place_orders([buy(1, "same"), buy(1, "same")])

    run(scenario)


def test_close_partial_then_full_with_deals_recorded(run, admin):
    async def scenario(gw: RestWsGateway):
        login = await new_account(gw)
        opened = await gw.place_order(buy(login, "o-1", "0.10"))
        admin.price("EURUSD", 1.10100, 1.10110)
        partial = await gw.close_position(
            account=login,
            position_id=opened.position_id,
            client_order_id="x-1",
            volume=Decimal("0.04"),
        )
        remaining = await gw.list_positions(login)
        full = await gw.close_position(
            account=login, position_id=opened.position_id, client_order_id="x-2"
        )
        replay = await gw.close_position(
            account=login, position_id=opened.position_id, client_order_id="x-2"
        )
        deals = await gw.list_deals(login)
        recent = await gw.list_deals(login, since=datetime.now(UTC) + timedelta(hours=1))
        return (
            opened,
            partial,
            remaining,
            full,
            replay,
            deals,
            recent,
            await gw.list_positions(login),
        )

    opened, partial, remaining, full, replay, deals, recent, after = run(scenario)
    assert (partial.closed_volume, partial.remaining_volume) == (Decimal("0.04"), Decimal("0.06"))
    assert partial.price == Decimal("1.10100")  # a buy closes at the bid
    assert partial.profit == Decimal("3.60")  # 0.0009 x 0.04 lots x 100,000
    assert_decimal_fields(partial, "closed_volume", "remaining_volume", "price", "profit")
    assert [p.volume for p in remaining] == [Decimal("0.06")]
    assert (full.closed_volume, full.remaining_volume) == (Decimal("0.06"), Decimal(0))
    assert replay.replayed is True
    assert replay.closed_volume == full.closed_volume
    assert after == []
    entries = [(d.entry, d.client_order_id, d.volume) for d in deals]
    assert entries == [
        (DealEntry.IN, "o-1", Decimal("0.1")),
        (DealEntry.OUT, "x-1", Decimal("0.04")),
        (DealEntry.OUT, "x-2", Decimal("0.06")),
    ]
    assert all(d.position_id == opened.position_id for d in deals)
    assert recent == []
    assert floats_in(deals) == []


def test_modify_sets_removes_and_keeps_stops(run):
    async def scenario(gw: RestWsGateway):
        login = await new_account(gw)
        opened = await gw.place_order(buy(login, "m-1"))
        pid = opened.position_id
        both = await gw.modify_position(
            account=login, position_id=pid, sl=Decimal("1.09000"), tp=Decimal("1.12000")
        )
        sl_removed = await gw.modify_position(account=login, position_id=pid, sl=None)
        tp_moved = await gw.modify_position(
            account=login, position_id=pid, sl=UNCHANGED, tp=Decimal("1.13")
        )
        with pytest.raises(GatewayError) as wrong_side:
            await gw.modify_position(account=login, position_id=pid, sl=Decimal("1.2"))
        return both, sl_removed, tp_moved, wrong_side.value

    both, sl_removed, tp_moved, wrong_side = run(scenario)
    assert (both.sl, both.tp) == (Decimal("1.09"), Decimal("1.12"))
    assert (sl_removed.sl, sl_removed.tp) == (None, Decimal("1.12"))
    assert (tp_moved.sl, tp_moved.tp) == (None, Decimal("1.13"))
    assert wrong_side.reason is GatewayReason.INVALID_STOPS


def test_pending_order_is_placed_listed_and_cancelled(run):
    async def scenario(gw: RestWsGateway):
        login = await new_account(gw)
        placed = await gw.place_order(
            buy(login, "lim-1", "0.30", type=OrderType.LIMIT, price=Decimal("1.05000"))
        )
        pending = await gw.list_pending_orders(login)
        await gw.cancel_order(account=login, order_id=placed.order_id)
        after = await gw.list_pending_orders(login)
        with pytest.raises(GatewayError) as again:
            await gw.cancel_order(account=login, order_id=placed.order_id)
        return placed, pending, after, again.value

    placed, pending, after, again = run(scenario)
    assert placed.status is OrderStatus.PLACED
    assert (placed.filled_volume, placed.position_id) == (Decimal(0), None)
    [order] = pending
    assert (order.order_id, order.type, order.price, order.volume) == (
        placed.order_id,
        OrderType.LIMIT,
        Decimal("1.05"),
        Decimal("0.3"),
    )
    assert order.client_order_id == "lim-1"
    assert_decimal_fields(order, "volume", "price", "sl", "tp")
    assert after == []
    assert again.reason is GatewayReason.ORDER_NOT_FOUND
    assert again.retryable is False


def test_lookup_order_finds_positions_pending_orders_and_closed_deals(run):
    async def scenario(gw: RestWsGateway):
        login = await new_account(gw)
        opened = await gw.place_order(buy(login, "l-open"))
        closed = await gw.place_order(buy(login, "l-closed"))
        await gw.close_position(
            account=login, position_id=closed.position_id, client_order_id="l-closer"
        )
        await gw.place_order(buy(login, "l-limit", type=OrderType.LIMIT, price=Decimal("1.0")))
        found = {
            cid: await gw.lookup_order(login, cid)
            for cid in ("l-open", "l-closed", "l-limit", "l-never")
        }
        return opened, closed, found

    opened, closed, found = run(scenario)
    assert found["l-open"].position_id == opened.position_id
    assert found["l-open"].status is OrderStatus.FILLED
    assert found["l-closed"].position_id == closed.position_id  # from its opening deal
    assert found["l-closed"].filled_volume == Decimal("0.1")
    assert found["l-limit"].status is OrderStatus.PLACED
    assert all(r.replayed for r in found.values() if r is not None)
    assert found["l-never"] is None


def test_balance_operation_credits_debits_and_replays(run):
    async def scenario(gw: RestWsGateway):
        login = await new_account(gw, "1000")
        credit = await gw.balance_operation(
            account=login, amount=Decimal("250.25"), comment="bonus", client_op_id="op-1"
        )
        again = await gw.balance_operation(
            account=login, amount=Decimal("250.25"), comment="bonus", client_op_id="op-1"
        )
        debit = await gw.balance_operation(
            account=login, amount=Decimal("-12.50"), comment="fee", client_op_id="op-2"
        )
        deals = await gw.list_deals(login)
        return credit, again, debit, deals, await gw.get_account(login)

    credit, again, debit, deals, account = run(scenario)
    assert credit.balance == Decimal("1250.25")
    assert (again.replayed, again.deal_id, again.balance) == (True, credit.deal_id, credit.balance)
    assert debit.balance == Decimal("1237.75")
    assert account.balance == Decimal("1237.75")
    assert [d.entry for d in deals] == [DealEntry.BALANCE, DealEntry.BALANCE]


def test_create_account_with_a_login_is_safe_to_repeat(run):
    async def scenario(gw: RestWsGateway):
        first = await gw.create_account(balance=Decimal(500), login=424242, name="Demo A")
        second = await gw.create_account(balance=Decimal(500), login=424242, name="Demo A")
        return first, second

    first, second = run(scenario)
    assert first.login == second.login == 424242
    assert first.name == "Demo A"
