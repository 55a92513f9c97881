"""The devnet in a box: deployment, cached start, scenarios (issue: devnet)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from eth_abi.abi import decode

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient
from keeper.devnet.anvil import free_port
from keeper.devnet.arbitrageur import ARBITRAGEUR
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
        latest = await rpc.call("eth_getBlockByNumber", ["latest", False])
        assert int(latest["gasLimit"], 16) == 60_000_000  # mainnet's block gas limit in late 2026


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
        s1 = decode(["uint160"], stable[:32])[0] ** 2
        # USDT 1.5% below USDC on this venue (1:1 at the start: same decimals), deep pools notwithstanding
        assert 140 <= abs(s1 - 2**192) * 10_000 // 2**192 <= 160
    finally:
        await rpc.call("evm_revert", [snap])


async def _pool_prices(rpc: RpcClient, dep: DevnetDeployment) -> dict[str, tuple[int, int]]:
    """Every pool's marginal price as a fraction (token1 per token0, base units)."""
    out: dict[str, tuple[int, int]] = {}
    for name, pool in dep.uniswap_v3.pools.items():
        raw = await rpc.eth_call(pool, encode_call("slot0()", [], []))
        sqrt_price = decode(["uint160"], raw[:32])[0]
        out[name] = (sqrt_price * sqrt_price, 2**192)
    for name, pair in dep.uniswap_v2.pairs.items():
        raw = await rpc.eth_call(pair, encode_call("getReserves()", [], []))
        r0, r1, _ = decode(["uint112", "uint112", "uint32"], raw)
        out[name] = (int(r1), int(r0))
    return out


def _oracle_fraction(dep: DevnetDeployment, name: str, usd: dict[str, int]) -> tuple[int, int]:
    a, b = (dep.tokens[s] for s in name.split("/")[:2])
    t0, t1 = (a, b) if int(a.address, 16) < int(b.address, 16) else (b, a)
    return usd[t0.symbol] * 10**t1.decimals, usd[t1.symbol] * 10**t0.decimals


def _gap_bps(price: tuple[int, int], oracle: tuple[int, int]) -> float:
    """Distance from the oracle price in bps (a float for the assertions' messages only)."""
    (pn, pd), (on, od) = price, oracle
    return abs(pn * od - on * pd) * 10_000 / (on * pd)


async def test_arbitrageur_brings_the_pools_back_to_the_oracle(devnet_state: CachedState) -> None:
    async with Devnet(block_time=None, arbitrageur=True, arb_speed_bps=5_000) as net:
        rpc, dep = net.require()
        assert net.arbitrageur is not None and net.arbitrageur.address == ARBITRAGEUR
        old = await current_usd_prices(rpc, dep)
        new = dict(old)
        new["WETH"] = old["WETH"] * 90 // 100
        new["wstETH"] = old["wstETH"] * 90 // 100
        await send_oracle_updates(rpc, dep, old, new)
        await net.mine()  # the oracle update lands; the arbitrageur saw the old price: nothing to do
        assert net.arbitrageur.stats.last == []
        before = await _pool_prices(rpc, dep)
        moved = {n for n in before if "WETH" in n.split("/")[:2] and "wstETH" not in n}
        assert moved, "pools pricing WETH against something else"
        for name in moved:
            assert _gap_bps(before[name], _oracle_fraction(dep, name, new)) > 1_000

        await net.mine()  # first arbitrage block: each gap halves, with the exact predicted amounts
        trades = {t.pool: t for t in net.arbitrageur.stats.last}
        assert set(trades) == moved  # wstETH/WETH: both legs moved 10%, the ratio did not
        receipts = await rpc.batch([("eth_getTransactionReceipt", [t.tx_hash]) for t in trades.values()])
        assert all(r is not None and r["status"] == "0x1" for r in receipts)
        assert {r["from"].lower() for r in receipts} == {ARBITRAGEUR.lower()}
        after = await _pool_prices(rpc, dep)
        for name, trade in trades.items():
            if trade.target_sqrt_price_x96 is not None:  # V3: exactly on the computed target
                assert after[name] == (trade.target_sqrt_price_x96**2, 2**192), name
            gap = _gap_bps(after[name], _oracle_fraction(dep, name, new))
            assert 540 <= gap <= 570, (name, gap)  # half of the 1,111 bps gap (V3 tick rounding aside)

        for _ in range(12):
            await net.mine()
        final = await _pool_prices(rpc, dep)
        for name in final:
            gap = _gap_bps(final[name], _oracle_fraction(dep, name, new))
            assert gap <= 2, (name, gap)


