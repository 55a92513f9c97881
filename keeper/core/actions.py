"""Actions flowing from strategies to executors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, slots=True)
class TxIntent:
    """An unsigned call for the executor to price, sign and send from our key."""

    to: str
    data: bytes
    value: int = 0
    gas_limit: int | None = None
    gas_estimate: int | None = None
    """Gas the call is expected to use: what the executor counts against the block's gas budget."""
    batchable: bool = False
    """The call may run inside `batch(bytes[])` of the contract at `to` (our executor contract), together
    with other batchable calls to the same contract for the same block: one transaction, several
    opportunities, each item failing alone (see `keeper.executors.packing`)."""


@dataclass(frozen=True, slots=True)
class ForeignTx:
    """Someone else's signed transaction placed in our bundle (e.g. the pending oracle update we back-run)."""

    raw: bytes
    hash: bytes
    may_revert: bool = False


@dataclass(frozen=True, slots=True)
class HintedTx:
    """Someone else's private transaction known only by its hash (a MEV-Share hint): a bundle that starts
    with it is a backrun by hash, sent with `mev_sendBundle` to MEV-Share endpoints, which place it right
    after the hinted transaction (or drop it)."""

    hash: bytes


BundleTx = TxIntent | ForeignTx | HintedTx


@dataclass(frozen=True, slots=True)
class SubmitBundle:
    """Submit `txs` atomically for `target_block`. `expected_profit_wei` is before gas and bribe."""

    opportunity_id: str
    strategy: str
    target_block: int
    txs: tuple[BundleTx, ...]
    expected_profit_wei: int
    min_profit_wei: int | None = None
    """Overrides the configured minimum for this action (protocol-keeper mode may go to zero or below)."""
    profit_token: str = ""
    """The token the bundle's profit is paid in (our first tx returns (profit, builderPaidWei))."""
    profit_to_wei: tuple[int, int] = (1, 1)
    """(num, den): wei value of `profit` token units = amount * num // den (oracle prices)."""
    meta: Mapping[str, Any] = field(default_factory=dict)
    """What the ledger records about the opportunity (protocol, user, assets, amounts, block)."""


class SendMode(StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"


@dataclass(frozen=True, slots=True)
class SendTx:
    """Send one transaction outside a bundle (protocol-keeper mode)."""

    opportunity_id: str
    strategy: str
    tx: TxIntent
    mode: SendMode = SendMode.PUBLIC
    expected_profit_wei: int = 0
    min_profit_wei: int | None = None


Action = SubmitBundle | SendTx
