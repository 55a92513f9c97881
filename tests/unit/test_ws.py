"""WsClient and subscribe_forever against a fake websocket JSON-RPC node (aiohttp server)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from keeper.chain.ws import Notification, Subscribed, WsClient, WsError, subscribe_forever
from keeper.errors import JsonRpcError


class FakeNode:
    """Answers eth_subscribe with ids "0xsub1", "0xsub2", ...; the test pushes frames and drops sockets."""

    def __init__(self) -> None:
        self.server: TestServer | None = None
        self.subscribes: list[Any] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.sub_ids: list[str] = []
        self.error: dict[str, Any] | None = None
        self.autoping = True
        self._changed = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=self.autoping)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT and msg.type != WSMsgType.BINARY:
                continue
            req = orjson.loads(msg.data)
            if req.get("method") != "eth_subscribe":
                continue
            if self.error is not None:
                await ws.send_bytes(orjson.dumps({"jsonrpc": "2.0", "id": req["id"], "error": self.error}))
                continue
            sub_id = f"0xsub{len(self.subscribes) + 1}"
            await ws.send_bytes(orjson.dumps({"jsonrpc": "2.0", "id": req["id"], "result": sub_id}))
            async with self._changed:
                self.subscribes.append(req)
                self.sockets.append(ws)
                self.sub_ids.append(sub_id)
                self._changed.notify_all()
        return ws

    def url(self, path: str = "/") -> str:
        assert self.server is not None
        return str(self.server.make_url(path)).replace("http://", "ws://")

    async def wait_subscribes(self, n: int) -> None:
        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(lambda: len(self.subscribes) >= n)

    async def notify(self, result: Any, sub_id: str | None = None) -> None:
        sid = sub_id or self.sub_ids[-1]
        frame = {
            "jsonrpc": "2.0",
            "method": "eth_subscription",
            "params": {"subscription": sid, "result": result},
        }
        await self.sockets[-1].send_bytes(orjson.dumps(frame))

    async def send_raw(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            await self.sockets[-1].send_bytes(data)
        else:
            await self.sockets[-1].send_str(data)

    async def drop(self) -> None:
        await self.sockets[-1].close()


@pytest.fixture
async def node() -> AsyncIterator[FakeNode]:
    n = FakeNode()
    app = web.Application()
    app.router.add_get("/{tail:.*}", n.handle)
    n.server = TestServer(app)
    await n.server.start_server()
    yield n
    await n.server.close()


async def anext_within(it: AsyncIterator[Any], seconds: float = 5.0) -> Any:
    async with asyncio.timeout(seconds):
        return await anext(it)


async def test_subscribe_yields_results(node: FakeNode) -> None:
    async with WsClient(node.url()) as ws:
        stream = ws.subscribe("newHeads")
        first = asyncio.ensure_future(anext_within(stream))
        await node.wait_subscribes(1)
        await node.notify({"number": "0x1"})
        await node.notify({"number": "0x2"})
        one: Notification = await first
        two: Notification = await anext_within(stream)
        await stream.aclose()
    assert one.result == {"number": "0x1"}
    assert two.result == {"number": "0x2"}
    assert 0 < one.received_at_ns <= two.received_at_ns
    assert node.subscribes[0]["params"] == ["newHeads"]


async def test_subscribe_params_are_sent(node: FakeNode) -> None:
    flt = {"address": ["0x" + "11" * 20], "topics": [None]}
    async with WsClient(node.url()) as ws:
        sub_id = await ws.start_subscription("logs", flt)
    assert sub_id == "0xsub1"
    assert node.subscribes[0]["params"] == ["logs", flt]


async def test_malformed_frames_are_skipped(node: FakeNode) -> None:
    async with WsClient(node.url()) as ws:
        stream = ws.subscribe("newPendingTransactions", True)
        pending = asyncio.ensure_future(anext_within(stream))
        await node.wait_subscribes(1)
        await node.send_raw("this is not json{")
        await node.send_raw(b"\xff\x00\xfe")
        await node.send_raw("[1, 2, 3]")
        await node.notify({"hash": "0xaa"}, sub_id="0xsomeoneelse")
        await node.send_raw(
            orjson.dumps({"jsonrpc": "2.0", "method": "eth_subscription", "params": 7}).decode()
        )
        await node.send_raw(
            orjson.dumps(
                {"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": "0xsub1"}}
            ).decode()
        )
        await node.notify({"hash": "0xbb"})
        note: Notification = await pending
        await stream.aclose()
        assert note.result == {"hash": "0xbb"}
        assert ws.malformed == 6


async def test_json_rpc_error_on_subscribe(node: FakeNode) -> None:
    node.error = {"code": -32602, "message": "invalid params"}
    async with WsClient(node.url()) as ws:
        with pytest.raises(JsonRpcError) as info:
            await ws.start_subscription("logs", {"bad": True})
    assert info.value.code == -32602
    stream = subscribe_forever(node.url(), "logs", {"bad": True})
    with pytest.raises(JsonRpcError):
        await anext_within(stream)
    await stream.aclose()


async def test_connect_refused_is_ws_error() -> None:
    with pytest.raises(WsError) as info:
        async with WsClient("ws://127.0.0.1:1/SECRETKEY"):
            pass
    assert "SECRETKEY" not in str(info.value)


async def test_one_subscription_per_client(node: FakeNode) -> None:
    async with WsClient(node.url()) as ws:
        await ws.start_subscription("newHeads")
        with pytest.raises(RuntimeError):
            await ws.start_subscription("newHeads")


async def test_drop_reconnects_and_resubscribes(node: FakeNode, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="keeper")
    stream = subscribe_forever(node.url("/v3/SECRETKEY"), "newHeads", initial_backoff=0.01)
    try:
        first = await anext_within(stream)
        assert first == Subscribed(reconnect=False, connects=1)
        await node.notify({"number": "0x1"})
        note = await anext_within(stream)
        assert isinstance(note, Notification)
        assert note.result == {"number": "0x1"}

        await node.drop()
        again = await anext_within(stream)
        assert again == Subscribed(reconnect=True, connects=2)
        assert len(node.subscribes) == 2
        await node.notify({"number": "0x2"})
        note = await anext_within(stream)
        assert isinstance(note, Notification)
        assert note.result == {"number": "0x2"}
    finally:
        await stream.aclose()
    keeper_logs = [r.getMessage() for r in caplog.records if r.name.startswith("keeper")]
    assert any("websocket lost" in m for m in keeper_logs)
    assert not [m for m in keeper_logs if "SECRETKEY" in m]


async def test_idle_timeout_reconnects(node: FakeNode) -> None:
    stream = subscribe_forever(node.url(), "newHeads", idle_timeout=0.2, initial_backoff=0.01)
    try:
        assert await anext_within(stream) == Subscribed(reconnect=False, connects=1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await anext_within(stream) == Subscribed(reconnect=True, connects=2)
        assert loop.time() - started >= 0.2
    finally:
        await stream.aclose()


async def test_malformed_frames_do_not_reset_idle_timeout(node: FakeNode) -> None:
    stream = subscribe_forever(node.url(), "newHeads", idle_timeout=0.3, initial_backoff=0.01)
    try:
        assert await anext_within(stream) == Subscribed(reconnect=False, connects=1)
        nxt = asyncio.ensure_future(anext_within(stream))
        for _ in range(2):  # frames keep arriving, but none is a notification
            await asyncio.sleep(0.1)
            await node.send_raw("garbage")
        assert await nxt == Subscribed(reconnect=True, connects=2)
        assert len(node.subscribes) == 2
    finally:
        await stream.aclose()


async def test_missing_pong_means_dead_socket(node: FakeNode) -> None:
    node.autoping = False  # the server never answers pings
    stream = subscribe_forever(node.url(), "newHeads", heartbeat=0.2, initial_backoff=0.01)
    try:
        assert await anext_within(stream) == Subscribed(reconnect=False, connects=1)
        assert await anext_within(stream) == Subscribed(reconnect=True, connects=2)
    finally:
        await stream.aclose()
