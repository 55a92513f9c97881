"""`keeper positions`: every tracked borrower with its exact health factor and best liquidation."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from keeper.chain.rpc import RpcClient
from keeper.chain.units import format_units
from strategies.liquidations.markets import MarketConfig, build_adapters
from strategies.liquidations.opportunity import Opportunity
from strategies.liquidations.strategy import LiquidationStrategy, Valuer

WAD = 10**18
UINT256_MAX = 2**256 - 1


@dataclass(frozen=True)
class PositionRow:
    protocol: str
    user: str
    health_factor: int
    total_collateral_base: int
    total_debt_base: int
    base_decimals: int
    best: Opportunity | None

    @property
    def liquidatable(self) -> bool:
        return self.health_factor < WAD

    def to_json(self) -> dict[str, Any]:
        best = None
        if self.best is not None:
            best = {
                "collateral_asset": self.best.collateral_asset,
                "debt_asset": self.best.debt_asset,
                "debt_to_cover": self.best.debt_to_cover,
                "collateral_out": self.best.collateral_out,
                "gross_profit_base": self.best.gross_profit_base,
            }
        return {
            "protocol": self.protocol,
            "user": self.user,
            "health_factor": str(self.health_factor),
            "total_collateral_base": self.total_collateral_base,
            "total_debt_base": self.total_debt_base,
            "liquidatable": self.liquidatable,
            "best": best,
        }


async def collect(
    rpc: RpcClient,
    markets: Sequence[MarketConfig],
    *,
    protocol: str | None = None,
    below: int | None = None,
    valuer: Valuer | None = None,
) -> list[PositionRow]:
    """Syncs the markets at the current head and returns the positions (HF < `below`, 1e18-scaled)."""
    chosen = [m for m in markets if protocol is None or m.name == protocol]
    strategy = LiquidationStrategy(build_adapters(rpc, chosen), valuer=valuer)
    head = await rpc.block_number()
    await strategy.sync_state(head)
    opportunities = strategy.detect()
    if valuer is not None and opportunities:
        opportunities = await valuer(opportunities, head)
    best = {(o.protocol, o.user): o for o in opportunities}
    rows: list[PositionRow] = []
    for p in strategy.protocols:
        indexes = p.indexes()
        base_decimals = 8 if p.kind == "aave-v3" else 18
        for user in p.positions:
            account = p.account(user, indexes=indexes)
            if below is not None and account.health_factor >= below:
                continue
            rows.append(
                PositionRow(
                    p.name,
                    user,
                    account.health_factor,
                    account.total_collateral_base,
                    account.total_debt_base,
                    base_decimals,
                    best.get((p.name, user)),
                )
            )
    rows.sort(key=lambda r: (r.health_factor, r.protocol, r.user))
    return rows


def _hf(value: int) -> str:
    return "inf" if value == UINT256_MAX else format_units(value, 18, 4)


def render(rows: Sequence[PositionRow], *, as_json: bool, console: Console | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps([r.to_json() for r in rows], indent=2) + "\n")
        return
    console = console or Console()
    table = Table(title=f"{len(rows)} positions")
    for col in ("protocol", "user", "HF", "collateral", "debt", "best liquidation", "gross profit"):
        table.add_column(
            col, justify="right" if col in ("HF", "collateral", "debt", "gross profit") else "left"
        )
    for r in rows:
        unit = "$" if r.base_decimals == 8 else "Ξ"
        best = ""
        profit = ""
        if r.best is not None:
            b = r.best
            best = (
                f"repay {b.debt_to_cover} of {b.debt_asset[:8]}… "
                f"for {b.collateral_out} of {b.collateral_asset[:8]}…"
            )
            if b.gross_profit_base is not None:
                profit = unit + format_units(b.gross_profit_base, r.base_decimals, 2)
        table.add_row(
            r.protocol,
            r.user,
            _hf(r.health_factor),
            unit + format_units(r.total_collateral_base, r.base_decimals, 2),
            unit + format_units(r.total_debt_base, r.base_decimals, 2),
            best,
            profit,
        )
    console.print(table)
