"""Backtests on the real devnet: a recording of a demo-like run (borrowers, the live keeper, an ETH crash,
a competitor that backruns the oracle updates) replays through the live strategies and executors.

- the report's counts match what the live run's ledger recorded, and its missed list names every one of
  the competitor's liquidations;
- two replays of the same recording give byte-identical JSON (the CLI's report.json);
- the HTML report opens in headless Chromium (Debian's package, installed here when missing) and its
  plotly plots render (`.main-svg` in the DOM after the scripts ran); a screenshot is kept as an artifact
  under the test's tmp dir (its path is printed);
- a sweep of three builder shares runs in parallel worker processes and reports each run;
- bad input: a truncated recording, one of another version, a block range beyond the recording, a fork
  URL beyond the head or without archive state: one line and exit code 2; a block that cannot be
  replayed stops the run with its number and keeps the report so far (exit code 1);
- a fork replay (`--fork-url`) of the same blocks gives the same classification as the recording.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from keeper.backtest.recording import read_recording
from keeper.backtest.replay import Replayer
from keeper.backtest.report import build_report, write_outputs
from keeper.backtest.sources import RecordingSource
from keeper.backtest.sweep import RunSpec, SourceSpec, run_local
from keeper.backtest.truth import CAPTURED, MISSED, NOT_DETECTED, OUTBID, TOO_SLOW, UNPROFITABLE
from keeper.devnet.anvil import DEV_ACCOUNTS
from keeper.devnet.cache import CachedState
from keeper.devnet.deploy import COMPETITOR
from keeper.devnet.recorder import DemoRecording, record_demo
from keeper.ledger.store import LedgerReader

pytestmark = pytest.mark.integration

KEEPER = [sys.executable, "-m", "keeper.cli"]
ROOT = Path(__file__).resolve().parents[2]


def keeper_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "keeper"), *args], cwd=cwd, capture_output=True, text=True, env=env
    )


@pytest.fixture(scope="module")
async def demo(devnet_state: CachedState, tmp_path_factory: pytest.TempPathFactory) -> DemoRecording:
    workdir = tmp_path_factory.mktemp("demo-recording")
    rec = await record_demo(workdir / "demo.rec.gz", workdir, borrowers=150, seed=1)
    assert rec.competitor_liquidations, "the competitor took nothing: the scenario is not what it should be"
    return rec


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium, installed with apt-get when missing (CI runs as root on a fresh machine)."""
    found = shutil.which("chromium")
    if found is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
        found = shutil.which("chromium")
    assert found is not None, "chromium could not be installed"
    return found


async def test_replay_matches_the_live_ledger_and_names_the_competitor(demo: DemoRecording) -> None:
    source = RecordingSource.open(demo.path)
    # The live keeper saw blocks only (no mempool feed): the replay shows it the same.
    result = await Replayer(source, mempool=False).run()
    report = build_report(result)
    assert report["complete"], report["stopped"]
    assert report["totals"]["blocks"] == demo.last_block - demo.first_block + 1

    with LedgerReader(demo.ledger_path) as reader:
        data = reader.report_data()
    landed = [i for i in data.inclusions if i.success]
    assert landed, "the live keeper liquidated nothing"
    ours = [o for o in report["opportunities"] if o["liquidation"] and o["liquidation"]["ours"]]
    assert len(ours) == len(landed)
    assert {o["liquidation"]["tx"] for o in ours} == {i.tx_hash.lower() for i in landed}
    assert all(o["kind"] == CAPTURED for o in ours)
    # The replayed executor signed the same transactions the live one sent: they are found included.
    assert report["executor"]["included"] == len(landed)
    assert report["totals"]["liquidations_ours"] == len(landed)
    live_profit = sum(i.realized_profit_wei or 0 for i in landed)
    assert int(report["executor"]["realized_profit_wei"]) == live_profit

    missed = [o for o in report["opportunities"] if o["kind"] == MISSED]
    competitor = COMPETITOR.lower()
    assert {o["liquidation"]["tx"] for o in missed} >= {h.lower() for h in demo.competitor_liquidations}
    named = [o for o in missed if o["liquidation"]["liquidator"] == competitor]
    assert len({o["liquidation"]["tx"] for o in named}) == len(demo.competitor_liquidations)
    for o in named:
        assert o["reason"] in (TOO_SLOW, UNPROFITABLE, NOT_DETECTED, OUTBID)
        assert o["detail"]
    # The competitor backran the oracle updates: those positions were healthy at the parent block.
    assert all(o["reason"] == TOO_SLOW for o in named)
    backrun = [u for u in report["oracle_updates"] if competitor in u["backrun_by"]]
    assert backrun
    assert report["totals"][CAPTURED] + report["totals"][MISSED] == report["totals"]["liquidations"]


