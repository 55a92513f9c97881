"""Conformance suite every venue passes, on the real devnet (real Uniswap V2/V3 and Balancer V2 bytecode).

The bar is equality to the wei: for random amounts from dust to the largest the venue can quote, in both
directions on every pool, `quote_exact_in` after `refresh` equals the token balance change of a real swap
through the venue's router at that same state (Router02 swapExactTokensForTokens / SwapRouter
exactInputSingle / the Balancer Vault's swap, sent by the whale and mined). Also: quotes track state after
a later refresh (and `apply` predicts it), refresh is pinned to its block, unknown pairs give None, and a
Uniswap V3 amount that would leave the bitmap words read raises OutsideReadRange. At the end, the router's
best routes (one or two hops, a Uniswap venue: the executor has no Balancer route yet) equal executing
their path on chain.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi.abi import decode

from keeper.chain import uniswap_v3_math as v3
from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient
from keeper.devnet.deploy import DevnetDeployment
from keeper.devnet.scenarios.amm import fund_trader_txs
from keeper.devnet.scenarios.common import BulkSender, call_tx
from keeper.devnet.stack import Devnet, DevnetMiner
from keeper.devnet.uniswap_v2 import DEFAULT_V2_PAIRS
from keeper.devnet.uniswap_v3 import DEFAULT_V3_POOLS, read_pool_state
from keeper.executors.executor_contract import V2Route, V3Route, encode_v3_path
from strategies.venues import (
    OutsideReadRange,
    Quote,
    QuoteError,
    UniswapV2Venue,
    UniswapV3Venue,
    Venue,
    best_route,
    load_v2_pairs,
    load_v3_pools,
)
from strategies.venues.balancer_stable import BalancerStableVenue, load_stable_pools

pytestmark = pytest.mark.integration

DEADLINE = 2**40
GAS = 3_000_000
EXACT_INPUT_SINGLE = "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
EXACT_INPUT_SINGLE_TYPES = ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"]
EXACT_INPUT = "exactInput((bytes,address,uint256,uint256,uint256))"
EXACT_INPUT_TYPES = ["(bytes,address,uint256,uint256,uint256)"]
V2_SWAP = "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
V2_SWAP_TYPES = ["uint256", "uint256", "address[]", "address", "uint256"]
VAULT_SWAP = "swap((bytes32,uint8,address,address,uint256,bytes),(address,bool,address,bool),uint256,uint256)"
VAULT_SWAP_TYPES = [
    "(bytes32,uint8,address,address,uint256,bytes)",
    "(address,bool,address,bool)",
    "uint256",
    "uint256",
]


# ----------------------------------------------------------------------------------------- devnet


@dataclass
class Env:
    net: Devnet
    rpc: RpcClient
    dep: DevnetDeployment
    whale: str

    def token(self, symbol: str) -> str:
        return self.dep.tokens[symbol].address

    async def head(self) -> int:
        return await self.rpc.block_number()

    async def send(self, to: str, data: bytes) -> dict[str, Any]:
        """Sends one tx from the whale and mines it; returns the receipt (status not checked)."""
        tx = {"from": self.whale, "to": to, "data": "0x" + data.hex(), "gas": hex(GAS)}
        tx_hash = await self.rpc.call("eth_sendTransaction", [tx])
        await self.net.mine()
        receipt = await self.rpc.call("eth_getTransactionReceipt", [tx_hash])
        assert receipt is not None, "tx was not mined"
        return dict(receipt)

    async def balance(self, token: str, block: int) -> int:
        raw = await self.rpc.eth_call(
            token, encode_call("balanceOf(address)", ["address"], [self.whale]), block
        )
        return int.from_bytes(raw, "big")

    async def swap_delta(self, token_in: str, token_out: str, to: str, data: bytes) -> tuple[int, int, bool]:
        """(token_in spent, token_out received, success) of one mined swap tx from the whale."""
        before = await self.head()
        receipt = await self.send(to, data)
        after = int(receipt["blockNumber"], 16)
        assert after == before + 1
        spent = await self.balance(token_in, before) - await self.balance(token_in, after)
        got = await self.balance(token_out, after) - await self.balance(token_out, before)
        return spent, got, receipt["status"] == "0x1"


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    async with Devnet(block_time=None) as net:
        rpc, dep = net.require()
        whale = dep.accounts["whale"]
        sender = BulkSender(rpc, miner=DevnetMiner(net))
        await sender.run(fund_trader_txs(dep, whale, set(dep.tokens)))
        approve = "approve(address,uint256)"
        vault = [
            call_tx(
                whale, t.address, approve, ["address", "uint256"], [dep.balancer.vault, 2**256 - 1], 100_000
            )
            for t in dep.tokens.values()
        ]
        await sender.run(vault)  # the Balancer Vault pulls the tokens of a swap
        yield Env(net, rpc, dep, whale)


@pytest.fixture
async def snap(env: Env) -> AsyncIterator[Env]:
    """The module's devnet, reverted after the test."""
    snapshot = await env.rpc.call("evm_snapshot")
    try:
        yield env
    finally:
        assert await env.rpc.call("evm_revert", [snapshot]) is True


