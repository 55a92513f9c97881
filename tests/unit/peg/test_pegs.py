"""Pegs as data: [[peg]] parsing, every bad-input message, targets read and decoded, devnet and presets."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from typing import Any

import pytest

from keeper.devnet.model import TokenInfo
from keeper.errors import ConfigError, ExecutionReverted
from strategies.peg.pegs import (
    MAINNET_PEGS,
    MAINNET_TOKENS,
    FixedTarget,
    Peg,
    PegConfigError,
    PegTargetError,
    RateTarget,
    TargetReader,
    check_venues,
    decode_target,
    devnet_pegs,
    load_pegs,
    one_to_one,
    preset_pegs,
    target_call,
)
from strategies.venues.base import selector
from tests.unit.peg.cases import address, v2_state, v2_venue, v3_state, v3_venue

LST = "0x" + "11" * 20
WETH = "0x" + "22" * 20
USDC = "0x" + "33" * 20
DAI = "0x" + "44" * 20
TOKENS: dict[str, Any] = {
    "wstETH": TokenInfo("wstETH", LST, 18),
    "WETH": {"address": WETH, "decimals": 18, "symbol": "WETH"},
    "USDC": (USDC, 6),
    "DAI": TokenInfo("DAI", DAI, 18),
}
CONFIG = f"""
[[peg]]
name = "lst"
token_a = "wstETH"
token_b = "WETH"
target = {{ rate = "{LST}", method = "stEthPerToken()", scale = "1e18" }}
min_profit_wei = 1000
venues = ["uniswap_v3"]

[[peg]]
token_a = "usdc"
token_b = "{DAI.upper().replace("0X", "0x")}"
target = "1:1"

