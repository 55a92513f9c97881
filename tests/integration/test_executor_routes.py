"""LiquidationExecutor selling seized collateral on Balancer V2 and on Mixed (split, multi-venue) routes.

One devnet for the module (the same scenario as test_executor_contract.py: borrowers, ETH -25%, WBTC -50%,
an executor with the devnet's Balancer Vault). Every sale is checked to the wei against the Python venues
(strategies/venues: Uniswap V3, Uniswap V2, Balancer stable pools) at the pre-transaction state, with a
Mixed route split exactly as the contract splits it and each hop valued after the ones before it (two legs
through the same pool see each other's effect). The executor ends every call holding nothing.

The helpers `load_venues` / `venue_quote` are shared with test_executor_arbitrage.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from keeper.chain.abi import encode_call
from keeper.chain.rpc import hex_to_int
from keeper.devnet.scenarios.positions import AAVE_V3
from keeper.devnet.stack import Devnet
from keeper.devnet.tokens import next_epoch_round, send_price_update
from keeper.executors.executor_contract import (
    LIQUIDATE_SELECTOR,
    PARAMS_TUPLE,
    BalancerRoute,
    HopRoute,
    LiquidationParams,
    MixedRoute,
    Route,
    RouteLeg,
    V2Route,
    V3Route,
    Venue,
    decode_liquidate,
    encode_liquidate,
)
from strategies.venues.balancer_stable import BalancerStableVenue, load_stable_pools
from strategies.venues.base import Quote, RouteKind
from strategies.venues.router import best_route
from strategies.venues.uniswap_v2 import UniswapV2Venue, load_v2_pairs
from strategies.venues.uniswap_v3 import UniswapV3Venue, load_v3_pools
from tests.integration.test_executor_contract import (
    COINBASE,
    WAD,
    Env,
    Target,
    assert_executor_clean,
    balance_of,
    call_uint,
    head,
    liquidate_and_check,
    make_env,
    mined_revert,
    revert_error,
    send,
)

pytestmark = pytest.mark.integration

ROUTE_GAS: dict[str, int] = {}

USDC_BORROWER = to_checksum_address("0x" + keccak(b"keeper-test-usdc-borrower").hex()[:40])
V3_WORDS_EACH_SIDE = 20


# --- the Python venues --------------------------------------------------------------------------------


@dataclass
class Venues:
    """The devnet's pools as the strategies see them, at one block; `apply` moves them along."""

    v3: UniswapV3Venue
    v2: UniswapV2Venue
    balancer: BalancerStableVenue

    def apply(self, q: Quote) -> None:
        if q.venue == self.v3.name:
            self.v3 = self.v3.apply(q)
        elif q.venue == self.v2.name:
            self.v2 = self.v2.apply(q)
        else:
            self.balancer = self.balancer.apply(q)


async def load_venues(env: Env, block: int, *, swap_time_offset: int = 1) -> Venues:
    """Every Uniswap V3 pool, V2 pair and Balancer stable pool of the devnet, refreshed at `block`;
    Balancer quotes are for a swap `swap_time_offset` seconds after that block (its rate caches)."""
    rpc, dep = env.rpc, env.dep
    v3 = UniswapV3Venue(
        await load_v3_pools(rpc, dep.uniswap_v3.pools.values(), block), words_each_side=V3_WORDS_EACH_SIDE
    )
    v2 = UniswapV2Venue(await load_v2_pairs(rpc, dep.uniswap_v2.pairs.values(), block=block))
    pools = [p.address for p in dep.balancer.pools.values()]
    balancer = BalancerStableVenue(
        await load_stable_pools(rpc, dep.balancer.vault, pools, block), swap_time_offset=swap_time_offset
    )
    for venue in (v3, v2, balancer):
        await venue.refresh(rpc, block)
    return Venues(v3, v2, balancer)


def _v3_pool(vs: Venues, token_in: str, token_out: str, fee: int) -> str:
    for pool in vs.v3.pools(token_in, token_out):
        if vs.v3.pool_info(pool).fee == fee:
            return pool
    raise AssertionError(f"no V3 pool {token_in}/{token_out}/{fee}")


