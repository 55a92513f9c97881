"""Row types of the ledger: one frozen dataclass per table, used both to write and to read.

Amounts are Python ints (wei or token base units, any size, may be negative where a profit can be a
loss); the store keeps them as TEXT decimal strings (see `keeper.ledger.schema`). Fields the ledger fills
itself (wall-clock times) default to None on the way in and are always set on rows read back.

Times: `*_block_timestamp` / `included_at` are block timestamps (seconds, from the chain: the only time a
replay or backtest can reproduce); `*_ms` fields are wall-clock Unix milliseconds taken by the ledger
when the row was recorded (for the audit trail and latency, never for P&L grouping).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from keeper.errors import KeeperError

ETH = "ETH"
"""`*_asset` value for amounts in wei (ETH or WETH); otherwise the token's checksummed address."""

MAX_AMOUNT_DIGITS = 78
"""uint256 max has 78 decimal digits; amounts are checked against +/- (2**256 - 1)."""
_AMOUNT_LIMIT = 2**256


class LedgerError(KeeperError):
    """The ledger could not store or read something (bad value, constraint, I/O, closed ledger)."""


class LedgerWriteErrors(LedgerError):
    """Raised on close when fire-and-forget writes failed; `count` of them, `first` the first message."""

    def __init__(self, count: int, first: str) -> None:
        self.count = count
        self.first = first
        super().__init__(f"{count} ledger write(s) failed; first: {first}")


class Status(StrEnum):
    """Life of an opportunity. `open`/`submitted` are live; the others are final."""

    OPEN = "open"
    SUBMITTED = "submitted"
    INCLUDED = "included"
    GONE = "gone"
    """The position is no longer liquidatable (repaid, healthy again, or liquidated by someone else)."""
    ABANDONED = "abandoned"
    """We stopped trying (unprofitable at current gas, too many blocks, kill switch, guardrail)."""
    FAILED = "failed"
    """Our transaction was included but reverted, or a non-retryable error."""


LIVE_STATUSES = frozenset({Status.OPEN, Status.SUBMITTED})
FINAL_STATUSES = frozenset(Status) - LIVE_STATUSES


def check_amount(value: int, name: str) -> int:
    """`value` if it is an int (not a bool) within +/- (2**256 - 1); raises LedgerError otherwise."""
    if type(value) is not int:
        raise LedgerError(f"{name} must be an int amount in base units, got {type(value).__name__}")
    if not -_AMOUNT_LIMIT < value < _AMOUNT_LIMIT:
        raise LedgerError(f"{name} is outside +/- 2**256")
    return value


@dataclass(frozen=True, slots=True)
class Opportunity:
    """A detected opportunity. Liquidation fields are None for strategies that are not liquidations."""

    id: str
    strategy: str
    protocol: str
    """Protocol or venue, e.g. "aave_v3"."""
    detected_block: int
    detected_block_timestamp: int
    expected_profit: int
    """Gross expected profit (before gas and builder payment) in `expected_profit_asset` base units."""
    expected_profit_asset: str = ETH
    user: str | None = None
    collateral_asset: str | None = None
    debt_asset: str | None = None
    debt_to_cover: int | None = None
    """Debt-asset base units."""
    expected_collateral: int | None = None
    """Collateral-asset base units (including the liquidation bonus)."""
    status: Status = Status.OPEN
    status_reason: str | None = None
    detected_at_ms: int | None = None
    """Wall clock when recorded (filled by the ledger)."""
    updated_at_ms: int | None = None
    """Wall clock of the last status change (filled by the ledger)."""


@dataclass(frozen=True, slots=True)
class Simulation:
    """One simulation of the bundle for `target_block` (`eth_callBundle` or a local fork)."""

    opportunity_id: str
    target_block: int
    ok: bool
    simulated_profit_wei: int | None = None
    """Gross profit seen in the simulation (before gas and builder payment)."""
    gas_used: int | None = None
    builder_payment_wei: int | None = None
    net_profit_wei: int | None = None
    """simulated profit - gas cost - builder payment, as priced for the target block."""
    error: str | None = None
    simulated_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class SendIntent:
    """The crash-safety record: (opportunity, target block) claimed before anything is signed or sent."""

    opportunity_id: str
    target_block: int
    claimed_at_ms: int
    pid: int


@dataclass(frozen=True, slots=True)
class Submission:
    """One bundle (or tx) sent to one builder for one target block."""

    opportunity_id: str
    target_block: int
    builder: str
    """The builder's identity (`keeper.executors.builder_identity`): the name given with `name=url`, or
    the redacted URL (`https://rpc.titanbuilder.xyz`, `http://10.0.0.5:8546/…`); a URL that may carry a
    secret is refused. Rows written before schema v3 hold a host name."""
    ok: bool
    """The builder accepted it (not: it was included)."""
    bundle_hash: str | None = None
    replacement_uuid: str | None = None
    latency_ms: float | None = None
    error: str | None = None
    sent_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Inclusion:
    """Our transaction found on chain, with what it actually cost and earned.

    P&L convention (what the report relies on):
    - `gas_cost_wei` = gas_used * effective_gas_price: paid in ETH by the sending account (includes the
      priority fee, so a builder paid through the tip is counted here).
    - `builder_payment_wei`: the coinbase transfer made from inside our executor contract.
    - `realized_profit` = the balance change of our executor contract/owner in `realized_profit_asset`
      caused by the transaction, so it is already net of `builder_payment_wei` but not of gas.
    - Net P&L in wei = realized_profit - gas_cost_wei (for ETH-denominated profit).
    A reverted transaction (`success=False`) has realized_profit 0 (or the actual delta) and a gas cost.
    """

    opportunity_id: str
    block_number: int
    tx_hash: str
    gas_used: int
    effective_gas_price: int
    gas_cost_wei: int
    builder_payment_wei: int
    realized_profit: int
    included_at: int
    """Block timestamp (seconds)."""
    realized_profit_asset: str = ETH
    success: bool = True
    builder: str | None = None
    """Identity of the builder that built the block, when known (for per-builder inclusion rates); the
    same identity as in its `Submission` rows."""
    realized_profit_wei: int | None = None
    """`realized_profit` valued in wei at the oracle prices the opportunity was priced with (None: not
    valued). The exact balance change stays in `realized_profit` / `realized_profit_asset`."""
    recorded_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One entry of the audit trail of status changes (`opportunity_events`)."""

    opportunity_id: str
    status: Status
    reason: str | None
    at_ms: int
    applied: bool
    """False when the change was refused (a final status is sticky)."""


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the report needs, read in one consistent snapshot."""

    opportunities: tuple[Opportunity, ...]
    submissions: tuple[Submission, ...]
    inclusions: tuple[Inclusion, ...]
    simulations_ok: int
    simulations_failed: int
