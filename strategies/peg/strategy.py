"""The peg strategy: every declared peg, every venue holding its two tokens, each block and each pending
swap that moves one of its pools.

Per new block: the venues' state and the pegs' on-chain targets (the LST's exchange rate, ...) are read
at the block (concurrently: one batched read per venue plus one for the targets), then the pure search
(`strategies.peg.sizing.best_opportunities`) lists the spreads worth closing, each sized on the exact
venue math; the action builder values them in wei after all costs and turns the profitable ones into
bundles for the next block.

Per pending swap (`PendingTx` that the swap decoder recognises): the swap is applied to a copy of the
venues (`strategies.venues.pending.apply_pending`); if it moves a pegged pool, the pegs of that pool are
searched again on the state it leaves and each opportunity becomes the bundle [their signed swap, our
arbitrage] for the next block. If their swap lands without us, the next block's ordinary path sees the
spread; if it never lands, the bundle cannot land either and nothing is spent.

Time comes from the block, never from the wall clock: a replay gives the same result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from keeper.chain.rpc import RpcClient
from keeper.core.actions import Action, ForeignTx, SubmitBundle
from keeper.core.events import Event, NewBlock, PendingTx
from keeper.errors import KeeperError
from keeper.logs import kv
from strategies.peg.detect import pegs_touching
from strategies.peg.pegs import Peg, TargetReader
from strategies.peg.sizing import PegOpportunity, best_opportunities
from strategies.venues.base import Venue, addr_key
from strategies.venues.lenders import FlashLiquidity

log = logging.getLogger("strategies.peg")


class PegActionBuilder(Protocol):
    """Opportunities of one block (sized on `venues`) -> the actions to send for the next block."""

    async def __call__(
        self, opportunities: Sequence[PegOpportunity], block: NewBlock, venues: Sequence[Venue]
    ) -> list[Action]: ...


class PendingSwapSource(Protocol):
    """What the strategy needs from the pending-swap decoder and its applier."""

    def wants(self, tx: PendingTx) -> bool: ...

    def apply(
        self, tx: PendingTx, venues: Sequence[Venue], timestamp: int | None = None
    ) -> tuple[list[Venue], frozenset[str]] | None:
        """The venues after `tx` and the pools it touched (lowercase), or None (not a swap we can follow,
        or it would revert)."""
        ...


Finder = Callable[..., list[PegOpportunity]]


class PegStrategy:
    name = "peg"

    def __init__(
        self,
        rpc: RpcClient,
        pegs: Sequence[Peg],
        venues: Sequence[Venue],
        *,
        targets: TargetReader,
        actions: PegActionBuilder | None = None,
        pending: PendingSwapSource | None = None,
        flash: FlashLiquidity | None = None,
        find: Finder = best_opportunities,
    ) -> None:
        if not pegs:
            raise ValueError("the peg strategy needs at least one peg")
        self.rpc = rpc
        self.pegs = list(pegs)
        self.venues = list(venues)
        self.target_reader = targets
        self.action_builder = actions
        self.pending = pending
        self.flash = flash
        """What the flash lenders hold, read with the venues each block (the action builder sizes
        within it)."""
        self.find = find
        self.targets: dict[str, tuple[int, int]] = {}
        """Peg name -> (num, den): 1 base unit of token A is worth num/den base units of token B."""
        self.opportunities: list[PegOpportunity] = []
        self.last_block: NewBlock | None = None
        self.skipped_venues: dict[str, str] = {}
        """Venue name -> why its read failed in the last block (skipped for that block)."""
        self.stats: dict[str, int] = {
            "blocks": 0,
            "opportunities": 0,
            "actions": 0,
            "venue_read_failures": 0,
            "target_read_failures": 0,
            "pending_swaps": 0,
            "pending_moved": 0,
            "backruns": 0,
        }
        self.last_timings: dict[str, float] = {}
        self._live: list[Venue] = list(venues)
        self._backrun_seen: set[bytes] = set()
        self._prints: dict[tuple[str, str], object] | None = None
        """(venue, pool) -> its state at the last block (what `_search` compares)."""
        self._last_targets: dict[str, tuple[int, int]] = {}

    # ---------------------------------------------------------------------------------------- state

    async def sync_state(self) -> None:
        head = await self.rpc.block_number()
        await self.refresh(head)

    async def refresh(self, block: int) -> None:
        """Reads every venue and every target at `block`. A venue whose read fails is left out for this
        block (counted, logged); a target that fails to read leaves its peg out for this block."""

        async def read(venue: Venue) -> BaseException | None:
            try:
                await venue.refresh(self.rpc, block)
            except (KeeperError, OSError, ValueError) as exc:
                return exc
            return None

        async def read_flash() -> None:
            if self.flash is None:
                return
            try:
                await self.flash.refresh(self.rpc, block)
            except (KeeperError, OSError, ValueError) as exc:
                self.flash.decode([])  # nothing known to be lendable this block
                log.warning("flash liquidity read failed", extra=kv(block=block, error=str(exc)[:200]))

        results = await asyncio.gather(
            *(read(v) for v in self.venues), self.target_reader.read(self.rpc, block), read_flash()
        )
        failures = results[: len(self.venues)]
        targets: Mapping[str, tuple[int, int] | str] = results[len(self.venues)]  # type: ignore[assignment]
        self.skipped_venues = {}
        live: list[Venue] = []
        for venue, failure in zip(self.venues, failures, strict=True):
            if failure is None:
                live.append(venue)
            else:
                self.skipped_venues[venue.name] = str(failure)
                self.stats["venue_read_failures"] += 1
                log.warning(
                    "venue read failed; skipped for this block",
                    extra=kv(venue=venue.name, block=block, error=str(failure)[:200]),
                )
        self._live = live
        self.targets = {}
        for name, target in targets.items():
            if isinstance(target, str):
                self.stats["target_read_failures"] += 1
                log.warning("peg target read failed", extra=kv(peg=name, block=block, error=target[:200]))
            else:
                self.targets[name] = target

    # ---------------------------------------------------------------------------------------- events

    async def process_event(self, event: Event) -> list[Action]:
        if isinstance(event, NewBlock):
            return await self.on_block(event)
        if isinstance(event, PendingTx):
            return await self.on_pending(event)
        return []

    def _pegs_with_targets(self) -> list[Peg]:
        return [p for p in self.pegs if p.name in self.targets]

    async def on_block(self, block: NewBlock) -> list[Action]:
        t0 = time.perf_counter()
        self.last_block = block
        self._backrun_seen.clear()
        self.stats["blocks"] += 1
        await self.refresh(block.number)
        t1 = time.perf_counter()
        self.opportunities = self._search()
        t2 = time.perf_counter()
        self.stats["opportunities"] += len(self.opportunities)
        actions: list[Action] = []
        if self.action_builder is not None and self.opportunities:
            actions = await self.action_builder(self.opportunities, block, self._live)
        self.stats["actions"] += len(actions)
        self.last_timings = {
            "refresh": t1 - t0,
            "detect": t2 - t1,
            "build": time.perf_counter() - t2,
            "total": time.perf_counter() - t0,
        }
        if self.opportunities:
            log.info(
                "peg spreads",
                extra=kv(
                    block=block.number,
                    opportunities=len(self.opportunities),
                    actions=len(actions),
                    best_profit=self.opportunities[0].profit,
                ),
            )
        return actions

    def _search(self) -> list[PegOpportunity]:
        """The block's opportunities. Only the spreads with a pool whose state changed since the last
        block are sized again (an opportunity depends on nothing but its two pools' states and its peg's
        target); the others are kept as sized. A target that moved, a venue that failed or recovered, or
        the first block: everything is sized again."""
        pegs = self._pegs_with_targets()
        prints = {
            (venue.name, addr_key(pool)): _fingerprint(venue, pool)
            for venue in self._live
            for peg in pegs
            for pool in venue.pools(peg.token_a, peg.token_b)
        }
        previous, self._prints = self._prints, prints
        targets, self._last_targets = self._last_targets, dict(self.targets)
        if previous is None or targets != self.targets or previous.keys() != prints.keys():
            self.stats["full_searches"] = self.stats.get("full_searches", 0) + 1
            return self.find(pegs, self.targets, self._live)
        changed = {key[1] for key, now in prints.items() if now is None or now != previous.get(key)}
        if not changed:
            return list(self.opportunities)
        fresh = self.find(pegs, self.targets, self._live, changed_pools=changed)
        kept = [o for o in self.opportunities if not {addr_key(p) for p in o.pools} & changed]
        return sorted([*fresh, *kept], key=lambda o: o.profit_b, reverse=True)

    async def on_pending(self, tx: PendingTx) -> list[Action]:
        """A pending swap that moves a pegged pool -> [their swap, our arbitrage] for the next block."""
        block = self.last_block
        if block is None or self.pending is None or self.action_builder is None:
            return []
        if tx.hash in self._backrun_seen or not self.pending.wants(tx):
            return []
        self._backrun_seen.add(tx.hash)
        self.stats["pending_swaps"] += 1
        if tx.raw is None:
            return []
        # Checked against the earliest timestamp the next block can have (a swap past its deadline reverts).
        applied = self.pending.apply(tx, self._live, block.timestamp + 1)
        if applied is None:
            return []
        venues, touched = applied
        pegs = pegs_touching(self._pegs_with_targets(), self._live, touched)
        if not pegs:
            return []
        self.stats["pending_moved"] += 1
        found = self.find(pegs, self.targets, venues)
        if not found:
            return []
        actions = await self.action_builder(found, block, venues)
        prefix = (ForeignTx(raw=tx.raw, hash=tx.hash),)
        backruns: list[Action] = [
            replace(
                a,
                strategy=f"{self.name}-backrun",
                txs=(*prefix, *a.txs),
                meta={**a.meta, "backrun": "0x" + tx.hash.hex()},
            )
            for a in actions
            if isinstance(a, SubmitBundle)
        ]
        self.stats["backruns"] += len(backruns)
        if backruns:
            log.info(
                "backrunning a pending swap",
                extra=kv(tx="0x" + tx.hash.hex(), arbitrages=len(backruns), target=block.number + 1),
            )
        return backruns


def _fingerprint(venue: Venue, pool: str) -> object:
    """The pool's state as the venue holds it (compared between blocks); None when the venue does not
    expose it (then the pool counts as changed every block)."""
    for attr in ("state", "reserves"):
        read = getattr(venue, attr, None)
        if callable(read):
            try:
                return read(pool)
            except (KeeperError, KeyError, ValueError):
                return None
    return None