def _hop_quote(vs: Venues, hop: HopRoute, amount: int) -> int:
    """Sells `amount` along one single-venue route, each swap applied before the next."""
    for i in range(len(hop.tokens) - 1):
        t_in, t_out = hop.tokens[i], hop.tokens[i + 1]
        q: Quote | None
        if isinstance(hop, V3Route):
            q = vs.v3.quote_exact_in(t_in, t_out, amount, pool=_v3_pool(vs, t_in, t_out, hop.fees[i]))
        elif isinstance(hop, V2Route):
            q = vs.v2.quote_exact_in(t_in, t_out, amount)
        else:
            pool = hop.pool_ids[i][:42]  # a Balancer pool id starts with the pool's address
            q = vs.balancer.quote_exact_in(t_in, t_out, amount, pool=pool)
        assert q is not None, (hop, i)
        vs.apply(q)
        amount = q.amount_out
    return amount


def route_quote(vs: Venues, route: Route, amount: int) -> int:
    """What the contract receives for `amount` along `route`: a Mixed route split as the contract splits
    it (floor per leg, remainder to the last), legs in order, every swap applied to its pool."""
    if isinstance(route, MixedRoute):
        return sum(_run_leg(vs, leg, part) for leg, part in zip(route.legs, route.split(amount), strict=True))
    return _hop_quote(vs, route, amount)


def _run_leg(vs: Venues, leg: RouteLeg, amount: int) -> int:
    for hop in leg.hops:
        amount = _hop_quote(vs, hop, amount)
    return amount


async def venue_quote(env: Env, route: Route, amount: int, block: int) -> int:
    """`Quoter` for liquidate_and_check: the Python venues at `block`."""
    return route_quote(await load_venues(env, block), route, amount)


def pool_id(env: Env, name: str) -> str:
    return env.dep.balancer.pools[name].pool_id


# --- fixtures ------------------------------------------------------------------------------------------


async def add_usdc_borrower(env: Env) -> Target:
    """A fresh Aave V3 account: USDC collateral, USDT debt at its borrowing limit; then USDC's oracle price
    drops 10% (a real transmit), so the position is liquidatable and its collateral sells on the
    USDC/USDT/DAI Balancer pool."""
    rpc, dep = env.rpc, env.dep
    usdc, usdt, pool = env.sym("USDC"), env.sym("USDT"), dep.aave_v3.pool
    user = USDC_BORROWER
    await rpc.call("anvil_impersonateAccount", [user])
    await rpc.call("anvil_setBalance", [user, hex(WAD)])
    supplied = 100_000 * 10**6
    mint = encode_call("mint(address,uint256)", ["address", "uint256"], [user, supplied])
    assert (await send(env, env.attacker, usdc, mint))["status"] == "0x1"
    approve = encode_call("approve(address,uint256)", ["address", "uint256"], [pool, supplied])
    assert (await send(env, user, usdc, approve))["status"] == "0x1"
    supply = encode_call(
        "supply(address,uint256,address,uint16)",
        ["address", "uint256", "address", "uint16"],
        [usdc, supplied, user, 0],
    )
    assert (await send(env, user, pool, supply))["status"] == "0x1"
    data = await rpc.eth_call(pool, encode_call("getUserAccountData(address)", ["address"], [user]))
    available_base = int(decode(["uint256"] * 6, data)[2])
    price_usdt = await call_uint(rpc, dep.aave_v3.oracle, "getAssetPrice(address)", ["address"], [usdt])
    borrowed = available_base * 10**6 // price_usdt * 99 // 100
    borrow = encode_call(
        "borrow(address,uint256,uint256,uint16,address)",
        ["address", "uint256", "uint256", "uint16", "address"],
        [usdt, borrowed, 2, 0, user],
    )
    assert (await send(env, user, pool, borrow))["status"] == "0x1"
    feed = dep.feeds.usd["USDC"]
    (answer,) = decode(["int256"], await rpc.eth_call(feed, encode_call("latestAnswer()", [], [])))
    await send_price_update(
        rpc,
        feed,
        int(answer) * 9 // 10,
        transmitter=dep.feeds.transmitter,
        epoch_round=await next_epoch_round(rpc, feed),
    )
    await env.net.mine()
    data = await rpc.eth_call(pool, encode_call("getUserAccountData(address)", ["address"], [user]))
    health_factor = int(decode(["uint256"] * 6, data)[5])
    assert health_factor < WAD
    owed = await balance_of(rpc, dep.aave_v3.reserves["USDT"].variable_debt_token, user)
    return Target(AAVE_V3, user, usdc, usdt, health_factor, owed)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    async with Devnet(block_time=None) as net:
        rpc, dep = net.require()
        e = await make_env(net, rpc, dep)
        e.targets["v3-usdc-usdt"] = await add_usdc_borrower(e)
        yield e
        if ROUTE_GAS:
            print("\nLiquidationExecutor gas used (routes):", ROUTE_GAS)


