"""keeper.chain.swaps: router / Vault calldata (encoded with eth_abi) decodes to the swap it makes;
malformed or invalid calldata raises SwapDecodeError and nothing else, quickly (fuzzed)."""

from __future__ import annotations

import contextlib
import random
import time
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keeper.chain.swaps import (
    MAX_HOPS,
    SELECTORS,
    PendingSwap,
    SwapDecodeError,
    SwapDecoder,
    SwapHop,
)
from keeper.core.events import PendingTx
from keeper.errors import DecodeError

V2_ROUTER = "0x7a250d5630b4cf539739df2c5dacb4c659f2488d"
V3_ROUTER = "0xe592427a0aece92de3edee1f18e0157c05861564"
VAULT = "0xba12222222228d8ba445958a75a0704d566bf2c8"
WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
USDT = "0xdac17f958d2ee523a2206206994597c13d831ec7"
DAI = "0x6b175474e89094c44da98b954eedeac495271d0f"
ME = "0x" + "ab" * 20
DEADLINE = 1_900_000_000
TX_HASH = bytes(range(32))
POOL_ID = "0x" + "11" * 20 + "0000" + "00" * 10
POOL_ID2 = "0x" + "22" * 20 + "0000" + "00" * 10

V2_ARGS5 = ["uint256", "uint256", "address[]", "address", "uint256"]
V2_ARGS4 = ["uint256", "address[]", "address", "uint256"]
V3_SINGLE = "(address,address,uint24,address,uint256,uint256,uint256,uint160)"
V3_PATH = "(bytes,address,uint256,uint256,uint256)"
V3_SINGLE_02 = "(address,address,uint24,address,uint256,uint256,uint160)"
V3_PATH_02 = "(bytes,address,uint256,uint256)"
SINGLE_SWAP = "(bytes32,uint8,address,address,uint256,bytes)"
FUNDS = "(address,bool,address,bool)"
STEP = "(bytes32,uint256,uint256,uint256,bytes)"


def call(name: str, types: list[str], args: list[Any]) -> bytes:
    return SELECTORS[name] + encode(types, args)


def decoder(weth: str | None = WETH) -> SwapDecoder:
    return SwapDecoder({V2_ROUTER: "uniswap_v2", V3_ROUTER: "uniswap_v3", VAULT: "balancer_v2"}, weth=weth)


def dec(to: str, data: bytes, value: int = 0, weth: str | None = WETH) -> PendingSwap | None:
    return decoder(weth).decode(
        {"to": to, "input": "0x" + data.hex(), "value": hex(value), "hash": "0x" + TX_HASH.hex()}
    )


def v2_hops(*path: str) -> tuple[SwapHop, ...]:
    return tuple(SwapHop("uniswap_v2", a, b, None) for a, b in zip(path, path[1:], strict=False))


def v3_path(*items: str | int) -> bytes:
    out = b""
    for item in items:
        out += item.to_bytes(3, "big") if isinstance(item, int) else bytes.fromhex(item[2:])
    return out


def bid(pool_id: str) -> bytes:
    return bytes.fromhex(pool_id[2:])


# ------------------------------------------------------------------------------------------ selectors


def test_well_known_selectors() -> None:
    known = {
        "swapExactTokensForTokens": "38ed1739",
        "swapTokensForExactTokens": "8803dbee",
        "swapExactETHForTokens": "7ff36ab5",
        "swapTokensForExactETH": "4a25d94a",
        "swapExactTokensForETH": "18cbafe5",
        "swapETHForExactTokens": "fb3bdb41",
        "swapExactTokensForTokensSupportingFeeOnTransferTokens": "5c11d795",
        "swapExactETHForTokensSupportingFeeOnTransferTokens": "b6f9de95",
        "swapExactTokensForETHSupportingFeeOnTransferTokens": "791ac947",
        "exactInputSingle": "414bf389",
        "exactInput": "c04b8d59",
        "exactOutputSingle": "db3e2198",
        "exactOutput": "f28c0498",
        "multicall": "ac9650d8",
        "exactInputSingle:02": "04e45aaf",
        "exactInput:02": "b858183f",
        "exactOutputSingle:02": "5023b4df",
        "exactOutput:02": "09b81346",
        "multicall:deadline": "5ae401dc",
        "multicall:blockhash": "1f0464d1",
        "swapExactTokensForTokens:02": "472b43f3",
        "swapTokensForExactTokens:02": "42712a67",
        "swap": "52bbbe29",
        "batchSwap": "945bcec9",
    }
    assert {k: v.hex() for k, v in SELECTORS.items()} == known


# ------------------------------------------------------------------------------------------ Uniswap V2


