"""The three roles of the engine, as structural Protocols (any object with these members fits)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from keeper.core.actions import Action
from keeper.core.events import Event


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
    """Carries out actions (simulate, sign, submit). An exception is logged and counted per action."""

    name: str

    async def execute(self, action: Action) -> None: ...