[[peg]]
name = "inverted"
token_a = "DAI"
token_b = "USDC"
target = {{ rate = "{LST}", invert = true, scale = 1000000 }}
"""


def problems(config: Any, tokens: Any = None) -> list[str]:
    with pytest.raises(PegConfigError) as info:
        load_pegs(config, TOKENS if tokens is None else tokens)
    assert isinstance(info.value, ConfigError)
    return info.value.problems


def test_load_pegs_parses_every_field() -> None:
    lst, usdc_dai, inverted = load_pegs(tomllib.loads(CONFIG), TOKENS)
    assert lst == Peg(
        "lst",
        "0x1111111111111111111111111111111111111111",
        "0x2222222222222222222222222222222222222222",
        RateTarget("0x1111111111111111111111111111111111111111", "stEthPerToken()", 10**18, 0, False),
        "wstETH",
        "WETH",
        18,
        18,
        1000,
        ("uniswap_v3",),
    )
    assert lst.origin == "[[peg]] #1 'lst'"
    assert lst.allows("uniswap_v3") and not lst.allows("uniswap_v2")
    # symbols are matched regardless of case, addresses among the known tokens; the name defaults to A/B
    assert (usdc_dai.name, usdc_dai.symbol_a, usdc_dai.symbol_b) == ("USDC/DAI", "USDC", "DAI")
    assert usdc_dai.target == FixedTarget(10**12, 1)  # 1 USDC unit (6) = 10**12 DAI units (18)
    assert usdc_dai.fixed() == (10**12, 1) and usdc_dai.venues is None and usdc_dai.min_profit_wei is None
    assert inverted.target == RateTarget(inverted.target.source, "getRate()", 10**6, -12, True)  # type: ignore[union-attr]
    assert inverted.fixed() is None


def test_a_token_outside_the_known_ones_by_address_and_decimals() -> None:
    reth = "0x" + "77" * 20
    (peg,) = load_pegs([{"token_a": reth, "decimals_a": 18, "token_b": "WETH", "target": "1:1"}], TOKENS)
    assert peg.token_a.lower() == reth and peg.decimals_a == 18 and peg.name == "0x77777777/WETH"
    assert problems([{"token_a": reth, "decimals_a": "18", "token_b": "WETH", "target": "1:1"}]) == [
        "[[peg]] #1: decimals_a must be an integer 0..36, not '18'"
    ]


def test_one_to_one_follows_decimals() -> None:
    assert one_to_one(6, 18) == FixedTarget(10**12, 1)
    assert one_to_one(18, 6) == FixedTarget(1, 10**12)
    assert one_to_one(6, 6) == FixedTarget(1, 1)


def test_rate_target_ratio_in_base_units() -> None:
    # 1 whole A = r / 1e18 whole B
    assert RateTarget(LST, decimals_shift=0).ratio(12 * 10**17) == (12 * 10**17, 10**18)
    # A has 6 decimals, B 18: one base unit of A is worth 10**12 times more base units
    assert RateTarget(LST, decimals_shift=12).ratio(10**18) == (10**30, 10**18)
    assert RateTarget(LST, decimals_shift=-12).ratio(10**18) == (10**18, 10**30)
    # invert: 1 whole B = r / scale whole A, so 1 whole A = scale / r whole B
    assert RateTarget(LST, invert=True).ratio(2 * 10**18) == (10**18, 2 * 10**18)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"token_a": "stETH", "token_b": "WETH", "target": "1:1"},
            "[[peg]] #1: token_a 'stETH' is not a known token (known: DAI, USDC, WETH, wstETH)",
        ),
        (
            {"name": "x", "token_a": "WETH", "token_b": "0x" + "99" * 20, "target": "1:1"},
            f"[[peg]] #1 'x': token_b '0x{'99' * 20}' is not a known token (known: DAI, USDC, WETH, wstETH); "
            "give decimals_b to use a token by its address",
        ),
        ({"name": "x", "token_b": "WETH", "target": "1:1"}, "[[peg]] #1 'x': token_a is missing"),
        (
            {"name": "x", "token_a": 5, "token_b": "WETH", "target": "1:1"},
            "[[peg]] #1 'x': token_a must be a string, not 5",
        ),
        (
            {"name": "x", "token_a": "WETH", "token_b": "weth", "target": "1:1"},
            "[[peg]] #1 'x': token_a and token_b are the same token (WETH)",
        ),
        ({"name": "x", "token_a": "DAI", "token_b": "WETH"}, "[[peg]] #1 'x': target is missing"),
        (
            {"name": "x", "token_a": "DAI", "token_b": "USDC", "target": "1:2"},
            "[[peg]] #1 'x': target '1:2' is not \"1:1\" or a rate table",
        ),
        ({"name": "x", "token_a": "DAI", "token_b": "USDC", "target": 1}, "[[peg]] #1 'x': target must be"),
        (
            {"name": "x", "token_a": "DAI", "token_b": "USDC", "target": {"rate": "0x12"}},
            "[[peg]] #1 'x': target rate must be the 0x address of the rate source, not '0x12'",
        ),
        (
            {"name": "x", "token_a": "DAI", "token_b": "USDC", "target": {"rate": LST, "method": "getRate"}},
            "[[peg]] #1 'x': target method must be a call without arguments",
        ),
        (
            {"name": "x", "token_a": "DAI", "token_b": "USDC", "target": {"rate": LST, "scale": "ten"}},
            "[[peg]] #1 'x': target scale must be a positive integer",
        ),
        (
            {"name": "x", "token_a": "DAI", "token_b": "USDC", "target": {"rate": LST, "invert": "yes"}},
            "[[peg]] #1 'x': target invert must be true or false",
        ),
        (
            {"name": "x", "token_a": "DAI", "token_b": "USDC", "target": {"rate": LST, "fn": "getRate()"}},
            "[[peg]] #1 'x': target has unknown key(s) fn",
        ),
        (
            {"name": "x", "token_a": "DAI", "token_b": "USDC", "target": "1:1", "min_profit_wei": -1},
            "[[peg]] #1 'x': min_profit_wei must be an integer >= 0, not -1",
        ),
        (
            {"name": "x", "token_a": "DAI", "token_b": "USDC", "target": "1:1", "venues": "uniswap_v3"},
            "[[peg]] #1 'x': venues must be a non-empty list of venue names",
        ),
        (
            {"name": "x", "token_a": "DAI", "token_b": "USDC", "target": "1:1", "venue": ["uniswap_v3"]},
            "[[peg]] #1 'x': unknown key(s) venue (known: decimals_a, decimals_b, min_profit_wei, name, "
            "target, token_a, token_b, venues)",
        ),
        (
            {"name": "", "token_a": "DAI", "token_b": "USDC", "target": "1:1"},
            "[[peg]] #1: name must be a non-empty string",
        ),
    ],
)
def test_each_bad_entry_gives_one_clear_line(entry: dict[str, Any], message: str) -> None:
    found = problems({"peg": [entry]})
    assert len(found) == 1, found
    assert found[0].startswith(message), found[0]


def test_every_problem_of_every_entry_is_listed() -> None:
    found = problems(
        [
            {"name": "ok", "token_a": "DAI", "token_b": "USDC", "target": "1:1"},
            {"name": "bad", "token_a": "XYZ", "token_b": "USDC", "target": "1:1", "extra": 1},
            "not a table",
            {"name": "ok", "token_a": "USDC", "token_b": "DAI", "target": "1:1"},
        ]
    )
    assert found == [
        "[[peg]] #2 'bad': unknown key(s) extra (known: decimals_a, decimals_b, min_profit_wei, name, "
        "target, token_a, token_b, venues)",
        "[[peg]] #2 'bad': token_a 'XYZ' is not a known token (known: DAI, USDC, WETH, wstETH)",
        "[[peg]] #3: expected a table, got str",
        "[[peg]] #4 'ok': name already used by [[peg]] #1",
    ]


def test_peg_must_be_an_array_of_tables() -> None:
    assert problems({"peg": {"token_a": "DAI"}}) == [
        "[[peg]]: expected an array of tables ([[peg]] ... entries)"
    ]
    assert load_pegs({}, TOKENS) == []


# ----------------------------------------------------------------------------------------- venues


def test_check_venues_names_the_entry_and_the_venue() -> None:
    v3_pool = v3_state(address(1, 0x30), LST, WETH, 1.1, 10**24)
    v3 = v3_venue([v3_pool])
    v2 = v2_venue([v2_state(address(1, 0x20), USDC, DAI, 10**12, 10**12)])
    lst, usdc_dai, _ = load_pegs(tomllib.loads(CONFIG), TOKENS)
    assert check_venues([lst], [v3, v2]) == [
        "[[peg]] #1 'lst': 1 pool(s) trade wstETH/WETH: no spread to close"
    ]
    bad = Peg(
        "lst",
        LST,
        WETH,
        FixedTarget(1, 1),
        "wstETH",
        "WETH",
        venues=("uniswap_v2", "curve"),
        origin="[[peg]] #1 'lst'",
    )
    with pytest.raises(PegConfigError) as info:
        check_venues([bad, usdc_dai], [v3, v2])
    assert info.value.problems == [
        "[[peg]] #1 'lst': venue 'uniswap_v2' has no pool holding both tokens of wstETH/WETH",
        "[[peg]] #1 'lst': venue 'curve' is not configured (configured: uniswap_v2, uniswap_v3)",
    ]


# ----------------------------------------------------------------------------------------- targets


class FakeRpc:
    def __init__(self, replies: dict[str, Any]) -> None:
        self.replies = replies
        self.batches: list[list[tuple[str, Any]]] = []

    async def call(self, method: str, params: Any = None) -> Any:
        raise AssertionError("batch only")

    async def batch(self, calls: Sequence[tuple[str, Any]], *, raise_errors: bool = True) -> list[Any]:
        assert not raise_errors
        self.batches.append(list(calls))
        return [self.replies[params[0]["to"].lower()] for _, params in calls]


def word(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def test_target_call_is_a_raw_eth_call() -> None:
    target = RateTarget(LST, "getRate()")
    assert target_call(target, 17) == (
        "eth_call",
        [{"to": LST, "data": "0x" + selector("getRate()").hex()}, "0x11"],
    )
    assert target_call(target)[1][1] == "latest"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            ExecutionReverted(3, "execution reverted", "0x", "eth_call"),
            "failed: eth_call: JSON-RPC error 3: execution reverted",
        ),
        ("0x", f"returned no data (is there a contract at {LST}?)"),
        ("0x1234", "returned 2 bytes, not a uint256"),
        (None, "returned 'None', not a uint256"),
        ("0x" + "zz" * 32, "not a uint256"),
        (word(0), "returned 0"),
    ],
)
def test_decode_target_errors_name_the_peg_and_the_source(raw: Any, message: str) -> None:
    with pytest.raises(PegTargetError) as info:
        decode_target(RateTarget(LST), raw, what="[[peg]] #1 'lst'")
    text = str(info.value)
    assert text.startswith(f"[[peg]] #1 'lst': rate source {LST} getRate() "), text
    assert message in text


async def test_target_reader_batches_rate_sources_once_and_reports_failures() -> None:
    lst, usdc_dai, inverted = load_pegs(tomllib.loads(CONFIG), TOKENS)
    broken = Peg("broken", WETH, DAI, RateTarget("0x" + "55" * 20), origin="[[peg]] #4 'broken'")
    reader = TargetReader([lst, usdc_dai, inverted, broken])
    rpc = FakeRpc(
        {
            LST.lower(): word(115 * 10**16),
            "0x" + "55" * 20: ExecutionReverted(3, "execution reverted", "0x", "eth_call"),
        }
    )
    # one call per (source, method): lst's stEthPerToken() and inverted's getRate() are two calls
    assert len(reader.calls(5)) == 3
    result = await reader.read(rpc, 5)
    assert result["lst"] == (115 * 10**16, 10**18)
    assert result["USDC/DAI"] == (10**12, 1)
    assert result["inverted"] == (10**6, 115 * 10**16 * 10**12)  # 1 DAI = 1e6 / r USDC
    assert isinstance(result["broken"], str) and result["broken"].startswith(
        "[[peg]] #4 'broken': rate source"
    )
    with pytest.raises(PegConfigError) as info:
        await reader.check(rpc)
    assert len(info.value.problems) == 1 and "execution reverted" in info.value.problems[0]
    assert await TargetReader([lst, usdc_dai]).check(rpc) == {
        "lst": (115 * 10**16, 10**18),
        "USDC/DAI": (10**12, 1),
    }
    fixed_only = FakeRpc({})
    assert await TargetReader([usdc_dai]).read(fixed_only, 5) == {"USDC/DAI": (10**12, 1)}
    assert fixed_only.batches == []


# ----------------------------------------------------------------------------------------- devnet, presets


def test_devnet_pegs_from_the_deployment_record() -> None:
    usdt = "0x" + "66" * 20
    record = {
        "tokens": {
            s: {"address": a, "decimals": d, "symbol": s}
            for s, a, d in (
                ("wstETH", LST, 18),
                ("WETH", WETH, 18),
                ("USDC", USDC, 6),
                ("USDT", usdt, 6),
                ("DAI", DAI, 18),
            )
        }
    }
    pegs = devnet_pegs(record)
    assert [p.name for p in pegs] == ["wstETH/WETH", "USDC/USDT", "DAI/USDC", "USDT/DAI"]
    lst = pegs[0]
    assert (
        isinstance(lst.target, RateTarget)
        and lst.target.source.lower() == LST
        and lst.target.method == "getRate()"
    )
    assert pegs[1].fixed() == (1, 1) and pegs[2].fixed() == (1, 10**12) and pegs[3].fixed() == (10**12, 1)
    assert lst.origin == "devnet peg 'wstETH/WETH'"

    class Deployment:
        tokens = {s: TokenInfo(s, v["address"], v["decimals"]) for s, v in record["tokens"].items()}

    assert devnet_pegs(Deployment()) == pegs
    with pytest.raises(PegConfigError, match="devnet: the deployment has no wstETH token"):
        devnet_pegs({"tokens": {}})


def test_mainnet_presets() -> None:
    assert set(MAINNET_PEGS) == {"wsteth-weth", "usd-stables"}
    lst = MAINNET_PEGS["wsteth-weth"]
    (peg,) = lst.pegs
    assert peg.token_a == MAINNET_TOKENS["wstETH"][0] and peg.token_b == MAINNET_TOKENS["WETH"][0]
    assert isinstance(peg.target, RateTarget) and peg.target.method == "stEthPerToken()"
    assert lst.v3_pools and lst.balancer_pools
    stables = MAINNET_PEGS["usd-stables"]
    assert [p.name for p in stables.pegs] == ["USDC/USDT", "DAI/USDC", "USDT/DAI"]
    assert [p.fixed() for p in stables.pegs] == [(1, 1), (1, 10**12), (10**12, 1)]
    assert len(stables.v3_pools) == 3 and len(stables.v2_pairs) == 3 and len(stables.balancer_pools) == 1
    assert preset_pegs(["wsteth-weth", " USD-stables", "wsteth-weth"]) == [lst, stables]
    with pytest.raises(PegConfigError) as info:
        preset_pegs(["wsteth-weth", "eur"])
    assert info.value.problems == ["peg preset 'eur' is unknown (known: usd-stables, wsteth-weth)"]
