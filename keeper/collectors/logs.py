"""Contract logs, one `Logs` event per block, driven by blocks (not by a `logs` subscription).

Why block-driven: a `logs` subscription has the same gaps as newHeads after a drop, and reorg removals
arrive only if the node remembers what it sent us. Here the block stream (a `ChainTracker`, fed by
newHeads when `ws_url` is given, else by polling `latest` over HTTP) is already gap-free and
reorg-aware, and each block's logs are read with `eth_getLogs({blockHash, address, topics})`
(EIP-234: exactly that block's logs, never a mix of branches), one JSON-RPC batch per head.

What a consumer (e.g. the liquidation strategy keeping positions live) gets, in order:
- for every new canonical block, `Logs(number, hash, entries)`, also when `entries` is empty, so the
  consumer knows its log-derived state is current as of that block;
- when a reorg replaces blocks from height k, first one `Logs` per replaced block that had entries,
  newest first, holding the same entries with `removed=True` (undo them), then the new branch's blocks.
- with `from_block`, a catch-up first: `eth_getLogs` over ranges from `from_block` to the head at
  start, grouped per block (only blocks with entries are emitted); then live blocks as above.
A failed log read leaves those blocks pending; they are retried with the next head (state only moves
once a block's logs have been emitted). Malformed log objects are logged, counted and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from keeper.chain.rpc import RpcClient
from keeper.collectors.blocks import BlockCollector, ChainTracker, decode_header
from keeper.core.events import LogEntry, Logs, NewBlock
from keeper.errors import DecodeError, RpcError

log = logging.getLogger("keeper.collectors.logs")

_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


def _hash(value: Any, key: str) -> bytes:
    if isinstance(value, str) and _HASH.fullmatch(value):
        return bytes.fromhex(value[2:])
    raise DecodeError(f"log field {key!r} is not a 32-byte hash: {str(value)[:80]!r}")


def _quantity(value: Any, key: str) -> int:
    if isinstance(value, str) and _QUANTITY.fullmatch(value):
        return int(value, 16)
    raise DecodeError(f"log field {key!r} is not a hex quantity: {str(value)[:80]!r}")


def decode_log(obj: Any) -> LogEntry:
    """A JSON-RPC log object -> LogEntry (address lowercase). Raises DecodeError (only) on bad input.

    Pending logs (no block number/hash yet) are rejected: every LogEntry belongs to a block.
    """
    if not isinstance(obj, dict):
        raise DecodeError(f"log is not an object: {type(obj).__name__}")
    address = obj.get("address")
    if not (isinstance(address, str) and _ADDRESS.fullmatch(address)):
        raise DecodeError(f"log address is not an address: {str(address)[:80]!r}")
    topics = obj.get("topics")
    if not isinstance(topics, list) or len(topics) > 4:
        raise DecodeError("log topics is not a list of at most 4 hashes")
    data = obj.get("data")
    if not (isinstance(data, str) and _DATA.fullmatch(data)):
        raise DecodeError(f"log data is not 0x-hex bytes: {str(data)[:80]!r}")
    removed = obj.get("removed", False)
    if not isinstance(removed, bool):
        raise DecodeError("log field 'removed' is not a boolean")
    tx_index = obj.get("transactionIndex")
    return LogEntry(
        address=address.lower(),
        topics=tuple(_hash(t, "topics") for t in topics),
        data=bytes.fromhex(data[2:]),
        block_number=_quantity(obj.get("blockNumber"), "blockNumber"),
        block_hash=_hash(obj.get("blockHash"), "blockHash"),
        transaction_hash=_hash(obj.get("transactionHash"), "transactionHash"),
        log_index=_quantity(obj.get("logIndex"), "logIndex"),
        transaction_index=0 if tx_index is None else _quantity(tx_index, "transactionIndex"),
        removed=removed,
    )


class LogCollector:
    """Emits `Logs` per block for `addresses` (and optional `topics` filter); see the module docstring."""

    def __init__(
        self,
        rpc: RpcClient,
        addresses: Sequence[str],
        topics: Sequence[Any] | None = None,
        *,
        ws_url: str | None = None,
        name: str = "logs",
        from_block: int | None = None,
        poll_interval: float = 1.0,
        range_size: int = 2_000,
        history: int = 256,
    ) -> None:
        self.name = name
        self.rpc = rpc
        self.addresses = [a.lower() for a in addresses]
        self.topics = list(topics) if topics is not None else None
        self.ws_url = ws_url
        self.from_block = from_block
        self.poll_interval = poll_interval
        self.range_size = range_size
        self.history = history
        self._emitted: dict[int, Logs] = {}
        """Height -> the Logs we emitted there (only blocks with entries), for undoing on a reorg."""
        self._pending: list[NewBlock] = []
        """Blocks announced by the tracker whose logs have not been emitted yet (a read failed)."""
        self.malformed = 0
        self.errors = 0

    def _filter(self, **extra: Any) -> dict[str, Any]:
        flt: dict[str, Any] = {"address": self.addresses, **extra}
        if self.topics is not None:
            flt["topics"] = self.topics
        return flt

    async def events(self) -> AsyncGenerator[Logs, None]:
        if self.ws_url is not None:
            heads = BlockCollector(self.ws_url, self.rpc, name=f"{self.name}:heads")
            tracker = heads.tracker
            if self.from_block is not None:
                for logs in await self._catch_up(tracker):
                    yield logs
            async with contextlib.aclosing(heads.batches()) as batches:
                async for blocks in batches:
                    for logs in await self.on_blocks(blocks):
                        yield logs
        else:
            tracker = ChainTracker(self.rpc, history=self.history)
            if self.from_block is not None:
                for logs in await self._catch_up(tracker):
                    yield logs
            while True:
                try:
                    header = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
                    blocks = await tracker.on_header(header, time.monotonic_ns())
                except (RpcError, DecodeError) as exc:
                    self.errors += 1
                    log.warning("cannot poll head collector=%s error=%s", self.name, str(exc)[:200])
                    blocks = []
                for logs in await self.on_blocks(blocks):
                    yield logs
                await asyncio.sleep(self.poll_interval)

    async def on_blocks(self, blocks: Sequence[NewBlock]) -> list[Logs]:
        """Logs events for newly announced `blocks` (oldest first), removals of reorged blocks first."""
        out: list[Logs] = []
        first_reorged = next((b.number for b in blocks if b.reorged), None)
        if first_reorged is not None:
            for number in sorted((n for n in self._emitted if n >= first_reorged), reverse=True):
                old = self._emitted.pop(number)
                out.append(
                    Logs(
                        old.block_number,
                        old.block_hash,
                        tuple(dataclasses.replace(e, removed=True) for e in old.entries),
                    )
                )
            self._pending = [b for b in self._pending if b.number < first_reorged]
        self._pending.extend(blocks)
        if not self._pending:
            return out
        try:
            fetched = await self._logs_by_hash(self._pending)
        except RpcError as exc:
            self.errors += 1
            log.warning(
                "log read failed, retrying with the next head collector=%s blocks=%d error=%s",
                self.name,
                len(self._pending),
                str(exc)[:200],
            )
            return out
        self._pending = []
        for logs in fetched:
            if logs.entries:
                self._emitted[logs.block_number] = logs
            out.append(logs)
        self._prune()
        return out

    def _prune(self) -> None:
        if self._emitted:
            floor = max(self._emitted) - self.history
            for number in [n for n in self._emitted if n <= floor]:
                del self._emitted[number]

    def _decode_all(self, items: Any, block_hash: bytes | None) -> list[LogEntry]:
        if not isinstance(items, list):
            raise RpcError(f"eth_getLogs returned {type(items).__name__}, not a list")
        entries = []
        for obj in items:
            try:
                entry = decode_log(obj)
            except DecodeError as exc:
                self.malformed += 1
                log.warning("skipping malformed log collector=%s error=%s", self.name, str(exc)[:200])
                continue
            if block_hash is not None and entry.block_hash != block_hash:
                self.malformed += 1
                log.warning("skipping log of another block collector=%s", self.name)
                continue
            entries.append(entry)
        entries.sort(key=lambda e: e.log_index)
        return entries

    async def _logs_by_hash(self, blocks: Sequence[NewBlock]) -> list[Logs]:
        calls = [("eth_getLogs", [self._filter(blockHash="0x" + b.hash.hex())]) for b in blocks]
        results = await self.rpc.batch(calls)
        return [
            Logs(b.number, b.hash, tuple(self._decode_all(r, b.hash)))
            for b, r in zip(blocks, results, strict=True)
        ]

    async def _catch_up(self, tracker: ChainTracker) -> list[Logs]:
        """Range reads from `from_block` to the current head; seeds `tracker` with recent headers."""
        assert self.from_block is not None
        while True:
            try:
                head = decode_header(
                    await self.rpc.call("eth_getBlockByNumber", ["latest", False]), time.monotonic_ns()
                )
                seed_from = max(self.from_block, head.number - 64, 0)
                seed = [
                    decode_header(h, head.received_at_ns)
                    for h in await self.rpc.batch(
                        [("eth_getBlockByNumber", [hex(n), False]) for n in range(seed_from, head.number)]
                    )
                ]
                ranges = [
                    (lo, min(lo + self.range_size - 1, head.number))
                    for lo in range(self.from_block, head.number + 1, self.range_size)
                ]
                results = await self.rpc.batch(
                    [("eth_getLogs", [self._filter(fromBlock=hex(lo), toBlock=hex(hi))]) for lo, hi in ranges]
                )
                break
            except (RpcError, DecodeError) as exc:
                self.errors += 1
                log.warning("catch-up failed, retrying collector=%s error=%s", self.name, str(exc)[:200])
                await asyncio.sleep(self.poll_interval)
        tracker.seed([*seed, head])
        by_block: dict[tuple[int, bytes], list[LogEntry]] = {}
        for result in results:
            for entry in self._decode_all(result, None):
                by_block.setdefault((entry.block_number, entry.block_hash), []).append(entry)
        out = []
        for (number, block_hash), entries in sorted(by_block.items()):
            logs = Logs(number, block_hash, tuple(sorted(entries, key=lambda e: e.log_index)))
            self._emitted[number] = logs
            out.append(logs)
        self._prune()
        return out
