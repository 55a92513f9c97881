"""CLI: version, --help everywhere, bad config (exit 2, no traceback, no key), unreachable node (exit 1)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keeper import __version__
from keeper.cli import app, describe_error
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
