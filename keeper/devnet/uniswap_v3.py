"""Deploy Uniswap V3 (core factory, NonfungiblePositionManager, SwapRouter, QuoterV2) and seed pools.

Artifacts: @uniswap/v3-core 1.0.1 and @uniswap/v3-periphery 1.4.4 (Hardhat). Deployed code sizes:
UniswapV3Factory 24,536 bytes (it embeds the pool's creation code), NonfungiblePositionManager 24,385,
SwapRouter 12,071, QuoterV2 8,274: all under the EIP-170 limit of 24,576, so anvil needs no
`--code-size-limit`. The npm `UniswapV3Pool` init-code hash equals periphery's POOL_INIT_CODE_HASH
(0xe34f...8b54), so the periphery contracts find pools created by our factory.

Fee tier 100 (0.01%, tick spacing 1) is not enabled in the v3-core 1.0.1 constructor; we enable it with
`enableFeeAmount(100, 1)` as governance did on mainnet.

Every pool is initialized at the exact devnet price (sqrtPriceX96 = isqrt(num * 2^192 // den), token order
by address, decimals included) and gets liquidity in several ranges: a full-range position, nested bands
centered on the price, and one position each side of the price (above: token0 only; below: token1
only), so swaps cross initialized ticks.

Depth (what a sale moves the price by) follows mainnet's relation to position sizes. The devnet's
borrowers hold $2k-$2M; a large liquidation sells ~$1-2M of collateral. On mainnet such a sale, routed
over the WETH/stablecoin venues (Uniswap V3 0.05% and 0.3%, V4, other DEXes), moves the price by tenths
of a percent; one snapshot of the single largest pool (USDC/WETH 0.05%, ~$100M TVL, in-range liquidity
~3.2e18 at $2,310) alone would move ~2%, so the devnet's main pool stands for the market's aggregate depth
(in-range liquidity ~6e19 here). And mainnet LPs re-center their ranges after large moves, so depth
follows the price; static positions cannot, so wide bands (down to -30% and -45% in price) keep the
depth after the crash scenario's 25% move. Price impact of a $1.8M sale of the base token (bps, from
`plan_pool`, checked on chain by tests/integration/test_uniswap.py):

| pool | USD in pool | at the start | after -10% | after -25% | after -40% |
| --- | --- | --- | --- | --- | --- |
| WETH/USDC/500 | $450M | 17 | 29 | 48 | 117 |
| WETH/USDC/3000 | $141M | 71 | 110 | 146 | 374 |
| WBTC/WETH/3000 | $266M | 39 | 55 | 79 | 195 |

Before this layout (a 4-position $60M WETH/USDC/500 pool, ~$20M of it within +-2%), the same sale moved
it 0.25% at the start but 34% after a 25% move, when the concentrated liquidity was stranded above the
price. The peg pools (wstETH/WETH, USDC/USDT, DAI/USDC at 0.01%) move <0.05% for the same sale, with
+-3-6% bands so the depeg scenario's 1.5-3% pushes stay inside deep liquidity.
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


FULL_RANGE = 0
"""A band half-width meaning "the whole tick range" (a V2-like position)."""


@dataclass(frozen=True)
class V3PoolSpec:
    base: str
    quote: str
    fee: int
    bands: tuple[tuple[int, int], ...]
    """Positions centered on the price: (half-width in ticks, USD value). FULL_RANGE = the whole range.
    Nested bands stack: the depth at a price is the sum of the bands that cover it."""
    side: tuple[int, int]
    """Side positions: ticks [base + side[0], base + side[1]] above and the mirror below (one token each),
    so that even small swaps cross initialized ticks."""
    side_usd: int
    """USD value of each side position."""

    @property
    def name(self) -> str:
        return f"{self.base}/{self.quote}/{self.fee}"

    @property
    def usd_total(self) -> int:
        """USD put into the pool over all positions (about; centered positions use a bit less)."""
        return sum(usd for _, usd in self.bands) + 2 * self.side_usd


_M = 1_000_000
# Depth follows mainnet's relation between position sizes and pool depth (see the module docstring):
# a $1.8M sale of WETH into WETH/USDC/500 moves it ~0.15% at the starting price and stays under ~0.5%
# after the price has moved 25% (the crash scenario) or 40% away, because the wide bands stand in for
# mainnet LPs re-centering their ranges on the new price. Measured by tests/integration/test_uniswap.py
# (test_v3_depth_follows_mainnet_ratios), which prints the figures.
DEFAULT_V3_POOLS: tuple[V3PoolSpec, ...] = (
    V3PoolSpec(
        "WETH",
        "USDC",
        500,
        ((FULL_RANGE, 20 * _M), (6000, 200 * _M), (3500, 150 * _M), (1600, 50 * _M), (200, 20 * _M)),
        (400, 1200),
        5 * _M,
    ),
    V3PoolSpec(
        "WETH",
        "USDC",
        3000,
        ((FULL_RANGE, 10 * _M), (6000, 60 * _M), (3500, 40 * _M), (1600, 15 * _M), (600, 10 * _M)),
        (1200, 3000),
        3 * _M,
    ),
    V3PoolSpec(
        "WBTC",
        "WETH",
        3000,
        ((FULL_RANGE, 15 * _M), (6000, 120 * _M), (3500, 80 * _M), (1600, 30 * _M), (600, 15 * _M)),
        (1200, 3000),
        3 * _M,
    ),
    V3PoolSpec(
        "wstETH", "WETH", 100, ((FULL_RANGE, 5 * _M), (600, 40 * _M), (20, 15 * _M)), (40, 200), 3 * _M
    ),
    V3PoolSpec("USDC", "USDT", 100, ((FULL_RANGE, 5 * _M), (300, 40 * _M), (5, 20 * _M)), (10, 50), 4 * _M),
    V3PoolSpec("DAI", "USDC", 100, ((FULL_RANGE, 5 * _M), (300, 30 * _M), (5, 15 * _M)), (10, 50), 3 * _M),
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

    top = v3.floor_tick(v3.MAX_TICK, spacing)
    ranges: list[tuple[tuple[int, int], int]] = []
    for half_width, usd in spec.bands:
        if half_width == FULL_RANGE:
            ranges.append(((-top, top), usd))
        else:
            ranges.append(
                ((max(-top, base - aligned(half_width)), min(top, base + aligned(half_width))), usd)
            )
    above = (base + aligned(spec.side[0]), base + aligned(spec.side[1]))
    below = (base - aligned(spec.side[1]), base - aligned(spec.side[0]))
    ranges += [(above, spec.side_usd), (below, spec.side_usd)]
    if not (above[0] < above[1] and above[0] > tick and below[1] <= tick) or any(
        not lo <= tick < hi for (lo, hi), _ in ranges[:-2]
    ):
        raise DevnetError(f"{spec.name}: bad position ranges {ranges} at tick {tick}")

    positions = []
    for (lower, upper), usd in ranges:
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
