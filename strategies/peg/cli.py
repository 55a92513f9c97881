"""`keeper pegs`: every peg, every pool's price against its target in bps, and the best round trip now.

Read at the head block: the venues and the targets in their batched reads, then the same pure search the
strategy runs (`best_opportunities`) and the same pricing (flash source and fee, builder share, gas at the
next base fee, profit in wei) as its action builder. Nothing is sent."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from keeper.chain.rpc import RpcClient
from keeper.chain.units import format_units
from keeper.collectors.blocks import decode_header
from keeper.rows_at_block import RowsAtBlock
from strategies.peg.actions import PegActions, PricedArbitrage
from strategies.peg.detect import PoolPrice, pool_prices, target_of
from strategies.peg.pegs import Peg
from strategies.peg.sizing import PegOpportunity, best_opportunities
from strategies.peg.strategy import PegStrategy


def _num(value: int | None) -> str | None:
    """An amount as a decimal string: lossless in JSON parsers limited to 2^53."""
    return None if value is None else str(value)


@dataclass(frozen=True)
class PegRow:
    peg: Peg
    target: tuple[int, int] | None
    prices: list[PoolPrice]
    best: PegOpportunity | None
    priced: PricedArbitrage | str | None
    """The best round trip's execution, or why it would not be sent."""

    @property
    def executed(self) -> PegOpportunity:
        """The round trip as it would be sent: the best size, or the largest loan a lender can make when
        that is smaller (re-quoted by the action builder); `best` keeps the unconstrained sizing."""
        if isinstance(self.priced, PricedArbitrage):
            return self.priced.opportunity
        assert self.best is not None
        return self.best

    def to_json(self) -> dict[str, Any]:
        best: dict[str, Any] | None = None
        if self.best is not None:
            b = self.executed
            best = {
                "token_in": b.token_in,
                "amount_in": _num(b.amount_in),
                "amount_out": _num(b.amount_out),
                "profit": _num(b.profit),
                "buy": {"venue": b.hops[0].venue, "pool": b.hops[0].pool},
                "sell": {"venue": b.hops[1].venue, "pool": b.hops[1].pool},
            }
            if isinstance(self.priced, PricedArbitrage):
                p = self.priced
                best |= {
                    "flash_source": p.source.name.lower(),
                    "flash_fee": _num(p.flash_fee),
                    "gross_profit": _num(p.gross),
                    "builder_share": _num(p.builder_share),
                    "profit_wei": _num(p.profit_wei),
                    "gas_cost_wei": _num(p.gas_cost_wei),
                    "net_profit_wei": _num(p.net_profit_wei),
                }
                if b.amount_in != self.best.amount_in:
                    best["sized_amount_in"] = _num(self.best.amount_in)
            elif isinstance(self.priced, str):
                best["not_sent"] = self.priced
        return {
            "peg": self.peg.name,
            "token_a": self.peg.token_a,
            "token_b": self.peg.token_b,
            "target": None if self.target is None else [str(self.target[0]), str(self.target[1])],
            "pools": [
                {
                    "venue": p.venue.name,
                    "pool": p.pool,
                    "price": [str(p.price_num), str(p.price_den)],
                    "deviation_bps": round(p.deviation_bps, 2),
                }
                for p in self.prices
            ],
            "best": best,
        }


class PegReport(RowsAtBlock[PegRow]):
    key = "pegs"


async def collect(rpc: RpcClient, strategy: PegStrategy, actions: PegActions) -> PegReport:
    """Everything `keeper pegs` shows, read at the head block."""
    header = await rpc.call("eth_getBlockByNumber", ["latest", False])
    block = decode_header(header)
    await strategy.refresh(block.number)  # the strategy's own per-block read
    venues = strategy.venues
    found = best_opportunities(strategy.pegs, strategy.targets, venues)
    rows: list[PegRow] = []
    for peg in strategy.pegs:
        target = target_of(peg, strategy.targets)
        prices = pool_prices(peg, target, venues) if target is not None else []
        best = next((o for o in found if o.peg.name == peg.name), None)
        priced = actions.price(best, block, venues) if best is not None else None
        rows.append(PegRow(peg, target, prices, best, priced))
    return PegReport(rows, block=block.number, timestamp=block.timestamp)


def _token(peg: Peg, address: str) -> tuple[str, int]:
    """(symbol, decimals) of one of the peg's two tokens (the address abbreviated if it has no symbol)."""
    if address.lower() == peg.token_a.lower():
        return peg.symbol_a or f"{address[:8]}…", peg.decimals_a
    if address.lower() == peg.token_b.lower():
        return peg.symbol_b or f"{address[:8]}…", peg.decimals_b
    return f"{address[:8]}…", 18


def target_in_tokens(peg: Peg, target: tuple[int, int]) -> float:
    """The target as whole tokens of B per whole token of A (1 for a 1:1 peg whatever the decimals): the
    (num, den) target is in base units."""
    num, den = target
    return float(num * 10**peg.decimals_a / (den * 10**peg.decimals_b))


def render(report: PegReport, *, as_json: bool, console: Console | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
        return
    console = console or Console()
    table = Table(title=f"{len(report)} pegs at block {report.block} (timestamp {report.timestamp})")
    for col in ("peg", "target", "pools: price vs target (bps)", "best round trip", "net profit"):
        table.add_column(col)
    for r in report:
        target = "-" if r.target is None else f"{target_in_tokens(r.peg, r.target):.6g}"
        pools = "\n".join(f"{p.venue.name} {p.pool[:10]}…: {p.deviation_bps:+.1f}" for p in r.prices) or "-"
        best, net = "-", "-"
        if r.best is not None:
            b = r.executed
            symbol, decimals = _token(r.peg, b.token_in)
            best = (
                f"{format_units(b.amount_in, decimals, 4)} {symbol} via {b.hops[0].venue} -> "
                f"{b.hops[1].venue}: +{format_units(b.profit, decimals, 6)} {symbol} before gas"
            )
            if isinstance(r.priced, PricedArbitrage):
                net = "Ξ" + format_units(r.priced.net_profit_wei, 18, 6)
            elif isinstance(r.priced, str):
                net = r.priced
        table.add_row(r.peg.name, target, pools, best, net)
    console.print(table)
