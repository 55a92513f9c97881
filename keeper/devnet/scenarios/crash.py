"""`crash`: ETH falls by `drop_bps` over `blocks` blocks, as pending oracle transactions.

Each step the ETH price (and wstETH's, which is ETH times the LST rate) moves one notch down a straight
path. For each step the scenario:
1. sends arbitrage swaps that bring the Uniswap pools touching WETH/wstETH to the new price (optional),
2. sends the oracle updates as ordinary `transmit` transactions from the transmitter: the WETH/USD and
   wstETH/USD feeds (Aave V3) and every asset/ETH feed (Aave V2 prices in ETH, so a falling ETH raises
   USDC/ETH, WBTC/ETH, ...),
3. leaves them pending (a mempool strategy sees them before they land) and then waits for the next
   block, or mines it when `mine=True` (on-demand devnets in tests).
Prices are integers; the path is exact and deterministic.

With the devnet's background arbitrageur on (`keeper devnet up` turns it on; `Devnet(arbitrageur=True)`),
the two agree: the scenario's swaps move the pools in the same block as the oracle update (on mainnet DEX
prices lead the oracle), so before the next block the arbitrageur finds the pools on the oracle price and
sends nothing. With `move_amms=False` (`--no-amms`) the pools are left to the arbitrageur, which follows
each oracle update from the next block on, closing its `speed_bps` share of the gap per block; without
an arbitrageur they then stay where they are.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.devnet.deploy import WHALE, DevnetDeployment
from keeper.devnet.scenarios.amm import fund_trader_txs, move_all_txs
from keeper.devnet.scenarios.common import AnvilMiner, BulkSender, Miner, eth_call_decode, wait_blocks
from keeper.devnet.tokens import next_epoch_round, send_price_update
from keeper.errors import DevnetError

ETH_SYMBOLS = ("WETH", "wstETH")


@dataclass
class CrashStep:
    block: int
    eth_usd: int
    oracle_txs: list[str]
    swap_txs: int


@dataclass
class CrashResult:
    start_eth_usd: int
    end_eth_usd: int
    steps: list[CrashStep] = field(default_factory=list)
    seconds: float = 0.0


async def current_usd_prices(rpc: RpcClient, dep: DevnetDeployment) -> dict[str, int]:
    """Latest answers of the USD feeds (8 decimals), by symbol."""
    out: dict[str, int] = {}
    for symbol, feed in dep.feeds.usd.items():
        (answer,) = await eth_call_decode(rpc, feed, "latestAnswer()", [], [], ["int256"])
        out[symbol] = int(answer)
    return out


def price_path(start: int, drop_bps: int, blocks: int) -> list[int]:
    """start * (1 - drop * k / blocks) for k = 1..blocks, in integers (last = start * (1 - drop))."""
    if not 0 < drop_bps < 10_000:
        raise DevnetError("drop must be between 0 and 100% (exclusive), in basis points")
    if blocks < 1:
        raise DevnetError("blocks must be >= 1")
    return [start * (10_000 * blocks - drop_bps * k) // (10_000 * blocks) for k in range(1, blocks + 1)]


async def send_oracle_updates(
    rpc: RpcClient, dep: DevnetDeployment, old: Mapping[str, int], new: Mapping[str, int]
) -> list[str]:
    """Pending `transmit` txs for every feed whose answer changes between `old` and `new` USD prices."""
    before = dep.feeds.answers(old)
    after = dep.feeds.answers(new)
    hashes = []
    for feed, answer in after.items():
        if before.get(feed) != answer:
            epoch_round = await next_epoch_round(rpc, feed)
            hashes.append(
                await send_price_update(
                    rpc, feed, answer, transmitter=dep.feeds.transmitter, epoch_round=epoch_round
                )
            )
    return hashes


async def run_crash(
    rpc: RpcClient,
    dep: DevnetDeployment,
    *,
    drop_bps: int = 2_500,
    blocks: int = 20,
    mine: bool = False,
    move_amms: bool = True,
    on_step: Callable[[CrashStep], Awaitable[None]] | None = None,
    miner: Miner | None = None,
) -> CrashResult:
    """`mine=True` mines each step's block here (with `miner`, default evm_mine); otherwise waits for
    the devnet's own block production."""
    started = time.perf_counter()
    prices = await current_usd_prices(rpc, dep)
    eth0 = prices["WETH"]
    result = CrashResult(start_eth_usd=eth0, end_eth_usd=eth0)
    miner = miner or AnvilMiner(rpc)
    sender = BulkSender(rpc, miner=miner)
    if move_amms:
        await sender.impersonate_all(True)
        await sender.run(fund_trader_txs(dep, WHALE, set(dep.tokens)))
    try:
        for eth in price_path(eth0, drop_bps, blocks):
            new = dict(prices)
            new["WETH"] = eth
            if "wstETH" in prices:
                new["wstETH"] = prices["wstETH"] * eth // prices["WETH"]
            swaps = (
                await move_all_txs(rpc, dep, new, WHALE, only_symbols=set(ETH_SYMBOLS)) if move_amms else []
            )
            for tx in swaps:
                await rpc.call("eth_sendTransaction", [tx.to_rpc()])
            oracle = await send_oracle_updates(rpc, dep, prices, new)
            head = await (miner.mine() if mine else wait_blocks(rpc, 1))
            await _check_mined(rpc, oracle)
            prices = new
            step = CrashStep(block=head, eth_usd=eth, oracle_txs=oracle, swap_txs=len(swaps))
            result.steps.append(step)
            result.end_eth_usd = eth
            if on_step is not None:
                await on_step(step)
    finally:
        if move_amms:
            await sender.impersonate_all(False)
    result.seconds = time.perf_counter() - started
    return result


async def _check_mined(rpc: RpcClient, hashes: list[str]) -> None:
    """Oracle updates must land in the block we waited for; a missing one means the devnet is broken."""
    for _ in range(100):
        receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes]) if hashes else []
        if all(r is not None for r in receipts):
            bad = [h for h, r in zip(hashes, receipts, strict=True) if hex_to_int(r["status"]) != 1]
            if bad:
                raise DevnetError(f"oracle update reverted: {bad[0]}")
            return
        await wait_blocks(rpc, 1)
    raise DevnetError("oracle updates were not mined")
