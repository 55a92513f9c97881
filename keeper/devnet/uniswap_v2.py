"""Deploy Uniswap V2 (factory + Router02 from the npm builds) and seed pairs at the devnet prices.

The npm `UniswapV2Pair` init-code hash equals the one hard-coded in `UniswapV2Library`, so Router02 finds
pairs created by a locally deployed factory. Each pair is seeded through `Router02.addLiquidity` with
amounts whose ratio is exactly the pair's price (see `keeper.devnet.uniswap.seed_amounts`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    seed_amounts,
    token,
)
from keeper.errors import DevnetError

log = logging.getLogger(__name__)

FACTORY_ARTIFACT = "@uniswap/v2-core/build/UniswapV2Factory.json"
PAIR_ARTIFACT = "@uniswap/v2-core/build/UniswapV2Pair.json"
ROUTER_ARTIFACT = "@uniswap/v2-periphery/build/UniswapV2Router02.json"
PAIR_INIT_CODE_HASH = "0x96e8ac4277198ff8b6f785478aa9a39f403cb768dd02cbee326c3e7da348845f"
"""keccak256 of UniswapV2Pair's creation code, hard-coded in UniswapV2Library.pairFor."""


@dataclass(frozen=True)
class V2PairSpec:
    base: str
    quote: str
    usd_per_side: int
    """Depth: USD value of each side's reserve."""

    @property
    def name(self) -> str:
        return f"{self.base}/{self.quote}"


DEFAULT_V2_PAIRS: tuple[V2PairSpec, ...] = (
    V2PairSpec("WETH", "USDC", 50_000_000),
    V2PairSpec("WETH", "USDT", 30_000_000),
    V2PairSpec("WETH", "DAI", 20_000_000),
    V2PairSpec("WBTC", "WETH", 30_000_000),
    V2PairSpec("wstETH", "WETH", 20_000_000),
    V2PairSpec("USDC", "USDT", 30_000_000),
    V2PairSpec("DAI", "USDC", 20_000_000),
)
"""Reserves (USD a side). Constant-product depth is shallow next to V3's concentrated liquidity, as on
mainnet, where a large sale routes through the V3 pools: a $1.8M WETH sale moves WETH/USDC here by ~7%
(it moved ~13% with the former $25M a side)."""


@dataclass(frozen=True)
class UniswapV2Deployment:
    factory: str
    router: str
    pairs: Mapping[str, str] = field(default_factory=dict)
    """"BASE/QUOTE" -> pair address (the pair's own token0/token1 are ordered by address)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "factory": checksum(self.factory),
            "router": checksum(self.router),
            "pairs": {name: checksum(addr) for name, addr in self.pairs.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UniswapV2Deployment:
        try:
            return cls(
                factory=checksum(data["factory"]),
                router=checksum(data["router"]),
                pairs={str(k): checksum(v) for k, v in dict(data.get("pairs", {})).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DevnetError(f"bad Uniswap V2 deployment record: {exc}") from None


async def deploy_uniswap_v2(
    deployer: Deployer,
    tokens: Mapping[str, TokenInfo],
    *,
    pairs: Sequence[V2PairSpec] = DEFAULT_V2_PAIRS,
    prices: PriceBook | None = None,
    funder: Funder = default_funder,
    weth_symbol: str = WETH,
) -> UniswapV2Deployment:
    """Deploys UniswapV2Factory(feeToSetter=deployer) and UniswapV2Router02(factory, WETH), then creates
    and seeds `pairs`. LP tokens go to the deployer."""
    prices = prices or PriceBook.default()
    t0 = time.perf_counter()
    sent0 = deployer.txs_sent
    factory = await deployer.deploy(load_artifact(FACTORY_ARTIFACT), deployer.sender)
    router = await deployer.deploy(
        load_artifact(ROUTER_ARTIFACT), factory.address, token(tokens, weth_symbol).address
    )

    seeds: list[tuple[V2PairSpec, TokenInfo, TokenInfo, int, int]] = []
    needs: dict[str, int] = {}
    for spec in pairs:
        a, b = token(tokens, spec.base), token(tokens, spec.quote)
        amount_a, amount_b = seed_amounts(prices, a, b, spec.usd_per_side)
        seeds.append((spec, a, b, amount_a, amount_b))
        needs[a.symbol] = needs.get(a.symbol, 0) + amount_a
        needs[b.symbol] = needs.get(b.symbol, 0) + amount_b
    await fund_and_approve(deployer, tokens, needs, router.address, funder)

    addresses: dict[str, str] = {}
    for spec, a, b, amount_a, amount_b in seeds:
        await deployer.transact(
            router.address,
            "addLiquidity(address,address,uint256,uint256,uint256,uint256,address,uint256)",
            ["address", "address", "uint256", "uint256", "uint256", "uint256", "address", "uint256"],
            [a.address, b.address, amount_a, amount_b, amount_a, amount_b, deployer.sender, FAR_DEADLINE],
        )
        (pair,) = await deployer.call(
            factory.address,
            "getPair(address,address)",
            ["address", "address"],
            [a.address, b.address],
            ["address"],
        )
        addresses[spec.name] = checksum(pair)

    log.info(
        "uniswap v2: factory, router and %d pairs in %.2fs (%d txs)",
        len(addresses),
        time.perf_counter() - t0,
        deployer.txs_sent - sent0,
    )
    return UniswapV2Deployment(factory.address, router.address, addresses)


async def get_reserves(deployer: Deployer, pair: str) -> tuple[int, int]:
    """(reserve0, reserve1) of a pair."""
    r0, r1, _ts = await deployer.call(pair, "getReserves()", [], [], ["uint112", "uint112", "uint32"])
    return int(r0), int(r1)


async def pair_tokens(deployer: Deployer, pair: str) -> tuple[str, str]:
    (t0,) = await deployer.call(pair, "token0()", [], [], ["address"])
    (t1,) = await deployer.call(pair, "token1()", [], [], ["address"])
    return checksum(t0), checksum(t1)
