"""Bundles: pack, price, sign, simulate at a relay, send to every builder, and follow what happens.

For the actions one strategy produced for one block (`execute_group`):
1. record each opportunity in the ledger (first sighting only);
2. pack them (`keeper.executors.packing`): every batchable opportunity of the target block, in the
   strategy's ranked order, into as few transactions as the per-transaction gas cap allows, up to the
   block's gas budget; each transaction has its own sender, so bundles never conflict on a nonce;
3. the transactions are then prepared concurrently, each:
   - priced for the target block: the exact next base fee from the parent header, no priority fee (the
     builder is paid from inside our contract, after its profit check). The nonce, the head (an action
     whose target block is already mined is stale: nothing is sent) and, unless `on_block` already
     delivered it, the parent header go out in one JSON-RPC batch;
   - signed and simulated with `eth_callBundle` (the relay is the authority). A batch returns each item's
     outcome: an item that failed (a competitor took the position, slippage) or whose net profit is
     below the minimum is dropped and the rest re-simulated, so what is sent is exactly what passed;
   - claimed in the ledger, each item durably, BEFORE sending: a restart (even after SIGKILL) never
     sends the same opportunity for the same block twice;
   - sent: the same signed body to every builder; each builder's answer is recorded as it arrives.
4. Each new block (`on_block`): our pending transactions are looked up (one batched receipt read).
   Included -> realized P&L per item from our contract's events (profit, builder payment): a liquidation
   item's `Liquidated` event (its pool, user, collateral, debt), an arbitrage item's `Arbitraged` event
   (the item's meta["tag"]); gas split over the items that succeeded; not included -> the strategy's
   next action is simulated afresh; an opportunity the strategy stopped reporting is marked gone, with
   zero gas spent on it.
5. On start (`reconcile`): opportunities the ledger left open with send claims are settled from the chain
   (our contract's events in their claimed target blocks), so the ledger equals the chain after a crash.
   A liquidation by its position; an arbitrage by its tag, which follows from its opportunity id and
   target block (`executor_contract.arbitrage_tag`).

Net profit of an item = its profit (from the simulation, in the profit token, valued in wei) minus its
share of the transaction's gas at the target base fee (split by the items' gas estimates).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.chain.signer import Eip1559Tx, SignedTx, TxSigner
from keeper.core.actions import Action, ForeignTx, HintedTx, SendTx, SubmitBundle, TxIntent
from keeper.core.events import NewBlock
from keeper.core.health import SendWatch
from keeper.errors import JsonRpcError, KeeperError, RelayError
from keeper.executors.builders import BuilderResult, MultiBuilderClient
from keeper.executors.episodes import Episodes
from keeper.executors.executor_contract import (
    ARBITRAGED_TOPIC,
    LIQUIDATED_TOPIC,
    SUBSIDIZED_TOPIC,
    ArbitragedEvent,
    ExecutorEvent,
    LiquidatedEvent,
    arbitrage_tag,
    batch_item_failures,
    decode_batch_result,
    decode_executor_error,
    decode_item_result,
    encode_batch,
    executor_events,
    executor_logs,
)
from keeper.executors.fees import next_base_fee, next_base_fee_from_header
from keeper.executors.packing import (
    BATCH_OVERHEAD_GAS,
    MAX_TX_GAS,
    BlockSlots,
    TxPlan,
    gas_limit_for,
    item_gas,
    pack,
    prefix_of,
)
from keeper.executors.relay_types import (
    MevBundle,
    MevHash,
    MevTx,
    RelayRejected,
    TxResult,
    decode_revert_reason,
)
from keeper.ledger import Inclusion, Ledger, Simulation, Status, Submission
from keeper.ledger import Opportunity as LedgerOpportunity
from keeper.logs import kv

log = logging.getLogger("keeper.executors.bundle_executor")

DEFAULT_GAS_BUDGET = 10_000_000
"""Gas per block for our transactions when not configured (a third of a 30M block)."""
GONE_AFTER_BLOCKS = 2
ABANDON_AFTER_FAILED_SIMULATIONS = 5
MAX_RESIMULATIONS = 2
"""Re-simulations of one transaction after dropping failed or unprofitable items."""
HEADER_MEMORY = 8
"""Headers kept for pricing (the parent of a target block is the newest one or close)."""


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One opportunity of a transaction, as simulated."""

    action: SubmitBundle
    profit: int
    """In the action's profit token (the owner's share, after the builder's); negative for a subsidized
    liquidation (minus what the owner pays to repay the loan)."""
    builder_paid: int
    profit_wei: int
    gas_share: int
    net_wei: int


@dataclass
class Pending:
    """A transaction we sent, with its items, waiting for its target block."""

    plan: TxPlan
    signed: SignedTx
    items: tuple[ItemResult, ...]
    gas_used: int
    sent_at: float
    accepted_by: tuple[str, ...] = ()
    """Builders (identities) that accepted the bundle: when only one did, an inclusion is theirs."""

    @property
    def target_block(self) -> int:
        return self.plan.target_block