@pytest.fixture
async def e(env: Env) -> AsyncIterator[Env]:
    snap = await env.rpc.call("evm_snapshot")
    await env.rpc.call("anvil_setCoinbase", [COINBASE])
    try:
        yield env
    finally:
        assert await env.rpc.call("evm_revert", [snap]) is True


def params(
    e: Env, case: str, route: Route, coinbase_route: V3Route | None, max_block: int
) -> LiquidationParams:
    t = e.targets[case]
    return LiquidationParams(
        lending_pool=e.dep.aave_v3.pool,
        collateral=t.collateral,
        debt=t.debt,
        user=t.user,
        debt_to_cover=t.debt_balance // 2,
        route=route,
        min_profit=1,
        coinbase_bps=3_000,
        coinbase_route=coinbase_route,
        max_block=max_block,
    )


def usdt_to_weth(e: Env) -> V3Route:
    return V3Route((e.sym("USDT"), e.sym("USDC"), e.sym("WETH")), (100, 500))


def mixed_weth_usdt(e: Env) -> MixedRoute:
    """WETH -> USDT in two legs: 60% V3 WETH->USDC then V2 USDC->USDT, 40% V3 WETH->USDC (the same pool,
    after the first leg) then Balancer USDC->USDT."""
    weth, usdc, usdt = e.sym("WETH"), e.sym("USDC"), e.sym("USDT")
    stable = pool_id(e, "USDC/USDT/DAI")
    return MixedRoute(
        (
            RouteLeg(6_000, (V3Route((weth, usdc), (500,)), V2Route((usdc, usdt)))),
            RouteLeg(4_000, (V3Route((weth, usdc), (500,)), BalancerRoute((usdc, usdt), (stable,)))),
        )
    )


# --- tests ---------------------------------------------------------------------------------------------


async def test_liquidation_sold_on_balancer(e: Env) -> None:
    """USDC collateral -> USDT debt through the Vault's `swap` on the USDC/USDT/DAI stable pool."""
    route = BalancerRoute((e.sym("USDC"), e.sym("USDT")), (pool_id(e, "USDC/USDT/DAI"),))
    p = params(e, "v3-usdc-usdt", route, usdt_to_weth(e), await head(e) + 1)
    assert decode_liquidate(encode_liquidate(p)).route == route
    ev, gas = await liquidate_and_check(e, p, e.owner, quote=venue_quote)
    assert ev.coinbase_paid > 0
    ROUTE_GAS["v3-usdc-usdt (Balancer, 1 hop)"] = gas


async def test_liquidation_sold_on_a_two_hop_balancer_route(e: Env) -> None:
    """USDC -> DAI -> USDT through one `batchSwap` (the second step's amount 0: the first one's output)."""
    stable = pool_id(e, "USDC/USDT/DAI")
    route = BalancerRoute((e.sym("USDC"), e.sym("DAI"), e.sym("USDT")), (stable, stable))
    p = params(e, "v3-usdc-usdt", route, usdt_to_weth(e), await head(e) + 1)
    _, gas = await liquidate_and_check(e, p, e.owner, quote=venue_quote)
    ROUTE_GAS["v3-usdc-usdt (Balancer batchSwap, 2 hops)"] = gas


async def test_liquidation_sold_on_a_mixed_split_route(e: Env) -> None:
    route = mixed_weth_usdt(e)
    p = params(e, "v3-weth-usdt", route, usdt_to_weth(e), await head(e) + 1)
    assert decode_liquidate(encode_liquidate(p)).route == route
    ev, gas = await liquidate_and_check(e, p, e.owner, quote=venue_quote)
    # The split is the contract's: the Python quote of each leg alone (in order) sums to the sale.
    vs = await load_venues(e, await head(e) - 1)
    parts = route.split(ev.collateral_seized)
    assert parts[0] == ev.collateral_seized * 6_000 // 10_000 and sum(parts) == ev.collateral_seized
    assert route_quote(vs, route, ev.collateral_seized) == ev.swap_out
    ROUTE_GAS["v3-weth-usdt (mixed: 2 legs, 4 hops)"] = gas


