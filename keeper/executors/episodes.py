"""Ledger ids for repeated liquidations of one position.

A strategy names an opportunity by what it is (protocol, user, collateral, debt). The same position can
be liquidated again after a partial liquidation (close factor), or come back after it went away: each
such round is a new ledger record, `id`, `id#2`, `id#3`, ...
"""

from __future__ import annotations


class Episodes:
    def __init__(self) -> None:
        self._round: dict[str, int] = {}

    def current(self, base_id: str) -> str:
        n = self._round.get(base_id, 1)
        return base_id if n == 1 else f"{base_id}#{n}"

    def advance(self, base_id: str) -> str:
        """Starts the next round of `base_id` and returns its id."""
        self._round[base_id] = self._round.get(base_id, 1) + 1
        return self.current(base_id)

    def observe(self, base_id: str, round_: int) -> None:
        """Continues numbering after a round recorded earlier (e.g. read back from the ledger)."""
        self._round[base_id] = max(self._round.get(base_id, 1), round_)
