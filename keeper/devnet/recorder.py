"""`keeper devnet record`: the devnet's blocks (raw transactions, headers) and its starting state, as a
recording `keeper backtest --recording FILE` replays (`keeper.backtest.recording` has the format).

- `Recorder`: dumps the state (`anvil_dumpState`) at the current head A-1, then records every block
  after it as it is mined (`record_new()`), until `close()`. Works against any devnet (`keeper devnet
  up`, then scenarios run in another terminal: `keeper devnet record --out FILE --blocks N`).
- `record_demo`: a demo-like run in-process, in seconds: borrowers, then, recorded, the live keeper
  (built as `keeper run` builds it, driven block by block, its ledger kept) through an ETH crash while a
  competing liquidator takes a share of the liquidatable positions with public transactions.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
from eth_account import Account

from keeper.backtest.recording import RecordingWriter
from keeper.backtest.sources import fetch_block
from keeper.chain.abi import encode_call
from keeper.chain.flashbots_auth import keccak256
from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.collectors.blocks import decode_header
from keeper.config import Settings
from keeper.core.actions import Action
from keeper.core.engine import action_routes
from keeper.core.interfaces import BlockAware, GroupExecutor
from keeper.devnet.anvil import DEV_ACCOUNTS
from keeper.devnet.deploy import COMPETITOR
from keeper.devnet.scenarios.borrowers import create_borrowers
from keeper.devnet.scenarios.common import BulkSender, call_tx
from keeper.devnet.scenarios.crash import current_usd_prices, price_path, send_oracle_updates
from keeper.devnet.scenarios.positions import AAVE_V3, Borrowing, discover, read_health_factors
from keeper.devnet.stack import Devnet, DevnetMiner, write_deployments_file
from keeper.runner import RunServices, plan_run, start_components

WAD = 10**18
UINT256_MAX = 2**256 - 1
LIQUIDATION_GAS = 1_200_000


class Recorder:
    """Records a devnet from its current head on. `await Recorder.start(rpc, out, ...)`."""

    def __init__(self, rpc: RpcClient, writer: RecordingWriter, start_block: int) -> None:
        self.rpc = rpc
        self.writer = writer
        self.start_block = start_block
        self.next_block = start_block + 1

    @classmethod
    async def start(
        cls,
        rpc: RpcClient,
        out: Path,
        *,
        deployment: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Recorder:
        dumped = await rpc.call("anvil_dumpState")
        state = gzip.decompress(bytes.fromhex(str(dumped)[2:]))
        start_block = int(orjson.loads(state)["best_block_number"])
        header = await rpc.call("eth_getBlockByNumber", [hex(start_block), False])
        writer = RecordingWriter(
            out,
            chain_id=await rpc.chain_id(),
            gas_limit=hex_to_int(header["gasLimit"]),
            start_block=start_block,
            state=state,
            deployment=deployment,
            meta=meta,
        )
        return cls(rpc, writer, start_block)

    async def record_new(self) -> int:
        """Records every block mined since the last call; returns how many."""
        head = await self.rpc.block_number()
        n = 0
        while self.next_block <= head:
            block = await fetch_block(self.rpc, self.next_block)
            if block is None:
                break
            self.writer.add(block)
            self.next_block += 1
            n += 1
        return n

    def close(self) -> None:
        self.writer.close()


@dataclass
class DemoRecording:
    path: Path
    ledger_path: Path
    first_block: int
    last_block: int
    keeper_addresses: list[str]
    competitor: str
    competitor_txs: list[str] = field(default_factory=list)
    """Liquidation transactions the competitor sent."""
    competitor_liquidations: list[str] = field(default_factory=list)
    """Those of them that liquidated (receipt status 1)."""


async def _competitor_setup(net: Devnet, rpc: RpcClient) -> None:
    _, dep = net.require()
    setup = []
    for pool, assets in ((dep.aave_v3.pool, dep.tokens), (dep.aave_v2.lending_pool, dep.tokens)):
        for symbol, token in sorted(assets.items()):
            if symbol == "WETH":
                continue
            setup.append(
                call_tx(
                    COMPETITOR,
                    token.address,
                    "mint(address,uint256)",
                    ["address", "uint256"],
                    [COMPETITOR, 10**40],
                    200_000,
                )
            )
            setup.append(
                call_tx(
                    COMPETITOR,
                    token.address,
                    "approve(address,uint256)",
                    ["address", "uint256"],
                    [pool, UINT256_MAX],
                    100_000,
                )
            )
    await BulkSender(rpc, miner=DevnetMiner(net)).run(setup)


async def _competitor_backrun(
    rpc: RpcClient,
    net: Devnet,
    borrowings: Sequence[Borrowing],
    oracle_txs: Sequence[str],
    rng: random.Random,
    share_pct: int,
) -> list[str]:
    """The competitor backruns the pending oracle updates: it simulates them (`eth_simulateV1`), finds the
    positions they make liquidatable, and sends public liquidations of `share_pct` of them with a zero
    tip, so the block orders them right after the updates. WETH debt is left out (it holds no WETH)."""
    _, dep = net.require()
    if not oracle_txs:
        return []
    objs = await rpc.batch([("eth_getTransactionByHash", [h]) for h in oracle_txs])
    weth = dep.tokens["WETH"].address.lower()
    candidates = [b for b in borrowings if b.collateral and b.debt and b.debt[0].lower() != weth]
    await read_health_factors(rpc, dep, candidates)
    healthy = [b for b in candidates if b.health_factor is not None and b.health_factor >= WAD]
    pools = {b.user: dep.aave_v3.pool if b.market == AAVE_V3 else dep.aave_v2.lending_pool for b in healthy}
    calls: list[dict[str, Any]] = [
        {"from": o["from"], "to": o["to"], "input": o["input"], "gas": o["gas"]} for o in objs if o
    ]
    for b in healthy:
        data = encode_call("getUserAccountData(address)", ["address"], [b.user])
        calls.append({"to": pools[b.user], "input": "0x" + data.hex(), "gas": hex(2_000_000)})
    reply = await rpc.call(
        "eth_simulateV1", [{"blockStateCalls": [{"calls": calls}], "validation": False}, "latest"]
    )
    results = reply[0]["calls"][len(calls) - len(healthy) :]
    hashes = []
    for b, r in zip(healthy, results, strict=True):
        ret = str(r.get("returnData", "0x"))
        if r.get("status") != "0x1" or len(ret) < 2 + 64 * 6:
            continue
        if int(ret[2 + 64 * 5 : 2 + 64 * 6], 16) >= WAD or rng.randrange(100) >= share_pct:
            continue
        tx = call_tx(
            COMPETITOR,
            pools[b.user],
            "liquidationCall(address,address,address,uint256,bool)",
            ["address", "address", "address", "uint256", "bool"],
            [b.collateral[0], b.debt[0], b.user, UINT256_MAX, False],
            LIQUIDATION_GAS,
        ).to_rpc()
        tx |= {"maxPriorityFeePerGas": "0x0", "maxFeePerGas": hex(10**9)}
        hashes.append(str(await rpc.call("eth_sendTransaction", [tx])))
    return hashes


async def _filler(rpc: RpcClient, n: int, step: int) -> None:
    """`n` small ETH transfers from the deployer and the whale (public, pending)."""
    senders = (DEV_ACCOUNTS[0][0], DEV_ACCOUNTS[4][0])
    calls: list[tuple[str, Any]] = []
    for i in range(n):
        to = "0x" + keccak256(f"filler {step} {i}".encode()).hex()[-40:]
        calls.append(
            (
                "eth_sendTransaction",
                [{"from": senders[i % 2], "to": to, "value": hex(10**15), "gas": "0x5208"}],
            )
        )
    for call in calls:
        await rpc.call(*call)


async def record_demo(
    out: Path,
    workdir: Path,
    *,
    borrowers: int = 150,
    seed: int = 1,
    drop_bps: int = 2_500,
    crash_blocks: int = 8,
    tail_blocks: int = 4,
    competitor_share: int = 50,
    arbitrageur: bool = True,
    filler_per_block: int = 0,
) -> DemoRecording:
    """The demo-like run, recorded (see the module docstring). The live keeper's ledger is kept in
    `workdir` (`DemoRecording.ledger_path`), to compare a replay's report with. `filler_per_block`
    adds that many plain ETH transfers to every block (busier blocks, for benchmarks)."""
    ledger_path = workdir / "live-ledger.sqlite"
    async with Devnet(block_time=None, arbitrageur=arbitrageur) as net:
        rpc, dep = net.require()
        await create_borrowers(rpc, dep, borrowers, seed=seed, miner=DevnetMiner(net))
        await _competitor_setup(net, rpc)
        devnet_file = write_deployments_file(net.describe(), workdir / "devnet.json")
        settings = Settings(
            _env_file=None,
            rpc_http_url=net.http_url,
            rpc_ws_url=net.ws_url,
            private_key=DEV_ACCOUNTS[2][1],
            flashbots_signer_key=Account.create().key.hex(),
            strategies=["liquidations"],
            devnet=True,
            devnet_file=devnet_file,
            ledger_path=ledger_path,
            metrics_port=0,
        )
        plan = plan_run(settings)
        services = RunServices(plan, rpc, dep.chain_id)
        try:
            from keeper.strategies_registry import StrategyContext

            components = await start_components(settings.strategies, StrategyContext(settings, rpc, services))
            strategies, executors = components.strategies, components.executors
            routes = action_routes(executors)

            async def keeper_step() -> None:
                block = decode_header(await rpc.call("eth_getBlockByNumber", ["latest", False]))
                for e in executors:
                    if isinstance(e, BlockAware):
                        await e.on_block(block)
                for s in strategies:
                    actions: Sequence[Action] = await s.process_event(block)
                    groups: dict[str, list[Action]] = {}
                    for a in actions:
                        ex = routes.get(type(a))
                        if ex is not None:
                            groups.setdefault(ex.name, []).append(a)
                    for name, group in groups.items():
                        ex = next(e for e in executors if e.name == name)
                        if isinstance(ex, GroupExecutor):
                            await ex.execute_group(group)
                        else:
                            for a in group:
                                await ex.execute(a)

            recorder = await Recorder.start(
                rpc,
                out,
                deployment=dep.to_json(),
                meta={
                    "scenario": "demo",
                    "borrowers": borrowers,
                    "seed": seed,
                    "drop_bps": drop_bps,
                    "crash_blocks": crash_blocks,
                    "competitor_share": competitor_share,
                    "keeper_feeds": ["blocks"],
                },
            )
            rng = random.Random(seed)
            borrowings = list((await discover(rpc, dep)).values())
            competitor_txs: list[str] = []
            try:
                await keeper_step()
                prices = await current_usd_prices(rpc, dep)
                path = price_path(prices["WETH"], drop_bps, crash_blocks)
                for step in range(crash_blocks + tail_blocks):
                    if step < crash_blocks:
                        new = dict(prices)
                        new["WETH"] = path[step]
                        if "wstETH" in prices:
                            new["wstETH"] = prices["wstETH"] * path[step] // prices["WETH"]
                        oracle = await send_oracle_updates(rpc, dep, prices, new)
                        prices = new
                        competitor_txs += await _competitor_backrun(
                            rpc, net, borrowings, oracle, rng, competitor_share
                        )
                    await _filler(rpc, filler_per_block, step)
                    await net.mine()
                    await recorder.record_new()
                    await keeper_step()
                await net.mine()
                await recorder.record_new()
                await keeper_step()
            except BaseException:
                recorder.writer.abandon()
                raise
            recorder.close()
            receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in competitor_txs])
            succeeded = [
                h for h, r in zip(competitor_txs, receipts, strict=True) if r and r["status"] == "0x1"
            ]
            keeper_addresses = [s.address for s in plan.signers]
            executor = dep.to_json().get("executor")
            if executor:
                keeper_addresses.append(str(executor))
        finally:
            await services.aclose()
    return DemoRecording(
        path=out,
        ledger_path=ledger_path,
        first_block=recorder.start_block + 1,
        last_block=recorder.next_block - 1,
        keeper_addresses=keeper_addresses,
        competitor=COMPETITOR,
        competitor_txs=competitor_txs,
        competitor_liquidations=succeeded,
    )


def demo_summary(rec: DemoRecording) -> dict[str, Any]:
    return {k: v for k, v in replace(rec).__dict__.items() if k not in ("path", "ledger_path")}
