"""`keeper check` and `keeper run` as real subprocesses against a real anvil."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from keeper.devnet.anvil import DEV_ACCOUNTS, Anvil, AnvilConfig, free_port

pytestmark = pytest.mark.integration

ADDR0, KEY0 = DEV_ACCOUNTS[0]
BAD_KEY = "0x" + "c0ffee" * 10 + "wxyz"  # 64 chars but not all hex


@pytest.fixture(scope="module")
async def anvil() -> AsyncIterator[Anvil]:
    async with Anvil(AnvilConfig(block_time=1)) as node:
        yield node


def keeper_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KEEPER_")}
    env.update(overrides)
    return env


async def keeper(tmp_path: Path, *args: str, env: dict[str, str], timeout: float = 30) -> tuple[int, str]:
    """Runs `python -m keeper ARGS` in tmp_path (no stray .env); returns (exit code, stdout + stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keeper",
        *args,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_check_ok(anvil: Anvil, tmp_path: Path) -> None:
    env = keeper_env(
        tmp_path,
        KEEPER_RPC_HTTP_URL=anvil.http_url,
        KEEPER_PRIVATE_KEY=KEY0,
        KEEPER_RELAY_URLS=anvil.http_url,
    )
    code, out = await keeper(tmp_path, "check", env=env)
    assert code == 0, out
    assert "chain id: 31337" in out
    assert "head: block " in out
    assert f"rpc ws (derived from KEEPER_RPC_HTTP_URL): {anvil.ws_url} ok, chain id 31337" in out
    assert f"account: {ADDR0} balance " in out
    assert "relay 1: " in out
    assert "reachable (HTTP 200)" in out
    assert KEY0[2:] not in out
    assert "Traceback" not in out


async def test_check_with_toml_config(anvil: Anvil, tmp_path: Path) -> None:
    cfg = tmp_path / "keeper.toml"
    cfg.write_text(f'rpc_http_url = "{anvil.http_url}"\nrpc_ws_url = "{anvil.ws_url}"\n')
    code, out = await keeper(tmp_path, "check", "--config", str(cfg), env=keeper_env(tmp_path))
    assert code == 0, out
    assert "chain id: 31337" in out
    assert f"rpc ws: {anvil.ws_url} ok" in out


async def test_check_unreachable_rpc(tmp_path: Path) -> None:
    env = keeper_env(tmp_path, KEEPER_RPC_HTTP_URL="http://127.0.0.1:1", KEEPER_PRIVATE_KEY=KEY0)
    code, out = await keeper(tmp_path, "check", env=env)
    assert code == 1
    assert "error: cannot reach KEEPER_RPC_HTTP_URL (http://127.0.0.1:1): connection refused" in out
    assert "Traceback" not in out
    assert KEY0[2:] not in out


async def test_check_bad_ws_and_relay(anvil: Anvil, tmp_path: Path) -> None:
    env = keeper_env(
        tmp_path,
        KEEPER_RPC_HTTP_URL=anvil.http_url,
        KEEPER_RPC_WS_URL="ws://127.0.0.1:1",
        KEEPER_RELAY_URLS="http://127.0.0.1:1/relay-token-xyz",
    )
    code, out = await keeper(tmp_path, "check", "--timeout", "2", env=env)
    assert code == 1
    assert "chain id: 31337" in out
    assert "error: rpc ws: cannot use ws://127.0.0.1:1: connection refused" in out
    assert "error: relay 1 in KEEPER_RELAY_URLS (http://127.0.0.1:1/…) unreachable: connection refused" in out
    assert "relay-token-xyz" not in out
    assert "Traceback" not in out


async def test_check_malformed_key(anvil: Anvil, tmp_path: Path) -> None:
    env = keeper_env(tmp_path, KEEPER_RPC_HTTP_URL=anvil.http_url, KEEPER_PRIVATE_KEY=BAD_KEY)
    code, out = await keeper(tmp_path, "check", env=env)
    assert code == 2
    assert out.startswith("error: KEEPER_PRIVATE_KEY: not a private key")
    assert BAD_KEY not in out
    assert BAD_KEY[2:20] not in out
    assert "Traceback" not in out


async def _read_until(stream: asyncio.StreamReader, needle: str, timeout: float, seen: list[str]) -> str:
    async with asyncio.timeout(timeout):
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError("keeper exited early:\n" + "".join(seen))
            line = raw.decode()
            seen.append(line)
            if needle in line:
                return line


async def test_run_noop_logs_blocks_and_stops_on_sigint(anvil: Anvil, tmp_path: Path) -> None:
    port = free_port()
    env = keeper_env(
        tmp_path,
        KEEPER_RPC_HTTP_URL=anvil.http_url,
        KEEPER_RPC_WS_URL=anvil.ws_url,
        KEEPER_STRATEGIES="noop",
        KEEPER_METRICS_PORT=str(port),
        KEEPER_PRIVATE_KEY=KEY0,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keeper",
        "run",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        first = await _read_until(proc.stdout, "new block", 15, seen)
        assert " INFO strategies.noop new block number=" in first
        assert " hash=0x" in first
        # A second block proves the subscription keeps delivering (anvil mines every second).
        await _read_until(proc.stdout, "new block", 5, seen)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/health") as resp:
                assert resp.status == 200
                body = await resp.json()
                assert body["status"] == "ok"
                assert body["head"] >= 1
            async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert "keeper_events_total" in await resp.text()
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 10)
        seen.append(rest.decode())
        assert proc.returncode == 0, "".join(seen)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out = "".join(seen)
    assert "stopped cleanly" in out
    assert KEY0[2:] not in out
    assert "Traceback" not in out
