"""Backtest pieces without a node: recordings (round trip and every refusal), the sweep grid, the
classification rules, and the report's determinism."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import orjson
import pytest

from keeper.backtest.recording import RecordingError, RecordingWriter, ReplayBlock, ReplayTx, read_recording
from keeper.backtest.replay import BlockStats, ReplayResult
from keeper.backtest.report import Timing, build_report, render_html, report_bytes
from keeper.backtest.sweep import parse_sets
from keeper.backtest.truth import (
    CAPTURED,
    MISSED,
    NOT_DETECTED,
    NOT_SENT,
    OURS_ALONE,
    OUTBID,
    TOO_SLOW,
    UNPROFITABLE,
    Attempt,
    Decline,
    Liquidation,
    classify,
)
from keeper.errors import ConfigError

POOL = "0x" + "aa" * 20
USER = "0x" + "11" * 20
OTHER = "0x" + "22" * 20


def block(n: int, txs: int = 1) -> ReplayBlock:
    return ReplayBlock(
        number=n,
        hash="0x" + f"{n:064x}",
        parent_hash="0x" + f"{n - 1:064x}",
        timestamp=1_000 + n,
        base_fee=7,
        gas_limit=60_000_000,
        gas_used=21_000 * txs,
        coinbase="0x" + "cc" * 20,
        txs=tuple(
            ReplayTx(bytes([2, n, i]), {"hash": "0x" + f"{n:032x}{i:032x}", "from": OTHER, "nonce": hex(i)})
            for i in range(txs)
        ),
    )


def write(path: Path, blocks: list[ReplayBlock], *, close: bool = True) -> None:
    w = RecordingWriter(
        path, chain_id=31337, gas_limit=60_000_000, start_block=9, state={"best_block_number": 9}
    )
    for b in blocks:
        w.add(b)
    if close:
        w.close()
    else:
        w.abandon()


def test_recording_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "r.gz"
    write(path, [block(10, 2), block(11, 0), block(12, 3)])
    rec = read_recording(path)
    assert (rec.first_block, rec.last_block, rec.chain_id) == (10, 12, 31337)
    assert rec.blocks == [block(10, 2), block(11, 0), block(12, 3)]
    assert orjson.loads(rec.state) == {"best_block_number": 9}


def test_recording_refusals(tmp_path: Path) -> None:
    path = tmp_path / "r.gz"
    write(path, [block(10), block(11)], close=False)
    with pytest.raises(RecordingError, match="truncated .*ends after block 11"):
        read_recording(path)
    write(path, [block(10), block(11)])
    data = path.read_bytes()
    (tmp_path / "half.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(RecordingError, match="truncated"):
        read_recording(tmp_path / "half.gz")
    (tmp_path / "plain.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(RecordingError, match="not a keeper recording"):
        read_recording(tmp_path / "plain.txt")
    lines = gzip.decompress(data).split(b"\n")
    header = orjson.loads(lines[0])
    header["version"] = 2
    (tmp_path / "v2.gz").write_bytes(gzip.compress(b"\n".join([orjson.dumps(header), *lines[1:]])))
    with pytest.raises(RecordingError, match="format version 2; this keeper reads version 1"):
        read_recording(tmp_path / "v2.gz")
    with pytest.raises(RecordingError, match="no such file"):
        read_recording(tmp_path / "missing.gz")
    w = RecordingWriter(tmp_path / "x.gz", chain_id=1, gas_limit=1, start_block=9, state={})
    with pytest.raises(RecordingError, match="block 12 given where 10 belongs"):
        w.add(block(12))
    w.close()


def test_sweep_grid() -> None:
    assert parse_sets([]) == [{}]
    assert parse_sets(["builder_share_bps=5000,7000,9000"]) == [
        {"builder_share_bps": "5000"},
        {"builder_share_bps": "7000"},
        {"builder_share_bps": "9000"},
    ]
    grid = parse_sets(["a=1,2", "b=x,y"])
    assert grid == [{"a": "1", "b": "x"}, {"a": "1", "b": "y"}, {"a": "2", "b": "x"}, {"a": "2", "b": "y"}]
    for bad in (["novalue"], ["=3"], ["a="], ["a=1,,2"], ["a=1", "a=2"]):
        with pytest.raises(ConfigError):
            parse_sets(bad)


def liq(
    block: int, *, ours: bool = False, before: bool | None = True, tip: int = 0, index: int = 3
) -> Liquidation:
    return Liquidation(
        block=block,
        tx_hash=f"0x{block:064x}",
        tx_index=index,
        log_index=index,
        pool=POOL,
        user=USER,
        collateral="0x" + "01" * 20,
        debt="0x" + "02" * 20,
        debt_covered=10**6,
        collateral_seized=10**18,
        liquidator="0x" + ("ee" if ours else "dd") * 20,
        sender="0x" + "ff" * 20,
        builder_tip_wei=tip,
        ours=ours,
        liquidatable_before=before,
    )


def attempt(block: int, *, paid: int = 100, opp: str = "aave-v3:u:c:d") -> Attempt:
    return Attempt(block, opp, "liquidations", "aave-v3", POOL, USER, 1_000, paid, 10, 990, "0xabc")


def test_classification_rules() -> None:
    protocols = {POOL: "aave-v3"}
    # Ours on chain: captured, matched with our attempt.
    c = classify([liq(10, ours=True)], [attempt(10)], [], protocols)
    assert [(o.kind, o.attempt is not None) for o in c.opportunities] == [(CAPTURED, True)]
    # Ours on chain (a recording of our keeper), but this configuration would not have sent it: missed.
    c = classify(
        [liq(10, ours=True)], [], [Decline(10, USER, UNPROFITABLE, "net below the minimum")], protocols
    )
    assert [(o.kind, o.reason) for o in c.opportunities] == [(MISSED, UNPROFITABLE)]
    assert "our recorded keeper" in (c.opportunities[0].detail or "")
    # Someone else, we had a successful bundle at that block and paid more: captured.
    c = classify([liq(10, tip=50)], [attempt(10, paid=100)], [], protocols)
    assert [o.kind for o in c.opportunities] == [CAPTURED]
    # ... they paid the builder more: outbid.
    c = classify([liq(10, tip=500)], [attempt(10, paid=100)], [], protocols)
    assert [(o.kind, o.reason) for o in c.opportunities] == [(MISSED, OUTBID)]
    # An earlier bundle of ours (nobody took it then) still counts for the later liquidation.
    c = classify([liq(12)], [attempt(10)], [], protocols)
    assert [o.kind for o in c.opportunities] == [CAPTURED]
    # Not liquidatable at the parent block: it became so inside the block.
    c = classify([liq(10, before=False)], [], [], protocols)
    assert [(o.kind, o.reason) for o in c.opportunities] == [(MISSED, TOO_SLOW)]
    # Seen and declined.
    c = classify([liq(10)], [], [Decline(10, USER, UNPROFITABLE, "net below the minimum")], protocols)
    assert [(o.kind, o.reason) for o in c.opportunities] == [(MISSED, UNPROFITABLE)]
    c = classify([liq(10)], [], [Decline(10, USER, NOT_SENT, "not packed")], protocols)
    assert [(o.kind, o.reason) for o in c.opportunities] == [(MISSED, NOT_SENT)]
    # Liquidatable, never seen.
    c = classify([liq(10)], [], [], protocols)
    assert [(o.kind, o.reason) for o in c.opportunities] == [(MISSED, NOT_DETECTED)]
    # Ours, then someone else again in the same block: too slow for the remainder.
    c = classify([liq(10, ours=True, index=0), liq(10, index=5)], [attempt(10)], [], protocols)
    assert [(o.kind, o.reason) for o in c.opportunities] == [(CAPTURED, None), (MISSED, TOO_SLOW)]
    # A bundle nobody's liquidation matches: ours alone, once per opportunity.
    c = classify([], [attempt(10), attempt(11)], [], protocols)
    assert [o.kind for o in c.opportunities] == [OURS_ALONE]
    assert c.opportunities[0].attempt is not None and c.opportunities[0].attempt.block == 10


def synthetic_result(seconds: float) -> ReplayResult:
    r = ReplayResult(
        source={"kind": "recording", "name": "x", "chain_id": 1, "from_block": 10, "to_block": 12},
        config={"strategies": ["liquidations"], "set": {}, "mempool": True},
    )
    r.blocks = [BlockStats(n, 3, 63_000, 7, decision_ms=seconds * n) for n in (10, 11, 12)]
    r.liquidations = [liq(11, ours=True), liq(12, before=False)]
    r.attempts = [attempt(11)]
    r.protocols = {POOL: "aave-v3"}
    r.seconds = seconds
    return r


def test_report_is_deterministic_and_holds_no_wall_clock() -> None:
    a = report_bytes(build_report(synthetic_result(1.5)))
    b = report_bytes(build_report(synthetic_result(9.25)))
    assert a == b
    report = orjson.loads(a)
    assert report["totals"][CAPTURED] == 1 and report["totals"][MISSED] == 1
    assert report["missed_reasons"] == {TOO_SLOW: 1}
    assert "decision_ms" not in a.decode()


def test_html_embeds_plotly_and_every_plot() -> None:
    rep = build_report(synthetic_result(1.0))
    page = render_html([rep], [Timing(1.0, 3, [1.0, 2.0, 3.0], [10, 11, 12])])
    for div in ("run0-opportunities", "run0-by-protocol", "run0-missed", "run0-payments", "run0-latency"):
        assert f'id="{div}"' in page
    assert "Plotly.newPlot" in page
    assert re.search(r"<script[^>]*\bsrc=", page) is None  # plotly.js is inline: it opens offline


def test_backtest_runtime_imports_neither_the_devnet_nor_strategies() -> None:
    """keeper/backtest is runtime code: strategies come through the registry, when a run builds them."""
    import subprocess
    import sys

    script = (
        "import sys, keeper.backtest.cli, keeper.backtest.replay, keeper.backtest.sweep,"
        " keeper.backtest.report;"
        "print(sorted(m for m in sys.modules if m.startswith(('keeper.devnet', 'strategies'))))"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_blocks_from_a_node_keep_withdrawals_and_blob_txs_replay_as_calls() -> None:
    from keeper.backtest.recording import replays_raw

    node_block = {
        "number": "0xa",
        "hash": "0x" + "ab" * 32,
        "parentHash": "0x" + "cd" * 32,
        "timestamp": "0x64",
        "baseFeePerGas": "0x7",
        "gasLimit": "0x1c9c380",
        "gasUsed": "0x5208",
        "miner": "0x" + "cc" * 20,
        "transactions": [
            {"hash": "0x" + "01" * 32, "from": OTHER, "type": "0x2", "r": "0x1", "s": "0x2"},
            {"hash": "0x" + "02" * 32, "from": OTHER, "type": "0x3", "r": "0x1", "s": "0x2"},
            {"hash": "0x" + "03" * 32, "from": OTHER, "type": "0x2", "r": "0x0", "s": "0x0"},
        ],
        "withdrawals": [{"address": USER, "amount": "0x3b9aca00", "index": "0x0", "validatorIndex": "0x1"}],
    }
    b = ReplayBlock.from_node(node_block, ["0x02aa", "0x03bb", "0x02cc"])
    assert b.withdrawals == ((USER, 10**18),)
    assert [replays_raw(t) for t in b.txs] == [True, False, False]
    assert ReplayBlock.from_json(orjson.loads(orjson.dumps(b.to_json()))) == b


def test_ray_path_without_the_extra_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from keeper.backtest.sweep import RayMissing, RunSpec, SourceSpec, run_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as on a machine without keeper[ray]
    with pytest.raises(RayMissing) as info:
        run_ray([RunSpec(SourceSpec("recording", path="x"))], "auto")
    assert info.value.problems == [
        "--ray-address needs Ray, an optional extra: pip install 'keeper[ray]' (or run without it)"
    ]
