"""Pending swaps the peg strategy follows: decoded (`keeper.chain.swaps`), applied to a copy of the venues
(`strategies.venues.pending`), and reported with the pools they move.

A malformed swap (calldata its router would reject) is counted in `keeper_pending_swaps_malformed_total`
and logged (rate-limited), then skipped: bad mempool input never reaches the strategy's logic."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from prometheus_client import Counter

from keeper.chain.swaps import SwapDecodeError, SwapDecoder
from keeper.core.events import PendingTx
from keeper.core.metrics import REGISTRY
from keeper.logs import kv
from strategies.venues.base import Venue, addr_key
from strategies.venues.pending import apply_pending

log = logging.getLogger("strategies.peg")

PENDING_SWAPS_MALFORMED = Counter(
    "keeper_pending_swaps_malformed_total",
    "Pending swaps to a watched router whose calldata does not decode",
    registry=REGISTRY,
)


class PendingSwaps:
    """`PegStrategy`'s view of the mempool: which pending txs to look at, and what they do to the pools."""

    def __init__(self, decoder: SwapDecoder) -> None:
        self.decoder = decoder
        self.malformed = 0
        self.filter = decoder.tx_filter()
        """For the `PendingTxCollector`: only swaps to the watched routers get through."""

    def wants(self, tx: PendingTx) -> bool:
        return self.decoder.wants(tx.to, tx.input[:4])

    def apply(
        self, tx: PendingTx, venues: Sequence[Venue], timestamp: int | None = None
    ) -> tuple[list[Venue], frozenset[str]] | None:
        try:
            swap = self.decoder.decode_pending(tx)
        except SwapDecodeError as exc:
            self.malformed += 1
            PENDING_SWAPS_MALFORMED.inc()
            if self.malformed <= 3 or self.malformed % 100 == 0:
                log.warning(
                    "malformed pending swap skipped",
                    extra=kv(tx="0x" + tx.hash.hex(), error=str(exc)[:200], count=self.malformed),
                )
            return None
        if swap is None:
            return None
        applied = apply_pending(venues, swap, timestamp=timestamp)
        if applied is None:
            return None
        after, quotes = applied
        return after, frozenset(addr_key(q.pool) for q in quotes)
