"""Where replayed blocks come from: a recording file, or an archive node (fork replay).

A source knows the chain, the block range, how to start the replay node on the state before the first
block (`anvil_args`), and yields the blocks in order (`blocks()`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from keeper.backtest.recording import Recording, ReplayBlock, read_recording
from keeper.chain.redact import redact_url
from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.errors import KeeperError, RpcError

ZERO = "0x0000000000000000000000000000000000000000"


class SourceError(KeeperError):
    """Bad input about the blocks to replay (one line, exit code 2)."""


class BlockSource(Protocol):
    kind: str
    name: str
    chain_id: int
    gas_limit: int
    first_block: int
    last_block: int
    deployment: Mapping[str, Any] | None

    def anvil_args(self, workdir: Path) -> list[str]: ...

    def blocks(self) -> AsyncIterator[ReplayBlock]: ...


class RecordingSource:
    kind = "recording"

    def __init__(self, recording: Recording, first: int | None = None, last: int | None = None) -> None:
        self.recording = recording
        self.name = recording.path.name
        self.chain_id = recording.chain_id
        self.gas_limit = recording.gas_limit
        self.deployment = recording.deployment
        self.first_block = recording.first_block
        self.last_block = recording.last_block if last is None else last
        if first is not None and first != recording.first_block:
            raise SourceError(
                f"--from-block {first}: a recording replays from its first block ({recording.first_block})"
            )
        if not recording.first_block <= self.last_block <= recording.last_block:
            raise SourceError(
                f"--to-block {self.last_block} is outside the recording (blocks {recording.first_block}"
                f"-{recording.last_block})"
            )

    @classmethod
    def open(cls, path: Path, first: int | None = None, last: int | None = None) -> RecordingSource:
        return cls(read_recording(path), first, last)

    def anvil_args(self, workdir: Path) -> list[str]:
        state = workdir / "state.json"
        state.write_bytes(self.recording.state)
        return ["--load-state", str(state)]

    async def blocks(self) -> AsyncIterator[ReplayBlock]:
        for b in self.recording.blocks:
            if b.number > self.last_block:
                return
            yield b


async def fetch_block(rpc: RpcClient, number: int) -> ReplayBlock | None:
    block = await rpc.call("eth_getBlockByNumber", [hex(number), True])
    if block is None:
        return None
    txs = block.get("transactions") or []
    raws: list[Any] = []
    if txs:
        raws = await rpc.batch([("eth_getRawTransactionByHash", [t["hash"]]) for t in txs])
    return ReplayBlock.from_node(block, [r if isinstance(r, str) else None for r in raws])


class ForkSource:
    """Blocks A..B of an archive node; the replay node forks it at A-1."""

    kind = "fork"

    def __init__(self, url: str, first: int, last: int) -> None:
        self.url = url
        self.name = redact_url(url)
        self.first_block = first
        self.last_block = last
        self.chain_id = 0
        self.gas_limit = 0
        self.deployment: Mapping[str, Any] | None = None

    async def check(self) -> None:
        """SourceError (one line) for a range beyond the head or a node that is not an archive node."""
        if self.first_block < 1:
            raise SourceError(f"--from-block {self.first_block}: must be at least 1")
        if self.first_block > self.last_block:
            raise SourceError(f"--from-block {self.first_block} is after --to-block {self.last_block}")
        async with RpcClient(self.url) as rpc:
            try:
                self.chain_id = await rpc.chain_id()
                head = await rpc.block_number()
            except RpcError as exc:
                raise SourceError(f"--fork-url {self.name}: cannot read the chain: {exc}") from None
            if self.last_block > head:
                raise SourceError(
                    f"--to-block {self.last_block} is beyond the head of {self.name} (block {head})"
                )
            parent = self.first_block - 1
            try:
                header = await rpc.call("eth_getBlockByNumber", [hex(parent), False])
                if header is None:
                    raise SourceError(f"--fork-url {self.name} does not have block {parent}")
                await rpc.call("eth_getBalance", [ZERO, hex(parent)])
                await rpc.call("eth_getTransactionCount", [ZERO, hex(parent)])
            except RpcError as exc:
                raise SourceError(
                    f"--fork-url {self.name} is not an archive node: "
                    f"it has no state at block {parent} ({exc})"
                ) from None
            self.gas_limit = hex_to_int(header["gasLimit"])

    def anvil_args(self, workdir: Path) -> list[str]:
        return ["--fork-url", self.url, "--fork-block-number", str(self.first_block - 1)]

    async def blocks(self) -> AsyncIterator[ReplayBlock]:
        """Each block is fetched while the one before it is replayed (one block ahead)."""
        async with RpcClient(self.url, timeout=60.0) as rpc:
            ahead = asyncio.create_task(fetch_block(rpc, self.first_block))
            try:
                for n in range(self.first_block, self.last_block + 1):
                    block = await ahead
                    if n < self.last_block:
                        ahead = asyncio.create_task(fetch_block(rpc, n + 1))
                    if block is None:
                        raise SourceError(f"--fork-url {self.name} does not have block {n}")
                    yield block
            finally:
                if not ahead.done():
                    ahead.cancel()
                    with contextlib.suppress(asyncio.CancelledError, KeeperError):
                        await ahead
