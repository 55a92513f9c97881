"""The devnet in a box: deployment, cached start, scenarios (issue: devnet)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import orjson
import pytest
from eth_abi.abi import decode

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient
from keeper.devnet.anvil import free_port
from keeper.devnet.cache import CachedState
from keeper.devnet.deploy import DevnetDeployment
from keeper.devnet.scenarios.borrowers import AAVE_V3, create_borrowers
from keeper.devnet.scenarios.competitor import run_competitor
from keeper.devnet.scenarios.crash import current_usd_prices, run_crash, send_oracle_updates
from keeper.devnet.scenarios.depeg import LST_POOL, STABLE_POOL, run_depeg
from keeper.devnet.scenarios.positions import discover, read_health_factors
from keeper.devnet.stack import DEPLOYMENTS_FILE, Devnet, DevnetMiner

pytestmark = pytest.mark.integration

WAD = 10**18


def _addresses(obj: object) -> list[str]:
    out: list[str] = []
    if isinstance(obj, dict):
        for v in obj.values():
            out += _addresses(v)
    elif isinstance(obj, list):
        for v in obj:
            out += _addresses(v)
    elif isinstance(obj, str) and obj.startswith("0x") and len(obj) == 42:
        out.append(obj)
    return out


async def test_cached_start_is_fast_and_complete(devnet_state: CachedState) -> None:
    started = time.perf_counter()
    async with Devnet(block_time=None) as net:
        elapsed = time.perf_counter() - started
        rpc, dep = net.require()
        print(f"cached devnet start: {elapsed:.3f} s")
        data = dep.to_json()
        contracts = [
            a
            for key in ("tokens", "feeds", "aave_v3", "aave_v2", "uniswap_v2", "uniswap_v3", "balancer")
            for a in _addresses(data[key])
        ]
        contracts.append(dep.multicall3)
        skip = {dep.aave_v3.treasury, dep.aave_v2.treasury, dep.feeds.transmitter, dep.feeds.owner}
        codes = await rpc.batch([("eth_getCode", [a, "latest"]) for a in contracts if a not in skip])
        assert all(len(c) > 2 for c in codes), "every deployed address has code"
        assert len(codes) > 60
        assert net.relay_url is not None


async def test_borrowers_have_the_planned_health_factors(devnet: Devnet, miner: DevnetMiner) -> None:
    rpc, dep = devnet.require()
    res = await create_borrowers(rpc, dep, 150, seed=7, miner=miner)
    assert res.counts[AAVE_V3] > 50
    assert sum(res.counts.values()) == 150
    found = await discover(rpc, dep)
    borrowings = [found[(b.market, b.address)] for b in res.borrowers]
    await read_health_factors(rpc, dep, borrowings)
    near = 0
    for plan, got in zip(res.borrowers, borrowings, strict=True):
        assert got.health_factor is not None
        # Never below the plan (the LTV cap can only raise it) and within 0.5% when not capped.
        assert got.health_factor * 10_000 // WAD >= plan.target_hf_bps - 2
        if got.health_factor < 115 * WAD // 100:
            near += 1
    assert near > 10, "some borrowers sit close to the liquidation threshold"


async def test_oracle_updates_are_pending_transactions_until_mined(devnet: Devnet) -> None:
    rpc, dep = devnet.require()
    snap = await rpc.call("evm_snapshot")
    try:
        old = await current_usd_prices(rpc, dep)
        new = dict(old)
        new["WETH"] = old["WETH"] * 99 // 100
        hashes = await send_oracle_updates(rpc, dep, old, new)
        assert len(hashes) == len(dep.feeds.eth) + 1  # WETH/USD and every asset/ETH feed
        pending = await rpc.call("eth_getTransactionByHash", [hashes[0]])
        assert pending is not None
        assert pending["blockNumber"] is None
        assert pending["to"].lower() in {a.lower() for a in [dep.feeds.usd["WETH"], *dep.feeds.eth.values()]}
        await devnet.mine()
        assert (await current_usd_prices(rpc, dep))["WETH"] == new["WETH"]
    finally:
        await rpc.call("evm_revert", [snap])


async def test_crash_makes_positions_liquidatable_then_competitor_takes_some(
    devnet: Devnet, miner: DevnetMiner
) -> None:
    rpc, dep = devnet.require()
    snap = await rpc.call("evm_snapshot")
    try:
        await create_borrowers(rpc, dep, 300, seed=11, miner=miner)
        crash = await run_crash(rpc, dep, drop_bps=2_500, blocks=5, mine=True, miner=miner)
        assert crash.end_eth_usd == crash.start_eth_usd * 3 // 4
        assert len(crash.steps) == 5
        prices = await current_usd_prices(rpc, dep)
        assert prices["WETH"] == crash.end_eth_usd
        # The main pool followed the oracle: its price is the oracle price to within 0.1%.
        pool = dep.uniswap_v3.pools["WETH/USDC/500"]
        raw = await rpc.eth_call(pool, encode_call("slot0()", [], []))
        sqrt_price = decode(["uint160"], raw[:32])[0]
        weth, usdc = dep.tokens["WETH"], dep.tokens["USDC"]
        usdc_per_weth = (
            sqrt_price**2 * 10**18 // 2**192
            if int(weth.address, 16) < int(usdc.address, 16)
            else 2**192 * 10**18 // sqrt_price**2
        )
        assert abs(usdc_per_weth * 10**8 // 10**6 - crash.end_eth_usd) * 1000 <= crash.end_eth_usd
        borrowings = list((await discover(rpc, dep)).values())
        await read_health_factors(rpc, dep, borrowings)
        below = {b.market: 0 for b in borrowings}
        for b in borrowings:
            if b.health_factor is not None and b.health_factor < WAD:
                below[b.market] += 1
        assert below["aave-v3"] > 0
        assert below["aave-v2"] > 0
        comp = await run_competitor(rpc, dep, share_pct=50, seed=3, miner=miner)
        assert comp.liquidatable == sum(below.values())
        assert 0 < len(comp.taken) < comp.liquidatable
        receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in comp.transactions])
        assert all(r["status"] == "0x1" for r in receipts)
        debt_before = {(b.market, b.user): b.total_debt_base for b in borrowings}
        await read_health_factors(rpc, dep, comp.taken)
        for b in comp.taken:
            before = debt_before[(b.market, b.user)]
            assert b.total_debt_base is not None
            assert before is not None
            assert b.total_debt_base < before  # the competitor repaid part of the debt
    finally:
        await rpc.call("evm_revert", [snap])


async def test_depeg_moves_one_venue_only(devnet: Devnet, miner: DevnetMiner) -> None:
    rpc, dep = devnet.require()
    snap = await rpc.call("evm_snapshot")
    try:
        before = await rpc.eth_call(dep.uniswap_v3.pools[LST_POOL], encode_call("slot0()", [], []))
        oracle_before = await current_usd_prices(rpc, dep)
        res = await run_depeg(rpc, dep, lst_discount_bps=300, stable_discount_bps=150, miner=miner)
        assert len(res.transactions) == 2
        after = await rpc.eth_call(dep.uniswap_v3.pools[LST_POOL], encode_call("slot0()", [], []))
        p0 = decode(["uint160"], before[:32])[0] ** 2
        p1 = decode(["uint160"], after[:32])[0] ** 2
        # wstETH priced in WETH moved by ~3% (direction depends on token order).
        change_bps = abs(p1 - p0) * 10_000 // p0
        assert 280 <= change_bps <= 320
        assert await current_usd_prices(rpc, dep) == oracle_before
        stable = await rpc.eth_call(dep.uniswap_v3.pools[STABLE_POOL], encode_call("slot0()", [], []))
        assert decode(["uint160"], stable[:32])[0] != 2**96
    finally:
        await rpc.call("evm_revert", [snap])


async def _cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keeper",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


async def test_cli_up_scenarios_down(devnet_state: CachedState) -> None:
    port = free_port()
    code, out = await _cli("devnet", "status")
    if code == 0:
        pytest.fail(f"a devnet is already running on this machine; stop it first: {out}")
    code, out = await _cli("devnet", "up", "--port", str(port), "--block-time", "0.5")
    try:
        assert code == 0, out
        assert f"http://127.0.0.1:{port}" in out
        assert "relay" in out
        code, out = await _cli("devnet", "scenario", "borrowers", "--n", "60", "--seed", "5")
        assert code == 0, out
        assert "60 borrowers" in out
        code, out = await _cli("devnet", "scenario", "crash", "--blocks", "3")
        assert code == 0, out
        assert "HF < 1 (getUserAccountData)" in out
        # `keeper positions --below 1` lists exactly who getUserAccountData says is below 1.
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "keeper",
            "positions",
            "--below",
            "1",
            "--json",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        raw, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        listed = {(row["protocol"], row["user"]) for row in orjson.loads(raw)}
        data = orjson.loads(DEPLOYMENTS_FILE.read_bytes())
        dep = DevnetDeployment.from_json(data["deployment"])
        async with RpcClient(data["rpc_http_url"]) as rpc:
            truth = list((await discover(rpc, dep)).values())
            await read_health_factors(rpc, dep, truth)
        below = {(b.market, b.user) for b in truth if b.health_factor is not None and b.health_factor < WAD}
        assert below
        assert listed == below
        code, out = await _cli("devnet", "status")
        assert code == 0, out
    finally:
        code, out = await _cli("devnet", "down")
        assert code == 0, out
        assert "stopped" in out
    code, out = await _cli("devnet", "status")
    assert code == 1
