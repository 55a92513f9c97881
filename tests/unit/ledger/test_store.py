"""The SQLite ledger: round trips, exact big amounts, send claims (also across restarts and SIGKILL),
error surfacing, status rules, schema versioning, and the event loop never blocked by writes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from keeper.ledger import (
    SCHEMA_VERSION,
    Inclusion,
    Ledger,
    LedgerError,
    LedgerReader,
    LedgerWriteErrors,
    Opportunity,
    Simulation,
    Status,
    Submission,
)
from keeper.ledger.schema import MIGRATIONS, Migration, migrate
from keeper.ledger.store import builder_identity

BIG = 10**30  # > 2**64
ROOT = Path(__file__).resolve().parents[3]


def opp(oid: str = "opp-1", **kw: object) -> Opportunity:
    fields: dict[str, object] = {
        "id": oid,
        "strategy": "liquidations",
        "protocol": "aave_v3",
        "detected_block": 100,
        "detected_block_timestamp": 1_700_000_000,
        "expected_profit": BIG + 7,
        "expected_profit_asset": "ETH",
        "user": "0x00000000000000000000000000000000000000a1",
        "collateral_asset": "0x00000000000000000000000000000000000000c0",
        "debt_asset": "0x00000000000000000000000000000000000000d0",
        "debt_to_cover": 2**200 + 1,
        "expected_collateral": 2**255 - 1,
    }
    fields.update(kw)
    return Opportunity(**fields)  # type: ignore[arg-type]


def ledger_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ledger-")]


async def test_round_trip_of_every_row_type(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    o = opp()
    sim = Simulation(
        "opp-1",
        101,
        True,
        simulated_profit_wei=BIG,
        gas_used=350_000,
        builder_payment_wei=BIG // 2,
        net_profit_wei=BIG // 2 - 3 * 10**15,
    )
    bad_sim = Simulation("opp-1", 102, False, error="execution reverted: HF > 1")
    sub = Submission(
        "opp-1",
        101,
        "https://rpc.beaverbuild.org/…",
        True,
        bundle_hash="0xbb",
        replacement_uuid="6c3e4d5e-0000-4000-8000-000000000001",
        latency_ms=41.5,
    )
    inc = Inclusion(
        "opp-1",
        101,
        "0x" + "ab" * 32,
        312_000,
        3 * 10**10,
        312_000 * 3 * 10**10,
        10**17,
        -(BIG + 1),
        1_700_000_012,
        builder="rpc.beaverbuild.org",
    )
    async with Ledger.open(path) as ledger:
        await ledger.record_opportunity(o)
        await ledger.record_simulation(sim)
        await ledger.record_simulation(bad_sim)
        assert await ledger.claim_send("opp-1", 101) is True
        await ledger.record_submission(sub)
        await ledger.record_inclusion(inc, wait=True)

        got = await ledger.opportunity("opp-1")
        assert got is not None
        assert got.expected_profit == BIG + 7
        assert got.debt_to_cover == 2**200 + 1
        assert got.expected_collateral == 2**255 - 1
        assert (got.user, got.collateral_asset, got.debt_asset) == (o.user, o.collateral_asset, o.debt_asset)
        assert (got.detected_block, got.detected_block_timestamp) == (100, 1_700_000_000)
        assert got.detected_at_ms is not None and got.detected_at_ms > 1_600_000_000_000  # wall clock, ms
        assert got.status is Status.INCLUDED and got.status_reason == "included"

        sims = await ledger.simulations("opp-1")
        assert [(s.target_block, s.ok, s.simulated_profit_wei, s.net_profit_wei, s.error) for s in sims] == [
            (101, True, BIG, BIG // 2 - 3 * 10**15, None),
            (102, False, None, None, "execution reverted: HF > 1"),
        ]
        [s] = await ledger.submissions("opp-1")
        assert s.builder == "https://rpc.beaverbuild.org/…"  # the identity as given (redacted URL)
        assert (s.bundle_hash, s.replacement_uuid, s.latency_ms, s.ok) == (
            "0xbb",
            sub.replacement_uuid,
            41.5,
            True,
        )
        [i] = await ledger.inclusions("opp-1")
        assert i.realized_profit == -(BIG + 1)
        assert i.gas_cost_wei == 312_000 * 3 * 10**10
        assert i.builder_payment_wei == 10**17
        assert i.included_at == 1_700_000_012
        [intent] = await ledger.send_intents("opp-1")
        assert (intent.target_block, intent.pid) == (101, os.getpid())
        history = await ledger.status_history("opp-1")
        assert [(h.status, h.reason, h.applied) for h in history] == [
            (Status.OPEN, "detected", True),
            (Status.SUBMITTED, "submitted", True),
            (Status.INCLUDED, "included", True),
        ]
    assert "some-api-key" not in path.read_bytes().decode("latin-1")
    assert ledger_threads() == []


async def test_amounts_are_exact_text_not_real(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    async with Ledger.open(path) as ledger:
        await ledger.record_opportunity(opp(expected_profit=10**30 + 1), wait=True)
    conn = sqlite3.connect(path)
    value, kind = conn.execute(
        "SELECT expected_profit, typeof(expected_profit) FROM opportunities"
    ).fetchone()
    assert (value, kind) == ("1000000000000000000000000000001", "text")
    # The CHECK constraints refuse anything that is not a canonical decimal integer, even from raw SQL.
    for bad in ("01", "1.5", "1e30", "+5", "", "-0", " 1"):
        with pytest.raises(sqlite3.IntegrityError, match="expected_profit_is_amount"):
            conn.execute("UPDATE opportunities SET expected_profit = ?", (bad,))
    with pytest.raises(sqlite3.IntegrityError, match="expected_profit_is_amount"):
        conn.execute("UPDATE opportunities SET expected_profit = ?", (1e30,))  # a float, never
    with pytest.raises(sqlite3.IntegrityError):  # STRICT: text in an INTEGER column is refused
        conn.execute("UPDATE opportunities SET detected_block = 'soon'")
    conn.close()


@pytest.mark.parametrize("bad", [1.5, True, "100", 2**256, -(2**256)])
async def test_bad_amounts_are_refused_in_the_caller(tmp_path: Path, bad: object) -> None:
    async with Ledger.open(tmp_path / "l.sqlite") as ledger:
        with pytest.raises(LedgerError, match="expected_profit"):
            await ledger.record_opportunity(opp(expected_profit=bad))
        assert ledger.failed_writes == 0  # refused before queueing: nothing to surface later


async def test_claim_send_once_then_never_again_even_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    async with Ledger.open(path) as ledger:
        await ledger.record_opportunity(opp())
        assert await ledger.claim_send("opp-1", 101) is True
        assert await ledger.claim_send("opp-1", 101) is False
        assert await ledger.claim_send("opp-1", 102) is True  # another target block is another claim
        results = await asyncio.gather(*(ledger.claim_send("opp-1", 103) for _ in range(20)))
        assert sorted(results) == [False] * 19 + [True]
    async with Ledger.open(path) as ledger:
        assert await ledger.claim_send("opp-1", 101) is False
        assert await ledger.claim_send("opp-1", 103) is False
        assert await ledger.claim_send("opp-1", 104) is True


async def test_claim_for_unknown_opportunity_raises(tmp_path: Path) -> None:
    async with Ledger.open(tmp_path / "l.sqlite") as ledger:
        with pytest.raises(LedgerError, match="FOREIGN KEY"):
            await ledger.claim_send("nobody", 5)
        assert ledger.failed_writes == 0  # an awaited failure is raised to its caller, not counted


async def test_fire_and_forget_errors_are_logged_counted_and_raised_on_close(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="keeper.ledger")
    ledger = Ledger.open(tmp_path / "l.sqlite")
    await ledger.start()
    await ledger.record_opportunity(opp())
    # Sent without a claim: the foreign key to send_intents refuses it.
    await ledger.record_submission(Submission("opp-1", 999, "builder.example", True))
    # A good write after the bad one in the same batch still commits.
    await ledger.record_simulation(Simulation("opp-1", 999, True, simulated_profit_wei=1))
    await ledger.flush()
    assert ledger.failed_writes == 1
    assert "record_submission opp-1@999" in (ledger.first_error or "")
    assert len(await ledger.simulations("opp-1")) == 1
    assert await ledger.submissions("opp-1") == []
    assert any(r.levelno == logging.ERROR and r.getMessage() == "ledger write failed" for r in caplog.records)
    with pytest.raises(LedgerWriteErrors) as info:
        await ledger.close()
    assert info.value.count == 1
    assert "FOREIGN KEY" in info.value.first
    assert ledger_threads() == []


async def test_awaited_write_error_raises_in_caller(tmp_path: Path) -> None:
    async with Ledger.open(tmp_path / "l.sqlite") as ledger:
        await ledger.record_opportunity(opp())
        assert await ledger.claim_send("opp-1", 1)
        await ledger.record_submission(Submission("opp-1", 1, "b.example", True), wait=True)
        with pytest.raises(LedgerError, match="UNIQUE"):
            await ledger.record_submission(Submission("opp-1", 1, "b.example", False), wait=True)


async def test_writer_crash_fails_pending_and_later_writes(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "l.sqlite")
    await ledger.start()
    await ledger.record_opportunity(opp(), wait=True)

    def boom(*_: object) -> None:
        raise RuntimeError("disk on fire")

    ledger._run_batch = boom  # type: ignore[method-assign]
    with pytest.raises(LedgerError):
        await ledger.flush()  # the writer dies on this batch: its future must fail, not hang
    with pytest.raises(LedgerError, match="writer stopped"):
        await ledger.claim_send("opp-1", 1)  # fail closed: no claim, no send
    with pytest.raises(LedgerError, match="disk on fire"):
        await ledger.close()
    assert ledger_threads() == []


async def test_status_rules_and_audit_trail(tmp_path: Path) -> None:
    async with Ledger.open(tmp_path / "l.sqlite") as ledger:
        for oid in ("a", "b", "c"):
            await ledger.record_opportunity(opp(oid))
        await ledger.set_status("a", Status.GONE, "liquidated by competitor")
        await ledger.set_status("a", Status.ABANDONED, "too late")  # refused: final is sticky
        await ledger.set_status("b", Status.GONE, "health factor recovered")
        await ledger.set_status("b", Status.INCLUDED, "included")  # the chain says otherwise: wins
        await ledger.set_status("c", Status.FAILED, "reverted")
        await ledger.set_status("c", Status.SUBMITTED, "reorg dropped the tx", force=True)
        await ledger.record_opportunity(opp("d"))
        await ledger.record_opportunity(opp("d", detected_block=999, expected_profit=1))  # first kept
        await ledger.flush()

        a, b, c, d = [await ledger.opportunity(x) for x in "abcd"]
        assert a is not None and (a.status, a.status_reason) == (Status.GONE, "liquidated by competitor")
        assert b is not None and b.status is Status.INCLUDED
        assert c is not None and c.status is Status.SUBMITTED
        assert d is not None and (d.detected_block, d.expected_profit) == (100, BIG + 7)
        history = await ledger.status_history("a")
        assert [(h.status, h.applied) for h in history] == [
            (Status.OPEN, True),
            (Status.GONE, True),
            (Status.ABANDONED, False),
        ]
        assert sorted(o.id for o in await ledger.open_opportunities()) == ["c", "d"]
        with pytest.raises(LedgerError, match="unknown opportunity"):
            await ledger.set_status("zzz", Status.GONE, wait=True)


async def test_reorg_moves_inclusion_without_double_counting(tmp_path: Path) -> None:
    async with Ledger.open(tmp_path / "l.sqlite") as ledger:
        await ledger.record_opportunity(opp())
        first = Inclusion("opp-1", 101, "0xaa", 1, 1, 1, 0, 10, 1_700_000_012)
        await ledger.record_inclusion(first)
        await ledger.record_inclusion(Inclusion("opp-1", 103, "0xaa", 1, 2, 2, 0, 9, 1_700_000_036))
        await ledger.flush()
        [inc] = await ledger.inclusions("opp-1")
        assert (inc.block_number, inc.realized_profit, inc.gas_cost_wei) == (103, 9, 2)


async def test_schema_version_and_migration_hook(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    async with Ledger.open(path):
        pass
    conn = sqlite3.connect(path, isolation_level=None)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    versions = [(v,) for v in range(1, SCHEMA_VERSION + 1)]
    assert conn.execute("SELECT version FROM schema_history ORDER BY version").fetchall() == versions

    def add_column(c: sqlite3.Connection) -> None:
        c.execute("ALTER TABLE opportunities ADD COLUMN note TEXT")

    extra = (*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "add note", add_column))
    assert migrate(conn, extra) == SCHEMA_VERSION + 1
    assert migrate(conn, extra) == SCHEMA_VERSION + 1  # idempotent
    assert "note" in [r[1] for r in conn.execute("PRAGMA table_info(opportunities)")]
    conn.close()
    # This keeper knows only SCHEMA_VERSION: it refuses a file from the future, to open and to read.
    with pytest.raises(LedgerError, match="newer than this keeper"):
        async with Ledger.open(path):
            pass
    with pytest.raises(LedgerError, match="schema version"):
        LedgerReader(path)
    assert ledger_threads() == []


async def test_failing_migration_rolls_back(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "l.sqlite", isolation_level=None)
    migrate(conn)

    def bad(c: sqlite3.Connection) -> None:
        c.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("migration bug")

    with pytest.raises(RuntimeError):
        migrate(conn, (*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "bad", bad)))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").fetchone() == (0,)


def test_reader_on_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="not found"):
        LedgerReader(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()


async def test_writes_after_close_are_refused(tmp_path: Path) -> None:
    async with Ledger.open(tmp_path / "l.sqlite") as ledger:
        pass
    with pytest.raises(LedgerError, match="not open"):
        await ledger.record_opportunity(opp())


# ---- durability under SIGKILL -----------------------------------------------------------------------

CHILD = r"""
import asyncio, sys
from pathlib import Path
from keeper.ledger import Ledger, Opportunity, Simulation

