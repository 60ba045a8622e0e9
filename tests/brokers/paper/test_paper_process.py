"""The venue as a process: options, two brokers side by side, start, stop, the Django command."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from brokers.paper.server import VenueOptions, parse_args
from brokers.paper.testing import VenueClient, running_venue

ROOT = Path(__file__).resolve().parents[3]


def test_every_option_is_parsed():
    options = parse_args(
        [
            "--port", "9123", "--host", "0.0.0.0", "--platform", "cTrader",
            "--symbol-suffix", ".pro", "--min-volume", "0.1", "--volume-step", "0.1",
            "--max-volume", "50", "--ticks-ms", "0", "--seed", "42", "--api-key", "k",
        ]
    )  # fmt: skip
    assert options == VenueOptions(
        port=9123,
        host="0.0.0.0",  # noqa: S104
        platform="cTrader",
        symbol_suffix=".pro",
        min_volume=Decimal("0.1"),
        volume_step=Decimal("0.1"),
        max_volume=Decimal("50"),
        ticks_ms=0,
        seed=42,
        api_key="k",
    )


def test_defaults_and_the_key_from_the_environment(monkeypatch):
    monkeypatch.delenv("PAPER_VENUE_KEY", raising=False)
    options = parse_args([])
    assert (options.host, options.port, options.api_key) == ("127.0.0.1", 8700, "paper-dev-key")
    monkeypatch.setenv("PAPER_VENUE_KEY", "from-env")
    assert parse_args([]).api_key == "from-env"
    assert parse_args(["--api-key", "given"]).api_key == "given"


@pytest.mark.parametrize(
    "argv",
    [
        ["--min-volume", "0"],
        ["--min-volume", "0.015", "--volume-step", "0.01"],
        ["--max-volume", "0.001"],
        ["--ticks-ms", "-1"],
        ["--port", "x"],
    ],
)
def test_inconsistent_options_are_refused(argv):
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_two_venues_side_by_side_behave_as_two_brokers():
    with (
        running_venue(symbol_suffix="m", min_volume="0.1", platform="MT4") as first,
        running_venue(symbol_suffix=".r", min_volume="0.01", max_volume="10") as second,
    ):
        one, two = first.client(), second.client()
        logins = []
        for api in (one, two):
            status, account = api.post(
                "/v1/accounts",
                {"balance": 10000, "currency": "USD", "leverage": 100, "mode": "DEMO"},
            )
            assert status == 201
            logins.append(account["login"])
        assert one.get(f"/v1/accounts/{logins[0]}")[1]["platform"] == "MT4"
        names = {s["symbol"] for s in one.get("/v1/symbols")[1]}
        assert "EURUSDm" in names
        assert {s["symbol"] for s in two.get("/v1/symbols")[1]} >= {"EURUSD.r", "XAUUSD.r"}

        def order(api: VenueClient, login: int, symbol: str, volume: str) -> tuple[int, dict]:
            body = {
                "account": login,
                "symbol": symbol,
                "side": "buy",
                "type": "market",
                "volume": volume,
                "client_order_id": f"{symbol}-{volume}",
            }
            return api.post("/v1/orders", body)

        assert order(one, logins[0], "EURUSDm", "0.05")[1]["error"] == "INVALID_VOLUME"
        assert order(one, logins[0], "EURUSD.r", "0.1")[1]["error"] == "SYMBOL_NOT_FOUND"
        assert order(one, logins[0], "EURUSDm", "0.1")[0] == 201
        assert order(two, logins[1], "EURUSD.r", "0.05")[0] == 201
        assert order(two, logins[1], "EURUSD.r", "11")[1]["error"] == "INVALID_VOLUME"
        assert one.get("/v1/admin/stats")[1]["orders"] == 1
        assert two.get("/v1/admin/stats")[1]["orders"] == 1
        one.close()
        two.close()


def test_python_m_starts_in_under_two_seconds_and_sigint_stops_it():
    started = time.monotonic()
    with running_venue() as venue:
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, elapsed
        venue.process.send_signal(signal.SIGINT)
        assert venue.process.wait(5) == 0
        assert "paper venue stopped" in venue.log_text()


def test_the_price_feed_moves_prices_when_ticks_are_on():
    with running_venue(ticks_ms=20) as venue:
        api = venue.client()
        start = api.get("/v1/prices/EURUSD")[1]
        deadline = time.monotonic() + 5
        while (now := api.get("/v1/prices/EURUSD")[1])["bid"] == start["bid"]:
            assert time.monotonic() < deadline, "the feed did not move EURUSD"
            time.sleep(0.02)
        assert now["ts"] > start["ts"]
        assert round(now["ask"] - now["bid"], 5) == round(start["ask"] - start["bid"], 5)
        api.close()


@pytest.mark.skipif(
    importlib.util.find_spec("django") is None or not (ROOT / "config" / "settings").exists(),
    reason="Django settings not available",
)
def test_manage_py_runvenue_serves_the_same_venue():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "manage.py", "runvenue", "--port", str(port), "--ticks-ms", "0",
         "--api-key", "cmd-key", "--symbol-suffix", "x"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        client = VenueClient("127.0.0.1", port, "cmd-key", timeout=1)
        deadline = time.monotonic() + 15
        while True:
            try:
                status, symbols = client.get("/v1/symbols")
                break
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "runvenue did not answer"
                time.sleep(0.05)
        assert status == 200
        assert symbols[0]["symbol"] == "EURUSDx"
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