# ------------------------------------------------------------------------------- venue cases


async def erc20_balance_of_pool(env: Env, token: str, pool: str) -> int:
    raw = await env.rpc.eth_call(token, encode_call("balanceOf(address)", ["address"], [pool]))
    return int.from_bytes(raw, "big")


@dataclass(frozen=True)
class Case:
    """How the suite builds a venue from the devnet and executes one of its quotes for real."""

    name: str
    pool_names: tuple[str, ...]
    build: Callable[[Env], Awaitable[Venue]]
    pool_address: Callable[[Env, str], str]
    swap_call: Callable[[Env, Quote], tuple[str, bytes]]
    other_pool: str
    """A pool of the venue that does not hold WETH and the pair `known_pair` names."""
    known_pair: tuple[str, str] = ("WETH", "USDC")
    pool_balance: Callable[[Env, str, str], Awaitable[int]] = erc20_balance_of_pool
    """A token's balance in a pool (a Balancer pool's tokens are held by the Vault)."""


async def build_v3(env: Env, words_each_side: int | None = 2) -> UniswapV3Venue:
    pools = await load_v3_pools(env.rpc, env.dep.uniswap_v3.pools.values())
    return UniswapV3Venue(pools, words_each_side=words_each_side)


async def build_v2(env: Env) -> UniswapV2Venue:
    return UniswapV2Venue(await load_v2_pairs(env.rpc, env.dep.uniswap_v2.pairs.values()))


def v3_swap_call(env: Env, q: Quote) -> tuple[str, bytes]:
    params = (q.token_in, q.token_out, q.fee, env.whale, DEADLINE, q.amount_in, 0, 0)
    return env.dep.uniswap_v3.swap_router, encode_call(EXACT_INPUT_SINGLE, EXACT_INPUT_SINGLE_TYPES, [params])


def v2_swap_call(env: Env, q: Quote) -> tuple[str, bytes]:
    args = [q.amount_in, 0, [q.token_in, q.token_out], env.whale, DEADLINE]
    return env.dep.uniswap_v2.router, encode_call(V2_SWAP, V2_SWAP_TYPES, args)


async def build_balancer(env: Env) -> BalancerStableVenue:
    addresses = [p.address for p in env.dep.balancer.pools.values()]
    return BalancerStableVenue(await load_stable_pools(env.rpc, env.dep.balancer.vault, addresses))


def balancer_pool(env: Env, pool: str) -> Any:
    return next(p for p in env.dep.balancer.pools.values() if p.address.lower() == pool.lower())