async def test_with_the_pending_set_the_keeper_backruns_what_the_competitor_took(demo: DemoRecording) -> None:
    """Shown the blocks' transactions as pending, the strategy backruns the oracle updates: at the update's
    position its bundles succeed, so the competitor's liquidations become ones we would have taken."""
    result = await Replayer(RecordingSource.open(demo.path), mempool=True).run()
    report = build_report(result)
    assert report["complete"]
    backruns = [
        a for a in result.attempts if a.position > 0 or a.block in {u.block for u in result.oracle_updates}
    ]
    competitor = COMPETITOR.lower()
    taken = [
        o
        for o in report["opportunities"]
        if o["liquidation"] and o["liquidation"]["liquidator"] == competitor and o["kind"] == CAPTURED
    ]
    # Either way every competitor liquidation is classified, and the pending set changed the outcome.
    assert backruns
    assert taken
    for o in taken:
        assert o["ours"] is not None
        assert int(o["ours"]["net_wei"]) > 0


def test_two_replays_give_byte_identical_json(demo: DemoRecording, tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        done = keeper_cli("backtest", "--recording", str(demo.path), "--out", str(out), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "captured" in done.stdout
        outs.append((out / "report.json").read_bytes())
    assert outs[0] == outs[1]
    report = orjson.loads(outs[0])
    assert report["format"] == "keeper-backtest-report"
    assert report["totals"]["liquidations"] > 0
    text = outs[0].decode()
    assert "decision_ms" not in text and "seconds" not in text


def test_html_report_renders_in_headless_chromium(demo: DemoRecording, tmp_path: Path, chromium: str) -> None:
    out = tmp_path / "report"
    done = keeper_cli(
        "backtest", "--recording", str(demo.path), "--out", str(out), "--no-mempool", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    html = out / "report.html"
    assert re.search(r"<script[^>]*\bsrc=", html.read_text(encoding="utf-8")) is None  # offline
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--virtual-time-budget=10000",
    ]
    dom = subprocess.run(
        [chromium, *flags, f"--user-data-dir={tmp_path / 'profile1'}", "--dump-dom", html.as_uri()],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    plots = re.findall(r'<div id="(run0-[a-z-]+)"', dom.stdout)
    assert {"run0-opportunities", "run0-by-protocol", "run0-missed", "run0-payments", "run0-latency"} <= set(
        plots
    )
    # plotly drew every plot: one <svg class="main-svg"> (at least) per figure, after the scripts ran.
    assert dom.stdout.count('class="main-svg"') >= len(plots)
    assert "js-plotly-plot" in dom.stdout
    shot = tmp_path / "report.png"
    done_shot = subprocess.run(
        [
            chromium,
            *flags,
            f"--user-data-dir={tmp_path / 'profile2'}",
            "--window-size=1400,2400",
            f"--screenshot={shot}",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done_shot.returncode == 0, done_shot.stderr[-2000:]
    assert shot.is_file()
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    print(f"\nscreenshot of the backtest report: {shot}")


def test_sweep_of_three_builder_shares_runs_in_parallel(demo: DemoRecording, tmp_path: Path) -> None:
    source = SourceSpec("recording", path=str(demo.path))
    shares = ("5000", "7000", "9000")
    specs = [RunSpec(source, ("liquidations",), (("builder_share_bps", s),), False) for s in shares]
    outcomes = run_local(specs, workers=3)
    assert all(o.error is None for o in outcomes), [o.error for o in outcomes]
    pids = {o.timing["pid"] for o in outcomes if o.timing is not None}
    assert len(pids) == 3 and os.getpid() not in pids  # three worker processes
    reports = [o.report for o in outcomes if o.report is not None]
    assert [r["config"]["set"]["builder_share_bps"] for r in reports] == list(shares)
    paid = [int(r["totals"]["builder_paid_wei"]) for r in reports]
    assert all(r["complete"] for r in reports)
    assert paid[0] < paid[1] < paid[2]  # the same opportunities, a larger share to the builder
    from keeper.backtest.report import Timing

    json_path, html_path = write_outputs(
        tmp_path / "sweep", reports, [Timing.from_json(o.timing) for o in outcomes if o.timing]
    )
    sweep = orjson.loads(json_path.read_bytes())
    assert sweep["format"] == "keeper-backtest-sweep"
    assert len(sweep["runs"]) == 3
    assert "sweep-counts" in html_path.read_text(encoding="utf-8")


def test_sweep_through_the_cli(demo: DemoRecording, tmp_path: Path) -> None:
    done = keeper_cli(
        "backtest",
        "--recording",
        str(demo.path),
        "--set",
        "builder_share_bps=5000,9000",
        "--workers",
        "2",
        "--no-mempool",
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "builder_share_bps=5000" in done.stdout and "builder_share_bps=9000" in done.stdout
    sweep = orjson.loads((tmp_path / "out" / "report.json").read_bytes())
    assert [r["config"]["set"] for r in sweep["runs"]] == [
        {"builder_share_bps": "5000"},
        {"builder_share_bps": "9000"},
    ]


# ---- bad input --------------------------------------------------------------------------------------


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in done.stderr
    return lines[0]


def test_truncated_recording_is_one_line_and_exit_2(demo: DemoRecording, tmp_path: Path) -> None:
    data = demo.path.read_bytes()
    cut = tmp_path / "cut.rec.gz"
    cut.write_bytes(data[: len(data) // 2])
    done = keeper_cli("backtest", "--recording", str(cut), cwd=tmp_path)
    assert done.returncode == 2
    assert "truncated" in _one_error_line(done)
    # A file closed before its end line (a recorder that was killed) is truncated too.
    lines = gzip.decompress(data).split(b"\n")
    no_end = tmp_path / "no-end.rec.gz"
    no_end.write_bytes(gzip.compress(b"\n".join(lines[:-2]) + b"\n"))
    done = keeper_cli("backtest", "--recording", str(no_end), cwd=tmp_path)
    assert done.returncode == 2
    assert "truncated" in _one_error_line(done)


def test_recording_of_another_version_is_one_line_and_exit_2(demo: DemoRecording, tmp_path: Path) -> None:
    lines = gzip.decompress(demo.path.read_bytes()).split(b"\n")
    header = orjson.loads(lines[0])
    header["version"] = 99
    other = tmp_path / "v99.rec.gz"
    other.write_bytes(gzip.compress(b"\n".join([orjson.dumps(header), *lines[1:]])))
    done = keeper_cli("backtest", "--recording", str(other), cwd=tmp_path)
    assert done.returncode == 2
    line = _one_error_line(done)
    assert "version 99" in line and "version 1" in line
    missing = keeper_cli("backtest", "--recording", str(tmp_path / "nope.rec.gz"), cwd=tmp_path)
    assert missing.returncode == 2
    assert "no such file" in _one_error_line(missing)


def test_block_range_beyond_the_recording_and_bad_sets(demo: DemoRecording, tmp_path: Path) -> None:
    done = keeper_cli(
        "backtest", "--recording", str(demo.path), "--to-block", str(demo.last_block + 5), cwd=tmp_path
    )
    assert done.returncode == 2
    assert "outside the recording" in _one_error_line(done)
    done = keeper_cli("backtest", "--recording", str(demo.path), "--set", "no_such_setting=1", cwd=tmp_path)
    assert done.returncode == 2
    assert "no_such_setting" in _one_error_line(done)
    done = keeper_cli(
        "backtest", "--recording", str(demo.path), "--set", "builder_share_bps=lots", cwd=tmp_path
    )
    assert done.returncode == 2
    assert "builder_share_bps" in _one_error_line(done)


def test_unreplayable_block_stops_the_run_and_keeps_the_report(demo: DemoRecording, tmp_path: Path) -> None:
    rec = read_recording(demo.path)
    lines = gzip.decompress(demo.path.read_bytes()).split(b"\n")
    # Block first+2 gets one of its transactions twice: the node refuses the copy ("already known").
    bad = rec.first_block + 2
    out_lines = []
    for line in lines:
        row: dict[str, Any] = orjson.loads(line) if line.strip() else {}
        if "block" in row and row["block"]["number"] == bad:
            row["block"]["txs"].append(row["block"]["txs"][0])
            line = orjson.dumps(row)
        out_lines.append(line)
    broken = tmp_path / "broken.rec.gz"
    broken.write_bytes(gzip.compress(b"\n".join(out_lines)))
    done = keeper_cli("backtest", "--recording", str(broken), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 1
    assert f"block {bad} cannot be replayed" in _one_error_line(done)
    report = orjson.loads((tmp_path / "out" / "report.json").read_bytes())
    assert report["complete"] is False
    assert report["stopped"]["block"] == bad
    assert [b["number"] for b in report["blocks"]] == [rec.first_block, rec.first_block + 1]


async def test_fork_replay_of_the_same_blocks(demo: DemoRecording, tmp_path: Path) -> None:
    """The recording replayed onto a node (an in-memory anvil keeps every state: an archive node), then
    the same blocks replayed again by forking that node: the same liquidations and classification."""
    from keeper.backtest.node import ReplayNode
    from keeper.chain.rpc import RpcClient

    source = RecordingSource.open(demo.path)
    first = await Replayer(source, mempool=False).run()
    expected = build_report(first)
    async with ReplayNode(
        source.anvil_args(tmp_path), chain_id=source.chain_id, gas_limit=source.gas_limit
    ) as node:
        # Replaying through the driver leaves `node` at the last block with the whole history.
        archive_result = await Replayer(source, mempool=False).run_on(node)
        assert archive_result.stopped is None
        async with RpcClient(node.http_url) as rpc:
            assert await rpc.block_number() == demo.last_block
        devnet_file = tmp_path / "devnet.json"
        devnet_file.write_bytes(
            orjson.dumps({"deployment": dict(source.deployment or {}), "relay_url": None})
        )
        config = tmp_path / "keeper.toml"
        config.write_text(
            "\n".join(
                [
                    f'rpc_http_url = "{node.http_url}"',
                    "devnet = true",
                    f'devnet_file = "{devnet_file}"',
                    f'private_key = "{DEV_ACCOUNTS[2][1]}"',
                ]
            ),
            encoding="utf-8",
        )
        out = tmp_path / "fork-out"
        done = keeper_cli(
            "backtest",
            "--fork-url",
            node.http_url,
            "--from-block",
            str(demo.first_block),
            "--to-block",
            str(demo.last_block),
            "--config",
            str(config),
            "--no-mempool",
            "--out",
            str(out),
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        fork = orjson.loads((out / "report.json").read_bytes())
        assert fork["source"]["kind"] == "fork"
        assert fork["totals"]["liquidations"] == expected["totals"]["liquidations"]
        assert fork["totals"][CAPTURED] == expected["totals"][CAPTURED]
        assert fork["missed_reasons"] == expected["missed_reasons"]
        beyond = keeper_cli(
            "backtest",
            "--fork-url",
            node.http_url,
            "--from-block",
            str(demo.first_block),
            "--to-block",
            str(demo.last_block + 100),
            "--config",
            str(config),
            cwd=tmp_path,
        )
        assert beyond.returncode == 2
        assert "beyond the head" in _one_error_line(beyond)


async def test_fork_url_without_archive_state_is_one_line_and_exit_2(
    demo: DemoRecording, tmp_path: Path
) -> None:
    """anvil with --prune-history keeps only the latest state, as a full (non-archive) node does."""
    from keeper.backtest.node import ReplayNode

    source = RecordingSource.open(demo.path)
    args = [*source.anvil_args(tmp_path), "--prune-history"]
    async with ReplayNode(args, chain_id=source.chain_id, gas_limit=source.gas_limit) as node:
        replayed = await Replayer(source, mempool=False).run_on(node)
        assert replayed.stopped is None
        done = keeper_cli(
            "backtest",
            "--fork-url",
            node.http_url,
            "--from-block",
            str(demo.first_block),
            "--to-block",
            str(demo.last_block),
            cwd=tmp_path,
        )
    assert done.returncode == 2
    line = _one_error_line(done)
    assert "not an archive node" in line and f"block {demo.first_block - 1}" in line


async def test_recorder_on_a_devnet_running_a_scenario(devnet_state: CachedState, tmp_path: Path) -> None:
    """`Recorder` (what `keeper devnet record` runs) on a devnet while a crash scenario runs: the
    recording replays to the end, and the replayed logs hold every oracle update the scenario sent."""
    from keeper.devnet.recorder import Recorder
    from keeper.devnet.scenarios.borrowers import create_borrowers
    from keeper.devnet.scenarios.crash import run_crash
    from keeper.devnet.stack import Devnet, DevnetMiner

    path = tmp_path / "crash.rec.gz"
    async with Devnet(block_time=None, arbitrageur=True) as net:
        rpc, dep = net.require()
        await create_borrowers(rpc, dep, 30, seed=3, miner=DevnetMiner(net))
        recorder = await Recorder.start(rpc, path, deployment=dep.to_json(), meta={"scenario": "crash"})
        crash = await run_crash(rpc, dep, drop_bps=2_000, blocks=4, mine=True, miner=DevnetMiner(net))
        await recorder.record_new()
        recorder.close()
        head = await rpc.block_number()
    rec = read_recording(path)
    assert rec.last_block == head
    assert rec.meta["scenario"] == "crash"
    result = await Replayer(RecordingSource(rec)).run()
    assert result.stopped is None
    assert len(result.blocks) == len(rec.blocks)
    sent = {h.lower() for step in crash.steps for h in step.oracle_txs}
    assert {u.tx_hash for u in result.oracle_updates} == sent


def test_sweep_on_a_local_ray_instance(demo: DemoRecording) -> None:
    """`--ray-address local`: the same runs as Ray tasks on a Ray instance this test starts (Ray is a dev
    dependency, so CI runs it)."""
    import ray

    from keeper.backtest.sweep import run_ray

    source = SourceSpec("recording", path=str(demo.path))
    specs = [RunSpec(source, ("liquidations",), (("builder_share_bps", s),), False) for s in ("5000", "9000")]
    try:
        outcomes = run_ray(specs, "local")
    finally:
        ray.shutdown()
    assert all(o.error is None for o in outcomes), [o.error for o in outcomes]
    reports = [o.report for o in outcomes if o.report is not None]
    assert [r["config"]["set"]["builder_share_bps"] for r in reports] == ["5000", "9000"]
    paid = [int(r["totals"]["builder_paid_wei"]) for r in reports]
    assert paid[0] < paid[1]
    pids = {o.timing["pid"] for o in outcomes if o.timing is not None}
    assert os.getpid() not in pids  # ran in Ray's worker processes
