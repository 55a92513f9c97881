"""Bounded event queues with an explicit overflow policy per event kind.

- NewBlock: keep latest. A block still waiting when a newer one arrives is superseded (counted).
- PendingTx and MevShareHint: drop oldest. When the queue is full, the oldest queued one is dropped
  (counted); if none is queued, the incoming one is dropped.
- Logs and anything else: never dropped; the producer waits for room (back-pressure).
Single consumer per queue.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

from keeper.core.events import Event, Logs, MevShareHint, NewBlock, PendingTx
from keeper.core.metrics import EVENTS_DROPPED

T = TypeVar("T")


class _Closed:
    """End-of-stream marker."""

    __slots__ = ()


CLOSED = _Closed()


class EventQueue:
    def __init__(self, consumer: str, maxsize: int = 10_000, *, coalesce_blocks: bool = True) -> None:
        if maxsize < 2:
            raise ValueError("maxsize must be >= 2")
        self.consumer = consumer
        self.maxsize = maxsize
        self.coalesce_blocks = coalesce_blocks
        self._items: deque[Event | _Closed] = deque()
        self._not_empty = asyncio.Event()
        self._not_full = asyncio.Event()
        self._not_full.set()
        self.dropped: dict[str, int] = {"superseded_block": 0, "pending_overflow": 0}

    def __len__(self) -> int:
        return len(self._items)

    def _drop(self, kind: str, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        EVENTS_DROPPED.labels(self.consumer, kind, reason).inc()

    def _signal(self) -> None:
        if self._items:
            self._not_empty.set()
        if len(self._items) < self.maxsize:
            self._not_full.set()
        else:
            self._not_full.clear()

    async def put(self, event: Event) -> None:
        if isinstance(event, NewBlock):
            if self.coalesce_blocks:
                for i, queued in enumerate(self._items):
                    if isinstance(queued, NewBlock):
                        del self._items[i]
                        self._drop("block", "superseded_block")
                        break
            while len(self._items) >= self.maxsize and self._evict_pending():
                pass
            if len(self._items) >= self.maxsize:
                await self._wait_room()
        elif isinstance(event, PendingTx | MevShareHint):
            if len(self._items) >= self.maxsize and not self._evict_pending():
                self._drop(_pending_kind(event), "pending_overflow")
                return
        else:
            assert isinstance(event, Logs)
            await self._wait_room()
        self._items.append(event)
        self._signal()

    def _evict_pending(self) -> bool:
        for i, queued in enumerate(self._items):
            if isinstance(queued, PendingTx | MevShareHint):
                del self._items[i]
                self._drop(_pending_kind(queued), "pending_overflow")
                return True
        return False

    async def _wait_room(self) -> None:
        while len(self._items) >= self.maxsize:
            self._not_full.clear()
            await self._not_full.wait()

    def close(self) -> None:
        """No more events; the consumer's `get` returns CLOSED once the queue drains."""
        self._items.append(CLOSED)
        self._signal()

    async def get(self) -> Event | _Closed:
        while not self._items:
            self._not_empty.clear()
            await self._not_empty.wait()
        item = self._items.popleft()
        if not self._items:
            self._not_empty.clear()
        self._signal()
        return item


def _pending_kind(event: PendingTx | MevShareHint) -> str:
    return "pending_tx" if isinstance(event, PendingTx) else "mevshare_hint"


class BoundedQueue(Generic[T]):
    """A plain bounded FIFO with back-pressure and a close marker (used for actions)."""

    def __init__(self, maxsize: int = 1_000) -> None:
        self._q: asyncio.Queue[T | _Closed] = asyncio.Queue(maxsize)

    async def put(self, item: T) -> None:
        await self._q.put(item)

    async def close(self) -> None:
        await self._q.put(CLOSED)

    async def get(self) -> T | _Closed:
        return await self._q.get()

    def __len__(self) -> int:
        return self._q.qsize()
