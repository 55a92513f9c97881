"""Block tracking (gaps, reorgs), log and pending-tx decoding, with fakes instead of a node."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keeper.collectors.blocks import BlockCollector, ChainTracker, decode_header
from keeper.collectors.logs import LogCollector, decode_log
from keeper.collectors.mempool import PendingTxCollector, decode_pending_tx, to_filter
from keeper.core.events import NewBlock, PendingTx
from keeper.core.health import HeadWatch
from keeper.errors import DecodeError, RpcTransportError
from tests.unit.test_ws import FakeNode

ADDR = "0x" + "ab" * 20


def h(text: str) -> str:
    return "0x" + hashlib.sha256(text.encode()).hexdigest()


class FakeChain:
    """A node's view: blocks by hash, a canonical branch by number, logs per block hash."""

    def __init__(self) -> None:
        self.blocks: dict[str, dict[str, Any]] = {}
        self.canonical: list[str] = []
        self.logs: dict[str, list[dict[str, Any]]] = {}
        self.calls: list[tuple[str, Any]] = []
        self.batches: list[list[tuple[str, Any]]] = []
        self.fail_next = 0

    def add(self, number: int, parent: str | None, tag: str = "") -> dict[str, Any]:
        block = {
            "number": hex(number),
            "hash": h(f"{number}{tag}"),
            "parentHash": parent or "0x" + "00" * 32,
            "timestamp": hex(1_700_000_000 + 12 * number),
            "baseFeePerGas": hex(7 + number),
            "gasLimit": hex(30_000_000),
            "gasUsed": "0x0",
            "miner": "0x" + "CD" * 20,
        }
        self.blocks[block["hash"]] = block
        return block

    def extend(self, count: int, tag: str = "", fork_at: int | None = None) -> list[dict[str, Any]]:
        """Appends `count` canonical blocks; with fork_at, first cuts the branch above that height."""
        if fork_at is not None:
            del self.canonical[fork_at + 1 :]
        out = []
        for _ in range(count):
            parent = self.canonical[-1] if self.canonical else None
            block = self.add(len(self.canonical), parent, tag)
            self.canonical.append(block["hash"])
            out.append(block)
        return out

    def head(self) -> dict[str, Any]:
        return self.blocks[self.canonical[-1]]

    def _answer(self, method: str, params: Any) -> Any:
        if method == "eth_getBlockByHash":
            return self.blocks.get(params[0])
        if method == "eth_getBlockByNumber":
            n = len(self.canonical) - 1 if params[0] == "latest" else int(params[0], 16)
            return self.blocks[self.canonical[n]] if n < len(self.canonical) else None
        if method == "eth_getLogs":
            return list(self.logs.get(params[0]["blockHash"], []))
        raise AssertionError(method)

    def _maybe_fail(self) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RpcTransportError("injected")

    async def call(self, method: str, params: Any = None) -> Any:
        self._maybe_fail()
        self.calls.append((method, params))
        return self._answer(method, params)

    async def batch(self, calls: Sequence[tuple[str, Any]], *, raise_errors: bool = True) -> list[Any]:
        self._maybe_fail()
        self.batches.append(list(calls))
        return [self._answer(m, p) for m, p in calls]


def numbers(blocks: list[NewBlock]) -> list[tuple[int, str, bool]]:
    return [(b.number, "0x" + b.hash.hex(), b.reorged) for b in blocks]


@pytest.fixture
def chain() -> FakeChain:
    c = FakeChain()
    c.extend(3)  # 0, 1, 2
    return c


async def test_first_head_then_contiguous_heads_and_duplicates(chain: FakeChain) -> None:
    tracker = ChainTracker(chain)  # type: ignore[arg-type]
    first = await tracker.on_header(chain.head(), 1)
    assert numbers(first) == [(2, chain.canonical[2], False)]
    assert first[0].received_at_ns == 1
    (b3,) = chain.extend(1)
    assert numbers(await tracker.on_header(b3, 2)) == [(3, b3["hash"], False)]
    assert await tracker.on_header(b3, 3) == []  # same hash again: announced once
    assert chain.calls == [] and chain.batches == []  # no HTTP needed on the happy path


async def test_decode_header_fields(chain: FakeChain) -> None:
    block = decode_header(chain.head(), 42)
    assert block.number == 2
    assert block.parent_hash == bytes.fromhex(chain.canonical[1][2:])
    assert block.base_fee_per_gas == 9
    assert block.timestamp == 1_700_000_024
    assert block.gas_limit == 30_000_000
    assert block.miner == "0x" + "cd" * 20
    assert block.received_at_ns == 42


