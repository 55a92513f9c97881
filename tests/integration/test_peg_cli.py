"""`keeper pegs` on the devnet, as a real subprocess: the table and the JSON after the `depeg` scenario.

The command reads the devnet from `deployments/devnet.json` at the project root; the subprocess is the real
CLI (`keeper.cli.main`) with only that path pointed at this test's devnet record, so a devnet another
process runs on this machine is neither used nor touched."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from eth_abi.abi import decode

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient
from keeper.devnet.deploy import DevnetDeployment
from keeper.devnet.scenarios.depeg import LST_POOL, STABLE_POOL, run_depeg
from keeper.devnet.stack import Devnet, DevnetMiner, write_deployments_file
from tests.integration.test_peg_keeper import supply_aave_liquidity

pytestmark = pytest.mark.integration

PEGS = {"wstETH/WETH", "USDC/USDT", "DAI/USDC", "USDT/DAI"}
DECIMAL = re.compile(r"^-?[0-9]+$")
AMOUNTS = (
    "amount_in",
    "amount_out",
    "profit",
    "flash_fee",
    "gross_profit",
    "builder_share",
    "profit_wei",
    "gas_cost_wei",
    "net_profit_wei",
)
RUN_CLI = (
    "import sys, pathlib\n"
    "import keeper.devnet.stack as stack\n"
    "path = pathlib.Path(sys.argv[1])\n"
    "read = stack.read_deployments_file\n"
    "stack.DEPLOYMENTS_FILE = path\n"
    "stack.read_deployments_file = lambda p=path: read(p)\n"
    "from keeper.cli import app\n"
    "app(sys.argv[2:], prog_name='keeper')\n"
)


@pytest.fixture
async def fresh(devnet: Devnet) -> AsyncIterator[Devnet]:
    rpc, _ = devnet.require()
    snap = await rpc.call("evm_snapshot")
    yield devnet
    await rpc.call("evm_revert", [snap])


async def keeper_pegs(net: Devnet, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """`keeper pegs ARGS` against `net`: (exit code, stdout, stderr)."""
    devnet_file = write_deployments_file(net.describe(), tmp_path / "devnet.json")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KEEPER_")}
    env |= {"NO_COLOR": "1", "COLUMNS": "240"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RUN_CLI,
        str(devnet_file),
        "pegs",
        *args,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def aave_available(rpc: RpcClient, dep: DevnetDeployment, token: str) -> int:
    """What the Aave V3 Pool can flash-lend of `token`: the token's balance of its aToken."""
    reserve = next(r for r in dep.aave_v3.reserves.values() if r.asset.lower() == token.lower())
    raw = await rpc.eth_call(token, encode_call("balanceOf(address)", ["address"], [reserve.a_token]))
    return int(decode(["uint256"], raw)[0])


def _by_peg(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["peg"]: row for row in report["pegs"]}


def _check_amounts(report: dict[str, Any]) -> None:
    """Every amount is a decimal string (lossless in any JSON parser); deviations are numbers."""
    for row in report["pegs"]:
        assert row["target"] is not None, row["peg"]
        assert all(isinstance(x, str) and DECIMAL.match(x) for x in row["target"]), row["target"]
        for pool in row["pools"]:
            assert all(isinstance(x, str) and DECIMAL.match(x) for x in pool["price"]), pool
            assert isinstance(pool["deviation_bps"], int | float), pool
        best = row["best"]
        if best is None:
            continue
        for key in AMOUNTS:
            if key in best:
                assert isinstance(best[key], str) and DECIMAL.match(best[key]), (row["peg"], key, best[key])


