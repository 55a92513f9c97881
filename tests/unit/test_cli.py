"""CLI: version, --help everywhere, bad config (exit 2, no traceback, no key), unreachable node (exit 1),
and the relay check of `keeper check` (5xx and non-JSON relays are unreachable)."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from typer.testing import CliRunner

from keeper import __version__
from keeper.cli import RelayUnusable, _check_relay, _check_relays, app, describe_error
from keeper.config import load_settings
from keeper.devnet.anvil import DEV_ACCOUNTS
from keeper.errors import RpcTransportError
from keeper.logs import clear_secrets, stop_logging

runner = CliRunner()
BAD_KEY = "0x" + "5eed" * 15 + "abc"  # 63 hex digits


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("KEEPER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield
    stop_logging()
    clear_secrets()


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert f"keeper {__version__}" in result.output
    assert f"python {platform.python_version()}" in result.output
    assert "web3 8." in result.output


@pytest.mark.parametrize("args", [[], ["version"], ["check"], ["run"], ["devnet"]])
def test_help_on_every_command(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    if args in (["check"], ["run"]):
        assert "--config" in result.output


def test_no_args_shows_commands() -> None:
    result = runner.invoke(app, [])
    for command in ("version", "check", "run", "devnet"):
        assert command in result.output


@pytest.mark.parametrize("command", ["check", "run"])
def test_bad_config_exits_2_with_one_line_per_problem(command: str) -> None:
    env = {
        "KEEPER_RPC_HTTP_URL": "localhost:8545",
        "KEEPER_PRIVATE_KEY": BAD_KEY,
        "KEEPER_METRICS_PORT": "http",
    }
    result = runner.invoke(app, [command], env=env)
    assert result.exit_code == 2
    out = result.output
    assert "Traceback" not in out
    assert BAD_KEY not in out
    assert BAD_KEY[2:20] not in out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert [e.split(":")[1].strip() for e in errors] == [
        "KEEPER_RPC_HTTP_URL",
        "KEEPER_PRIVATE_KEY",
        "KEEPER_METRICS_PORT",
    ]


def test_bad_toml_config_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text('rpc_http_url = "http://127.0.0.1:8545"\nsubmit = "carrier-pigeon"\n')
    result = runner.invoke(app, ["check", "--config", str(cfg)])
    assert result.exit_code == 2
    assert f"error: submit (in {cfg}): must be 'bundle', 'public' or 'private'" in result.output


def test_check_unreachable_node_exits_1() -> None:
    env = {
        "KEEPER_RPC_HTTP_URL": "http://127.0.0.1:1/v3/apikey-abcdef",
        "KEEPER_PRIVATE_KEY": DEV_ACCOUNTS[0][1],
    }
    result = runner.invoke(app, ["check", "--timeout", "2"], env=env)
    assert result.exit_code == 1
    assert (
        "error: cannot reach KEEPER_RPC_HTTP_URL (http://127.0.0.1:1/…): connection refused" in result.output
    )
    assert "apikey-abcdef" not in result.output
    assert DEV_ACCOUNTS[0][1][2:] not in result.output
    assert "Traceback" not in result.output


def _refused() -> None:
    try:
        raise ConnectionRefusedError(111, "Connect call failed")
    except ConnectionRefusedError:
        raise RpcTransportError("ClientConnectorError talking to http://x") from None


def test_describe_error_reads_the_chain() -> None:
    with pytest.raises(RpcTransportError) as info:
        _refused()
    assert describe_error(info.value, 5) == "connection refused"
    assert describe_error(TimeoutError(), 2.5) == "no answer within 2.5s"
    assert describe_error(RpcTransportError("HTTP 503 from http://x"), 5) == "HTTP 503 from http://x"


# ---- keeper check: relays -----------------------------------------------------------------------------


async def _relay_server(status: int, body: bytes, content_type: str = "application/json") -> TestServer:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, body=body, content_type=content_type)

    app_ = web.Application()
    app_.router.add_post("/{tail:.*}", handle)
    server = TestServer(app_, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.mark.parametrize(
    ("status", "body", "content_type", "answer"),
    [
        (200, b'{"jsonrpc":"2.0","id":1,"result":"0x10"}', "application/json", "HTTP 200"),
        # an unsigned probe is refused by a real builder: it answered in JSON-RPC, so it is reachable
        (
            403,
            b'{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"signature is required"}}',
            "application/json",
            "HTTP 403, JSON-RPC error -32600",
        ),
        (400, b'{"error":"error in signature check"}', "application/json", "HTTP 400, error reply"),
    ],
)
async def test_check_relay_json_rpc_answers_are_reachable(
    status: int, body: bytes, content_type: str, answer: str
) -> None:
    server = await _relay_server(status, body, content_type)
    try:
        assert await _check_relay(str(server.make_url("/v1/relay-secret-token")), 10) == answer
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("status", "body", "content_type", "reason"),
    [
        (
            503,
            b'{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"down"}}',
            "application/json",
            "HTTP 503",
        ),
        (500, b"internal error", "text/plain", "HTTP 500"),
        (200, b"<html>maintenance</html>", "text/html", "HTTP 200 with a body that is not JSON (text/html"),
        (
            404,
            b"404: Not Found /v1/relay-secret-token",
            "text/plain",
            "HTTP 404 with a body that is not JSON",
        ),
        (200, b"[1, 2]", "application/json", "HTTP 200 with JSON that is not a JSON-RPC reply"),
        (200, b"", "application/json", "HTTP 200 with an empty body"),
    ],
)
async def test_check_relay_5xx_and_non_json_are_unreachable(
    status: int, body: bytes, content_type: str, reason: str
) -> None:
    server = await _relay_server(status, body, content_type)
    try:
        with pytest.raises(RelayUnusable) as info:
            await _check_relay(str(server.make_url("/v1/relay-secret-token")), 10)
    finally:
        await server.close()
    assert reason in str(info.value)
    assert "relay-secret-token" not in str(info.value)


async def test_check_relays_reports_each_relay_by_identity(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = await _relay_server(403, b'{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"signature"}}')
    five = await _relay_server(502, b"<html>bad gateway</html>", "text/html")
    html = await _relay_server(200, b"<html>hello</html>", "text/html")
    down = f"http://127.0.0.1:{_free_port()}/v1/relay-secret-token"
    ports = (ok.port, five.port, html.port)
    try:
        items = [
            f"titan={ok.make_url('/v1/relay-secret-token')}",
            str(five.make_url("/v1/relay-secret-token")),
            f"bnet={html.make_url('/')}",
            down,
        ]
        monkeypatch.setenv("KEEPER_RPC_HTTP_URL", "http://127.0.0.1:8545")
        monkeypatch.setenv("KEEPER_RELAY_URLS", ",".join(items))
        failures = await _check_relays(load_settings(None), 10)
    finally:
        for s in (ok, five, html):
            await s.close()
    out = capsys.readouterr()
    text = out.out + out.err
    assert failures == 3
    assert (
        f"relay 1: titan (http://127.0.0.1:{ports[0]}/…) reachable (HTTP 403, JSON-RPC error -32600)"
        in out.out
    )
    assert (
        f"error: relay 2 in KEEPER_RELAY_URLS (http://127.0.0.1:{ports[1]}/…) unreachable: HTTP 502"
        in out.err
    )
    assert (
        f"error: relay 3 in KEEPER_RELAY_URLS (bnet (http://127.0.0.1:{ports[2]})) unreachable: HTTP 200"
        in out.err
    )
    assert "unreachable: connection refused" in out.err
    assert "relay-secret-token" not in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
