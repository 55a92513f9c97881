"""`borrowers`: N borrowers with randomized but realistic positions on both Aave markets.

Deterministic for a given seed. Profiles follow what mainnet books look like: mostly ETH collateral
against stablecoin debt, some WBTC, LST positions in e-mode borrowing WETH, a few mixed baskets. Sizes
are spread from $2k to $2M; target health factors cluster near the threshold for a quarter of the book
(1.035-1.15) so a 25% ETH drop makes many of them liquidatable.

Fast path (10,000 borrowers in well under two minutes): a lender account supplies collateral on behalf of
each borrower (`supply`/`deposit` with onBehalfOf), borrowers are deterministic addresses that anvil
impersonates, and every transaction goes out in JSON-RPC batches that the scenario mines itself.
Amounts are integers computed from the markets' own oracle prices.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from keeper.chain.rpc import RpcClient
from keeper.devnet.aave_params import ETH_CORRELATED, V2_RESERVES, V3_RESERVES
from keeper.devnet.deploy import DEPLOYER, DevnetDeployment
from keeper.devnet.scenarios.common import BulkSender, Miner, Tx, call_tx, eth_call_decode

AAVE_V3 = "aave-v3"
AAVE_V2 = "aave-v2"
UINT256_MAX = 2**256 - 1

SUPPLY_GAS = 350_000
BORROW_GAS = 500_000
EMODE_GAS = 200_000
LENDER = DEPLOYER
ADDR_UINT = ["address", "uint256"]
SUPPLY_SIG = {
    AAVE_V3: "supply(address,uint256,address,uint16)",
    AAVE_V2: "deposit(address,uint256,address,uint16)",
}


@dataclass(frozen=True)
class Profile:
    collateral: tuple[str, ...]
    debt: tuple[str, ...]
    weight: int
    emode: int = 0


V3_PROFILES = (
    Profile(("WETH",), ("USDC", "USDC", "USDT", "DAI"), 45),
    Profile(("WBTC",), ("USDC", "USDT", "DAI"), 14),
    Profile(("WBTC",), ("WETH",), 7),
    Profile(("WETH", "WBTC"), ("USDC", "DAI"), 12),
    Profile(("wstETH",), ("USDC", "DAI"), 8),
    Profile(("wstETH",), ("WETH",), 14, emode=ETH_CORRELATED.category_id),
)
V2_PROFILES = (
    Profile(("WETH",), ("USDC", "DAI", "USDT"), 55),
    Profile(("WBTC",), ("USDC", "DAI"), 20),
    Profile(("WBTC",), ("WETH",), 10),
    Profile(("USDC",), ("WETH",), 15),
)


@dataclass(frozen=True)
class Borrower:
    market: str
    address: str
    collateral: Mapping[str, int]
    """symbol -> amount in base units"""
    debt_symbol: str
    debt_amount: int
    emode: int
    target_hf_bps: int


@dataclass
class BorrowersResult:
    borrowers: list[Borrower]
    transactions: int
    blocks: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-safe: amounts (base units, often above 2^64, which orjson refuses) as decimal strings."""
        return {
            "transactions": self.transactions,
            "blocks": self.blocks,
            "seconds": round(self.seconds, 3),
            "counts": self.counts,
            "borrowers": [
                {
                    "market": b.market,
                    "address": b.address,
                    "collateral": {s: str(a) for s, a in b.collateral.items()},
                    "debt_symbol": b.debt_symbol,
                    "debt_amount": str(b.debt_amount),
                    "emode": b.emode,
                    "target_hf_bps": b.target_hf_bps,
                }
                for b in self.borrowers
            ],
        }


def borrower_address(seed: int, index: int) -> str:
    digest = keccak(b"keeper-devnet-borrower" + seed.to_bytes(8, "big") + index.to_bytes(8, "big"))
    return str(to_checksum_address(digest[12:]))


def _pick(rng: random.Random, profiles: Sequence[Profile]) -> Profile:
    return rng.choices(list(profiles), weights=[p.weight for p in profiles])[0]


def _collateral_usd(rng: random.Random) -> int:
    """Whole dollars: 45% $2k-20k, 35% $20k-200k, 20% $200k-2M."""
    bucket = rng.choices((0, 1, 2), weights=(45, 35, 20))[0]
    low, high = ((2_000, 20_000), (20_000, 200_000), (200_000, 2_000_000))[bucket]
    return rng.randint(low, high)


