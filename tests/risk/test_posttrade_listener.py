"""What the listener hands the risk monitors from a stream batch (pure)."""

from datetime import UTC, datetime
from decimal import Decimal as D

from brokers.gateways.types import (
    AccountUpdate,
    ClosedPosition,
    CloseReason,
    Position,
    Side,
    StreamEvent,
    StreamEventType,
)
from copytrading.listeners import risk_work

T = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


def update(seq, login, equity, balance="10000"):
    data = AccountUpdate(account=login, balance=D(balance), equity=D(equity), margin=D("11"))
    return StreamEvent(seq, StreamEventType.ACCOUNT_UPDATED, login, T, data)


def closed(seq, login, reason):
    position = Position("p1", login, "EURUSD", Side.BUY, D(1), D("1.1"), T)
    data = ClosedPosition(position, D(1), D(0), D("1.05"), D("-500"), reason)
    return StreamEvent(seq, StreamEventType.POSITION_CLOSED, login, T, data)


def opened(seq, login):
    position = Position("p9", login, "EURUSD", Side.BUY, D(1), D("1.1"), T)
    return StreamEvent(seq, StreamEventType.POSITION_OPENED, login, T, position)


def test_nothing_monitored_hands_nothing():
    events = [update(1, 7, "9000"), opened(2, 8), closed(3, 7, CloseReason.CLIENT)]
    assert risk_work(events, monitored=set(), masters={8: 80}, at=T) is None


def test_readings_of_monitored_accounts_master_trades_and_every_stop_out():
    events = [
        update(1, 7, "9000"),
        update(2, 9, "5"),  # not monitored
        opened(3, 8),  # a monitored master's book changed
        opened(4, 10),  # a master without limits
        closed(5, 11, CloseReason.STOP_OUT),  # any follower's stop-out
        closed(6, 8, CloseReason.STOP_OUT),  # a master's stop-out is the master's business
    ]
    work = risk_work(events, monitored={7, 8}, masters={8: 80, 10: 100}, at=T)
    assert work == {
        "readings": [
            {
                "login": 7,
                "balance": "10000",
                "equity": "9000",
                "margin": "11",
                "at": T.isoformat(),
            }
        ],
        "master_logins": [8],
        "stop_outs": [{"login": 11, "position_id": "p1", "price": "1.05", "profit": "-500"}],
    }