@dataclass
class ExecutorStats:
    actions: int = 0
    simulated: int = 0
    simulation_failed: int = 0
    stale: int = 0
    """Actions whose target block was already mined when they reached the executor (nothing sent)."""
    below_minimum: int = 0
    not_packed: int = 0
    """Actions left out of their block: over the gas budget or no free sender."""
    duplicate: int = 0
    sent: int = 0
    """Opportunities sent (items; several may share one transaction)."""
    transactions_sent: int = 0
    included: int = 0
    failed_in_batch: int = 0
    """Items of an included transaction that failed on chain (e.g. a competitor was first)."""
    not_included: int = 0
    gone: int = 0
    reconciled: int = 0
    realized_profit_wei: int = 0
    gas_spent_wei: int = 0
    builder_paid_wei: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def count_reason(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def revert_reason(data: bytes, message: str) -> str:
    """The executor's custom error, or an `Error(string)` / `Panic` (e.g. Aave's numbered errors), or
    the message given."""
    decoded = decode_executor_error(data)
    if decoded is not None:
        name, args = decoded
        return f"{name}{args}" if args else name
    text = decode_revert_reason(data)
    if text is not None:
        return f"reverted: {text}"
    if data:
        return f"reverted with 0x{data[:36].hex()}"
    return message or "execution reverted"


def split_gas(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split by `weights` exactly (the remainder goes to the first): the parts sum to `total`."""
    if not weights:
        return []
    positive = [max(w, 1) for w in weights]
    weight_sum = sum(positive)
    parts = [total * w // weight_sum for w in positive]
    parts[0] += total - sum(parts)
    return parts


def _event_key(meta: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (
        str(meta.get("pool", "")).lower(),
        str(meta.get("user", "")).lower(),
        str(meta.get("collateral_asset", "")).lower(),
        str(meta.get("debt_asset", "")).lower(),
    )


def _meta_tag(meta: Mapping[str, Any]) -> str | None:
    """An arbitrage item's opportunity tag (meta["tag"], 0x 32-byte hex), lowercase; None otherwise."""
    tag = meta.get("tag")
    if not tag:
        return None
    text = "0x" + tag.hex() if isinstance(tag, bytes) else str(tag).lower()
    return text if text.startswith("0x") else "0x" + text


def _matches(event: ExecutorEvent, meta: Mapping[str, Any]) -> bool:
    """An item with meta["tag"] is an arbitrage: its `Arbitraged` event has that tag. Any other item is a
    liquidation: its `Liquidated` event has its (pool, user, collateral, debt)."""
    tag = _meta_tag(meta)
    if tag is not None:
        return isinstance(event, ArbitragedEvent) and event.tag_hex == tag
    if not isinstance(event, LiquidatedEvent):
        return False
    pool, user, collateral, debt = _event_key(meta)
    return (
        (not pool or event.lending_pool.lower() == pool)
        and event.user.lower() == user
        and event.collateral.lower() == collateral
        and event.debt.lower() == debt
    )


class BundleExecutor:
    name = "bundles"
    handles: tuple[type, ...] = (SubmitBundle,)

    def __init__(
        self,
        rpc: RpcClient,
        signers: Sequence[TxSigner],
        builders: MultiBuilderClient,
        *,
        chain_id: int,
        min_profit_wei: int,
        ledger: Ledger | None = None,
        dry_run: bool = False,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        gas_budget: int = DEFAULT_GAS_BUDGET,
        max_tx_gas: int = MAX_TX_GAS,
        executor_address: str | None = None,
        token_to_wei: Callable[[str], Awaitable[tuple[int, int]]] | None = None,
        send_watch: SendWatch | None = None,
        mevshare_builders: Sequence[str] = (),
    ) -> None:
        if not signers:
            raise ValueError("the bundle executor needs at least one signer")
        self.rpc = rpc
        self.signers = list(signers)
        self.builders = builders
        self.chain_id = chain_id
        self.min_profit_wei = min_profit_wei
        self.ledger = ledger
        self.dry_run = dry_run
        self.on_event = on_event
        self.max_tx_gas = max_tx_gas
        self.executor_address = executor_address
        """Our executor contract: where `reconcile` looks for events after a restart."""
        self.token_to_wei = token_to_wei
        self.send_watch = send_watch if send_watch is not None else SendWatch()
        self.mevshare_builders = tuple(mevshare_builders)
        """Builders (identities) that take `mev_sendBundle`: where backruns by hash go."""
        """Told whether builders could be reached: `/health` reports a keeper that acts but never sends."""
        """(num, den) valuing a token's base units in wei (e.g. from the lending market's oracle): used by
        `reconcile` for profits found on chain after a restart (live ones carry their own conversion)."""
        self.stats = ExecutorStats()
        self.relay_failures = 0
        """Simulations no builder could run (transport errors, 5xx, timeouts)."""
        self.simulated_by = ""
        """The builder that ran the last simulation."""
        self.pending: dict[str, Pending] = {}
        """tx hash -> what we sent"""
        self.slots = BlockSlots(senders=len(self.signers), gas_budget=gas_budget)
        self._last_target: dict[str, int] = {}
        self._recorded: set[str] = set()
        self._final: set[str] = set()
        self._episodes = Episodes()
        self._failures: dict[str, int] = {}
        self._claimed: set[tuple[str, int]] = set()
        """(opportunity, target block) this process claimed in the ledger."""
        self._sent_items: set[tuple[str, int]] = set()
        self._submitted: set[tuple[str, int, str]] = set()
        self._backrun_txs: dict[int, list[str]] = {}
        """target block -> our transactions in the current version of its backrun bundle"""
        self._backrun_slots: dict[int, tuple[int, int, int]] = {}
        """target block -> (first sender index, next sender index, gas) its backrun version took"""
        self._nonce_reads: dict[int, asyncio.Task[list[int]]] = {}
        """block number -> the senders' nonces as of that block (read at its arrival)"""
        self._headers: dict[int, NewBlock] = {}
        """Recent headers by number (from `on_block`): the parent of a target block, without a read."""
        self.last_timings: dict[str, float] = {}
        """Seconds per step of the last transaction prepared: prepare (nonce, head, parent header: one
        round trip), sign, simulate (eth_callBundle at the relay, re-simulations included), claim
        (the ledger's: what is left of it after the simulation it runs alongside), send (until the
        first builder accepted)."""
        self.last_group: dict[str, int | float] = {}
        """The last group of actions: `target_block`, `items`, `transactions` written, `seconds` from its
        start to the last bundle written (accepted by a builder) and `written_ns`, that moment on the
        monotonic clock of `NewBlock.received_at_ns`."""

    def _emit(self, kind: str, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(kind, data)

    # -- actions ---------------------------------------------------------------------------------------

    async def execute(self, action: Action) -> None:
        await self.execute_group((action,))

    async def execute_group(self, actions: Sequence[Action]) -> None:
        started = time.perf_counter()
        bundles: list[SubmitBundle] = []
        for given in actions:
            if not isinstance(given, SubmitBundle):
                continue
            self.stats.actions += 1
            opp_id = self._episode_id(given.opportunity_id)
            action = given if opp_id == given.opportunity_id else replace(given, opportunity_id=opp_id)
            self._last_target[opp_id] = max(action.target_block, self._last_target.get(opp_id, 0))
            await self._record_opportunity(action)
            bundles.append(action)
        if not bundles:
            return
        if self._headers:
            self.slots.forget_before(max(self._headers))
        # A public backrun's new version replaces the block's last one (same senders and nonces); a backrun
        # by hash (MEV-Share) is a bundle of its own, auctioned with its hinted transaction: it keeps
        # senders and nonces apart from the block's other backruns, so that all of them can land.
        backrun_targets = {
            a.target_block
            for a in bundles
            if (prefix := prefix_of(a)) and not any(isinstance(f, HintedTx) for f in prefix)
        }
        for target in backrun_targets:
            self._retire_backrun_version(target)
        before = {
            t: (self.slots.used_senders.get(t, 0), self.slots.used_gas.get(t, 0)) for t in backrun_targets
        }
        plans, skipped = pack(bundles, self.slots, max_tx_gas=self.max_tx_gas)
        for target, (senders, gas) in before.items():
            self._backrun_slots[target] = (
                senders,
                self.slots.used_senders.get(target, 0),
                self.slots.used_gas.get(target, 0) - gas,
            )
        for s in skipped:
            self.stats.not_packed += 1
            self.stats.count_reason(f"not packed: {s.reason}")
            self._emit("not_packed", id=s.action.opportunity_id, reason=s.reason, block=s.action.target_block)
        written: list[float] = []
        async with asyncio.TaskGroup() as tg:
            for job in bundle_jobs(plans):
                tg.create_task(self._run_bundle_guarded(job, written), name=f"bundle:{job[0].target_block}")
        if plans:
            last = max(written) if written else 0.0
            self.last_group = {
                "target_block": plans[0].target_block,
                "items": sum(len(p.items) for p in plans),
                "transactions": len(written),
                "seconds": (last - started) if written else 0.0,
                "written_ns": time.monotonic_ns() - int((time.perf_counter() - last) * 1e9) if written else 0,
            }

    def _retire_backrun_version(self, target: int) -> None:
        """A new version of the block's backrun will replace the previous one (same replacement uuid at
        the builders): its senders and gas go back to the block (the new version signs with the same
        senders' nonces, so at most one version can land). Its transactions stay tracked until the new
        version is actually sent (`_send`)."""
        slots = self._backrun_slots.pop(target, None)
        if slots is not None and self.slots.used_senders.get(target, 0) == slots[1]:
            self.slots.used_senders[target] = slots[0]
            self.slots.used_gas[target] = self.slots.used_gas.get(target, 0) - slots[2]

    async def _run_bundle_guarded(self, plans: list[TxPlan], written: list[float]) -> None:
        try:
            await self._run_bundle(plans, written)
        except (KeeperError, OSError) as exc:
            # One bundle's failure (RPC, ledger) never cancels the block's other bundles.
            self.stats.count_reason(f"error: {type(exc).__name__}")
            log.warning(
                "bundle failed",
                extra=kv(
                    block=plans[0].target_block,
                    items=sum(len(p.items) for p in plans),
                    error=f"{type(exc).__name__}: {exc}",
                ),
            )

    async def _read_nonces(self, block: int) -> list[int]:
        replies = await self.rpc.batch(
            [("eth_getTransactionCount", [s.address, hex(block)]) for s in self.signers]
        )
        return [hex_to_int(r) for r in replies]

    def _start_nonce_read(self, block: NewBlock) -> None:
        """Every sender's nonce as of `block`, read as soon as the block arrives (while the strategy is
        still working on it), so the bundles for the next block need no round trip of their own."""
        task = asyncio.create_task(self._read_nonces(block.number), name=f"nonces:{block.number}")
        task.add_done_callback(_retrieve)
        self._nonce_reads[block.number] = task
        for old in [n for n in self._nonce_reads if n < block.number - 2 or n > block.number]:
            self._nonce_reads.pop(old).cancel()

    async def _prepare(
        self, target_block: int, signers: Sequence[TxSigner]
    ) -> tuple[list[int], int, asyncio.Task[int] | None] | None:
        """(nonce per signer, base fee) for the target block; None when the target block is already
        mined. When the target's parent is the newest block seen, its header and the nonces read at its
        arrival are used, and the head is checked by a read that runs alongside the simulation (the
        third element: awaited before anything is recorded or sent); otherwise one batched read of the
        parent header, the nonces and the head."""
        parent_block = self._headers.get(target_block - 1)
        read = self._nonce_reads.get(target_block - 1)
        if parent_block is not None and read is not None and max(self._headers) == target_block - 1:
            try:
                nonces = await read
            except (KeeperError, OSError, asyncio.CancelledError):
                nonces = []
            if nonces:
                index = {s.address: i for i, s in enumerate(self.signers)}
                base_fee = next_base_fee(
                    parent_block.base_fee_per_gas, parent_block.gas_used, parent_block.gas_limit
                )
                head = asyncio.create_task(self.rpc.block_number(), name=f"head:{target_block}")
                head.add_done_callback(_retrieve)
                return [nonces[index[s.address]] for s in signers], base_fee, head
        calls: list[tuple[str, Any]] = []
        if parent_block is None:
            calls.append(("eth_getBlockByNumber", [hex(target_block - 1), False]))
        calls += [("eth_getTransactionCount", [s.address, "latest"]) for s in signers]
        calls.append(("eth_blockNumber", []))
        replies = await self.rpc.batch(calls, raise_errors=False)
        head = replies[-1]
        counted = replies[-1 - len(signers) : -1]
        if isinstance(head, JsonRpcError):
            raise head
        if hex_to_int(head) >= target_block:
            return None
        if parent_block is None:
            parent = replies[0]
            if isinstance(parent, JsonRpcError):
                raise parent
            if not isinstance(parent, dict):
                return None
            base_fee = next_base_fee_from_header(parent)
        else:
            base_fee = next_base_fee(
                parent_block.base_fee_per_gas, parent_block.gas_used, parent_block.gas_limit
            )
        nonces = []
        for c in counted:
            if isinstance(c, JsonRpcError):
                raise c
            nonces.append(hex_to_int(c))
        return nonces, base_fee, None

    def _sign(self, signer: TxSigner, nonce: int, base_fee: int, plan: TxPlan) -> SignedTx:
        first = _intent(plan.items[0])
        if plan.batched:
            data = encode_batch([_intent(a).data for a in plan.items])
            value = 0
        else:
            data, value = first.data, first.value
        return signer.sign(
            Eip1559Tx(
                chain_id=self.chain_id,
                nonce=nonce,
                max_priority_fee_per_gas=0,
                max_fee_per_gas=base_fee,
                gas=first.gas_limit if not plan.batched and first.gas_limit else plan.gas_limit,
                to=plan.to or first.to,
                value=value,
                data=data,
            )
        )

    def _shrunk(self, plan: TxPlan, kept: Sequence[ItemResult]) -> TxPlan:
        estimate = sum(item_gas(r.action) for r in kept)
        estimate += 0 if len(kept) == 1 else BATCH_OVERHEAD_GAS
        return replace(
            plan,
            items=tuple(r.action for r in kept),
            gas_estimate=estimate,
            gas_limit=gas_limit_for(estimate, self.max_tx_gas),
        )

    async def _run_bundle(self, plans: list[TxPlan], written: list[float]) -> None:
        """One bundle: the plans' common foreign transactions (what they backrun, if any), then one
        transaction of ours per plan, each from its own sender."""
        target, prefix = plans[0].target_block, plans[0].prefix
        items = [a for p in plans for a in p.items]
        if any(a.txs != (*prefix, _last_intent(a)) for a in items):
            for a in items:
                await self._sim_failed(
                    a, "unsupported bundle shape: someone else's transactions, then one call of ours"
                )
            return
        signers = [self.signers[p.sender_index % len(self.signers)] for p in plans]
        t0 = time.perf_counter()
        prepared = await self._prepare(target, signers)
        if prepared is None:
            # The target block is already mined: a bundle for it can never land (and a relay simulates
            # "as if in the target block", so it would not say so). The strategy acts on the new block.
            for a in items:
                self.stats.stale += 1
                self.stats.count_reason("stale: the target block was already mined")
                self._emit("stale", id=a.opportunity_id, block=target)
            return
        nonces, base_fee, head_check = prepared
        t1 = time.perf_counter()
        if any(isinstance(f, HintedTx) for f in prefix):
            self.last_timings = {"prepare": t1 - t0}
            await self._send_hint_backrun(plans, signers, nonces, base_fee, written)
            return
        self.last_timings = {"prepare": t1 - t0, "sign": 0.0, "simulate": 0.0}
        jobs = list(zip(plans, signers, nonces, strict=True))
        # A backrun carries our transactions already sent for the same block (byte for byte, right after
        # the foreign ones): the strategy valued the backrun on the pools those sales leave, and in one
        # bundle the order is certain. Our earlier bundle stays live: if the foreign transaction never
        # lands, it still can (the two conflict on nonces, so at most one of them lands).
        companions = (
            [c for c in self.pending.values() if not c.plan.prefix and c.target_block == target]
            if prefix
            else []
        )
        # The ledger claims (an fsynced commit) run while the relay simulates: claiming is only required
        # before sending. An item the simulation then drops stays claimed and is not sent; it is recorded
        # as failed, and a claim never sent is settled as "gone" like any bundle that did not land.
        claiming: asyncio.Task[bool] | None = None
        if not self.dry_run:
            claiming = asyncio.create_task(self._claim(items, target), name=f"claim:{target}")
            claiming.add_done_callback(_retrieve)
        for _attempt in range(MAX_RESIMULATIONS + 2):
            ts = time.perf_counter()
            signed = [self._sign(signer, nonce, base_fee, plan) for plan, signer, nonce in jobs]
            tsim = time.perf_counter()
            self.last_timings["sign"] += tsim - ts
            try:
                outcome = await self._simulate(
                    [j[0] for j in jobs], prefix, signed, base_fee, companions, head_check
                )
            except _CompanionFailed:
                companions = []  # carry only the backrun itself
                continue
            self.last_timings["simulate"] += time.perf_counter() - tsim
            if outcome is None:
                return
            if all(
                len(kept) == len(plan.items) for (kept, _), (plan, _, _) in zip(outcome, jobs, strict=True)
            ):
                break
            # Drop what failed or fell below the minimum and simulate the rest again: what is sent is
            # exactly what passed. A transaction left empty is not sent (its sender's nonce is unused).
            jobs = [
                (self._shrunk(plan, kept), signer, nonce)
                for (kept, _), (plan, signer, nonce) in zip(outcome, jobs, strict=True)
                if kept
            ]
            if not jobs:
                return
        else:
            for plan, _, _ in jobs:
                for a in plan.items:
                    await self._sim_failed(a, "items kept failing after re-simulation")
            return
        kept_all = [r for kept, _ in outcome for r in kept]
        if self.dry_run:
            for r in kept_all:
                self._emit("dry_run", id=r.action.opportunity_id, net_wei=r.net_wei, block=target)
            return
        tc = time.perf_counter()
        assert claiming is not None
        if not await claiming:
            self.stats.duplicate += len(kept_all)
            return
        self.last_timings["claim"] = time.perf_counter() - tc  # what is left of it after the simulation
        sent = [
            (plan, tx, tuple(kept), gas)
            for (plan, _, _), tx, (kept, gas) in zip(jobs, signed, outcome, strict=True)
        ]
        await self._send(prefix, target, sent, written, companions=companions)

    async def _claim(self, items: Sequence[SubmitBundle], target: int) -> bool:
        """Claims (opportunity, target block) in the ledger for the items this process has not claimed
        yet. False when any was claimed before by another process or run (a restart within the same
        block): then none of them may be sent, never twice. (What this process claimed itself it may
        send again: a new version of a backrun bundle replaces the old one, both with the same nonces.)"""
        new = [a for a in items if (a.opportunity_id, target) not in self._claimed]
        if self.ledger is None or not new:
            return True
        claims = await asyncio.gather(*(self.ledger.claim_send(a.opportunity_id, target) for a in new))
        self._claimed |= {(a.opportunity_id, target) for a, ok in zip(new, claims, strict=True) if ok}
        return all(claims)

    async def _simulate(
        self,
        plans: Sequence[TxPlan],
        prefix: tuple[ForeignTx | HintedTx, ...],
        signed: Sequence[SignedTx],
        base_fee: int,
        companions: Sequence[Pending] = (),
        head_check: asyncio.Task[int] | None = None,
    ) -> list[tuple[list[ItemResult], int]] | None:
        """Simulates the bundle at a relay; per plan, the items to send and its transaction's gas used.
        None when nothing is to be sent. Failed and below-minimum items are recorded and left out."""
        items = [a for p in plans for a in p.items]
        target = plans[0].target_block
        raws = [f.raw for f in prefix if isinstance(f, ForeignTx)]
        raws += [c.signed.raw for c in companions] + [t.raw for t in signed]
        try:
            outcome = await self.builders.simulate(raws, target)
        except RelayRejected as exc:
            if await self._stale(head_check, target, items):
                return None
            # The builder ran it and refused the bundle itself (e.g. the backrun target already landed:
            # its nonce is used): a result, not a relay failure.
            for a in items:
                await self._sim_failed(a, f"bundle refused: {exc}")
            return None
        except RelayError as exc:
            self.relay_failures += 1
            self.send_watch.failed(f"eth_callBundle: {exc}")
            for a in items:
                await self._sim_failed(a, f"eth_callBundle failed: {exc}")
            return None
        if await self._stale(head_check, target, items):
            return None
        self.stats.simulated += 1
        self.send_watch.ok()
        self.simulated_by = outcome.builder
        results = outcome.result.results
        if len(results) != len(raws):
            for a in items:
                await self._sim_failed(a, "simulation returned the wrong number of results")
            return None
        for foreign, r in zip(prefix, results, strict=False):
            if not r.success:
                for a in items:
                    await self._sim_failed(
                        a,
                        f"the transaction it backruns (0x{foreign.hash.hex()}) fails: "
                        f"{r.error or 'reverted'}",
                    )
                return None
        ours_from = len(prefix) + len(companions)
        for c, r in zip(companions, results[len(prefix) : ours_from], strict=True):
            if not _all_items_succeed(c.plan, r):
                raise _CompanionFailed
        return [
            (await self._items_of(plan, result, base_fee), result.gas_used)
            for plan, result in zip(plans, results[ours_from:], strict=True)
        ]

    async def _send_hint_backrun(
        self,
        plans: list[TxPlan],
        signers: Sequence[TxSigner],
        nonces: Sequence[int],
        base_fee: int,
        written: list[float],
    ) -> None:
        """A backrun of private transactions known by hash (MEV-Share): `mev_sendBundle` with body
        [{hash}..., {tx: ours, canRevert: false}...] to the MEV-Share endpoints among the builders.

        No `eth_callBundle` can run it (nobody has the hinted transaction's bytes but the matchmaker),
        so the matchmaker's simulation is the only one: a backrun that would revert is dropped there and
        costs nothing, and the contract's own checks (minimum profit, slippage floor, expiry) hold on
        chain. The bid is what our transactions pay the builder (its share, after the profit check)."""
        target = plans[0].target_block
        if not self.mevshare_builders:
            for a in (a for p in plans for a in p.items):
                await self._sim_failed(a, "no MEV-Share endpoint configured for a backrun by hash")
            return
        ts = time.perf_counter()
        signed = [self._sign(s, n, base_fee, p) for p, s, n in zip(plans, signers, nonces, strict=True)]
        tc = time.perf_counter()
        self.last_timings["sign"] = tc - ts
        items = [a for p in plans for a in p.items]
        if not await self._claim(items, target):
            self.stats.duplicate += len(items)
            return
        self.last_timings["claim"] = time.perf_counter() - tc
        if self.dry_run:
            for a in items:
                self._emit("dry_run", id=a.opportunity_id, net_wei=a.expected_profit_wei, block=target)
            return
        body: list[MevHash | MevTx] = [
            MevHash("0x" + f.hash.hex()) for f in plans[0].prefix if isinstance(f, HintedTx)
        ]
        body += [MevTx(t.raw, can_revert=False) for t in signed]
        bundle = MevBundle(block=target, body=tuple(body))
        started = time.perf_counter()
        results: list[BuilderResult] = []
        for name in self.mevshare_builders:
            client = self.builders.client(name)
            t0 = time.perf_counter()
            try:
                bundle_hash = await client.send_mev_bundle(bundle)
                results.append(
                    BuilderResult(name, name, True, bundle_hash, None, time.perf_counter() - t0, bundle_hash)
                )
            except RelayError as exc:
                results.append(BuilderResult(name, name, False, None, exc, time.perf_counter() - t0))
        accepted = tuple(r.name for r in results if r.ok)
        self.last_timings["send"] = time.perf_counter() - started
        for plan, tx in zip(plans, signed, strict=True):
            kept = tuple(
                ItemResult(a, 0, 0, a.expected_profit_wei, 0, a.expected_profit_wei) for a in plan.items
            )
            self.pending[tx.hash_hex] = Pending(plan, tx, kept, 0, started, accepted)
            self.stats.transactions_sent += 1
        new_items = [a for a in items if (a.opportunity_id, target) not in self._sent_items]
        self._sent_items |= {(a.opportunity_id, target) for a in new_items}
        self.stats.sent += len(new_items)
        if accepted:
            written.append(time.perf_counter())
            self.send_watch.ok()
        else:
            self.send_watch.failed("no MEV-Share endpoint accepted the backrun")
        sent_items = tuple(
            ItemResult(a, 0, 0, a.expected_profit_wei, 0, a.expected_profit_wei) for a in items
        )
        for b in results:
            await self._record_submissions(target, sent_items, b, "")
        for a in items:
            self._emit(
                "sent",
                id=a.opportunity_id,
                block=target,
                net_wei=a.expected_profit_wei,
                builder_paid_wei=0,
                builders=len(accepted),
                batch=len(items),
                backrun=True,
                ms=(time.perf_counter() - started) * 1000,
            )
        log.info(
            "MEV-Share backrun sent",
            extra=kv(block=target, items=len(items), transactions=len(signed), builders=len(accepted)),
        )

    async def _stale(
        self, head_check: asyncio.Task[int] | None, target: int, items: Sequence[SubmitBundle]
    ) -> bool:
        """Whether the target block turned out to be mined already (the head read that ran alongside the
        simulation); if so nothing of the simulation is recorded and nothing is sent."""
        if head_check is None:
            return False
        try:
            head = await head_check
        except (KeeperError, OSError):
            return False
        if head < target:
            return False
        for a in items:
            self.stats.stale += 1
            self.stats.count_reason("stale: the target block was already mined")
            self._emit("stale", id=a.opportunity_id, block=target)
        return True

    async def _items_of(self, plan: TxPlan, result: TxResult, base_fee: int) -> list[ItemResult]:
        """One transaction's simulated items: the ones to send (failed and below-minimum ones recorded)."""
        if not result.success or result.value is None:
            reason = revert_reason(result.revert or b"", result.error or "")
            for a in plan.items:
                await self._sim_failed(a, reason)
            return []
        if plan.batched:
            try:
                outcomes = decode_batch_result(result.value)
            except (KeeperError, ValueError) as exc:
                for a in plan.items:
                    await self._sim_failed(a, f"undecodable batch result: {exc}")
                return []
        else:
            outcomes = [(True, result.value)]
        if len(outcomes) != len(plan.items):
            for a in plan.items:
                await self._sim_failed(a, "batch result has the wrong number of items")
            return []
        ok_items = [(a, data) for a, (ok, data) in zip(plan.items, outcomes, strict=True) if ok]
        for a, (ok, data) in zip(plan.items, outcomes, strict=True):
            if not ok:
                await self._sim_failed(a, revert_reason(data, "item reverted"))
        shares = split_gas(result.gas_used, [item_gas(a) for a, _ in ok_items])
        kept: list[ItemResult] = []
        for (a, data), gas_share in zip(ok_items, shares, strict=True):
            # A subsidized liquidation returns (0, 0, subsidy): its profit is minus what the owner pays.
            profit, builder_paid = decode_item_result(data)
            num, den = a.profit_to_wei
            profit_wei = profit * num // den
            net = profit_wei - gas_share * base_fee
            minimum = a.min_profit_wei if a.min_profit_wei is not None else self.min_profit_wei
            await self._ledger_sim(
                a, plan.target_block, True, profit_wei + builder_paid, gas_share, builder_paid, net, None
            )
            if net < minimum:
                self.stats.below_minimum += 1
                self.stats.count_reason("below minimum after simulation")
                self._emit(
                    "below_minimum",
                    id=a.opportunity_id,
                    net_wei=net,
                    minimum=minimum,
                    block=plan.target_block,
                )
                continue
            kept.append(ItemResult(a, profit, builder_paid, profit_wei, gas_share, net))
        return kept

    async def _send(
        self,
        prefix: tuple[ForeignTx | HintedTx, ...],
        target: int,
        txs: Sequence[tuple[TxPlan, SignedTx, tuple[ItemResult, ...], int]],
        written: list[float],
        companions: Sequence[Pending] = (),
    ) -> None:
        started = time.perf_counter()
        items = tuple(r for _, _, kept, _ in txs for r in kept)
        # A backrun bundle keeps one uuid per block: each new version replaces the last at the builders.
        key = (
            f"backrun:{target}"
            if prefix
            else f"{txs[0][0].sender_index}:{target}:{items[0].action.opportunity_id}"
        )
        replacement = uuid.uuid5(uuid.NAMESPACE_URL, key)
        if prefix:  # the previous version is replaced: forget it without counting it as not included
            for tx_hash in self._backrun_txs.pop(target, []):
                self.pending.pop(tx_hash, None)
        pendings = []
        for plan, signed, kept, gas_used in txs:
            pending = Pending(plan, signed, kept, gas_used, started)
            self.pending[signed.hash_hex] = pending
            pendings.append(pending)
            self.stats.transactions_sent += 1
            if prefix:
                self._backrun_txs.setdefault(target, []).append(signed.hash_hex)
        new_items = [r for r in items if (r.action.opportunity_id, target) not in self._sent_items]
        self._sent_items |= {(r.action.opportunity_id, target) for r in new_items}
        self.stats.sent += len(new_items)
        results: list[BuilderResult] = []
        accepted: list[str] = []
        try:
            stream = self.builders.stream_bundle_for_blocks(
                [
                    *(f.raw for f in prefix if isinstance(f, ForeignTx)),
                    *(c.signed.raw for c in companions),
                    *(signed.raw for _, signed, _, _ in txs),
                ],
                target,
                1,
                replacement_uuid=replacement,
            )
            async with contextlib.aclosing(stream) as answers:
                async for _block, b in answers:
                    # Each builder's answer is recorded as it arrives: a slow one delays nobody.
                    results.append(b)
                    if b.ok:
                        if not accepted:
                            written.append(time.perf_counter())
                            self.last_timings["send"] = time.perf_counter() - started
                        accepted.append(b.name)
                        for pending in pendings:
                            pending.accepted_by = tuple(accepted)
                    await self._record_submissions(target, items, b, str(replacement))
        except asyncio.CancelledError:
            # Shutting down mid-send: what was claimed is recorded as sent with an unknown outcome, so the
            # next start reconciles it with the chain.
            answered = {b.name for b in results}
            for name in self.builders.names:
                if name not in answered:
                    await self._record_submissions(
                        target,
                        items,
                        BuilderResult(name, name, False, None, None, time.perf_counter() - started),
                        str(replacement),
                        error="shutdown before the builder answered: outcome unknown",
                    )
            raise
        if not accepted:
            self.send_watch.failed("no builder accepted the bundle")
        for r in items:
            self._emit(
                "sent",
                id=r.action.opportunity_id,
                block=target,
                net_wei=r.net_wei,
                builder_paid_wei=r.builder_paid,
                builders=len(accepted),
                batch=len(items),
                backrun=bool(prefix),
                ms=(time.perf_counter() - started) * 1000,
            )
        log.info(
            "bundle sent",
            extra=kv(
                block=target,
                items=len(items),
                transactions=len(txs),
                backrun="0x" + prefix[0].hash.hex() if prefix else None,
                net_wei=sum(r.net_wei for r in items),
                builders=len(accepted),
            ),
        )

    async def _record_submissions(
        self,
        target_block: int,
        items: tuple[ItemResult, ...],
        b: BuilderResult,
        replacement: str,
        error: str | None = None,
    ) -> None:
        if self.ledger is None:
            return
        for r in items:
            key = (r.action.opportunity_id, target_block, b.name)
            if key in self._submitted:
                continue  # a later version of a backrun bundle: the first submission row stands
            self._submitted.add(key)
            await self.ledger.record_submission(
                Submission(
                    opportunity_id=r.action.opportunity_id,
                    target_block=target_block,
                    builder=b.name,
                    ok=b.ok,
                    bundle_hash=b.bundle_hash,
                    replacement_uuid=replacement,
                    latency_ms=b.latency * 1000,
                    error=error if error is not None else (None if b.error is None else str(b.error)[:500]),
                )
            )

    def _episode_id(self, base_id: str) -> str:
        """The ledger id of this opportunity's current episode. A position liquidated in part (close
        factor) or that went away and came back is a new episode: `id#2`, `id#3`, ..."""
        current = self._episodes.current(base_id)
        while current in self._final:
            current = self._episodes.advance(base_id)
        return current

    async def _record_opportunity(self, action: SubmitBundle) -> None:
        if self.ledger is None or action.opportunity_id in self._recorded:
            return
        self._recorded.add(action.opportunity_id)
        await self.ledger.record_opportunity(ledger_opportunity(action.opportunity_id, action))

    async def _ledger_sim(
        self,
        action: SubmitBundle,
        target_block: int,
        ok: bool,
        profit_wei: int | None,
        gas_used: int | None,
        builder_paid: int | None,
        net: int | None,
        error: str | None,
    ) -> None:
        if self.ledger is None:
            return
        await self.ledger.record_simulation(
            Simulation(
                opportunity_id=action.opportunity_id,
                target_block=target_block,
                ok=ok,
                simulated_profit_wei=None if profit_wei is None else max(profit_wei, 0),
                gas_used=gas_used,
                builder_payment_wei=builder_paid,
                net_profit_wei=net,
                error=error,
            )
        )

    async def _sim_failed(self, action: SubmitBundle, reason: str) -> None:
        self.stats.simulation_failed += 1
        self.stats.count_reason(f"simulation failed: {reason}")
        self._emit("simulation_failed", id=action.opportunity_id, reason=reason, block=action.target_block)
        await self._ledger_sim(action, action.target_block, False, None, None, None, None, reason[:500])
        opp_id = action.opportunity_id
        self._failures[opp_id] = self._failures.get(opp_id, 0) + 1
        if self._failures[opp_id] >= ABANDON_AFTER_FAILED_SIMULATIONS:
            self._final.add(opp_id)
            self._last_target.pop(opp_id, None)
            self._emit("abandoned", id=opp_id, reason=reason)
            if self.ledger is not None:
                await self.ledger.set_status(
                    opp_id,
                    Status.ABANDONED,
                    f"{ABANDON_AFTER_FAILED_SIMULATIONS} failed simulations: {reason}"[:500],
                )

    # -- inclusion ---------------------------------------------------------------------------------------

    def note_block(self, block: NewBlock) -> None:
        """Remembers a header (the parent of the next target block). A lower or equal number than the
        ones held is a reorg: the headers above it are forgotten."""
        for number in [n for n in self._headers if n >= block.number or n < block.number - HEADER_MEMORY]:
            del self._headers[number]
        self._headers[block.number] = block

    async def on_block(self, block: NewBlock) -> None:
        self.note_block(block)
        self._start_nonce_read(block)
        horizon = block.number - HEADER_MEMORY
        self._claimed = {c for c in self._claimed if c[1] >= horizon}
        self._sent_items = {c for c in self._sent_items if c[1] >= horizon}
        self._submitted = {c for c in self._submitted if c[1] >= horizon}
        for old in [t for t in self._backrun_slots if t < horizon]:
            del self._backrun_slots[old]
        for old in [t for t in self._backrun_txs if t < horizon]:
            del self._backrun_txs[old]
        due = [(h, p) for h, p in self.pending.items() if block.number >= p.target_block]
        if due:
            receipts = await self.rpc.batch(
                [("eth_getTransactionReceipt", [h]) for h, _ in due], raise_errors=False
            )
            for (tx_hash, p), receipt in zip(due, receipts, strict=True):
                if isinstance(receipt, JsonRpcError):
                    continue  # read again next block
                del self.pending[tx_hash]
                if isinstance(receipt, dict):
                    await self._included(p, receipt, block.timestamp)
                else:
                    for r in p.items:
                        self.stats.not_included += 1
                        self._emit("not_included", id=r.action.opportunity_id, block=p.target_block)
        waiting = {r.action.opportunity_id for p in self.pending.values() for r in p.items}
        for opp_id, last in list(self._last_target.items()):
            if opp_id in waiting or opp_id in self._final:
                continue
            if last < block.number - GONE_AFTER_BLOCKS:
                self._final.add(opp_id)
                del self._last_target[opp_id]
                self.stats.gone += 1
                self._emit("gone", id=opp_id, block=block.number)
                if self.ledger is not None:
                    await self.ledger.set_status(
                        opp_id, Status.GONE, "no longer liquidatable or profitable (not re-detected)"
                    )

    async def _included(self, p: Pending, receipt: dict[str, Any], block_timestamp: int) -> None:
        success = receipt.get("status") == "0x1"
        events = executor_events(receipt, p.plan.to or None) if success else []
        matched: list[tuple[SubmitBundle, ExecutorEvent | None]] = []
        failures = {f.index: f for f in batch_item_failures(receipt, p.plan.to or None)} if success else {}
        for index, r in enumerate(p.items):
            event = next((e for e in events if _matches(e, r.action.meta)), None)
            if event is not None:
                events.remove(event)
                matched.append((r.action, event))
            elif success:
                # Ran inside the batch and failed alone (e.g. a competitor liquidated it first): it stays
                # open; the strategy re-detects it or it goes away.
                failure = failures.get(index)
                reason = revert_reason(failure.reason, "reverted") if failure is not None else "no event"
                self.stats.failed_in_batch += 1
                self.stats.count_reason(f"failed in an included batch: {reason}")
                self._emit("failed_in_batch", id=r.action.opportunity_id, block=p.target_block, reason=reason)
            else:
                matched.append((r.action, None))
        await self._record_inclusions(matched, receipt, block_timestamp, p.accepted_by)

    async def _record_inclusions(
        self,
        matched: Sequence[tuple[SubmitBundle, ExecutorEvent | None]],
        receipt: Mapping[str, Any],
        block_timestamp: int,
        accepted_by: tuple[str, ...] = (),
    ) -> None:
        """Records the items of one included transaction; its gas is split over them exactly."""
        if not matched:
            return
        success = receipt.get("status") == "0x1"
        gas_used = hex_to_int(receipt["gasUsed"])
        price = hex_to_int(receipt["effectiveGasPrice"])
        number = hex_to_int(receipt["blockNumber"])
        gas_parts = split_gas(gas_used, [item_gas(a) for a, _ in matched])
        for (action, event), gas in zip(matched, gas_parts, strict=True):
            opp_id = action.opportunity_id
            # A subsidized liquidation: minus what the owner paid (report's subsidy counts it as a loss).
            profit = (
                event.realized_profit
                if isinstance(event, LiquidatedEvent)
                else (event.profit if event is not None else 0)
            )
            builder_paid = event.coinbase_paid if event is not None else 0
            num, den = action.profit_to_wei
            profit_wei = profit * num // den
            self.stats.included += 1
            self.stats.realized_profit_wei += profit_wei
            self.stats.gas_spent_wei += gas * price
            self.stats.builder_paid_wei += builder_paid
            self._final.add(opp_id)
            self._last_target.pop(opp_id, None)
            self._emit(
                "included",
                id=opp_id,
                block=number,
                target_block=action.target_block,
                detected_block=int(action.meta.get("detected_block", action.target_block - 1)),
                success=success,
                profit=profit,
                profit_wei=profit_wei,
                gas_wei=gas * price,
                builder_paid_wei=builder_paid,
                backrun=bool(action.meta.get("backrun")),
            )
            if self.ledger is not None:
                await self.ledger.record_inclusion(
                    Inclusion(
                        opportunity_id=opp_id,
                        block_number=number,
                        tx_hash=str(receipt["transactionHash"]),
                        gas_used=gas,
                        effective_gas_price=price,
                        gas_cost_wei=gas * price,
                        builder_payment_wei=builder_paid,
                        realized_profit=profit,
                        realized_profit_asset=action.profit_token or "ETH",
                        included_at=block_timestamp,
                        success=success and event is not None,
                        builder=accepted_by[0] if len(accepted_by) == 1 else None,
                        realized_profit_wei=profit_wei,
                    )
                )

    # -- restart ---------------------------------------------------------------------------------------

    async def _token_to_wei(self, token: str | None) -> tuple[int, int]:
        if self.token_to_wei is None or not token:
            return (1, 1) if not token else (0, 1)
        return await self.token_to_wei(token)

    async def reconcile(self) -> int:
        """Settles what an earlier run left open (killed mid-send, or stopped before its bundles' target
        blocks): opportunities with send claims and no inclusion are looked up in our contract's events
        of their claimed target blocks. Found -> inclusion recorded from the event and the receipt (gas
        split over our items of that transaction); not found and every claimed block mined -> marked
        gone. Episode numbering continues after the ledger's ids. Returns how many were settled."""
        if self.ledger is None:
            return 0
        data = await self.ledger.report_data()
        for opp in data.opportunities:
            base, _, round_ = opp.id.partition("#")
            self._episodes.observe(base, int(round_) if round_.isdigit() else 1)
            if opp.status not in (Status.OPEN, Status.SUBMITTED):
                self._final.add(opp.id)
        open_opps = [o for o in data.opportunities if o.status in (Status.OPEN, Status.SUBMITTED)]
        if not open_opps:
            return 0
        claims = {o.id: [i.target_block for i in await self.ledger.send_intents(o.id)] for o in open_opps}
        claimed = {o.id: o for o in open_opps if claims[o.id]}
        if not claimed:
            return 0
        head = await self.rpc.block_number()
        low = min(min(claims[i]) for i in claimed)
        high = min(max(max(claims[i]) for i in claimed), head)
        events: list[tuple[ExecutorEvent, Mapping[str, Any]]] = []
        if self.executor_address is not None and low <= high:
            logs = await self.rpc.call(
                "eth_getLogs",
                [
                    {
                        "address": self.executor_address,
                        "topics": [[LIQUIDATED_TOPIC, SUBSIDIZED_TOPIC, ARBITRAGED_TOPIC]],
                        "fromBlock": hex(low),
                        "toBlock": hex(high),
                    }
                ],
            )
            events = executor_logs(logs or [])
        by_tx: dict[str, list[tuple[SubmitBundle, ExecutorEvent]]] = {}
        settled = 0
        for opp_id, opp in claimed.items():
            blocks = set(claims[opp_id])
            # An arbitrage's event carries the tag of its target block; a liquidation's, its position.
            tags = {"0x" + arbitrage_tag(opp_id, b).hex(): b for b in blocks}
            found = next(
                (
                    (e, entry)
                    for e, entry in events
                    if hex_to_int(entry["blockNumber"]) in blocks
                    and (
                        (isinstance(e, ArbitragedEvent) and e.tag_hex in tags)
                        or _matches(
                            e,
                            {
                                "user": opp.user,
                                "collateral_asset": opp.collateral_asset,
                                "debt_asset": opp.debt_asset,
                            },
                        )
                    )
                ),
                None,
            )
            if found is not None:
                event, entry = found
                events.remove(found)
                if isinstance(event, ArbitragedEvent):
                    meta: dict[str, Any] = {"tag": event.tag_hex}
                    token = event.token
                else:
                    meta = {
                        "user": opp.user,
                        "collateral_asset": opp.collateral_asset,
                        "debt_asset": opp.debt_asset,
                    }
                    token = opp.debt_asset or ""
                action = SubmitBundle(
                    opportunity_id=opp_id,
                    strategy=opp.strategy,
                    target_block=hex_to_int(entry["blockNumber"]),
                    txs=(),
                    expected_profit_wei=opp.expected_profit,
                    profit_token=token,
                    profit_to_wei=await self._token_to_wei(token),
                    meta=meta,
                )
                by_tx.setdefault(str(entry["transactionHash"]), []).append((action, event))
            elif max(blocks) <= head:
                self._final.add(opp_id)
                settled += 1
                await self.ledger.set_status(
                    opp_id, Status.GONE, "not included in its claimed target blocks (found on restart)"
                )
        if by_tx:
            hashes = list(by_tx)
            receipts = await self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
            blocks_ts: dict[int, int] = {}
            for tx_hash, receipt in zip(hashes, receipts, strict=True):
                number = hex_to_int(receipt["blockNumber"])
                if number not in blocks_ts:
                    header = await self.rpc.call("eth_getBlockByNumber", [hex(number), False])
                    blocks_ts[number] = hex_to_int(header["timestamp"])
                items = by_tx[tx_hash]
                await self._record_inclusions(list(items), receipt, blocks_ts[number])
                settled += len(items)
        self.stats.reconciled += settled
        if settled:
            log.info("ledger reconciled with the chain", extra=kv(settled=settled))
        return settled


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Done callback of a background read or claim: a failure nobody awaited is logged (a nonce read's
    reader falls back to a read of its own; an awaited claim raises where it is awaited)."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("background task failed", extra=kv(task=task.get_name(), error=str(task.exception())[:200]))


class _CompanionFailed(Exception):
    """A transaction of ours already sent for the block fails when carried behind a backrun's target."""


def _all_items_succeed(plan: TxPlan, result: TxResult) -> bool:
    if not result.success or result.value is None:
        return False
    if not plan.batched:
        return True
    try:
        return all(ok for ok, _ in decode_batch_result(result.value))
    except (KeeperError, ValueError):
        return False


def bundle_jobs(plans: Sequence[TxPlan]) -> list[list[TxPlan]]:
    """Plans that must travel in one bundle: those backrunning the same foreign transactions (a second
    bundle carrying the same transaction could never land next to the first); every other plan is a
    bundle of its own."""
    jobs: list[list[TxPlan]] = []
    by_prefix: dict[tuple[int, tuple[bytes, ...]], list[TxPlan]] = {}
    for plan in plans:
        if not plan.prefix:
            jobs.append([plan])
            continue
        key = (plan.target_block, tuple(f.hash for f in plan.prefix))
        if key not in by_prefix:
            by_prefix[key] = []
            jobs.append(by_prefix[key])
        by_prefix[key].append(plan)
    return jobs


def _last_intent(action: SubmitBundle) -> TxIntent | None:
    tx = action.txs[-1] if action.txs else None
    return tx if isinstance(tx, TxIntent) else None


def _intent(action: SubmitBundle) -> TxIntent:
    """The action's own call (the last transaction of its bundle; what comes before it is foreign)."""
    tx = action.txs[-1] if action.txs else None
    if not isinstance(tx, TxIntent):
        raise KeeperError("the bundle does not end with one of our transactions")
    return tx


def ledger_opportunity(opportunity_id: str, action: SubmitBundle | SendTx) -> LedgerOpportunity:
    """The ledger's record of an action's opportunity (first sighting), from the action's `meta`."""
    m: Mapping[str, Any] = action.meta if isinstance(action, SubmitBundle) else {}
    target = action.target_block if isinstance(action, SubmitBundle) else 0
    return LedgerOpportunity(
        id=opportunity_id,
        strategy=action.strategy,
        protocol=str(m.get("protocol", "")),
        detected_block=int(m.get("detected_block", max(target - 1, 0))),
        detected_block_timestamp=int(m.get("block_timestamp", 0)),
        expected_profit=max(action.expected_profit_wei, 0),
        user=m.get("user"),
        collateral_asset=m.get("collateral_asset"),
        debt_asset=m.get("debt_asset"),
        debt_to_cover=m.get("debt_to_cover"),
        expected_collateral=m.get("collateral_out"),
    )
