"""RpcClient against a scripted aiohttp HTTP server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from keeper.chain.rpc import RpcClient
from keeper.errors import ExecutionReverted, JsonRpcError, RpcResponseError, RpcTransportError

Reply = tuple[int, bytes]
Responder = Callable[[Any], Reply]


class ScriptedServer:
    """Answers each POST with the next responder of `script` (the last one repeats)."""

    def __init__(self) -> None:
        self.script: list[Responder] = []
        self.requests: list[Any] = []
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.requests.append(body)
        responder = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        status, payload = responder(body)
        return web.Response(status=status, body=payload, content_type="application/json")

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/v3/SECRETKEY"))


def ok(result: Any) -> Responder:
    return lambda req: (200, orjson.dumps({"jsonrpc": "2.0", "id": req["id"], "result": result}))


def error(code: int, message: str, data: Any = None) -> Responder:
    err = {"code": code, "message": message, **({"data": data} if data is not None else {})}
    return lambda req: (200, orjson.dumps({"jsonrpc": "2.0", "id": req["id"], "error": err}))


def status(code: int, body: bytes = b"") -> Responder:
    return lambda req: (code, body)


@pytest.fixture
async def srv() -> AsyncIterator[ScriptedServer]:
    s = ScriptedServer()
    app = web.Application()
    app.router.add_post("/v3/SECRETKEY", s.handle)
    s.server = TestServer(app)
    await s.server.start_server()
    yield s
    await s.server.close()


@pytest.fixture
async def rpc(srv: ScriptedServer) -> AsyncIterator[RpcClient]:
    async with RpcClient(srv.url, retries=3, timeout=5) as client:
        yield client


async def test_single_call(srv: ScriptedServer, rpc: RpcClient) -> None:
    srv.script = [ok("0x10")]
    assert await rpc.block_number() == 16
    (req,) = srv.requests
    assert req["method"] == "eth_blockNumber"
    assert req["jsonrpc"] == "2.0"
    assert req["params"] == []


async def test_batch_in_call_order_when_server_answers_out_of_order(
    srv: ScriptedServer, rpc: RpcClient
) -> None:
    def reversed_batch(reqs: Any) -> Reply:
        items = [{"jsonrpc": "2.0", "id": r["id"], "result": r["params"][0]} for r in reqs]
        return 200, orjson.dumps(list(reversed(items)))

    srv.script = [reversed_batch]
    calls = [("eth_getBalance", [f"0x{i:040x}", "latest"]) for i in range(5)]
    results = await rpc.batch(calls)
    assert results == [f"0x{i:040x}" for i in range(5)]
    (sent,) = srv.requests
    assert len(sent) == 5
    assert len({r["id"] for r in sent}) == 5


async def test_batch_missing_id_raises(srv: ScriptedServer, rpc: RpcClient) -> None:
    def drop_one(reqs: Any) -> Reply:
        return 200, orjson.dumps([{"jsonrpc": "2.0", "id": r["id"], "result": "0x1"} for r in reqs[1:]])

    srv.script = [drop_one]
    with pytest.raises(RpcResponseError, match="missing id"):
        await rpc.batch([("eth_chainId", None), ("eth_blockNumber", None)])


async def test_batch_item_error_raised_or_returned(srv: ScriptedServer, rpc: RpcClient) -> None:
    def second_fails(reqs: Any) -> Reply:
        first = {"jsonrpc": "2.0", "id": reqs[0]["id"], "result": "0x1"}
        second = {"jsonrpc": "2.0", "id": reqs[1]["id"], "error": {"code": -32000, "message": "nope"}}
        return 200, orjson.dumps([first, second])

    srv.script = [second_fails]
    calls = [("eth_chainId", None), ("eth_blockNumber", None)]
    with pytest.raises(JsonRpcError) as info:
        await rpc.batch(calls)
    assert info.value.code == -32000
    assert info.value.method == "eth_blockNumber"
    out = await rpc.batch(calls, raise_errors=False)
    assert out[0] == "0x1"
    assert isinstance(out[1], JsonRpcError)
    assert out[1].code == -32000


async def test_json_rpc_error_has_code(srv: ScriptedServer, rpc: RpcClient) -> None:
    srv.script = [error(-32601, "the method eth_sendBundle does not exist")]
    with pytest.raises(JsonRpcError) as info:
        await rpc.call("eth_sendBundle", [{}])
    assert info.value.code == -32601
    assert not isinstance(info.value, ExecutionReverted)
    assert len(srv.requests) == 1  # an answer, never retried


async def test_revert_carries_revert_data(srv: ScriptedServer, rpc: RpcClient) -> None:
    # Error(string) selector + payload, as geth/anvil return it.
    payload = "0x08c379a0" + "00" * 28 + "deadbeef"
    srv.script = [error(3, "execution reverted: boom", payload)]
    with pytest.raises(ExecutionReverted) as info:
        await rpc.eth_call("0x" + "11" * 20, b"\x12\x34")
    assert info.value.revert_data == bytes.fromhex(payload[2:])
    assert info.value.code == 3
    (req,) = srv.requests
    assert req["params"][0] == {"to": "0x" + "11" * 20, "data": "0x1234"}


async def test_revert_with_nested_data_and_no_code_3(srv: ScriptedServer, rpc: RpcClient) -> None:
    srv.script = [error(-32000, "Execution Reverted", {"data": "0xabcd"})]
    with pytest.raises(ExecutionReverted) as info:
        await rpc.call("eth_estimateGas", [{}])
    assert info.value.revert_data == b"\xab\xcd"


async def test_http_503_retried_then_success(srv: ScriptedServer, rpc: RpcClient) -> None:
    srv.script = [status(503), status(503), ok("0x7a69")]
    assert await rpc.chain_id() == 31337
    assert len(srv.requests) == 3


async def test_http_503_gives_up_after_retries(srv: ScriptedServer, rpc: RpcClient) -> None:
    srv.script = [status(503)]
    with pytest.raises(RpcTransportError) as info:
        await rpc.chain_id()
    assert len(srv.requests) == 3
    assert "SECRETKEY" not in str(info.value)


async def test_http_400_not_retried(srv: ScriptedServer, rpc: RpcClient) -> None:
    srv.script = [status(400)]
    with pytest.raises(RpcResponseError):
        await rpc.chain_id()
    assert len(srv.requests) == 1


async def test_http_400_with_json_rpc_error_body(srv: ScriptedServer, rpc: RpcClient) -> None:
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "error": {"code": -32600, "message": "invalid"}})
    srv.script = [status(400, body)]
    with pytest.raises(JsonRpcError) as info:
        await rpc.chain_id()
    assert info.value.code == -32600
    assert len(srv.requests) == 1


async def test_malformed_json_is_response_error(srv: ScriptedServer, rpc: RpcClient) -> None:
    srv.script = [status(200, b"<html>gateway</html>")]
    with pytest.raises(RpcResponseError, match="non-JSON"):
        await rpc.chain_id()
    assert len(srv.requests) == 1


async def test_reply_without_result_or_error(srv: ScriptedServer, rpc: RpcClient) -> None:
    srv.script = [status(200, b'{"jsonrpc":"2.0","id":1}')]
    with pytest.raises(RpcResponseError):
        await rpc.chain_id()


async def test_connection_refused_is_transport_error_without_secret() -> None:
    async with RpcClient("http://127.0.0.1:1/v3/SECRETKEY", retries=2, timeout=1) as client:
        with pytest.raises(RpcTransportError) as info:
            await client.chain_id()
    assert "SECRETKEY" not in str(info.value)


def test_repr_hides_secret() -> None:
    client = RpcClient("https://x.io/v3/SECRETKEY")
    assert "SECRETKEY" not in repr(client)
    assert "SECRETKEY" not in client.display_url
    assert "x.io" in repr(client)


async def test_errors_do_not_log_secret(
    srv: ScriptedServer, rpc: RpcClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    srv.script = [status(503)]
    with pytest.raises(RpcTransportError):
        await rpc.chain_id()
    client_side = [r.getMessage() for r in caplog.records if not r.name.startswith("aiohttp.access")]
    assert not [m for m in client_side if "SECRETKEY" in m]