async def test_gap_is_backfilled_in_one_batch(chain: FakeChain) -> None:
    tracker = ChainTracker(chain)  # type: ignore[arg-type]
    await tracker.on_header(chain.head(), 0)
    new = chain.extend(4)  # 3, 4, 5, 6
    out = await tracker.on_header(new[-1], 0)
    assert numbers(out) == [(b["number"] and int(b["number"], 16), b["hash"], False) for b in new]
    assert len(chain.batches) == 1
    assert [p[0] for _, p in chain.batches[0]] == ["0x3", "0x4", "0x5"]


async def test_reorg_walks_back_to_common_ancestor(chain: FakeChain) -> None:
    tracker = ChainTracker(chain)  # type: ignore[arg-type]
    await tracker.on_header(chain.head(), 0)
    for block in chain.extend(3):  # 3, 4, 5
        await tracker.on_header(block, 0)
    old4 = chain.canonical[4]
    fork = chain.extend(3, tag="b", fork_at=3)  # 4b, 5b, 6b on top of 3
    out = await tracker.on_header(fork[-1], 0)
    assert numbers(out) == [
        (4, fork[0]["hash"], True),
        (5, fork[1]["hash"], True),
        (6, fork[2]["hash"], False),
    ]
    assert tracker.announced_hash(4) == bytes.fromhex(fork[0]["hash"][2:]) != bytes.fromhex(old4[2:])
    # Heads of the new branch are not announced again.
    assert await tracker.on_header(fork[1], 0) == []


async def test_reorg_to_a_shorter_branch(chain: FakeChain) -> None:
    tracker = ChainTracker(chain)  # type: ignore[arg-type]
    await tracker.on_header(chain.head(), 0)
    for block in chain.extend(3):  # 3, 4, 5
        await tracker.on_header(block, 0)
    (b4,) = chain.extend(1, tag="short", fork_at=3)
    assert numbers(await tracker.on_header(b4, 0)) == [(4, b4["hash"], True)]
    assert tracker.last == 4
    (b5,) = chain.extend(1, tag="short")
    # Height 5 had been announced on the old branch: its replacement is flagged.
    assert numbers(await tracker.on_header(b5, 0)) == [(5, b5["hash"], True)]
    (b6,) = chain.extend(1, tag="short")
    assert numbers(await tracker.on_header(b6, 0)) == [(6, b6["hash"], False)]


async def test_gap_and_reorg_together(chain: FakeChain) -> None:
    tracker = ChainTracker(chain)  # type: ignore[arg-type]
    await tracker.on_header(chain.head(), 0)
    await tracker.on_header(chain.extend(1)[0], 0)  # 3
    fork = chain.extend(4, tag="c", fork_at=2)  # 3c..6c
    out = await tracker.on_header(fork[-1], 0)
    assert numbers(out) == [
        (3, fork[0]["hash"], True),
        (4, fork[1]["hash"], False),
        (5, fork[2]["hash"], False),
        (6, fork[3]["hash"], False),
    ]


async def test_rpc_failure_leaves_state_for_the_next_head(chain: FakeChain) -> None:
    tracker = ChainTracker(chain)  # type: ignore[arg-type]
    await tracker.on_header(chain.head(), 0)
    new = chain.extend(3)
    chain.fail_next = 1
    with pytest.raises(RpcTransportError):
        await tracker.on_header(new[-1], 0)
    assert tracker.last == 2
    more = chain.extend(1)
    out = await tracker.on_header(more[0], 0)
    assert [b.number for b in out] == [3, 4, 5, 6]


@st.composite
def random_chain_ops(draw: st.DrawFn) -> list[tuple[int, int]]:
    """(fork depth, blocks to add) steps; depth 0 = extend the tip."""
    return draw(st.lists(st.tuples(st.integers(0, 4), st.integers(1, 4)), min_size=1, max_size=12))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=random_chain_ops(), skip=st.lists(st.booleans(), min_size=12, max_size=12))
