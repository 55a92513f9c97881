"""New blocks: a `newHeads` subscription used as a hint, made gap-free and reorg-aware over HTTP.

`ChainTracker` holds the hashes we announced for the last `history` heights and turns each incoming
header into the list of blocks to announce:
- a gap (number > last + 1) is backfilled by number in ONE JSON-RPC batch;
- a parent-hash mismatch is walked back by hash to the common ancestor, and every block of the new
  branch at a height we had already announced goes out with `reorged=True`;
- a hash already announced at its height is dropped (each block is announced exactly once per hash).

`BlockCollector` feeds it from `subscribe_forever(ws_url, "newHeads")`. Each time the subscription is
(re)established it reads the `latest` block over HTTP and feeds that too, which backfills whatever was
mined while the socket was down (and announces the current head at start-up). A no-head watchdog
(`max_silence`) declares the socket dead and reconnects. An RPC failure while handling one head is
logged and skipped: the next head retries the same gap, because state only moves on success.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from keeper.chain.redact import redact_url
from keeper.chain.rpc import RpcClient
from keeper.chain.ws import Subscribed, subscribe_forever
from keeper.core.events import NewBlock
from keeper.core.health import HeadWatch
from keeper.errors import DecodeError, RpcError

log = logging.getLogger("keeper.collectors.blocks")

_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def _quantity(obj: dict[str, Any], key: str, default: int | None = None) -> int:
    value = obj.get(key)
    if value is None and default is not None:
        return default
    if isinstance(value, str) and _QUANTITY.fullmatch(value):
        return int(value, 16)
    raise DecodeError(f"block field {key!r} is not a hex quantity: {str(value)[:80]!r}")


def _hash(obj: dict[str, Any], key: str) -> bytes:
    value = obj.get(key)
    if isinstance(value, str) and _HASH.fullmatch(value):
        return bytes.fromhex(value[2:])
    raise DecodeError(f"block field {key!r} is not a 32-byte hash: {str(value)[:80]!r}")


def decode_header(obj: Any, received_at_ns: int = 0, *, reorged: bool = False) -> NewBlock:
    """A newHeads payload or an eth_getBlockBy* result (without txs) -> NewBlock. DecodeError if bad."""
    if not isinstance(obj, dict):
        raise DecodeError(f"block header is not an object: {type(obj).__name__}")
    miner = obj.get("miner")
    return NewBlock(
        number=_quantity(obj, "number"),
        hash=_hash(obj, "hash"),
        parent_hash=_hash(obj, "parentHash"),
        timestamp=_quantity(obj, "timestamp"),
        base_fee_per_gas=_quantity(obj, "baseFeePerGas", 0),
        gas_limit=_quantity(obj, "gasLimit"),
        gas_used=_quantity(obj, "gasUsed", 0),
        miner=miner.lower() if isinstance(miner, str) and _ADDRESS.fullmatch(miner) else "",
        reorged=reorged,
        received_at_ns=received_at_ns,
    )


def _with(block: NewBlock, *, reorged: bool) -> NewBlock:
    if block.reorged == reorged:
        return block
    return NewBlock(
        number=block.number,
        hash=block.hash,
        parent_hash=block.parent_hash,
        timestamp=block.timestamp,
        base_fee_per_gas=block.base_fee_per_gas,
        gas_limit=block.gas_limit,
        gas_used=block.gas_used,
        miner=block.miner,
        reorged=reorged,
        received_at_ns=block.received_at_ns,
    )


class ChainTracker:
    """The canonical chain as we announced it; turns headers into gap-free, reorg-aware announcements."""

    def __init__(self, rpc: RpcClient, *, history: int = 256, max_reorg_depth: int = 128) -> None:
        self.rpc = rpc
        self.history = history
        self.max_reorg_depth = max_reorg_depth
        self.max_backfill = 1024
        """A gap wider than this is not backfilled block by block: we resume from the head."""
        self._hashes: dict[int, bytes] = {}
        """Height -> hash we announced, for the last `history` heights of the current branch."""
        self.last: int | None = None
        """Height of the tip of the branch we announced."""
        self.high: int | None = None
        """Highest height ever announced: a block at or below it replaces one (reorged=True)."""

    def announced_hash(self, number: int) -> bytes | None:
        return self._hashes.get(number)

    def seed(self, blocks: Sequence[NewBlock]) -> None:
        """Remember consecutive `blocks` (oldest first) as already announced, e.g. after a catch-up."""
        if blocks:
            self._commit(blocks)

    async def on_header(self, header: Any, received_at_ns: int) -> list[NewBlock]:
        """Blocks to announce, oldest first. Raises DecodeError / RpcError; state moves only on success."""
        head = decode_header(header, received_at_ns)
        if self._hashes.get(head.number) == head.hash:
            return []
        branch = await self._branch_to(head)
        out: list[NewBlock] = []
        for block in branch:
            if self._hashes.get(block.number) == block.hash:
                continue
            replaced = self.high is not None and block.number <= self.high
            out.append(_with(block, reorged=replaced))
        self._commit(branch)
        return out

    async def _branch_to(self, head: NewBlock) -> list[NewBlock]:
        """`head` and its ancestors back to (excluding) a block we announced, oldest first."""
        if self.last is None:
            return [head]
        branch = [head]
        gap = head.number - self.last - 1
        if 0 < gap <= self.max_backfill:
            filled = await self._by_numbers(range(self.last + 1, head.number), head.received_at_ns)
            # Keep the by-number blocks only while they link up; a reorg racing the batch breaks the
            # chain, and the walk by hash below repairs it.
            for block in reversed(filled):
                if block.hash != branch[0].parent_hash:
                    break
                branch.insert(0, block)
        elif gap > self.max_backfill:
            log.warning(
                "gap too wide to backfill: from=%d to=%d; resuming at the head", self.last, head.number
            )
            return [head]
        while True:
            low = branch[0]
            known = self._hashes.get(low.number - 1)
            if known == low.parent_hash:
                return branch
            if known is None and low.number - 1 < min(self._hashes, default=low.number):
                # Below our memory (or a gap we refused to fill): nothing to compare with.
                return branch
            if len(branch) > self.max_reorg_depth + max(0, gap):
                log.error(
                    "reorg deeper than %d blocks at %d; announcing as is", self.max_reorg_depth, low.number
                )
                return branch
            parent = await self._by_hash(low.parent_hash, head.received_at_ns)
            if parent.number != low.number - 1:
                raise DecodeError(f"block {low.number}'s parent has number {parent.number}")
            branch.insert(0, parent)

    def _commit(self, branch: Sequence[NewBlock]) -> None:
        tip = branch[-1].number
        for number in [n for n in self._hashes if n > tip]:
            del self._hashes[number]  # a shorter branch won: those heights are orphaned
        for block in branch:
            self._hashes[block.number] = block.hash
        self.last = tip
        self.high = tip if self.high is None else max(self.high, tip)
        floor = tip - self.history
        for number in [n for n in self._hashes if n <= floor]:
            del self._hashes[number]

    async def _by_numbers(self, numbers: range, received_at_ns: int) -> list[NewBlock]:
        results = await self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        now = time.monotonic_ns()
        blocks = []
        for number, obj in zip(numbers, results, strict=True):
            if obj is None:
                raise RpcError(f"node does not have block {number} yet")
            blocks.append(decode_header(obj, now))
        return blocks

    async def _by_hash(self, block_hash: bytes, received_at_ns: int) -> NewBlock:
        obj = await self.rpc.call("eth_getBlockByHash", ["0x" + block_hash.hex(), False])
        if obj is None:
            raise RpcError(f"node does not know block 0x{block_hash.hex()}")
        return decode_header(obj, time.monotonic_ns())


class BlockCollector:
    """Announces every canonical block exactly once per hash; see the module docstring."""

    def __init__(
        self,
        ws_url: str,
        rpc: RpcClient,
        *,
        head_watch: HeadWatch | None = None,
        name: str = "blocks",
        max_silence: float = 60.0,
        heartbeat: float | None = 15.0,
        history: int = 256,
    ) -> None:
        self.name = name
        self.ws_url = ws_url
        self.rpc = rpc
        self.head_watch = head_watch
        self.max_silence = max_silence
        self.heartbeat = heartbeat
        self.tracker = ChainTracker(rpc, history=history)
        self.subscriptions = 0
        self.errors = 0

    def __repr__(self) -> str:
        return f"BlockCollector({self.name}, {redact_url(self.ws_url)})"

    async def events(self) -> AsyncGenerator[NewBlock, None]:
        async with contextlib.aclosing(self.batches()) as batches:
            async for blocks in batches:
                for block in blocks:
                    yield block

    async def batches(self) -> AsyncGenerator[list[NewBlock], None]:
        """The announcements caused by one head (a backfill or a new branch), oldest first.

        For consumers that want to batch their own follow-up reads per head (e.g. LogCollector).
        """
        stream = subscribe_forever(
            self.ws_url, "newHeads", idle_timeout=self.max_silence, heartbeat=self.heartbeat
        )
        async with contextlib.aclosing(stream):  # close the socket as soon as we are closed
            async for item in stream:
                if isinstance(item, Subscribed):
                    self.subscriptions += 1
                    blocks = await self._latest()
                else:
                    blocks = await self._handle(item.result, item.received_at_ns)
                if not blocks:
                    continue
                if self.head_watch is not None:
                    self.head_watch.mark(blocks[-1].number)
                yield blocks

    async def _latest(self) -> list[NewBlock]:
        """After (re)subscribing: catch up to the node's latest block over HTTP."""
        try:
            header = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
        except RpcError as exc:
            self.errors += 1
            log.warning("cannot read latest block collector=%s error=%s", self.name, exc)
            return []
        return await self._handle(header, time.monotonic_ns())

    async def _handle(self, header: Any, received_at_ns: int) -> list[NewBlock]:
        try:
            return await self.tracker.on_header(header, received_at_ns)
        except (DecodeError, RpcError) as exc:
            self.errors += 1
            log.warning("skipping head collector=%s error=%s", self.name, str(exc)[:300])
            return []
