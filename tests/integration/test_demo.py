"""`keeper demo` end to end (smaller): the crash is liquidated, the de-peg arbitraged back, exit clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeper.demo import run_demo

pytestmark = pytest.mark.integration


async def test_demo_liquidates_the_crash_and_arbitrages_the_depeg(tmp_path: Path) -> None:
    view = await run_demo(borrowers=120, block_time=0.5, ledger_path=tmp_path / "ledger.sqlite")
    assert view.landed["liquidations"] > 0
    assert view.liquidatable_debt_usd() == 0
    assert view.landed["arbitrages"] > 0 and view.profit_wei["arbitrages"] > 0
    assert set(view.peg_gap_bps) == {"wstETH/WETH uniswap_v3", "USDC/USDT uniswap_v3"}
    for pool, (before, after) in view.peg_gap_bps.items():
        assert before >= 150 and after <= 15, (pool, before, after)