async def test_tracker_follows_random_reorgs(ops: list[tuple[int, int]], skip: list[bool]) -> None:
    """Whatever heads we see (some skipped), the announced branch ends equal to the node's canonical one,
    and no hash is announced twice."""
    chain = FakeChain()
    chain.extend(3)
    tracker = ChainTracker(chain)  # type: ignore[arg-type]
    seen: list[bytes] = [b.hash for b in await tracker.on_header(chain.head(), 0)]
    for i, (depth, count) in enumerate(ops):
        fork_at = max(2, len(chain.canonical) - 1 - depth)  # never below the first announced block
        chain.extend(count, tag=f"op{i}", fork_at=fork_at if depth else None)
        if skip[i] and i != len(ops) - 1:
            continue  # the websocket missed this head
        seen += [b.hash for b in await tracker.on_header(chain.head(), 0)]
    assert len(seen) == len(set(seen))
    top = len(chain.canonical) - 1
    for n in range(max(2, top - 20), top + 1):
        assert tracker.announced_hash(n) == bytes.fromhex(chain.canonical[n][2:])


# --- BlockCollector over a fake websocket ------------------------------------------------------


async def collect(it: AsyncIterator[Any], n: int, seconds: float = 5.0) -> list[Any]:
    out: list[Any] = []
    async with asyncio.timeout(seconds):
        while len(out) < n:
            out.append(await anext(it))
    return out


@pytest.fixture
async def node() -> AsyncIterator[FakeNode]:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    n = FakeNode()
    app = web.Application()
    app.router.add_get("/{tail:.*}", n.handle)
    n.server = TestServer(app)
    await n.server.start_server()
    yield n
    await n.server.close()


async def test_block_collector_backfills_after_reconnect(node: FakeNode, chain: FakeChain) -> None:
    watch = HeadWatch()
    collector = BlockCollector(node.url(), chain, head_watch=watch)  # type: ignore[arg-type]
    events = collector.events()
    try:
        # At subscription it announces the node's latest block (read over HTTP).
        (first,) = await collect(events, 1)
        assert first.number == 2
        await node.wait_subscribes(1)
        (b3,) = chain.extend(1)
        await node.notify(b3)
        await node.notify(b3)  # a duplicate notification
        await node.notify({"number": "garbage"})  # malformed header: skipped
        (got3,) = await collect(events, 1)
        assert got3.number == 3
        assert got3.received_at_ns > 0
        chain.extend(3)  # 4, 5, 6 mined while the socket is down
        await node.drop()
        got = await collect(events, 3)
        assert [b.number for b in got] == [4, 5, 6]
        assert [b.hash for b in got] == [bytes.fromhex(x[2:]) for x in chain.canonical[4:7]]
        assert collector.subscriptions == 2
        assert watch.last_number == 6
        assert collector.errors == 1
    finally:
        await events.aclose()


# --- logs ---------------------------------------------------------------------------------------


def log_obj(block: dict[str, Any], index: int, address: str = ADDR) -> dict[str, Any]:
    return {
        "address": address,
        "topics": [h("Transfer"), h(f"t{index}")],
        "data": "0x" + f"{index:064x}",
        "blockNumber": block["number"],
        "blockHash": block["hash"],
        "transactionHash": h(f"tx{block['hash']}{index}"),
        "transactionIndex": hex(index),
        "logIndex": hex(index),
        "removed": False,
    }


async def test_log_collector_emits_per_block_and_undoes_reorged_logs(chain: FakeChain) -> None:
    tracker = ChainTracker(chain)  # type: ignore[arg-type]
    collector = LogCollector(chain, [ADDR.upper().replace("0X", "0x")])  # type: ignore[arg-type]
    await tracker.on_header(chain.head(), 0)
    b3, b4 = chain.extend(2)
    chain.logs[b3["hash"]] = [log_obj(b3, 1), log_obj(b3, 0)]
    out = await collector.on_blocks(await tracker.on_header(b4, 0))
    assert [(x.block_number, len(x.entries)) for x in out] == [(3, 2), (4, 0)]
    assert [e.log_index for e in out[0].entries] == [0, 1]  # sorted
    assert out[0].entries[0].address == ADDR
    (req,) = chain.batches[-1][:1]
    assert req[1][0]["address"] == [ADDR] and req[1][0]["blockHash"] == b3["hash"]

    b3c, b4c, b5c = chain.extend(3, tag="c", fork_at=2)
    chain.logs[b4c["hash"]] = [log_obj(b4c, 0)]
    out = await collector.on_blocks(await tracker.on_header(b5c, 0))
    removal, *rest = out
    assert removal.block_hash == bytes.fromhex(b3["hash"][2:])
    assert all(e.removed for e in removal.entries) and len(removal.entries) == 2
    assert [(x.block_number, len(x.entries)) for x in rest] == [(3, 0), (4, 1), (5, 0)]
    assert not any(e.removed for x in rest for e in x.entries)


