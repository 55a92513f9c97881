"""Pending swaps on the real devnet: decode them from the mempool, apply them to the venues, mine, compare.

Each test sends a real swap (Uniswap V2 Router02, V3 SwapRouter, the Balancer Vault) from the funded
whale while the devnet does not mine, reads it back from the node as a pending tx, runs it through the
collector's decoding (`decode_pending_tx`), the decoder's pre-filter and `SwapDecoder`, and applies it to
venues refreshed at the head with `apply_pending`. Then the block is mined and the venues refreshed
again: every touched pool's state, the quotes on it in both directions, and the tx's own token deltas
must equal what the applied venues said, to the wei.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi.abi import encode

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient
from keeper.chain.swaps import SELECTORS, PendingSwap, SwapDecoder
from keeper.collectors.mempool import decode_pending_tx
from keeper.devnet.deploy import DevnetDeployment
from keeper.devnet.scenarios.amm import fund_trader_txs
from keeper.devnet.scenarios.common import BulkSender, call_tx
from keeper.devnet.stack import Devnet, DevnetMiner
from strategies.venues.balancer_stable import BalancerStableVenue, StablePool, load_stable_pools
from strategies.venues.base import Quote, QuoteError, Venue
from strategies.venues.pending import apply_pending, explain_pending, touches
from strategies.venues.uniswap_v2 import UniswapV2Venue, V2Pair, load_v2_pairs
from strategies.venues.uniswap_v3 import UniswapV3Venue, V3Pool, load_v3_pools

pytestmark = pytest.mark.integration

DEADLINE = 2**40
GAS = 1_500_000
UINT256_MAX = 2**256 - 1
V2_ARGS5 = ["uint256", "uint256", "address[]", "address", "uint256"]
V2_ARGS4 = ["uint256", "address[]", "address", "uint256"]
V3_SINGLE = "(address,address,uint24,address,uint256,uint256,uint256,uint160)"
V3_PATH = "(bytes,address,uint256,uint256,uint256)"
SINGLE_SWAP = "(bytes32,uint8,address,address,uint256,bytes)"
FUNDS = "(address,bool,address,bool)"
STEP = "(bytes32,uint256,uint256,uint256,bytes)"


@dataclass
class Env:
    net: Devnet
    rpc: RpcClient
    dep: DevnetDeployment
    whale: str
    decoder: SwapDecoder
    v2_pairs: list[V2Pair]
    v3_pools: list[V3Pool]
    stable_pools: list[StablePool]

    def token(self, symbol: str) -> str:
        return self.dep.tokens[symbol].address

    def unit(self, symbol: str) -> int:
        return int(10 ** self.dep.tokens[symbol].decimals)

    async def venues(self, block: int) -> list[Venue]:
        venues: list[Venue] = [
            UniswapV2Venue(self.v2_pairs),
            UniswapV3Venue(self.v3_pools),
            BalancerStableVenue(self.stable_pools),
        ]
        for v in venues:
            await v.refresh(self.rpc, block)
        return venues

    async def balance(self, token: str, block: int) -> int:
        raw = await self.rpc.eth_call(
            token, encode_call("balanceOf(address)", ["address"], [self.whale]), block
        )
        return int.from_bytes(raw, "big")


@pytest.fixture(scope="module")
async def env(devnet: Devnet) -> Env:
    rpc, dep = devnet.require()
    whale = dep.accounts["whale"]
    sender = BulkSender(rpc, miner=DevnetMiner(devnet))
    await sender.run(fund_trader_txs(dep, whale, set(dep.tokens)))
    approve = "approve(address,uint256)"
    await sender.run(
        [
            call_tx(
                whale, t.address, approve, ["address", "uint256"], [dep.balancer.vault, UINT256_MAX], 100_000
            )
            for t in dep.tokens.values()
        ]
    )
    decoder = SwapDecoder(
        {
            dep.uniswap_v2.router: "uniswap_v2",
            dep.uniswap_v3.swap_router: "uniswap_v3",
            dep.balancer.vault: "balancer_v2",
        },
        weth=dep.tokens["WETH"].address,
    )
    return Env(
        devnet,
        rpc,
        dep,
        whale,
        decoder,
        await load_v2_pairs(rpc, dep.uniswap_v2.pairs.values()),
        await load_v3_pools(rpc, dep.uniswap_v3.pools.values()),
        await load_stable_pools(rpc, dep.balancer.vault, [p.address for p in dep.balancer.pools.values()]),
    )


@pytest.fixture
async def snap(env: Env) -> AsyncIterator[Env]:
    snapshot = await env.rpc.call("evm_snapshot")
    try:
        yield env
    finally:  # a failed test may leave its tx pending: it must not land in the next test's block
        await env.rpc.call("anvil_dropAllTransactions")
        assert await env.rpc.call("evm_revert", [snapshot]) is True


# ----------------------------------------------------------------------------------------- helpers


def pool_state(venue: Venue, pool: str) -> Any:
    if isinstance(venue, UniswapV2Venue):
        return venue.reserves(pool)
    if isinstance(venue, UniswapV3Venue):
        s = venue.state(pool)
        return (s.sqrt_price_x96, s.tick, s.liquidity)
    assert isinstance(venue, BalancerStableVenue)
    return venue.state(pool).balances


def quote_or_error(venue: Venue, t_in: str, t_out: str, amount: int, pool: str) -> int | str:
    try:
        q = venue.quote_exact_in(t_in, t_out, amount, pool=pool)
    except QuoteError as exc:
        return type(exc).__name__
    assert q is not None
    return q.amount_out


def by_name(venues: list[Venue], name: str) -> Venue:
    return next(v for v in venues if v.name == name)


async def send(env: Env, to: str, data: bytes, value: int = 0) -> str:
    tx = {"from": env.whale, "to": to, "data": "0x" + data.hex(), "gas": hex(GAS), "value": hex(value)}
    return str(await env.rpc.call("eth_sendTransaction", [tx]))


async def pending_swap(env: Env, tx_hash: str) -> PendingSwap:
    """The tx as the mempool collector sees it, through the pre-filter and the decoder."""
    obj = await env.rpc.call("eth_getTransactionByHash", [tx_hash])
    assert obj is not None and obj.get("blockNumber") is None, "the tx should still be pending"
    tx = decode_pending_tx(obj)
    assert env.decoder.wants(tx.to, tx.input) and env.decoder.tx_filter()(tx)
    swap = env.decoder.decode_pending(tx)
    assert swap is not None
    assert env.decoder.decode(obj) == swap
    assert swap.tx_hash.hex() == tx_hash[2:].lower()
    return swap


async def check_pending_swap(
    env: Env, to: str, data: bytes, value: int = 0
) -> tuple[PendingSwap, list[Quote]]:
    """Send, decode while pending, apply, mine, refresh: the applied venues equal the mined state."""
    head = await env.rpc.block_number()
    before = await env.venues(head)
    tx_hash = await send(env, to, data, value)
    swap = await pending_swap(env, tx_hash)
    result = apply_pending(before, swap)
    assert result is not None, explain_pending(before, swap)
    applied, quotes = result
    mined = await env.net.mine()
    assert mined == head + 1
    receipt = await env.rpc.call("eth_getTransactionReceipt", [tx_hash])
    assert receipt is not None and receipt["status"] == "0x1", receipt
    after = await env.venues(mined)

    for q in quotes:
        a, b = by_name(applied, q.venue), by_name(after, q.venue)
        assert pool_state(a, q.pool) == pool_state(b, q.pool), f"{q.venue} pool {q.pool}"
        for t_in, t_out, base in (
            (q.token_in, q.token_out, q.amount_in),
            (q.token_out, q.token_in, q.amount_out),
        ):
            for size in (base // 1000 + 1, base // 7 + 1, base):
                assert quote_or_error(a, t_in, t_out, size, q.pool) == quote_or_error(
                    b, t_in, t_out, size, q.pool
                )
    # untouched venues and pools are unchanged
    for v_before, v_applied in zip(before, applied, strict=True):
        if not any(q.venue == v_before.name for q in quotes):
            assert v_applied is v_before

    # what the tx really paid and received
    t_in, t_out = quotes[0].token_in, quotes[-1].token_out
    if value == 0:
        spent = await env.balance(t_in, head) - await env.balance(t_in, mined)
        assert spent == quotes[0].amount_in
    got = await env.balance(t_out, mined) - await env.balance(t_out, head)
    assert got == quotes[-1].amount_out
    if swap.exact_in:
        assert quotes[0].amount_in == swap.amount or quotes[0].amount_in < swap.amount  # V3 price limits
    else:
        assert quotes[-1].amount_out == swap.amount
    return swap, quotes


def v3_path(*items: str | int) -> bytes:
    return b"".join(
        item.to_bytes(3, "big") if isinstance(item, int) else bytes.fromhex(item[2:]) for item in items
    )


def pool_id(env: Env, name: str) -> bytes:
    return bytes.fromhex(env.dep.balancer.pools[name].pool_id[2:])


# ------------------------------------------------------------------------------------------ Uniswap V2


async def test_v2_exact_tokens_for_tokens_two_hops(snap: Env) -> None:
    env = snap
    weth, usdc, dai = env.token("WETH"), env.token("USDC"), env.token("DAI")
    data = SELECTORS["swapExactTokensForTokens"] + encode(
        V2_ARGS5, [150 * env.unit("WETH"), 1, [weth, usdc, dai], env.whale, DEADLINE]
    )
    swap, quotes = await check_pending_swap(env, env.dep.uniswap_v2.router, data)
    assert swap.exact_in and len(quotes) == 2
    assert [q.pool.lower() for q in quotes] == [
        env.dep.uniswap_v2.pairs["WETH/USDC"].lower(),
        env.dep.uniswap_v2.pairs["DAI/USDC"].lower(),
    ]


async def test_v2_tokens_for_exact_tokens(snap: Env) -> None:
    env = snap
    usdc, weth, wbtc = env.token("USDC"), env.token("WETH"), env.token("WBTC")
    want = 3 * env.unit("WBTC") + 12345
    data = SELECTORS["swapTokensForExactTokens"] + encode(
        V2_ARGS5, [want, 10**6 * env.unit("USDC"), [usdc, weth, wbtc], env.whale, DEADLINE]
    )
    swap, quotes = await check_pending_swap(env, env.dep.uniswap_v2.router, data)
    assert not swap.exact_in and quotes[-1].amount_out == want


async def test_v2_eth_for_exact_tokens(snap: Env) -> None:
    env = snap
    weth, usdt = env.token("WETH"), env.token("USDT")
    want = 25_000 * env.unit("USDT") + 1
    data = SELECTORS["swapETHForExactTokens"] + encode(V2_ARGS4, [want, [weth, usdt], env.whale, DEADLINE])
    swap, quotes = await check_pending_swap(env, env.dep.uniswap_v2.router, data, value=50 * 10**18)
    assert swap.limit == 50 * 10**18 and quotes[0].amount_in < swap.limit


async def test_v2_limit_violation_is_not_applied_and_reverts(snap: Env) -> None:
    env = snap
    weth, usdc = env.token("WETH"), env.token("USDC")
    head = await env.rpc.block_number()
    before = await env.venues(head)
    data = SELECTORS["swapExactTokensForTokens"] + encode(
        V2_ARGS5, [10**18, 10**6 * env.unit("USDC"), [weth, usdc], env.whale, DEADLINE]
    )
    tx_hash = await send(env, env.dep.uniswap_v2.router, data)
    swap = await pending_swap(env, tx_hash)
    assert apply_pending(before, swap) is None
    assert "amountOutMin" in str(explain_pending(before, swap))
    mined = await env.net.mine()
    receipt = await env.rpc.call("eth_getTransactionReceipt", [tx_hash])
    assert receipt is not None and receipt["status"] == "0x0"
    after = await env.venues(mined)
    pair = env.dep.uniswap_v2.pairs["WETH/USDC"]
    assert pool_state(before[0], pair) == pool_state(after[0], pair)


# ------------------------------------------------------------------------------------------ Uniswap V3


async def test_v3_exact_input_path_touches_a_peg_pool(snap: Env) -> None:
    env = snap
    weth, usdc, usdt = env.token("WETH"), env.token("USDC"), env.token("USDT")
    path = v3_path(weth, 500, usdc, 100, usdt)
    data = SELECTORS["exactInput"] + encode(
        [V3_PATH], [(path, env.whale, DEADLINE, 400 * env.unit("WETH"), 1)]
    )
    head = await env.rpc.block_number()
    peg_pool = env.dep.uniswap_v3.pools["USDC/USDT/100"]
    swap, quotes = await check_pending_swap(env, env.dep.uniswap_v3.swap_router, data)
    assert touches(await env.venues(head), swap, [peg_pool])
    assert not touches(await env.venues(head), swap, [env.dep.uniswap_v3.pools["DAI/USDC/100"]])
    assert [q.fee for q in quotes] == [500, 100]


async def test_v3_exact_output_single(snap: Env) -> None:
    env = snap
    weth, usdc = env.token("WETH"), env.token("USDC")
    want = 750_000 * env.unit("USDC") + 7
    params = (weth, usdc, 3000, env.whale, DEADLINE, want, 10**6 * env.unit("WETH"), 0)
    data = SELECTORS["exactOutputSingle"] + encode([V3_SINGLE], [params])
    swap, quotes = await check_pending_swap(env, env.dep.uniswap_v3.swap_router, data)
    assert not swap.exact_in and quotes[0].amount_out == want and quotes[0].fee == 3000


async def test_v3_multicall_exact_output_path(snap: Env) -> None:
    """multicall([exactOutput]) with the packed path reversed (tokenOut first): buy DAI with WETH via USDC."""
    env = snap
    weth, usdc, dai = env.token("WETH"), env.token("USDC"), env.token("DAI")
    want = 200_000 * env.unit("DAI") + 3
    inner = SELECTORS["exactOutput"] + encode(
        [V3_PATH], [(v3_path(dai, 100, usdc, 500, weth), env.whale, DEADLINE, want, 10**6 * env.unit("WETH"))]
    )
    data = SELECTORS["multicall"] + encode(["bytes[]"], [[inner]])
    swap, quotes = await check_pending_swap(env, env.dep.uniswap_v3.swap_router, data)
    assert [(q.token_in.lower(), q.token_out.lower()) for q in quotes] == [
        (weth.lower(), usdc.lower()),
        (usdc.lower(), dai.lower()),
    ]
    assert quotes[-1].amount_out == want


# ------------------------------------------------------------------------------------------ Balancer


async def test_balancer_swap_given_in(snap: Env) -> None:
    env = snap
    usdc, dai = env.token("USDC"), env.token("DAI")
    single = (pool_id(env, "USDC/USDT/DAI"), 0, usdc, dai, 1_500_000 * env.unit("USDC"), b"")
    funds = (env.whale, False, env.whale, False)
    data = SELECTORS["swap"] + encode(
        [SINGLE_SWAP, FUNDS, "uint256", "uint256"], [single, funds, 1, DEADLINE]
    )
    swap, quotes = await check_pending_swap(env, env.dep.balancer.vault, data)
    assert swap.exact_in and quotes[0].pool.lower() == env.dep.balancer.pools["USDC/USDT/DAI"].address.lower()


async def test_balancer_swap_given_out_rate_pool(snap: Env) -> None:
    """GIVEN_OUT on the wstETH/WETH pool (wstETH has a rate provider)."""
    env = snap
    weth, lst = env.token("WETH"), env.token("wstETH")
    single = (pool_id(env, "wstETH/WETH"), 1, weth, lst, 900 * env.unit("wstETH") + 5, b"")
    funds = (env.whale, False, env.whale, False)
    data = SELECTORS["swap"] + encode(
        [SINGLE_SWAP, FUNDS, "uint256", "uint256"], [single, funds, 10**6 * env.unit("WETH"), DEADLINE]
    )
    swap, quotes = await check_pending_swap(env, env.dep.balancer.vault, data)
    assert not swap.exact_in and quotes[0].amount_out == 900 * env.unit("wstETH") + 5


async def test_balancer_batch_swap_given_in_chain_through_one_pool_twice(snap: Env) -> None:
    env = snap
    usdc, usdt, dai = env.token("USDC"), env.token("USDT"), env.token("DAI")
    pid = pool_id(env, "USDC/USDT/DAI")
    steps = [(pid, 0, 1, 2_000_000 * env.unit("USDC"), b""), (pid, 1, 2, 0, b"")]
    funds = (env.whale, False, env.whale, False)
    data = SELECTORS["batchSwap"] + encode(
        ["uint8", f"{STEP}[]", "address[]", FUNDS, "int256[]", "uint256"],
        [0, steps, [usdc, usdt, dai], funds, [2_000_000 * env.unit("USDC"), 0, 0], DEADLINE],
    )
    swap, quotes = await check_pending_swap(env, env.dep.balancer.vault, data)
    assert len(quotes) == 2 and quotes[0].pool == quotes[1].pool


async def test_balancer_batch_swap_given_out_chain(snap: Env) -> None:
    env = snap
    usdc, usdt, dai = env.token("USDC"), env.token("USDT"), env.token("DAI")
    pid = pool_id(env, "USDC/USDT/DAI")
    want = 1_000_000 * env.unit("DAI") + 11
    # GIVEN_OUT: the first step buys the DAI with USDT, the second buys that USDT with USDC
    steps = [(pid, 1, 2, want, b""), (pid, 0, 1, 0, b"")]
    funds = (env.whale, False, env.whale, False)
    data = SELECTORS["batchSwap"] + encode(
        ["uint8", f"{STEP}[]", "address[]", FUNDS, "int256[]", "uint256"],
        [1, steps, [usdc, usdt, dai], funds, [2_000_000 * env.unit("USDC"), 0, -want], DEADLINE],
    )
    swap, quotes = await check_pending_swap(env, env.dep.balancer.vault, data)
    assert not swap.exact_in and quotes[-1].amount_out == want
    assert quotes[0].token_in.lower() == usdc.lower()


async def test_v2_fee_on_transfer_variant_and_eth_in(snap: Env) -> None:
    env = snap
    weth, dai, usdc = env.token("WETH"), env.token("DAI"), env.token("USDC")
    data = SELECTORS["swapExactTokensForTokensSupportingFeeOnTransferTokens"] + encode(
        V2_ARGS5, [300_000 * env.unit("DAI"), 1, [dai, usdc], env.whale, DEADLINE]
    )
    await check_pending_swap(env, env.dep.uniswap_v2.router, data)
    data = SELECTORS["swapExactETHForTokens"] + encode(V2_ARGS4, [1, [weth, dai], env.whale, DEADLINE])
    swap, quotes = await check_pending_swap(env, env.dep.uniswap_v2.router, data, value=77 * 10**18 + 1)
    assert swap.amount == quotes[0].amount_in == 77 * 10**18 + 1


async def test_v3_exact_input_single_with_price_limit_fills_partially(snap: Env) -> None:
    env = snap
    weth, usdc = env.token("WETH"), env.token("USDC")
    pool = env.dep.uniswap_v3.pools["WETH/USDC/500"]
    venue = UniswapV3Venue(env.v3_pools)
    await venue.refresh(env.rpc, await env.rpc.block_number())
    sqrt_price = venue.state(pool).sqrt_price_x96
    weth_is_token0 = venue.pool_info(pool).token0.lower() == weth.lower()
    # selling WETH lowers its price: token0 -> the sqrt price falls, token1 -> it rises
    limit = sqrt_price * 9990 // 10000 if weth_is_token0 else sqrt_price * 10010 // 10000
    amount = 50_000 * env.unit("WETH")  # far more than the 0.2% move to the limit takes
    params = (weth, usdc, 500, env.whale, DEADLINE, amount, 1, limit)
    data = SELECTORS["exactInputSingle"] + encode([V3_SINGLE], [params])
    swap, quotes = await check_pending_swap(env, env.dep.uniswap_v3.swap_router, data)
    assert swap.hops[0].sqrt_price_limit_x96 == limit
    assert 0 < quotes[0].amount_in < amount
    after = UniswapV3Venue(env.v3_pools)
    await after.refresh(env.rpc, await env.rpc.block_number())
    assert after.state(pool).sqrt_price_x96 == limit


def random_swap_call(env: Env, rng: random.Random) -> tuple[str, bytes, int]:
    """A random supported swap between devnet tokens, of a random size (dust to ~1% of a pool)."""
    sym = rng.choice
    me = env.whale
    r = rng.random()
    if r < 0.3:  # Router02 over one or two of the devnet pairs
        paths = [
            ["WETH", "USDC"],
            ["USDC", "WETH"],
            ["WETH", "USDC", "DAI"],
            ["DAI", "USDC", "USDT"],
            ["WBTC", "WETH", "USDT"],
            ["wstETH", "WETH"],
            ["USDT", "USDC"],
        ]
        path = sym(paths)
        tokens = [env.token(s) for s in path]
        if rng.random() < 0.6:
            amount = rng.randint(1, 20_000) * env.unit(path[0]) // 10
            name = sym(["swapExactTokensForTokens", "swapExactTokensForTokensSupportingFeeOnTransferTokens"])
            return (
                env.dep.uniswap_v2.router,
                SELECTORS[name] + encode(V2_ARGS5, [amount, 1, tokens, me, DEADLINE]),
                0,
            )
        want = rng.randint(1, 20_000) * env.unit(path[-1]) // 10 + rng.randint(0, 999)
        data = SELECTORS["swapTokensForExactTokens"] + encode(
            V2_ARGS5, [want, UINT256_MAX, tokens, me, DEADLINE]
        )
        return env.dep.uniswap_v2.router, data, 0
    if r < 0.7:  # SwapRouter over the devnet pools
        pools = [
            ("WETH", 500, "USDC"),
            ("WETH", 3000, "USDC"),
            ("WBTC", 3000, "WETH"),
            ("wstETH", 100, "WETH"),
            ("USDC", 100, "USDT"),
            ("DAI", 100, "USDC"),
        ]
        a, fee, b = sym(pools)
        if rng.random() < 0.5:
            a, b = b, a
        amount = rng.randint(1, 20_000) * env.unit(a) // 10 + rng.randint(0, 999)
        exact_in = rng.random() < 0.5
        if exact_in:
            params = (env.token(a), env.token(b), fee, me, DEADLINE, amount, 1, 0)
            data = SELECTORS["exactInputSingle"] + encode([V3_SINGLE], [params])
        else:
            want = rng.randint(1, 20_000) * env.unit(b) // 10 + rng.randint(0, 999)
            packed = v3_path(env.token(b), fee, env.token(a))
            data = SELECTORS["exactOutput"] + encode([V3_PATH], [(packed, me, DEADLINE, want, UINT256_MAX)])
        if rng.random() < 0.3:
            data = SELECTORS["multicall"] + encode(["bytes[]"], [[data]])
        return env.dep.uniswap_v3.swap_router, data, 0
    # the Vault, on the stable pool or the LST pool
    name = sym(["USDC/USDT/DAI", "wstETH/WETH"])
    a, b = rng.sample(name.split("/"), 2)
    kind = rng.randint(0, 1)
    amount = rng.randint(1, 20_000) * env.unit(a if kind == 0 else b) // 10 + rng.randint(0, 999)
    single = (pool_id(env, name), kind, env.token(a), env.token(b), amount, b"")
    funds = (me, False, me, False)
    limit = 0 if kind == 0 else UINT256_MAX
    data = SELECTORS["swap"] + encode(
        [SINGLE_SWAP, FUNDS, "uint256", "uint256"], [single, funds, limit, DEADLINE]
    )
    return env.dep.balancer.vault, data, 0


async def test_random_swaps_one_per_block(snap: Env) -> None:
    """Seeded random swaps through every router, each applied while pending and checked after its block."""
    env = snap
    rng = random.Random(0x8)
    kinds: dict[str, int] = {}
    for _ in range(30):
        to, data, value = random_swap_call(env, rng)
        swap, _ = await check_pending_swap(env, to, data, value)
        key = f"{swap.hops[0].protocol} {'in' if swap.exact_in else 'out'} x{len(swap.hops)}"
        kinds[key] = kinds.get(key, 0) + 1
    print("random pending swaps checked:", dict(sorted(kinds.items())))
