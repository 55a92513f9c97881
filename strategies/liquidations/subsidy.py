"""Protocol mode's daily subsidy budget: what loss-making liquidations may cost per UTC day.

A protocol's official keeper liquidates every liquidatable position, also those whose liquidation costs
more gas than it earns; the owner pays that difference (the subsidy). The budget bounds it per UTC day
of block time (time comes from the block, so a replay gives the same decisions).

What is spent is read from the ledger at each block (`subsidy_spent`: its included transactions of the
day), so a restart keeps counting. Losses of liquidations sent but not yet seen included are reserved
for their target block and the one after (the ledger records an inclusion only once the executor has
seen the block), so the budget is never spent twice; a reservation that did not land simply expires.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

DAY = 86_400

SpentReader = Callable[[int, int], Awaitable[int]]
"""(since, until) block timestamps -> wei of subsidy spent by inclusions in that window."""


class SubsidyBudget:
    def __init__(self, per_day_wei: int, spent: SpentReader | None = None) -> None:
        if per_day_wei < 0:
            raise ValueError("the subsidy budget must be >= 0")
        self.per_day_wei = per_day_wei
        self._read_spent = spent
        self.day: int | None = None
        self.spent_wei = 0
        """Spent today according to the ledger at the last `update`."""
        self._reserved: dict[int, int] = {}
        """Target block -> losses of the liquidations sent for it."""
        self._block = 0

    async def update(self, block_number: int, timestamp: int) -> None:
        """Called once per block, before deciding what to send for the next one."""
        day = timestamp // DAY
        if day != self.day:
            self.day = day
            self._reserved.clear()
        self._block = block_number
        for target in [t for t in self._reserved if t < block_number]:
            del self._reserved[target]
        if self._read_spent is not None:
            self.spent_wei = await self._read_spent(day * DAY, (day + 1) * DAY)

    @property
    def reserved_wei(self) -> int:
        return sum(self._reserved.values())

    @property
    def remaining_wei(self) -> int:
        return max(self.per_day_wei - self.spent_wei - self.reserved_wei, 0)

    def take(self, loss_wei: int, target_block: int) -> bool:
        """Reserves `loss_wei` for a liquidation sent for `target_block`; False (nothing reserved) when
        the budget left today is smaller."""
        if loss_wei <= 0:
            return True
        if loss_wei > self.remaining_wei:
            return False
        self._reserved[target_block] = self._reserved.get(target_block, 0) + loss_wei
        return True