async def main() -> None:
    async with Ledger.open(Path(sys.argv[1])) as ledger:
        await ledger.record_opportunity(Opportunity(
            id="opp-k", strategy="liquidations", protocol="aave_v3", detected_block=1,
            detected_block_timestamp=1_700_000_000, expected_profit=10**30))
        if not await ledger.claim_send("opp-k", 2):
            print("already claimed", flush=True)
            return
        print("claimed", flush=True)
        i = 0
        while True:
            for j in range(20):  # fire-and-forget traffic in flight when the kill lands
                noise = Simulation("opp-k", 10_000_000 + i * 20 + j, ok=False, error="x")
                await ledger.record_simulation(noise)
            await ledger.record_simulation(
                Simulation("opp-k", i, ok=True, simulated_profit_wei=10**30 + i), wait=True)
            print(f"committed {i}", flush=True)
            i += 1

asyncio.run(main())
"""


async def test_sigkill_keeps_every_committed_row_and_the_claim(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(60):
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                assert proc.stderr is not None
                pytest.fail(f"child exited early: {(await proc.stderr.read()).decode()[-2000:]}")
            lines.append(raw.decode().strip())
            if lines[-1] == "committed 150":
                break
    proc.send_signal(signal.SIGKILL)
    rest, _ = await proc.communicate()
    lines += rest.decode().splitlines()  # anything it printed before dying was committed too
    assert proc.returncode == -signal.SIGKILL
    assert lines[0] == "claimed"
    committed = [int(line.split()[1]) for line in lines if line.startswith("committed ")]
    last = max(committed)
    assert committed == list(range(last + 1))
    print(f"child committed {last + 1} awaited rows before SIGKILL")

    async with Ledger.open(path) as ledger:
        assert await ledger.claim_send("opp-k", 2) is False  # the claim survived the kill
        sims = await ledger.simulations("opp-k")
    ok_rows = {s.target_block: s.simulated_profit_wei for s in sims if s.ok}
    for i in range(last + 1):
        assert ok_rows.get(i) == 10**30 + i, f"committed row {i} lost"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()


# ---- the event loop is never blocked ------------------------------------------------------------------


async def test_loop_keeps_ticking_while_5000_rows_are_written(tmp_path: Path) -> None:
    async with Ledger.open(tmp_path / "l.sqlite") as ledger:
        await ledger.record_opportunity(opp(), wait=True)
        gaps: list[float] = []
        stop = asyncio.Event()

        async def heartbeat() -> None:
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        async def durable_writer(k: int) -> None:  # concurrent awaited writes share group commits
            for i in range(50):
                await ledger.record_simulation(
                    Simulation("opp-1", 1_000_000 * (k + 1) + i, True, simulated_profit_wei=BIG), wait=True
                )

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.02)
        gaps.clear()
        started = time.perf_counter()
        writers = [asyncio.create_task(durable_writer(k)) for k in range(20)]  # 1,000 awaited rows
        for i in range(4000):  # 4,000 fire-and-forget rows, produced like a busy strategy would
            await ledger.record_simulation(Simulation("opp-1", i, False, error="sim failed"))
            if i % 20 == 0:
                await asyncio.sleep(0)
        await asyncio.gather(*writers)
        await ledger.flush()
        elapsed = time.perf_counter() - started
        stop.set()
        await beat
        assert len(await ledger.simulations("opp-1")) == 5000
        batches = ledger.batches
    worst = max(gaps)
    print(
        f"5000 rows in {elapsed * 1000:.0f} ms ({5000 / elapsed:.0f} rows/s, {batches} commits); "
        f"heartbeat max gap {worst * 1000:.1f} ms over {len(gaps)} ticks"
    )
    assert len(gaps) > 10
    # Not a performance target (benchmarks/bench_ledger.py prints those): writes on the loop would stall
    # it for the whole 5,000-row write (seconds); a loaded CI machine may add tens of ms to any tick.
    assert worst < 1.0


async def test_open_failure_raises_and_leaves_no_thread(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database" * 512)
    with pytest.raises(LedgerError, match="cannot open ledger"):
        async with Ledger.open(junk):
            pass
    assert ledger_threads() == []


async def test_cancelled_start_stops_the_writer(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "l.sqlite")
    task = asyncio.create_task(ledger.start())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ledger_threads() == []


async def test_a_version_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, MIGRATIONS[:1]) == 1  # a ledger written by the first release
    conn.close()
    async with Ledger.open(path) as ledger:
        await ledger.record_opportunity(
            Opportunity(
                id="o",
                strategy="s",
                protocol="p",
                detected_block=1,
                detected_block_timestamp=1,
                expected_profit=1,
            )
        )
        assert await ledger.claim_send("o", 2)
        await ledger.record_inclusion(
            Inclusion(
                opportunity_id="o",
                block_number=2,
                tx_hash="0x" + "ab" * 32,
                gas_used=21_000,
                effective_gas_price=10,
                gas_cost_wei=210_000,
                builder_payment_wei=5,
                realized_profit=10**30,
                included_at=3,
                realized_profit_asset="0x" + "22" * 20,
                realized_profit_wei=7 * 10**17,
            ),
            wait=True,
        )
        (row,) = await ledger.inclusions("o")
    assert row.realized_profit == 10**30
    assert row.realized_profit_wei == 7 * 10**17
    conn = sqlite3.connect(path, isolation_level=None)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


# ---------------------------------------------------------------------------------------------------
# Builder identities (schema v3)


async def _claimed(ledger: Ledger, oid: str = "opp-1", block: int = 101) -> None:
    await ledger.record_opportunity(opp(oid))
    assert await ledger.claim_send(oid, block)


async def test_two_builders_on_one_host_are_recorded_apart(tmp_path: Path) -> None:
    builders = ["http://10.0.0.5:8545", "http://10.0.0.5:8546", "http://10.0.0.5:8546/…", "titan", "titan-eu"]
    async with Ledger.open(tmp_path / "l.sqlite") as ledger:
        await _claimed(ledger)
        for i, b in enumerate(builders):
            await ledger.record_submission(Submission("opp-1", 101, b, True, latency_ms=float(i)), wait=True)
        assert ledger.failed_writes == 0
        subs = await ledger.submissions("opp-1")
    assert sorted(s.builder for s in subs) == sorted(builders)


async def test_a_secret_bearing_builder_url_is_refused_not_stored(tmp_path: Path) -> None:
    secret = "https://rpc.example.org/v1/SUPERSECRETAPIKEY"
    for bad in (
        secret,
        "https://user:pw@rpc.example.org",
        "https://rpc.example.org/?key=SUPERSECRETAPIKEY",
        "",
    ):
        with pytest.raises(LedgerError) as info:
            builder_identity(bad)
        assert "SUPERSECRETAPIKEY" not in str(info.value)
        assert "pw@" not in str(info.value)
    async with Ledger.open(tmp_path / "l.sqlite") as ledger:
        await _claimed(ledger)
        with pytest.raises(LedgerError, match="may carry a secret"):
            await ledger.record_submission(Submission("opp-1", 101, secret, True))
        with pytest.raises(LedgerError, match="may carry a secret"):
            await ledger.record_inclusion(
                Inclusion("opp-1", 101, "0x" + "ab" * 32, 1, 1, 1, 0, 1, 1, builder=secret)
            )
        assert await ledger.submissions("opp-1") == []
    # the table's CHECK is a backstop behind the store's validation
    conn = sqlite3.connect(tmp_path / "l.sqlite", isolation_level=None)
    for bad in (secret, "https://rpc.example.org/x/…", "a@b", "rpc.example.org/x"):
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(
                "INSERT INTO submissions (opportunity_id, target_block, builder, sent_at_ms, ok) "
                "VALUES ('opp-1', 101, ?, 1, 1)",
                (bad,),
            )
    conn.close()


async def test_a_version_2_file_keeps_its_submissions_and_takes_identities(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    assert migrate(conn, MIGRATIONS[:2]) == 2  # a ledger written before builder identities
    conn.execute(
        "INSERT INTO opportunities (id, strategy, protocol, expected_profit, expected_profit_asset, "
        "detected_block, detected_block_timestamp, detected_at_ms, updated_at_ms) "
        "VALUES ('old', 's', 'p', '1', 'ETH', 1, 1, 1, 1)"
    )
    conn.execute("INSERT INTO send_intents VALUES ('old', 2, 1, 1)")
    conn.execute(
        "INSERT INTO submissions (opportunity_id, target_block, builder, bundle_hash, sent_at_ms, "
        "latency_ms, ok) VALUES ('old', 2, 'rpc.titanbuilder.xyz', '0xbb', 5, 1.5, 1)"
    )
    with pytest.raises(sqlite3.IntegrityError):  # v2: host names only
        conn.execute(
            "INSERT INTO submissions (opportunity_id, target_block, builder, sent_at_ms, ok) "
            "VALUES ('old', 2, 'http://10.0.0.5:8546', 5, 1)"
        )
    conn.close()
    async with Ledger.open(path) as ledger:
        [old] = await ledger.submissions("old")
        assert (old.builder, old.bundle_hash, old.latency_ms, old.sent_at_ms) == (
            "rpc.titanbuilder.xyz",
            "0xbb",
            1.5,
            5,
        )
        # the same opportunity and block, another builder on another port of a host: a row of its own
        for b in ("http://10.0.0.5:8545", "http://10.0.0.5:8546"):
            await ledger.record_submission(Submission("old", 2, b, True), wait=True)
        builders = sorted(s.builder for s in await ledger.submissions("old"))
    assert builders == ["http://10.0.0.5:8545", "http://10.0.0.5:8546", "rpc.titanbuilder.xyz"]
    conn = sqlite3.connect(path, isolation_level=None)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    # the foreign key to send_intents survived the rebuild
    conn.execute("PRAGMA foreign_keys = ON")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        conn.execute(
            "INSERT INTO submissions (opportunity_id, target_block, builder, sent_at_ms, ok) "
            "VALUES ('old', 999, 'titan', 5, 1)"
        )
    conn.close()


async def test_subsidy_spent_sums_losses_after_gas_within_the_window(tmp_path: Path) -> None:
    day = 1_700_006_400  # 2023-11-15 00:00:00 UTC
    async with Ledger.open(tmp_path / "l.sqlite") as ledger:
        for oid in ("a", "b", "c", "d", "e"):
            await ledger.record_opportunity(opp(oid))
        await ledger.record_inclusion(
            Inclusion("a", 1, "0xa1", 1, 1, 5 * 10**15, 0, 2 * 10**15, day)
        )  # -3e15
        await ledger.record_inclusion(
            Inclusion("b", 2, "0xb1", 1, 1, 10**15, 0, 4 * 10**15, day + 10)
        )  # +3e15
        await ledger.record_inclusion(
            Inclusion("c", 3, "0xc1", 1, 1, 10**15, 0, 0, day - 1)
        )  # the day before
        await ledger.record_inclusion(
            Inclusion("d", 4, "0xd1", 1, 1, 10**15, 0, 7, day + 20, realized_profit_asset="0xusdc")
        )  # a token profit not valued in wei: left out
        await ledger.record_inclusion(
            Inclusion(
                "e",
                5,
                "0xe1",
                1,
                1,
                10**15,
                0,
                7,
                day + 30,
                realized_profit_asset="0xusdc",
                realized_profit_wei=4 * 10**14,
            )
        )  # valued in wei: -6e14
        assert await ledger.subsidy_spent(day, day + 86_400) == 3 * 10**15 + 6 * 10**14
        assert await ledger.subsidy_spent(day - 86_400, day) == 10**15
