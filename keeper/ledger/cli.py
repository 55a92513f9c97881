"""`keeper report`: the ledger's P&L, builder inclusion rates and missed opportunities.

Reads the file through `LedgerReader` (its own read-only connection; works while a keeper is running and
writing). Exit codes: 0 ok, 2 the ledger file is missing or is not a readable keeper ledger.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.table import Table

from keeper.ledger.report import PnL, Report, build_report, format_eth, format_rate, report_to_json
from keeper.ledger.rows import LedgerError
from keeper.ledger.store import LedgerReader


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg="red")
    return typer.Exit(2)


def load_report(ledger_path: Path) -> Report:
    """Raises LedgerError when the file is missing or unreadable."""
    with LedgerReader(ledger_path) as reader:
        data = reader.report_data()
    return build_report(data)


def _pnl_table(title: str, key_name: str, groups: dict[str, PnL]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(key_name)
    for name in (
        "incl.",
        "reverted",
        "realized ETH",
        "gas ETH",
        "builder ETH",
        "net ETH",
        "subsidy ETH",
        "other assets",
    ):
        table.add_column(name, justify="right")
    for key, p in groups.items():
        others = ", ".join(f"{amount} {asset}" for asset, amount in sorted(p.other_assets.items()))
        table.add_row(
            key,
            str(p.inclusions),
            str(p.reverted),
            format_eth(p.realized_wei),
            format_eth(p.gas_wei),
            format_eth(p.builder_payments_wei),
            format_eth(p.net_wei),
            format_eth(p.subsidy_wei),
            others or "-",
        )
    return table


def render(report: Report, console: Console) -> None:
    t = report.total
    console.print(
        f"opportunities {report.opportunities}, simulations {report.simulations_ok} ok / "
        f"{report.simulations_failed} failed, submissions {report.submissions}, inclusions {t.inclusions} "
        f"({t.reverted} reverted)"
    )
    console.print(
        f"net {format_eth(t.net_wei)} ETH = realized {format_eth(t.realized_wei)}"
        f" - gas {format_eth(t.gas_wei)}; builder payments {format_eth(t.builder_payments_wei)} ETH"
        " (already out of realized)"
        + (f"; subsidy {format_eth(t.subsidy_wei)} ETH (loss-making inclusions)" if t.subsidy_wei else "")
    )
    if report.total.inclusions:
        console.print(_pnl_table("P&L by strategy", "strategy", report.by_strategy))
        console.print(_pnl_table("P&L by protocol", "protocol", report.by_protocol))
        console.print(_pnl_table("P&L by day (UTC, block time)", "day", report.by_day))
    if report.builders:
        table = Table(title="Builders", title_justify="left")
        table.add_column("builder")
        for name in ("submitted", "accepted", "included", "rate", "+unattributed", "max latency ms"):
            table.add_column(name, justify="right")
        for b in report.builders:
            table.add_row(
                b.builder,
                str(b.submitted),
                str(b.accepted),
                str(b.included),
                format_rate(b.included, b.submitted),
                str(b.included_unattributed),
                "-" if b.latency_ms_max is None else f"{b.latency_ms_max:.0f}",
            )
        console.print(table)
    if report.by_status:
        table = Table(title="Opportunities by status", title_justify="left")
        table.add_column("status")
        table.add_column("count", justify="right")
        for status, n in report.by_status.items():
            table.add_row(status.value, str(n))
        console.print(table)
    if report.reasons:
        table = Table(title="Missed opportunities and why", title_justify="left")
        table.add_column("status")
        table.add_column("reason")
        table.add_column("count", justify="right")
        for (status, reason), n in report.reasons.items():
            table.add_row(status.value, reason, str(n))
        console.print(table)


def report_command(ledger_path: Path, json: bool) -> None:
    """Prints the report (rich tables, or JSON with `json=True`); exits 2 if the ledger is unusable."""
    if not ledger_path.exists():
        raise _fail(f"ledger not found: {ledger_path} (set KEEPER_LEDGER_PATH or pass --ledger)")
    try:
        report = load_report(ledger_path)
    except LedgerError as exc:
        raise _fail(str(exc)) from None
    if json:
        typer.echo(orjson.dumps(report_to_json(report), option=orjson.OPT_INDENT_2).decode())
        return
    console = Console()
    if not console.is_terminal:  # piped: rich would assume 80 columns and squeeze the tables
        console = Console(width=160)
    render(report, console)
