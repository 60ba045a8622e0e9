"""The faults suite: every scenario is seeded (FAULTS_SEED, printed, so a failure replays),
bounded in time (a hard deadline per scenario), and ends with tests/faults/invariants.py.

    FAULTS_SEED=20261206 FAULTS_RUNS=2 pytest -m faults
"""

from __future__ import annotations

import os
import random
import signal
import zlib
from collections.abc import Iterator

import pytest

from brokers.paper.testing import Venue, running_venue
from tests.copytrading.copy_world import World, build_world

DEFAULT_SEED = 20261206
SEED = int(os.environ.get("FAULTS_SEED", DEFAULT_SEED))
RUNS = int(os.environ.get("FAULTS_RUNS", 2))


def run_seeds(name: str) -> list[int]:
    """The seeds of a scenario run several times (FAULTS_RUNS of them), derived from SEED."""
    return [SEED + i * 7919 + zlib.crc32(name.encode()) % 1000 for i in range(RUNS)]


@pytest.fixture
def fault_seed(request: pytest.FixtureRequest) -> int:
    """This scenario's seed: its `seed` parameter (scenarios run FAULTS_RUNS times), else
    FAULTS_SEED; printed, and shown with the replay command in the report of a failure."""
    callspec = getattr(request.node, "callspec", None)
    seed = callspec.params.get("seed", SEED) if callspec is not None else SEED
    replay = f"FAULTS_SEED={SEED} FAULTS_RUNS={RUNS} pytest '{request.node.nodeid}'"
    request.node.add_report_section("call", "faults", f"seed {seed}: replay with {replay}")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"[faults] {request.node.name}: seed {seed} (FAULTS_SEED={SEED})")
    return seed


@pytest.fixture
def rng(fault_seed: int) -> random.Random:
    return random.Random(fault_seed)


@pytest.fixture
def deadline(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails a scenario that runs past its budget (marker `faults_budget(seconds)`, default
    90 s) instead of letting it hang the suite: SIGALRM raises in the test's thread."""
    marker = request.node.get_closest_marker("faults_budget")
    budget = marker.args[0] if marker else 90

    def expired(signum: int, frame: object) -> None:
        raise AssertionError(f"scenario exceeded its {budget} s budget")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def venue() -> Iterator[Venue]:
    with running_venue(ticks_ms=0) as v:
        yield v


@pytest.fixture
def world(venue: Venue) -> Iterator[World]:
    w = build_world([venue])
    yield w
    w.stack.close()