def balancer_swap_call(env: Env, q: Quote) -> tuple[str, bytes]:
    pool_id = bytes.fromhex(balancer_pool(env, q.pool).pool_id[2:])
    single = (pool_id, 0, q.token_in, q.token_out, q.amount_in, b"")  # kind 0: GIVEN_IN
    funds = (env.whale, False, env.whale, False)
    return env.dep.balancer.vault, encode_call(VAULT_SWAP, VAULT_SWAP_TYPES, [single, funds, 0, DEADLINE])


async def vault_balance_of_pool(env: Env, token: str, pool: str) -> int:
    pool_id = bytes.fromhex(balancer_pool(env, pool).pool_id[2:])
    raw = await env.rpc.eth_call(
        env.dep.balancer.vault, encode_call("getPoolTokens(bytes32)", ["bytes32"], [pool_id])
    )
    tokens, balances, _ = decode(["address[]", "uint256[]", "uint256"], raw)
    return int(next(b for t, b in zip(tokens, balances, strict=True) if t.lower() == token.lower()))


CASES = {
    "uniswap_v3": Case(
        "uniswap_v3",
        tuple(p.name for p in DEFAULT_V3_POOLS),
        build_v3,
        lambda env, name: env.dep.uniswap_v3.pools[name],
        v3_swap_call,
        "WBTC/WETH/3000",
    ),
    "uniswap_v2": Case(
        "uniswap_v2",
        tuple(p.name for p in DEFAULT_V2_PAIRS),
        build_v2,
        lambda env, name: env.dep.uniswap_v2.pairs[name],
        v2_swap_call,
        "WBTC/WETH",
    ),
    "balancer_stable": Case(
        "balancer_stable",
        ("wstETH/WETH", "USDC/USDT/DAI"),
        build_balancer,
        lambda env, name: env.dep.balancer.pools[name].address,
        balancer_swap_call,
        "USDC/USDT/DAI",
        known_pair=("WETH", "wstETH"),
        pool_balance=vault_balance_of_pool,
    ),
}
POOL_PARAMS = [
    pytest.param(case, pool, direction, id=f"{case}-{pool}-{direction}")
    for case in CASES
    for pool in CASES[case].pool_names
    for direction in ("sell_base", "sell_quote")
]


def tokens_of(env: Env, pool_name: str, direction: str) -> tuple[str, str]:
    base, quote = pool_name.split("/")[:2]
    a, b = env.token(base), env.token(quote)
    return (a, b) if direction == "sell_base" else (b, a)


async def pool_balance(env: Env, token: str, pool: str) -> int:
    raw = await env.rpc.eth_call(token, encode_call("balanceOf(address)", ["address"], [pool]))
    return int.from_bytes(raw, "big")


def largest_quotable(venue: Venue, token_in: str, token_out: str, pool: str, hi: int) -> int:
    """The largest amount <= hi the venue quotes without QuoteError (binary search)."""
    try:
        venue.quote_exact_in(token_in, token_out, hi, pool=pool)
        return hi
    except QuoteError:
        pass
    assert venue.quote_exact_in(token_in, token_out, 1, pool=pool) is not None
    lo = 1
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        try:
            venue.quote_exact_in(token_in, token_out, mid, pool=pool)
            lo = mid
        except QuoteError:
            hi = mid
    return lo


async def quote_and_swap(
    env: Env, case: Case, venue: Venue, token_in: str, token_out: str, pool: str, amount: int
) -> Quote:
    """Refreshes at the head, quotes, executes the same swap, checks equality to the wei; reverts."""
    snapshot = await env.rpc.call("evm_snapshot")
    try:
        await venue.refresh(env.rpc, await env.head())
        q = venue.quote_exact_in(token_in, token_out, amount, pool=pool)
        assert q is not None
        assert (q.token_in, q.token_out, q.pool, q.amount_in) == (token_in, token_out, pool, amount)
        spent, got, ok = await env.swap_delta(token_in, token_out, *case.swap_call(env, q))
        assert ok, f"swap of {amount} reverted"
        assert (spent, got) == (amount, q.amount_out), f"{case.name} {pool} amount {amount}"
        return q
    finally:
        assert await env.rpc.call("evm_revert", [snapshot]) is True


