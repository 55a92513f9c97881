"""One nonce authority per key (failure modes 3 and 4; tests 5 and 6).

`NonceManager` hands out nonces (`reserve`, serialized by an asyncio.Lock), tracks every reserved nonce
until the chain's confirmed count passes it, caps the number in flight (16 by default, as Chainlink
Automation does), and re-syncs from the chain at start and on demand (after a reorg, a "nonce too low"
answer, or a restart).

Chain view: `latest` = `eth_getTransactionCount(addr, "latest")` (mined), `pending` = the same with
"pending" (mined + the contiguous run the node holds in its pool; it stops at the first missing nonce).

Gaps: a nonce between `pending` and our highest reserved nonce that nobody will send (a reservation
released without a send, a reservation abandoned longer than `stale_after` seconds, or a nonce the
node lost while we tracked none) blocks every later nonce. `gaps()` lists them; `fill_gaps(filler)`
asks the caller to send a no-op at each (a 0-value self-transfer; `PublicSender` provides one), and
records it as sent. A nonce we *did* send that the node no longer holds (evicted, dropped by a reorg)
is reported in `GapReport.resend` instead: re-broadcast or replace that transaction.

Everything here is integers and in-memory; the chain is the source of truth after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

from keeper.errors import JsonRpcError, KeeperError
from keeper.logs import kv

log = logging.getLogger(__name__)

DEFAULT_MAX_IN_FLIGHT: Final = 16
_NONCE_TOO_LOW: Final = (
    "nonce too low",
    "nonce is too low",
    "noncetoolow",
    "oldnonce",
    "nonce has already been used",
    "already been used",
)


class ChainCaller(Protocol):
    """What the manager needs from a node (keeper.chain.rpc.RpcClient fits)."""

    async def call(self, method: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any: ...


class NonceError(KeeperError):
    """Nonce bookkeeping refused a request."""


class TooManyInFlight(NonceError):
    """`max_in_flight` nonces are reserved or unconfirmed; wait for confirmations."""


def is_nonce_too_low(exc: BaseException) -> bool:
    """True for a node's "nonce too low" family of answers (geth, anvil, erigon, nethermind, relays)."""
    text = (exc.message if isinstance(exc, JsonRpcError) else str(exc)).lower().replace(" ", "")
    return any(marker.replace(" ", "") in text for marker in _NONCE_TOO_LOW)


class SlotState(StrEnum):
    RESERVED = "reserved"
    """Handed out; the caller is signing/sending."""
    SENT = "sent"
    """A transaction with this nonce was broadcast (tx_hash is the latest attempt)."""
    RELEASED = "released"
    """Reserved but given back unsent below the top: a gap until filled."""


@dataclass(slots=True)
class Slot:
    nonce: int
    state: SlotState
    reserved_at: float
    tx_hash: str | None = None


@dataclass(frozen=True, slots=True)
class ChainNonces:
    latest: int
    pending: int


@dataclass(frozen=True, slots=True)
class GapReport:
    fill: tuple[int, ...]
    """Nonces nobody will send: need a no-op."""
    resend: tuple[int, ...]
    """Nonces we sent that the node does not hold (the first missing one): re-broadcast or replace."""


