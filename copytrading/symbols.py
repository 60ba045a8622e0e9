"""Which follower symbol a master symbol copies to, and whether the subscription wants it.

Pure functions over plain data (strings, pairs, mappings): no database, so the copy
decision that uses them can be replayed from stored inputs.

Resolution order (`resolve_follower_symbol`), first match wins:

1. an account-level map (a `SymbolMap` row for this follower account),
2. a server-level map (a row for the follower's whole server),
3. the suffix rule: strip the master server's suffix, add the follower server's
   (EURUSD.pro on a ".pro" server -> EURUSDm on an "m" server).

The caller passes each level as (master symbol, follower symbol) pairs, having already
merged rows limited to the master's server over rows for any server within that level
(the `source_server` column). A map matches the master symbol case-insensitively, by
its full name first and then by its name without the master server's suffix, so a
map written as "EURUSD" also serves "EURUSD.pro".

Symbol filters (`symbols_mode`, `symbols`) compare master symbol names the same way:
case-insensitive and suffix-insensitive, so "eurusd", "EURUSD" and "EURUSD.pro" in the
list all select the master's "EURUSD.pro".

Suffixes are stripped case-insensitively and at most once, and never when the name is
the suffix itself: a venue appends its suffix to every symbol name, so a name ending in
it carries it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from functools import lru_cache
from typing import Protocol, TypeVar

__all__ = [
    "SymbolCheck",
    "SymbolSource",
    "SymbolsMode",
    "Resolution",
    "base_symbol",
    "check_follower_symbol",
    "find_symbol",
    "index_symbols",
    "parse_symbol_list",
    "resolve_follower_symbol",
    "symbol_key",
    "symbol_selected",
]


class SymbolsMode(IntEnum):
    """Wire values of the subscription's `symbols_mode` (copytrading.choices mirrors them)."""

    ALL = 0
    ONLY_LISTED = 1
    ALL_BUT_LISTED = 2


class SymbolSource(StrEnum):
    """Which rule gave the follower symbol."""

    ACCOUNT_MAP = "account_map"
    SERVER_MAP = "server_map"
    SUFFIX_RULE = "suffix_rule"


class SymbolCheck(StrEnum):
    """Whether the follower's server can take an order on a symbol now."""

    OK = "ok"
    NOT_FOUND = "not_found"
    MARKET_CLOSED = "market_closed"


@dataclass(frozen=True, slots=True)
class Resolution:
    """The follower symbol name for a master symbol, and the rule that gave it."""

    symbol: str
    source: SymbolSource


class SymbolLike(Protocol):
    """What the checks need of a symbol spec (decision.SymbolSpec has it)."""

    @property
    def symbol(self) -> str: ...

    @property
    def trading(self) -> bool: ...


S = TypeVar("S", bound=SymbolLike)

MapPairs = Mapping[str, str] | Iterable[tuple[str, str]]


def base_symbol(symbol: str, suffix: str) -> str:
    """The symbol name without the server's suffix (case-insensitive, once)."""
    if (
        suffix
        and len(symbol) > len(suffix)
        and symbol[-len(suffix) :].casefold() == (suffix.casefold())
    ):
        return symbol[: -len(suffix)]
    return symbol


def symbol_key(symbol: str, suffix: str) -> str:
    """The comparison key of a master symbol name: suffix stripped, case folded."""
    return base_symbol(symbol.strip(), suffix).casefold()


@lru_cache(maxsize=8192)
def parse_symbol_list(symbols: str, suffix: str) -> frozenset[str]:
    """The keys of a comma-separated `symbols` list, as `symbol_key` makes them.

    Cached: the same few lists come back for every event of a master, and the hot path
    should not split strings for each of 100,000 followers.
    """
    return frozenset(symbol_key(s, suffix) for s in symbols.split(",") if s.strip())


@lru_cache(maxsize=16384)
def symbol_selected(master_symbol: str, *, mode: int, symbols: str, master_suffix: str) -> bool:
    """Whether a subscription's symbol filter lets a master symbol through.

    Mode 0 all, 1 only the listed, 2 all but the listed (spec/client-api.md). Cached:
    followers of one master share a handful of lists.
    """
    if mode == SymbolsMode.ALL:
        return True
    listed = symbol_key(master_symbol, master_suffix) in parse_symbol_list(symbols, master_suffix)
    if mode == SymbolsMode.ONLY_LISTED:
        return listed
    if mode == SymbolsMode.ALL_BUT_LISTED:
        return not listed
    raise ValueError(f"unknown symbols_mode {mode!r}")


def resolve_follower_symbol(
    master_symbol: str,
    *,
    master_suffix: str,
    follower_suffix: str,
    account_maps: MapPairs = (),
    server_maps: MapPairs = (),
) -> Resolution:
    """The follower symbol for a master symbol: account map, server map, else suffix rule."""
    full = master_symbol.casefold()
    base = base_symbol(master_symbol, master_suffix)
    key = base.casefold()
    for pairs, source in (
        (account_maps, SymbolSource.ACCOUNT_MAP),
        (server_maps, SymbolSource.SERVER_MAP),
    ):
        mapped = _find_map(pairs, full, key, master_suffix)
        if mapped is not None:
            return Resolution(mapped, source)
    return Resolution(base + follower_suffix, SymbolSource.SUFFIX_RULE)


def _find_map(pairs: MapPairs, full: str, key: str, suffix: str) -> str | None:
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    by_base = None
    for master, follower in items:
        folded = master.strip().casefold()
        if folded == full:
            return follower
        # A later exact match still wins over an earlier match on the base name.
        if by_base is None and base_symbol(master.strip(), suffix).casefold() == key:
            by_base = follower
    return by_base


def index_symbols(specs: Iterable[S]) -> dict[str, S]:
    """A case-insensitive index of a server's symbol specs, for `find_symbol`."""
    return {spec.symbol.casefold(): spec for spec in specs}


def find_symbol(name: str, index: Mapping[str, S]) -> S | None:
    """The spec of `name` in an `index_symbols` index, or None when the server lacks it."""
    return index.get(name.casefold())


def check_follower_symbol(spec: SymbolLike | None) -> SymbolCheck:
    """Whether an order on the symbol can go to the follower's server now."""
    if spec is None:
        return SymbolCheck.NOT_FOUND
    if not spec.trading:
        return SymbolCheck.MARKET_CLOSED
    return SymbolCheck.OK