async def test_log_collector_retries_failed_reads(chain: FakeChain) -> None:
    tracker = ChainTracker(chain)  # type: ignore[arg-type]
    collector = LogCollector(chain, [ADDR])  # type: ignore[arg-type]
    await tracker.on_header(chain.head(), 0)
    (b3,) = chain.extend(1)
    chain.logs[b3["hash"]] = [log_obj(b3, 0), {"address": "junk"}]
    blocks = await tracker.on_header(b3, 0)
    chain.fail_next = 1
    assert await collector.on_blocks(blocks) == []
    (b4,) = chain.extend(1)
    out = await collector.on_blocks(await tracker.on_header(b4, 0))
    assert [(x.block_number, len(x.entries)) for x in out] == [(3, 1), (4, 0)]
    assert collector.malformed == 1
    assert collector.errors == 1


def test_decode_log_valid() -> None:
    block = {"number": "0x10", "hash": h("b")}
    entry = decode_log(log_obj(block, 3))
    assert entry.block_number == 16
    assert entry.block_hash == bytes.fromhex(h("b")[2:])
    assert entry.topics[0] == bytes.fromhex(h("Transfer")[2:])
    assert entry.data == (3).to_bytes(32, "big")
    assert entry.log_index == 3 and entry.transaction_index == 3
    assert entry.removed is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("address", "0x1234"),
        ("topics", [h("a")] * 5),
        ("topics", ["0x12"]),
        ("data", "0x123"),
        ("data", "0x 12"),
        ("blockNumber", None),
        ("blockNumber", "0x0x1"),
        ("logIndex", " 0x1"),
        ("removed", "false"),
        ("blockHash", None),
    ],
)
def test_decode_log_rejects(field: str, value: Any) -> None:
    obj = log_obj({"number": "0x1", "hash": h("b")}, 0)
    obj[field] = value
    with pytest.raises(DecodeError):
        decode_log(obj)


# --- pending transactions -----------------------------------------------------------------------


def tx_obj(tx_type: int = 2, to: str | None = ADDR) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "hash": h("tx"),
        "from": "0x" + "F3" * 20,
        "to": to,
        "input": "0xa9059cbb" + "00" * 32,
        "value": "0xde0b6b3a7640000",
        "nonce": "0x5",
        "gas": "0x5208",
        "type": hex(tx_type),
        "chainId": "0x7a69",
    }
    if tx_type >= 2:
        obj["maxFeePerGas"] = "0x77359400"
        obj["maxPriorityFeePerGas"] = "0x3b9aca00"
    else:
        obj["gasPrice"] = "0x4a817c800"
    return obj


@pytest.mark.parametrize("tx_type", [0, 1, 2])
def test_decode_pending_tx_types(tx_type: int) -> None:
    tx = decode_pending_tx(tx_obj(tx_type), 7)
    assert tx.hash == bytes.fromhex(h("tx")[2:])
    assert tx.sender == "0x" + "f3" * 20
    assert tx.to == ADDR
    assert tx.value == 10**18
    assert tx.nonce == 5 and tx.gas == 21_000 and tx.chain_id == 31337
    assert tx.tx_type == tx_type
    assert tx.selector == bytes.fromhex("a9059cbb")
    assert tx.received_at_ns == 7
    if tx_type == 2:
        assert tx.max_fee_per_gas == 2_000_000_000 and tx.max_priority_fee_per_gas == 1_000_000_000
    else:
        assert tx.gas_price == 20_000_000_000 and tx.max_fee_per_gas is None


def test_decode_pending_tx_contract_creation_and_legacy_without_type() -> None:
    obj = tx_obj(0, to=None)
    del obj["type"]
    obj["data"] = obj.pop("input")
    tx = decode_pending_tx(obj)
    assert tx.to is None and tx.tx_type == 0 and tx.input[:4] == bytes.fromhex("a9059cbb")


@pytest.mark.parametrize(
    "mutation",
    [
        {"hash": "0x12"},
        {"from": None},
        {"to": "0xnothex"},
        {"value": "12"},
        {"value": 12},
        {"nonce": None},
        {"type": "0x7e"},
        {"maxFeePerGas": None},
        {"input": "0xabc"},
        {"gas": "0x" + "f" * 65},
    ],
)
def test_decode_pending_tx_rejects(mutation: dict[str, Any]) -> None:
    obj = tx_obj(2)
    obj.update(mutation)
    with pytest.raises(DecodeError):
        decode_pending_tx(obj)


