import asyncio

import pytest

from keeper.core.events import Logs, NewBlock, PendingTx
from keeper.core.queues import EventQueue, _Closed


def block(n: int) -> NewBlock:
    return NewBlock(number=n, hash=n.to_bytes(32, "big"), parent_hash=b"", timestamp=n, base_fee_per_gas=1)


def ptx(n: int) -> PendingTx:
    return PendingTx(
        hash=n.to_bytes(32, "big"), sender="0x0", to=None, input=b"", value=0, nonce=n, gas=21000
    )


def logs(n: int) -> Logs:
    return Logs(block_number=n, block_hash=n.to_bytes(32, "big"))


async def test_blocks_keep_latest() -> None:
    q = EventQueue("s", 10)
    await q.put(block(1))
    await q.put(logs(1))
    await q.put(block(2))
    await q.put(block(3))
    got = [await q.get() for _ in range(len(q))]
    assert got == [logs(1), block(3)]
    assert q.dropped["superseded_block"] == 2


async def test_blocks_not_coalesced_when_disabled() -> None:
    q = EventQueue("s", 10, coalesce_blocks=False)
    for n in (1, 2, 3):
        await q.put(block(n))
    assert [await q.get() for _ in range(3)] == [block(1), block(2), block(3)]


async def test_pending_drop_oldest_and_count() -> None:
    q = EventQueue("s", 3)
    for n in range(5):
        await q.put(ptx(n))
    got = [await q.get() for _ in range(len(q))]
    assert [e.nonce for e in got if isinstance(e, PendingTx)] == [2, 3, 4]
    assert q.dropped["pending_overflow"] == 2


async def test_pending_dropped_when_queue_full_of_logs() -> None:
    q = EventQueue("s", 2)
    await q.put(logs(1))
    await q.put(logs(2))
    await q.put(ptx(1))
    assert len(q) == 2
    assert q.dropped["pending_overflow"] == 1


async def test_block_evicts_pending_when_full() -> None:
    q = EventQueue("s", 2)
    await q.put(ptx(1))
    await q.put(ptx(2))
    await q.put(block(7))
    got = [await q.get() for _ in range(len(q))]
    assert got == [ptx(2), block(7)]


async def test_logs_apply_backpressure_and_never_drop() -> None:
    q = EventQueue("s", 2)
    await q.put(logs(1))
    await q.put(logs(2))
    producer = asyncio.create_task(q.put(logs(3)))
    await asyncio.sleep(0.01)
    assert not producer.done()
    assert await q.get() == logs(1)
    await asyncio.wait_for(producer, 1)
    assert [await q.get(), await q.get()] == [logs(2), logs(3)]


async def test_close_is_seen_after_drain() -> None:
    q = EventQueue("s", 4)
    await q.put(logs(1))
    q.close()
    assert await q.get() == logs(1)
    assert isinstance(await q.get(), _Closed)


def test_maxsize_validated() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        EventQueue("s", 1)
