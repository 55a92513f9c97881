"""The roles of the engine, as structural Protocols (any object with these members fits).

Executors declare the action types they carry out (`handles`): the engine routes each action to the one
executor that handles its type (a typed map, as artemis routes), never to every executor. An executor
that follows its transactions (inclusion, fee bumps) also implements `BlockAware` and receives every
block as an executor, in order, never coalesced. One that can do better with all the actions a strategy
produced for one event at once (pack them into one transaction, share a round trip) implements
`GroupExecutor`; the others get their actions one by one, concurrently.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from keeper.core.actions import Action
from keeper.core.events import Event, NewBlock


@runtime_checkable
class Collector(Protocol):
    """Produces events. `events()` runs until cancelled; raising ends the process unless supervised."""

    name: str

    def events(self) -> AsyncIterator[Event]: ...


@runtime_checkable
class Strategy(Protocol):
    """Turns events into actions. Detection logic should be pure; time comes from the block."""

    name: str

    async def sync_state(self) -> None: ...

    async def process_event(self, event: Event) -> Sequence[Action]: ...


@runtime_checkable
class Executor(Protocol):
    """Carries out actions of the types in `handles` (simulate, sign, submit). An exception is logged and
    counted per action (or per group)."""

    name: str
    handles: tuple[type, ...]

    async def execute(self, action: Action) -> None: ...


@runtime_checkable
class GroupExecutor(Executor, Protocol):
    """Takes all the actions one strategy produced for one event together (e.g. to batch them)."""

    async def execute_group(self, actions: Sequence[Action]) -> None: ...


@runtime_checkable
class BlockAware(Protocol):
    """Receives every new block, in order (inclusion tracking, nonces, fee bumps)."""

    async def on_block(self, block: NewBlock) -> None: ...
