"""The engine: collectors -> strategies -> executors, each a task in one TaskGroup.

Every strategy gets its own EventQueue (so a slow strategy never slows the others). Actions are routed by
type to the one executor that handles it (`Executor.handles`, a typed map); an action no executor handles
is counted and logged, never silently dropped. Each executor gets its own queue of action groups (the
actions one strategy produced for one event) and runs them concurrently, up to `max_concurrent_groups`
at once: a slow simulation or a hung builder never holds back the next block's actions. An executor
that is `BlockAware` receives every block as an executor (its own queue, never coalesced, in order).

A collector that raises ends the run (TaskGroup cancels everything and the error propagates: a loud,
non-zero exit) unless it is wrapped in `Supervised`, which restarts it with backoff. A strategy or
executor exception is caught per event / action group, logged with context and counted.

When every collector finishes (a replay or a test), queues are closed in order and `run()` returns once
all strategies and executors have drained: the same code runs live and in backtests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from keeper.core.actions import Action
from keeper.core.events import Event, Logs, MevShareHint, NewBlock, PendingTx
from keeper.core.interfaces import BlockAware, Collector, Executor, GroupExecutor, Strategy
from keeper.core.metrics import (
    ACTIONS,
    ACTIONS_UNROUTED,
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
    if isinstance(event, MevShareHint):
        return "mevshare_hint"
    return type(event).__name__


def action_routes(executors: Sequence[Executor]) -> dict[type, Executor]:
    """Action type -> the executor that handles it. Two executors for one type is a wiring error."""
    routes: dict[type, Executor] = {}
    for executor in executors:
        for kind in executor.handles:
            other = routes.get(kind)
            if other is not None:
                raise ValueError(
                    f"both executors {other.name!r} and {executor.name!r} handle {kind.__name__} actions"
                )
            routes[kind] = executor
    return routes


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
        max_concurrent_groups: int = 16,
        sync_on_start: bool = True,
    ) -> None:
        if not collectors:
            raise ValueError("the engine needs at least one collector")
        if max_concurrent_groups < 1:
            raise ValueError("max_concurrent_groups must be >= 1")
        self.collectors = list(collectors)
        self.strategies = list(strategies)
        self.executors = list(executors)
        self.routes = action_routes(self.executors)
        self.max_concurrent_groups = max_concurrent_groups
        self.sync_on_start = sync_on_start
        """False when the caller already ran every strategy's `sync_state` (e.g. with retries)."""
        self.event_queues = {
            s.name: EventQueue(s.name, event_queue_size, coalesce_blocks=coalesce_blocks)
            for s in self.strategies
        }
        self.action_queues: dict[str, BoundedQueue[tuple[Action, ...]]] = {
            e.name: BoundedQueue(action_queue_size) for e in self.executors
        }
        # Executors that follow their transactions see every block: never coalesced.
        self.block_queues = {
            e.name: EventQueue(f"executor:{e.name}", event_queue_size, coalesce_blocks=False)
            for e in self.executors
            if isinstance(e, BlockAware)
        }
        self.stats = {
            "events": 0,
            "actions": 0,
            "unrouted_actions": 0,
            "strategy_errors": 0,
            "executor_errors": 0,
        }
        self._warned_unrouted: set[type] = set()

    async def run(self) -> None:
        if self.sync_on_start:
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
                if isinstance(e, BlockAware):
                    tg.create_task(self._run_block_feed(e), name=f"executor-blocks:{e.name}")
            tg.create_task(self._close_when_done(collector_tasks, strategy_tasks), name="engine:drain")

    async def _close_when_done(
        self, collectors: list[asyncio.Task[None]], strategies: list[asyncio.Task[None]]
    ) -> None:
        await asyncio.gather(*collectors)
        for q in self.event_queues.values():
            q.close()
        for q in self.block_queues.values():
            q.close()
        await asyncio.gather(*strategies)
        for aq in self.action_queues.values():
            await aq.close()

    async def publish(self, event: Event, source: str = "") -> None:
        self.stats["events"] += 1
        EVENTS.labels(source, event_kind(event)).inc()
        if isinstance(event, NewBlock):
            for bq in self.block_queues.values():
                await bq.put(event)
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
            await self._route(strategy.name, actions)

    async def _route(self, strategy: str, actions: Sequence[Action]) -> None:
        groups: dict[str, list[Action]] = {}
        for action in actions:
            self.stats["actions"] += 1
            ACTIONS.labels(strategy, type(action).__name__).inc()
            executor = self.routes.get(type(action))
            if executor is None:
                self.stats["unrouted_actions"] += 1
                ACTIONS_UNROUTED.labels(type(action).__name__).inc()
                if type(action) not in self._warned_unrouted:
                    self._warned_unrouted.add(type(action))
                    log.warning(
                        "no executor handles this action type; its actions are dropped strategy=%s action=%s",
                        strategy,
                        type(action).__name__,
                    )
                continue
            groups.setdefault(executor.name, []).append(action)
        for name, group in groups.items():
            await self.action_queues[name].put(tuple(group))

    async def _run_executor(self, executor: Executor) -> None:
        queue = self.action_queues[executor.name]
        room = asyncio.Semaphore(self.max_concurrent_groups)
        async with asyncio.TaskGroup() as tg:
            while True:
                group = await queue.get()
                if isinstance(group, _Closed):
                    break
                await room.acquire()
                tg.create_task(self._execute_group(executor, group, room), name=f"execute:{executor.name}")

    async def _execute_group(
        self, executor: Executor, group: tuple[Action, ...], room: asyncio.Semaphore
    ) -> None:
        try:
            if isinstance(executor, GroupExecutor):
                await self._guarded(executor, group, lambda: executor.execute_group(group))
            else:

                async def one(action: Action) -> None:
                    await self._guarded(executor, (action,), lambda: executor.execute(action))

                await asyncio.gather(*(one(a) for a in group))
        finally:
            room.release()

    async def _guarded(
        self, executor: Executor, actions: tuple[Action, ...], work: Callable[[], Awaitable[None]]
    ) -> None:
        try:
            await work()
        except Exception:
            self.stats["executor_errors"] += 1
            EXECUTOR_ERRORS.labels(executor.name).inc()
            log.exception(
                "executor error executor=%s actions=%d first=%s opportunity=%s",
                executor.name,
                len(actions),
                type(actions[0]).__name__ if actions else None,
                actions[0].opportunity_id if actions else None,
            )

    async def _run_block_feed(self, executor: BlockAware) -> None:
        name = getattr(executor, "name", type(executor).__name__)
        queue = self.block_queues[name]
        while True:
            event = await queue.get()
            if isinstance(event, _Closed):
                return
            if not isinstance(event, NewBlock):
                continue
            try:
                await executor.on_block(event)
            except Exception:
                self.stats["executor_errors"] += 1
                EXECUTOR_ERRORS.labels(name).inc()
                log.exception("executor block error executor=%s block=%s", name, event.number)


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
