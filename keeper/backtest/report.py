"""Backtest reports: a JSON file (deterministic: same recording + same config = the same bytes), a
terminal summary, and a self-contained HTML page with interactive plots (plotly.js embedded: it opens
offline).

Nothing measured on the wall clock goes into the JSON; latency figures (`Timing`) go to the terminal and
the HTML only.
"""

from __future__ import annotations

import html
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from keeper.backtest.replay import ReplayResult
from keeper.backtest.truth import CAPTURED, MISSED, OURS_ALONE, classify, summarize

REPORT_FORMAT = "keeper-backtest-report"
SWEEP_FORMAT = "keeper-backtest-sweep"
REPORT_VERSION = 1
WEI = 10**18


@dataclass
class Timing:
    """Wall-clock figures of one run (never in the JSON)."""

    seconds: float = 0.0
    blocks: int = 0
    decision_ms: list[float] = field(default_factory=list)
    block_numbers: list[int] = field(default_factory=list)
    pid: int = 0
    """The process that ran it (a sweep's worker)."""
    loop_seconds: float = 0.0
    """The block loop alone (no node start, keeper build or sync)."""

    @property
    def blocks_per_second(self) -> float:
        """Replay speed of the block loop."""
        return self.blocks / self.loop_seconds if self.loop_seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        if not self.decision_ms:
            return 0.0
        ordered = sorted(self.decision_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def to_json(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "blocks": self.blocks,
            "decision_ms": self.decision_ms,
            "block_numbers": self.block_numbers,
            "pid": self.pid,
            "loop_seconds": self.loop_seconds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Timing:
        return cls(
            float(data["seconds"]),
            int(data["blocks"]),
            [float(x) for x in data["decision_ms"]],
            [int(x) for x in data["block_numbers"]],
            int(data.get("pid", 0)),
            float(data.get("loop_seconds", 0.0)),
        )


def timing_of(result: ReplayResult) -> Timing:
    return Timing(
        result.seconds,
        len(result.blocks),
        [b.decision_ms for b in result.blocks],
        [b.number for b in result.blocks],
        os.getpid(),
        result.loop_seconds,
    )


def build_report(result: ReplayResult) -> dict[str, Any]:
    """The JSON report of one run (only deterministic facts)."""
    c = classify(result.liquidations, result.attempts, result.declines, result.protocols)
    summary = summarize(c.opportunities)
    liq_by_block: dict[int, list[Any]] = {}
    for liq in result.liquidations:
        liq_by_block.setdefault(liq.block, []).append(liq)
    oracle = []
    for u in result.oracle_updates:
        after = [x for x in liq_by_block.get(u.block, []) if x.tx_index > u.tx_index]
        oracle.append(
            {
                "block": u.block,
                "tx": u.tx_hash,
                "tx_index": u.tx_index,
                "feed": u.feed,
                "answer": str(u.answer),
                "backrun": bool(after),
                "backrun_by": sorted({x.liquidator for x in after}),
                "liquidations_after": len(after),
            }
        )
    opps = c.opportunities
    captured_profit = sum(o.attempt.net_wei for o in opps if o.kind == CAPTURED and o.attempt is not None)
    alone_profit = sum(o.attempt.net_wei for o in opps if o.kind == OURS_ALONE and o.attempt is not None)
    totals = {
        "blocks": len(result.blocks),
        "transactions": sum(b.txs for b in result.blocks),
        "liquidations": len(result.liquidations),
        "liquidations_ours": sum(1 for x in result.liquidations if x.ours),
        "opportunities": len(opps),
        CAPTURED: c.count(CAPTURED),
        MISSED: c.count(MISSED),
        OURS_ALONE: c.count(OURS_ALONE),
        "bundles": sum(b.bundles for b in result.blocks),
        "attempts": len(result.attempts),
        "counterfactual_net_wei": str(captured_profit + alone_profit),
        "captured_net_wei": str(captured_profit),
        "ours_alone_net_wei": str(alone_profit),
        "builder_paid_wei": str(sum(a.builder_paid_wei for a in result.attempts)),
        "gas_wei": str(sum(a.gas_wei for a in result.attempts)),
        "oracle_updates": len(result.oracle_updates),
        "oracle_updates_backrun": sum(1 for o in oracle if o["backrun"]),
    }
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "source": result.source,
        "config": result.config,
        "complete": result.stopped is None,
        "stopped": result.stopped,
        "ours": result.ours,
        "totals": totals,
        "by_strategy_protocol": summary["by_strategy_protocol"],
        "missed_reasons": summary["missed_reasons"],
        "executor": result.executor,
        "opportunities": [o.to_json() for o in opps],
        "oracle_updates": oracle,
        "blocks": [b.to_json() for b in result.blocks],
    }


def report_bytes(report: Mapping[str, Any]) -> bytes:
    return orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def sweep_report(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"format": SWEEP_FORMAT, "version": REPORT_VERSION, "runs": list(runs)}


def _eth(wei: int | str) -> float:
    """Display only."""
    return int(wei) / WEI


def run_label(report: Mapping[str, Any]) -> str:
    sets = report["config"].get("set") or {}
    return ", ".join(f"{k}={v}" for k, v in sorted(sets.items())) or "defaults"


# ---- terminal ---------------------------------------------------------------------------------------


def print_summary(reports: Sequence[Mapping[str, Any]], timings: Sequence[Timing], console: Any) -> None:
    from rich.table import Table

    table = Table(title="backtest" if len(reports) == 1 else f"backtest sweep: {len(reports)} runs")
    table.add_column("run")
    for col in (
        "blocks",
        "captured",
        "missed",
        "ours alone",
        "net (ETH)",
        "builder (ETH)",
        "blocks/s",
        "p50 ms",
    ):
        table.add_column(col, justify="right")
    for rep, t in zip(reports, timings, strict=True):
        tot = rep["totals"]
        table.add_row(
            run_label(rep),
            str(tot["blocks"]),
            str(tot[CAPTURED]),
            str(tot[MISSED]),
            str(tot[OURS_ALONE]),
            f"{_eth(tot['counterfactual_net_wei']):.4f}",
            f"{_eth(tot['builder_paid_wei']):.4f}",
            f"{t.blocks_per_second:.1f}",
            f"{t.percentile(0.5):.1f}",
        )
    console.print(table)
    for rep in reports:
        reasons = rep["missed_reasons"]
        if reasons:
            shown = ", ".join(f"{k}: {v}" for k, v in reasons.items())
            console.print(f"  [{run_label(rep)}] missed because {shown}")
        groups = rep["by_strategy_protocol"]
        for g in groups:
            console.print(
                f"  [{run_label(rep)}] {g['strategy']} / {g['protocol'] or '?'}: captured {g[CAPTURED]}, "
                f"missed {g[MISSED]}, ours alone {g[OURS_ALONE]}, net {_eth(g['profit_wei']):.4f} ETH"
            )
        if rep.get("stopped"):
            console.print(f"  [red]stopped at block {rep['stopped']['block']}: {rep['stopped']['reason']}[/]")


# ---- HTML -------------------------------------------------------------------------------------------


def _figures(report: Mapping[str, Any], timing: Timing | None) -> list[tuple[str, Any]]:
    import plotly.graph_objects as go  # type: ignore[import-untyped]

    figs: list[tuple[str, Any]] = []
    blocks = [b["number"] for b in report["blocks"]]
    per_kind: dict[str, dict[int, int]] = {
        k: dict.fromkeys(blocks, 0) for k in (CAPTURED, MISSED, OURS_ALONE)
    }
    for o in report["opportunities"]:
        if o["block"] in per_kind[o["kind"]]:
            per_kind[o["kind"]][o["block"]] += 1
    fig = go.Figure()
    for kind, color in ((CAPTURED, "#2ca02c"), (MISSED, "#d62728"), (OURS_ALONE, "#1f77b4")):
        fig.add_bar(
            x=blocks, y=[per_kind[kind][b] for b in blocks], name=kind.replace("_", " "), marker_color=color
        )
    cumulative, running = [], 0
    net_by_block = {b["number"]: int(b["net_wei"]) for b in report["blocks"]}
    captured_net: dict[int, int] = dict.fromkeys(blocks, 0)
    for o in report["opportunities"]:
        if o["kind"] in (CAPTURED, OURS_ALONE) and o["ours"] is not None and o["block"] in captured_net:
            captured_net[o["block"]] += int(o["ours"]["net_wei"])
    for b in blocks:
        running += captured_net[b]
        cumulative.append(_eth(running))
    fig.add_scatter(
        x=blocks, y=cumulative, name="cumulative counterfactual net (ETH)", yaxis="y2", mode="lines+markers"
    )
    fig.update_layout(
        title="Opportunities and P&L over blocks",
        barmode="stack",
        xaxis_title="block",
        yaxis_title="opportunities",
        yaxis2={"title": "ETH", "overlaying": "y", "side": "right"},
    )
    figs.append(("opportunities", fig))

    groups = report["by_strategy_protocol"]
    labels = [f"{g['strategy']} / {g['protocol'] or '?'}" for g in groups]
    fig = go.Figure()
    for kind in (CAPTURED, MISSED, OURS_ALONE):
        fig.add_bar(x=labels, y=[g[kind] for g in groups], name=kind.replace("_", " "))
    fig.update_layout(title="Captured / missed / ours alone per strategy and protocol", barmode="group")
    figs.append(("by-protocol", fig))

    reasons = report["missed_reasons"]
    fig = go.Figure(go.Bar(x=list(reasons), y=list(reasons.values()), marker_color="#d62728"))
    fig.update_layout(title="Why opportunities were missed", yaxis_title="opportunities")
    figs.append(("missed", fig))

    fig = go.Figure()
    fig.add_bar(
        x=blocks, y=[_eth(b["builder_paid_wei"]) for b in report["blocks"]], name="builder payments (ETH)"
    )
    fig.add_bar(x=blocks, y=[_eth(b["gas_wei"]) for b in report["blocks"]], name="gas (ETH)")
    fig.add_scatter(
        x=blocks, y=[_eth(net_by_block[b]) for b in blocks], name="net of our bundles (ETH)", mode="lines"
    )
    fig.update_layout(
        title="Gas and builder payments of our simulated bundles", xaxis_title="block", yaxis_title="ETH"
    )
    figs.append(("payments", fig))

    if timing is not None and timing.decision_ms:
        fig = go.Figure()
        fig.add_scatter(
            x=timing.block_numbers, y=timing.decision_ms, mode="lines+markers", name="decision ms"
        )
        fig.update_layout(
            title=(
                f"Latency: block to decisions (strategy + simulation), p50 {timing.percentile(0.5):.1f} ms, "
                f"p99 {timing.percentile(0.99):.1f} ms; {timing.blocks_per_second:.1f} blocks/s"
            ),
            xaxis_title="block",
            yaxis_title="ms",
        )
        figs.append(("latency", fig))
    return figs


def _sweep_figures(reports: Sequence[Mapping[str, Any]], timings: Sequence[Timing]) -> list[tuple[str, Any]]:
    import plotly.graph_objects as go

    labels = [run_label(r) for r in reports]
    fig = go.Figure()
    for kind in (CAPTURED, MISSED, OURS_ALONE):
        fig.add_bar(x=labels, y=[r["totals"][kind] for r in reports], name=kind.replace("_", " "))
    fig.update_layout(title="Runs side by side: opportunities", barmode="group")
    out = [("sweep-counts", fig)]
    fig = go.Figure()
    fig.add_bar(x=labels, y=[_eth(r["totals"]["counterfactual_net_wei"]) for r in reports], name="net (ETH)")
    fig.add_bar(x=labels, y=[_eth(r["totals"]["builder_paid_wei"]) for r in reports], name="builder (ETH)")
    fig.update_layout(title="Runs side by side: P&L and builder payments", barmode="group", yaxis_title="ETH")
    out.append(("sweep-pnl", fig))
    fig = go.Figure(go.Bar(x=labels, y=[t.blocks_per_second for t in timings]))
    fig.update_layout(title="Runs side by side: replay speed (blocks/s)")
    out.append(("sweep-speed", fig))
    return out


def render_html(reports: Sequence[Mapping[str, Any]], timings: Sequence[Timing]) -> str:
    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

    sections: list[str] = []
    if len(reports) > 1:
        sections.append("<h2>Sweep</h2>")
        for name, fig in _sweep_figures(reports, timings):
            sections.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=name))
    for i, (rep, t) in enumerate(zip(reports, timings, strict=True)):
        tot = rep["totals"]
        sections.append(f"<h2>Run: {html.escape(run_label(rep))}</h2>")
        sections.append(
            "<p>"
            + html.escape(
                f"{rep['source']['kind']} {rep['source']['name']}, blocks {rep['source']['from_block']}-"
                f"{rep['source']['to_block']} ({tot['blocks']} replayed); captured {tot[CAPTURED]}, missed "
                f"{tot[MISSED]}, ours alone {tot[OURS_ALONE]}; counterfactual net "
                f"{_eth(tot['counterfactual_net_wei']):.6f} ETH"
            )
            + (
                f" <b>stopped at block {rep['stopped']['block']}: {html.escape(rep['stopped']['reason'])}</b>"
                if rep.get("stopped")
                else ""
            )
            + "</p>"
        )
        for name, fig in _figures(rep, t):
            sections.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"run{i}-{name}"))
        missed = [o for o in rep["opportunities"] if o["kind"] == MISSED]
        if missed:
            rows = "".join(
                "<tr>"
                + "".join(
                    f"<td>{html.escape(str(v))}</td>"
                    for v in (
                        o["block"],
                        o["protocol"],
                        o["user"],
                        (o["liquidation"] or {}).get("liquidator", ""),
                        (o["liquidation"] or {}).get("tx", ""),
                        o["reason"],
                        o["detail"] or "",
                    )
                )
                + "</tr>"
                for o in missed
            )
            sections.append(
                "<h3>Missed</h3><table><tr><th>block</th><th>protocol</th><th>user</th><th>liquidator</th>"
                f"<th>tx</th><th>reason</th><th>detail</th></tr>{rows}</table>"
            )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>keeper backtest</title>"
        "<style>body{font-family:sans-serif;margin:1em 2em}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 6px}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        "<h1>keeper backtest</h1>" + "".join(sections) + "</body></html>"
    )


def write_outputs(
    out_dir: Path, reports: Sequence[Mapping[str, Any]], timings: Sequence[Timing]
) -> tuple[Path, Path]:
    """report.json (one run: its report; several: a sweep holding each) and report.html."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    data = reports[0] if len(reports) == 1 else sweep_report(reports)
    json_path.write_bytes(report_bytes(data))
    html_path = out_dir / "report.html"
    html_path.write_text(render_html(reports, timings), encoding="utf-8")
    return json_path, html_path


def median_ms(timings: Sequence[Timing]) -> float:
    values = [x for t in timings for x in t.decision_ms]
    return statistics.median(values) if values else 0.0
