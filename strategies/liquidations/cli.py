"""`keeper positions`: every tracked borrower with its exact health factor and best liquidation."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from keeper.chain.rpc import RpcClient
from keeper.chain.units import format_units
from keeper.rows_at_block import RowsAtBlock
from strategies.liquidations.markets import MarketConfig, build_adapters
from strategies.liquidations.opportunity import Opportunity
from strategies.liquidations.strategy import LiquidationStrategy, Valuer
from strategies.liquidations.valuation import ValuationCosts

WAD = 10**18
UINT256_MAX = 2**256 - 1
REPORT_GAS_PER_LIQUIDATION = 1_100_000
"""Gas assumed per liquidation when the report prices the net profit (at the head block's base fee)."""


def _num(value: int | None) -> str | None:
    """An amount as a decimal string: lossless in JSON parsers limited to 2^53."""
    return None if value is None else str(value)


@dataclass(frozen=True)
class PositionRow:
    protocol: str
    user: str
    health_factor: int
    total_collateral_base: int
    total_debt_base: int
    base_decimals: int
    best: Opportunity | None
    dropped: str | None = None
    """Why the valuer would not send its liquidation (None: it would, or it was not valued)."""

    @property
    def liquidatable(self) -> bool:
        return self.health_factor < WAD

    def to_json(self) -> dict[str, Any]:
        best = None
        if self.best is not None:
            b = self.best
            best = {
                "collateral_asset": b.collateral_asset,
                "debt_asset": b.debt_asset,
                "debt_to_cover": _num(b.debt_to_cover),
                "debt_repaid": _num(b.repaid),
                "collateral_out": _num(b.collateral_out),
                "protocol_fee": _num(b.protocol_fee),
                "collateral_exhausted": b.collateral_exhausted,
                "route": None if b.route is None else [b.route.venue, *b.route.tokens],
                "swap_out": _num(b.swap_out),
                "flash_premium": _num(b.flash_premium),
                "gross_profit": _num(b.gross_profit),
                "gross_profit_base": _num(b.gross_profit_base),
                "profit_wei": _num(b.profit_wei),
                "net_profit_wei": _num(b.net_profit_wei),
            }
        return {
            "protocol": self.protocol,
            "user": self.user,
            "health_factor": str(self.health_factor),
            "total_collateral_base": str(self.total_collateral_base),
            "total_debt_base": str(self.total_debt_base),
            "base_decimals": self.base_decimals,
            "liquidatable": self.liquidatable,
            "best": best,
            "dropped": self.dropped,
        }


class Positions(RowsAtBlock[PositionRow]):
    """The rows, and the block they were read at."""

    key = "positions"


async def collect(
    rpc: RpcClient,
    markets: Sequence[MarketConfig],
    *,
    protocol: str | None = None,
    below: int | None = None,
    valuer: Valuer | None = None,
) -> Positions:
    """Syncs the markets at the current head and returns the positions (HF < `below`, 1e18-scaled).

    With a valuer, each liquidatable position's best liquidation is sized and valued at the head's pool
    state, in order (each on the state the ones before it leave), with the net profit priced at the head
    block's base fee and `REPORT_GAS_PER_LIQUIDATION` gas; none is held back for a minimum profit."""
    chosen = [m for m in markets if protocol is None or m.name == protocol]
    strategy = LiquidationStrategy(build_adapters(rpc, chosen), valuer=valuer)
    head = await rpc.block_number()
    await strategy.sync_state(head)
    opportunities = strategy.detect()
    timestamp = next((p.market.timestamp for p in strategy.protocols if p.market is not None), 0)
    dropped: Mapping[str, str] = {}
    if valuer is not None and opportunities:
        header = await rpc.call("eth_getBlockByNumber", [hex(head), False])
        base_fee = int(header.get("baseFeePerGas", "0x0"), 16) if isinstance(header, dict) else 0
        costs = ValuationCosts(
            base_fee=base_fee, gas_per_liquidation=REPORT_GAS_PER_LIQUIDATION, min_profit_wei=-UINT256_MAX
        )
        valued = await valuer(opportunities, head, costs)
        dropped = getattr(valued, "dropped", {})
        # Sized and valued ones first; for the others, detection's largest liquidation and the reason.
        opportunities = [*valued, *(o for o in opportunities if o.id in dropped)]
    best: dict[tuple[str, str], Opportunity] = {}
    for o in opportunities:
        best.setdefault((o.protocol, o.user), o)
    reasons = {(i.split(":")[0], i.split(":")[1]): why for i, why in dropped.items()}
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
                    reasons.get((p.name, user)),
                )
            )
    rows.sort(key=lambda r: (r.health_factor, r.protocol, r.user))
    return Positions(rows, block=head, timestamp=timestamp)


def _hf(value: int) -> str:
    return "inf" if value == UINT256_MAX else format_units(value, 18, 4)


def render(rows: Sequence[PositionRow], *, as_json: bool, console: Console | None = None) -> None:
    block = getattr(rows, "block", None)
    if as_json:
        doc: Any = rows.to_json() if isinstance(rows, Positions) else [r.to_json() for r in rows]
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    console = console or Console()
    title = f"{len(rows)} positions"
    if block is not None:
        title += f" at block {block} (timestamp {getattr(rows, 'timestamp', 0)})"
    table = Table(title=title)
    right = ("HF", "collateral", "debt", "gross profit", "net profit")
    for col in (
        "protocol",
        "user",
        "HF",
        "collateral",
        "debt",
        "best liquidation",
        "gross profit",
        "net profit",
    ):
        table.add_column(col, justify="right" if col in right else "left")
    for r in rows:
        unit = "$" if r.base_decimals == 8 else "Ξ"
        best = ""
        profit = ""
        net = r.dropped or ""
        if r.best is not None:
            b = r.best
            best = (
                f"repay {b.repaid} of {b.debt_asset[:8]}… for {b.collateral_out} of {b.collateral_asset[:8]}…"
            )
            if b.gross_profit_base is not None:
                profit = unit + format_units(b.gross_profit_base, r.base_decimals, 2)
            if b.net_profit_wei is not None:
                net = "Ξ" + format_units(b.net_profit_wei, 18, 4)
        table.add_row(
            r.protocol,
            r.user,
            _hf(r.health_factor),
            unit + format_units(r.total_collateral_base, r.base_decimals, 2),
            unit + format_units(r.total_debt_base, r.base_decimals, 2),
            best,
            profit,
            net,
        )
    console.print(table)
