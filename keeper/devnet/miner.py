"""Block production for the devnet: a block every `interval` seconds, or on demand in tests.

With the bundle relay, blocks come from `Builder.build_block()` (bundles first, then the mempool).
Without it, `PlainMiner` just calls `evm_mine` on anvil. Tests call `build_block()` directly instead of
running the loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from keeper.chain.rpc import RpcClient
from keeper.errors import DevnetError, KeeperError

log = logging.getLogger(__name__)


class BlockProducer(Protocol):
    async def build_block(self) -> object: ...


class PlainMiner:
    """`evm_mine` on anvil: the block anvil builds from its own pool (no bundles)."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    async def build_block(self) -> int:
        await self.rpc.call("evm_mine")
        return await self.rpc.block_number()


async def mine_forever(
    builder: BlockProducer,
    interval: float = 2.0,
    *,
    max_blocks: int | None = None,
    max_consecutive_failures: int = 10,
) -> None:
    """Produces a block every `interval` seconds (fixed rate; a slow build delays, never doubles up).

    A failed build is logged and retried at the next tick; after `max_consecutive_failures` in a row the
    loop raises DevnetError so that whoever runs it notices (anvil gone, for instance).
    """
    if interval <= 0:
        raise ValueError("interval must be > 0")
    loop = asyncio.get_running_loop()
    next_at = loop.time() + interval
    made = 0
    failures = 0
    while max_blocks is None or made < max_blocks:
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        try:
            await builder.build_block()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            if isinstance(exc, KeeperError | OSError):
                log.warning("block production failed (%d in a row): %s", failures, exc)
            else:
                log.exception("block production failed (%d in a row)", failures)
            if failures >= max_consecutive_failures:
                raise DevnetError(f"block production failed {failures} times in a row: {exc}") from exc
        else:
            failures = 0
            made += 1
        now = loop.time()
        next_at += interval
        if next_at < now:  # a build took longer than the interval: skip missed ticks
            next_at = now + interval