async def test_mixed_route_total_min_out(e: Env) -> None:
    """min_out binds the legs' summed output (InsufficientOutput); equal to it: the same sale."""
    route = mixed_weth_usdt(e)
    p = params(e, "v3-weth-usdt", route, usdt_to_weth(e), await head(e) + 1)
    timestamp = hex_to_int((await e.rpc.call("eth_getBlockByNumber", ["latest", False]))["timestamp"]) + 12
    snap = await e.rpc.call("evm_snapshot")
    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    ev, _ = await liquidate_and_check(e, p, e.owner, quote=venue_quote)
    assert await e.rpc.call("evm_revert", [snap]) is True
    snap = await e.rpc.call("evm_snapshot")
    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    receipt = await send(e, e.owner, e.executor, encode_liquidate(replace(p, min_out=ev.swap_out + 1)))
    assert await mined_revert(e, receipt) == ("InsufficientOutput", (ev.swap_out, ev.swap_out + 1))
    assert await e.rpc.call("evm_revert", [snap]) is True
    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    ev2, _ = await liquidate_and_check(e, replace(p, min_out=ev.swap_out), e.owner, quote=venue_quote)
    assert ev2 == ev


async def test_balancer_min_out_is_the_vault_limit(e: Env) -> None:
    route = BalancerRoute((e.sym("USDC"), e.sym("USDT")), (pool_id(e, "USDC/USDT/DAI"),))
    p = params(e, "v3-usdc-usdt", route, usdt_to_weth(e), await head(e) + 1)
    snap = await e.rpc.call("evm_snapshot")
    ev, _ = await liquidate_and_check(e, p, e.owner, quote=venue_quote)
    assert await e.rpc.call("evm_revert", [snap]) is True
    receipt = await send(e, e.owner, e.executor, encode_liquidate(replace(p, min_out=ev.swap_out + 1)))
    assert receipt["status"] == "0x0"
    trace = await e.rpc.call("debug_traceTransaction", [receipt["transactionHash"], {"tracer": "callTracer"}])
    assert "BAL#507" in str(trace)  # SWAP_LIMIT
    await assert_executor_clean(e)


async def test_bad_routes_revert(e: Env) -> None:
    """Malformed Balancer and Mixed routes are refused (BadPath) before any loan; raw tuples bypass the
    Python-side validation."""
    s = e.sym
    weth, usdc, usdt, dai = s("WETH"), s("USDC"), s("USDT"), s("DAI")
    stable = pool_id(e, "USDC/USDT/DAI")
    p = params(e, "v3-weth-usdt", mixed_weth_usdt(e), usdt_to_weth(e), await head(e) + 1)
    base = list(p.abi_tuple())

    def raw(venue: int, path: bytes) -> bytes:
        t = list(base)
        t[6], t[7] = venue, path
        return LIQUIDATE_SELECTOR + encode([PARAMS_TUPLE], [tuple(t)])

    def mixed(*legs: tuple[int, list[tuple[int, bytes]]]) -> bytes:
        return encode(["(uint16,(uint8,bytes)[])[]"], [list(legs)])

    v3 = (int(Venue.UNISWAP_V3), V3Route((weth, usdc), (500,)).encode())
    v2 = (int(Venue.UNISWAP_V2), V2Route((usdc, usdt)).encode())
    bal = (int(Venue.BALANCER_V2), BalancerRoute((usdc, usdt), (stable,)).encode())
    direct_v2 = (int(Venue.UNISWAP_V2), V2Route((weth, usdt)).encode())
    bad = [
        raw(int(Venue.BALANCER_V2), BalancerRoute((usdc, usdt), (stable,)).encode()),  # starts at USDC
        raw(int(Venue.BALANCER_V2), BalancerRoute((weth, usdc), (stable,)).encode()[:-1]),  # truncated
        raw(int(Venue.MIXED), mixed((6_000, [v3, v2]), (3_000, [direct_v2]))),  # 9000 bps
        raw(int(Venue.MIXED), mixed((6_000, [v3, v2]), (5_000, [direct_v2]))),  # 11000 bps
        raw(int(Venue.MIXED), mixed((10_000, [v3, v2]), (0, [direct_v2]))),  # an empty (0 bps) leg
        raw(int(Venue.MIXED), mixed((10_000, [v3, v2]), (0, []))),  # a leg without hops
        raw(int(Venue.MIXED), mixed((10_000, [v3]))),  # ends at USDC, not USDT
        raw(int(Venue.MIXED), mixed((10_000, [v2, v3]))),  # starts at USDC
        raw(int(Venue.MIXED), mixed((10_000, [v3, (int(Venue.UNISWAP_V2), V2Route((dai, usdt)).encode())]))),
        raw(int(Venue.MIXED), mixed((10_000, [v3, (int(Venue.MIXED), b"")]))),  # a Mixed hop
        raw(int(Venue.MIXED), mixed((10_000, [v3, (0, bal[1])]))),  # an Invalid hop
        raw(int(Venue.MIXED), mixed()),  # no legs
    ]
    for data in bad:
        assert await revert_error(e, e.owner, e.executor, data) == ("BadPath", ())
    # Python refuses the same shapes.
    with pytest.raises(ValueError):
        MixedRoute((RouteLeg(6_000, (V3Route((weth, usdc), (500,)), V2Route((usdc, usdt)))),))
    with pytest.raises(ValueError):
        RouteLeg(10_000, (V3Route((weth, usdc), (500,)), V2Route((dai, usdt))))
    with pytest.raises(ValueError):
        RouteLeg(0, (V2Route((weth, usdt)),))
    await assert_executor_clean(e)


