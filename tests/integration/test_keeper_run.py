"""`keeper run` (liquidations, devnet mode) and `keeper contracts deploy` as real subprocesses.

The devnet runs in-process here (`Devnet(block_time=1.0)`: anvil + relay building a block a second). It
writes nothing to deployments/, so the test writes its description (`Devnet.describe()`, the same shape
as deployments/devnet.json) to a temporary file and points the subprocess at it with
KEEPER_DEVNET_FILE. The subprocess is the real CLI: `python -m keeper run` with KEEPER_DEVNET=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from pathlib import Path

import orjson
import pytest
from eth_abi.abi import decode
from eth_account import Account

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient
from keeper.devnet.anvil import DEV_ACCOUNTS, Anvil, AnvilConfig
from keeper.devnet.cache import CachedState
from keeper.devnet.scenarios.borrowers import create_borrowers
from keeper.devnet.scenarios.common import wait_blocks
from keeper.devnet.scenarios.crash import run_crash
from keeper.devnet.stack import Devnet, DevnetMiner
from keeper.executors.executor_contract import LIQUIDATED_TOPIC

pytestmark = pytest.mark.integration

KEEPER_ADDR, KEEPER_KEY = DEV_ACCOUNTS[2]


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KEEPER_")}
    env.update(overrides)
    return env


async def _pump(stream: asyncio.StreamReader, lines: list[str]) -> None:
    while raw := await stream.readline():
        lines.append(raw.decode(errors="replace"))


async def _wait_for(lines: list[str], needle: str, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not any(needle in line for line in lines):
            await asyncio.sleep(0.1)


async def _liquidated_logs(rpc: RpcClient, executor: str) -> list[dict[str, object]]:
    logs = await rpc.call(
        "eth_getLogs",
        [{"address": executor, "fromBlock": "0x0", "toBlock": "latest", "topics": [LIQUIDATED_TOPIC]}],
    )
    return list(logs)


@pytest.mark.parametrize("submit", ["bundle", "public"])
async def test_run_liquidations_on_devnet(devnet_state: CachedState, tmp_path: Path, submit: str) -> None:
    """Borrowers, `keeper run` (liquidations, devnet mode), an ETH crash; liquidations land; SIGINT -> 0.

    bundle: the bundle executor through the devnet's relay; public: single transactions through the
    mempool (`SingleTxExecutor`), which the devnet's builder includes after the bundles."""
    identity = "0x" + bytes(Account.create().key).hex()  # relay identity: a fresh key holding nothing
    ledger = tmp_path / "ledger.sqlite"
    async with Devnet(block_time=1.0) as net:
        rpc, dep = net.require()
        assert net.relay_url is not None
        made = await create_borrowers(rpc, dep, 300, seed=7, miner=DevnetMiner(net))
        assert len(made.borrowers) == 300
        devnet_file = tmp_path / "devnet.json"
        devnet_file.write_bytes(orjson.dumps(net.describe()))
        env = clean_env(
            KEEPER_RPC_HTTP_URL=net.http_url,
            KEEPER_RPC_WS_URL=net.ws_url,
            KEEPER_PRIVATE_KEY=KEEPER_KEY,
            KEEPER_FLASHBOTS_SIGNER_KEY=identity,
            KEEPER_RELAY_URLS=net.relay_url,
            KEEPER_LEDGER_PATH=str(ledger),
            KEEPER_STRATEGIES="liquidations",
            KEEPER_DEVNET="true",
            KEEPER_DEVNET_FILE=str(devnet_file),
            KEEPER_BUILDER_SHARE_BPS="5000",
            KEEPER_METRICS_PORT="0",
            KEEPER_SUBMIT=submit,
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
        assert proc.stdout is not None
        lines: list[str] = []
        pump = asyncio.create_task(_pump(proc.stdout, lines))
        try:
            await _wait_for(lines, "keeper starting", 60)
            await wait_blocks(rpc, 2)  # the engine synced the positions and sees blocks
            assert proc.returncode is None, "".join(lines)
            await run_crash(rpc, dep, drop_bps=2_500, blocks=10)
            landed: list[dict[str, object]] = []
            for _ in range(30):
                landed = await _liquidated_logs(rpc, dep.executor)
                if len(landed) >= 3:
                    break
                await wait_blocks(rpc, 1)
            assert landed, "no liquidation landed:\n" + "".join(lines[-60:])
            await wait_blocks(rpc, 2)  # the inclusion tracker records the last ones
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 20)
            await pump
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert "stopped cleanly" in out
    assert "Traceback" not in out
    for secret in (KEEPER_KEY, identity):
        assert secret[2:] not in out
    with sqlite3.connect(ledger) as db:
        included = db.execute("SELECT count(*) FROM inclusions WHERE success = 1").fetchone()[0]
        opportunities = db.execute("SELECT count(*) FROM opportunities").fetchone()[0]
        submissions = db.execute("SELECT count(*) FROM submissions WHERE ok = 1").fetchone()[0]
    assert opportunities >= included > 0
    assert submissions >= included
    # Every liquidation on chain that the keeper saw land before SIGINT is in the ledger.
    assert included >= min(len(landed), 1)