@pytest.mark.parametrize(
    "name",
    ["swapExactTokensForTokens", "swapExactTokensForTokensSupportingFeeOnTransferTokens"],
)
def test_v2_exact_tokens_in(name: str) -> None:
    data = call(name, V2_ARGS5, [10**18, 1234, [WETH, USDC, DAI], ME, DEADLINE])
    s = dec(V2_ROUTER, data)
    assert s == PendingSwap(TX_HASH, V2_ROUTER, v2_hops(WETH, USDC, DAI), True, 10**18, 1234, ME, DEADLINE)
    assert s.token_in == WETH and s.token_out == DAI


def test_v2_tokens_for_exact_tokens() -> None:
    data = call("swapTokensForExactTokens", V2_ARGS5, [500, 10**18, [USDC, WETH], ME, DEADLINE])
    assert dec(V2_ROUTER, data) == PendingSwap(
        TX_HASH, V2_ROUTER, v2_hops(USDC, WETH), False, 500, 10**18, ME, DEADLINE
    )


@pytest.mark.parametrize(
    "name", ["swapExactETHForTokens", "swapExactETHForTokensSupportingFeeOnTransferTokens"]
)
def test_v2_exact_eth_in(name: str) -> None:
    data = call(name, V2_ARGS4, [77, [WETH, USDC], ME, DEADLINE])
    s = dec(V2_ROUTER, data, value=3 * 10**18)
    assert s == PendingSwap(TX_HASH, V2_ROUTER, v2_hops(WETH, USDC), True, 3 * 10**18, 77, ME, DEADLINE)


def test_v2_eth_for_exact_tokens() -> None:
    data = call("swapETHForExactTokens", V2_ARGS4, [1000, [WETH, DAI], ME, DEADLINE])
    s = dec(V2_ROUTER, data, value=5 * 10**18)
    assert s == PendingSwap(TX_HASH, V2_ROUTER, v2_hops(WETH, DAI), False, 1000, 5 * 10**18, ME, DEADLINE)


@pytest.mark.parametrize(
    ("name", "exact_in"),
    [
        ("swapExactTokensForETH", True),
        ("swapExactTokensForETHSupportingFeeOnTransferTokens", True),
        ("swapTokensForExactETH", False),
    ],
)
def test_v2_eth_out(name: str, exact_in: bool) -> None:
    data = call(name, V2_ARGS5, [11, 22, [USDC, WETH], ME, DEADLINE])
    assert dec(V2_ROUTER, data) == PendingSwap(
        TX_HASH, V2_ROUTER, v2_hops(USDC, WETH), exact_in, 11, 22, ME, DEADLINE
    )
    with pytest.raises(SwapDecodeError, match="INVALID_PATH"):
        dec(V2_ROUTER, call(name, V2_ARGS5, [11, 22, [USDC, DAI], ME, DEADLINE]))
    # without a WETH address the path is not checked
    assert dec(V2_ROUTER, call(name, V2_ARGS5, [11, 22, [USDC, DAI], ME, DEADLINE]), weth=None) is not None


