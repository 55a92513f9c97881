"""Positions that stay liquidatable: an alert a protocol keeper acts on.

A protocol running its own keeper needs every unhealthy position liquidated. One that stays liquidatable
for `after_blocks` blocks (no route at a profit, beyond the gas budget block after block, reverts) is
reported: the `keeper_liquidatable_stuck_positions` gauge, and one WARNING line per position saying why,
repeated every `after_blocks` blocks while it lasts. Pure bookkeeping: block numbers in, alerts out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import Gauge

from keeper.core.metrics import REGISTRY

STUCK = Gauge(
    "keeper_liquidatable_stuck_positions",
    "Positions liquidatable for at least the alert threshold of blocks",
    registry=REGISTRY,
)

Position = tuple[str, str]
"""(market, user)"""


@dataclass(frozen=True, slots=True)
class StuckPosition:
    market: str
    user: str
    since_block: int
    blocks: int
    reason: str


class StuckWatch:
    def __init__(self, after_blocks: int = 10) -> None:
        if after_blocks < 1:
            raise ValueError("after_blocks must be >= 1")
        self.after_blocks = after_blocks
        self.since: dict[Position, int] = {}
        self._alerted: dict[Position, int] = {}
        self.stuck: list[StuckPosition] = []

    def update(
        self, block: int, liquidatable: Iterable[Position], reasons: Mapping[Position, str]
    ) -> list[StuckPosition]:
        """Positions liquidatable at `block`; returns the alerts due now (new, or repeated every
        `after_blocks` blocks). `reasons`: why a position was not sent this block, when known."""
        live = set(liquidatable)
        for gone in [p for p in self.since if p not in live]:
            del self.since[gone]
            self._alerted.pop(gone, None)
        for p in live:
            self.since.setdefault(p, block)
        self.stuck = [
            StuckPosition(
                p[0],
                p[1],
                since,
                block - since,
                reasons.get(p, "sent, but not landed yet (see the executor's simulation results)"),
            )
            for p, since in sorted(self.since.items())
            if block - since >= self.after_blocks
        ]
        STUCK.set(len(self.stuck))
        due = []
        for s in self.stuck:
            key = (s.market, s.user)
            last = self._alerted.get(key)
            if last is None or block - last >= self.after_blocks:
                self._alerted[key] = block
                due.append(s)
        return due


def reasons_by_position(*by_id: Mapping[str, str]) -> dict[Position, str]:
    """Opportunity ids ("market:user:collateral:debt") -> reasons, keyed by (market, user)."""
    out: dict[Position, str] = {}
    for reasons in by_id:
        for opp_id, reason in reasons.items():
            market, _, rest = opp_id.partition(":")
            user = rest.split(":", 1)[0]
            out.setdefault((market, user), reason)
    return out
