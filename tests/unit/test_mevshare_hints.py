"""MEV-Share hints: the SSE parser, hint decoding, oracle updates in hints, and the stream collector
against a fake stream server that drops, stalls, errors and sends garbage (fuzzed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keeper.chain.mevshare import (
    HintTx,
    MevShareHint,
    OracleHintMatcher,
    SseEvent,
    SseParser,
    oracle_update_from_hint,
    parse_hint,
    parse_hint_data,
)
from keeper.chain.ocr2 import TRANSMIT_SELECTOR, encode_transmit
from keeper.collectors.mevshare import MevShareCollector
from keeper.core.metrics import REGISTRY
from keeper.errors import DecodeError

FEED = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20
H1 = "0x" + "11" * 32
H2 = "0x" + "22" * 32


def hint_obj(h: str = H1, **extra: Any) -> dict[str, Any]:
    return {"hash": h, "logs": None, "txs": None, **extra}


def frame(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


# ---------------------------------------------------------------------------------------------------
# SSE parser


def test_sse_parser_fields_comments_and_line_endings() -> None:
    p = SseParser()
    out = p.feed(b":ping\n\ndata: a\r\ndata:b\revent: x\nid: 7\n\n: another comment\n")
    assert out == [SseEvent("a\nb", "x", "7")]
    assert p.comments == 2
    assert p.feed(b"data: no blank line yet\n") == []
    assert p.feed(b"\n") == [SseEvent("no blank line yet", "message", "7")]
    assert p.feed(b"retry: 10\nunknown\n\n") == []  # no data: nothing dispatched


@given(st.lists(st.integers(min_value=0, max_value=300), max_size=20))
def test_sse_parser_gives_the_same_events_however_the_bytes_are_split(cuts: list[int]) -> None:
    stream = (
        b":ping\r\n\r\n"
        + frame(hint_obj(H1))
        + b'data: {"hash":\r\ndata: 1}\r\r'
        + b":ping\n\n"
        + frame(hint_obj(H2))
    )
    whole = SseParser().feed(stream)
    p = SseParser()
    got: list[SseEvent] = []
    points = sorted({min(c, len(stream)) for c in cuts})
    prev = 0
    for c in [*points, len(stream)]:
        got += p.feed(stream[prev:c])
        prev = c
    assert got == whole
    assert [e.data for e in got] == [
        orjson.dumps(hint_obj(H1)).decode(),
        '{"hash":\n1}',
        orjson.dumps(hint_obj(H2)).decode(),
    ]
    assert p.comments == 2


def test_sse_parser_drops_overlong_lines_and_keeps_going() -> None:
    p = SseParser(max_line=100)
    out = p.feed(b"data: " + b"x" * 100)
    out += p.feed(b"y" * 100 + b"\n\n" + frame({"hash": H1}))
    assert [e.data for e in out] == [orjson.dumps({"hash": H1}).decode()]
    assert p.overflows == 1
    # an overlong line completed within one chunk counts too
    assert p.feed(b"data: " + b"z" * 200 + b"\n\n") == []
    assert p.overflows == 2


# ---------------------------------------------------------------------------------------------------
# hint decoding


def test_parse_hint_full_and_minimal() -> None:
    calldata = bytes.fromhex("c9807539") + bytes(64)
    obj = {
        "hash": H1,
        "logs": [{"address": FEED.upper().replace("0X", "0x"), "topics": [H2], "data": "0x01"}],
        "txs": [{"to": FEED, "functionSelector": "0xc9807539", "callData": "0x" + calldata.hex()}],
        "mevGasPrice": "0x3b9aca00",
        "gasUsed": "0x5208",
        "future": "ignored",
    }
    hint = parse_hint(obj, received_at_ns=5)
    assert hint.hash == bytes.fromhex(H1[2:])
    assert hint.to == FEED
    assert hint.selector == bytes.fromhex("c9807539")
    assert hint.calldata == calldata
    assert hint.logs[0].address == FEED
    assert hint.logs[0].topics == (bytes.fromhex(H2[2:]),)
    assert hint.logs[0].data == b"\x01"
    assert (hint.mev_gas_price, hint.gas_used, hint.received_at_ns) == (10**9, 21_000, 5)
    bare = parse_hint({"hash": H2})
    assert (bare.txs, bare.logs, bare.to, bare.selector, bare.calldata) == ((), (), None, None, None)
    # the selector is taken from the calldata when only that is shared
    only_data = parse_hint(hint_obj(txs=[{"callData": "0x" + calldata.hex()}]))
    assert only_data.selector == bytes.fromhex("c9807539")
    assert only_data.to is None


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        "0x",
        {},
        {"hash": "0x1234"},
        {"hash": 5},
        hint_obj(txs={"to": FEED}),
        hint_obj(txs=[5]),
        hint_obj(txs=[{"to": "0x12"}]),
        hint_obj(txs=[{"functionSelector": "0x123"}]),
        hint_obj(txs=[{"callData": "0x123"}]),
        hint_obj(txs=[{"callData": "0xaabbccdd", "functionSelector": "0x11223344"}]),
        hint_obj(txs=[{"hash": "0x11"}]),
        hint_obj(logs=[{"topics": []}]),
        hint_obj(logs=[{"address": FEED, "topics": [H1] * 5}]),
        hint_obj(logs=[{"address": FEED, "topics": ["0x11"]}]),
        hint_obj(logs=[{"address": FEED, "data": "zz"}]),
        hint_obj(logs="all"),
        hint_obj(txs=[{}] * 101),
        hint_obj(mevGasPrice=7),
        hint_obj(gasUsed="0x"),
    ],
)
def test_parse_hint_rejects_malformed_input_with_decode_error(obj: Any) -> None:
    with pytest.raises(DecodeError):
        parse_hint(obj)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=20)
    | st.sampled_from([H1, FEED, "0x"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
hintish = st.fixed_dictionaries(
    {"hash": st.sampled_from([H1, H2, "0x", None, 1])},
    optional={
        "txs": st.none()
        | st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "to": st.sampled_from([FEED, OTHER, None, "0x1", 3]),
                    "functionSelector": st.sampled_from(["0xc9807539", "0x", None, "c9807539"]),
                    "callData": st.sampled_from(["0x", "0xc980753900", "0x0", None, []]),
                    "hash": st.sampled_from([H1, None, "0x"]),
                },
            ),
            max_size=3,
        )
        | json_values,
        "logs": st.none() | st.lists(json_values, max_size=3) | json_values,
        "mevGasPrice": json_values,
    },
)


@settings(max_examples=400)
@given(st.one_of(json_values, hintish))
def test_parse_hint_never_raises_anything_but_decode_error(obj: Any) -> None:
    try:
        hint = parse_hint(obj)
    except DecodeError:
        return
    assert isinstance(hint, MevShareHint)
    assert len(hint.hash) == 32


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_parse_hint_data_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        parse_hint_data(data)


# ---------------------------------------------------------------------------------------------------
# oracle updates in hints


def transmit_hint(to: str, observations: list[int], *, share_calldata: bool = True) -> MevShareHint:
    calldata = encode_transmit(observations, epoch_round=0x105, observations_timestamp=1_700_000_000)
    return MevShareHint(
        hash=bytes.fromhex(H1[2:]),
        txs=(HintTx(to=to, selector=calldata[:4], calldata=calldata if share_calldata else None),),
    )


def test_oracle_update_from_hint_decodes_the_median() -> None:
    hint = transmit_hint(FEED, [300_000_000_000, 200_000_000_000, 250_000_000_000])
    update = oracle_update_from_hint(hint, {FEED.upper().replace("0X", "0x")})
    assert update is not None
    assert update.answer == 250_000_000_000
    assert update.report.observations == (200_000_000_000, 250_000_000_000, 300_000_000_000)
    assert update.report.epoch_round == 0x105
    assert (update.aggregator, update.tx_index, update.hint_hash) == (FEED, 0, bytes.fromhex(H1[2:]))
    assert oracle_update_from_hint(hint, {OTHER}) is None


def test_oracle_matcher_selector_only_hints_and_bad_calldata() -> None:
    m = OracleHintMatcher([FEED], TRANSMIT_SELECTOR)
    no_data = transmit_hint(FEED, [5], share_calldata=False)
    assert m.match(no_data) == ()
    assert m.mentions(no_data)
    assert not m.mentions(transmit_hint(OTHER, [5], share_calldata=False))
    other_call = MevShareHint(hash=bytes(32), txs=(HintTx(FEED, b"\xaa\xbb\xcc\xdd", b"\xaa\xbb\xcc\xdd"),))
    assert m.match(other_call) == ()
    broken = MevShareHint(hash=bytes(32), txs=(HintTx(FEED, TRANSMIT_SELECTOR, TRANSMIT_SELECTOR + b"\x01"),))
    assert m.match(broken) == ()
    assert m.undecodable == 1
    # a bundle hint: the second tx is the update
    two = MevShareHint(hash=bytes(32), txs=(HintTx(OTHER, None, b""), transmit_hint(FEED, [7]).txs[0]))
    [u] = m.match(two)
    assert (u.tx_index, u.answer) == (1, 7)


# ---------------------------------------------------------------------------------------------------
# the collector against a fake stream server


Script = Callable[[web.StreamResponse, int], Any]


class FakeStream:
    """A fake MEV-Share event stream (Server-Sent Events, WHATWG; the MEV-Share stream format of
    `keeper.chain.mevshare`): its n-th connection (0-based) runs `script(resp, n)`; a `status(n)` other
    than 200 answers instead."""

    def __init__(self, script: Script, status: Callable[[int], int] = lambda n: 200) -> None:
        self.script = script
        self.status = status
        self.connections = 0
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        n = self.connections
        self.connections += 1
        code = self.status(n)
        if code != 200:
            return web.Response(status=code, text="nope")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            await self.script(resp, n)
        return resp

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/"))


@contextlib.asynccontextmanager
async def serving(fake: FakeStream) -> AsyncIterator[FakeStream]:
    app = web.Application()
    app.router.add_get("/", fake.handle)
    server = TestServer(app)
    await server.start_server()
    fake.server = server
    try:
        yield fake
    finally:
        await server.close()


async def take(collector: MevShareCollector, n: int) -> list[MevShareHint]:
    out: list[MevShareHint] = []
    gen = collector.events()
    async with contextlib.aclosing(gen):
        async for hint in gen:
            out.append(hint)
            if len(out) == n:
                break
    return out


def malformed_count(reason: str, name: str) -> float:
    value = REGISTRY.get_sample_value(
        "keeper_mevshare_hints_malformed_total", {"collector": name, "reason": reason}
    )
    return value or 0.0


async def test_collector_skips_garbage_and_reconnects_after_drops() -> None:
    async def script(resp: web.StreamResponse, n: int) -> None:
        await resp.write(b":ping\n\n")
        if n == 0:
            await resp.write(b"data: not json\n\n")
            await resp.write(frame({"hash": "0x12"}))  # missing a proper hash
            await resp.write(b"data: \xff\xfe\n\n")  # not UTF-8
            await resp.write(frame(hint_obj(H1)))
            await resp.write(b'data: {"hash": "0x11')  # dropped mid-event
            return
        await resp.write(frame(hint_obj(H2, txs=[{"to": FEED}])))
        await asyncio.sleep(3600)

    before_json = malformed_count("json", "garbage")
    before_hint = malformed_count("hint", "garbage")
    async with serving(FakeStream(script)) as fake:
        c = MevShareCollector(fake.url, name="garbage", idle_timeout=30, initial_backoff=0.01)
        hints = await take(c, 2)
    assert [h.hash_hex for h in hints] == [H1, H2]
    assert hints[1].to == FEED
    assert (c.malformed, c.hints, c.reconnects, c.connects) == (3, 2, 1, 2)
    assert c.last_error == "closed by the server"
    assert malformed_count("json", "garbage") - before_json == 2
    assert malformed_count("hint", "garbage") - before_hint == 1
    assert fake.connections == 2


async def test_collector_idle_watchdog_reconnects_a_silent_stream() -> None:
    async def script(resp: web.StreamResponse, n: int) -> None:
        if n == 0:
            await asyncio.sleep(3600)  # accepted, then nothing: not even a ping
        await resp.write(frame(hint_obj(H1)))
        await asyncio.sleep(3600)

    async with serving(FakeStream(script)) as fake:
        c = MevShareCollector(fake.url, name="idle", idle_timeout=0.2, initial_backoff=0.01)
        [hint] = await take(c, 1)
    assert hint.hash_hex == H1
    assert c.reconnects == 1
    assert "not even a ping" in c.last_error


async def test_collector_pings_keep_a_quiet_stream_alive() -> None:
    async def script(resp: web.StreamResponse, n: int) -> None:
        for _ in range(8):
            await resp.write(b":ping\n\n")
            await asyncio.sleep(0.01)
        await resp.write(frame(hint_obj(H1)))
        await asyncio.sleep(3600)

    async with serving(FakeStream(script)) as fake:
        c = MevShareCollector(fake.url, name="pings", idle_timeout=5, initial_backoff=0.01)
        [hint] = await take(c, 1)
    assert hint.hash_hex == H1
    assert (c.reconnects, c.pings) == (0, 8)


async def test_collector_retries_http_errors_and_refused_connections() -> None:
    async def script(resp: web.StreamResponse, n: int) -> None:
        await resp.write(frame(hint_obj(H2)))
        await asyncio.sleep(3600)

    async with serving(FakeStream(script, status=lambda n: 503 if n < 2 else 200)) as fake:
        url = fake.url
        c = MevShareCollector(url, name="http", idle_timeout=5, initial_backoff=0.01, max_backoff=0.05)
        [hint] = await take(c, 1)
    assert hint.hash_hex == H2
    assert c.reconnects == 2
    # nothing listening: errors, retried, never raised
    refused = MevShareCollector(url, name="refused", initial_backoff=0.01, max_backoff=0.02)
    task = asyncio.create_task(take(refused, 1))
    while refused.reconnects < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert refused.hints == 0
    assert refused.connects == 0


async def test_collector_filter_counts_what_it_drops() -> None:
    async def script(resp: web.StreamResponse, n: int) -> None:
        await resp.write(frame(hint_obj(H1, txs=[{"to": OTHER}])))
        await resp.write(frame(hint_obj(H2, txs=[{"to": FEED}])))
        await asyncio.sleep(3600)

    async with serving(FakeStream(script)) as fake:
        c = MevShareCollector(fake.url, name="filter", filter=lambda h: h.to == FEED)
        [hint] = await take(c, 1)
    assert hint.hash_hex == H2
    assert (c.hints, c.filtered) == (2, 1)


chunks = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from([b"\n", b"\r\n", b"\r", b":ping\n\n", b"data: ", b"data: {", b"\n\n", b"\xff"]),
        json_values.map(lambda v: b"data: " + orjson.dumps(v) + b"\n\n"),
        hintish.map(lambda v: b"data: " + orjson.dumps(v) + b"\n\n"),
    ),
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=chunks)
def test_collector_fuzzed_streams_never_crash_and_valid_hints_get_through(garbage: list[bytes]) -> None:
    """Whatever the server sends before a drop, the collector reconnects and the next valid hint
    arrives; every hint it yields is one a direct parse accepts."""

    async def run() -> tuple[list[MevShareHint], MevShareCollector]:
        async def script(resp: web.StreamResponse, n: int) -> None:
            if n == 0:
                for chunk in garbage:
                    await resp.write(chunk)
                return  # drop
            # a fresh connection starts clean: a blank line ends nothing, then a valid hint
            await resp.write(frame(hint_obj(H2)))
            await asyncio.sleep(3600)

        async with serving(FakeStream(script)) as fake:
            c = MevShareCollector(fake.url, name="fuzz", idle_timeout=5, initial_backoff=0.01)
            out: list[MevShareHint] = []
            gen = c.events()
            async with contextlib.aclosing(gen):
                async for hint in gen:
                    out.append(hint)
                    if hint.hash_hex == H2 and c.connects == 2:
                        break
            return out, c

    hints, c = asyncio.run(run())
    assert hints[-1].hash_hex == H2
    assert c.connects == 2
    # what came through the first connection: exactly the hints a parser fed the same bytes accepts
    p = SseParser()
    expected: list[bytes] = []
    bad = 0
    for chunk in garbage:
        for ev in p.feed(chunk):
            try:
                expected.append(parse_hint_data(ev.data).hash)
            except DecodeError:
                bad += 1
    assert [h.hash for h in hints[:-1]] == expected
    assert c.malformed == bad
