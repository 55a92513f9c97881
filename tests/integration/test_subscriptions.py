"""BlockCollector and PendingTxCollector against a real anvil (mining only on `evm_mine`).

The websocket goes through a small TCP proxy the test can cut, so a drop is a real socket reset seen
by the client, while HTTP (backfill) still reaches anvil directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from keeper.chain.rpc import RpcClient
from keeper.collectors.blocks import BlockCollector
from keeper.collectors.mempool import PendingTxCollector
from keeper.core.events import NewBlock, PendingTx
from keeper.core.health import HeadWatch
from keeper.devnet.anvil import DEV_ACCOUNTS, Anvil, AnvilConfig

pytestmark = pytest.mark.integration


class CuttableProxy:
    """Forwards 127.0.0.1:port -> target port. `cut()` resets every connection and refuses new ones."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.accepting = True
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def cut(self) -> None:
        self.accepting = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.accepting = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # owned: cancelled and awaited in __aexit__
        try:
            if not self.accepting:
                writer.transport.abort()
                return
            self.connections += 1
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers.update((writer, up_writer))
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pipe(reader, up_writer))
                tg.create_task(self._pipe(up_reader, writer))
        except (OSError, ExceptionGroup):
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()


async def pump(events: AsyncIterator[Any], queue: asyncio.Queue[Any]) -> None:
    async for event in events:
        await queue.put(event)


async def get(queue: asyncio.Queue[Any], seconds: float = 10.0) -> Any:
    async with asyncio.timeout(seconds):
        return await queue.get()


@pytest.fixture
async def anvil() -> AsyncIterator[Anvil]:
    async with Anvil(AnvilConfig(no_mining=True)) as node:
        yield node


async def test_pending_tx_and_blocks_with_a_ws_drop(anvil: Anvil) -> None:
    sender, _ = DEV_ACCOUNTS[0]
    recipient, _ = DEV_ACCOUNTS[1]
    watch = HeadWatch()
    blocks: asyncio.Queue[NewBlock] = asyncio.Queue()
    pending: asyncio.Queue[PendingTx] = asyncio.Queue()
    async with RpcClient(anvil.http_url) as rpc, CuttableProxy(anvil.port) as proxy:
        ws_url = f"ws://127.0.0.1:{proxy.port}"
        block_collector = BlockCollector(ws_url, rpc, head_watch=watch, heartbeat=1.0)
        mempool = PendingTxCollector(anvil.ws_url)
        block_events = block_collector.events()
        pending_events = mempool.events()
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(pump(block_events, blocks)),
                    tg.create_task(pump(pending_events, pending)),
                ]
                try:
                    await _scenario(rpc, proxy, block_collector, mempool, blocks, pending, sender, recipient)
                    assert watch.last_number == 7
                finally:
                    for task in tasks:
                        task.cancel()
        finally:
            await block_events.aclose()
            await pending_events.aclose()