def _target_hf_bps(rng: random.Random) -> int:
    bucket = rng.choices((0, 1, 2), weights=(25, 35, 40))[0]
    low, high = ((10_350, 11_500), (11_500, 15_000), (15_000, 30_000))[bucket]
    return rng.randint(low, high)


@dataclass(frozen=True)
class MarketView:
    """What planning needs of a market: prices in its base currency and (ltv, lt) per symbol."""

    name: str
    prices: Mapping[str, int]
    """symbol -> oracle price (V3: USD 8 decimals; V2: ETH 18 decimals)"""
    decimals: Mapping[str, int]
    risk: Mapping[str, tuple[int, int]]
    """symbol -> (ltv, liquidation threshold) in bps"""
    usd_prices: Mapping[str, int]
    """symbol -> USD 8-decimal price, for sizing"""


def plan_borrower(rng: random.Random, seed: int, index: int, market: MarketView) -> Borrower:
    profiles = V3_PROFILES if market.name == AAVE_V3 else V2_PROFILES
    profile = _pick(rng, profiles)
    usd_total = _collateral_usd(rng)
    hf_bps = _target_hf_bps(rng)
    emode = profile.emode
    collateral: dict[str, int] = {}
    value_base = 0
    lt_value = 0
    ltv_value = 0
    n = len(profile.collateral)
    for symbol in profile.collateral:
        usd_share = usd_total // n
        dec = market.decimals[symbol]
        amount = usd_share * 10**dec * 10**8 // market.usd_prices[symbol]
        collateral[symbol] = amount
        base = amount * market.prices[symbol] // 10**dec
        ltv, lt = (ETH_CORRELATED.ltv, ETH_CORRELATED.liquidation_threshold) if emode else market.risk[symbol]
        value_base += base
        lt_value += base * lt
        ltv_value += base * ltv
    debt_symbol = rng.choice(profile.debt)
    debt_base = lt_value // hf_bps
    # Never above what LTV allows at borrow time (keep a 0.3% margin for rounding and interest).
    debt_base = min(debt_base, ltv_value * 9_970 // (10_000 * 10_000))
    debt_dec = market.decimals[debt_symbol]
    debt_amount = debt_base * 10**debt_dec // market.prices[debt_symbol]
    return Borrower(
        market=market.name,
        address=borrower_address(seed, index),
        collateral=collateral,
        debt_symbol=debt_symbol,
        debt_amount=debt_amount,
        emode=emode,
        target_hf_bps=hf_bps,
    )


def plan_borrowers(
    n: int, seed: int, v3: MarketView, v2: MarketView, *, v3_share_pct: int = 70, first_index: int = 0
) -> list[Borrower]:
    """Pure and deterministic: the same (n, seed, prices) always gives the same book."""
    rng = random.Random(seed)
    out = []
    for i in range(first_index, first_index + n):
        market = v3 if rng.randrange(100) < v3_share_pct else v2
        out.append(plan_borrower(rng, seed, i, market))
    return out


async def market_views(rpc: RpcClient, dep: DevnetDeployment) -> tuple[MarketView, MarketView]:
    usd = {}
    for symbol in dep.aave_v3.reserves:
        (price,) = await eth_call_decode(
            rpc,
            dep.aave_v3.oracle,
            "getAssetPrice(address)",
            ["address"],
            [dep.tokens[symbol].address],
            ["uint256"],
        )
        usd[symbol] = int(price)
    eth = {}
    for symbol in dep.aave_v2.reserves:
        (price,) = await eth_call_decode(
            rpc,
            dep.aave_v2.oracle,
            "getAssetPrice(address)",
            ["address"],
            [dep.tokens[symbol].address],
            ["uint256"],
        )
        eth[symbol] = int(price)
    decimals = {s: t.decimals for s, t in dep.tokens.items()}
    v3 = MarketView(
        AAVE_V3,
        usd,
        decimals,
        {s: (p.ltv, p.liquidation_threshold) for s, p in V3_RESERVES.items()},
        usd,
    )
    v2 = MarketView(
        AAVE_V2,
        eth,
        decimals,
        {s: (p.ltv, p.liquidation_threshold) for s, p in V2_RESERVES.items()},
        usd,
    )
    return v3, v2


def _transactions(borrowers: Sequence[Borrower], dep: DevnetDeployment) -> tuple[list[Tx], list[Tx]]:
    supplies: list[Tx] = []
    borrows: list[Tx] = []
    for b in borrowers:
        v3 = b.market == AAVE_V3
        pool = dep.aave_v3.pool if v3 else dep.aave_v2.lending_pool
        supply_sig = (
            "supply(address,uint256,address,uint16)" if v3 else "deposit(address,uint256,address,uint16)"
        )
        for symbol, amount in b.collateral.items():
            supplies.append(
                call_tx(
                    LENDER,
                    pool,
                    supply_sig,
                    ["address", "uint256", "address", "uint16"],
                    [dep.tokens[symbol].address, amount, b.address, 0],
                    SUPPLY_GAS,
                )
            )
        if b.emode:
            borrows.append(call_tx(b.address, pool, "setUserEMode(uint8)", ["uint8"], [b.emode], EMODE_GAS))
        if b.debt_amount > 0:
            borrows.append(
                call_tx(
                    b.address,
                    pool,
                    "borrow(address,uint256,uint256,uint16,address)",
                    ["address", "uint256", "uint256", "uint16", "address"],
                    [dep.tokens[b.debt_symbol].address, b.debt_amount, 2, 0, b.address],
                    BORROW_GAS,
                )
            )
    return supplies, borrows


def _lender_needs(borrowers: Sequence[Borrower]) -> dict[tuple[str, str], int]:
    """(market, symbol) -> tokens the lender must hold: collateral to supply on behalf + 1.5x the debt
    as lending liquidity."""
    needs: dict[tuple[str, str], int] = {}
    for b in borrowers:
        for symbol, amount in b.collateral.items():
            needs[(b.market, symbol)] = needs.get((b.market, symbol), 0) + amount
        key = (b.market, b.debt_symbol)
        needs[key] = needs.get(key, 0) + b.debt_amount * 3 // 2
    return needs


def _liquidity(borrowers: Sequence[Borrower]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for b in borrowers:
        key = (b.market, b.debt_symbol)
        out[key] = out.get(key, 0) + b.debt_amount * 3 // 2
    return out


async def create_borrowers(
    rpc: RpcClient,
    dep: DevnetDeployment,
    n: int = 1_000,
    seed: int = 1,
    *,
    first_index: int = 0,
    miner: Miner | None = None,
) -> BorrowersResult:
    """Creates `n` borrowers on the running devnet and returns them. Mines its own blocks."""
    started = time.perf_counter()
    v3, v2 = await market_views(rpc, dep)
    borrowers = plan_borrowers(n, seed, v3, v2, first_index=first_index)
    sender = BulkSender(rpc, miner=miner)
    await sender.impersonate_all(True)
    try:
        setup: list[Tx] = []
        needs = _lender_needs(borrowers)
        pools = {AAVE_V3: dep.aave_v3.pool, AAVE_V2: dep.aave_v2.lending_pool}
        for (market, symbol), amount in sorted(needs.items()):
            token = dep.tokens[symbol].address
            setup.append(
                call_tx(
                    LENDER, token, "mint(address,uint256)", ["address", "uint256"], [LENDER, amount], 200_000
                )
            )
            setup.append(
                call_tx(
                    LENDER,
                    token,
                    "approve(address,uint256)",
                    ["address", "uint256"],
                    [pools[market], UINT256_MAX],
                    100_000,
                )
            )
        for (market, symbol), amount in sorted(_liquidity(borrowers).items()):
            sig = (
                "supply(address,uint256,address,uint16)"
                if market == AAVE_V3
                else "deposit(address,uint256,address,uint16)"
            )
            setup.append(
                call_tx(
                    LENDER,
                    pools[market],
                    sig,
                    ["address", "uint256", "address", "uint16"],
                    [dep.tokens[symbol].address, amount, LENDER, 0],
                    SUPPLY_GAS,
                )
            )
        await sender.run(setup)
        await sender.set_balances([b.address for b in borrowers], 10**18)
        supplies, borrows = _transactions(borrowers, dep)
        await sender.run(supplies)
        await sender.run(borrows)
    finally:
        await sender.impersonate_all(False)
    counts: dict[str, int] = {}
    for b in borrowers:
        counts[b.market] = counts.get(b.market, 0) + 1
    return BorrowersResult(
        borrowers=borrowers,
        transactions=sender.sent,
        blocks=sender.blocks_mined,
        seconds=time.perf_counter() - started,
        counts=counts,
    )