def test_v2_invalid_calls() -> None:
    ok = [10**18, 1, [WETH, USDC], ME, DEADLINE]
    with pytest.raises(SwapDecodeError, match="non-payable"):
        dec(V2_ROUTER, call("swapExactTokensForTokens", V2_ARGS5, ok), value=1)
    with pytest.raises(SwapDecodeError, match="INVALID_PATH"):
        dec(V2_ROUTER, call("swapExactTokensForTokens", V2_ARGS5, [1, 1, [WETH], ME, DEADLINE]))
    with pytest.raises(SwapDecodeError, match="zero amount"):
        dec(V2_ROUTER, call("swapExactTokensForTokens", V2_ARGS5, [0, 1, [WETH, USDC], ME, DEADLINE]))
    with pytest.raises(SwapDecodeError, match="zero amount"):  # ETH in with no ETH
        dec(V2_ROUTER, call("swapExactETHForTokens", V2_ARGS4, [1, [WETH, USDC], ME, DEADLINE]))
    with pytest.raises(SwapDecodeError, match="INVALID_PATH"):
        dec(V2_ROUTER, call("swapExactETHForTokens", V2_ARGS4, [1, [USDC, WETH], ME, DEADLINE]), value=5)
    with pytest.raises(SwapDecodeError, match="IDENTICAL"):
        dec(V2_ROUTER, call("swapExactTokensForTokens", V2_ARGS5, [1, 1, [WETH, WETH], ME, DEADLINE]))
    # a path longer than MAX_HOPS + 1 tokens is valid on chain, not decoded
    long_path = [WETH, USDC] * ((MAX_HOPS + 2) // 2 + 1)
    assert dec(V2_ROUTER, call("swapExactTokensForTokens", V2_ARGS5, [1, 1, long_path, ME, DEADLINE])) is None


def test_v2_dirty_address_word_is_rejected() -> None:
    data = bytearray(call("swapExactTokensForTokens", V2_ARGS5, [1, 1, [WETH, USDC], ME, DEADLINE]))
    data[4 + 96] = 1  # the recipient word's first byte
    with pytest.raises(SwapDecodeError, match="dirty"):
        dec(V2_ROUTER, bytes(data))


# ------------------------------------------------------------------------------------------ Uniswap V3


def test_v3_exact_input_single() -> None:
    params = (WETH, USDC, 500, ME, DEADLINE, 10**18, 3000 * 10**6, 0)
    s = dec(V3_ROUTER, call("exactInputSingle", [V3_SINGLE], [params]))
    hop = SwapHop("uniswap_v3", WETH, USDC, 500)
    assert s == PendingSwap(TX_HASH, V3_ROUTER, (hop,), True, 10**18, 3000 * 10**6, ME, DEADLINE)


def test_v3_exact_output_single_with_price_limit() -> None:
    limit = 2**96 + 12345
    params = (USDC, WETH, 3000, ME, DEADLINE, 10**18, 5000 * 10**6, limit)
    s = dec(V3_ROUTER, call("exactOutputSingle", [V3_SINGLE], [params]))
    hop = SwapHop("uniswap_v3", USDC, WETH, 3000, limit)
    assert s == PendingSwap(TX_HASH, V3_ROUTER, (hop,), False, 10**18, 5000 * 10**6, ME, DEADLINE)


def test_v3_exact_input_path() -> None:
    path = v3_path(WETH, 500, USDC, 100, USDT)
    s = dec(V3_ROUTER, call("exactInput", [V3_PATH], [(path, ME, DEADLINE, 10**18, 1)]))
    hops = (SwapHop("uniswap_v3", WETH, USDC, 500), SwapHop("uniswap_v3", USDC, USDT, 100))
    assert s == PendingSwap(TX_HASH, V3_ROUTER, hops, True, 10**18, 1, ME, DEADLINE)


def test_v3_exact_output_path_is_reversed() -> None:
    # exactOutput's path runs from tokenOut back to tokenIn: buy USDT with WETH via USDC
    path = v3_path(USDT, 100, USDC, 500, WETH)
    s = dec(V3_ROUTER, call("exactOutput", [V3_PATH], [(path, ME, DEADLINE, 10**9, 10**18)]))
    hops = (SwapHop("uniswap_v3", WETH, USDC, 500), SwapHop("uniswap_v3", USDC, USDT, 100))
    assert s == PendingSwap(TX_HASH, V3_ROUTER, hops, False, 10**9, 10**18, ME, DEADLINE)
    assert s.token_in == WETH and s.token_out == USDT


def test_v3_path_layout_as_the_router_reads_it() -> None:
    # trailing bytes shorter than a pool are ignored by v3-periphery's Path library
    path = v3_path(WETH, 500, USDC) + b"\x01" * 22
    s = dec(V3_ROUTER, call("exactInput", [V3_PATH], [(path, ME, DEADLINE, 1, 0)]))
    assert s is not None and len(s.hops) == 1
    with pytest.raises(SwapDecodeError, match="43"):
        dec(V3_ROUTER, call("exactInput", [V3_PATH], [(v3_path(WETH, 500), ME, DEADLINE, 1, 0)]))
    with pytest.raises(SwapDecodeError, match="itself"):
        dec(V3_ROUTER, call("exactInput", [V3_PATH], [(v3_path(WETH, 500, WETH), ME, DEADLINE, 1, 0)]))
    with pytest.raises(SwapDecodeError, match="amount 0"):
        dec(V3_ROUTER, call("exactInput", [V3_PATH], [(v3_path(WETH, 500, USDC), ME, DEADLINE, 0, 0)]))
    params = (WETH, USDC, 2**24, ME, DEADLINE, 1, 0, 0)
    with pytest.raises(SwapDecodeError, match="out of range"):  # fee above uint24
        dec(
            V3_ROUTER,
            SELECTORS["exactInputSingle"]
            + encode(["(address,address,uint256,address,uint256,uint256,uint256,uint160)"], [params]),
        )


def test_v3_multicall_one_swap_and_helpers() -> None:
    swap = call("exactInputSingle", [V3_SINGLE], [(WETH, USDC, 500, V3_ROUTER, DEADLINE, 10**18, 1, 0)])
    unwrap = function_signature_to_4byte_selector("unwrapWETH9(uint256,address)") + encode(
        ["uint256", "address"], [0, ME]
    )
    refund = function_signature_to_4byte_selector("refundETH()")
    s = dec(V3_ROUTER, call("multicall", ["bytes[]"], [[swap, unwrap, refund]]), value=10**18)
    assert s is not None and s.hops == (SwapHop("uniswap_v3", WETH, USDC, 500),)
    assert s.recipient == V3_ROUTER and s.amount == 10**18
    # several swaps: not one PendingSwap
    assert dec(V3_ROUTER, call("multicall", ["bytes[]"], [[swap, swap]])) is None
    # no swap at all
    assert dec(V3_ROUTER, call("multicall", ["bytes[]"], [[refund]])) is None
    # one level of nesting is read
    nested = call("multicall", ["bytes[]"], [[swap]])
    assert dec(V3_ROUTER, call("multicall", ["bytes[]"], [[nested, refund]])) == s
    deeper = call("multicall", ["bytes[]"], [[call("multicall", ["bytes[]"], [[nested]])]])
    assert dec(V3_ROUTER, deeper) is None


def test_swap_router02_calls() -> None:
    single = call("exactInputSingle:02", [V3_SINGLE_02], [(WETH, USDC, 500, ME, 10**18, 7, 0)])
    s = dec(V3_ROUTER, single)
    assert s == PendingSwap(
        TX_HASH, V3_ROUTER, (SwapHop("uniswap_v3", WETH, USDC, 500),), True, 10**18, 7, ME, None
    )
    # the multicall's deadline is the swap's
    wrapped = call("multicall:deadline", ["uint256", "bytes[]"], [DEADLINE, [single]])
    s2 = dec(V3_ROUTER, wrapped)
    assert s2 is not None and s2.deadline == DEADLINE
    blockhash = call("multicall:blockhash", ["bytes32", "bytes[]"], [b"\x01" * 32, [single]])
    assert dec(V3_ROUTER, blockhash) == s
    out = call("exactOutput:02", [V3_PATH_02], [(v3_path(USDC, 500, WETH), ME, 10**6, 10**18)])
    s3 = dec(V3_ROUTER, out)
    assert s3 is not None and s3.hops == (SwapHop("uniswap_v3", WETH, USDC, 500),) and not s3.exact_in
    exact_out_single = call("exactOutputSingle:02", [V3_SINGLE_02], [(WETH, USDC, 500, ME, 10**6, 10**18, 0)])
    assert dec(V3_ROUTER, exact_out_single) is not None
    inp = call("exactInput:02", [V3_PATH_02], [(v3_path(WETH, 500, USDC), ME, 10**18, 0)])
    assert dec(V3_ROUTER, inp) is not None
    v2 = call(
        "swapExactTokensForTokens:02",
        ["uint256", "uint256", "address[]", "address"],
        [5, 1, [USDC, WETH], ME],
    )
    assert dec(V3_ROUTER, v2) == PendingSwap(TX_HASH, V3_ROUTER, v2_hops(USDC, WETH), True, 5, 1, ME, None)
    v2_out = call(
        "swapTokensForExactTokens:02",
        ["uint256", "uint256", "address[]", "address"],
        [5, 9, [USDC, WETH], ME],
    )
    s4 = dec(V3_ROUTER, v2_out)
    assert s4 is not None and not s4.exact_in and (s4.amount, s4.limit) == (5, 9)
    # amount 0 = the router's own balance (Constants.CONTRACT_BALANCE): not known from calldata
    balance = call("exactInputSingle:02", [V3_SINGLE_02], [(WETH, USDC, 500, ME, 0, 7, 0)])
    assert dec(V3_ROUTER, balance) is None
    assert dec(V3_ROUTER, call("multicall", ["bytes[]"], [[balance]])) is None
    v2_balance = call(
        "swapExactTokensForTokens:02",
        ["uint256", "uint256", "address[]", "address"],
        [0, 1, [USDC, WETH], ME],
    )
    assert dec(V3_ROUTER, v2_balance) is None


# ------------------------------------------------------------------------------------------ Balancer


def test_balancer_swap_given_in_and_out() -> None:
    funds = (ME, False, ME, False)
    data = call(
        "swap",
        [SINGLE_SWAP, FUNDS, "uint256", "uint256"],
        [(bid(POOL_ID), 0, USDC, DAI, 10**9, b""), funds, 99, DEADLINE],
    )
    hop = SwapHop("balancer_v2", USDC, DAI, POOL_ID)
    assert dec(VAULT, data) == PendingSwap(TX_HASH, VAULT, (hop,), True, 10**9, 99, ME, DEADLINE)
    data = call(
        "swap",
        [SINGLE_SWAP, FUNDS, "uint256", "uint256"],
        [(bid(POOL_ID), 1, USDC, DAI, 10**18, b"\x01\x02"), funds, 10**7, DEADLINE],
    )
    assert dec(VAULT, data) == PendingSwap(TX_HASH, VAULT, (hop,), False, 10**18, 10**7, ME, DEADLINE)


def test_balancer_swap_eth_is_weth() -> None:
    zero = "0x" + "00" * 20
    funds = (ME, False, ME, False)
    data = call(
        "swap",
        [SINGLE_SWAP, FUNDS, "uint256", "uint256"],
        [(bid(POOL_ID), 0, zero, USDC, 10**18, b""), funds, 0, DEADLINE],
    )
    s = dec(VAULT, data, value=10**18)
    assert s is not None and s.hops[0].token_in == WETH
    assert dec(VAULT, data, value=10**18, weth=None).hops[0].token_in == zero  # type: ignore[union-attr]


def test_balancer_invalid_single_swaps() -> None:
    funds = (ME, False, ME, False)
    types = [SINGLE_SWAP, FUNDS, "uint256", "uint256"]
    with pytest.raises(SwapDecodeError, match="510"):
        dec(VAULT, call("swap", types, [(bid(POOL_ID), 0, USDC, DAI, 0, b""), funds, 0, DEADLINE]))
    with pytest.raises(SwapDecodeError, match="509"):
        dec(VAULT, call("swap", types, [(bid(POOL_ID), 0, USDC, USDC, 1, b""), funds, 0, DEADLINE]))
    bad_kind = call(
        "swap",
        [SINGLE_SWAP.replace("uint8", "uint256"), FUNDS, "uint256", "uint256"],
        [(bid(POOL_ID), 2, USDC, DAI, 1, b""), funds, 0, DEADLINE],
    )
    with pytest.raises(SwapDecodeError, match="SwapKind"):
        dec(VAULT, bad_kind)
    bad_bool = call(
        "swap",
        [SINGLE_SWAP, "(address,uint256,address,bool)", "uint256", "uint256"],
        [(bid(POOL_ID), 0, USDC, DAI, 1, b""), (ME, 2, ME, False), 0, DEADLINE],
    )
    with pytest.raises(SwapDecodeError, match="fromInternalBalance"):
        dec(VAULT, bad_bool)


BATCH_TYPES = ["uint8", f"{STEP}[]", "address[]", FUNDS, "int256[]", "uint256"]


def batch(kind: int, steps: list[tuple[str, int, int, int]], assets: list[str], limits: list[int]) -> bytes:
    return call(
        "batchSwap",
        BATCH_TYPES,
        [
            kind,
            [(bid(p), i, o, a, b"") for p, i, o, a in steps],
            assets,
            (ME, False, ME, False),
            limits,
            DEADLINE,
        ],
    )


def test_balancer_batch_given_in_chain() -> None:
    data = batch(0, [(POOL_ID, 0, 1, 10**9), (POOL_ID2, 1, 2, 0)], [USDC, DAI, WETH], [10**9, 0, -5])
    hops = (SwapHop("balancer_v2", USDC, DAI, POOL_ID), SwapHop("balancer_v2", DAI, WETH, POOL_ID2))
    assert dec(VAULT, data) == PendingSwap(TX_HASH, VAULT, hops, True, 10**9, 5, ME, DEADLINE)


def test_balancer_batch_given_out_chain_is_reversed() -> None:
    # GIVEN_OUT: the first step buys the final output; the next step buys what the first one needs
    data = batch(
        1, [(POOL_ID2, 1, 2, 10**18), (POOL_ID, 0, 1, 0)], [USDC, DAI, WETH], [3 * 10**9, 0, -(10**18)]
    )
    hops = (SwapHop("balancer_v2", USDC, DAI, POOL_ID), SwapHop("balancer_v2", DAI, WETH, POOL_ID2))
    assert dec(VAULT, data) == PendingSwap(TX_HASH, VAULT, hops, False, 10**18, 3 * 10**9, ME, DEADLINE)


def test_balancer_batch_cycle_limit() -> None:
    # an arbitrage A -> B -> A: the net delta of A (in - out) must stay <= limits[A]
    data = batch(0, [(POOL_ID, 0, 1, 1000), (POOL_ID2, 1, 0, 0)], [USDC, DAI], [-10, 0])
    s = dec(VAULT, data)
    assert s is not None and s.token_in == s.token_out == USDC and s.limit == 1010


def test_balancer_batch_unsupported_and_invalid() -> None:
    assets = [USDC, DAI, WETH]
    # two chains (a later step with its own amount): not one PendingSwap
    assert dec(VAULT, batch(0, [(POOL_ID, 0, 1, 5), (POOL_ID2, 1, 2, 7)], assets, [10, 0, 0])) is None
    assert dec(VAULT, batch(0, [], assets, [0, 0, 0])) is None
    with pytest.raises(SwapDecodeError, match="510"):
        dec(VAULT, batch(0, [(POOL_ID, 0, 1, 0)], assets, [0, 0, 0]))
    with pytest.raises(SwapDecodeError, match="508"):
        dec(VAULT, batch(0, [(POOL_ID, 0, 1, 5), (POOL_ID2, 2, 0, 0)], assets, [10, 0, 0]))
    with pytest.raises(SwapDecodeError, match="OUT_OF_BOUNDS"):
        dec(VAULT, batch(0, [(POOL_ID, 0, 3, 5)], assets, [10, 0, 0]))
    with pytest.raises(SwapDecodeError, match="509"):
        dec(VAULT, batch(0, [(POOL_ID, 1, 1, 5)], assets, [10, 0, 0]))
    with pytest.raises(SwapDecodeError, match="LENGTH_MISMATCH"):
        dec(VAULT, batch(0, [(POOL_ID, 0, 1, 5)], assets, [10, 0]))
    with pytest.raises(SwapDecodeError, match="507"):  # amount in above its limit
        dec(VAULT, batch(0, [(POOL_ID, 0, 1, 5)], assets, [4, 0, 0]))
    with pytest.raises(SwapDecodeError, match="507"):  # an untouched asset must not have to pay out
        dec(VAULT, batch(0, [(POOL_ID, 0, 1, 5)], assets, [5, 0, -1]))


# ------------------------------------------------------------------------------------ filter, fields


def test_prefilter() -> None:
    d = decoder()
    swap = call("swapExactTokensForTokens", V2_ARGS5, [1, 1, [WETH, USDC], ME, DEADLINE])
    assert d.wants(V2_ROUTER, swap)
    assert d.wants(V2_ROUTER.upper().replace("0X", "0x"), swap[:4])
    assert not d.wants(V3_ROUTER, swap)  # not a V3 router selector
    assert not d.wants(USDC, swap)
    assert not d.wants(None, swap)
    assert not d.wants(V2_ROUTER, b"")
    approve = function_signature_to_4byte_selector("approve(address,uint256)")
    assert not d.wants(V2_ROUTER, approve)
    tx = PendingTx(hash=TX_HASH, sender=ME, to=V2_ROUTER, input=swap, value=0, nonce=0, gas=1)
    keep = d.tx_filter()
    assert (
        keep(tx)
        and not keep(PendingTx(TX_HASH, ME, USDC, swap, 0, 0, 1))
        and not keep(PendingTx(TX_HASH, ME, None, swap, 0, 0, 1))
    )
    assert d.decode_pending(tx) == dec(V2_ROUTER, swap)
    # not watched / not a swap: None, never an error
    assert d.decode({"to": USDC, "input": "0xzz"}) is None
    assert d.decode({"to": None, "input": "0x"}) is None
    assert d.decode({"to": V2_ROUTER, "input": "0x" + approve.hex()}) is None


def test_direct_pool_calls_are_not_decoded() -> None:
    pair_swap = function_signature_to_4byte_selector("swap(uint256,uint256,address,bytes)") + encode(
        ["uint256", "uint256", "address", "bytes"], [0, 5, ME, b""]
    )
    pair = "0x" + "33" * 20
    d = SwapDecoder({V2_ROUTER: "uniswap_v2"})
    assert not d.wants(pair, pair_swap)
    assert d.decode({"to": pair, "input": "0x" + pair_swap.hex()}) is None
    assert d.decode({"to": V2_ROUTER, "input": "0x" + pair_swap.hex()}) is None


def test_bad_tx_fields() -> None:
    d = decoder()
    swap = "0x" + call("swapExactTokensForTokens", V2_ARGS5, [1, 1, [WETH, USDC], ME, DEADLINE]).hex()
    for bad in (
        {"to": 5, "input": swap},
        {"to": V2_ROUTER, "input": "0x123"},
        {"to": V2_ROUTER, "input": None},
        {"to": V2_ROUTER, "input": swap, "value": "12"},
        {"to": V2_ROUTER, "input": swap, "value": True},
        {"to": V2_ROUTER, "input": swap, "value": -1},
        {"to": V2_ROUTER, "input": swap, "hash": 7},
    ):
        with pytest.raises(SwapDecodeError):
            d.decode(bad)
    assert d.decode({"to": V2_ROUTER, "data": bytes.fromhex(swap[2:]), "value": 0}) is not None
    assert issubclass(SwapDecodeError, DecodeError)
    with pytest.raises(ValueError, match="protocol"):
        SwapDecoder({V2_ROUTER: "curve"})  # type: ignore[dict-item]


# ---------------------------------------------------------------------------------------------- fuzz

VALID_CALLS: list[tuple[str, bytes, int]] = [
    (V2_ROUTER, call("swapExactTokensForTokens", V2_ARGS5, [10**18, 1, [WETH, USDC, DAI], ME, DEADLINE]), 0),
    (V2_ROUTER, call("swapETHForExactTokens", V2_ARGS4, [1000, [WETH, DAI], ME, DEADLINE]), 10**18),
    (V3_ROUTER, call("exactInputSingle", [V3_SINGLE], [(WETH, USDC, 500, ME, DEADLINE, 10**18, 1, 0)]), 0),
    (
        V3_ROUTER,
        call("exactOutput", [V3_PATH], [(v3_path(USDT, 100, USDC, 500, WETH), ME, DEADLINE, 9, 10**18)]),
        0,
    ),
    (
        V3_ROUTER,
        call(
            "multicall:deadline",
            ["uint256", "bytes[]"],
            [
                DEADLINE,
                [
                    call("exactInput:02", [V3_PATH_02], [(v3_path(WETH, 500, USDC), ME, 10**18, 0)]),
                    b"\x12\x34\x56\x78",
                ],
            ],
        ),
        0,
    ),
    (
        VAULT,
        call(
            "swap",
            [SINGLE_SWAP, FUNDS, "uint256", "uint256"],
            [(bid(POOL_ID), 0, USDC, DAI, 10**9, b"xy"), (ME, False, ME, False), 1, DEADLINE],
        ),
        0,
    ),
    (
        VAULT,
        batch(
            1, [(POOL_ID2, 1, 2, 10**18), (POOL_ID, 0, 1, 0)], [USDC, DAI, WETH], [3 * 10**9, 0, -(10**18)]
        ),
        0,
    ),
]


def test_valid_fuzz_seeds_decode() -> None:
    for to, data, value in VALID_CALLS:
        assert dec(to, data, value) is not None


def _check(d: SwapDecoder, to: str, data: bytes, value: int) -> None:
    started = time.perf_counter()
    with contextlib.suppress(SwapDecodeError):
        d.decode_call(to, data, value, TX_HASH)
    assert time.perf_counter() - started < 0.5


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(min_value=0, max_value=len(VALID_CALLS) - 1),
    cuts=st.lists(
        st.tuples(st.integers(min_value=0, max_value=2000), st.integers(min_value=0, max_value=255)),
        max_size=6,
    ),
    truncate=st.integers(min_value=0, max_value=2000),
    value=st.integers(min_value=0, max_value=2**256 - 1),
)
def test_fuzz_mutated_valid_calls(which: int, cuts: list[tuple[int, int]], truncate: int, value: int) -> None:
    d = decoder()
    to, data, _ = VALID_CALLS[which]
    mutated = bytearray(data)
    for pos, byte in cuts:
        if 4 <= pos < len(mutated):
            mutated[pos] = byte
    _check(d, to, bytes(mutated), value)
    _check(d, to, bytes(mutated[: max(4, truncate)]), value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(SELECTORS)),
    body=st.binary(max_size=600),
    words=st.lists(st.sampled_from([0, 1, 32, 64, 96, 2**31, 2**255, 2**256 - 1, 2**160, 43]), max_size=24),
)
def test_fuzz_random_bodies(name: str, body: bytes, words: list[int]) -> None:
    d = decoder()
    sel = SELECTORS[name]
    to = (
        VAULT
        if name in ("swap", "batchSwap")
        else V2_ROUTER
        if name.startswith("swap") and ":" not in name
        else V3_ROUTER
    )
    _check(d, to, sel + body, 0)
    _check(d, to, sel + b"".join(w.to_bytes(32, "big") for w in words) + body, 10**18)