async def test_keeper_pegs_after_a_depeg(fresh: Devnet, tmp_path: Path) -> None:
    net = fresh
    rpc, dep = net.require()
    await supply_aave_liquidity(net)
    lst_pool = dep.uniswap_v3.pools[LST_POOL].lower()
    stable_pool = dep.uniswap_v3.pools[STABLE_POOL].lower()

    # The pegs hold: every pool near its target, no round trip pays.
    code, out, err = await keeper_pegs(net, tmp_path, "--json")
    assert code == 0, err
    calm = orjson.loads(out)
    _check_amounts(calm)
    assert set(_by_peg(calm)) == PEGS
    for row in calm["pegs"]:
        for pool in row["pools"]:
            assert abs(pool["deviation_bps"]) < 50, (row["peg"], pool)
        best = row["best"]
        assert best is None or "net_profit_wei" not in best or int(best["net_profit_wei"]) <= 0, best

    await run_depeg(rpc, dep, lst_discount_bps=300, stable_discount_bps=150, miner=DevnetMiner(net))
    head = await rpc.block_number()
    timestamp = int((await rpc.call("eth_getBlockByNumber", [hex(head), False]))["timestamp"], 16)

    code, out, err = await keeper_pegs(net, tmp_path, "--json")
    assert code == 0, err
    assert "Traceback" not in err
    report = orjson.loads(out)
    assert report["block"] == {"number": str(head), "timestamp": str(timestamp)}
    _check_amounts(report)
    rows = _by_peg(report)
    assert set(rows) == PEGS
    for row in rows.values():
        pools = {p["pool"].lower() for p in row["pools"]}
        assert len(pools) == len(row["pools"])  # each pool once
        assert row["pools"], row["peg"]

    def deviation(peg: str, pool: str) -> float:
        return next(float(p["deviation_bps"]) for p in rows[peg]["pools"] if p["pool"].lower() == pool)

    # wstETH 3% cheap on its V3 pool; USDT 1.5% cheap on the USDC/USDT V3 pool, so USDC dear there.
    assert deviation("wstETH/WETH", lst_pool) < -200
    assert deviation("USDC/USDT", stable_pool) > 100
    # The other pools of those pegs were not traded: they still quote the target.
    for peg, moved in (("wstETH/WETH", lst_pool), ("USDC/USDT", stable_pool)):
        for pool in rows[peg]["pools"]:
            if pool["pool"].lower() != moved:
                assert abs(pool["deviation_bps"]) < 50, (peg, pool)

    # A best round trip through the de-pegged pool, paying after the builder's share and gas.
    for peg, moved in (("wstETH/WETH", lst_pool), ("USDC/USDT", stable_pool)):
        best = rows[peg]["best"]
        assert best is not None, peg
        assert moved in {best["buy"]["pool"].lower(), best["sell"]["pool"].lower()}, (peg, best)
        assert "not_sent" not in best, (peg, best)
        assert int(best["amount_in"]) > 0 and int(best["amount_out"]) > int(best["amount_in"]), best
        assert int(best["profit"]) > 0, best
        assert int(best["net_profit_wei"]) > 0, (peg, best)
        assert int(best["profit_wei"]) - int(best["gas_cost_wei"]) == int(best["net_profit_wei"]), best
        # The figures are those of one execution: the size sent (within what the lender holds), its
        # output, the flash fee and the profit split.
        amount_in, amount_out = int(best["amount_in"]), int(best["amount_out"])
        fee, gross = int(best["flash_fee"]), int(best["gross_profit"])
        assert gross == amount_out - amount_in - fee, best
        assert int(best["builder_share"]) == gross * 9_000 // 10_000, best  # the CLI's default share
        assert best["flash_source"] in {"balancer_vault", "aave_v3"}, best
        if best["flash_source"] == "aave_v3":
            assert abs(fee - amount_in * 5 // 10_000) <= 1, best  # FLASHLOAN_PREMIUM_TOTAL: 5 bps
            assert amount_in <= await aave_available(rpc, dep, best["token_in"]), best
        else:
            assert fee == 0, best
        if "sized_amount_in" in best:  # the best size was more than the lender holds
            assert int(best["sized_amount_in"]) > amount_in, best

    # The table names every peg and the block.
    code, out, err = await keeper_pegs(net, tmp_path)
    assert code == 0, err
    assert f"4 pegs at block {head} (timestamp {timestamp})" in out
    lines = out.splitlines()
    for peg in PEGS:
        row = next((line for line in lines if f"│ {peg} " in line), None)
        assert row is not None, (peg, out)
        cells = [c.strip() for c in row.split("│")[1:-1]]
        # The target in whole tokens: 1 for the 1:1 pegs whatever the tokens' decimals.
        assert cells[1] == ("1.18" if peg == "wstETH/WETH" else "1"), (peg, cells)
        if peg in {"wstETH/WETH", "USDC/USDT"}:
            best = rows[peg]["best"]
            symbol = "WETH" if best["token_in"] == dep.tokens["WETH"].address else "USDT"
            assert f" {symbol} via " in cells[3], cells  # the size in token units, with its symbol
            assert cells[4].startswith("Ξ"), cells  # a net profit in ETH
        else:
            assert cells[3] == "-" and cells[4] == "-", cells
