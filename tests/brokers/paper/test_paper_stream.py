"""The venue's WebSocket stream: auth, filters, order, replay without gap or repeat, resets."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from brokers.paper.server import Venue, VenueOptions
from brokers.paper.testing import StreamRecorder, VenueClient, running_venue


def seqs(messages: list[dict]) -> list[int]:
    return [m["seq"] for m in messages if m["type"] not in ("heartbeat", "reset")]


def has_types(*types: str):
    return lambda messages: {m["type"] for m in messages} >= set(types)


def test_a_stream_without_a_valid_key_is_refused_with_401_before_the_upgrade(paper):
    login = paper.account()
    venue = paper.venue
    for query in (f"accounts={login}", f"accounts={login}&token=wrong"):
        recorder = StreamRecorder(f"{venue.ws_url}?{query}")
        assert recorder.handshake_status == 401
        assert not recorder.connected
    # a plain GET (no upgrade) shows the JSON error body
    status, body = VenueClient(venue.host, venue.port, None).get(f"/v1/stream?accounts={login}")
    assert status == 401
    assert body["error"] == "UNAUTHORIZED"


def test_the_key_may_come_as_token_or_bearer_header(paper):
    login = paper.account()
    by_token = paper.stream(accounts=login)
    by_header = StreamRecorder(paper.venue.stream_url(accounts=login), headers=paper.venue.headers)
    assert by_token.connected
    assert by_header.connected
    paper.order(login)
    for recorder in (by_token, by_header):
        recorder.wait_for(has_types("position_opened"))
    by_header.close()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("", "accounts"),
        ("accounts=", "accounts"),
        ("accounts=abc", "accounts"),
        ("accounts=1,x", "accounts"),
        ("all=yes", "all"),
        ("all=1&from_seq=-1", "from_seq"),
        ("all=1&from_seq=ten", "from_seq"),
    ],
)
def test_a_bad_stream_query_is_a_422_naming_the_field(paper, query, field):
    api = paper.api
    status, body = api.get(f"/v1/stream?{query}")
    assert status == 422
    assert body["error"] == "VALIDATION_ERROR"
    assert body["message"].startswith(field)
    recorder = StreamRecorder(f"{paper.venue.ws_url}?{query}&token={paper.venue.api_key}")
    assert recorder.handshake_status == 422


def test_an_unknown_account_in_the_query_is_account_not_found(paper):
    status, body = paper.api.get("/v1/stream?accounts=987654")
    assert status == 404
    assert body["error"] == "ACCOUNT_NOT_FOUND"


def test_events_carry_one_increasing_seq_and_each_stream_sees_its_accounts_only(paper):
    one = paper.account()
    two = paper.account()
    mine = paper.stream(accounts=one)
    everything = paper.stream(all=1)
    first = paper.order(one)
    paper.order(two)
    paper.api.patch(f"/v1/positions/{first['position_id']}", {"account": one, "sl": 1.05})
    paper.api.post(
        f"/v1/positions/{first['position_id']}/close", {"account": one, "client_order_id": "x"}
    )
    mine.wait_for(has_types("position_opened", "position_modified", "position_closed"))
    everything.wait_for(lambda ms: {m["account"] for m in ms} >= {one, two})
    everything.wait_for(has_types("position_closed"))
    assert {m["account"] for m in mine.events()} == {one}
    assert [m["type"] for m in mine.events() if m["type"] != "account_updated"] == [
        "position_opened",
        "position_modified",
        "position_closed",
    ]
    all_seqs = seqs(everything.messages)
    assert all_seqs == sorted(all_seqs)
    assert len(set(all_seqs)) == len(all_seqs)
    assert set(seqs(mine.messages)) <= set(all_seqs)
    event = mine.events("position_opened")[0]
    assert set(event) == {"seq", "type", "account", "ts", "data"}
    assert event["data"]["position_id"] == first["position_id"]
    closed = mine.events("position_closed")[0]["data"]
    assert closed["reason"] == "client"
    assert closed["remaining_volume"] == 0
    assert {"closed_volume", "close_price", "profit"} <= set(closed)


def test_pending_order_events(paper):
    login = paper.account()
    stream = paper.stream(accounts=login)
    placed = paper.order(login, type="limit", price=1.09)
    cancelled = paper.order(login, type="stop", price=1.2)
    paper.api.delete(f"/v1/orders/{cancelled['order_id']}?account={login}")
    paper.price("EURUSD", 1.0890, 1.0891)
    messages = stream.wait_for(has_types("order_cancelled", "order_filled"))
    kinds = [
        (m["type"], m["data"].get("order_id")) for m in messages if m["type"] != "account_updated"
    ]
    assert kinds == [
        ("order_placed", placed["order_id"]),
        ("order_placed", cancelled["order_id"]),
        ("order_cancelled", cancelled["order_id"]),
        ("position_opened", None),
        ("order_filled", placed["order_id"]),
    ]
    opened = [m for m in messages if m["type"] == "position_opened"][0]
    assert opened["data"]["position_id"] == placed["order_id"]


def test_account_updated_is_throttled_to_one_a_second_and_the_last_state_arrives(paper):
    login = paper.account()
    stream = paper.stream(accounts=login)
    for _ in range(10):
        paper.order(login, volume=0.01)
    final = paper.get(f"/v1/accounts/{login}")
    messages = stream.wait_for(
        lambda ms: any(
            m["type"] == "account_updated" and m["data"]["margin"] == final["margin"] for m in ms
        ),
        timeout=3,
    )
    updates = [m for m in messages if m["type"] == "account_updated"]
    assert 1 <= len(updates) <= 3  # creation... a burst of 10 fills fits in two seconds
    stamps = [m["ts"] for m in updates]
    assert all(b - a >= 990 for a, b in zip(stamps, stamps[1:], strict=False))
    assert updates[-1]["data"]["balance"] == final["balance"]


def test_heartbeat_every_5_seconds_carries_the_last_seq_sent(paper):
    login = paper.account()
    at_connect = paper.get("/v1/info")["seq"]
    stream = paper.stream(accounts=login)
    paper.order(login)
    messages = stream.wait_for(has_types("heartbeat"), timeout=8)
    heartbeat = [m for m in messages if m["type"] == "heartbeat"][0]
    sent_before = [m["seq"] for m in messages[: messages.index(heartbeat)]]
    # Nothing sent yet: the seq the stream started from.
    assert heartbeat["seq"] == (max(sent_before) if sent_before else at_connect)


def test_replay_after_a_dropped_stream_gives_exactly_the_missed_events(paper):
    login = paper.account()
    stream = paper.stream(accounts=login)
    paper.order(login)
    seen = stream.wait_for(has_types("position_opened"))
    last = max(seqs(seen))
    status, _ = paper.api.post("/v1/admin/faults", {"drop_streams": True})
    assert status == 200
    assert stream.wait_closed() == 1001
    for _ in range(3):
        paper.order(login)  # while nobody listens
    missed = paper.order(login)
    back = paper.stream(accounts=login, from_seq=last)
    messages = back.wait_for(
        lambda ms: any(m["data"].get("position_id") == missed["position_id"] for m in ms)
    )
    replayed = seqs(messages)
    assert replayed[0] > last
    assert len(replayed) == len(set(replayed))
    assert [m["type"] for m in messages].count("position_opened") == 4
    assert paper.stats()["streams"] == 1


def test_replay_races_live_events_without_gap_or_repeat(paper):
    logins = [paper.account(balance=1_000_000) for _ in range(3)]
    first = paper.stream(all=1)
    stop = threading.Event()

    def trade() -> None:
        client = paper.venue.client()
        n = 0
        while not stop.is_set():
            n += 1
            body = {
                "account": logins[n % 3],
                "symbol": "EURUSD",
                "side": "buy",
                "type": "market",
                "volume": 0.01,
                "client_order_id": f"race-{n}",
            }
            client.post("/v1/orders", body)
        client.close()

    trader = threading.Thread(target=trade)
    trader.start()
    try:
        first.wait_for(lambda ms: len(seqs(ms)) >= 50)
        first.close()
        cut = max(seqs(first.messages))
        second = paper.stream(all=1, from_seq=cut)  # connects while orders keep coming
        second.wait_for(lambda ms: len(seqs(ms)) >= 200)
    finally:
        stop.set()
        trader.join()
    final_seq = paper.get("/v1/info")["seq"]
    # (held-back account_updated events may still follow final_seq)
    received = seqs(second.wait_for(lambda ms: seqs(ms) and max(seqs(ms)) >= final_seq))
    assert received == list(range(cut + 1, received[-1] + 1))
    assert seqs(first.messages) == list(range(seqs(first.messages)[0], cut + 1))


def test_from_seq_from_the_future_or_after_a_reset_gets_a_reset_message(paper):
    login = paper.account()
    paper.order(login)
    current = paper.get("/v1/info")["seq"]
    stream = paper.stream(accounts=login, from_seq=current + 100)
    (first,) = stream.wait_for(lambda ms: len(ms) >= 1)[:1]
    assert first["type"] == "reset"
    assert first["seq"] == current


def test_admin_reset_closes_open_streams(paper):
    login = paper.account()
    stream = paper.stream(accounts=login)
    paper.api.post("/v1/admin/reset", {})
    assert stream.wait_closed() == 1012


def test_a_from_seq_older_than_the_retained_events_gets_reset_then_live_events(paper_factory):
    with running_venue(retain_events=20) as venue:
        paper = paper_factory(venue)
        try:
            login = paper.account()
            for _ in range(30):  # a position_opened each (account_updated: one a second)
                paper.order(login)
            current = paper.get("/v1/info")["seq"]
            assert current > 20
            old = paper.stream(accounts=login, from_seq=1)
            messages = old.wait_for(lambda ms: len(ms) >= 1)
            assert messages[0] == {**messages[0], "type": "reset", "seq": current}
            recent = paper.stream(accounts=login, from_seq=current - 5)
            replayed = seqs(recent.wait_for(lambda ms: len(seqs(ms)) >= 1))
            assert replayed[0] > current - 5
            paper.order(login)
            old.wait_for(lambda ms: any(m["type"] == "position_opened" for m in ms))
        finally:
            paper.close()


def test_sigterm_closes_streams_with_a_close_frame_and_exits_cleanly(paper_factory):
    with running_venue() as venue:
        paper = paper_factory(venue)
        login = paper.account()
        stream = paper.stream(accounts=login)
        started = time.monotonic()
        venue.process.terminate()
        assert stream.wait_closed(timeout=5) == 1001
        assert venue.process.wait(5) == 0
        assert time.monotonic() - started < 3
        assert "stopped" in venue.log_text()
        paper.close()


class SilentSocket:
    """Stands in for a WebSocket whose client stopped reading: it only records its close."""

    def __init__(self) -> None:
        self.closed_with: tuple[int, bytes] | None = None

    async def close(self, *, code: int, message: bytes) -> None:
        self.closed_with = (code, message)


def test_a_client_too_far_behind_is_dropped_without_slowing_trading():
    async def scenario() -> None:
        venue = Venue(VenueOptions(ticks_ms=0))
        slow_socket, fine_socket = SilentSocket(), SilentSocket()
        slow = venue.subscribe(slow_socket, None, None, "all")
        fine = venue.subscribe(fine_socket, None, None, "all")
        slow.limit = 5
        _, account = venue.engine.create_account(
            {"balance": 100000, "currency": "USD", "leverage": 100, "mode": "DEMO"}
        )
        for i in range(10):
            venue.engine.place_order(
                {
                    "account": account["login"],
                    "symbol": "EURUSD",
                    "side": "buy",
                    "type": "market",
                    "volume": "0.01",
                    "client_order_id": f"s{i}",
                }
            )
        assert not slow.live
        assert not slow.queue
        assert fine.live
        assert len(fine.queue) == venue.engine.seq
        await asyncio.sleep(0)  # let the close task run
        assert slow_socket.closed_with is not None
        assert slow_socket.closed_with[0] == 1013
        assert venue.streams == {fine}

    asyncio.run(scenario())
