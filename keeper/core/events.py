"""Events flowing from collectors to strategies. Decoded once, immutable, shared by every strategy."""

from __future__ import annotations

from dataclasses import dataclass, field

from keeper.chain.mevshare import MevShareHint


@dataclass(frozen=True, slots=True)
class NewBlock:
    """A block header. `reorged` is True when this block replaced one we had already announced."""

    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int
    base_fee_per_gas: int
    gas_limit: int = 30_000_000
    gas_used: int = 0
    miner: str = ""
    reorged: bool = False
    received_at_ns: int = 0
    """Monotonic clock (ns) when the header was read off the socket; for latency metrics only."""


@dataclass(frozen=True, slots=True)
class PendingTx:
    """A transaction seen in the mempool, fully decoded. `raw` is its signed RLP when known."""

    hash: bytes
    sender: str
    to: str | None
    input: bytes
    value: int
    nonce: int
    gas: int
    tx_type: int = 2
    gas_price: int | None = None
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    chain_id: int | None = None
    raw: bytes | None = None
    received_at_ns: int = 0

    @property
    def selector(self) -> bytes:
        return self.input[:4]


@dataclass(frozen=True, slots=True)
class LogEntry:
    address: str
    topics: tuple[bytes, ...]
    data: bytes
    block_number: int
    block_hash: bytes
    transaction_hash: bytes
    log_index: int
    transaction_index: int = 0
    removed: bool = False


@dataclass(frozen=True, slots=True)
class Logs:
    """Logs of one block (or the removal of a reorged block's logs when `removed` is set on entries)."""

    block_number: int
    block_hash: bytes
    entries: tuple[LogEntry, ...] = field(default_factory=tuple)


Event = NewBlock | PendingTx | Logs | MevShareHint
"""What collectors publish. `MevShareHint` (keeper.chain.mevshare) is someone's private transaction seen
only as a hint: it has no sender, nonce or signed bytes, so it can be backrun by hash only."""

__all__ = ["Event", "LogEntry", "Logs", "MevShareHint", "NewBlock", "PendingTx"]