async def test_run_liquidations_refuses_bundle_mode_without_identity(
    devnet_state: CachedState, tmp_path: Path
) -> None:
    async with Devnet(block_time=None) as net:
        devnet_file = tmp_path / "devnet.json"
        devnet_file.write_bytes(orjson.dumps(net.describe()))
        env = clean_env(
            KEEPER_RPC_HTTP_URL=net.http_url,
            KEEPER_PRIVATE_KEY=KEEPER_KEY,
            KEEPER_STRATEGIES="liquidations",
            KEEPER_DEVNET="true",
            KEEPER_DEVNET_FILE=str(devnet_file),
            KEEPER_METRICS_PORT="0",
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
        raw, _ = await asyncio.wait_for(proc.communicate(), 60)
    out = raw.decode()
    assert proc.returncode == 2, out
    assert "error: KEEPER_FLASHBOTS_SIGNER_KEY: missing (required to sign bundles" in out
    assert KEEPER_KEY[2:] not in out
    assert "Traceback" not in out


async def test_contracts_deploy_on_plain_anvil(tmp_path: Path) -> None:
    owner, owner_key = DEV_ACCOUNTS[0]
    operators = [DEV_ACCOUNTS[5], DEV_ACCOUNTS[6]]
    record = tmp_path / "executor.json"
    async with Anvil(AnvilConfig()) as node, RpcClient(node.http_url) as rpc:
        env = clean_env(
            KEEPER_RPC_HTTP_URL=node.http_url,
            KEEPER_PRIVATE_KEY=owner_key,
            KEEPER_OPERATOR_KEYS=",".join(k for _, k in operators),
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "keeper",
            "contracts",
            "deploy",
            "--out",
            str(record),
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        raw, _ = await asyncio.wait_for(proc.communicate(), 60)
        out = raw.decode()
        assert proc.returncode == 0, out
        data = orjson.loads(record.read_bytes())
        address = data["address"]
        assert f"LiquidationExecutor deployed at {address}" in out
        assert f"now set KEEPER_EXECUTOR_ADDRESS={address}" in out
        code = await rpc.call("eth_getCode", [address, "latest"])
        assert len(code) > 1000
        (chain_owner,) = decode(["address"], await rpc.eth_call(address, encode_call("owner()", [], [])))
        assert chain_owner.lower() == owner.lower()
        for op, _ in operators:
            raw_ok = await rpc.eth_call(address, encode_call("isOperator(address)", ["address"], [op]))
            assert decode(["bool"], raw_ok)[0] is True
        # The mainnet defaults were stored (the constructor only records them).
        (pool,) = decode(["address"], await rpc.eth_call(address, encode_call("flashPool()", [], [])))
        assert pool.lower() == "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2".lower()
        assert data["chain_id"] == 31337
        assert data["operators"] == [op for op, _ in operators]
    for _, key in [(owner, owner_key), *operators]:
        assert key[2:] not in out
    assert "Traceback" not in out


async def test_contracts_deploy_without_key(tmp_path: Path) -> None:
    env = clean_env(KEEPER_RPC_HTTP_URL="http://127.0.0.1:1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keeper",
        "contracts",
        "deploy",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    raw, _ = await asyncio.wait_for(proc.communicate(), 30)
    out = raw.decode()
    assert proc.returncode == 2, out
    assert out.startswith("error: KEEPER_PRIVATE_KEY: missing")


async def _start_keeper(
    env: dict[str, str], cwd: Path
) -> tuple[asyncio.subprocess.Process, list[str], asyncio.Task[None]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keeper",
        "run",
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    return proc, lines, asyncio.create_task(_pump(proc.stdout, lines))


async def _balance_of(rpc: RpcClient, token: str, owner: str) -> int:
    raw = await rpc.eth_call(token, encode_call("balanceOf(address)", ["address"], [owner]))
    return int(decode(["uint256"], raw)[0])


async def test_sigkill_mid_crash_and_restart_leave_the_ledger_equal_to_the_chain(
    devnet_state: CachedState, tmp_path: Path
) -> None:
    """SIGKILL while liquidations are in flight, the crash goes on, then a restart on the same ledger:
    what landed while the keeper was down is reconciled from the chain, nothing stays "submitted", no
    opportunity is sent twice for a block, and per token the ledger's realized profit equals the owner's
    balance change, to the wei."""
    identity = "0x" + bytes(Account.create().key).hex()
    ledger = tmp_path / "ledger.sqlite"
    async with Devnet(block_time=1.0) as net:
        rpc, dep = net.require()
        await create_borrowers(rpc, dep, 400, seed=21, miner=DevnetMiner(net))
        devnet_file = tmp_path / "devnet.json"
        devnet_file.write_bytes(orjson.dumps(net.describe()))
        owner = dep.accounts["keeper"]
        before = {t.address: await _balance_of(rpc, t.address, owner) for t in dep.tokens.values()}
        env = clean_env(
            KEEPER_RPC_HTTP_URL=net.http_url,
            KEEPER_RPC_WS_URL=net.ws_url,
            KEEPER_PRIVATE_KEY=KEEPER_KEY,
            KEEPER_FLASHBOTS_SIGNER_KEY=identity,
            KEEPER_LEDGER_PATH=str(ledger),
            KEEPER_STRATEGIES="liquidations",
            KEEPER_DEVNET="true",
            KEEPER_DEVNET_FILE=str(devnet_file),
            KEEPER_METRICS_PORT="0",
        )
        proc, lines, pump = await _start_keeper(env, tmp_path)
        proc2: asyncio.subprocess.Process | None = None
        try:
            await _wait_for(lines, "keeper starting", 60)
            await wait_blocks(rpc, 2)
            crash = asyncio.create_task(run_crash(rpc, dep, drop_bps=3_000, blocks=8))
            for _ in range(60):  # kill as soon as the first liquidations have landed
                if await _liquidated_logs(rpc, dep.executor):
                    break
                await wait_blocks(rpc, 1)
            proc.kill()  # SIGKILL: no clean-up at all
            await proc.wait()
            await crash
            await wait_blocks(rpc, 2)  # bundles already at the relay may land while it is down
            proc2, lines2, pump2 = await _start_keeper(env, tmp_path)
            await _wait_for(lines2, "keeper starting", 60)
            quiet = 0
            seen = len(await _liquidated_logs(rpc, dep.executor))
            for _ in range(40):
                await wait_blocks(rpc, 1)
                now = len(await _liquidated_logs(rpc, dep.executor))
                quiet = quiet + 1 if now == seen else 0
                seen = now
                if quiet >= 4:
                    break
            proc2.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc2.wait(), 30)
            await pump2
            print("".join(line for line in lines2 if "reconciled" in line) or "nothing to reconcile")
            assert proc2.returncode == 0, "".join(lines2[-40:])
            after = {t.address: await _balance_of(rpc, t.address, owner) for t in dep.tokens.values()}
            landed = await _liquidated_logs(rpc, dep.executor)
        finally:
            for p in (proc, proc2):
                if p is not None and p.returncode is None:
                    p.kill()
                    await p.wait()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
    assert landed
    with sqlite3.connect(ledger) as db:
        inclusions = db.execute(
            "SELECT tx_hash, realized_profit, realized_profit_asset FROM inclusions WHERE success = 1"
        ).fetchall()
        stuck = db.execute("SELECT count(*) FROM opportunities WHERE status = 'submitted'").fetchone()[0]
        claims = db.execute(
            "SELECT count(*), count(DISTINCT opportunity_id || ':' || target_block) FROM send_intents"
        ).fetchone()
    # Every liquidation on chain is in the ledger exactly once, and nothing else is.
    assert len(inclusions) == len(landed)
    assert sorted(str(row[0]).lower() for row in inclusions) == sorted(
        str(entry["transactionHash"]).lower() for entry in landed
    )
    assert stuck == 0
    assert claims[0] == claims[1]
    realized: dict[str, int] = {}
    for _, profit, asset in inclusions:
        realized[asset] = realized.get(asset, 0) + int(profit)
    for token, amount in before.items():
        assert after[token] - amount == realized.get(token, 0), token
