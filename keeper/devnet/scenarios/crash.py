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

With `private=True` (`--private`) the oracle updates take the Chainlink SVR path instead of the public
mempool: each `transmit` is signed with the transmitter's (public devnet) key and sent to the devnet
relay with `eth_sendPrivateTransaction` and MEV-Share hints (`contract_address`, `function_selector`,
`calldata`, `hash`), so it never enters anvil's pool; searchers see it on the relay's hint stream and may
back-run it by hash (`mev_sendBundle`). The relay's builder includes it in the next block.

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
from typing import Any

from eth_account import Account

from keeper.chain.dev_accounts import DEV_ACCOUNTS
from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.devnet.deploy import WHALE, DevnetDeployment
from keeper.devnet.scenarios.amm import fund_trader_txs, move_all_txs
from keeper.devnet.scenarios.common import (
    AnvilMiner,
    BulkSender,
    Miner,
    RelayMiner,
    eth_call_decode,
    wait_blocks,
)
from keeper.devnet.tokens import latest_block_timestamp, next_epoch_round, price_update_tx, send_price_update
from keeper.errors import DevnetError
from keeper.executors.builder_client import BundleClient

ETH_SYMBOLS = ("WETH", "wstETH")
ORACLE_HINTS = ("calldata", "contract_address", "function_selector", "hash")
"""What an SVR-style private oracle update shares on the MEV-Share stream: enough to price it."""
PRIVATE_TIP_WEI = 10**9


class PrivateOracleSender:
    """Signs `transmit` txs with the transmitter's devnet key and sends them to the relay privately
    (`eth_sendPrivateTransaction` with `preferences.privacy.hints` = `hints`), as Chainlink SVR does.

    Nonces are the transmitter's confirmed count at each `start_step()` plus the txs sent since: the
    scenario waits for every step's updates to land before the next step.
    """

    def __init__(
        self, rpc: RpcClient, relay_url: str, transmitter: str, *, hints: tuple[str, ...] = ORACLE_HINTS
    ) -> None:
        keys = {a.lower(): k for a, k in DEV_ACCOUNTS}
        key = keys.get(transmitter.lower())
        if key is None:
            raise DevnetError(f"no devnet key for the transmitter {transmitter}: cannot sign privately")
        self.rpc = rpc
        self.transmitter = transmitter
        self.hints = hints
        self._key = key
        self._client = BundleClient(relay_url, Account.create().key, name="devnet-relay", timeout=60.0)
        self._nonce = 0
        self._chain_id = 0
        self.sent: list[str] = []

    async def close(self) -> None:
        await self._client.close()

    async def start_step(self) -> None:
        if not self._chain_id:
            self._chain_id = await self.rpc.chain_id()
        count = await self.rpc.call("eth_getTransactionCount", [self.transmitter, "latest"])
        self._nonce = hex_to_int(count)

    async def send(self, tx: Mapping[str, Any]) -> str:
        """Signs the eth_sendTransaction-shaped `tx` (to, data, gas) and sends it privately."""
        pending = await self.rpc.call("eth_getBlockByNumber", ["pending", False])
        base_fee = hex_to_int(pending.get("baseFeePerGas") or "0x0")
        signed = Account.sign_transaction(
            {
                "chainId": self._chain_id,
                "type": 2,
                "nonce": self._nonce,
                "to": tx["to"],
                "data": tx["data"],
                "gas": hex_to_int(tx["gas"]),
                "value": 0,
                "maxFeePerGas": 2 * base_fee + PRIVATE_TIP_WEI,
                "maxPriorityFeePerGas": PRIVATE_TIP_WEI,
            },
            self._key,
        )
        raw = bytes(signed.raw_transaction)
        tx_hash = await self._client.send_private_transaction(
            raw, preferences={"privacy": {"hints": list(self.hints)}}
        )
        self._nonce += 1
        self.sent.append(tx_hash.lower())
        return tx_hash.lower()


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
    rpc: RpcClient,
    dep: DevnetDeployment,
    old: Mapping[str, int],
    new: Mapping[str, int],
    *,
    private: PrivateOracleSender | None = None,
) -> list[str]:
    """Pending `transmit` txs for every feed whose answer changes between `old` and `new` USD prices:
    public (the mempool), or private through the relay with hints when `private` is given."""
    before = dep.feeds.answers(old)
    after = dep.feeds.answers(new)
    hashes = []
    if private is not None:
        await private.start_step()
    for feed, answer in after.items():
        if before.get(feed) != answer:
            epoch_round = await next_epoch_round(rpc, feed)
            if private is None:
                hashes.append(
                    await send_price_update(
                        rpc, feed, answer, transmitter=dep.feeds.transmitter, epoch_round=epoch_round
                    )
                )
            else:
                tx = price_update_tx(
                    feed,
                    answer,
                    transmitter=dep.feeds.transmitter,
                    epoch_round=epoch_round,
                    observations_timestamp=await latest_block_timestamp(rpc),
                )
                hashes.append(await private.send(tx))
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
    private: bool = False,
    relay_url: str | None = None,
) -> CrashResult:
    """`mine=True` mines each step's block here (with `miner`, default evm_mine); otherwise waits for
    the devnet's own block production.

    `private=True`: oracle updates go to the devnet relay at `relay_url` (default: the `RelayMiner`'s)
    with `eth_sendPrivateTransaction` and MEV-Share hints (`ORACLE_HINTS`), never to the public mempool.
    """
    started = time.perf_counter()
    if private and relay_url is None and isinstance(miner, RelayMiner):
        relay_url = miner.relay_url
    if private and relay_url is None:
        raise DevnetError("crash --private needs the devnet relay (relay_url): private txs go through it")
    prices = await current_usd_prices(rpc, dep)
    eth0 = prices["WETH"]
    result = CrashResult(start_eth_usd=eth0, end_eth_usd=eth0)
    miner = miner or AnvilMiner(rpc)
    sender = BulkSender(rpc, miner=miner)
    oracle_sender = (
        PrivateOracleSender(rpc, relay_url, dep.feeds.transmitter) if private and relay_url else None
    )
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
            # Oracle updates are really signed (the transmitter is a dev account anvil holds the key of),
            # not impersonated: a backrunner must be able to carry their raw bytes in its bundle.
            if move_amms:
                await sender.impersonate_all(False)
            oracle = await send_oracle_updates(rpc, dep, prices, new, private=oracle_sender)
            if move_amms:
                await sender.impersonate_all(True)
            head = await (miner.mine() if mine else wait_blocks(rpc, 1))
            await _check_mined(rpc, oracle)
            prices = new
            step = CrashStep(block=head, eth_usd=eth, oracle_txs=oracle, swap_txs=len(swaps))
            result.steps.append(step)
            result.end_eth_usd = eth
            if on_step is not None:
                await on_step(step)
    finally:
        if oracle_sender is not None:
            await oracle_sender.close()
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
