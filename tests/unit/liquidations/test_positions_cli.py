"""`keeper positions` output: the block it read, every amount a decimal string (lossless beyond 2^53)."""

from __future__ import annotations

import io
import json
from typing import Any, cast

from rich.console import Console

from strategies.liquidations.cli import PositionRow, Positions, render
from strategies.liquidations.valuation import ValuationCosts, VenueValuer
from tests.unit.liquidations.crash_block import addr, crash_block


def _rows() -> Positions:
    crash = crash_block(4, seed=5)
    valuer = VenueValuer(cast(Any, None), crash.venues, connectors=[addr("WETH")], weth=addr("WETH"))
    costs = ValuationCosts(base_fee=10**9, gas_per_liquidation=10**6, min_profit_wei=-(2**255))
    valued = valuer.value(crash.opportunities, costs, eth_prices=crash.eth_prices)
    assert valued
    rows = [
        PositionRow(
            o.protocol, o.user, 9 * 10**17, 2**60 + 1, 2**59 + 3, 8 if o.protocol == "aave-v3" else 18, o
        )
        for o in valued
    ]
    rows.append(PositionRow("aave-v2", "0x" + "ab" * 20, 2**256 - 1, 0, 0, 18, None, "no route"))
    return Positions(rows, block=123, timestamp=1_700_000_012)


def _strings(value: object) -> list[object]:
    """Every scalar leaf of a JSON document."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in _strings(v)]
    if isinstance(value, list):
        return [x for v in value for x in _strings(v)]
    return [value]


def test_json_names_the_block_and_writes_amounts_as_strings(capsys: Any) -> None:
    rows = _rows()
    render(rows, as_json=True)
    doc = json.loads(capsys.readouterr().out)
    assert doc["block"] == {"number": "123", "timestamp": "1700000012"}
    first = doc["positions"][0]
    best = first["best"]
    opp = rows[0].best
    assert opp is not None and opp.net_profit_wei is not None
    assert best["debt_to_cover"] == str(opp.debt_to_cover)
    assert best["collateral_out"] == str(opp.collateral_out)
    assert best["swap_out"] == str(opp.swap_out)
    assert best["net_profit_wei"] == str(opp.net_profit_wei)
    assert first["total_collateral_base"] == str(2**60 + 1)
    # No JSON number anywhere except the small base_decimals (ints an IEEE double holds exactly).
    numbers = [x for x in _strings(doc) if isinstance(x, int | float) and not isinstance(x, bool)]
    assert all(isinstance(x, int) and x in (8, 18) for x in numbers)
    assert doc["positions"][-1]["dropped"] == "no route"
    assert doc["positions"][-1]["health_factor"] == str(2**256 - 1)


def test_table_names_the_block() -> None:
    out = io.StringIO()
    render(_rows(), as_json=False, console=Console(file=out, width=300))
    text = out.getvalue()
    assert "at block 123" in text
    assert "no route" in text
    assert "Ξ" in text
