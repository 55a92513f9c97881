"""The bundle client against fake builders (aiohttp test servers, and raw TCP servers that accept a
connection and never answer).

No wall-clock bounds: independence of builders is checked by the order results arrive in and by what is
still in flight, never by elapsed time; timeouts here only guard against hangs.

The fake builder verifies `X-Flashbots-Signature` independently of keeper: it recovers the signer from
the header and the raw body with eth_account (EIP-191 over "0x" + hex(keccak256(body))), not with
keeper.chain.flashbots_auth, and answers 403 "error in signature check" when it does not match.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Self

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak

from keeper.chain.flashbots_auth import FlashbotsSigner
from keeper.core.metrics import REGISTRY
from keeper.errors import RelayError
from keeper.executors.builder_client import BundleClient
from keeper.executors.builders import MultiBuilderClient
from keeper.executors.relay_types import (
    Bundle,
    CallBundleResult,
    MevBundle,
    MevHash,
    MevTx,
    RelayRejected,
    RelayResponseError,
    RelayTransportError,
    SimulationUnavailable,
    block_replacement_uuid,
    decode_revert_reason,
    parse_int,
)

KEY = "0x" + keccak(b"keeper bundle-client test identity").hex()
ADDRESS = Account.from_key(KEY).address
API_PATH = "/v1/SUPERSECRETAPIKEY"
TX1 = "0x02f8" + "ab" * 60
TX2 = "0x02f8" + "cd" * 70
H1 = "0x" + "11" * 32
H2 = "0x" + "22" * 32
BUNDLE_HASH = "0x" + "be" * 32

Reply = tuple[int, bytes]
Responder = Callable[[dict[str, Any]], Awaitable[Reply]]


def independent_recover(header: str, body: bytes) -> str | None:
    """eth_account only: the address that signed `body`, if the header's signature is valid for it."""
    try:
        claimed, sig = header.split(":")
        if not sig.startswith("0x") or len(sig) != 132:
            return None
        msg = encode_defunct(text="0x" + keccak(body).hex())
        recovered = Account.recover_message(msg, signature=bytes.fromhex(sig[2:]))
    except Exception:
        return None
    return str(recovered) if recovered.lower() == claimed.lower() else None


def rpc_ok(result: Any) -> Responder:
    async def respond(req: dict[str, Any]) -> Reply:
        # stdlib json: writes integers of any size
        return 200, json.dumps({"jsonrpc": "2.0", "id": req.get("id"), "result": result}).encode()

    return respond


def rpc_error(code: int, message: str, status: int = 200) -> Responder:
    async def respond(req: dict[str, Any]) -> Reply:
        err = {"code": code, "message": message}
        return status, orjson.dumps({"jsonrpc": "2.0", "id": req.get("id"), "error": err})

    return respond


def raw(status: int, body: bytes) -> Responder:
    async def respond(req: dict[str, Any]) -> Reply:
        return status, body

    return respond


def slow(delay: float, then: Responder) -> Responder:
    async def respond(req: dict[str, Any]) -> Reply:
        await asyncio.sleep(delay)
        return await then(req)

    return respond


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    signer: str | None
    peer: Any = None

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class FakeBuilder:
    """Answers each POST with the next responder of `script` (the last one repeats)."""

    script: list[Responder] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        signer = independent_recover(request.headers.get("X-Flashbots-Signature", ""), body)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.received.append(Received(body, dict(request.headers), signer, peer))
        if signer is None:
            return web.Response(
                status=403, body=b'{"error":"error in signature check"}', content_type="application/json"
            )
        responder = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        status, payload = await responder(orjson.loads(body))
        return web.Response(status=status, body=payload, content_type="application/json")

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url(API_PATH))

    @property
    def host_label(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.port}"

    @property
    def identity(self) -> str:
        """The builder identity of `url` (no name given): the redacted URL."""
        return f"http://{self.host_label}/…"

    @property
    def params(self) -> Any:
        return self.received[-1].json["params"]


async def start_builder(*script: Responder) -> FakeBuilder:
    fake = FakeBuilder(script=list(script))
    app = web.Application()
    app.router.add_post(API_PATH, fake.handle)
    fake.server = TestServer(app, host="127.0.0.1")
    await fake.server.start_server()
    return fake


@pytest.fixture
async def builders() -> AsyncIterator[list[FakeBuilder]]:
    started: list[FakeBuilder] = []
    yield started
    for b in started:
        assert b.server is not None
        await b.server.close()


@pytest.fixture
async def fake(builders: list[FakeBuilder]) -> FakeBuilder:
    b = await start_builder(rpc_ok({"bundleHash": BUNDLE_HASH}))
    builders.append(b)
    return b