async def test_no_vault_refuses_balancer_routes(e: Env) -> None:
    """An executor deployed without a Vault (zero) refuses Balancer paths, alone or inside a Mixed route,
    and still runs Uniswap ones."""
    from keeper.devnet.deployer import Deployer
    from keeper.executors.executor_contract import deploy_executor

    dep = e.dep
    await e.rpc.call("evm_setAutomine", [True])
    try:
        bare = await deploy_executor(
            Deployer(e.rpc, dep.accounts["deployer"]),
            e.owner,
            None,
            flash_pool=dep.aave_v3.pool,
            router_v3=dep.uniswap_v3.swap_router,
            router_v2=dep.uniswap_v2.router,
            weth=dep.tokens["WETH"].address,
            pools={dep.aave_v3.pool: dep.aave_v3.oracle},
        )
    finally:
        await e.rpc.call("evm_setAutomine", [False])
    assert int(decode(["address"], await e.rpc.eth_call(bare, encode_call("balancerVault()")))[0], 16) == 0
    route = BalancerRoute((e.sym("USDC"), e.sym("USDT")), (pool_id(e, "USDC/USDT/DAI"),))
    p = params(e, "v3-usdc-usdt", route, usdt_to_weth(e), await head(e) + 1)
    assert await revert_error(e, e.owner, bare, encode_liquidate(p)) == ("BadPath", ())
    p = params(e, "v3-weth-usdt", mixed_weth_usdt(e), usdt_to_weth(e), await head(e) + 1)
    assert await revert_error(e, e.owner, bare, encode_liquidate(p)) == ("BadPath", ())
    bare_env = replace(e, executor=bare)
    leg = RouteLeg(
        10_000, (V3Route((e.sym("WETH"), e.sym("USDC")), (500,)), V2Route((e.sym("USDC"), e.sym("USDT"))))
    )
    p = params(e, "v3-weth-usdt", MixedRoute((leg,)), usdt_to_weth(e), await head(e) + 1)
    await liquidate_and_check(bare_env, p, e.owner, quote=venue_quote)


def test_route_round_trips() -> None:
    """Every route kind encodes and decodes to itself (the unit tests cover the layouts)."""
    a, b, c = ("0x" + h * 20 for h in ("11", "22", "33"))
    pid = "0x" + "ab" * 32
    routes: list[Any] = [
        BalancerRoute((a, b), (pid,)),
        MixedRoute((RouteLeg(10_000, (V3Route((a, b), (500,)), BalancerRoute((b, c), (pid,)))),)),
    ]
    for route in routes:
        p = LiquidationParams(
            lending_pool=a,
            collateral=route.token_in,
            debt=route.token_out,
            user=c,
            debt_to_cover=1,
            route=route,
            min_profit=0,
            coinbase_bps=0,
            max_block=1,
        )
        assert decode_liquidate(encode_liquidate(p)).route == route


async def test_router_route_from_the_balancer_venue_runs_on_chain(e: Env) -> None:
    """router.best_route over the Balancer venue builds the executor's Balancer route itself (pool id from
    the venue): the liquidation sells along it for what the venue quoted."""
    vs = await load_venues(e, await head(e))
    usdc, usdt = e.sym("USDC"), e.sym("USDT")
    best = best_route([vs.balancer], usdc, usdt, 10_000 * 10**6)
    assert best is not None
    assert best.executor_route == BalancerRoute((usdc, usdt), (pool_id(e, "USDC/USDT/DAI"),))
    assert best.kind is RouteKind.BALANCER_V2 and best.path == best.executor_route.encode()
    p = params(e, "v3-usdc-usdt", best.executor_route, usdt_to_weth(e), await head(e) + 1)
    await liquidate_and_check(e, p, e.owner, quote=venue_quote)
