"""Uniswap V2 and V3 on a real anvil: deployments, seeded prices, and swaps that equal our exact math.

Tokens are Aave's mocks (WETH9Mocked, MintableERC20 with an open mint), deployed here so the test does
not depend on the devnet token module.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from math import isqrt

import pytest
from eth_abi.abi import decode

from keeper.chain import uniswap_v2_math as v2math
from keeper.chain import uniswap_v3_math as v3math
from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient
from keeper.devnet.anvil import DEV_ACCOUNTS, Anvil, AnvilConfig
from keeper.devnet.artifacts import load_artifact
from keeper.devnet.deployer import Deployer
from keeper.devnet.model import DEFAULT_LST_RATE, DEFAULT_PRICES_USD, TokenInfo
from keeper.devnet.uniswap import FAR_DEADLINE, PriceBook, balance_of, sort_tokens
from keeper.devnet.uniswap_v2 import (
    DEFAULT_V2_PAIRS,
    UniswapV2Deployment,
    deploy_uniswap_v2,
    get_reserves,
    pair_tokens,
)
from keeper.devnet.uniswap_v3 import (
    DEFAULT_V3_POOLS,
    SLOT0_TYPES,
    UniswapV3Deployment,
    deploy_uniswap_v3,
    plan_pool,
    read_pool_state,
)

pytestmark = pytest.mark.integration

MOCKS = "@aave/core-v3/artifacts/contracts/mocks/tokens"
EXACT_INPUT_SINGLE = "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
EXACT_OUTPUT_SINGLE = "exactOutputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
SWAP_PARAMS = ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"]
QUOTE_IN = "quoteExactInputSingle((address,address,uint256,uint24,uint160))"
QUOTE_OUT = "quoteExactOutputSingle((address,address,uint256,uint24,uint160))"
QUOTE_PARAMS = ["(address,address,uint256,uint24,uint160)"]
QUOTE_OUT_TYPES = ["uint256", "uint160", "uint32", "uint256"]


async def deploy_mock_tokens(d: Deployer) -> dict[str, TokenInfo]:
    weth = await d.deploy(load_artifact(f"{MOCKS}/WETH9Mocked.sol/WETH9Mocked.json"))
    tokens = {"WETH": TokenInfo("WETH", weth.address, 18)}
    mintable = load_artifact(f"{MOCKS}/MintableERC20.sol/MintableERC20.json")
    for symbol, decimals in (("USDC", 6), ("USDT", 6), ("DAI", 18), ("WBTC", 8), ("wstETH", 18)):
        dep = await d.deploy(mintable, symbol, symbol, decimals)
        tokens[symbol] = TokenInfo(symbol, dep.address, decimals)
    return tokens


@dataclass
class Devnet:
    rpc: RpcClient
    deployer: Deployer
    trader: Deployer
    tokens: dict[str, TokenInfo]
    v2: UniswapV2Deployment
    v3: UniswapV3Deployment
    timings: dict[str, float]

    async def give(self, symbol: str, amount: int) -> None:
        """Gives the trader `amount` of a token (WETH by wrapping the trader's ETH)."""
        tok = self.tokens[symbol]
        if symbol == "WETH":
            balance = await self.rpc.get_balance(self.trader.sender)
            await self.rpc.call("anvil_setBalance", [self.trader.sender, hex(balance + amount)])
            await self.trader.transact(tok.address, "deposit()", [], [], value=amount)
        else:
            await self.deployer.transact(
                tok.address, "mint(address,uint256)", ["address", "uint256"], [self.trader.sender, amount]
            )

    async def approve(self, symbol: str, spender: str, amount: int) -> None:
        await self.trader.transact(
            self.tokens[symbol].address, "approve(address,uint256)", ["address", "uint256"], [spender, amount]
        )

    async def balance(self, symbol: str) -> int:
        return await balance_of(self.deployer, self.tokens[symbol].address, self.trader.sender)


@pytest.fixture(scope="module")
async def devnet() -> AsyncIterator[Devnet]:
    timings: dict[str, float] = {}
    t = time.perf_counter()
    async with Anvil(AnvilConfig()) as node:
        timings["anvil"] = time.perf_counter() - t
        rpc = RpcClient(node.http_url, timeout=60)
        deployer = Deployer(rpc, DEV_ACCOUNTS[0][0])
        trader = Deployer(rpc, DEV_ACCOUNTS[1][0])
        t = time.perf_counter()
        tokens = await deploy_mock_tokens(deployer)
        timings["tokens"] = time.perf_counter() - t
        t = time.perf_counter()
        v2 = await deploy_uniswap_v2(deployer, tokens)
        timings["uniswap_v2"] = time.perf_counter() - t
        t = time.perf_counter()
        v3 = await deploy_uniswap_v3(deployer, tokens)
        timings["uniswap_v3"] = time.perf_counter() - t
        print("deploy timings (s):", {k: round(v, 3) for k, v in timings.items()})
        try:
            yield Devnet(rpc, deployer, trader, tokens, v2, v3, timings)
        finally:
            await rpc.close()


@pytest.fixture
async def net(devnet: Devnet) -> AsyncIterator[Devnet]:
    """The module's devnet, reverted to its deployed state after each test."""
    snap = await devnet.rpc.call("evm_snapshot")
    try:
        yield devnet
    finally:
        assert await devnet.rpc.call("evm_revert", [snap]) is True


# ---------------------------------------------------------------------------------------- records


def test_json_round_trip(devnet: Devnet) -> None:
    assert UniswapV2Deployment.from_json(devnet.v2.to_json()) == devnet.v2
    assert UniswapV3Deployment.from_json(devnet.v3.to_json()) == devnet.v3
    assert set(devnet.v2.pairs) == {p.name for p in DEFAULT_V2_PAIRS}
    assert set(devnet.v3.pools) == {p.name for p in DEFAULT_V3_POOLS}
    data = devnet.v3.to_json()
    assert data["pools"]["WETH/USDC/500"] == devnet.v3.pools["WETH/USDC/500"]
    assert all(addr.startswith("0x") and addr != addr.lower() for addr in data["pools"].values())


# ---------------------------------------------------------------------------------------- V2


async def test_v2_pairs_are_seeded_at_the_exact_prices(devnet: Devnet) -> None:
    prices = PriceBook.default()
    for spec in DEFAULT_V2_PAIRS:
        pair = devnet.v2.pairs[spec.name]
        a, b = devnet.tokens[spec.base], devnet.tokens[spec.quote]
        t0, _t1 = await pair_tokens(devnet.deployer, pair)
        r0, r1 = await get_reserves(devnet.deployer, pair)
        reserve_a, reserve_b = (r0, r1) if t0 == a.address else (r1, r0)
        ratio = prices.ratio(a, b)
        assert reserve_b * ratio.den == reserve_a * ratio.num, spec.name
        # depth: each side worth the spec's USD, to within one exact-price step
        value_a = reserve_a * DEFAULT_PRICES_USD[a.symbol] // 10**8 // 10**a.decimals
        assert spec.usd_per_side * 99 // 100 <= value_a <= spec.usd_per_side, spec.name
    # the LST pair uses the LST rate
    pair = devnet.v2.pairs["wstETH/WETH"]
    r0, r1 = await get_reserves(devnet.deployer, pair)
    t0, _ = await pair_tokens(devnet.deployer, pair)
    lst, weth = (r0, r1) if t0 == devnet.tokens["wstETH"].address else (r1, r0)
    assert weth * 10**18 == lst * DEFAULT_LST_RATE


async def test_v2_swap_equals_get_amount_out(net: Devnet) -> None:
    router = net.v2.router
    pair = net.v2.pairs["WETH/USDC"]
    weth, usdc = net.tokens["WETH"], net.tokens["USDC"]
    t0, _ = await pair_tokens(net.deployer, pair)
    r0, r1 = await get_reserves(net.deployer, pair)
    reserve_in, reserve_out = (r0, r1) if t0 == weth.address else (r1, r0)

    amount_in = 123_456_789_012_345_678_901  # ~123.46 WETH
    expected = v2math.get_amount_out(amount_in, reserve_in, reserve_out)
    (amounts,) = await net.deployer.call(
        router,
        "getAmountsOut(uint256,address[])",
        ["uint256", "address[]"],
        [amount_in, [weth.address, usdc.address]],
        ["uint256[]"],
    )
    assert list(amounts) == [amount_in, expected]

    await net.give("WETH", amount_in)
    await net.approve("WETH", router, amount_in)
    before = await net.balance("USDC")
    await net.trader.transact(
        router,
        "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
        ["uint256", "uint256", "address[]", "address", "uint256"],
        [amount_in, expected, [weth.address, usdc.address], net.trader.sender, FAR_DEADLINE],
    )
    assert await net.balance("USDC") - before == expected
    r0_after, r1_after = await get_reserves(net.deployer, pair)
    after_in, after_out = (r0_after, r1_after) if t0 == weth.address else (r1_after, r0_after)
    assert (after_in, after_out) == (reserve_in + amount_in, reserve_out - expected)


async def test_v2_multihop_and_amount_in(net: Devnet) -> None:
    router = net.v2.router
    path_syms = ["WBTC", "WETH", "USDC"]
    path = [net.tokens[s].address for s in path_syms]
    reserves: list[tuple[int, int]] = []
    for a, b in (("WBTC", "WETH"), ("WETH", "USDC")):
        pair = net.v2.pairs[f"{a}/{b}"]
        t0, _ = await pair_tokens(net.deployer, pair)
        r0, r1 = await get_reserves(net.deployer, pair)
        reserves.append((r0, r1) if t0 == net.tokens[a].address else (r1, r0))

    amount_in = 25 * 10**8 + 12345  # 25.00012345 WBTC
    expected = v2math.get_amounts_out(amount_in, reserves)
    want_out = 100_000 * 10**6
    expected_in = v2math.get_amounts_in(want_out, reserves)
    (amounts_in,) = await net.deployer.call(
        router, "getAmountsIn(uint256,address[])", ["uint256", "address[]"], [want_out, path], ["uint256[]"]
    )
    assert list(amounts_in) == expected_in

    await net.give("WBTC", amount_in)
    await net.approve("WBTC", router, amount_in)
    before = await net.balance("USDC")
    await net.trader.transact(
        router,
        "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
        ["uint256", "uint256", "address[]", "address", "uint256"],
        [amount_in, 0, path, net.trader.sender, FAR_DEADLINE],
    )
    assert await net.balance("USDC") - before == expected[-1]


# ---------------------------------------------------------------------------------------- V3


def _pool_tokens(net: Devnet, name: str) -> tuple[TokenInfo, TokenInfo, int]:
    base, quote, fee = name.split("/")
    t0, t1 = sort_tokens(net.tokens[base], net.tokens[quote])
    return t0, t1, int(fee)


async def test_v3_pools_start_at_the_exact_prices(devnet: Devnet) -> None:
    prices = PriceBook.default()
    for spec in DEFAULT_V3_POOLS:
        pool = devnet.v3.pools[spec.name]
        t0, t1, _fee = _pool_tokens(devnet, spec.name)
        state = await read_pool_state(devnet.rpc, pool)
        ratio = prices.ratio(t0, t1)
        # sqrtPriceX96 is the floor of sqrt(price) * 2^96: p^2 <= price * 2^192 < (p + 1)^2
        p = state.sqrt_price_x96
        assert p * p * ratio.den <= ratio.num << 192 < (p + 1) * (p + 1) * ratio.den, spec.name
        assert state.tick == v3math.get_tick_at_sqrt_ratio(p)
        # the centered bands plus one position above and one below the price, each two distinct ticks
        plan = plan_pool(spec, devnet.tokens, prices)
        assert len(plan.positions) == len(spec.bands) + 2
        assert set(state.liquidity_net) == {t for p in plan.positions for t in (p.tick_lower, p.tick_upper)}
        assert len(state.liquidity_net) == 2 * len(plan.positions), spec.name
        assert sum(state.liquidity_net.values()) == 0
        assert all(t % state.tick_spacing == 0 for t in state.liquidity_net)
        assert state.fee == spec.fee and state.tick_spacing == v3math.FEE_TICK_SPACING[spec.fee]


def _amount_crossing_ticks(state: v3math.PoolState, zero_for_one: bool, start: int, crossings: int) -> int:
    """Smallest start * 2^k whose exact-input swap crosses at least `crossings` initialized ticks."""
    amount = start
    while True:
        result = v3math.swap(state, zero_for_one, amount)
        if result.ticks_crossed >= crossings:
            return amount
        amount *= 2


async def _quote(net: Devnet, sig: str, params: tuple[object, ...]) -> tuple[int, int, int, int]:
    raw = await net.rpc.eth_call(net.v3.quoter_v2, encode_call(sig, QUOTE_PARAMS, [params]))
    out = decode(QUOTE_OUT_TYPES, raw)
    return int(out[0]), int(out[1]), int(out[2]), int(out[3])


@pytest.mark.parametrize("zero_for_one", [True, False], ids=["0for1", "1for0"])
@pytest.mark.parametrize("name", [p.name for p in DEFAULT_V3_POOLS])
async def test_v3_exact_input_equals_quoter_and_python(net: Devnet, name: str, zero_for_one: bool) -> None:
    pool = net.v3.pools[name]
    t0, t1, fee = _pool_tokens(net, name)
    token_in, token_out = (t0, t1) if zero_for_one else (t1, t0)
    state = await read_pool_state(net.rpc, pool)

    # big enough to leave the concentrated range: crosses at least one initialized tick
    start = PriceBook.default().amount_for_usd(token_in, 10_000) + 7
    amount_in = _amount_crossing_ticks(state, zero_for_one, start, 1)
    predicted = v3math.swap(state, zero_for_one, amount_in)
    assert predicted.ticks_crossed >= 1
    expected_out = v3math.quote_exact_input_single(state, zero_for_one, amount_in)

    quoted, sqrt_after, _ticks, _gas = await _quote(
        net, QUOTE_IN, (token_in.address, token_out.address, amount_in, fee, 0)
    )
    assert quoted == expected_out
    assert sqrt_after == predicted.sqrt_price_x96

    await net.give(token_in.symbol, amount_in)
    await net.approve(token_in.symbol, net.v3.swap_router, amount_in)
    before = await net.balance(token_out.symbol)
    await net.trader.transact(
        net.v3.swap_router,
        EXACT_INPUT_SINGLE,
        SWAP_PARAMS,
        [
            (
                token_in.address,
                token_out.address,
                fee,
                net.trader.sender,
                FAR_DEADLINE,
                amount_in,
                expected_out,
                0,
            )
        ],
    )
    assert await net.balance(token_out.symbol) - before == expected_out
    assert await net.balance(token_in.symbol) == 0

    after = await read_pool_state(net.rpc, pool)
    assert (after.sqrt_price_x96, after.tick, after.liquidity) == (
        predicted.sqrt_price_x96,
        predicted.tick,
        predicted.liquidity,
    )


async def test_v3_exact_output_and_a_second_swap_from_the_new_state(net: Devnet) -> None:
    name = "WETH/USDC/500"
    pool = net.v3.pools[name]
    t0, t1, fee = _pool_tokens(net, name)
    weth, usdc = net.tokens["WETH"], net.tokens["USDC"]
    zero_for_one = t0 == weth  # selling WETH
    state = await read_pool_state(net.rpc, pool)

    # an output that takes the price below the concentrated range
    amount_in = _amount_crossing_ticks(state, zero_for_one, 10**18 + 7, 1)
    want_usdc = v3math.quote_exact_input_single(state, zero_for_one, amount_in) - 12345
    needed = v3math.quote_exact_output_single(state, zero_for_one, want_usdc)
    predicted = v3math.swap(state, zero_for_one, -want_usdc)
    assert predicted.ticks_crossed >= 1
    quoted_in, sqrt_after, _ticks, _gas = await _quote(
        net, QUOTE_OUT, (weth.address, usdc.address, want_usdc, fee, 0)
    )
    assert quoted_in == needed
    assert sqrt_after == predicted.sqrt_price_x96

    await net.give("WETH", needed)
    await net.approve("WETH", net.v3.swap_router, needed)
    await net.trader.transact(
        net.v3.swap_router,
        EXACT_OUTPUT_SINGLE,
        SWAP_PARAMS,
        [(weth.address, usdc.address, fee, net.trader.sender, FAR_DEADLINE, want_usdc, needed, 0)],
    )
    assert await net.balance("USDC") == want_usdc
    assert await net.balance("WETH") == 0

    # the state predicted locally is the pool's new state: quote the way back from it without reading
    local = predicted.state_after(state)
    onchain = await read_pool_state(net.rpc, pool)
    assert (local.sqrt_price_x96, local.tick, local.liquidity) == (
        onchain.sqrt_price_x96,
        onchain.tick,
        onchain.liquidity,
    )
    back = v3math.quote_exact_input_single(local, not zero_for_one, want_usdc)
    quoted_back, *_ = await _quote(net, QUOTE_IN, (usdc.address, weth.address, want_usdc, fee, 0))
    assert quoted_back == back


async def test_v3_bounded_state_read(devnet: Devnet) -> None:
    pool = devnet.v3.pools["USDC/USDT/100"]
    full = await read_pool_state(devnet.rpc, pool)
    near = await read_pool_state(devnet.rpc, pool, words_each_side=1)
    assert near.word_bounds == (-1, 1)
    # only the ticks in words -1..1 (ticks -256..511 at spacing 1); full-range ones are far away
    spec = next(p for p in DEFAULT_V3_POOLS if p.name == "USDC/USDT/100")
    plan = plan_pool(spec, devnet.tokens, PriceBook.default())
    planned = {t for p in plan.positions for t in (p.tick_lower, p.tick_upper)}
    assert set(near.liquidity_net) == {t for t in planned if -256 <= t < 512}
    assert set(full.liquidity_net) == planned
    t0, _t1, _fee = _pool_tokens(devnet, "USDC/USDT/100")
    small = 1_000_000 * 10**t0.decimals
    assert v3math.quote_exact_input_single(near, True, small) == v3math.quote_exact_input_single(
        full, True, small
    )
    with pytest.raises(v3math.UniswapV3MathError, match="outside the words read"):
        v3math.swap(near, True, 10**30)


async def test_v3_slot0_layout(devnet: Devnet) -> None:
    """The pool's slot0 decodes with SLOT0_TYPES and the pool is unlocked (no swap in progress)."""
    raw = await devnet.rpc.eth_call(devnet.v3.pools["WBTC/WETH/3000"], encode_call("slot0()", [], []))
    slot0 = decode(SLOT0_TYPES, raw)
    assert slot0[6] is True and slot0[0] > 0


def _impact_bps(before: int, after: int) -> int:
    """Price change between two sqrtPriceX96 values, in bps (floored)."""
    return abs(after * after - before * before) * 10_000 // (before * before)


async def test_v3_depth_follows_mainnet_ratios(net: Devnet) -> None:
    """A $1.8M WETH sale (the size of a large liquidation's collateral) moves the main WETH/USDC pool by
    tenths of a percent, at the start and after the price fell 25% (the crash scenario's move)."""
    name = "WETH/USDC/500"
    pool = net.v3.pools[name]
    t0, t1, fee = _pool_tokens(net, name)
    weth, usdc = net.tokens["WETH"], net.tokens["USDC"]
    zero_for_one = t0 == weth
    sale = PriceBook.default().amount_for_usd(weth, 1_800_000)  # 900 WETH at $2,000
    state = await read_pool_state(net.rpc, pool)
    quoted, sqrt_after, _ticks, _gas = await _quote(net, QUOTE_IN, (weth.address, usdc.address, sale, fee, 0))
    assert quoted == v3math.quote_exact_input_single(state, zero_for_one, sale)
    at_start = _impact_bps(state.sqrt_price_x96, sqrt_after)

    # take the pool 25% down with a real swap (price limit = 75% of the price), then quote the sale again
    target = state.sqrt_price_x96 * isqrt(75 * 10**16) // 10**9
    if not zero_for_one:
        target = state.sqrt_price_x96 * 10**9 // isqrt(75 * 10**16)
    big = 10**9 * 10**18
    await net.give("WETH", big)
    await net.approve("WETH", net.v3.swap_router, big)
    await net.trader.transact(
        net.v3.swap_router,
        EXACT_INPUT_SINGLE,
        SWAP_PARAMS,
        [(weth.address, usdc.address, fee, net.trader.sender, FAR_DEADLINE, big, 0, target)],
    )
    crashed = await read_pool_state(net.rpc, pool)
    assert crashed.sqrt_price_x96 == target
    sale_after = sale * 4 // 3  # $1.8M at $1,500
    _q, sqrt_after_crash, _t, _g = await _quote(
        net, QUOTE_IN, (weth.address, usdc.address, sale_after, fee, 0)
    )
    after_crash = _impact_bps(crashed.sqrt_price_x96, sqrt_after_crash)

    reserve_weth, reserve_usdc = await get_reserves(net.deployer, net.v2.pairs["WETH/USDC"])
    if int(weth.address, 16) > int(usdc.address, 16):
        reserve_weth, reserve_usdc = reserve_usdc, reserve_weth
    out = v2math.get_amount_out(sale, reserve_weth, reserve_usdc)
    v2_bps = 10_000 - (reserve_usdc - out) * reserve_weth * 10_000 // ((reserve_weth + sale) * reserve_usdc)
    print(
        f"\n$1.8M WETH->USDC price impact: {name} {at_start} bps at the start, {after_crash} bps after -25%; "
        f"V2 WETH/USDC {v2_bps} bps"
    )
    assert at_start <= 25
    assert after_crash <= 60
    assert v2_bps <= 800
