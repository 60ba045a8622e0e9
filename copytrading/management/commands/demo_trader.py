import random
import signal
import time
from decimal import Decimal
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Demo only: the demo masters trade on their paper venue every few seconds (open, "
        "modify, partial close, close), so that copying can be watched live."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=3.0, help="seconds between trades")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--max-trades", type=int, default=0, help="0: until stopped")

    def handle(self, *args: Any, **options: Any) -> None:
        from brokers.gateways import sync_gateway_for
        from brokers.gateways.errors import GatewayError
        from brokers.gateways.types import OrderRequest, Side
        from copytrading.models import CopyMaster

        rng = random.Random(options["seed"])  # noqa: S311 - a demo, not security
        stop = {"now": False}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop["now"] = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        masters = list(
            CopyMaster.objects.filter(enabled=True, account__broker_server__platform="Paper")
            .select_related("account__broker_server")
            .order_by("id")
        )
        if not masters:
            self.stderr.write("demo_trader: no masters on a paper venue; run seed_demo first")
            return
        trades = 0
        while not stop["now"] and (not options["max_trades"] or trades < options["max_trades"]):
            master = rng.choice(masters)
            account = master.account
            gateway = sync_gateway_for(account.broker_server)
            suffix = account.broker_server.symbol_suffix
            try:
                positions = gateway.list_positions(account.login)
                if positions and rng.random() < 0.45:
                    position = rng.choice(positions)
                    partial = position.volume >= Decimal("0.2") and rng.random() < 0.3
                    gateway.close_position(
                        account=account.login,
                        position_id=position.position_id,
                        client_order_id=f"demo-close-{time.time_ns()}",
                        volume=(position.volume / 2).quantize(Decimal("0.01")) if partial else None,
                    )
                    what = "partly closed" if partial else "closed"
                    self.stdout.write(f"master {account.login} {what} {position.symbol}")
                else:
                    symbol = rng.choice(["EURUSD", "GBPUSD", "XAUUSD"]) + suffix
                    side = rng.choice([Side.BUY, Side.SELL])
                    volume = Decimal(rng.choice(["0.1", "0.2", "0.5", "1"]))
                    gateway.place_order(
                        OrderRequest(
                            account=account.login,
                            symbol=symbol,
                            side=side,
                            volume=volume,
                            client_order_id=f"demo-{time.time_ns()}",
                        )
                    )
                    self.stdout.write(f"master {account.login} {side} {volume} {symbol}")
            except GatewayError as exc:
                self.stderr.write(f"demo_trader: {exc}")
            trades += 1
            deadline = time.monotonic() + options["interval"]
            while not stop["now"] and time.monotonic() < deadline:
                time.sleep(0.1)
