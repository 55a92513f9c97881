"""Deploy Uniswap V3 (core factory, NonfungiblePositionManager, SwapRouter, QuoterV2) and seed pools.

Artifacts: @uniswap/v3-core 1.0.1 and @uniswap/v3-periphery 1.4.4 (Hardhat). Deployed code sizes:
UniswapV3Factory 24,536 bytes (it embeds the pool's creation code), NonfungiblePositionManager 24,385,
SwapRouter 12,071, QuoterV2 8,274: all under the EIP-170 limit of 24,576, so anvil needs no
`--code-size-limit`. The npm `UniswapV3Pool` init-code hash equals periphery's POOL_INIT_CODE_HASH
(0xe34f...8b54), so the periphery contracts find pools created by our factory.

Fee tier 100 (0.01%, tick spacing 1) is not enabled in the v3-core 1.0.1 constructor; we enable it with
`enableFeeAmount(100, 1)` as governance did on mainnet.

Every pool is initialized at the exact devnet price (sqrtPriceX96 = isqrt(num * 2^192 // den), token order
by address, decimals included) and gets liquidity in several ranges: a full-range position, a
concentrated one around the price, and one each side of the price (above: token0 only; below: token1
only), so swaps cross initialized ticks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import decode

from keeper.chain import uniswap_v3_math as v3
from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient, block_tag
from keeper.devnet.artifacts import load_artifact
from keeper.devnet.deployer import Deployer
from keeper.devnet.model import TokenInfo
from keeper.devnet.uniswap import (
    FAR_DEADLINE,
    WETH,
    Funder,
    PriceBook,
    checksum,
    default_funder,
    fund_and_approve,
    sort_tokens,
    token,
)
from keeper.errors import DevnetError

log = logging.getLogger(__name__)

FACTORY_ARTIFACT = "@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json"
POOL_ARTIFACT = "@uniswap/v3-core/artifacts/contracts/UniswapV3Pool.sol/UniswapV3Pool.json"
NPM_ARTIFACT = (
    "@uniswap/v3-periphery/artifacts/contracts/NonfungiblePositionManager.sol/NonfungiblePositionManager.json"
)
SWAP_ROUTER_ARTIFACT = "@uniswap/v3-periphery/artifacts/contracts/SwapRouter.sol/SwapRouter.json"
QUOTER_V2_ARTIFACT = "@uniswap/v3-periphery/artifacts/contracts/lens/QuoterV2.sol/QuoterV2.json"
POOL_INIT_CODE_HASH = "0xe34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

MINT_SIG = "mint((address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256))"
MINT_TYPES = ["(address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256)"]


@dataclass(frozen=True)
class V3PoolSpec:
    base: str
    quote: str
    fee: int
    usd_total: int
    """USD value put into the pool over all positions (about; in-range positions use a bit less)."""
    half_width: int
    """Concentrated position: current tick (floored to spacing) +- this many ticks."""
    side: tuple[int, int]
    """Side positions: ticks [base + side[0], base + side[1]] above and the mirror below."""
    split: tuple[int, int, int, int] = (30, 50, 10, 10)
    """Percent of usd_total for (full range, concentrated, above, below)."""

    @property
    def name(self) -> str:
        return f"{self.base}/{self.quote}/{self.fee}"


DEFAULT_V3_POOLS: tuple[V3PoolSpec, ...] = (
    V3PoolSpec("WETH", "USDC", 500, 60_000_000, 200, (400, 1200)),
    V3PoolSpec("WETH", "USDC", 3000, 20_000_000, 600, (1200, 3000)),
    V3PoolSpec("WBTC", "WETH", 3000, 30_000_000, 600, (1200, 3000)),
    V3PoolSpec("wstETH", "WETH", 100, 30_000_000, 20, (40, 200)),
    V3PoolSpec("USDC", "USDT", 100, 40_000_000, 5, (10, 50)),
    V3PoolSpec("DAI", "USDC", 100, 30_000_000, 5, (10, 50)),
)


@dataclass(frozen=True)
class UniswapV3Deployment:
    factory: str
    position_manager: str
    swap_router: str
    quoter_v2: str
    pools: Mapping[str, str] = field(default_factory=dict)
    """"BASE/QUOTE/FEE" -> pool address (the pool's own token0/token1 are ordered by address)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "factory": checksum(self.factory),
            "position_manager": checksum(self.position_manager),
            "swap_router": checksum(self.swap_router),
            "quoter_v2": checksum(self.quoter_v2),
            "pools": {name: checksum(addr) for name, addr in self.pools.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UniswapV3Deployment:
        try:
            return cls(
                factory=checksum(data["factory"]),
                position_manager=checksum(data["position_manager"]),
                swap_router=checksum(data["swap_router"]),
                quoter_v2=checksum(data["quoter_v2"]),
                pools={str(k): checksum(v) for k, v in dict(data.get("pools", {})).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DevnetError(f"bad Uniswap V3 deployment record: {exc}") from None


@dataclass(frozen=True)
class PlannedPosition:
    tick_lower: int
    tick_upper: int
    amount0: int
    amount1: int


@dataclass(frozen=True)
class PlannedPool:
    spec: V3PoolSpec
    token0: TokenInfo
    token1: TokenInfo
    sqrt_price_x96: int
    tick: int
    tick_spacing: int
    positions: tuple[PlannedPosition, ...]


def plan_pool(spec: V3PoolSpec, tokens: Mapping[str, TokenInfo], prices: PriceBook) -> PlannedPool:
    """Initial price and positions of a pool, all exact integers (no chain access)."""
    spacing = v3.FEE_TICK_SPACING.get(spec.fee)
    if spacing is None:
        raise DevnetError(f"{spec.name}: unknown fee tier {spec.fee}")
    t0, t1 = sort_tokens(token(tokens, spec.base), token(tokens, spec.quote))
    ratio = prices.ratio(t0, t1)  # token1 base units per token0 base unit
    sqrt_price = v3.encode_sqrt_price_x96(ratio.num, ratio.den)
    tick = v3.get_tick_at_sqrt_ratio(sqrt_price)
    base = v3.floor_tick(tick, spacing)

    def aligned(t: int) -> int:
        return v3.floor_tick(t, spacing)

    full = (-v3.floor_tick(v3.MAX_TICK, spacing), v3.floor_tick(v3.MAX_TICK, spacing))
    conc = (base - aligned(spec.half_width), base + aligned(spec.half_width))
    above = (base + aligned(spec.side[0]), base + aligned(spec.side[1]))
    below = (base - aligned(spec.side[1]), base - aligned(spec.side[0]))
    if not (conc[0] < conc[1] and above[0] < above[1] and above[0] > tick and below[1] <= tick):
        raise DevnetError(f"{spec.name}: bad position ranges {conc} {above} {below} at tick {tick}")

    positions = []
    for (lower, upper), pct in zip((full, conc, above, below), spec.split, strict=True):
        usd = spec.usd_total * pct // 100
        if usd == 0:
            continue
        if lower > tick:  # all token0
            amount0, amount1 = prices.amount_for_usd(t0, usd), 0
        elif upper <= tick:  # all token1
            amount0, amount1 = 0, prices.amount_for_usd(t1, usd)
        else:  # the NPM takes the smaller liquidity of the two, so about half of one side stays unused
            amount0, amount1 = prices.amount_for_usd(t0, usd // 2), prices.amount_for_usd(t1, usd // 2)
        positions.append(PlannedPosition(lower, upper, amount0, amount1))
    return PlannedPool(spec, t0, t1, sqrt_price, tick, spacing, tuple(positions))


async def deploy_uniswap_v3(
    deployer: Deployer,
    tokens: Mapping[str, TokenInfo],
    *,
    pools: Sequence[V3PoolSpec] = DEFAULT_V3_POOLS,
    prices: PriceBook | None = None,
    funder: Funder = default_funder,
    weth_symbol: str = WETH,
) -> UniswapV3Deployment:
    """Deploys the factory (owner = deployer, fee 100 enabled), NonfungiblePositionManager(factory, WETH,
    tokenDescriptor=0: `tokenURI` reverts, nothing else needs it), SwapRouter and QuoterV2, then creates,
    initializes and seeds `pools`. Position NFTs go to the deployer."""
    prices = prices or PriceBook.default()
    t_start = time.perf_counter()
    sent0 = deployer.txs_sent
    weth = token(tokens, weth_symbol).address
    factory = await deployer.deploy(load_artifact(FACTORY_ARTIFACT))
    (spacing_100,) = await deployer.call(
        factory.address, "feeAmountTickSpacing(uint24)", ["uint24"], [100], ["int24"]
    )
    if spacing_100 == 0:
        await deployer.transact(
            factory.address, "enableFeeAmount(uint24,int24)", ["uint24", "int24"], [100, 1]
        )
    npm = await deployer.deploy(load_artifact(NPM_ARTIFACT), factory.address, weth, ZERO_ADDRESS)
    router = await deployer.deploy(load_artifact(SWAP_ROUTER_ARTIFACT), factory.address, weth)
    quoter = await deployer.deploy(load_artifact(QUOTER_V2_ARTIFACT), factory.address, weth)
    t_contracts = time.perf_counter()

    plans = [plan_pool(spec, tokens, prices) for spec in pools]
    needs: dict[str, int] = {}
    for plan in plans:
        for pos in plan.positions:
            needs[plan.token0.symbol] = needs.get(plan.token0.symbol, 0) + pos.amount0
            needs[plan.token1.symbol] = needs.get(plan.token1.symbol, 0) + pos.amount1
    await fund_and_approve(deployer, tokens, needs, npm.address, funder)

    addresses: dict[str, str] = {}
    for plan in plans:
        await deployer.transact(
            npm.address,
            "createAndInitializePoolIfNecessary(address,address,uint24,uint160)",
            ["address", "address", "uint24", "uint160"],
            [plan.token0.address, plan.token1.address, plan.spec.fee, plan.sqrt_price_x96],
        )
        (pool,) = await deployer.call(
            factory.address,
            "getPool(address,address,uint24)",
            ["address", "address", "uint24"],
            [plan.token0.address, plan.token1.address, plan.spec.fee],
            ["address"],
        )
        (sqrt_price, tick, *_rest) = await deployer.call(
            pool, "slot0()", [], [], ["uint160", "int24", "uint16", "uint16", "uint16", "uint8", "bool"]
        )
        if sqrt_price != plan.sqrt_price_x96 or tick != plan.tick:
            raise DevnetError(f"{plan.spec.name}: pool already existed at another price ({sqrt_price})")
        for pos in plan.positions:
            params = (
                plan.token0.address,
                plan.token1.address,
                plan.spec.fee,
                pos.tick_lower,
                pos.tick_upper,
                pos.amount0,
                pos.amount1,
                0,
                0,
                deployer.sender,
                FAR_DEADLINE,
            )
            await deployer.transact(npm.address, MINT_SIG, MINT_TYPES, [params])
        addresses[plan.spec.name] = checksum(pool)

    log.info(
        "uniswap v3: contracts in %.2fs, %d pools seeded in %.2fs (%d txs)",
        t_contracts - t_start,
        len(addresses),
        time.perf_counter() - t_contracts,
        deployer.txs_sent - sent0,
    )
    return UniswapV3Deployment(factory.address, npm.address, router.address, quoter.address, addresses)


# ------------------------------------------------------------------------------ reading pool state

SLOT0_TYPES = ["uint160", "int24", "uint16", "uint16", "uint16", "uint8", "bool"]
TICKS_TYPES = ["uint128", "int128", "uint256", "uint256", "int56", "uint160", "uint32", "bool"]


def _call(to: str, data: bytes, block: str) -> tuple[str, list[Any]]:
    return ("eth_call", [{"to": to, "data": "0x" + data.hex()}, block])


async def read_pool_state(
    rpc: RpcClient,
    pool: str,
    *,
    block: int | str | None = None,
    words_each_side: int | None = None,
    chunk: int = 1000,
) -> v3.PoolState:
    """Everything `uniswap_v3_math.swap` needs, read at one block with batched raw eth_calls.

    words_each_side=None reads every bitmap word the pool can use (for tick spacing 1 that is 6,932
    words, a few batches); a number reads only that many words each side of the current one and records
    the bounds, so a simulated swap that would leave them raises instead of going wrong.
    """
    tag = block_tag(block if block is not None else await rpc.block_number())
    head = await rpc.batch(
        [
            _call(pool, encode_call("slot0()", [], []), tag),
            _call(pool, encode_call("liquidity()", [], []), tag),
            _call(pool, encode_call("fee()", [], []), tag),
            _call(pool, encode_call("tickSpacing()", [], []), tag),
        ]
    )
    sqrt_price, tick = decode(SLOT0_TYPES, bytes.fromhex(head[0][2:]))[:2]
    (liquidity,) = decode(["uint128"], bytes.fromhex(head[1][2:]))
    (fee,) = decode(["uint24"], bytes.fromhex(head[2][2:]))
    (spacing,) = decode(["int24"], bytes.fromhex(head[3][2:]))

    min_word = v3.compress_tick(v3.MIN_TICK, spacing) >> 8
    max_word = v3.compress_tick(v3.MAX_TICK, spacing) >> 8
    bounds: tuple[int, int] | None = None
    if words_each_side is not None:
        here = v3.compress_tick(tick, spacing) >> 8
        lo, hi = max(min_word, here - words_each_side), min(max_word, here + words_each_side)
        if (lo, hi) != (min_word, max_word):
            bounds = (lo, hi)
        min_word, max_word = lo, hi

    bitmap: dict[int, int] = {}
    positions = list(range(min_word, max_word + 1))
    for i in range(0, len(positions), chunk):
        part = positions[i : i + chunk]
        replies = await rpc.batch(
            [_call(pool, encode_call("tickBitmap(int16)", ["int16"], [w]), tag) for w in part]
        )
        for w, raw in zip(part, replies, strict=True):
            word = int(raw, 16)
            if word:
                bitmap[w] = word

    initialized = v3.ticks_from_bitmap(bitmap, spacing)
    liquidity_net: dict[int, int] = {}
    for i in range(0, len(initialized), chunk):
        part = initialized[i : i + chunk]
        replies = await rpc.batch(
            [_call(pool, encode_call("ticks(int24)", ["int24"], [t]), tag) for t in part]
        )
        for t, raw in zip(part, replies, strict=True):
            liquidity_net[t] = int(decode(TICKS_TYPES, bytes.fromhex(raw[2:]))[1])
    return v3.PoolState(
        sqrt_price_x96=int(sqrt_price),
        tick=int(tick),
        liquidity=int(liquidity),
        fee=int(fee),
        tick_spacing=int(spacing),
        bitmap=bitmap,
        liquidity_net=liquidity_net,
        word_bounds=bounds,
    )