@pytest.fixture
async def client(fake: FakeBuilder) -> AsyncIterator[BundleClient]:
    async with BundleClient(fake.url, KEY, timeout=2.0, retries=2, backoff=0.001) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HungServer:
    """Accepts TCP connections and never answers (reads until the client hangs up or `close()`)."""

    def __init__(self) -> None:
        self.connections = 0
        """Connections accepted so far."""
        self.open_now = 0
        """Connections currently open (the client has not hung up)."""
        self.accepted = asyncio.Event()
        self.hung_up = asyncio.Event()
        self._release = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PATH}"

    @property
    def identity(self) -> str:
        return f"http://127.0.0.1:{self.port}/…"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)  # type: ignore[arg-type]
        self.connections += 1
        self.open_now += 1
        self.accepted.set()
        eof = asyncio.ensure_future(reader.read())
        release = asyncio.ensure_future(self._release.wait())
        try:
            await asyncio.wait({eof, release}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (eof, release):
                t.cancel()
            self.open_now -= 1
            if eof.done() and not eof.cancelled():
                self.hung_up.set()
            writer.close()

    async def close(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(asyncio.gather(*self._handlers, return_exceptions=True), 30)
            await self._server.wait_closed()


@pytest.fixture
async def hung() -> AsyncIterator[HungServer]:
    server = await HungServer().start()
    yield server
    await server.close()


def assert_no_secrets(text: str) -> None:
    assert KEY[2:].lower() not in text.lower()
    assert "SUPERSECRETAPIKEY" not in text


# ---------------------------------------------------------------------------------------------------
# The fake itself


async def test_fake_builder_rejects_a_signature_over_other_bytes(fake: FakeBuilder) -> None:
    signer = FlashbotsSigner(KEY)
    body = b'{"jsonrpc":"2.0","id":1,"method":"eth_sendBundle","params":[]}'
    async with aiohttp.ClientSession() as session:
        for header in (signer.sign(body + b" "), signer.sign(body).replace(":0x", ":")):
            async with session.post(fake.url, data=body, headers={"X-Flashbots-Signature": header}) as r:
                assert r.status == 403
        async with session.post(
            fake.url, data=body, headers={"X-Flashbots-Signature": signer.sign(body)}
        ) as r:
            assert r.status == 200
    assert [r.signer for r in fake.received] == [None, None, ADDRESS]


# ---------------------------------------------------------------------------------------------------
# Methods and their params


async def test_send_bundle_params_and_signature(fake: FakeBuilder, client: BundleClient) -> None:
    rid = str(uuid.uuid4())
    bundle = Bundle.build(
        [TX1, bytes.fromhex(TX2[2:])],
        0x1234AB,
        min_timestamp=1_700_000_000,
        max_timestamp=1_700_000_012,
        reverting_tx_hashes=[H2],
        replacement_uuid=rid,
        builders=["titan", "beaverbuild.org"],
        refund_percent=90,
        refund_recipient="0x" + "ab" * 20,
        refund_tx_hashes=[H1],
    )
    assert await client.send_bundle(bundle) == BUNDLE_HASH
    (rec,) = fake.received
    assert rec.signer == ADDRESS
    assert rec.headers["Content-Type"] == "application/json"
    req = rec.json
    assert req["jsonrpc"] == "2.0"
    assert req["method"] == "eth_sendBundle"
    assert isinstance(req["id"], int)
    assert req["params"] == [
        {
            "txs": [TX1, TX2],
            "blockNumber": "0x1234ab",
            "minTimestamp": 1_700_000_000,
            "maxTimestamp": 1_700_000_012,
            "revertingTxHashes": [H2],
            "replacementUuid": rid,
            "builders": ["titan", "beaverbuild.org"],
            "refundPercent": 90,
            "refundRecipient": "0x" + "ab" * 20,
            "refundTxHashes": [H1],
        }
    ]


async def test_send_bundle_minimal_params_omit_unset_fields(fake: FakeBuilder, client: BundleClient) -> None:
    await client.send_bundle(Bundle.build([TX1.upper().replace("0X", "0x")], 17))
    assert fake.params == [{"txs": [TX1], "blockNumber": "0x11"}]
    assert fake.received[-1].signer == ADDRESS


def test_bundle_validation() -> None:
    with pytest.raises(ValueError, match="too many txs"):
        Bundle.build([TX1] * 101, 5)
    with pytest.raises(ValueError, match="too large"):
        Bundle.build(["0x" + "00" * 3001] * 100, 5)
    with pytest.raises(ValueError, match="refund_percent"):
        Bundle.build([TX1], 5, refund_percent=100)
    with pytest.raises(ValueError, match="needs txs"):
        Bundle.build([], 5)
    with pytest.raises(ValueError, match="reverting_tx_hashes"):
        Bundle.build([TX1], 5, reverting_tx_hashes=["0x12"])
    with pytest.raises(ValueError, match="UUID"):
        Bundle.build([TX1], 5, replacement_uuid="nope")
    with pytest.raises(ValueError, match="raw transaction"):
        Bundle.build(["02f8"], 5)
    # BuilderNet-style cancel: no txs, a uuid
    rid = str(uuid.uuid4())
    assert Bundle.build([], 5, replacement_uuid=rid).to_params() == {
        "txs": [],
        "blockNumber": "0x5",
        "replacementUuid": rid,
    }


def _revert_error_string(text: str) -> bytes:
    data = text.encode()
    padded = data + b"\x00" * (-len(data) % 32)
    return bytes.fromhex("08c379a0") + (32).to_bytes(32, "big") + len(data).to_bytes(32, "big") + padded


BIG = 2**70 + 12345  # beyond 64 bits: orjson alone would turn a JSON number this size into a float


def _call_bundle_result(revert: bytes) -> dict[str, Any]:
    return {
        "bundleGasPrice": "476190476193",
        "bundleHash": "0x73b1e258c7a42fd0230b2fd05529c5d4b6fcb66c227783f8bece8aeacdd1db2e",
        "coinbaseDiff": "20000000000126000",
        "ethSentToCoinbase": "20000000000000000",
        "gasFees": "0x1ec30",  # hex, 126000
        "results": [
            {
                "coinbaseDiff": "10000000000063000",
                "ethSentToCoinbase": "10000000000000000",
                "fromAddress": "0x02A727155aeF8609c9f7F2179b2a1f560B39F5A0",
                "gasFees": "63000",
                "gasPrice": "476190476193",
                "gasUsed": 21000,
                "toAddress": "0x73625f59CAdc5009Cb458B751b3E7b6b48C06f2C",
                "txHash": "0x669b4704a7d993a946cdd6e2f95233f308ce0c4649d2e04944e8299efcaa098a",
                "value": "0x0a0b",
            },
            {
                "coinbaseDiff": BIG,
                "ethSentToCoinbase": "0",
                "fromAddress": "0x02A727155aeF8609c9f7F2179b2a1f560B39F5A0",
                "gasFees": "0x0",
                "gasPrice": "0x5208",
                "gasUsed": "0x5208",
                "toAddress": "0x73625f59CAdc5009Cb458B751b3E7b6b48C06f2C",
                "txHash": "0xa839ee83465657cac01adc1d50d96c1b586ed498120a84a64749c0034b4f19fa",
                "error": "execution reverted",
                "revert": "0x" + revert.hex(),
            },
        ],
        "stateBlockNumber": 5221585,
        "totalGasUsed": "42000",
    }


async def test_call_bundle_parses_decimal_hex_and_reverts(fake: FakeBuilder, client: BundleClient) -> None:
    revert = _revert_error_string("health factor not below threshold")
    # stdlib json: orjson cannot write an integer this big
    reply = json.dumps({"jsonrpc": "2.0", "id": 1, "result": _call_bundle_result(revert)}).encode()
    assert str(BIG).encode() in reply
    fake.script = [raw(200, reply)]
    res = await client.call_bundle([TX1, TX2], 5221586, state_block=5221585, timestamp=1_700_000_000)
    assert fake.params == [
        {
            "txs": [TX1, TX2],
            "blockNumber": hex(5221586),
            "stateBlockNumber": hex(5221585),
            "timestamp": 1_700_000_000,
        }
    ]
    assert isinstance(res, CallBundleResult)
    assert res.bundle_gas_price == 476190476193
    assert res.coinbase_diff == 20000000000126000
    assert res.eth_sent_to_coinbase == 20000000000000000
    assert res.gas_fees == 126000
    assert res.state_block_number == 5221585
    assert res.total_gas_used == 42000
    assert res.bundle_hash == "0x73b1e258c7a42fd0230b2fd05529c5d4b6fcb66c227783f8bece8aeacdd1db2e"
    ok, bad = res.results
    assert ok.success
    assert ok.value == b"\x0a\x0b"
    assert ok.error is None
    assert ok.revert is None
    assert ok.gas_used == 21000
    assert ok.coinbase_diff == 10000000000063000
    assert ok.eth_sent_to_coinbase == 10000000000000000
    assert ok.gas_fees == 63000
    assert ok.gas_price == 476190476193
    assert ok.from_address == "0x02A727155aeF8609c9f7F2179b2a1f560B39F5A0"
    assert ok.to_address == "0x73625f59CAdc5009Cb458B751b3E7b6b48C06f2C"
    assert not bad.success
    assert bad.error == "execution reverted"
    assert bad.value is None
    assert bad.revert == revert
    assert bad.revert_reason == "health factor not below threshold"
    assert bad.coinbase_diff == BIG  # exact, not a float
    assert type(bad.coinbase_diff) is int
    assert bad.gas_used == 21000
    assert bad.gas_price == 21000
    assert not res.all_succeeded
    assert res.failed == (bad,)
    for value in (res.bundle_gas_price, res.gas_fees, ok.gas_fees, bad.gas_fees):
        assert type(value) is int


async def test_call_bundle_revert_as_raw_string(fake: FakeBuilder, client: BundleClient) -> None:
    # The reference builder puts the revert bytes in a JSON string as they are (not hex).
    result = _call_bundle_result(b"")
    result["results"][1]["revert"] = "not enough collateral"
    fake.script = [rpc_ok(result)]
    res = await client.call_bundle([TX1], 9)
    assert res.results[1].revert == b"not enough collateral"
    assert fake.params[0]["stateBlockNumber"] == "latest"


async def test_call_bundle_tx_that_cannot_apply_is_a_relay_error(
    fake: FakeBuilder, client: BundleClient
) -> None:
    fake.script = [rpc_error(-32000, f"err: nonce too low: address 0x02a7, tx: 0 state: 1; txhash {H1}")]
    with pytest.raises(RelayRejected) as info:
        await client.call_bundle([TX1], 9)
    assert info.value.code == -32000
    assert info.value.status == 200
    assert H1 in str(info.value)
    assert "nonce too low" in info.value.reason


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.pop("results"),
        lambda r: r.update(coinbaseDiff=1.5),
        lambda r: r.update(gasFees="12abc"),
        lambda r: r.update(totalGasUsed=True),
        lambda r: r["results"][0].update(value="0xzz"),
        lambda r: r["results"][0].pop("txHash"),
        lambda r: r["results"].append("oops"),
        lambda r: r["results"][1].update(revert=7),
    ],
)
async def test_call_bundle_wrong_shape_is_a_relay_error(
    fake: FakeBuilder, client: BundleClient, mutate: Callable[[dict[str, Any]], Any]
) -> None:
    result = _call_bundle_result(b"\x01")
    mutate(result)
    fake.script = [rpc_ok(result)]
    with pytest.raises(RelayResponseError):
        await client.call_bundle([TX1], 9)