# ------------------------------------------------------------------------------------ the suite


@pytest.mark.parametrize(("case_name", "pool_name", "direction"), POOL_PARAMS)
async def test_quote_equals_real_swap(snap: Env, case_name: str, pool_name: str, direction: str) -> None:
    env, case = snap, CASES[case_name]
    venue = await case.build(env)
    assert isinstance(venue, Venue)
    pool = case.pool_address(env, pool_name)
    token_in, token_out = tokens_of(env, pool_name, direction)
    await venue.refresh(env.rpc, await env.head())

    # From dust to the largest amount the venue can quote (capped at twice the pool's balance).
    hi = 2 * await case.pool_balance(env, token_in, pool)
    cap = largest_quotable(venue, token_in, token_out, pool, hi)
    rng = random.Random(zlib.crc32(f"{case_name}{pool_name}{direction}".encode()))
    amounts = sorted({cap, *(int(cap / 10 ** rng.uniform(0.05, 8)) + 1 for _ in range(5))})
    crossed = 0
    for amount in amounts:
        q = await quote_and_swap(env, case, venue, token_in, token_out, pool, amount)
        assert q.amount_out > 0
        if isinstance(venue, UniswapV3Venue):
            crossed = max(
                crossed,
                v3.swap(venue.state(pool), q.token_in == venue.pool_info(pool).token0, amount).ticks_crossed,
            )
    if isinstance(venue, UniswapV3Venue):
        assert crossed >= 2, "the amounts should cross initialized ticks"
    if cap < hi:  # the read range limited the amount: one more unit must raise, not be quoted wrong
        assert isinstance(venue, UniswapV3Venue)
        with pytest.raises(OutsideReadRange, match="bitmap words read"):
            venue.quote_exact_in(token_in, token_out, cap + 1, pool=pool)


@pytest.mark.parametrize("case_name", list(CASES))
async def test_dust_quote_or_error_matches_the_router(snap: Env, case_name: str) -> None:
    """1 base unit: the quote (often 0 out) equals the swap; a QuoteError means the router reverts."""
    env, case = snap, CASES[case_name]
    venue = await case.build(env)
    for pool_name in case.pool_names:
        pool = case.pool_address(env, pool_name)
        for direction in ("sell_base", "sell_quote"):
            token_in, token_out = tokens_of(env, pool_name, direction)
            await venue.refresh(env.rpc, await env.head())
            try:
                q = venue.quote_exact_in(token_in, token_out, 1, pool=pool)
            except QuoteError:
                q = None
            assert q is None or q.amount_in == 1
            fake = q or Quote(
                case.name,
                venue.kind,
                pool,
                token_in,
                token_out,
                1,
                0,
                int(pool_name.split("/")[2]) if case_name == "uniswap_v3" else 0,
                None,
            )
            spent, got, ok = await env.swap_delta(token_in, token_out, *case.swap_call(env, fake))
            if q is None:
                assert not ok, f"{pool_name} {direction}: venue refused a swap the router makes"
            else:
                assert ok
                assert (spent, got) == (1, q.amount_out)