async def _scenario(
    rpc: RpcClient,
    proxy: CuttableProxy,
    block_collector: BlockCollector,
    mempool: PendingTxCollector,
    blocks: asyncio.Queue[NewBlock],
    pending: asyncio.Queue[PendingTx],
    sender: str,
    recipient: str,
) -> None:
    # Start-up: the current head (genesis) is announced from HTTP once subscribed.
    genesis = await get(blocks)
    assert genesis.number == 0
    async with asyncio.timeout(10):
        while mempool.subscriptions == 0:
            await asyncio.sleep(0.01)

    tx_hash = await rpc.call(
        "eth_sendTransaction", [{"from": sender, "to": recipient, "value": hex(12_345), "gas": hex(21_000)}]
    )
    tx = await get(pending)
    assert tx.hash == bytes.fromhex(tx_hash[2:])
    assert tx.sender == sender.lower()
    assert tx.to == recipient.lower()
    assert tx.value == 12_345
    assert tx.gas == 21_000
    assert tx.received_at_ns > 0

    await rpc.call("evm_mine")
    mined = await rpc.call("eth_getBlockByNumber", ["0x1", False])
    head = await get(blocks)
    assert head.number == 1
    assert head.hash == bytes.fromhex(mined["hash"][2:])
    assert head.parent_hash == genesis.hash
    assert not head.reorged
    assert tx_hash in mined["transactions"]

    # Cut the websocket, mine 3 blocks over HTTP, let it come back: each block exactly once.
    proxy.cut()
    for _ in range(3):
        await rpc.call("evm_mine")
    await asyncio.sleep(0.3)  # the collector notices the reset and keeps retrying against a closed door
    proxy.restore()
    got = [await get(blocks, 15) for _ in range(3)]
    assert [b.number for b in got] == [2, 3, 4]
    for b in got:
        canonical = await rpc.call("eth_getBlockByNumber", [hex(b.number), False])
        assert b.hash == bytes.fromhex(canonical["hash"][2:])
    assert [b.parent_hash for b in got] == [head.hash, got[0].hash, got[1].hash]
    assert block_collector.subscriptions >= 2

    # Live heads still flow after the reconnect, and nothing was announced twice.
    await rpc.call("evm_mine")
    await rpc.call("evm_mine")
    tail = [await get(blocks), await get(blocks)]
    assert [b.number for b in tail] == [5, 6]

    # A depth-2 reorg: the two replaced heights are re-announced once each, flagged, on the new branch.
    await rpc.call("anvil_reorg", [2, []])
    replaced = [await get(blocks), await get(blocks)]
    assert [(b.number, b.reorged) for b in replaced] == [(5, True), (6, True)]
    assert replaced[0].parent_hash == got[2].hash
    for b, old in zip(replaced, tail, strict=True):
        canonical = await rpc.call("eth_getBlockByNumber", [hex(b.number), False])
        assert b.hash == bytes.fromhex(canonical["hash"][2:]) != old.hash
    await rpc.call("evm_mine")
    after = await get(blocks)
    assert (after.number, after.reorged, after.parent_hash) == (7, False, replaced[1].hash)

    await asyncio.sleep(0.2)
    assert blocks.empty()
    with contextlib.suppress(asyncio.QueueEmpty):
        extra = pending.get_nowait()
        raise AssertionError(f"unexpected pending tx {extra}")


# Runtime code that emits LOG1(topic=0x2a, no data) on any call: PUSH1 2a PUSH1 0 PUSH1 0 LOG1 STOP.
EMITTER_CODE = "0x602a60006000a100"
EMITTER = "0x" + "e1" * 20
TOPIC = (0x2A).to_bytes(32, "big")


async def test_log_collector_follows_blocks_and_reorgs(anvil: Anvil) -> None:
    from keeper.collectors.logs import LogCollector
    from keeper.core.events import Logs

    sender, _ = DEV_ACCOUNTS[0]
    out: asyncio.Queue[Logs] = asyncio.Queue()
    async with RpcClient(anvil.http_url) as rpc:
        await rpc.call("anvil_setCode", [EMITTER, EMITTER_CODE])
        await rpc.call("evm_mine")  # block 1, before the collector starts
        await rpc.call("eth_sendTransaction", [{"from": sender, "to": EMITTER, "gas": hex(50_000)}])
        await rpc.call("evm_mine")  # block 2 holds one log
        collector = LogCollector(
            rpc, [EMITTER.upper().replace("0X", "0x")], ws_url=anvil.ws_url, from_block=0
        )
        events = collector.events()
        try:
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(pump(events, out))
                try:
                    caught_up = await get(out)  # catch-up by range: only blocks with logs
                    assert caught_up.block_number == 2
                    (entry,) = caught_up.entries
                    assert entry.address == EMITTER and entry.topics == (TOPIC,) and not entry.removed

                    tx = await rpc.call(
                        "eth_sendTransaction", [{"from": sender, "to": EMITTER, "gas": hex(50_000)}]
                    )
                    await rpc.call("evm_mine")  # block 3 with a log
                    await rpc.call("evm_mine")  # block 4 without
                    b3, b4 = await get(out), await get(out)
                    assert (b3.block_number, len(b3.entries)) == (3, 1)
                    assert b3.entries[0].transaction_hash == bytes.fromhex(tx[2:])
                    assert (b4.block_number, b4.entries) == (4, ())

                    # Replace blocks 3 and 4 by empty ones: block 3's log is undone first.
                    await rpc.call("anvil_reorg", [2, []])
                    undo = await get(out)
                    assert undo.block_number == 3 and undo.block_hash == b3.block_hash
                    assert [e.removed for e in undo.entries] == [True]
                    new3, new4 = await get(out), await get(out)
                    assert (new3.block_number, new3.entries) == (3, ())
                    assert (new4.block_number, new4.entries) == (4, ())
                    assert new3.block_hash != b3.block_hash
                    await asyncio.sleep(0.2)
                    assert out.empty()
                finally:
                    task.cancel()
        finally:
            await events.aclose()
