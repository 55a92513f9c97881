"""`competitor`: a second liquidator that takes some liquidatable positions first.

It reads who is liquidatable from the protocol itself (getUserAccountData < 1), picks `share_pct` of them
deterministically (seeded), and liquidates each with a plain public `liquidationCall` (max debt to cover,
so the close factor applies) from its own account. The keeper must notice that these opportunities are
gone (its re-simulation fails) and spend nothing on them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from keeper.chain.rpc import RpcClient
from keeper.devnet.deploy import COMPETITOR, DevnetDeployment
from keeper.devnet.scenarios.common import BulkSender, Miner, Tx, call_tx
from keeper.devnet.scenarios.positions import AAVE_V3, Borrowing, discover, read_health_factors

UINT256_MAX = 2**256 - 1
ADDR_UINT = ["address", "uint256"]
LIQUIDATION_GAS = 1_200_000
WAD = 10**18


@dataclass
class CompetitorResult:
    liquidatable: int
    taken: list[Borrowing]
    transactions: list[str]


async def run_competitor(
    rpc: RpcClient,
    dep: DevnetDeployment,
    *,
    share_pct: int = 50,
    seed: int = 1,
    mine: bool = True,
    max_positions: int | None = None,
    miner: Miner | None = None,
) -> CompetitorResult:
    borrowings = list((await discover(rpc, dep)).values())
    await read_health_factors(rpc, dep, borrowings)
    liquidatable = [
        b for b in borrowings if b.health_factor is not None and b.health_factor < WAD and b.collateral
    ]
    liquidatable.sort(key=lambda b: (b.market, b.user))
    rng = random.Random(seed)
    taken = [b for b in liquidatable if rng.randrange(100) < share_pct]
    if max_positions is not None:
        taken = taken[:max_positions]
    sender = BulkSender(rpc, miner=miner)
    await sender.impersonate_all(True)
    try:
        setup: list[Tx] = []
        debt_assets = {(b.market, d) for b in taken for d in b.debt[:1]}
        for market, asset in sorted(debt_assets):
            pool = dep.aave_v3.pool if market == AAVE_V3 else dep.aave_v2.lending_pool
            setup.append(
                call_tx(
                    COMPETITOR,
                    asset,
                    "mint(address,uint256)",
                    ["address", "uint256"],
                    [COMPETITOR, 10**40],
                    200_000,
                )
            )
            setup.append(
                call_tx(
                    COMPETITOR,
                    asset,
                    "approve(address,uint256)",
                    ["address", "uint256"],
                    [pool, UINT256_MAX],
                    100_000,
                )
            )
        if setup:
            await sender.run(setup)
        txs = []
        for b in taken:
            pool = dep.aave_v3.pool if b.market == AAVE_V3 else dep.aave_v2.lending_pool
            txs.append(
                call_tx(
                    COMPETITOR,
                    pool,
                    "liquidationCall(address,address,address,uint256,bool)",
                    ["address", "address", "address", "uint256", "bool"],
                    [b.collateral[0], b.debt[0], b.user, UINT256_MAX, False],
                    LIQUIDATION_GAS,
                )
            )
        hashes = (
            await sender.run(txs)
            if mine
            else [await rpc.call("eth_sendTransaction", [t.to_rpc()]) for t in txs]
        )
    finally:
        await sender.impersonate_all(False)
    return CompetitorResult(
        liquidatable=len(liquidatable), taken=taken, transactions=[str(h) for h in hashes]
    )
