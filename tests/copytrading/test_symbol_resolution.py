"""Master symbol -> follower symbol, and the symbol filter (copytrading/symbols.py)."""

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from copytrading.symbols import (
    SymbolCheck,
    SymbolsMode,
    SymbolSource,
    base_symbol,
    check_follower_symbol,
    find_symbol,
    index_symbols,
    resolve_follower_symbol,
    symbol_key,
    symbol_selected,
)


@dataclass(frozen=True)
class Spec:
    symbol: str
    trading: bool = True


def resolve(master_symbol: str, **kwargs: object):
    args = {"master_suffix": ".pro", "follower_suffix": "m"}
    args.update(kwargs)
    return resolve_follower_symbol(master_symbol, **args)


# --- suffixes


@pytest.mark.parametrize(
    ("symbol", "suffix", "expected"),
    [
        ("EURUSD.pro", ".pro", "EURUSD"),
        ("EURUSD.PRO", ".pro", "EURUSD"),
        ("EURUSDm", "m", "EURUSD"),
        ("EURUSD", "m", "EURUSD"),
        ("EURUSD", "", "EURUSD"),
        ("m", "m", "m"),
        ("EURUSDmm", "m", "EURUSDm"),
    ],
)
def test_base_symbol_strips_the_suffix_once(symbol: str, suffix: str, expected: str) -> None:
    assert base_symbol(symbol, suffix) == expected


# --- resolution


def test_suffix_rule_swaps_master_suffix_for_follower_suffix() -> None:
    result = resolve("EURUSD.pro")
    assert result.symbol == "EURUSDm"
    assert result.source is SymbolSource.SUFFIX_RULE


def test_suffix_rule_without_suffixes_keeps_the_name() -> None:
    result = resolve("XAUUSD", master_suffix="", follower_suffix="")
    assert result.symbol == "XAUUSD"


def test_server_map_beats_suffix_rule() -> None:
    result = resolve("XAUUSD.pro", server_maps=[("XAUUSD.pro", "GOLDm")])
    assert result == type(result)("GOLDm", SymbolSource.SERVER_MAP)


def test_account_map_beats_server_map() -> None:
    result = resolve(
        "XAUUSD.pro",
        account_maps=[("XAUUSD.pro", "GOLD.ecn")],
        server_maps=[("XAUUSD.pro", "GOLDm")],
    )
    assert result.symbol == "GOLD.ecn"
    assert result.source is SymbolSource.ACCOUNT_MAP


def test_maps_may_be_given_as_a_mapping() -> None:
    assert resolve("US30.pro", server_maps={"US30.pro": "DJ30m"}).symbol == "DJ30m"


def test_map_matches_case_insensitively() -> None:
    assert resolve("xauusd.PRO", server_maps=[("XAUUSD.pro", "GOLDm")]).symbol == "GOLDm"


def test_map_written_without_the_master_suffix_matches() -> None:
    assert resolve("XAUUSD.pro", server_maps=[("XAUUSD", "GOLDm")]).symbol == "GOLDm"


def test_map_on_the_full_name_wins_over_the_base_name_whatever_the_order() -> None:
    maps = [("XAUUSD", "GOLD-base"), ("XAUUSD.pro", "GOLD-full")]
    assert resolve("XAUUSD.pro", server_maps=maps).symbol == "GOLD-full"
    assert resolve("XAUUSD.pro", server_maps=list(reversed(maps))).symbol == "GOLD-full"


def test_map_for_another_symbol_is_ignored() -> None:
    result = resolve("EURUSD.pro", server_maps=[("XAUUSD.pro", "GOLDm")])
    assert result.symbol == "EURUSDm"
    assert result.source is SymbolSource.SUFFIX_RULE


# --- follower server


def test_find_symbol_is_case_insensitive() -> None:
    index = index_symbols([Spec("EURUSDm"), Spec("GBPUSDm")])
    assert find_symbol("eurusdM", index) == Spec("EURUSDm")
    assert find_symbol("USDJPYm", index) is None


def test_check_follower_symbol() -> None:
    assert check_follower_symbol(None) is SymbolCheck.NOT_FOUND
    assert check_follower_symbol(Spec("EURUSDm", trading=False)) is SymbolCheck.MARKET_CLOSED
    assert check_follower_symbol(Spec("EURUSDm")) is SymbolCheck.OK


# --- filter


def test_all_symbols_mode_lets_everything_through() -> None:
    assert symbol_selected("EURUSD.pro", mode=SymbolsMode.ALL, symbols="", master_suffix=".pro")


@pytest.mark.parametrize("listed", ["EURUSD", "eurusd", "EURUSD.pro", " EURUSD.PRO ", "x,EURUSD"])
def test_only_listed_matches_case_and_suffix_insensitively(listed: str) -> None:
    assert symbol_selected(
        "EURUSD.pro", mode=SymbolsMode.ONLY_LISTED, symbols=listed, master_suffix=".pro"
    )
    assert not symbol_selected(
        "GBPUSD.pro", mode=SymbolsMode.ONLY_LISTED, symbols=listed, master_suffix=".pro"
    )


def test_only_listed_with_an_empty_list_copies_nothing() -> None:
    assert not symbol_selected(
        "EURUSD", mode=SymbolsMode.ONLY_LISTED, symbols=" , ", master_suffix=""
    )


def test_all_but_listed_excludes_the_listed() -> None:
    kwargs = {"mode": SymbolsMode.ALL_BUT_LISTED, "symbols": "XAUUSD, US30", "master_suffix": "m"}
    assert not symbol_selected("XAUUSDm", **kwargs)
    assert not symbol_selected("us30m", **kwargs)
    assert symbol_selected("EURUSDm", **kwargs)


def test_unknown_symbols_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="symbols_mode"):
        symbol_selected("EURUSD", mode=7, symbols="EURUSD", master_suffix="")


names = st.text(alphabet="ABCDEFGHJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=8)
suffixes = st.sampled_from(["", "m", ".pro", "-ECN", "_i"])


@given(name=names, master_suffix=suffixes, follower_suffix=suffixes)
def test_suffix_rule_round_trips_between_servers(
    name: str, master_suffix: str, follower_suffix: str
) -> None:
    # A name that already ends in a suffix's letters would lose them too; a venue always
    # appends its suffix, so generate names that do not.
    there = resolve_follower_symbol(
        name + master_suffix, master_suffix=master_suffix, follower_suffix=follower_suffix
    ).symbol
    back = resolve_follower_symbol(
        there, master_suffix=follower_suffix, follower_suffix=master_suffix
    ).symbol
    assert there == name + follower_suffix
    assert back == name + master_suffix
    assert symbol_key(name + master_suffix, master_suffix) == name.casefold()