def test_decode_pending_tx_rejects_non_objects() -> None:
    for bad in (None, "0x" + "11" * 32, [1], 3):
        with pytest.raises(DecodeError):
            decode_pending_tx(bad)


def test_to_filter() -> None:
    keep = to_filter([ADDR.upper().replace("0X", "0x")], selectors=[bytes.fromhex("a9059cbb")])
    assert keep(decode_pending_tx(tx_obj()))
    other = tx_obj()
    other["input"] = "0x095ea7b3"
    assert not keep(decode_pending_tx(other))
    assert not keep(decode_pending_tx(tx_obj(to=None)))
    assert not keep(decode_pending_tx(tx_obj(to="0x" + "00" * 20)))


# Fuzzing: arbitrary JSON-like values never raise anything but DecodeError.
json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=70) | st.floats()
hexish = st.from_regex(r"0x[0-9a-fA-F]{0,70}", fullmatch=True)
json_values = st.recursive(
    json_scalars | hexish,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)
TX_KEYS = [
    "hash",
    "from",
    "to",
    "input",
    "data",
    "value",
    "nonce",
    "gas",
    "type",
    "gasPrice",
    "maxFeePerGas",
    "maxPriorityFeePerGas",
    "chainId",
]
LOG_KEYS = [
    "address",
    "topics",
    "data",
    "blockNumber",
    "blockHash",
    "transactionHash",
    "logIndex",
    "transactionIndex",
    "removed",
]


@given(st.dictionaries(st.sampled_from(TX_KEYS) | st.text(max_size=8), json_values, max_size=14))
@settings(max_examples=200, deadline=None)
def test_fuzz_decode_pending_tx_arbitrary(obj: dict[str, Any]) -> None:
    try:
        tx = decode_pending_tx(obj)
    except DecodeError:
        return
    assert isinstance(tx, PendingTx)


@given(st.sampled_from([0, 1, 2]), st.dictionaries(st.sampled_from(TX_KEYS), json_values, max_size=4))
@settings(max_examples=200, deadline=None)
def test_fuzz_decode_pending_tx_mutated(tx_type: int, changes: dict[str, Any]) -> None:
    obj = tx_obj(tx_type)
    obj.update(changes)
    try:
        tx = decode_pending_tx(obj)
    except DecodeError:
        return
    assert tx.value >= 0 and tx.nonce >= 0 and len(tx.hash) == 32


@given(
    st.dictionaries(st.sampled_from(LOG_KEYS) | st.text(max_size=8), json_values, max_size=12) | json_values
)
@settings(max_examples=200, deadline=None)
def test_fuzz_decode_log_arbitrary(obj: Any) -> None:
    with contextlib.suppress(DecodeError):
        decode_log(obj)


@given(st.dictionaries(st.sampled_from(LOG_KEYS), json_values | st.lists(hexish, max_size=5), max_size=4))
@settings(max_examples=200, deadline=None)
def test_fuzz_decode_log_mutated(changes: dict[str, Any]) -> None:
    obj = log_obj({"number": "0x1", "hash": h("b")}, 0)
    obj.update(changes)
    try:
        entry = decode_log(obj)
    except DecodeError:
        return
    assert len(entry.topics) <= 4 and all(len(t) == 32 for t in entry.topics)


@given(
    json_values
    | st.dictionaries(
        st.sampled_from(["number", "hash", "parentHash", "timestamp", "gasLimit", "baseFeePerGas", "miner"]),
        json_values,
    )
)
@settings(max_examples=300, deadline=None)
def test_fuzz_decode_header(obj: Any) -> None:
    with contextlib.suppress(DecodeError):
        decode_header(obj)


async def test_pending_collector_skips_malformed(node: FakeNode) -> None:
    collector = PendingTxCollector(node.url(), filter=to_filter([ADDR]))
    events = collector.events()
    try:
        nxt = asyncio.ensure_future(collect(events, 1))
        await node.wait_subscribes(1)
        assert node.subscribes[0]["params"] == ["newPendingTransactions", True]
        await node.notify("0x" + "11" * 32)  # a bare hash: the node ignored `true`
        await node.notify({"hash": "0x12"})
        await node.notify(tx_obj(to="0x" + "00" * 20))  # filtered out
        await node.notify(tx_obj())
        (tx,) = await nxt
        assert tx.to == ADDR
        assert collector.malformed == 2
        assert collector.filtered == 1
        assert collector.decoded == 2
    finally:
        await events.aclose()