async def test_cancel_bundle(fake: FakeBuilder, client: BundleClient) -> None:
    fake.script = [rpc_ok(None)]
    rid = uuid.uuid4()
    assert await client.cancel_bundle(rid) is None
    req = fake.received[-1].json
    assert req["method"] == "eth_cancelBundle"
    assert req["params"] == [{"replacementUuid": str(rid)}]
    assert fake.received[-1].signer == ADDRESS


async def test_mev_send_bundle_body(fake: FakeBuilder, client: BundleClient) -> None:
    inner = MevBundle(block=100, body=(MevTx(TX2),))
    bundle = MevBundle(
        block=100,
        max_block=102,
        body=(MevHash(H1), MevTx(TX1, can_revert=False), inner),
        refund=((0, 90),),
        refund_config=(("0x" + "ab" * 20, 100),),
        hints=("calldata", "logs"),
        builders=("flashbots",),
    )
    assert await client.send_mev_bundle(bundle) == BUNDLE_HASH
    req = fake.received[-1].json
    assert req["method"] == "mev_sendBundle"
    assert req["params"] == [
        {
            "version": "v0.1",
            "inclusion": {"block": "0x64", "maxBlock": "0x66"},
            "body": [
                {"hash": H1},
                {"tx": TX1, "canRevert": False},
                {
                    "bundle": {
                        "version": "v0.1",
                        "inclusion": {"block": "0x64"},
                        "body": [{"tx": TX2, "canRevert": False}],
                    }
                },
            ],
            "validity": {
                "refund": [{"bodyIdx": 0, "percent": 90}],
                "refundConfig": [{"address": "0x" + "ab" * 20, "percent": 100}],
            },
            "privacy": {"hints": ["calldata", "logs"], "builders": ["flashbots"]},
        }
    ]
    assert fake.received[-1].signer == ADDRESS


