"""`depeg`: large swaps push the LST (wstETH) and a stablecoin (USDT) off peg on one venue.

The oracles do not move: only Uniswap V3's wstETH/WETH and USDC/USDT pools are traded (by the whale)
to `lst_discount_bps` and `stable_discount_bps` below their fair prices, so other venues (Uniswap V2)
still quote the peg. That is the spread a peg-arbitrage strategy looks for.
"""

from __future__ import annotations

from dataclasses import dataclass

from keeper.chain.rpc import RpcClient
from keeper.devnet.deploy import WHALE, DevnetDeployment
from keeper.devnet.scenarios.amm import fund_trader_txs, v3_move_tx
from keeper.devnet.scenarios.common import BulkSender, Miner
from keeper.devnet.scenarios.crash import current_usd_prices

LST_POOL = "wstETH/WETH/100"
STABLE_POOL = "USDC/USDT/100"


@dataclass
class DepegResult:
    pools: dict[str, int]
    """pool name -> discount applied, in bps"""
    transactions: list[str]


async def run_depeg(
    rpc: RpcClient,
    dep: DevnetDeployment,
    *,
    lst_discount_bps: int = 300,
    stable_discount_bps: int = 150,
    miner: Miner | None = None,
) -> DepegResult:
    usd = await current_usd_prices(rpc, dep)
    lst_prices = dict(usd)
    lst_prices["wstETH"] = usd["wstETH"] * (10_000 - lst_discount_bps) // 10_000
    stable_prices = dict(usd)
    stable_prices["USDT"] = usd["USDT"] * (10_000 - stable_discount_bps) // 10_000
    sender = BulkSender(rpc, miner=miner)
    await sender.impersonate_all(True)
    try:
        await sender.run(fund_trader_txs(dep, WHALE, {"wstETH", "WETH", "USDC", "USDT"}))
        swaps = []
        for pool, prices in ((LST_POOL, lst_prices), (STABLE_POOL, stable_prices)):
            tx = await v3_move_tx(rpc, dep, pool, prices, WHALE)
            if tx is not None:
                swaps.append(tx)
        hashes = await sender.run(swaps)
    finally:
        await sender.impersonate_all(False)
    return DepegResult(
        pools={LST_POOL: lst_discount_bps, STABLE_POOL: stable_discount_bps}, transactions=hashes
    )
