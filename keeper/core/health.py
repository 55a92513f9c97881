"""Liveness from the chain's point of view: are new heads arriving?"""

from __future__ import annotations

import time

from keeper.core.metrics import HEAD_AGE, HEAD_NUMBER


class HeadWatch:
    """Records when the latest head arrived. `/health` is healthy while `age()` <= `max_age`."""

    def __init__(self, max_age: float = 60.0) -> None:
        self.max_age = max_age
        self._clock = time.monotonic
        self._last_at: float | None = None
        self.last_number: int | None = None

    def mark(self, number: int) -> None:
        self._last_at = self._clock()
        self.last_number = number
        HEAD_NUMBER.set(number)
        HEAD_AGE.set(0)

    def age(self) -> float | None:
        if self._last_at is None:
            return None
        age = self._clock() - self._last_at
        HEAD_AGE.set(age)
        return age

    def healthy(self) -> bool:
        age = self.age()
        return age is not None and age <= self.max_age