async def test_send_private_transaction(fake: FakeBuilder, client: BundleClient) -> None:
    fake.script = [rpc_ok(H2)]
    got = await client.send_private_transaction(TX1, max_block_number=0x100, preferences={"fast": True})
    assert got == H2
    req = fake.received[-1].json
    assert req["method"] == "eth_sendPrivateTransaction"
    assert req["params"] == [{"tx": TX1, "maxBlockNumber": "0x100", "preferences": {"fast": True}}]
    fake.script = [rpc_ok({"not": "a hash"})]
    with pytest.raises(RelayResponseError):
        await client.send_private_transaction(TX1)
    assert fake.params == [{"tx": TX1}]


# ---------------------------------------------------------------------------------------------------
# Errors and retries


@pytest.mark.parametrize(
    ("responder", "code", "status", "text"),
    [
        (raw(403, b'{"error":"error in signature check"}'), None, 403, "error in signature check"),
        (raw(400, b'{"error":"unable to decode txs"}'), None, 400, "unable to decode txs"),
        (
            rpc_error(-32025, "invalid flashbots signature", status=403),
            -32025,
            403,
            "invalid flashbots signature",
        ),
        (rpc_error(-32025, "invalid flashbots signature"), -32025, 200, "invalid flashbots signature"),
        (rpc_error(-32600, "signature is required", status=403), -32600, 403, "signature is required"),
        (rpc_error(-32602, "unable to decode txs: txs[1]", status=400), -32602, 400, "unable to decode txs"),
        (raw(404, b"404: Not Found"), None, 404, "Not Found"),
        (raw(401, b""), None, 401, "empty body"),
    ],
)
async def test_error_forms_map_to_relay_error(
    fake: FakeBuilder, client: BundleClient, responder: Responder, code: int | None, status: int, text: str
) -> None:
    fake.script = [responder]
    with pytest.raises(RelayError) as info:
        await client.send_bundle(Bundle.build([TX1], 5))
    exc = info.value
    assert isinstance(exc, RelayRejected)
    assert exc.code == code
    assert exc.status == status
    assert text in str(exc)
    assert "eth_sendBundle" in str(exc)
    assert f"127.0.0.1:{fake.server.port if fake.server else 0}" in str(exc)
    assert len(fake.received) == 1  # an answer: never retried
    assert_no_secrets(str(exc))


async def test_503_then_200_is_retried_once(fake: FakeBuilder, client: BundleClient) -> None:
    fake.script = [raw(503, b"upstream busy"), rpc_ok({"bundleHash": BUNDLE_HASH})]
    assert await client.send_bundle(Bundle.build([TX1], 5)) == BUNDLE_HASH
    assert len(fake.received) == 2
    assert fake.received[0].body == fake.received[1].body  # the same signed bytes again
    assert (
        fake.received[0].headers["X-Flashbots-Signature"] == fake.received[1].headers["X-Flashbots-Signature"]
    )


async def test_429_retried_then_gives_up_as_transport_error(fake: FakeBuilder, client: BundleClient) -> None:
    fake.script = [rpc_error(-32005, "rate limited", status=429)]
    with pytest.raises(RelayTransportError) as info:
        await client.send_bundle(Bundle.build([TX1], 5))
    assert info.value.status == 429
    assert info.value.code == -32005
    assert "rate limited" in str(info.value)
    assert len(fake.received) == 2  # retries=2 attempts in all


async def test_400_is_not_retried(fake: FakeBuilder, client: BundleClient) -> None:
    fake.script = [raw(400, b'{"error":"unable to decode txs"}'), rpc_ok({"bundleHash": BUNDLE_HASH})]
    with pytest.raises(RelayRejected):
        await client.send_bundle(Bundle.build([TX1], 5))
    assert len(fake.received) == 1


async def test_json_rpc_error_is_not_retried_even_internal(fake: FakeBuilder, client: BundleClient) -> None:
    fake.script = [rpc_error(-32603, "internal error"), rpc_ok({"bundleHash": BUNDLE_HASH})]
    with pytest.raises(RelayRejected) as info:
        await client.send_bundle(Bundle.build([TX1], 5))
    assert info.value.code == -32603
    assert len(fake.received) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"<html>bad gateway</html>",
        b"",
        b'{"jsonrpc":"2.0","id":1}',
        b"[1, 2]",
        b'"just a string"',
        b'{"jsonrpc":"2.0","id":1,"result":{"no":"hash"}}',
        b'{"jsonrpc":"2.0","id":1,"result":null}',
        b'{"jsonrpc":"2.0","id":999,"result":{"bundleHash":"0x01"}}',
        b"[" * 5000 + b"]" * 5000,
        b'{"jsonrpc":"2.0","id":1,"result":' + b"[" * 1000 + b"1.5" + b"]" * 1000 + b"}",
    ],
)
async def test_malformed_reply_is_a_relay_error(fake: FakeBuilder, body: bytes) -> None:
    fake.script = [raw(200, body)]
    async with BundleClient(fake.url, KEY, retries=3, backoff=0.001) as c:
        with pytest.raises(RelayResponseError) as info:
            await c.send_bundle(Bundle.build([TX1], 5))
    assert isinstance(info.value, RelayError)
    assert len(fake.received) == 1  # not transient: not retried
    assert_no_secrets(str(info.value))


