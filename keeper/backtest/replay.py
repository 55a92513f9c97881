"""The replay driver: the live strategies and executors, replayed blocks in, simulated sends out.

For each block b of the source, on a replay node whose head is b-1:
1. the executors that follow blocks see block b-1, then every strategy gets it as a `NewBlock` (what the
   live block collector would publish) and its actions go to the executor that handles their type,
   as the engine routes them; then block b's transactions are shown as the pending set (`PendingTx`
   events, with their signed bytes) and their actions routed the same way;
2. the final send is `ReplayBuilders`: each bundle is simulated at the position it would have taken in b
   (top of the block, or right after the transaction it backruns), in b's context, and recorded;
3. block b's real transactions are applied in order (raw signed forms; b's timestamp, base fee and
   coinbase) and mined; the mined block must hold exactly them, or the run stops at b with the reason
   (the report so far is kept);
4. the ground truth is read from b's logs: Aave `LiquidationCall`s and oracle `AnswerUpdated`s.

Only the collectors and the final send differ from `keeper run`: the keeper is built by the same
registry factories (`keeper.strategies_registry`), with `BacktestServices` (the runner's services, with
the replay's builders client and a ledger in a temporary directory). The engine is not used as such:
its tasks run concurrently and a replay must finish one block's decisions before applying the block,
so this driver calls the same methods in the engine's order (see the module docstring of
`keeper.core.engine`), one block at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from keeper.backtest.builders import ReplayBuilders
from keeper.backtest.node import ReplayNode
from keeper.backtest.recording import ReplayBlock, ReplayTx, replays_raw
from keeper.backtest.sources import BlockSource
from keeper.backtest.truth import (
    ANSWER_UPDATED,
    NOT_SENT,
    UNPROFITABLE,
    Attempt,
    Decline,
    Liquidation,
    OracleUpdate,
    block_logs_filter,
    decode_answer,
    liquidation_from_log,
)
from keeper.chain.abi import encode_call
from keeper.chain.dev_accounts import DEV_ACCOUNTS
from keeper.chain.flashbots_auth import keccak256
from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.collectors.blocks import decode_header
from keeper.collectors.mempool import decode_pending_tx
from keeper.config import Settings
from keeper.core.actions import Action
from keeper.core.engine import action_routes
from keeper.core.events import Event, NewBlock, PendingTx
from keeper.core.interfaces import BlockAware, Executor, GroupExecutor, Strategy
from keeper.errors import ConfigError, JsonRpcError, KeeperError
from keeper.executors.builders import MultiBuilderClient
from keeper.executors.bundle_executor import BundleExecutor
from keeper.runner import RunPlan, RunServices, plan_run
from keeper.strategies_registry import StrategyContext, build_components

log = logging.getLogger("keeper.backtest")

REPLAY_IDENTITY = "0x" + keccak256(b"keeper backtest relay identity").hex()
"""The bundle-signing identity of replays (signs nothing that leaves the machine)."""


class ReplayError(KeeperError):
    """A block could not be replayed: the run stops there (the report so far is kept)."""

    def __init__(self, block: int, reason: str) -> None:
        super().__init__(f"block {block} cannot be replayed: {reason}")
        self.block = block
        self.reason = reason


@dataclass
class BlockStats:
    number: int
    txs: int
    gas_used: int
    base_fee: int
    bundles: int = 0
    attempts: int = 0
    net_wei: int = 0
    builder_paid_wei: int = 0
    gas_wei: int = 0
    liquidations: int = 0
    liquidations_ours: int = 0
    oracle_updates: int = 0
    decision_ms: float = 0.0
    """Wall-clock: NOT in the JSON report (non-deterministic)."""
    total_ms: float = 0.0
    """Wall-clock of the whole block (decisions, pooling, mining): NOT in the JSON report."""

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "txs": self.txs,
            "gas_used": self.gas_used,
            "base_fee": str(self.base_fee),
            "bundles": self.bundles,
            "attempts": self.attempts,
            "net_wei": str(self.net_wei),
            "builder_paid_wei": str(self.builder_paid_wei),
            "gas_wei": str(self.gas_wei),
            "liquidations": self.liquidations,
            "liquidations_ours": self.liquidations_ours,
            "oracle_updates": self.oracle_updates,
        }


@dataclass
class ReplayResult:
    source: dict[str, Any]
    config: dict[str, Any]
    blocks: list[BlockStats] = field(default_factory=list)
    liquidations: list[Liquidation] = field(default_factory=list)
    oracle_updates: list[OracleUpdate] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    declines: list[Decline] = field(default_factory=list)
    protocols: dict[str, str] = field(default_factory=dict)
    ours: list[str] = field(default_factory=list)
    executor: dict[str, Any] = field(default_factory=dict)
    stopped: dict[str, Any] | None = None
    seconds: float = 0.0
    """Wall-clock: NOT in the JSON report."""
    loop_seconds: float = 0.0
    """Wall-clock of the block loop alone (without the node's start and the keeper's build and sync)."""
    phase_seconds: dict[str, float] = field(default_factory=dict)
    """Wall-clock per phase of the block loop (decide, send wait, collect, truth wait, mine)."""


# ---- the keeper, built as `keeper run` builds it --------------------------------------------------


class BacktestServices(RunServices):
    """The runner's services with the replay's final send (and the plan's temporary ledger)."""

    def __init__(self, plan: RunPlan, rpc: RpcClient, chain_id: int, builders: ReplayBuilders) -> None:
        super().__init__(plan, rpc, chain_id)
        self._replay_builders = builders

    async def builders(self) -> MultiBuilderClient:
        return self._replay_builders


def settings_fields() -> frozenset[str]:
    return frozenset(Settings.model_fields)


def replay_settings(
    source: BlockSource,
    workdir: Path,
    node_urls: tuple[str, str],
    strategies: Sequence[str],
    overrides: Mapping[str, str],
    base: Settings | None = None,
) -> Settings:
    """Settings of the replayed keeper: the recording's devnet deployment (keys: the devnet's keeper
    account, public test keys), or the user's settings (`--config`, env) for a fork replay; then the
    `--set` overrides. ConfigError (one line per problem) for a bad override."""
    values: dict[str, Any]
    if source.deployment is not None:
        devnet_file = workdir / "devnet.json"
        devnet_file.write_bytes(orjson.dumps({"deployment": dict(source.deployment), "relay_url": None}))
        values = {
            "private_key": DEV_ACCOUNTS[2][1],
            "devnet": True,
            "devnet_file": devnet_file,
        }
    else:
        if base is None:
            raise ConfigError(["a fork replay needs the keeper's settings (--config or KEEPER_* variables)"])
        values = {k: v for k, v in base.model_dump().items() if v is not None}
    values |= {
        "rpc_http_url": node_urls[0],
        "rpc_ws_url": node_urls[1],
        "flashbots_signer_key": REPLAY_IDENTITY,
        "strategies": list(strategies),
        "ledger_path": workdir / "ledger.sqlite",
        "metrics_port": 0,
        "submit": "bundle",
        "dry_run": False,
    }
    known = settings_fields()
    unknown = sorted(k for k in overrides if k not in known)
    if unknown:
        raise ConfigError([f"--set {unknown[0]}: unknown setting (e.g. --set builder_share_bps=7000)"])
    values |= dict(overrides)
    try:
        return Settings(_env_file=None, **values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            shown = f"--set {name}" if name in overrides else name
            problems.append(f"{shown}: {err['msg']}")
        raise ConfigError(problems) from None


def _unsigned_tx(obj: Mapping[str, Any]) -> dict[str, Any]:
    tx = {k: obj[k] for k in ("from", "to", "value", "gas", "nonce") if obj.get(k) is not None}
    if obj.get("maxFeePerGas") is not None:
        tx["maxFeePerGas"] = obj["maxFeePerGas"]
        tx["maxPriorityFeePerGas"] = obj.get("maxPriorityFeePerGas", "0x0")
    elif obj.get("gasPrice") is not None:
        tx["gasPrice"] = obj["gasPrice"]
    tx["data"] = obj.get("input") or obj.get("data") or "0x"
    return tx


def pending_event(tx: ReplayTx) -> PendingTx | None:
    try:
        event = decode_pending_tx(tx.obj)
    except KeeperError:
        return None
    return replace(event, raw=tx.raw) if tx.raw is not None else event


class Replayer:
    """One replay run (see the module docstring). `run()` returns the result, complete or stopped."""

    def __init__(
        self,
        source: BlockSource,
        *,
        strategies: Sequence[str] = ("liquidations",),
        overrides: Mapping[str, str] | None = None,
        base_settings: Settings | None = None,
        on_block: Callable[[int], None] | None = None,
        mempool: bool = True,
    ) -> None:
        self.source = source
        self.mempool = mempool
        """Show the strategies each block's transactions as the pending set before the block."""
        self.strategies = list(strategies)
        self.overrides = dict(overrides or {})
        self.base_settings = base_settings
        self.on_block = on_block
        self.events: list[tuple[str, dict[str, Any]]] = []

    def _sink(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))

    def _new_result(self) -> ReplayResult:
        source = self.source
        return ReplayResult(
            source={
                "kind": source.kind,
                "name": source.name,
                "chain_id": source.chain_id,
                "from_block": source.first_block,
                "to_block": source.last_block,
            },
            config={
                "strategies": self.strategies,
                "set": dict(sorted(self.overrides.items())),
                "mempool": self.mempool,
            },
        )

    async def run(self) -> ReplayResult:
        source = self.source
        result = self._new_result()
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="keeper-backtest-", dir=_scratch_dir()) as tmp:
            workdir = Path(tmp)
            node = ReplayNode(
                source.anvil_args(workdir), chain_id=source.chain_id, gas_limit=source.gas_limit
            )
            async with node:
                await self._run_on(node, workdir, result)
        result.seconds = time.perf_counter() - started
        return result

    async def run_on(self, node: ReplayNode) -> ReplayResult:
        """Replays onto a node already started on the source's state (it keeps the replayed chain)."""
        result = self._new_result()
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="keeper-backtest-", dir=_scratch_dir()) as tmp:
            await self._run_on(node, Path(tmp), result)
        result.seconds = time.perf_counter() - started
        return result

    async def _run_on(self, node: ReplayNode, workdir: Path, result: ReplayResult) -> None:
        source = self.source
        async with RpcClient(node.http_url, timeout=60.0) as rpc:
            head = await rpc.block_number()
            if head != source.first_block - 1:
                raise ReplayError(source.first_block, f"the replay node starts at block {head}")
            settings = replay_settings(
                source,
                workdir,
                (node.http_url, node.ws_url),
                self.strategies,
                self.overrides,
                self.base_settings,
            )
            plan = replace(plan_run(settings), event_sink=self._sink)
            builders = ReplayBuilders(rpc, REPLAY_IDENTITY)
            services = BacktestServices(plan, rpc, source.chain_id, builders)
            try:
                await self._run(rpc, settings, services, builders, result)
            finally:
                await services.aclose()
                await builders.close()

    async def _run(
        self,
        rpc: RpcClient,
        settings: Settings,
        services: BacktestServices,
        builders: ReplayBuilders,
        result: ReplayResult,
    ) -> None:
        components = await build_components(self.strategies, StrategyContext(settings, rpc, services))
        for s in components.strategies:
            await s.sync_state()
        strategies, executors = components.strategies, components.executors
        routes = action_routes(executors)
        block_aware = [e for e in executors if isinstance(e, BlockAware)]
        bundle_executors = [e for e in executors if isinstance(e, BundleExecutor)]
        ours: set[str] = {s.address.lower() for s in services.signers()} if bundle_executors else set()
        for e in bundle_executors:
            if e.executor_address:
                ours.add(e.executor_address.lower())
        result.ours = sorted(ours)
        if services.devnet is not None:
            dep = services.devnet
            result.protocols[str(dep["aave_v3"]["pool"]).lower()] = "aave-v3"
            result.protocols[str(dep["aave_v2"]["lending_pool"]).lower()] = "aave-v2"
        await rpc.call("anvil_autoImpersonateAccount", [True])

        async def route(actions: Sequence[Action]) -> None:
            groups: dict[str, tuple[Executor, list[Action]]] = {}
            for a in actions:
                ex = routes.get(type(a))
                if ex is not None:
                    groups.setdefault(ex.name, (ex, []))[1].append(a)
            for ex, group in groups.values():
                if isinstance(ex, GroupExecutor):
                    await ex.execute_group(group)
                else:
                    for a in group:
                        await ex.execute(a)

        async def publish(event: Event) -> None:
            for s in strategies:
                await route(await s.process_event(event))

        loop_started = time.perf_counter()
        parent = decode_header(
            await rpc.call("eth_getBlockByNumber", [hex(self.source.first_block - 1), False])
        )
        # anvil's clock after a state load or a fork runs from the wall clock: pin it to the chain's.
        await rpc.call("evm_setTime", [parent.timestamp])
        truth: asyncio.Task[None] | None = None
        try:
            async for block in self.source.blocks():
                stats = BlockStats(block.number, len(block.txs), block.gas_used, block.base_fee)
                builders.at_block(block)
                self.events.clear()
                sent_before = len(builders.sent)
                t0 = time.perf_counter()
                sending = asyncio.create_task(self._send(rpc, block), name=f"replay:send:{block.number}")
                try:
                    for follower in block_aware:
                        await follower.on_block(parent)
                    await publish(parent)
                    for tx in block.txs if self.mempool else ():
                        event = pending_event(tx)
                        if event is not None:
                            await publish(event)
                    stats.decision_ms = (time.perf_counter() - t0) * 1000
                finally:
                    await sending  # never left running (its error, if any, stops the run here)
                t1 = time.perf_counter()
                stats.bundles = len(builders.sent) - sent_before
                self._collect(block, strategies, bundle_executors, builders, stats, result)
                t2 = time.perf_counter()
                if truth is not None:
                    await truth
                t3 = time.perf_counter()
                parent = await self._mine(rpc, block)
                t4 = time.perf_counter()
                phases = result.phase_seconds
                stats.total_ms = (t4 - t0) * 1000
                for name, seconds in (
                    ("decide", stats.decision_ms / 1000),
                    ("send wait", t1 - t0 - stats.decision_ms / 1000),
                    ("collect", t2 - t1),
                    ("truth wait", t3 - t2),
                    ("mine", t4 - t3),
                ):
                    phases[name] = phases.get(name, 0.0) + seconds
                truth = asyncio.create_task(
                    self._truth(rpc, block, ours, stats, result), name=f"replay:truth:{block.number}"
                )
                result.blocks.append(stats)
                if self.on_block is not None:
                    self.on_block(block.number)
            if truth is not None:
                await truth
        except ReplayError as exc:
            result.stopped = {"block": exc.block, "reason": exc.reason}
        finally:
            if truth is not None and not truth.done():
                truth.cancel()
                with contextlib.suppress(asyncio.CancelledError, KeeperError):
                    await truth
            result.loop_seconds = time.perf_counter() - loop_started
            for bx in bundle_executors:
                st = bx.stats
                result.executor = {
                    "actions": st.actions,
                    "simulated": st.simulated,
                    "simulation_failed": st.simulation_failed,
                    "below_minimum": st.below_minimum,
                    "not_packed": st.not_packed,
                    "sent": st.sent,
                    "transactions_sent": st.transactions_sent,
                    "included": st.included,
                    "failed_in_batch": st.failed_in_batch,
                    "realized_profit_wei": str(st.realized_profit_wei),
                    "builder_paid_wei": str(st.builder_paid_wei),
                    "gas_spent_wei": str(st.gas_spent_wei),
                }

    def _collect(
        self,
        block: ReplayBlock,
        strategies: Sequence[Strategy],
        executors: Sequence[BundleExecutor],
        builders: ReplayBuilders,
        stats: BlockStats,
        result: ReplayResult,
    ) -> None:
        """What the keeper would have done for `block`: attempts (simulated, sent) and declines."""
        position = {
            h: s.position for s in builders.sent if s.target_block == block.number for h in s.tx_hashes
        }
        sent_users: set[str] = set()
        for e in executors:
            for tx_hash, p in sorted(e.pending.items()):
                if p.target_block != block.number:
                    continue
                for item in p.items:
                    m = item.action.meta
                    a = Attempt(
                        block=block.number,
                        opportunity_id=item.action.opportunity_id,
                        strategy=item.action.strategy,
                        protocol=str(m.get("protocol", "")),
                        pool=str(m.get("pool", "")).lower(),
                        user=str(m.get("user", "")).lower(),
                        profit_wei=item.profit_wei,
                        builder_paid_wei=item.builder_paid,
                        gas_wei=item.gas_share * block.base_fee,
                        net_wei=item.net_wei,
                        tx_hash=tx_hash,
                        position=position.get(tx_hash, 0),
                    )
                    if a.pool and a.protocol:
                        result.protocols.setdefault(a.pool, a.protocol)
                    sent_users.add(a.user)
                    result.attempts.append(a)
                    stats.attempts += 1
                    stats.net_wei += a.net_wei
                    stats.builder_paid_wei += a.builder_paid_wei
                    stats.gas_wei += a.gas_wei
        declined: dict[str, Decline] = {}

        def decline(user: str, reason: str, detail: str) -> None:
            user = user.lower()
            if user and user not in sent_users and user not in declined:
                declined[user] = Decline(block.number, user, reason, detail[:200])

        for kind, data in self.events:
            user = _user_of(str(data.get("id", "")))
            if kind == "below_minimum":
                decline(
                    user,
                    UNPROFITABLE,
                    f"net {data.get('net_wei')} wei below the minimum {data.get('minimum')}",
                )
            elif kind in ("simulation_failed", "not_packed", "stale"):
                decline(user, NOT_SENT, f"{kind.replace('_', ' ')}: {data.get('reason', '')}")
        for s in strategies:
            for opp_id, reason in sorted(dict(getattr(s, "dropped", {}) or {}).items()):
                decline(_user_of(opp_id), UNPROFITABLE, str(reason))
            skipped = getattr(getattr(s, "action_builder", None), "skipped", {}) or {}
            for opp_id, reason in sorted(dict(skipped).items()):
                text = str(reason)
                low = text.lower()
                money = any(w in low for w in ("profit", "minimum", "unprofitable", "below", "worth"))
                decline(_user_of(opp_id), UNPROFITABLE if money else NOT_SENT, text)
            for opp in list(getattr(s, "liquidatable", []) or []):
                decline(str(getattr(opp, "user", "")), NOT_SENT, "liquidatable, not sent")
        result.declines += sorted(declined.values(), key=lambda d: d.user)

    async def _send(self, rpc: RpcClient, block: ReplayBlock) -> None:
        """Puts `block`'s transactions into the node's pool, in order, in one batch (anvil adds a batch's
        transactions in order and FIFO ordering keeps them so; the mined block is checked against the
        recorded order). The pool is not state: this runs while the keeper decides on the parent."""
        calls: list[tuple[str, Any]] = []
        for tx in block.txs:
            if tx.raw is not None and replays_raw(tx):
                calls.append(("eth_sendRawTransaction", ["0x" + tx.raw.hex()]))
            else:
                calls.append(("eth_sendTransaction", [_unsigned_tx(tx.obj)]))
        replies = await rpc.batch(calls, raise_errors=False)
        for i, (tx, reply) in enumerate(zip(block.txs, replies, strict=True)):
            if isinstance(reply, JsonRpcError):
                await self._drop_pool(rpc)
                raise ReplayError(block.number, f"transaction {i} ({tx.hash}) refused: {reply.message}")

    async def _mine(self, rpc: RpcClient, block: ReplayBlock) -> NewBlock:
        """Mines the pooled transactions as `block` (its timestamp, base fee and coinbase); returns the
        mined header after checking it holds exactly the block's transactions, in order."""
        context: list[tuple[str, Any]] = [
            ("evm_setNextBlockTimestamp", [block.timestamp]),
            ("anvil_setNextBlockBaseFeePerGas", [hex(block.base_fee)]),
            ("anvil_setCoinbase", [block.coinbase]),
        ]
        replies = await rpc.batch(context, raise_errors=False)
        if isinstance(replies[0], JsonRpcError):  # anvil's clock ran ahead of the chain's: pin it
            await rpc.call("evm_setTime", [block.timestamp - 1])
            replies = await rpc.batch(context[:1], raise_errors=False)
        failed = next((r for r in replies if isinstance(r, JsonRpcError)), None)
        if failed is not None:
            raise ReplayError(block.number, f"could not set its context: {failed.message}")
        try:
            await rpc.call("evm_mine")
        except JsonRpcError as exc:
            raise ReplayError(block.number, f"could not mine it: {exc.message}") from None
        mined = await rpc.call("eth_getBlockByNumber", [hex(block.number), False])
        if mined is None:
            raise ReplayError(block.number, "the replay node did not mine it")
        got = [str(h).lower() for h in mined["transactions"]]
        if len(got) != len(block.txs):
            await self._drop_pool(rpc)
            raise ReplayError(
                block.number,
                f"{len(got)} of its {len(block.txs)} transactions were mined (out of gas or invalid)",
            )
        for i, tx in enumerate(block.txs):
            if replays_raw(tx) and got[i] != tx.hash:
                raise ReplayError(block.number, f"transaction {i} is {got[i]}, the block had {tx.hash}")
        if block.withdrawals:
            await self._withdrawals(rpc, block)
        header = decode_header(mined)
        if header.timestamp != block.timestamp or header.base_fee_per_gas != block.base_fee:
            raise ReplayError(
                block.number,
                f"mined with timestamp {header.timestamp} and base fee {header.base_fee_per_gas}, "
                f"the block had {block.timestamp} and {block.base_fee}",
            )
        return header

    async def _withdrawals(self, rpc: RpcClient, block: ReplayBlock) -> None:
        """Credits the block's beacon-chain withdrawals (anvil does not apply them): the balances after
        the block, as the chain had them."""
        credit: dict[str, int] = {}
        for address, wei in block.withdrawals:
            credit[address.lower()] = credit.get(address.lower(), 0) + wei
        addresses = sorted(credit)
        balances = await rpc.batch([("eth_getBalance", [a, hex(block.number)]) for a in addresses])
        await rpc.batch(
            [
                ("anvil_setBalance", [a, hex(hex_to_int(b) + credit[a])])
                for a, b in zip(addresses, balances, strict=True)
            ]
        )

    async def _drop_pool(self, rpc: RpcClient) -> None:
        with contextlib.suppress(KeeperError):
            content = await rpc.call("txpool_content")
            hashes = [
                tx["hash"]
                for section in ("pending", "queued")
                for by_nonce in (content.get(section) or {}).values()
                for tx in by_nonce.values()
            ]
            if hashes:
                await rpc.batch([("anvil_dropTransaction", [h]) for h in hashes], raise_errors=False)

    async def _truth(
        self, rpc: RpcClient, block: ReplayBlock, ours: set[str], stats: BlockStats, result: ReplayResult
    ) -> None:
        logs = await rpc.call("eth_getLogs", [block_logs_filter(block.number)])
        by_hash = {t.hash: t.obj for t in block.txs}
        liq_logs = [lg for lg in logs if lg["topics"] and str(lg["topics"][0]).lower() != ANSWER_UPDATED]
        for lg in logs:
            if str(lg["topics"][0]).lower() == ANSWER_UPDATED and len(lg["topics"]) >= 2:
                result.oracle_updates.append(
                    OracleUpdate(
                        block=block.number,
                        tx_hash=str(lg["transactionHash"]).lower(),
                        tx_index=hex_to_int(lg["transactionIndex"]),
                        feed=str(lg["address"]).lower(),
                        answer=decode_answer(lg),
                    )
                )
                stats.oracle_updates += 1
        if not liq_logs:
            return
        hashes = sorted({str(lg["transactionHash"]).lower() for lg in liq_logs})
        receipts = dict(
            zip(hashes, await rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes]), strict=True)
        )
        found = [
            liquidation_from_log(
                lg,
                by_hash.get(str(lg["transactionHash"]).lower()),
                receipts.get(str(lg["transactionHash"]).lower()),
                block.base_fee,
                ours,
            )
            for lg in liq_logs
        ]
        calls: list[tuple[str, Any]] = [
            (
                "eth_call",
                [
                    {
                        "to": liq.pool,
                        "data": "0x"
                        + encode_call("getUserAccountData(address)", ["address"], [liq.user]).hex(),
                    },
                    hex(block.number - 1),
                ],
            )
            for liq in found
        ]
        replies = await rpc.batch(calls, raise_errors=False)
        for liq, reply in zip(found, replies, strict=True):
            before: bool | None = None
            if isinstance(reply, str) and len(reply) >= 2 + 64 * 6:
                hf = int(reply[2 + 64 * 5 : 2 + 64 * 6], 16)
                before = hf < 10**18
            result.liquidations.append(replace(liq, liquidatable_before=before))
            stats.liquidations += 1
            stats.liquidations_ours += int(liq.ours)


def _scratch_dir() -> str | None:
    """Memory-backed when the machine has one (/dev/shm): the replay's ledger is thrown away, so its
    fsyncs need not reach a disk."""
    shm = Path("/dev/shm")  # noqa: S108 - TemporaryDirectory makes a private directory inside
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _user_of(opportunity_id: str) -> str:
    """The user of a liquidation opportunity id ("protocol:user:collateral:debt#episode")."""
    parts = opportunity_id.split("#", 1)[0].split(":")
    return parts[1] if len(parts) >= 2 else ""
