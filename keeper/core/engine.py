"""The engine: collectors -> strategies -> executors, each a task in one TaskGroup.

Every strategy gets its own EventQueue (so a slow strategy never slows the others) and every executor
its own action queue. A collector that raises ends the run (TaskGroup cancels everything and the error
propagates: a loud, non-zero exit) unless it is wrapped in `Supervised`, which restarts it with backoff.
A strategy or executor exception is caught per event/action, logged with context and counted.

When every collector finishes (a replay or a test), queues are closed in order and `run()` returns once
all strategies and executors have drained: the same code runs live and in backtests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence

from keeper.core.actions import Action
from keeper.core.events import Event, Logs, NewBlock, PendingTx
from keeper.core.interfaces import Collector, Executor, Strategy
from keeper.core.metrics import (
    ACTIONS,
    COLLECTOR_RESTARTS,
    EVENTS,
    EXECUTOR_ERRORS,
    PROCESS_SECONDS,
    STRATEGY_ERRORS,
)
from keeper.core.queues import BoundedQueue, EventQueue, _Closed

log = logging.getLogger("keeper.engine")


def event_kind(event: Event) -> str:
    if isinstance(event, NewBlock):
        return "block"
    if isinstance(event, PendingTx):
        return "pending_tx"
    if isinstance(event, Logs):
        return "logs"
    return type(event).__name__


class Engine:
    def __init__(
        self,
        collectors: Sequence[Collector],
        strategies: Sequence[Strategy],
        executors: Sequence[Executor],
        *,
        event_queue_size: int = 10_000,
        action_queue_size: int = 1_000,
        coalesce_blocks: bool = True,
    ) -> None:
        if not collectors:
            raise ValueError("the engine needs at least one collector")
        self.collectors = list(collectors)
        self.strategies = list(strategies)
        self.executors = list(executors)
        self.event_queues = {
            s.name: EventQueue(s.name, event_queue_size, coalesce_blocks=coalesce_blocks)
            for s in self.strategies
        }
        self.action_queues: dict[str, BoundedQueue[Action]] = {
            e.name: BoundedQueue(action_queue_size) for e in self.executors
        }
        self.stats = {"events": 0, "actions": 0, "strategy_errors": 0, "executor_errors": 0}

    async def run(self) -> None:
        for strategy in self.strategies:
            await strategy.sync_state()
        async with asyncio.TaskGroup() as tg:
            collector_tasks = [
                tg.create_task(self._run_collector(c), name=f"collector:{c.name}") for c in self.collectors
            ]
            strategy_tasks = [
                tg.create_task(self._run_strategy(s), name=f"strategy:{s.name}") for s in self.strategies
            ]
            for e in self.executors:
                tg.create_task(self._run_executor(e), name=f"executor:{e.name}")
            tg.create_task(self._close_when_done(collector_tasks, strategy_tasks), name="engine:drain")

    async def _close_when_done(
        self, collectors: list[asyncio.Task[None]], strategies: list[asyncio.Task[None]]
    ) -> None:
        await asyncio.gather(*collectors)
        for q in self.event_queues.values():
            q.close()
        await asyncio.gather(*strategies)
        for aq in self.action_queues.values():
            await aq.close()

    async def publish(self, event: Event, source: str = "") -> None:
        self.stats["events"] += 1
        EVENTS.labels(source, event_kind(event)).inc()
        for q in self.event_queues.values():
            await q.put(event)

    async def _run_collector(self, collector: Collector) -> None:
        async for event in collector.events():
            await self.publish(event, collector.name)

    async def _run_strategy(self, strategy: Strategy) -> None:
        queue = self.event_queues[strategy.name]
        while True:
            event = await queue.get()
            if isinstance(event, _Closed):
                return
            kind = event_kind(event)
            started = time.perf_counter()
            try:
                actions = await strategy.process_event(event)
            except Exception:
                self.stats["strategy_errors"] += 1
                STRATEGY_ERRORS.labels(strategy.name).inc()
                log.exception(
                    "strategy error strategy=%s event=%s block=%s",
                    strategy.name,
                    kind,
                    getattr(event, "number", getattr(event, "block_number", None)),
                )
                continue
            finally:
                PROCESS_SECONDS.labels(strategy.name, kind).observe(time.perf_counter() - started)
            for action in actions:
                self.stats["actions"] += 1
                ACTIONS.labels(strategy.name, type(action).__name__).inc()
                for aq in self.action_queues.values():
                    await aq.put(action)

    async def _run_executor(self, executor: Executor) -> None:
        queue = self.action_queues[executor.name]
        while True:
            action = await queue.get()
            if isinstance(action, _Closed):
                return
            try:
                await executor.execute(action)
            except Exception:
                self.stats["executor_errors"] += 1
                EXECUTOR_ERRORS.labels(executor.name).inc()
                log.exception(
                    "executor error executor=%s action=%s opportunity=%s",
                    executor.name,
                    type(action).__name__,
                    action.opportunity_id,
                )


class Supervised:
    """Wraps a collector and restarts it when it raises (not when it is cancelled).

    Backoff doubles from `initial_backoff` to `max_backoff`; after `max_restarts` consecutive failures
    without a single event in between, the last error propagates (and the process stops loudly).
    """

    def __init__(
        self,
        inner: Collector,
        *,
        max_restarts: int | None = None,
        initial_backoff: float = 0.1,
        max_backoff: float = 5.0,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.max_restarts = max_restarts
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.restarts = 0

    async def events(self) -> AsyncIterator[Event]:
        failures = 0
        backoff = self.initial_backoff
        while True:
            try:
                async for event in self.inner.events():
                    failures = 0
                    backoff = self.initial_backoff
                    yield event
                return
            except Exception as exc:
                failures += 1
                if self.max_restarts is not None and failures > self.max_restarts:
                    raise
                self.restarts += 1
                COLLECTOR_RESTARTS.labels(self.name).inc()
                log.warning(
                    "collector failed, restarting collector=%s error=%s backoff=%.2fs",
                    self.name,
                    type(exc).__name__ + ": " + str(exc)[:200],
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