class NonceManager:
    """The single nonce authority for one address. Not thread-safe; one event loop."""

    def __init__(
        self,
        chain: ChainCaller,
        address: str,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        stale_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self._chain = chain
        self.address = address
        self.max_in_flight = max_in_flight
        self.stale_after = stale_after
        self._clock = clock
        self._lock = asyncio.Lock()
        self._slots: dict[int, Slot] = {}
        self._next: int | None = None
        self._latest = 0
        self._pending = 0

    def __repr__(self) -> str:
        return (
            f"NonceManager(address={self.address}, next={self._next}, latest={self._latest}, "
            f"in_flight={len(self._slots)})"
        )

    # ---- state --------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._next is not None

    @property
    def next_nonce(self) -> int:
        if self._next is None:
            raise NonceError("NonceManager not started: await start() first")
        return self._next

    @property
    def latest(self) -> int:
        """The last seen confirmed transaction count."""
        return self._latest

    @property
    def in_flight(self) -> tuple[int, ...]:
        return tuple(sorted(self._slots))

    def slot(self, nonce: int) -> Slot | None:
        return self._slots.get(nonce)

    # ---- chain --------------------------------------------------------------------------------

    async def fetch(self) -> ChainNonces:
        latest = int(await self._chain.call("eth_getTransactionCount", [self.address, "latest"]), 16)
        pending = int(await self._chain.call("eth_getTransactionCount", [self.address, "pending"]), 16)
        return ChainNonces(latest=latest, pending=max(pending, latest))

    async def start(self) -> int:
        """Syncs from the chain; returns the next nonce to be handed out."""
        await self.resync()
        return self.next_nonce

    async def resync(self, nonces: ChainNonces | None = None) -> ChainNonces:
        """Re-reads the chain and realigns: drops confirmed slots, jumps past nonces used elsewhere."""
        async with self._lock:
            seen = nonces or await self.fetch()
            self._apply(seen, resync=True)
            return seen

    def observe(self, nonces: ChainNonces) -> list[int]:
        """Feeds counts read elsewhere (e.g. in a per-block batch); returns newly confirmed nonces."""
        return self._apply(nonces, resync=False)

    def _apply(self, seen: ChainNonces, *, resync: bool) -> list[int]:
        old_next = self._next
        self._latest, self._pending = seen.latest, seen.pending
        confirmed = [n for n in self._slots if n < seen.latest]
        for n in confirmed:
            del self._slots[n]
        if self._next is None:
            self._next = seen.pending
        elif not self._slots:
            # Nothing of ours is outstanding: the chain decides. Above us = another sender used nonces
            # (drift); below us only if nonces we had were un-mined by a reorg and then vanished.
            if resync or seen.pending > self._next or seen.latest > self._next:
                self._next = max(seen.pending, seen.latest)
        else:
            self._next = max(self._next, seen.latest, seen.pending, max(self._slots) + 1)
        if old_next is not None and self._next != old_next:
            log.info(
                "nonce resynced",
                extra=kv(address=self.address, old=old_next, new=self._next, latest=seen.latest),
            )
        return sorted(confirmed)

    # ---- reservations -------------------------------------------------------------------------

    async def reserve(self) -> int:
        """The next nonce, recorded as in flight. Raises TooManyInFlight at the cap."""
        async with self._lock:
            if self._next is None:
                self._apply(await self.fetch(), resync=True)
            assert self._next is not None
            if len(self._slots) >= self.max_in_flight:
                raise TooManyInFlight(
                    f"{len(self._slots)} nonces in flight for {self.address} (cap {self.max_in_flight})"
                )
            nonce = self._next
            self._next += 1
            self._slots[nonce] = Slot(nonce=nonce, state=SlotState.RESERVED, reserved_at=self._clock())
            return nonce

    @contextlib.asynccontextmanager
    async def reservation(self) -> AsyncIterator[int]:
        """`async with nm.reservation() as n: ...; nm.mark_sent(n, h)`; released if not marked sent."""
        nonce = await self.reserve()
        try:
            yield nonce
        finally:
            slot = self._slots.get(nonce)
            if slot is not None and slot.state is SlotState.RESERVED:
                self.release(nonce)

    def mark_sent(self, nonce: int, tx_hash: str) -> None:
        slot = self._slots.get(nonce)
        if slot is None:
            # A nonce filled below our top (gap fill) or re-tracked after a reorg.
            slot = Slot(nonce=nonce, state=SlotState.SENT, reserved_at=self._clock())
            self._slots[nonce] = slot
        slot.state = SlotState.SENT
        slot.tx_hash = tx_hash

    def release(self, nonce: int) -> None:
        """Gives back a reservation that was not sent. The top one is reused; others become gaps."""
        slot = self._slots.get(nonce)
        if slot is None or slot.state is SlotState.SENT:
            return
        if self._next is not None and nonce == self._next - 1:
            del self._slots[nonce]
            self._next -= 1
            # Trailing released slots below can be reused too.
            while self._next - 1 in self._slots and self._slots[self._next - 1].state is SlotState.RELEASED:
                del self._slots[self._next - 1]
                self._next -= 1
        else:
            slot.state = SlotState.RELEASED

    def forget(self, nonce: int) -> None:
        """Drops a slot whose nonce the chain consumed (e.g. after "nonce too low")."""
        self._slots.pop(nonce, None)

    # ---- gaps ---------------------------------------------------------------------------------

    def gaps(self, nonces: ChainNonces | None = None) -> GapReport:
        """Nonces in [pending, top of ours) that block later ones (see the module docstring)."""
        seen = nonces or ChainNonces(self._latest, self._pending)
        if not self._slots:
            return GapReport((), ())
        top = max(self._slots)
        now = self._clock()
        fill: list[int] = []
        resend: list[int] = []
        for n in range(max(seen.pending, seen.latest), top):
            slot = self._slots.get(n)
            if slot is None or slot.state is SlotState.RELEASED:
                fill.append(n)
            elif slot.state is SlotState.RESERVED:
                if now - slot.reserved_at > self.stale_after:
                    fill.append(n)
            elif n == seen.pending:
                resend.append(n)
        return GapReport(tuple(fill), tuple(resend))

    async def fill_gaps(
        self, filler: Callable[[int], Awaitable[str]], nonces: ChainNonces | None = None
    ) -> list[int]:
        """Re-reads the chain (unless given counts), then sends a no-op at each gap via `filler`."""
        if nonces is None:
            nonces = await self.fetch()
            self.observe(nonces)
        report = self.gaps(nonces)
        filled: list[int] = []
        for n in report.fill:
            log.warning("nonce gap: filling with a no-op", extra=kv(address=self.address, nonce=n))
            tx_hash = await filler(n)
            self.mark_sent(n, tx_hash)
            filled.append(n)
        return filled
