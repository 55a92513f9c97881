"""Bundles: price, sign, simulate at the relay, send to every builder, and follow what happens.

For each `SubmitBundle` (one target block):
1. record the opportunity in the ledger (first sighting only);
2. price the tx for the target block: the exact next base fee from the parent header, no priority fee
   (the builder is paid from inside our contract, after its profit check). The gas limit is the intent's,
   or `gas_limit` (a fixed ceiling, 3M by default: we pay gas used, never the limit, so a generous limit
   costs nothing and saves an `eth_estimateGas`, which was more than half of the block-to-bundle time).
   The nonce, the head (an action whose target block is already mined is stale: nothing is sent) and,
   unless `on_block` already delivered it, the parent header go out in one JSON-RPC batch;
3. sign and simulate with `eth_callBundle` at the first relay: the authority. Our executor call returns
   (profit in the profit token, builder payment in wei); net = profit in wei - gas cost at the target
   base fee. A failed simulation, or a net below the minimum, means nothing is sent;
4. claim (opportunity, target block) in the ledger, durably, BEFORE sending: a restart (even after
   SIGKILL) never sends the same opportunity for the same block twice;
5. send the same signed body to every builder in parallel; record each builder's answer and latency.
Several opportunities in one block go out as independent bundles from different senders (the owner and
the contract's operators), each with its own nonce, so one landing never invalidates another.
Each new block (`on_block`), pending bundles are checked: included -> realized P&L from the receipt (our
contract's Liquidated event: profit and builder payment; gas used x effective price); not included ->
dropped, and the strategy's next action for that opportunity is simulated afresh; an opportunity the
strategy stopped reporting is marked gone, with zero gas spent on it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from eth_abi.abi import decode

from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.chain.signer import Eip1559Tx, SignedTx, TxSigner
from keeper.core.actions import Action, SendTx, SubmitBundle, TxIntent
from keeper.core.events import NewBlock
from keeper.errors import JsonRpcError, KeeperError, RelayError
from keeper.executors.bundles import MultiBuilderClient
from keeper.executors.episodes import Episodes
from keeper.executors.executor_contract import decode_executor_error, liquidated_events
from keeper.executors.fees import next_base_fee, next_base_fee_from_header
from keeper.ledger import Inclusion, Ledger, Simulation, Status, Submission
from keeper.ledger import Opportunity as LedgerOpportunity
from keeper.logs import kv

log = logging.getLogger("keeper.executors.bundles")

DEFAULT_GAS_LIMIT = 3_000_000
"""Gas limit when the intent has none: above any liquidation (~650k-950k); gas used is what is paid."""
GONE_AFTER_BLOCKS = 2
ABANDON_AFTER_FAILED_SIMULATIONS = 5
HEADER_MEMORY = 8
"""Headers kept for pricing (the parent of a target block is the newest one or close)."""


@dataclass
class Pending:
    action: SubmitBundle
    signed: SignedTx
    simulated_profit: int
    builder_payment_wei: int
    gas_used: int
    accepted_by: tuple[str, ...] = ()
    """Builders (URLs) that accepted the bundle: when only one did, an inclusion is theirs."""


@dataclass
class ExecutorStats:
    actions: int = 0
    simulated: int = 0
    simulation_failed: int = 0
    stale: int = 0
    """Actions whose target block was already mined when they reached the executor (nothing sent)."""
    below_minimum: int = 0
    duplicate: int = 0
    sent: int = 0
    included: int = 0
    not_included: int = 0
    gone: int = 0
    realized_profit_wei: int = 0
    gas_spent_wei: int = 0
    builder_paid_wei: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def count_reason(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def _reason_from_revert(data: bytes, message: str) -> str:
    decoded = decode_executor_error(data)
    if decoded is not None:
        name, args = decoded
        return f"{name}{args}" if args else name
    return message or "execution reverted"


class BundleExecutor:
    name = "bundles"

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
        gas_limit: int = DEFAULT_GAS_LIMIT,
    ) -> None:
        if not signers:
            raise ValueError("the bundle executor needs at least one signer")
        self.gas_limit = gas_limit
        self.rpc = rpc
        self.signers = list(signers)
        self.builders = builders
        self.chain_id = chain_id
        self.min_profit_wei = min_profit_wei
        self.ledger = ledger
        self.dry_run = dry_run
        self.on_event = on_event
        self.stats = ExecutorStats()
        self.pending: dict[str, Pending] = {}
        """tx hash -> what we sent"""
        self._last_target: dict[str, int] = {}
        self._recorded: set[str] = set()
        self._final: set[str] = set()
        self._episodes = Episodes()
        self._failures: dict[str, int] = {}
        self._slots: dict[int, int] = {}
        """target block -> next signer index: each opportunity of a block gets its own sender (nonce)."""
        self._headers: dict[int, NewBlock] = {}
        """Recent headers by number (from `on_block`): the parent of a target block, without a read."""
        self.last_timings: dict[str, float] = {}
        """Seconds per step of the last `execute`: prepare (estimate, nonce, parent header: one round
        trip), sign, simulate (eth_callBundle at the relay), claim (ledger), send (every builder)."""

    def _emit(self, kind: str, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(kind, data)

    # -- actions ---------------------------------------------------------------------------------------

    async def execute(self, action: Action) -> None:
        if not isinstance(action, SubmitBundle):
            return
        self.stats.actions += 1
        opp_id = self._episode_id(action.opportunity_id)
        if opp_id != action.opportunity_id:
            action = replace(action, opportunity_id=opp_id)
        self._last_target[opp_id] = max(action.target_block, self._last_target.get(opp_id, 0))
        await self._record_opportunity(action)
        if len(action.txs) != 1 or not isinstance(action.txs[0], TxIntent):
            raise KeeperError("BundleExecutor sends bundles of exactly one of our own transactions")
        intent = action.txs[0]
        signer = self._signer_for(action.target_block)
        t0 = time.perf_counter()
        # One round trip: the nonce and, unless the parent (the block the action was built from) was
        # already seen by `on_block`, the parent header.
        parent_block = self._headers.get(action.target_block - 1)
        calls: list[tuple[str, Any]] = []
        if parent_block is None:
            calls.append(("eth_getBlockByNumber", [hex(action.target_block - 1), False]))
        calls.append(("eth_getTransactionCount", [signer.address, "latest"]))
        calls.append(("eth_blockNumber", []))
        replies = await self.rpc.batch(calls, raise_errors=False)
        counted, head = replies[-2], replies[-1]
        if isinstance(head, JsonRpcError):
            raise head
        if hex_to_int(head) >= action.target_block:
            # The target block is already mined: a bundle for it can never land (and a relay simulates
            # "as if in the target block", so it would not say so). The strategy acts on the new block.
            self.stats.stale += 1
            self.stats.count_reason("stale: the target block was already mined")
            self._emit("stale", id=opp_id, block=action.target_block)
            return
        if parent_block is None:
            parent = replies[0]
            if isinstance(parent, JsonRpcError):
                raise parent
            if not isinstance(parent, dict):
                await self._sim_failed(action, "target block's parent not found (stale action)")
                return
            base_fee = next_base_fee_from_header(parent)
        else:
            base_fee = next_base_fee(
                parent_block.base_fee_per_gas, parent_block.gas_used, parent_block.gas_limit
            )
        if isinstance(counted, JsonRpcError):
            raise counted
        nonce = hex_to_int(counted)
        t1 = time.perf_counter()
        signed = signer.sign(
            Eip1559Tx(
                chain_id=self.chain_id,
                nonce=nonce,
                max_priority_fee_per_gas=0,
                max_fee_per_gas=base_fee,
                gas=intent.gas_limit or self.gas_limit,
                to=intent.to,
                value=intent.value,
                data=intent.data,
            )
        )
        t2 = time.perf_counter()
        self.last_timings = {"prepare": t1 - t0, "sign": t2 - t1}
        try:
            sim = await self.builders.clients[0].call_bundle([signed.raw], action.target_block)
        except RelayError as exc:
            await self._sim_failed(action, f"eth_callBundle failed: {exc}")
            return
        t3 = time.perf_counter()
        self.last_timings["simulate"] = t3 - t2
        self.stats.simulated += 1
        result = sim.results[0]
        if not result.success or result.value is None:
            await self._sim_failed(action, _reason_from_revert(result.revert or b"", result.error or ""))
            return
        profit, builder_paid = (int(x) for x in decode(["uint256", "uint256"], result.value))
        num, den = action.profit_to_wei
        profit_wei = profit * num // den
        gas_cost = result.gas_used * base_fee
        net = profit_wei - gas_cost
        minimum = action.min_profit_wei if action.min_profit_wei is not None else self.min_profit_wei
        await self._ledger_sim(
            action, True, profit_wei + builder_paid, result.gas_used, builder_paid, net, None
        )
        if net < minimum:
            self.stats.below_minimum += 1
            self.stats.count_reason("below minimum after simulation")
            self._emit("below_minimum", id=opp_id, net_wei=net, minimum=minimum, block=action.target_block)
            return
        if self.dry_run:
            self._emit("dry_run", id=opp_id, net_wei=net, block=action.target_block)
            return
        if self.ledger is not None and not await self.ledger.claim_send(opp_id, action.target_block):
            self.stats.duplicate += 1
            return
        started = time.perf_counter()
        self.last_timings["claim"] = started - t3
        outcomes = await self.builders.send_bundle_for_blocks(
            [signed.raw], action.target_block, 1, replacement_uuid=uuid.uuid5(uuid.NAMESPACE_URL, opp_id)
        )
        self.last_timings["send"] = time.perf_counter() - started
        results = outcomes[action.target_block]
        self.stats.sent += 1
        self.pending[signed.hash_hex] = Pending(
            action, signed, profit, builder_paid, result.gas_used, tuple(r.url for r in results if r.ok)
        )
        self._emit(
            "sent",
            id=opp_id,
            block=action.target_block,
            net_wei=net,
            builder_paid_wei=builder_paid,
            builders=sum(1 for r in results if r.ok),
            ms=(time.perf_counter() - started) * 1000,
        )
        if self.ledger is not None:
            for r in results:
                await self.ledger.record_submission(
                    Submission(
                        opportunity_id=opp_id,
                        target_block=action.target_block,
                        builder=r.url,
                        ok=r.ok,
                        bundle_hash=r.bundle_hash,
                        replacement_uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, opp_id)),
                        latency_ms=r.latency * 1000,
                        error=None if r.error is None else str(r.error)[:500],
                    )
                )
        log.info(
            "bundle sent",
            extra=kv(
                id=opp_id, block=action.target_block, net_wei=net, builders=sum(1 for r in results if r.ok)
            ),
        )

    def _episode_id(self, base_id: str) -> str:
        """The ledger id of this opportunity's current episode. A position liquidated in part (close
        factor) or that went away and came back is a new episode: `id#2`, `id#3`, ..."""
        current = self._episodes.current(base_id)
        return self._episodes.advance(base_id) if current in self._final else current

    def _signer_for(self, target_block: int) -> TxSigner:
        for block in [b for b in self._slots if b < target_block - 1]:
            del self._slots[block]
        index = self._slots.get(target_block, 0)
        self._slots[target_block] = index + 1
        return self.signers[index % len(self.signers)]

    async def _record_opportunity(self, action: SubmitBundle) -> None:
        if self.ledger is None or action.opportunity_id in self._recorded:
            return
        self._recorded.add(action.opportunity_id)
        await self.ledger.record_opportunity(ledger_opportunity(action.opportunity_id, action))

    async def _ledger_sim(
        self,
        action: SubmitBundle,
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
                target_block=action.target_block,
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
        await self._ledger_sim(action, False, None, None, None, None, reason[:500])
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
        for tx_hash, p in list(self.pending.items()):
            if block.number < p.action.target_block:
                continue
            receipt = await self.rpc.call("eth_getTransactionReceipt", [tx_hash])
            if receipt is not None:
                await self._included(p, receipt, block)
                del self.pending[tx_hash]
            elif block.number >= p.action.target_block:
                self.stats.not_included += 1
                self._emit("not_included", id=p.action.opportunity_id, block=p.action.target_block)
                del self.pending[tx_hash]
        waiting = {p.action.opportunity_id for p in self.pending.values()}
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

    async def _included(self, p: Pending, receipt: dict[str, Any], block: NewBlock) -> None:
        opp_id = p.action.opportunity_id
        success = receipt.get("status") == "0x1"
        gas_used = hex_to_int(receipt["gasUsed"])
        price = hex_to_int(receipt["effectiveGasPrice"])
        events = liquidated_events(receipt) if success else []
        profit = sum(e.profit for e in events)
        builder_paid = sum(e.coinbase_paid for e in events)
        num, den = p.action.profit_to_wei
        profit_wei = profit * num // den
        self.stats.included += 1
        self.stats.realized_profit_wei += profit_wei
        self.stats.gas_spent_wei += gas_used * price
        self.stats.builder_paid_wei += builder_paid
        self._final.add(opp_id)
        self._last_target.pop(opp_id, None)
        number = hex_to_int(receipt["blockNumber"])
        self._emit(
            "included",
            id=opp_id,
            block=number,
            success=success,
            profit=profit,
            profit_wei=profit_wei,
            gas_wei=gas_used * price,
            builder_paid_wei=builder_paid,
        )
        if self.ledger is not None:
            await self.ledger.record_inclusion(
                Inclusion(
                    opportunity_id=opp_id,
                    block_number=number,
                    tx_hash=str(receipt["transactionHash"]),
                    gas_used=gas_used,
                    effective_gas_price=price,
                    gas_cost_wei=gas_used * price,
                    builder_payment_wei=builder_paid,
                    realized_profit=profit,
                    realized_profit_asset=p.action.profit_token or "ETH",
                    included_at=block.timestamp,
                    success=success,
                    builder=p.accepted_by[0] if len(p.accepted_by) == 1 else None,
                    realized_profit_wei=profit_wei,
                )
            )


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


class BlockAware(Protocol):
    async def on_block(self, block: NewBlock) -> None: ...


class InclusionTracker:
    """Feeds every new block to an executor that follows its transactions (the engine delivers events
    to strategies only): the bundle executor, or the single-transaction one of protocol-keeper mode."""

    def __init__(self, executor: BlockAware, *, name: str = "inclusion") -> None:
        self.executor = executor
        self.name = name

    async def sync_state(self) -> None:
        return None

    async def process_event(self, event: object) -> list[Action]:
        if isinstance(event, NewBlock):
            await self.executor.on_block(event)
        return []