async def test_deadline_bounds_the_whole_request_retries_included(hung: HungServer) -> None:
    async with BundleClient(hung.url, KEY, timeout=0.2, retries=5, backoff=0.001) as c:
        with pytest.raises(RelayTransportError, match=r"within 0\.2 s \(TimeoutError\)") as info:
            await c.send_bundle(Bundle.build([TX1], 5))
    assert_no_secrets(str(info.value))
    assert hung.connections == 1  # the deadline passed during the first attempt: no retry after it


async def test_retries_only_while_the_deadline_allows(fake: FakeBuilder) -> None:
    # 503 then a back-off longer than what is left of the deadline: no second attempt
    fake.script = [raw(503, b"busy"), rpc_ok({"bundleHash": BUNDLE_HASH})]
    async with BundleClient(fake.url, KEY, timeout=60.0, retries=3, backoff=120.0) as c:
        with pytest.raises(RelayTransportError, match="HTTP 503"):
            await c.send_bundle(Bundle.build([TX1], 5))
    assert len(fake.received) == 1
    # the same with room for the back-off: retried, answered
    fake.script = [raw(503, b"busy"), rpc_ok({"bundleHash": BUNDLE_HASH})]
    async with BundleClient(fake.url, KEY, timeout=30.0, retries=3, backoff=0.001) as c:
        assert await c.send_bundle(Bundle.build([TX1], 5)) == BUNDLE_HASH
    assert len(fake.received) == 3


async def test_connection_refused_is_a_transport_error() -> None:
    url = f"http://127.0.0.1:{free_port()}{API_PATH}"
    async with BundleClient(url, KEY, retries=2, backoff=0.001) as c:
        with pytest.raises(RelayTransportError) as info:
            await c.cancel_bundle(uuid.uuid4())
    assert info.value.status is None
    assert_no_secrets(str(info.value))


def test_parse_int_and_revert_reason() -> None:
    assert parse_int("0x1f", "x") == 31
    assert parse_int("31", "x") == 31
    assert parse_int(31, "x") == 31
    assert parse_int(str(2**200), "x") == 2**200
    for bad in ("0x", "", "1e3", 1.0, None, True, "0xgg", " "):
        with pytest.raises(RelayResponseError):
            parse_int(bad, "x")
    assert decode_revert_reason(_revert_error_string("boom")) == "boom"
    assert decode_revert_reason(bytes.fromhex("4e487b71") + (0x11).to_bytes(32, "big")) == "panic 0x11"
    assert decode_revert_reason(b"\x12\x34") is None
    assert decode_revert_reason(bytes.fromhex("08c379a0") + b"\xff" * 64) is None


# ---------------------------------------------------------------------------------------------------
# Multi-builder fan-out


async def test_hung_and_dead_builders_listed_first_delay_no_one(
    builders: list[FakeBuilder], hung: HungServer
) -> None:
    ok1 = await start_builder(rpc_ok({"bundleHash": BUNDLE_HASH}))
    ok2 = await start_builder(rpc_ok({"bundleHash": BUNDLE_HASH}))
    rejecting = await start_builder(raw(400, b'{"error":"unable to decode txs"}'))
    builders += [ok1, ok2, rejecting]
    down_port = free_port()
    down_url = f"http://127.0.0.1:{down_port}{API_PATH}"
    urls = [hung.url, down_url, ok1.url, ok2.url, rejecting.url]
    # The hung builder's own deadline is far away: if anything waited for it, the guard below would fire
    # first (and a gather-style implementation would yield the hung builder, listed first, first).
    async with (
        asyncio.timeout(60),
        MultiBuilderClient(
            urls, KEY, timeout=10.0, timeouts={hung.identity: 3600.0}, retries=2, backoff=0.001
        ) as multi,
    ):
        req = multi.sign("eth_sendBundle", [Bundle.build([TX1, TX2], 77).to_params()])
        got: list[str] = []
        async with aclosing(multi.stream(req)) as results:
            async for r in results:
                got.append(r.name)
                if len(got) == 4:
                    break
            # Everyone but the hung builder has answered (or failed) while the hung one is still pending:
            # its request is in flight, its connection open.
            assert set(got) == {
                f"http://127.0.0.1:{down_port}/…",
                ok1.identity,
                ok2.identity,
                rejecting.identity,
            }
            assert hung.identity not in got
            assert hung.connections == 1
            assert hung.open_now == 1
            assert multi.in_flight == 1
        # leaving the stream cancelled the hung request: nothing left in flight, the connection closed
        assert multi.in_flight == 0
        await hung.hung_up.wait()
    for b in (ok1, ok2):
        assert [rec.body for rec in b.received] == [req.body]
        assert b.received[0].headers["X-Flashbots-Signature"] == req.signature
        assert b.received[0].signer == ADDRESS
    assert len(rejecting.received) == 1  # an answer: not retried


