"""Pack a block's bundle actions into transactions: several opportunities per transaction, a gas budget
per block, one transaction per sender.

Why: after a crash a hundred positions become liquidatable at once. One transaction per opportunity and
one bundle per sender key per block made the number of keys the cap (6 a block; 20 blocks to work through
121 positions, competitors took the rest). Here every batchable action of a target block (a `TxIntent`
with `batchable=True`: a call our executor contract can run inside `batch(bytes[])`) is packed, in the
order the strategy ranked them, into as few transactions as the per-transaction gas cap allows, and the
block's total stops at the gas budget. Inside a batch each item fails alone (the contract's per-item
skip), so a position a competitor took first does not sink the others.

Each transaction gets its own sender (its own nonce), so two bundles of ours never conflict on a nonce
and each lands or fails on its own. A backrun (someone else's signed transactions first, then one
batchable call of ours: e.g. a pending oracle update and the liquidations it makes possible) is packed
the same way with the other backruns of the same transactions; the executor then sends all the
transactions of one backrun as ONE bundle, right after the foreign ones (a second bundle carrying the
same foreign transaction could never land next to the first).
Actions that cannot be batched otherwise get a transaction plan of their own.

Pure: no I/O, no clock. `BlockSlots` remembers, per target block, the senders and gas already used by
earlier groups for the same block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from keeper.core.actions import ForeignTx, HintedTx, SubmitBundle, TxIntent

MAX_TX_GAS = 16_000_000
"""Per-transaction gas cap (EIP-7825 caps a transaction at 2**24 = 16,777,216)."""
DEFAULT_ITEM_GAS = 1_000_000
"""Gas assumed for an item whose intent states no estimate."""
BATCH_OVERHEAD_GAS = 60_000
"""The batch call itself: calldata copying and one self-call frame per item (measured: see
benchmarks/README.md); added once per transaction."""
GAS_LIMIT_HEADROOM_BPS = 12_500
"""Gas limit = 125% of the estimate (we pay gas used, never the limit; the simulation proves it fits)."""
BPS = 10_000


@dataclass(frozen=True, slots=True)
class TxPlan:
    """One transaction of ours for `target_block`: a plain call (one item) or `batch(items)`."""

    target_block: int
    sender_index: int
    items: tuple[SubmitBundle, ...]
    to: str
    gas_estimate: int
    """Expected gas used (the sum of the items' estimates, plus the batch overhead when batched)."""
    gas_limit: int
    prefix: tuple[ForeignTx | HintedTx, ...] = ()
    """Someone else's transactions the bundle carries before ours (what the items backrun): signed
    bytes, or a private transaction's hash (a MEV-Share backrun)."""

    @property
    def batched(self) -> bool:
        """Several items go through `batch(bytes[])`; a single one is a plain call."""
        return len(self.items) > 1


@dataclass(frozen=True, slots=True)
class Skipped:
    action: SubmitBundle
    reason: str


@dataclass
class BlockSlots:
    """Per target block: senders taken and gas committed by earlier groups for that block."""

    senders: int
    gas_budget: int
    used_senders: dict[int, int] = field(default_factory=dict)
    used_gas: dict[int, int] = field(default_factory=dict)

    def forget_before(self, block: int) -> None:
        for b in [b for b in self.used_senders if b < block]:
            del self.used_senders[b]
        for b in [b for b in self.used_gas if b < block]:
            del self.used_gas[b]


def prefix_of(action: SubmitBundle) -> tuple[ForeignTx | HintedTx, ...]:
    """The foreign transactions an action's bundle starts with (what it backruns)."""
    out: list[ForeignTx | HintedTx] = []
    for tx in action.txs:
        if not isinstance(tx, ForeignTx | HintedTx):
            break
        out.append(tx)
    return tuple(out)


def _batchable(action: SubmitBundle) -> TxIntent | None:
    """The action's one call of ours when it can share a batch: a batchable intent, alone or after the
    foreign transactions it backruns."""
    prefix = prefix_of(action)
    rest = action.txs[len(prefix) :]
    if len(rest) == 1 and isinstance(rest[0], TxIntent) and rest[0].batchable:
        return rest[0]
    return None


def item_gas(action: SubmitBundle) -> int:
    gas = 0
    for tx in action.txs:
        if isinstance(tx, TxIntent):
            gas += tx.gas_estimate or tx.gas_limit or DEFAULT_ITEM_GAS
    return gas or DEFAULT_ITEM_GAS


def gas_limit_for(estimate: int, max_tx_gas: int) -> int:
    return min(estimate * GAS_LIMIT_HEADROOM_BPS // BPS, max_tx_gas)


def _fits_one_tx(gas: int, max_tx_gas: int) -> bool:
    return gas_limit_for(gas, 2**63) <= max_tx_gas


def _estimate(items: int, gas: int) -> int:
    return gas + (BATCH_OVERHEAD_GAS if items > 1 else 0)


NO_SENDER = "no free sender for this block (each sender sends one transaction per block)"
OVER_BUDGET = "over the block's gas budget"
TOO_BIG = "needs more gas than one transaction may use"


@dataclass
class _BlockPacker:
    block: int
    used: int
    next_sender: int
    senders: int
    gas_budget: int
    max_tx_gas: int
    plans: list[TxPlan] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    current: list[SubmitBundle] = field(default_factory=list)
    current_gas: int = 0
    current_to: str = ""
    current_prefix: tuple[ForeignTx | HintedTx, ...] = ()

    def close(self) -> None:
        if self.current:
            estimate = _estimate(len(self.current), self.current_gas)
            self.plans.append(
                TxPlan(
                    self.block,
                    self.next_sender,
                    tuple(self.current),
                    self.current_to,
                    estimate,
                    gas_limit_for(estimate, self.max_tx_gas),
                    self.current_prefix,
                )
            )
            self.next_sender += 1
            self.used += estimate
        self.current, self.current_gas, self.current_prefix = [], 0, ()

    def add(self, action: SubmitBundle) -> None:
        gas = item_gas(action)
        intent = _batchable(action)
        prefix = prefix_of(action)
        joins = intent is not None and self.current and intent.to == self.current_to
        joins = joins and prefix == self.current_prefix
        if joins and _fits_one_tx(self.current_gas + gas + BATCH_OVERHEAD_GAS, self.max_tx_gas):
            if self.used + _estimate(len(self.current) + 1, self.current_gas + gas) > self.gas_budget:
                self.skipped.append(Skipped(action, OVER_BUDGET))
            else:
                self.current.append(action)
                self.current_gas += gas
            return
        self.close()
        if self.next_sender >= self.senders:
            self.skipped.append(Skipped(action, NO_SENDER))
        elif self.used + gas > self.gas_budget:
            self.skipped.append(Skipped(action, OVER_BUDGET))
        elif not _fits_one_tx(gas, self.max_tx_gas):
            self.skipped.append(Skipped(action, TOO_BIG))
        elif intent is None:
            ours = [tx for tx in action.txs if isinstance(tx, TxIntent)]
            to = ours[0].to if ours else ""
            self.plans.append(
                TxPlan(
                    self.block,
                    self.next_sender,
                    (action,),
                    to,
                    gas,
                    gas_limit_for(gas, self.max_tx_gas),
                    prefix,
                )
            )
            self.next_sender += 1
            self.used += gas
        else:
            self.current, self.current_gas, self.current_to = [action], gas, intent.to
            self.current_prefix = prefix


def pack(
    actions: Sequence[SubmitBundle], slots: BlockSlots, *, max_tx_gas: int
) -> tuple[list[TxPlan], list[Skipped]]:
    """Transactions for `actions` (kept in the given order within each target block) and the actions
    left out (over the block's gas budget, no free sender, or too big for one transaction)."""
    plans: list[TxPlan] = []
    skipped: list[Skipped] = []
    by_block: dict[int, list[SubmitBundle]] = {}
    for action in actions:
        by_block.setdefault(action.target_block, []).append(action)
    for block, group in by_block.items():
        packer = _BlockPacker(
            block,
            slots.used_gas.get(block, 0),
            slots.used_senders.get(block, 0),
            slots.senders,
            slots.gas_budget,
            max_tx_gas,
        )
        for action in group:
            packer.add(action)
        packer.close()
        plans += packer.plans
        skipped += packer.skipped
        slots.used_gas[block] = packer.used
        slots.used_senders[block] = packer.next_sender
    return plans, skipped
