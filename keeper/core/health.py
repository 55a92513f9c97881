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


class SendWatch:
    """Is the keeper able to send what it decides to send?

    The executor reports each attempt to reach the builders: `ok()` when a builder simulated or accepted
    (or the keeper decided, on a simulation it got, not to send), `failed()` when no builder could be
    reached. A keeper that keeps acting while every attempt fails for longer than `max_age` seconds (a
    dead relay, a wrong URL) is unhealthy: `/health` answers 503 "not_sending" instead of staying 200
    while nothing goes out.
    """

    def __init__(self, max_age: float = 60.0) -> None:
        self.max_age = max_age
        self._clock = time.monotonic
        self._failing_since: float | None = None
        self.failures = 0
        self.last_error = ""

    def ok(self) -> None:
        self._failing_since = None

    def failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error[:200]
        if self._failing_since is None:
            self._failing_since = self._clock()

    def failing_for(self) -> float | None:
        return None if self._failing_since is None else self._clock() - self._failing_since

    def healthy(self) -> bool:
        age = self.failing_for()
        return age is None or age <= self.max_age