async def test_send_signed_each_builder_within_its_own_deadline(
    builders: list[FakeBuilder], hung: HungServer
) -> None:
    ok_b = await start_builder(rpc_ok({"bundleHash": BUNDLE_HASH}))
    rejecting = await start_builder(raw(400, b'{"error":"unable to decode txs"}'))
    builders += [ok_b, rejecting]
    down_port = free_port()
    down_url = f"http://127.0.0.1:{down_port}{API_PATH}"
    urls = [hung.url, down_url, ok_b.url, rejecting.url]
    async with MultiBuilderClient(
        urls, KEY, timeout=30.0, timeouts={hung.identity: 0.3}, retries=2, backoff=0.001
    ) as multi:
        req = multi.sign("eth_sendBundle", [Bundle.build([TX1, TX2], 77).to_params()])
        results = await multi.send_signed(req)
        assert multi.in_flight == 0
    hung_r, down, ok_r, rej = results
    assert [r.url for r in results] == [
        hung.identity,
        f"http://127.0.0.1:{down_port}/…",
        ok_b.identity,
        rejecting.identity,
    ]
    assert [r.name for r in results] == [r.url for r in results]  # unnamed: identity = redacted URL
    assert ok_r.ok
    assert ok_r.bundle_hash == BUNDLE_HASH
    assert ok_r.error is None
    assert not hung_r.ok
    assert isinstance(hung_r.error, RelayTransportError)
    assert "within 0.3 s" in str(hung_r.error)
    assert not down.ok
    assert isinstance(down.error, RelayTransportError)
    assert down.bundle_hash is None
    assert not rej.ok
    assert isinstance(rej.error, RelayRejected)
    assert rej.error.status == 400
    got = [rec for b in (ok_b, rejecting) for rec in b.received]
    assert len(got) == 2  # the 400 was not retried
    assert {rec.body for rec in got} == {req.body}
    assert {rec.headers["X-Flashbots-Signature"] for rec in got} == {req.signature}
    assert {rec.signer for rec in got} == {ADDRESS}


async def test_close_cancels_requests_in_flight(builders: list[FakeBuilder], hung: HungServer) -> None:
    ok_b = await start_builder(rpc_ok({"bundleHash": BUNDLE_HASH}))
    builders.append(ok_b)
    multi = MultiBuilderClient([hung.url, ok_b.url], KEY, timeout=3600.0)
    async with asyncio.timeout(60):
        req = multi.sign("eth_sendBundle", [Bundle.build([TX1], 7).to_params()])
        stream = multi.stream(req)
        first = await anext(stream)
        assert first.name == ok_b.identity
        assert first.ok
        await hung.accepted.wait()
        assert multi.in_flight == 1
        await multi.close()
        assert multi.in_flight == 0
        await hung.hung_up.wait()
        last = await anext(stream)  # still iterating: the hung builder's result says it was cancelled
        assert last.name == hung.identity
        assert not last.ok
        assert "cancelled" in str(last.error)
        with pytest.raises(StopAsyncIteration):
            await anext(stream)


async def test_stream_bundle_for_blocks_yields_each_block_and_builder(
    builders: list[FakeBuilder], hung: HungServer
) -> None:
    ok_b = await start_builder(rpc_ok({"bundleHash": BUNDLE_HASH}))
    builders.append(ok_b)
    async with (
        asyncio.timeout(60),
        MultiBuilderClient([hung.url, ok_b.url], KEY, timeouts={hung.identity: 3600.0}) as multi,
    ):
        with pytest.raises(ValueError, match="n_blocks"):  # raised at the call, not at iteration
            multi.stream_bundle_for_blocks([TX1], 100, n_blocks=3)
        got: list[tuple[int, str]] = []
        async with aclosing(multi.stream_bundle_for_blocks([TX1], 100, n_blocks=2)) as results:
            async for n, r in results:
                assert r.ok
                got.append((n, r.name))
                if len(got) == 2:
                    break
        assert sorted(got) == [(100, ok_b.identity), (101, ok_b.identity)]
        assert multi.in_flight == 0


async def test_fan_out_results_in_url_order_with_the_same_body(builders: list[FakeBuilder]) -> None:
    bs = [await start_builder(rpc_ok({"bundleHash": f"0x{i:064x}"})) for i in range(3)]
    builders += bs
    async with MultiBuilderClient([b.url for b in bs], KEY, backoff=0.001) as multi:
        results = await multi.send_bundle(Bundle.build([TX1], 10))
    assert [r.bundle_hash for r in results] == [f"0x{i:064x}" for i in range(3)]
    assert [r.name for r in results] == [b.identity for b in bs]
    assert [r.builder for r in results] == [b.identity for b in bs]
    assert len({b.received[0].body for b in bs}) == 1
    assert all(b.received[0].signer == ADDRESS for b in bs)


async def test_send_bundle_for_blocks_n1_and_n2(builders: list[FakeBuilder]) -> None:
    bs = [await start_builder(rpc_ok({"bundleHash": BUNDLE_HASH})) for _ in range(2)]
    builders += bs
    rid = uuid.uuid4()
    async with MultiBuilderClient([b.url for b in bs], KEY, backoff=0.001) as multi:
        out = await multi.send_bundle_for_blocks(
            [TX1, TX2], 100, n_blocks=2, replacement_uuid=rid, reverting_tx_hashes=[H2]
        )
        assert set(out) == {100, 101}
        assert all(r.ok for rs in out.values() for r in rs)
        for b in bs:
            sent = sorted((rec.json["params"][0] for rec in b.received), key=lambda p: p["blockNumber"])
            assert sent == [
                {
                    "txs": [TX1, TX2],
                    "blockNumber": hex(n),
                    "revertingTxHashes": [H2],
                    "replacementUuid": block_replacement_uuid(rid, n),
                }
                for n in (100, 101)
            ]
            assert all(rec.signer == ADDRESS for rec in b.received)
        # one uuid per target block, stable for the same opportunity, so N+2 never replaces N+1
        u100, u101 = block_replacement_uuid(rid, 100), block_replacement_uuid(rid, 101)
        assert u100 != u101
        assert u100 == block_replacement_uuid(str(rid), 100)
        assert len({str(rid), u100, u101}) == 3

        single = await multi.send_bundle_for_blocks([TX1], 200)
        assert list(single) == [200]
        assert bs[0].received[-1].json["params"] == [{"txs": [TX1], "blockNumber": hex(200)}]

        for b in bs:
            b.script = [rpc_ok(None)]
        cancelled = await multi.cancel_for_blocks(rid, 100, n_blocks=2)
        assert all(r.ok for rs in cancelled.values() for r in rs)
        cancels = {rec.json["params"][0]["replacementUuid"] for rec in bs[1].received[-2:]}
        assert cancels == {u100, u101}
        with pytest.raises(ValueError, match="n_blocks"):
            await multi.send_bundle_for_blocks([TX1], 200, n_blocks=3)


