"""Every error code of the venue, provoked for real, arrives as its GatewayReason."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.gateways import GatewayError, GatewayReason
from brokers.gateways.rest_ws import RestWsGateway, RetryPolicy
from brokers.gateways.types import OrderRequest, OrderStatus, OrderType, Side

pytestmark = pytest.mark.e2e


def order(login: int, cid: str, volume: str = "0.10", **fields: object) -> OrderRequest:
    return OrderRequest(
        account=login,
        symbol=str(fields.pop("symbol", "EURUSD")),
        side=Side.BUY,
        volume=Decimal(volume),
        client_order_id=cid,
        **fields,  # type: ignore[arg-type]
    )


def test_order_refusals_come_back_as_rejected_results_with_their_reason(run, admin):
    async def scenario(gw: RestWsGateway):
        login = (await gw.create_account(balance=Decimal(1000))).login
        disabled = (await gw.create_account(balance=Decimal(1000))).login
        admin.account_status(disabled, "disabled")
        admin.market("GBPUSD", trading=False)
        await gw.place_order(order(login, "taken"))
        cases = {
            GatewayReason.INVALID_VOLUME: order(login, "v", "0.005"),
            GatewayReason.INVALID_STOPS: order(login, "s", sl=Decimal("1.2")),
            GatewayReason.SYMBOL_NOT_FOUND: order(login, "y", symbol="EURXXX"),
            GatewayReason.INSUFFICIENT_MARGIN: order(login, "m", "50"),
            GatewayReason.MARKET_CLOSED: order(login, "c", symbol="GBPUSD"),
            GatewayReason.ACCOUNT_DISABLED: order(disabled, "d"),
            GatewayReason.ACCOUNT_NOT_FOUND: order(999_999_999, "n"),
            GatewayReason.VALIDATION: order(login, "p", type=OrderType.LIMIT),
            GatewayReason.IDEMPOTENCY_CONFLICT: order(login, "taken", "0.20"),
        }
        return {reason: await gw.place_order(req) for reason, req in cases.items()}

    results = run(scenario)
    for reason, result in results.items():
        assert result.status is OrderStatus.REJECTED, reason
        assert result.reason is reason
        assert result.message
        assert result.retryable is False
        assert result.raw["error"]  # the venue's own code is kept for the record


def test_not_found_codes_raise_with_their_reason(run):
    async def scenario(gw: RestWsGateway):
        login = (await gw.create_account(balance=Decimal(1000))).login
        raised = {}
        calls = {
            GatewayReason.ACCOUNT_NOT_FOUND: gw.get_account(999_999_999),
            GatewayReason.POSITION_NOT_FOUND: gw.close_position(
                account=login, position_id="424242", client_order_id="c"
            ),
            GatewayReason.ORDER_NOT_FOUND: gw.cancel_order(account=login, order_id="424242"),
        }
        for reason, call in calls.items():
            with pytest.raises(GatewayError) as caught:
                await call
            raised[reason] = caught.value
        return raised

    for reason, error in run(scenario).items():
        assert error.reason is reason
        assert error.http_status == 404
        assert error.retryable is False


def test_a_wrong_key_is_unauthorized_and_raised_even_for_orders(venue):
    import asyncio

    async def main():
        async with RestWsGateway(
            venue.url, "not-the-key", dedupes_client_order_ids=True, retry=RetryPolicy(attempts=1)
        ) as gw:
            errors = []
            for call in (gw.list_symbols(), gw.place_order(order(100001, "u"))):
                with pytest.raises(GatewayError) as caught:
                    await call
                errors.append(caught.value)
            return errors

    for error in asyncio.run(main()):
        assert error.reason is GatewayReason.UNAUTHORIZED
        assert error.http_status == 401
        assert "not-the-key" not in str(error)


def test_unavailable_after_every_attempt_raises_with_the_outcome_unknown(run, admin):
    async def scenario(gw: RestWsGateway):
        login = (await gw.create_account(balance=Decimal(1000))).login
        admin.faults(error_rate=1.0, seed=5)
        with pytest.raises(GatewayError) as caught:
            await gw.place_order(order(login, "u-1"))
        return caught.value

    error = run(scenario, retry=RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002))
    assert error.reason is GatewayReason.UNAVAILABLE
    assert error.http_status == 503
    assert error.retryable is True
    assert error.outcome_unknown is True


def test_rate_limited_by_the_venue_past_the_bound_raises_rate_limited(run, admin):
    status, answer = admin.api.post("/v1/admin/faults", {"rate_limit_per_s": 1})
    if status != 200:
        pytest.skip(f"this venue has no rate limit fault ({answer})")

    async def scenario(gw: RestWsGateway):
        login = (await gw.create_account(balance=Decimal(100000))).login
        results = []
        for i in range(3):
            try:
                results.append(await gw.place_order(order(login, f"r-{i}", "0.01")))
            except GatewayError as exc:
                results.append(exc)
        return results

    no_waiting = RetryPolicy(attempts=1, base_delay=0.5, max_delay=0.5, rate_limit_max_wait=0)
    results = run(scenario, retry=no_waiting)
    limited = [r for r in results if isinstance(r, GatewayError)]
    assert limited, results
    assert all(e.reason is GatewayReason.RATE_LIMITED and e.retryable for e in limited)