async def test_crash_without_its_own_swaps_leaves_the_pools_to_the_arbitrageur(
    devnet_state: CachedState,
) -> None:
    async with Devnet(block_time=None, arbitrageur=True, arb_speed_bps=10_000) as net:
        rpc, dep = net.require()
        miner = DevnetMiner(net)
        crash = await run_crash(rpc, dep, drop_bps=2_000, blocks=3, mine=True, move_amms=False, miner=miner)
        assert all(step.swap_txs == 0 for step in crash.steps)
        usd = await current_usd_prices(rpc, dep)
        assert usd["WETH"] == crash.end_eth_usd
        lagging = await _pool_prices(rpc, dep)  # one block behind the last oracle update
        assert _gap_bps(lagging["WETH/USDC/500"], _oracle_fraction(dep, "WETH/USDC/500", usd)) > 100
        await net.mine()  # speed 10,000: back on the oracle price in one block
        for name, price in (await _pool_prices(rpc, dep)).items():
            assert _gap_bps(price, _oracle_fraction(dep, name, usd)) < 1, name


async def test_without_the_arbitrageur_pools_stay_put(devnet: Devnet) -> None:
    rpc, dep = devnet.require()
    assert devnet.arbitrageur is None  # off by default: tests see a still market
    snap = await rpc.call("evm_snapshot")
    try:
        before = await _pool_prices(rpc, dep)
        old = await current_usd_prices(rpc, dep)
        new = dict(old)
        new["WETH"] = old["WETH"] * 90 // 100
        await send_oracle_updates(rpc, dep, old, new)
        await devnet.mine(5)
        assert (await current_usd_prices(rpc, dep))["WETH"] == new["WETH"]
        assert await _pool_prices(rpc, dep) == before
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
        report = orjson.loads(raw)
        assert int(report["block"]["number"]) > 0 and int(report["block"]["timestamp"]) > 0
        listed = {(row["protocol"], row["user"]) for row in report["positions"]}
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


async def _head() -> int:
    code, out = await _cli("devnet", "status")
    assert code == 0, out
    return int(out.rsplit("head", 1)[1].split()[0])


async def test_cli_block_time_zero_builds_no_block_until_mined(
    devnet_state: CachedState, tmp_path: Path
) -> None:
    port = free_port()
    code, out = await _cli("devnet", "status")
    if code == 0:
        pytest.fail(f"a devnet is already running on this machine; stop it first: {out}")
    code, out = await _cli("devnet", "up", "--port", str(port), "--block-time", "0", "--no-arbitrageur")
    try:
        assert code == 0, out
        assert "on demand" in out
        assert "arbitrageur  off" in out
        head = await _head()
        await asyncio.sleep(1.5)  # a lower bound only: at --block-time 0 not a single block comes by itself
        assert await _head() == head
        code, out = await _cli("devnet", "mine", "3")
        assert code == 0, out
        assert f"head {head + 3}" in out
        assert await _head() == head + 3
        # `--out` writes amounts above 2^64 as decimal strings (issue 11); its blocks come from `mine` calls
        target = tmp_path / "borrowers.json"
        code, out = await _cli(
            "devnet", "scenario", "borrowers", "--n", "12", "--seed", "3", "--out", str(target)
        )
        assert code == 0, out
        data = orjson.loads(target.read_bytes())
        assert len(data["borrowers"]) == 12
        amounts = [int(v) for b in data["borrowers"] for v in b["collateral"].values()]
        assert all(isinstance(v, str) for b in data["borrowers"] for v in b["collateral"].values())
        assert max(amounts) > 0
        assert all(int(b["debt_amount"]) > 0 for b in data["borrowers"])
        settled = await _head()
        await asyncio.sleep(1.0)
        assert await _head() == settled
    finally:
        code, out = await _cli("devnet", "down")
        assert code == 0, out