async def test_metrics_labelled_by_identity(builders: list[FakeBuilder]) -> None:
    b = await start_builder(rpc_ok({"bundleHash": BUNDLE_HASH}))
    builders.append(b)
    before = (
        REGISTRY.get_sample_value(
            "keeper_builder_requests_total",
            {"builder": b.identity, "method": "eth_sendBundle", "outcome": "ok"},
        )
        or 0.0
    )
    async with MultiBuilderClient([b.url], KEY) as multi:
        await multi.send_bundle(Bundle.build([TX1], 10))
    after = REGISTRY.get_sample_value(
        "keeper_builder_requests_total",
        {"builder": b.identity, "method": "eth_sendBundle", "outcome": "ok"},
    )
    assert after == before + 1
    count = REGISTRY.get_sample_value(
        "keeper_builder_request_seconds_count", {"builder": b.identity, "method": "eth_sendBundle"}
    )
    assert count is not None and count >= 1
    from prometheus_client import generate_latest

    assert_no_secrets(generate_latest(REGISTRY).decode())


# ---------------------------------------------------------------------------------------------------
# Secrets


async def test_key_and_api_path_never_in_repr_errors_or_logs(
    builders: list[FakeBuilder], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rejecting = await start_builder(rpc_error(-32025, "invalid flashbots signature", status=403))
    broken = await start_builder(raw(200, b"not json " + KEY[2:10].encode()))
    builders += [rejecting, broken]
    down_url = f"http://127.0.0.1:{free_port()}{API_PATH}"
    texts: list[str] = []
    for key in (KEY, bytes.fromhex(KEY[2:]), FlashbotsSigner(KEY)):
        async with MultiBuilderClient([rejecting.url, broken.url, down_url], key, backoff=0.001) as multi:
            texts += [repr(multi), str(multi), *(repr(c) for c in multi.clients)]
            req = multi.sign("eth_sendBundle", [Bundle.build([TX1], 5).to_params()])
            texts.append(repr(req))
            for r in await multi.send_signed(req):
                assert not r.ok
                assert r.error is not None
                texts += [str(r.error), repr(r.error), repr(r)]
        assert ADDRESS in repr(multi)
    async with BundleClient(down_url, KEY, retries=1) as c:
        texts.append(repr(c))
        with pytest.raises(RelayError) as info:
            await c.send_bundle(Bundle.build([TX1], 5))
        texts.append(str(info.value))
    texts += [rec.getMessage() for rec in caplog.records if rec.name.startswith("keeper")]
    assert any("eth_sendBundle" in t for t in texts)
    for t in texts:
        assert_no_secrets(t)
    with pytest.raises(ValueError) as bad_key:
        BundleClient(down_url, KEY[:-2])
    assert_no_secrets(str(bad_key.value))


async def test_one_shared_keep_alive_session(builders: list[FakeBuilder]) -> None:
    bs = [await start_builder(rpc_ok({"bundleHash": BUNDLE_HASH})) for _ in range(2)]
    builders += bs
    multi = MultiBuilderClient([b.url for b in bs], KEY)
    async with multi:
        for n in range(5):
            assert all(r.ok for r in await multi.send_bundle(Bundle.build([TX1], 10 + n)))
        sessions = {id(c._session) for c in multi.clients}
        assert len(sessions) == 1
        shared = multi.clients[0]._session
        assert shared is not None and not shared.closed
    assert shared.closed
    # keep-alive: 5 requests to each builder over one TCP connection (same client port) each
    for b in bs:
        assert len(b.received) == 5
        assert len({rec.peer for rec in b.received}) == 1


# ---------------------------------------------------------------------------------------------------
# Builder identity


async def test_builders_are_known_by_name_or_redacted_url(builders: list[FakeBuilder]) -> None:
    a, b = [await start_builder(rpc_ok({"bundleHash": BUNDLE_HASH})) for _ in range(2)]
    builders += [a, b]
    async with MultiBuilderClient([f"titan={a.url}", b.url], KEY) as multi:
        assert multi.names == ("titan", b.identity)
        assert [c.name for c in multi.clients] == ["titan", b.identity]
        results = await multi.send_bundle(Bundle.build([TX1], 10))
        assert [r.name for r in results] == ["titan", b.identity]
        assert [r.url for r in results] == [a.identity, b.identity]
        assert "titan" in repr(multi)
        assert_no_secrets(repr(multi))
        assert_no_secrets(repr(multi.client("titan")))
    async with BundleClient(a.url, KEY, name="bnet") as c:
        assert c.name == "bnet"
        assert c.display_url == a.identity


def test_two_builders_on_one_host_are_two_identities() -> None:
    multi = MultiBuilderClient(["http://127.0.0.1:8001/", "http://127.0.0.1:8002/"], KEY)
    assert multi.names == ("http://127.0.0.1:8001", "http://127.0.0.1:8002")
    # same host and port, different secret paths: cannot be told apart once redacted -> must be named
    with pytest.raises(ValueError, match="item 2") as info:
        MultiBuilderClient([f"http://127.0.0.1:8001{API_PATH}", "http://127.0.0.1:8001/v1/OTHERKEY"], KEY)
    assert "give each a name" in str(info.value)
    assert_no_secrets(str(info.value))
    assert "OTHERKEY" not in str(info.value)
    named = MultiBuilderClient(
        [f"a=http://127.0.0.1:8001{API_PATH}", "b=http://127.0.0.1:8001/v1/OTHERKEY"], KEY
    )
    assert named.names == ("a", "b")
    with pytest.raises(ValueError, match="names must be unique"):
        MultiBuilderClient(["a=http://127.0.0.1:8001", "a=http://127.0.0.1:8002"], KEY)
    with pytest.raises(ValueError, match="unknown builders"):
        MultiBuilderClient(["a=http://127.0.0.1:8001"], KEY, timeouts={"b": 1.0})
    with pytest.raises(ValueError, match="unknown builders"):
        MultiBuilderClient(["a=http://127.0.0.1:8001"], KEY, simulation_order=["b"])


# ---------------------------------------------------------------------------------------------------
# Simulation with fallback


def _sim_reply(revert: bytes = b"") -> Responder:
    result = _call_bundle_result(revert)
    result["results"][1]["coinbaseDiff"] = "1"
    return rpc_ok(result)


async def test_simulate_falls_back_past_dead_5xx_and_non_json_builders(
    builders: list[FakeBuilder], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="keeper.executors.builders")
    five = await start_builder(raw(503, b"upstream down"))
    html = await start_builder(raw(200, b"<html>maintenance</html>"))
    sim = await start_builder(_sim_reply(_revert_error_string("too late")))
    spare = await start_builder(_sim_reply())
    builders += [five, html, sim, spare]
    down_url = f"dead=http://127.0.0.1:{free_port()}{API_PATH}"
    items = [down_url, f"five={five.url}", f"html={html.url}", f"sim={sim.url}", f"spare={spare.url}"]
    async with MultiBuilderClient(items, KEY, retries=2, backoff=0.001) as multi:
        out = await multi.simulate([TX1, TX2], 500, state_block=499)
        assert out.builder == "sim"
        # the simulation ran and a tx reverted: that is the result, no fallback to "spare"
        assert not out.result.all_succeeded
        assert out.result.results[1].revert_reason == "too late"
        assert spare.received == []
        assert [name for name, _ in out.failures] == ["dead", "five", "html"]
        kinds = [type(err) for _, err in out.failures]
        assert kinds == [RelayTransportError, RelayTransportError, RelayResponseError]
        assert len(five.received) == 2  # 5xx is transient: retried once, then the next builder
        assert len(html.received) == 1
        assert sim.received[0].json["params"] == [
            {"txs": [TX1, TX2], "blockNumber": hex(500), "stateBlockNumber": hex(499)}
        ]
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 3
        for name, line in zip(("dead", "five", "html"), warned, strict=True):
            assert f"eth_callBundle at {name} failed" in line
            assert_no_secrets(line)
        # builders that just failed are tried after the others for a while
        out2 = await multi.simulate([TX1], 501)
        assert out2.builder == "sim"
        assert out2.failures == ()
        assert (len(five.received), len(html.received)) == (2, 1)


async def test_simulate_preferred_order_and_what_is_not_a_fallback(builders: list[FakeBuilder]) -> None:
    a = await start_builder(_sim_reply())
    b = await start_builder(_sim_reply())
    builders += [a, b]
    async with MultiBuilderClient([f"a={a.url}", f"b={b.url}"], KEY, simulation_order=["b"]) as multi:
        assert multi.simulation_order == ("b", "a")
        assert (await multi.simulate([TX1], 9)).builder == "b"
        assert a.received == []
        # the builder judged the bundle itself: raised, the other builder is not asked
        b.script = [rpc_error(-32000, f"err: nonce too low; txhash {H1}")]
        with pytest.raises(RelayRejected, match="nonce too low") as info:
            await multi.simulate([TX1], 9)
        assert "b (" in str(info.value)
        assert a.received == []
        # a builder without eth_callBundle: the next one simulates
        b.script = [rpc_error(-32601, "the method eth_callBundle does not exist")]
        out = await multi.simulate([TX1], 9)
        assert out.builder == "a"
        assert [(n, e.code) for n, e in out.failures] == [("b", -32601)]


async def test_simulate_raises_when_every_builder_failed(
    builders: list[FakeBuilder], hung: HungServer
) -> None:
    five = await start_builder(raw(502, b"bad gateway"))
    builders.append(five)
    items = [f"hung={hung.url}", f"five={five.url}", f"dead=http://127.0.0.1:{free_port()}{API_PATH}"]
    async with MultiBuilderClient(items, KEY, timeouts={"hung": 0.2}, backoff=0.001) as multi:
        with pytest.raises(RelayError) as info:
            await multi.simulate([TX1], 9)
    exc = info.value
    assert isinstance(exc, SimulationUnavailable)
    assert [name for name, _ in exc.failures] == ["hung", "five", "dead"]
    assert all(isinstance(err, RelayTransportError) for _, err in exc.failures)
    assert "every builder" in str(exc)
    assert "within 0.2 s" in str(exc)
    assert_no_secrets(str(exc))


async def test_failed_simulations_warn_at_most_once_per_builder_per_interval(
    builders: list[FakeBuilder], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="keeper.executors.builders")
    five = await start_builder(raw(503, b"down"))
    sim = await start_builder(_sim_reply())
    builders += [five, sim]
    now = [1000.0]
    async with MultiBuilderClient(
        [f"five={five.url}", f"sim={sim.url}"],
        KEY,
        retries=1,
        cooldown=0.0,  # keep trying "five" first
        warn_interval=30.0,
        clock=lambda: now[0],
    ) as multi:

        def sim_warnings() -> list[str]:
            return [r.getMessage() for r in caplog.records if "eth_callBundle at five" in r.getMessage()]

        for _ in range(4):
            assert (await multi.simulate([TX1], 9)).builder == "sim"
            now[0] += 5.0
        assert len(five.received) == 4
        assert len(sim_warnings()) == 1
        assert multi.warnings.suppressed("five eth_callBundle") == 3
        now[0] += 30.0
        assert (await multi.simulate([TX1], 9)).builder == "sim"
        lines = sim_warnings()
        assert len(lines) == 2
        assert "(3 similar suppressed in the last 30 s)" in lines[1]
        assert multi.warnings.suppressed("five eth_callBundle") == 0
    assert all(r.levelno == logging.WARNING for r in caplog.records if "eth_callBundle at" in r.getMessage())