@pytest.mark.parametrize("case_name", list(CASES))
async def test_quotes_track_state_after_refresh(snap: Env, case_name: str) -> None:
    env, case = snap, CASES[case_name]
    venue = await case.build(env)
    for pool_name in case.pool_names:
        pool = case.pool_address(env, pool_name)
        base, quote = tokens_of(env, pool_name, "sell_base")
        b0 = await env.head()
        await venue.refresh(env.rpc, b0)
        assert venue.block == b0
        cap = largest_quotable(venue, base, quote, pool, await case.pool_balance(env, base, pool))
        ours = largest_quotable(venue, quote, base, pool, await case.pool_balance(env, quote, pool)) // 20
        q_before = venue.quote_exact_in(quote, base, ours, pool=pool)
        assert q_before is not None
        # Someone else sells a lot of base (moves the price across ticks, and for V3 often across words).
        theirs = venue.quote_exact_in(base, quote, cap * 9 // 10, pool=pool)
        assert theirs is not None
        predicted = venue.apply(theirs).quote_exact_in(quote, base, ours, pool=pool)
        assert predicted is not None
        spent, got, ok = await env.swap_delta(base, quote, *case.swap_call(env, theirs))
        assert ok
        assert (spent, got) == (theirs.amount_in, theirs.amount_out)
        # Without a refresh the venue still answers for b0 (pure); `apply` did not touch it.
        assert venue.quote_exact_in(quote, base, ours, pool=pool) == q_before
        b1 = await env.head()
        await venue.refresh(env.rpc, b1)
        q_after = venue.quote_exact_in(quote, base, ours, pool=pool)
        assert q_after is not None
        assert q_after.amount_out > q_before.amount_out  # base got cheaper
        assert q_after.amount_out == predicted.amount_out  # apply() predicted the new state to the wei
        assert q_after.block == b1
        # Refresh is pinned to its block: reading b0 again gives the old answer.
        await venue.refresh(env.rpc, b0)
        again = venue.quote_exact_in(quote, base, ours, pool=pool)
        assert again is not None
        assert again.amount_out == q_before.amount_out
        await venue.refresh(env.rpc, b1)
        spent, got, ok = await env.swap_delta(quote, base, *case.swap_call(env, q_after))
        assert ok
        assert (spent, got) == (ours, q_after.amount_out)


@pytest.mark.parametrize("case_name", list(CASES))
async def test_unknown_pair_is_none(env: Env, case_name: str) -> None:
    case = CASES[case_name]
    venue = await case.build(env)
    await venue.refresh(env.rpc, await env.head())
    wbtc, usdc = env.token("WBTC"), env.token("USDC")
    a, b = (env.token(s) for s in case.known_pair)
    nobody = "0x000000000000000000000000000000000000dEaD"
    assert venue.quote_exact_in(wbtc, usdc, 10**8) is None
    assert venue.quote_exact_in(nobody, a, 10**18) is None
    assert venue.quote_exact_in(a, a, 10**18) is None
    other_pool = case.pool_address(env, case.other_pool)
    assert venue.quote_exact_in(a, b, 10**18, pool=other_pool) is None
    assert venue.pools(wbtc, usdc) == ()
    assert (min(a.lower(), b.lower()), max(a.lower(), b.lower())) in venue.pairs()
    # Addresses in any case.
    lower = venue.quote_exact_in(a.lower(), b.lower(), 10**18)
    assert lower is not None
    assert lower == venue.quote_exact_in(a, b, 10**18)
    assert lower.token_in == a
    with pytest.raises(ValueError, match="amount_in"):
        venue.quote_exact_in(a, b, 0)


# -------------------------------------------------------------------------- Uniswap V3 specifics


async def test_v3_outside_read_range_is_an_error_and_more_words_quote_it(snap: Env) -> None:
    env = snap
    narrow = await build_v3(env, words_each_side=2)
    wide = await build_v3(env, words_each_side=8)
    weth, usdc = env.token("WETH"), env.token("USDC")
    pool = env.dep.uniswap_v3.pools["WETH/USDC/500"]
    head = await env.head()
    await narrow.refresh(env.rpc, head)
    await wide.refresh(env.rpc, head)
    state = narrow.state(pool)
    assert state.word_bounds is not None
    here = v3.compress_tick(state.tick, state.tick_spacing) >> 8
    assert state.word_bounds == (here - 2, here + 2)
    # Enough WETH to push the price past the lowest word the narrow venue read (2x down from here at
    # spacing 10) but not past the wide one's.
    hi = 10**30
    cap_narrow = largest_quotable(narrow, weth, usdc, pool, hi)
    cap_wide = largest_quotable(wide, weth, usdc, pool, hi)
    assert cap_narrow < cap_wide < hi
    amount = (cap_narrow + cap_wide) // 2
    with pytest.raises(
        OutsideReadRange, match=re.escape(f"below the tick bitmap words read ({state.word_bounds}")
    ):
        narrow.quote_exact_in(weth, usdc, amount, pool=pool)
    big = wide.quote_exact_in(weth, usdc, amount, pool=pool)
    assert big is not None
    assert big.state_after.tick < state.word_bounds[0] * 256 * state.tick_spacing
    spent, got, ok = await env.swap_delta(weth, usdc, *v3_swap_call(env, big))
    assert ok
    assert (spent, got) == (amount, big.amount_out)
    # The other way too: USDC in, price up past the highest word.
    with pytest.raises(OutsideReadRange, match="above"):
        narrow.quote_exact_in(usdc, weth, 10**15, pool=pool)  # a billion USDC


async def test_v3_refresh_state_equals_a_full_read(snap: Env) -> None:
    """The incremental refresh (previous words guessed in one batch, missing words/ticks after) gives the
    same state as reading from scratch, also after the price moves words and a new position is minted."""
    env = snap
    venue = await build_v3(env, words_each_side=2)
    head = await env.head()
    await venue.refresh(env.rpc, head)
    assert venue.last_refresh_round_trips == 3  # first refresh: heads, then words, then ticks
    await venue.refresh(env.rpc, head)
    assert venue.last_refresh_round_trips == 1  # steady state: one batch

    async def check_all(block: int) -> None:
        for pool in env.dep.uniswap_v3.pools.values():
            full = await read_pool_state(env.rpc, pool, block=block, words_each_side=2)
            mine = venue.state(pool)
            assert (mine.sqrt_price_x96, mine.tick, mine.liquidity, mine.word_bounds) == (
                full.sqrt_price_x96,
                full.tick,
                full.liquidity,
                full.word_bounds,
            )
            assert dict(mine.bitmap) == dict(full.bitmap)
            assert dict(mine.liquidity_net) == dict(full.liquidity_net)

    await check_all(head)
    # Move WBTC/WETH's price by more than a word (spacing 60: 15,360 ticks per word).
    wbtc, weth = env.token("WBTC"), env.token("WETH")
    pool = env.dep.uniswap_v3.pools["WBTC/WETH/3000"]
    tick0 = venue.state(pool).tick
    cap = largest_quotable(venue, wbtc, weth, pool, 10**20)
    q = venue.quote_exact_in(wbtc, weth, cap, pool=pool)
    assert q is not None
    spent, got, ok = await env.swap_delta(wbtc, weth, *v3_swap_call(env, q))
    assert ok
    assert (spent, got) == (cap, q.amount_out)
    await venue.refresh(env.rpc, await env.head())
    moved_words = (v3.compress_tick(venue.state(pool).tick, 60) >> 8) - (v3.compress_tick(tick0, 60) >> 8)
    assert abs(moved_words) == 2  # to the edge of the words read, two words away
    assert venue.last_refresh_round_trips >= 2  # the new words (and their ticks) in further batches
    await check_all(await env.head())

    # A new position in WETH/USDC/500 initializes ticks the venue has never seen.
    usdc_pool = env.dep.uniswap_v3.pools["WETH/USDC/500"]
    st = venue.state(usdc_pool)
    lower = v3.floor_tick(st.tick, 10) - 70
    upper = v3.floor_tick(st.tick, 10) + 130
    assert lower not in st.liquidity_net and upper not in st.liquidity_net
    npm = env.dep.uniswap_v3.position_manager
    pool_info = venue.pool_info(usdc_pool)
    for token in (pool_info.token0, pool_info.token1):
        receipt = await env.send(
            token, encode_call("approve(address,uint256)", ["address", "uint256"], [npm, 2**256 - 1])
        )
        assert receipt["status"] == "0x1"
    desired = [100 * 10**18 if t == weth else 200_000 * 10**6 for t in (pool_info.token0, pool_info.token1)]
    mint = (pool_info.token0, pool_info.token1, 500, lower, upper, *desired, 0, 0, env.whale, DEADLINE)
    receipt = await env.send(
        npm,
        encode_call(
            "mint((address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256))",
            ["(address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256)"],
            [mint],
        ),
    )
    assert receipt["status"] == "0x1"
    await venue.refresh(env.rpc, await env.head())
    assert venue.last_refresh_round_trips == 2  # the new ticks' liquidityNet in a second batch
    assert lower in venue.state(usdc_pool).liquidity_net
    await check_all(await env.head())
    usdc = env.token("USDC")
    amount = largest_quotable(venue, weth, usdc, usdc_pool, 10**30) // 2
    q = venue.quote_exact_in(weth, usdc, amount, pool=usdc_pool)
    assert q is not None
    assert q.state_after.tick < lower  # crosses the new position's lower tick
    spent, got, ok = await env.swap_delta(weth, usdc, *v3_swap_call(env, q))
    assert ok
    assert (spent, got) == (q.amount_in, q.amount_out)


async def test_v3_every_word_read_equals_quoter(env: Env) -> None:
    """words_each_side=None (every word; only sensible for wide spacings) has no read bounds."""
    pools = [
        p for p in await load_v3_pools(env.rpc, env.dep.uniswap_v3.pools.values()) if p.tick_spacing == 60
    ]
    venue = UniswapV3Venue(pools, words_each_side=None)
    await venue.refresh(env.rpc, await env.head())
    for p in pools:
        assert venue.state(p.address).word_bounds is None
        q = venue.quote_exact_in(p.token0, p.token1, 10**9, pool=p.address)
        assert q is not None
        quoter = env.dep.uniswap_v3.quoter_v2
        raw = await env.rpc.eth_call(
            quoter,
            encode_call(
                "quoteExactInputSingle((address,address,uint256,uint24,uint160))",
                ["(address,address,uint256,uint24,uint160)"],
                [(p.token0, p.token1, 10**9, p.fee, 0)],
            ),
        )
        assert int.from_bytes(raw[:32], "big") == q.amount_out


# --------------------------------------------------------------------------------------- router


ROUTER_CASES = [
    ("WBTC", "USDC", 3 * 10**8),  # no direct pool: via WETH
    ("wstETH", "USDC", 50 * 10**18),  # via WETH
    ("DAI", "USDT", 250_000 * 10**18),  # V3 via USDC; V2 via WETH or USDC
    ("WETH", "USDC", 400 * 10**18),  # direct (two fee tiers on V3)
    ("USDC", "WBTC", 1_000_000 * 10**6),
]


@pytest.mark.parametrize(("sym_in", "sym_out", "amount"), ROUTER_CASES)
async def test_router_routes_equal_executing_their_path(
    snap: Env, sym_in: str, sym_out: str, amount: int
) -> None:
    env = snap
    v3_venue, v2_venue = await build_v3(env), await build_v2(env)
    token_in, token_out = env.token(sym_in), env.token(sym_out)
    via = (env.token("WETH"), env.token("USDC"))
    head = await env.head()
    await v3_venue.refresh(env.rpc, head)
    await v2_venue.refresh(env.rpc, head)
    best = best_route([v3_venue, v2_venue], token_in, token_out, amount, via=via)
    per_venue = [best_route([v], token_in, token_out, amount, via=via) for v in (v3_venue, v2_venue)]
    assert best is not None
    assert best.amount_out == max(r.amount_out for r in per_venue if r is not None)
    for route in per_venue:
        assert route is not None
        assert route.token_in == token_in and route.token_out == token_out and route.amount_in == amount
        snapshot = await env.rpc.call("evm_snapshot")
        try:
            if isinstance(route.executor_route, V3Route):
                assert route.path == encode_v3_path(route.tokens, [h.fee for h in route.hops])
                call = encode_call(
                    EXACT_INPUT, EXACT_INPUT_TYPES, [(route.path, env.whale, DEADLINE, amount, 0)]
                )
                to = env.dep.uniswap_v3.swap_router
            else:
                assert isinstance(route.executor_route, V2Route)
                call = encode_call(
                    V2_SWAP, V2_SWAP_TYPES, [amount, 0, list(route.tokens), env.whale, DEADLINE]
                )
                to = env.dep.uniswap_v2.router
            spent, got, ok = await env.swap_delta(token_in, token_out, to, call)
            assert ok
            assert (spent, got) == (amount, route.amount_out), route
        finally:
            assert await env.rpc.call("evm_revert", [snapshot]) is True
    if sym_in in ("WBTC", "wstETH"):
        assert best.tokens[1] == env.token("WETH") and len(best.hops) == 2
    if (sym_in, sym_out) == ("WETH", "USDC"):
        assert len(best.hops) == 1


async def test_refresh_and_quote_timings(env: Env) -> None:
    """Figures for the report: refresh of every devnet pool per block, and quote time."""
    v3_venue, v2_venue = await build_v3(env), await build_v2(env)
    head = await env.head()
    await v3_venue.refresh(env.rpc, head)
    await v2_venue.refresh(env.rpc, head)
    n = 50
    t = time.perf_counter()
    for _ in range(n):
        await v3_venue.refresh(env.rpc, head)
    t_v3 = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for _ in range(n):
        await v2_venue.refresh(env.rpc, head)
    t_v2 = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for _ in range(n):
        await asyncio.gather(v3_venue.refresh(env.rpc, head), v2_venue.refresh(env.rpc, head))
    t_both = (time.perf_counter() - t) / n
    weth, usdc = env.token("WETH"), env.token("USDC")
    pool = env.dep.uniswap_v3.pools["WETH/USDC/500"]
    big = largest_quotable(v3_venue, weth, usdc, pool, 10**30)
    crossed = v3.swap(v3_venue.state(pool), weth == v3_venue.pool_info(pool).token0, big).ticks_crossed
    assert crossed >= 2
    timings = {}
    for label, venue, kw, amount in (
        ("v3 1 WETH (no tick crossed)", v3_venue, {"pool": pool}, 10**18),
        (f"v3 {big // 10**18} WETH ({crossed} ticks crossed)", v3_venue, {"pool": pool}, big),
        ("v2 1 WETH", v2_venue, {}, 10**18),
    ):
        t = time.perf_counter()
        for _ in range(200):
            venue.quote_exact_in(weth, usdc, amount, **kw)
        timings[label] = (time.perf_counter() - t) / 200 * 1e6
    t = time.perf_counter()
    for _ in range(50):
        best_route([v3_venue, v2_venue], env.token("WBTC"), usdc, 10**8, via=(weth, usdc))
    t_route = (time.perf_counter() - t) / 50 * 1e6
    print(
        f"\nrefresh per block: V3 {len(env.dep.uniswap_v3.pools)} pools {t_v3 * 1e3:.2f} ms "
        f"({v3_venue.last_refresh_calls} eth_calls, {v3_venue.last_refresh_round_trips} batch), "
        f"V2 {len(env.dep.uniswap_v2.pairs)} pairs {t_v2 * 1e3:.2f} ms, "
        f"both concurrently {t_both * 1e3:.2f} ms"
    )
    print(
        "quote:", {k: f"{v:.0f} us" for k, v in timings.items()}, f"best_route WBTC->USDC: {t_route:.0f} us"
    )
    assert v3_venue.last_refresh_round_trips == 1