def test_seeded_random_truncations_and_flips() -> None:
    """Every truncation of every valid call, and many random word-level corruptions (offsets and lengths
    pointing anywhere): only SwapDecodeError, each in well under a second."""
    d = decoder()
    rng = random.Random(8)
    nasty = [0, 1, 31, 32, 2**32, 2**64, 2**255, 2**256 - 1]
    for to, data, value in VALID_CALLS:
        for n in range(len(data) + 1):
            _check(d, to, data[:n], value)
        for _ in range(300):
            m = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                w = 4 + 32 * rng.randrange(max(1, (len(data) - 4) // 32))
                m[w : w + 32] = (rng.choice(nasty) if rng.random() < 0.6 else rng.getrandbits(256)).to_bytes(
                    32, "big"
                )
            _check(d, to, bytes(m[: len(data)]), value)


def test_huge_lengths_do_not_allocate_or_loop() -> None:
    d = decoder()
    # multicall(bytes[]) claiming 2^31 elements, and a V2 path claiming 2^40 addresses
    data = SELECTORS["multicall"] + (32).to_bytes(32, "big") + (2**31).to_bytes(32, "big")
    with pytest.raises(SwapDecodeError):
        d.decode_call(V3_ROUTER, data)
    head = [1, 1, 160, int(ME, 16), DEADLINE, 2**40]
    data = SELECTORS["swapExactTokensForTokens"] + b"".join(w.to_bytes(32, "big") for w in head)
    with pytest.raises(SwapDecodeError):
        d.decode_call(V2_ROUTER, data)


addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
uint256 = st.integers(min_value=1, max_value=2**256 - 1)


@settings(max_examples=200, deadline=None)
@given(
    path=st.lists(addresses, min_size=2, max_size=MAX_HOPS + 1, unique=True),
    amount=uint256,
    limit=st.integers(min_value=0, max_value=2**256 - 1),
    deadline=st.integers(min_value=0, max_value=2**256 - 1),
    recipient=addresses,
    exact_in=st.booleans(),
)
def test_v2_round_trip_property(
    path: list[str], amount: int, limit: int, deadline: int, recipient: str, exact_in: bool
) -> None:
    name = "swapExactTokensForTokens" if exact_in else "swapTokensForExactTokens"
    data = call(name, V2_ARGS5, [amount, limit, path, recipient, deadline])
    s = decoder(weth=None).decode_call(V2_ROUTER, data, 0, TX_HASH)
    assert s == PendingSwap(TX_HASH, V2_ROUTER, v2_hops(*path), exact_in, amount, limit, recipient, deadline)


@settings(max_examples=200, deadline=None)
@given(
    tokens=st.lists(addresses, min_size=2, max_size=MAX_HOPS + 1, unique=True),
    fees=st.lists(st.integers(min_value=0, max_value=2**24 - 1), min_size=MAX_HOPS, max_size=MAX_HOPS),
    amount=uint256,
    limit=st.integers(min_value=0, max_value=2**256 - 1),
    exact_in=st.booleans(),
    wrap=st.booleans(),
)
def test_v3_path_round_trip_property(
    tokens: list[str], fees: list[int], amount: int, limit: int, exact_in: bool, wrap: bool
) -> None:
    hops = tuple(SwapHop("uniswap_v3", a, b, f) for a, b, f in zip(tokens, tokens[1:], fees, strict=False))
    # exactOutput's path is encoded from tokenOut back to tokenIn
    encoded = [tokens[0]] if exact_in else [tokens[-1]]
    for h in hops if exact_in else reversed(hops):
        encoded += [h.pool_hint, h.token_out if exact_in else h.token_in]  # type: ignore[list-item]
    data = call(
        "exactInput" if exact_in else "exactOutput",
        [V3_PATH],
        [(v3_path(*encoded), ME, DEADLINE, amount, limit)],
    )
    if wrap:
        data = call("multicall", ["bytes[]"], [[data]])
    s = decoder().decode_call(V3_ROUTER, data, 0, TX_HASH)
    assert s == PendingSwap(TX_HASH, V3_ROUTER, hops, exact_in, amount, limit, ME, DEADLINE)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=MAX_HOPS),
    assets=st.lists(addresses, min_size=MAX_HOPS + 1, max_size=MAX_HOPS + 1, unique=True),
    ids=st.lists(st.binary(min_size=32, max_size=32), min_size=MAX_HOPS, max_size=MAX_HOPS),
    amount=st.integers(min_value=1, max_value=2**200),
    slack=st.integers(min_value=0, max_value=2**200),
    given_in=st.booleans(),
)
def test_balancer_batch_round_trip_property(
    n: int, assets: list[str], ids: list[bytes], amount: int, slack: int, given_in: bool
) -> None:
    # a chain assets[0] -> assets[1] -> ... -> assets[n], listed in the Vault's order for its kind
    path = [(ids[k], k, k + 1) for k in range(n)]
    ordered = path if given_in else path[::-1]
    steps = [(pid, i, o, amount if j == 0 else 0, b"") for j, (pid, i, o) in enumerate(ordered)]
    limits = [0] * (MAX_HOPS + 1)
    if given_in:
        limits[0], limits[n] = amount + slack, -slack
    else:
        limits[0], limits[n] = slack, -amount
    data = call(
        "batchSwap",
        BATCH_TYPES,
        [0 if given_in else 1, steps, assets, (ME, False, ME, False), limits, DEADLINE],
    )
    s = decoder(weth=None).decode_call(VAULT, data, 0, TX_HASH)
    hops = tuple(SwapHop("balancer_v2", assets[i], assets[o], "0x" + pid.hex()) for pid, i, o in path)
    assert s == PendingSwap(TX_HASH, VAULT, hops, given_in, amount, slack, ME, DEADLINE)
