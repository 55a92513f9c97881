"""The Balancer ComposableStablePool venue against the devnet's real Balancer V2 Vault and pools.

Property test: over many random pool states (moved between quotes by real swaps, joins and single-token
exits through the Vault, and changes of the wstETH rate behind the pool's rate cache), random amounts
from dust to beyond the pool's balances, in every direction between the pool's tokens: the venue's
exact-in (and exact-out) quote at the refreshed block equals `Vault.queryBatchSwap` at that block to the
wei, and the venue raises QuoteError exactly where the query reverts.

Then: quotes for the next block (swap_time_offset=1) equal the balance changes of real `Vault.swap`
transactions mined in that block, and `apply` predicts the pool's state after them.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_abi.abi import decode, encode

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient
from keeper.devnet.deploy import DevnetDeployment
from keeper.devnet.scenarios.common import BulkSender, Tx, call_tx
from keeper.devnet.stack import Devnet, DevnetMiner
from keeper.errors import DevnetError, JsonRpcError
from strategies.venues import balancer_math as bm
from strategies.venues.balancer_stable import (
    BalancerStableVenue,
    StablePool,
    StablePoolState,
    load_stable_pools,
)
from strategies.venues.base import QuoteError

pytestmark = pytest.mark.integration

GIVEN_IN, GIVEN_OUT = 0, 1
UINT256_MAX = 2**256 - 1
MAX_BALANCE = 2**112 - 1
DEADLINE = 2**40
GAS = 3_000_000
POOL_NAMES = ("wstETH/WETH", "USDC/USDT/DAI")
STATES_PER_POOL = 40
IN_QUOTES_PER_STATE = 12
OUT_QUOTES_PER_STATE = 4

QUERY_SIG = (
    "queryBatchSwap(uint8,(bytes32,uint256,uint256,uint256,bytes)[],address[],(address,bool,address,bool))"
)
QUERY_TYPES = [
    "uint8",
    "(bytes32,uint256,uint256,uint256,bytes)[]",
    "address[]",
    "(address,bool,address,bool)",
]
SWAP_SIG = "swap((bytes32,uint8,address,address,uint256,bytes),(address,bool,address,bool),uint256,uint256)"
SWAP_TYPES = [
    "(bytes32,uint8,address,address,uint256,bytes)",
    "(address,bool,address,bool)",
    "uint256",
    "uint256",
]
JOIN_SIG = "joinPool(bytes32,address,address,(address[],uint256[],bytes,bool))"
EXIT_SIG = "exitPool(bytes32,address,address,(address[],uint256[],bytes,bool))"
POOL_OP_TYPES = ["bytes32", "address", "address", "(address[],uint256[],bytes,bool)"]
JOIN_EXACT_TOKENS_IN = 1  # ComposableStablePool JoinKind.EXACT_TOKENS_IN_FOR_BPT_OUT
EXIT_EXACT_BPT_IN_FOR_ONE_TOKEN_OUT = 0  # ExitKind


@dataclass
class Env:
    net: Devnet
    rpc: RpcClient
    dep: DevnetDeployment
    whale: str
    owner: str
    """The wstETH owner (sets its rate)."""
    pools: dict[str, StablePool]
    sender: BulkSender

    @property
    def vault(self) -> str:
        return self.dep.balancer.vault

    async def run(self, txs: list[Tx]) -> None:
        """Sends the txs in order and mines them into one block; every one must succeed."""
        await self.sender.run(txs)

    async def head(self) -> int:
        return await self.rpc.block_number()


@pytest.fixture(scope="module")
async def env(devnet: Devnet) -> Env:
    rpc, dep = devnet.require()
    whale, owner = dep.accounts["whale"], dep.accounts["deployer"]
    pools = await load_stable_pools(
        rpc, dep.balancer.vault, [dep.balancer.pools[n].address for n in POOL_NAMES]
    )
    sender = BulkSender(rpc, miner=DevnetMiner(devnet))
    txs = []
    for symbol in ("wstETH", "WETH", "USDC", "USDT", "DAI"):
        tok = dep.tokens[symbol]
        amount = 10 ** (tok.decimals + 13)
        txs.append(
            call_tx(
                whale, tok.address, "mint(address,uint256)", ["address", "uint256"], [whale, amount], 200_000
            )
        )
        txs.append(
            call_tx(
                whale,
                tok.address,
                "approve(address,uint256)",
                ["address", "uint256"],
                [dep.balancer.vault, UINT256_MAX],
                100_000,
            )
        )
    await sender.run(txs)
    return Env(devnet, rpc, dep, whale, owner, dict(zip(POOL_NAMES, pools, strict=True)), sender)


@pytest.fixture
async def snap(env: Env) -> AsyncIterator[Env]:
    snapshot = await env.rpc.call("evm_snapshot")
    try:
        yield env
    finally:
        assert await env.rpc.call("evm_revert", [snapshot]) is True


# ----------------------------------------------------------------------------------------- helpers


def query_call(
    env: Env, pool: StablePool, kind: int, t_in: str, t_out: str, amount: int, block: int
) -> tuple[str, Any]:
    funds = (env.whale, False, env.whale, False)
    data = encode_call(
        QUERY_SIG,
        QUERY_TYPES,
        [kind, [(bytes.fromhex(pool.pool_id[2:]), 0, 1, amount, b"")], [t_in, t_out], funds],
    )
    return ("eth_call", [{"to": env.vault, "data": "0x" + data.hex()}, hex(block)])


def query_result(raw: Any) -> tuple[int, int] | None:
    """(amount in, amount out) of a single-hop queryBatchSwap, None if it reverted."""
    if isinstance(raw, JsonRpcError):
        return None
    (deltas,) = decode(["int256[]"], bytes.fromhex(raw[2:]))
    assert deltas[0] > 0 and deltas[1] <= 0
    return int(deltas[0]), -int(deltas[1])


def log_uniform(rng: random.Random, lo: int, hi: int) -> int:
    if hi <= lo:
        return lo
    return min(hi, max(lo, int(math.exp(rng.uniform(math.log(lo), math.log(hi))))))


def amount_in_for(rng: random.Random, balance_in: int, decimals: int) -> int:
    """Dust, everyday, large (beyond the pool's balance) and Vault-limit amounts."""
    r = rng.random()
    if r < 0.10:
        return rng.randint(1, 3)
    if r < 0.25:
        return rng.randint(1, 10**4)
    if r < 0.75:
        return log_uniform(rng, 1, max(2, balance_in))
    if r < 0.95:
        return balance_in * rng.randint(50, 400) // 100 + rng.randint(0, 10**decimals)
    return MAX_BALANCE - balance_in + rng.randint(-3, 3)


def amount_out_for(rng: random.Random, balance_out: int) -> int:
    r = rng.random()
    if r < 0.15:
        return rng.randint(1, 10**4)
    if r < 0.90:
        return log_uniform(rng, 1, max(2, balance_out * 99 // 100))
    return balance_out + rng.randint(-2, 2)


def swap_tx(env: Env, pool: StablePool, t_in: str, t_out: str, amount: int) -> Tx:
    single = (bytes.fromhex(pool.pool_id[2:]), GIVEN_IN, t_in, t_out, amount, b"")
    funds = (env.whale, False, env.whale, False)
    return call_tx(env.whale, env.vault, SWAP_SIG, SWAP_TYPES, [single, funds, 0, DEADLINE], GAS)


def join_tx(env: Env, pool: StablePool, amounts: list[int]) -> Tx:
    """EXACT_TOKENS_IN_FOR_BPT_OUT with `amounts` per swap token (BPT left out of the user data)."""
    user_data = encode(["uint256", "uint256[]", "uint256"], [JOIN_EXACT_TOKENS_IN, amounts, 0])
    request = (list(pool.tokens), [UINT256_MAX] * len(pool.tokens), user_data, False)
    return call_tx(
        env.whale,
        env.vault,
        JOIN_SIG,
        POOL_OP_TYPES,
        [bytes.fromhex(pool.pool_id[2:]), env.whale, env.whale, request],
        GAS,
    )


def exit_tx(env: Env, pool: StablePool, bpt_in: int, token_index: int) -> Tx:
    user_data = encode(
        ["uint256", "uint256", "uint256"], [EXIT_EXACT_BPT_IN_FOR_ONE_TOKEN_OUT, bpt_in, token_index]
    )
    request = (list(pool.tokens), [0] * len(pool.tokens), user_data, False)
    return call_tx(
        env.whale,
        env.vault,
        EXIT_SIG,
        POOL_OP_TYPES,
        [bytes.fromhex(pool.pool_id[2:]), env.whale, env.whale, request],
        GAS,
    )


async def erc20_balance(env: Env, token: str, owner: str, block: int | str = "latest") -> int:
    raw = await env.rpc.eth_call(token, encode_call("balanceOf(address)", ["address"], [owner]), block)
    return int.from_bytes(raw, "big")


async def lst_rate(env: Env) -> int:
    raw = await env.rpc.eth_call(env.dep.tokens["wstETH"].address, encode_call("getRate()"))
    return int.from_bytes(raw, "big")


async def random_moves(env: Env, rng: random.Random, pool: StablePool, state: StablePoolState) -> list[str]:
    """One block of 1-3 random state changes: Vault swaps, joins, single-token exits, wstETH rate moves."""
    swap_tokens = pool.swap_tokens
    keep = [k for k in range(len(pool.tokens)) if k != pool.bpt_index]
    balances = [state.balances[k] for k in keep]
    txs: list[Tx] = []
    what: list[str] = []
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        if r < 0.4:
            i, j = rng.sample(range(len(swap_tokens)), 2)
            amount = log_uniform(rng, 10 ** pool.decimals[keep[i]] // 100, balances[i] * 6 // 10)
            txs.append(swap_tx(env, pool, swap_tokens[i], swap_tokens[j], amount))
            what.append(f"swap {amount} {i}->{j}")
        elif r < 0.55:
            amounts = [
                log_uniform(rng, 10 ** pool.decimals[k] // 100, b // 5) if rng.random() < 0.7 else 0
                for k, b in zip(keep, balances, strict=True)
            ]
            if not any(amounts):
                amounts[0] = balances[0] // 100
            txs.append(join_tx(env, pool, amounts))
            what.append(f"join {amounts}")
        elif r < 0.7:
            bpt = await erc20_balance(env, pool.address, env.whale)
            if bpt > 10**16:
                k = rng.randrange(len(swap_tokens))
                bpt_in = log_uniform(rng, 10**15, bpt // 2)
                txs.append(exit_tx(env, pool, bpt_in, k))
                what.append(f"exit {bpt_in} BPT to {k}")
        elif any(p is not None for p in pool.rate_providers):
            rate = await lst_rate(env)
            new_rate = rate * rng.randint(9_700, 10_300) // 10_000 + rng.randint(0, 10**6)
            if rng.random() < 0.5:  # a swap first in the same block caches the old rate until the next one
                amount = log_uniform(rng, 10**16, balances[0] // 10)
                txs.append(swap_tx(env, pool, swap_tokens[0], swap_tokens[1], amount))
                what.append(f"swap {amount} 0->1")
            txs.append(
                call_tx(
                    env.owner,
                    env.dep.tokens["wstETH"].address,
                    "setRate(uint256,uint256)",
                    ["uint256", "uint256"],
                    [new_rate, 0],
                    200_000,
                )
            )
            what.append(f"rate {rate} -> {new_rate}")
    if txs:
        try:
            await env.run(txs)
        except DevnetError as exc:
            raise AssertionError(f"state move {what} failed: {exc}") from None
    else:
        await env.net.mine()
        what.append("empty block")
    return what


@dataclass
class Tally:
    compared: dict[tuple[str, str], int] = field(default_factory=dict)
    quoted: dict[tuple[str, str], int] = field(default_factory=dict)
    reverted: dict[tuple[str, str], int] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    rate_cases: dict[str, int] = field(default_factory=dict)
    """The wstETH rate cache at the blocks quoted: expired or not, provider rate moved or not."""

    def add(self, key: tuple[str, str], ok: bool, reverted: bool, detail: str) -> None:
        self.compared[key] = self.compared.get(key, 0) + 1
        if reverted:
            self.reverted[key] = self.reverted.get(key, 0) + 1
        else:
            self.quoted[key] = self.quoted.get(key, 0) + 1
        if not ok:
            self.mismatches.append(detail)


# ------------------------------------------------------------------------------------------ tests


async def test_load_stable_pools(env: Env) -> None:
    lst, weth = env.dep.tokens["wstETH"].address, env.dep.tokens["WETH"].address
    pool = env.pools["wstETH/WETH"]
    assert pool.tokens[pool.bpt_index].lower() == pool.address.lower()
    assert {t.lower() for t in pool.swap_tokens} == {lst.lower(), weth.lower()}
    assert pool.rate_providers[pool.index(lst) or 0] == lst  # the LST is its own rate provider
    assert pool.rate_providers[pool.index(weth) or 0] is None
    assert pool.pool_id == env.dep.balancer.pools["wstETH/WETH"].pool_id
    stable = env.pools["USDC/USDT/DAI"]
    by_symbol = {s: stable.index(env.dep.tokens[s].address) for s in ("USDC", "USDT", "DAI")}
    assert [stable.decimals[i or 0] for i in by_symbol.values()] == [6, 6, 18]
    assert all(p is None for p in stable.rate_providers)
    venue = BalancerStableVenue(list(env.pools.values()))
    assert venue.pools(weth, lst) == (pool.address,)
    assert venue.pools(env.dep.tokens["DAI"].address, env.dep.tokens["USDC"].address.lower()) == (
        stable.address,
    )
    assert venue.pools(pool.address, lst) == ()  # the BPT is not a swap token
    assert len(venue.pairs()) == 1 + 3


async def test_scaling_factors_match_the_pool(snap: Env) -> None:
    """The venue's scaling factors at the block read equal the pool's getScalingFactors(), also right
    after the wstETH rate changed (the pool still holds the cached rate; a swap would use the new one)."""
    env = snap
    venue = BalancerStableVenue(list(env.pools.values()), swap_time_offset=0)
    rate = await lst_rate(env)
    for step in range(2):
        block = await env.head()
        await venue.refresh(env.rpc, block)
        for pool in env.pools.values():
            state = venue.state(pool.address)
            raw = await env.rpc.eth_call(pool.address, encode_call("getScalingFactors()"), block)
            (onchain,) = decode(["uint256[]"], raw)
            decimals = [18 if k == pool.bpt_index else d for k, d in enumerate(pool.decimals)]
            # the pool's own factors use its cached rates
            cached = [
                bm.scaling_factor(d, bm.ONE if r is None else r.rate) for d, r in zip(decimals, state.rates)
            ]
            assert cached == list(onchain)
            # a swap in this block re-reads an expired rate from the provider
            at = state.timestamp
            in_swap = [
                bm.scaling_factor(
                    d, bm.ONE if r is None else (r.provider_rate if at > r.expires else r.rate) or 0
                )
                for d, r in zip(decimals, state.rates)
            ]
            assert list(venue.scaling_factors(pool.address)) == in_swap
        if step == 0:
            await env.run(
                [
                    call_tx(
                        env.owner,
                        env.dep.tokens["wstETH"].address,
                        "setRate(uint256,uint256)",
                        ["uint256", "uint256"],
                        [rate * 101 // 100, 0],
                        200_000,
                    )
                ]
            )
    lst_pool = env.pools["wstETH/WETH"]
    state = venue.state(lst_pool.address)
    (lst_rate_state,) = [r for r in state.rates if r is not None]
    assert lst_rate_state.rate == rate and lst_rate_state.provider_rate == rate * 101 // 100


async def test_quotes_equal_query_batch_swap_on_random_states(snap: Env) -> None:
    env = snap
    rng = random.Random(0xBA1A)
    venue = BalancerStableVenue(list(env.pools.values()), swap_time_offset=0)
    tally = Tally()
    for name, pool in env.pools.items():
        swap_tokens = pool.swap_tokens
        keep = [k for k in range(len(pool.tokens)) if k != pool.bpt_index]
        for n_state in range(STATES_PER_POOL):
            block = await env.head()
            await venue.refresh(env.rpc, block)
            state = venue.state(pool.address)
            for rate in state.rates:
                if rate is not None:
                    expired = state.timestamp > rate.expires
                    case = ("expired" if expired else "fresh") + (
                        " new rate" if rate.provider_rate != rate.rate else ""
                    )
                    tally.rate_cases[case] = tally.rate_cases.get(case, 0) + 1
            cases: list[tuple[int, int, int, int]] = []  # kind, i, j, amount
            for q in range(IN_QUOTES_PER_STATE + OUT_QUOTES_PER_STATE):
                i, j = rng.sample(range(len(swap_tokens)), 2)
                if q < IN_QUOTES_PER_STATE:
                    cases.append(
                        (GIVEN_IN, i, j, amount_in_for(rng, state.balances[keep[i]], pool.decimals[keep[i]]))
                    )
                else:
                    cases.append((GIVEN_OUT, i, j, amount_out_for(rng, state.balances[keep[j]])))
            replies = await env.rpc.batch(
                [query_call(env, pool, k, swap_tokens[i], swap_tokens[j], a, block) for k, i, j, a in cases],
                raise_errors=False,
            )
            for (kind, i, j, amount), raw in zip(cases, replies, strict=True):
                expected = query_result(raw)
                try:
                    if kind == GIVEN_IN:
                        quote = venue.quote_exact_in(
                            swap_tokens[i], swap_tokens[j], amount, pool=pool.address
                        )
                    else:
                        quote = venue.quote_exact_out(
                            swap_tokens[i], swap_tokens[j], amount, pool=pool.address
                        )
                    assert quote is not None
                    got: tuple[int, int] | None = (quote.amount_in, quote.amount_out)
                except QuoteError:
                    got = None
                label = "in" if kind == GIVEN_IN else "out"
                tally.add(
                    (name, label),
                    got == expected,
                    expected is None,
                    f"{name} state {n_state} block {block} given_{label} {i}->{j} {amount}: "
                    f"venue {got} vault {expected}",
                )
            await random_moves(env, rng, pool, state)
    for key in sorted(tally.compared):
        print(
            f"{key[0]} given_{key[1]}: {tally.compared[key]} compared, {tally.quoted.get(key, 0)} quoted, "
            f"{tally.reverted.get(key, 0)} reverted on both sides"
        )
    print(f"wstETH rate cache at the blocks quoted: {tally.rate_cases}")
    print(f"mismatches: {len(tally.mismatches)}")
    assert tally.mismatches == []
    for name in POOL_NAMES:
        assert tally.compared[(name, "in")] >= 200
        assert tally.quoted[(name, "in")] >= 150
        assert tally.reverted.get((name, "in"), 0) >= 1  # the Vault-limit and dust cases do revert
        assert tally.quoted[(name, "out")] >= 50
    # quotes were compared with the cache expired and a new provider rate (the swap re-reads it), and
    # with the cache fresh while the provider already has a new rate (the swap uses the cached one)
    assert tally.rate_cases.get("expired new rate", 0) >= 3
    assert tally.rate_cases.get("fresh new rate", 0) >= 1


async def test_next_block_swaps_pay_the_quote_and_apply_predicts_the_state(snap: Env) -> None:
    """Quotes for the next block (offset 1) equal real Vault.swap balance changes, including right after
    a wstETH rate change the pool has not cached yet; `apply` gives the pool's state after the swap."""
    env = snap
    rng = random.Random(7)
    venue = BalancerStableVenue(list(env.pools.values()))
    assert venue.swap_time_offset == 1
    executed = 0
    for name, pool in env.pools.items():
        swap_tokens = pool.swap_tokens
        keep = [k for k in range(len(pool.tokens)) if k != pool.bpt_index]
        for round_ in range(6):
            if name == "wstETH/WETH" and round_ % 2 == 0:
                rate = await lst_rate(env)
                await env.run(
                    [
                        call_tx(
                            env.owner,
                            env.dep.tokens["wstETH"].address,
                            "setRate(uint256,uint256)",
                            ["uint256", "uint256"],
                            [rate * rng.randint(980, 1020) // 1000, 0],
                            200_000,
                        )
                    ]
                )
            block = await env.head()
            await venue.refresh(env.rpc, block)
            state = venue.state(pool.address)
            i, j = rng.sample(range(len(swap_tokens)), 2)
            amount = log_uniform(rng, 10 ** pool.decimals[keep[i]] // 100, state.balances[keep[i]] // 3)
            quote = venue.quote_exact_in(swap_tokens[i], swap_tokens[j], amount, pool=pool.address)
            assert quote is not None and quote.amount_out > 0
            before = await erc20_balance(env, swap_tokens[j], env.whale)
            await env.run([swap_tx(env, pool, swap_tokens[i], swap_tokens[j], amount)])
            after_block = await env.head()
            assert after_block == block + 1
            assert await erc20_balance(env, swap_tokens[j], env.whale) - before == quote.amount_out, (
                name,
                round_,
            )
            fresh = BalancerStableVenue(list(env.pools.values()))
            await fresh.refresh(env.rpc, after_block)
            predicted = venue.apply(quote).state(pool.address)
            actual = fresh.state(pool.address)
            assert predicted.balances == actual.balances
            assert [r and (r.rate, r.expires) for r in predicted.rates] == [
                r and (r.rate, r.expires) for r in actual.rates
            ]
            executed += 1
    assert executed == 12


async def test_refresh_is_pinned_to_its_block(snap: Env) -> None:
    env = snap
    pool = env.pools["USDC/USDT/DAI"]
    usdc, dai = env.dep.tokens["USDC"].address, env.dep.tokens["DAI"].address
    venue = BalancerStableVenue([pool], swap_time_offset=0)
    block = await env.head()
    await venue.refresh(env.rpc, block)
    first = venue.quote_exact_in(usdc, dai, 1_000_000 * 10**6)
    await env.run([swap_tx(env, pool, usdc, dai, 3_000_000 * 10**6)])
    later = BalancerStableVenue([pool], swap_time_offset=0)
    await later.refresh(env.rpc, block + 1)
    again = BalancerStableVenue([pool], swap_time_offset=0)
    await again.refresh(env.rpc, block)
    assert first is not None and venue.block == block and again.block == block
    assert again.state(pool.address) == venue.state(pool.address)
    moved = later.quote_exact_in(usdc, dai, 1_000_000 * 10**6)
    assert moved is not None and moved.amount_out < first.amount_out  # USDC is now the abundant side
    mid_before = venue.mid_price(usdc, dai, pool.address)
    mid_after = later.mid_price(usdc, dai, pool.address)
    assert mid_before is not None and mid_after is not None
    assert mid_after[0] * mid_before[1] < mid_before[0] * mid_after[1]
