"""The `noop` strategy: logs one line per new block and never acts. Proves the pipeline end to end."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from keeper.core.actions import Action
from keeper.core.events import Event, NewBlock
from keeper.logs import kv

if TYPE_CHECKING:
    from keeper.strategies_registry import StrategyContext

log = logging.getLogger("strategies.noop")


class NoopStrategy:
    def __init__(self, name: str = "noop") -> None:
        self.name = name
        self.blocks_seen = 0

    async def sync_state(self) -> None:
        return None

    async def process_event(self, event: Event) -> Sequence[Action]:
        if isinstance(event, NewBlock):
            self.blocks_seen += 1
            fields: dict[str, object] = {
                "number": event.number,
                "hash": event.hash,
                "base_fee": event.base_fee_per_gas,
                "gas_used": event.gas_used,
            }
            if event.reorged:
                fields["reorged"] = True
            log.info("new block", extra=kv(**fields))
        return ()


def create(ctx: StrategyContext) -> NoopStrategy:
    return NoopStrategy()
