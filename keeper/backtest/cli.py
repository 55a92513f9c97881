"""`keeper backtest`: replay past blocks through the live strategies and executors; see what they would
have done, earned and missed, block by block (`keeper.backtest`).

    keeper backtest --recording demo.rec.gz                      # a recording (keeper devnet record)
    keeper backtest --fork-url URL --from-block A --to-block B   # an archive node
    keeper backtest --recording demo.rec.gz --set builder_share_bps=5000,7000,9000 --workers 3

Writes OUT/report.json (deterministic), OUT/report.html (interactive plots, offline) and prints a summary.
Exit codes: 0 done; 1 a block could not be replayed (the report so far is written) or a run failed;
2 bad input (one `error:` line).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def backtest(
    recording: Annotated[
        Path | None, typer.Option(help="A recording to replay (`keeper devnet record --out FILE`).")
    ] = None,
    fork_url: Annotated[
        str | None, typer.Option(help="An archive node to fork and replay blocks from.")
    ] = None,
    from_block: Annotated[int | None, typer.Option(help="First block to replay (fork replay).")] = None,
    to_block: Annotated[
        int | None, typer.Option(help="Last block to replay (default: the recording's last).")
    ] = None,
    strategies: Annotated[str, typer.Option(help="Comma-separated strategies (KEEPER_STRATEGIES names).")] = (
        "liquidations"
    ),
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="A setting for the replayed keeper, key=value (field names of `keeper run`'s settings); "
            "repeatable; a comma-separated list of values runs the grid: --set builder_share_bps=5000,7000",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Local worker processes for a sweep (0: one per run, up to the CPUs).")
    ] = 0,
    ray_address: Annotated[
        str | None, typer.Option(help="Run the sweep on this Ray cluster (needs the extra keeper\\[ray]).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory for report.json and report.html.")] = Path(
        "backtest-report"
    ),
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="The keeper's settings (TOML) for a fork replay.")
    ] = None,
    mempool: Annotated[
        bool,
        typer.Option(help="Show the strategies each block's transactions as pending before the block."),
    ] = True,
    progress: Annotated[bool, typer.Option(help="A progress bar on stderr.")] = True,
) -> None:
    """Replay past blocks through the strategies: what they would have earned and missed, and why."""
    import asyncio

    from rich.console import Console

    from keeper.backtest.recording import RecordingError
    from keeper.backtest.report import Timing, print_summary, write_outputs
    from keeper.backtest.sources import SourceError
    from keeper.backtest.sweep import (
        RunSpec,
        SourceSpec,
        check_specs,
        parse_sets,
        run_local,
        run_ray,
        run_spec_async,
    )
    from keeper.errors import ConfigError
    from keeper.logs import setup_logging

    setup_logging("text", "ERROR")
    if (recording is None) == (fork_url is None):
        raise _fail("give either --recording FILE or --fork-url URL --from-block A --to-block B")
    if fork_url is not None and (from_block is None or to_block is None):
        raise _fail("--fork-url needs --from-block and --to-block")
    if workers < 0:
        raise _fail(f"--workers {workers}: must be 0 (automatic) or more")
    names = tuple(s.strip() for s in strategies.split(",") if s.strip())
    if not names:
        raise _fail("--strategies: give at least one strategy, e.g. --strategies liquidations")
    if recording is not None:
        source = SourceSpec("recording", path=str(recording), first=from_block, last=to_block)
    else:
        source = SourceSpec(
            "fork", url=fork_url, first=from_block, last=to_block, config=str(config) if config else None
        )
    try:
        grid = parse_sets(set_ or [])
        specs = [RunSpec(source, names, tuple(sorted(g.items())), mempool) for g in grid]
        checked = asyncio.run(check_specs(specs))
    except ConfigError as exc:
        raise _fail(exc.problems[0]) from None
    except (RecordingError, SourceError) as exc:
        raise _fail(str(exc)) from None
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the tables into 80 columns
        console = Console(width=160)
    show = (progress and sys.stderr.isatty()) or (progress and os.environ.get("KEEPER_PROGRESS") == "1")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show,
        transient=True,
    )
    with bar:
        if len(specs) == 1 and ray_address is None:
            total = checked.last_block - checked.first_block + 1
            task = bar.add_task("replaying blocks", total=total)
            outcomes = [asyncio.run(run_spec_async(specs[0], on_block=lambda _n: bar.advance(task)))]
        elif ray_address is not None:
            try:
                outcomes = run_ray(specs, ray_address)
            except ConfigError as exc:
                raise _fail(exc.problems[0]) from None
        else:
            n = workers or min(len(specs), os.cpu_count() or 1)
            task = bar.add_task(f"runs ({n} workers)", total=len(specs))
            outcomes = run_local(specs, n, on_done=lambda done: bar.update(task, completed=done))
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        first = failed[0]
        raise _fail(first.error or "", 2 if first.config_error else 1)
    reports = [o.report for o in outcomes if o.report is not None]
    timings = [Timing.from_json(o.timing) for o in outcomes if o.timing is not None]
    json_path, html_path = write_outputs(out, reports, timings)
    print_summary(reports, timings, console)
    console.print(f"report: {json_path}  {html_path}")
    stopped = [r for r in reports if r.get("stopped")]
    if stopped:
        s = stopped[0]["stopped"]
        raise _fail(f"block {s['block']} cannot be replayed: {s['reason']} (the report so far is written)", 1)
