"""The ledger store: SQLite written by one thread, used from asyncio without blocking the loop.

Writes: one dedicated writer thread owns the write connection and takes jobs from a queue. It groups every
job queued at that moment into one IMMEDIATE transaction (each job in its own SAVEPOINT, so one bad row
does not undo the others), commits (one fsync per batch with synchronous=FULL), then resolves futures on
the loop with `call_soon_threadsafe`. The loop thread only builds parameters and puts a job on a
`SimpleQueue` (microseconds, never blocks).

Two kinds of write:
- `wait=True` (and always for `claim_send`): the coroutine returns once the row is committed; a failure
  raises `LedgerError` in the caller.
- fire-and-forget (default): returns as soon as the job is queued. A failure is logged at ERROR, counted
  (`failed_writes`, metric `keeper_ledger_write_errors_total`) and raised as `LedgerWriteErrors` by
  `close()`. When more than `max_pending` jobs are queued, a fire-and-forget call waits for its own
  commit instead (back-pressure, without blocking the loop).
Jobs run in queue order, so a fire-and-forget `record_opportunity` followed by `claim_send` is safe.

A cancelled caller does not cancel its write: a `claim_send` whose caller was cancelled may still commit
the claim. That is the safe direction (the opportunity/block is then never sent, not sent twice).

Reads: `LedgerReader` is synchronous, with its own connection (`query_only`); `Ledger` runs it on one owned
reader thread (`ThreadPoolExecutor(max_workers=1)`), the CLI report uses it directly. WAL lets reads run
while the writer commits. A read sees what was committed: `await ledger.flush()` first to include queued
fire-and-forget writes.

Several processes may share one file: SQLite serializes the writers, so `claim_send` stays at-most-once
across processes too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

from prometheus_client import Counter, Histogram

from keeper.core.metrics import REGISTRY
from keeper.executors.builder_identity import check_identity
from keeper.ledger.rows import (
    ETH,
    FINAL_STATUSES,
    LIVE_STATUSES,
    Inclusion,
    LedgerError,
    LedgerWriteErrors,
    Opportunity,
    ReportData,
    SendIntent,
    Simulation,
    Status,
    StatusChange,
    Submission,
    check_amount,
)
from keeper.ledger.schema import (
    SCHEMA_VERSION,
    check_sqlite_version,
    configure_reader,
    configure_writer,
    migrate,
    schema_version,
)
from keeper.logs import kv

log = logging.getLogger(__name__)

T = TypeVar("T")

LEDGER_WRITES = Counter("keeper_ledger_writes_total", "Ledger write jobs committed", registry=REGISTRY)
LEDGER_WRITE_ERRORS = Counter(
    "keeper_ledger_write_errors_total", "Ledger write jobs that failed", ["kind"], registry=REGISTRY
)
LEDGER_COMMIT_SECONDS = Histogram(
    "keeper_ledger_commit_seconds",
    "Time to run and commit one batch of ledger writes",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0),
    registry=REGISTRY,
)

MAX_BATCH = 1000
MAX_PENDING = 10_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _amt(value: int | None, name: str) -> str | None:
    return None if value is None else str(check_amount(value, name))


def _req_amt(value: int, name: str) -> str:
    return str(check_amount(value, name))


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


def _check_int(value: int, name: str) -> int:
    if type(value) is not int or not 0 <= value < 2**63:
        raise LedgerError(f"{name} must be a non-negative int below 2**63")
    return value


def builder_identity(builder: str) -> str:
    """The builder as recorded: its identity as given (`keeper.executors.builder_identity`), a name like
    `titan` or a redacted URL like `https://rpc.titanbuilder.xyz` / `http://10.0.0.5:8546/…`. A URL that
    may carry a secret (path, query, user info) is refused (LedgerError), never stored."""
    try:
        return check_identity(builder)
    except ValueError as exc:
        raise LedgerError(str(exc)) from None


def builder_host(builder: str) -> str:
    """Legacy (schema v1/v2 rows): a URL reduced to its host name. Not used for new rows, which keep the
    whole identity (`builder_identity`): two builders on one host are different builders."""
    text = builder.strip()
    host = (urlsplit(text).hostname or "") if "://" in text else text.lower()
    if not host or any(c in host for c in "/@?# "):
        raise LedgerError("builder must be a host name (or a URL, reduced to its host)")
    return host


# ---- reading ---------------------------------------------------------------------------------------------

_OPP_COLS = (
    "id, strategy, protocol, detected_block, detected_block_timestamp, expected_profit, "
    "expected_profit_asset, user, collateral_asset, debt_asset, debt_to_cover, expected_collateral, "
    "status, status_reason, detected_at_ms, updated_at_ms"
)
_SIM_COLS = (
    "opportunity_id, target_block, ok, simulated_profit_wei, gas_used, builder_payment_wei, "
    "net_profit_wei, error, simulated_at_ms"
)
_SUB_COLS = (
    "opportunity_id, target_block, builder, ok, bundle_hash, replacement_uuid, latency_ms, error, sent_at_ms"
)
_INC_COLS = (
    "opportunity_id, block_number, tx_hash, gas_used, effective_gas_price, gas_cost_wei, "
    "builder_payment_wei, realized_profit, included_at, realized_profit_asset, success, builder, "
    "recorded_at_ms, realized_profit_wei"
)

# Constant SQL built from the constant column lists above (no input is ever interpolated).
_SEL_OPP = f"SELECT {_OPP_COLS} FROM opportunities"  # noqa: S608
_SEL_SIM = f"SELECT {_SIM_COLS} FROM simulations"  # noqa: S608
_SEL_SUB = f"SELECT {_SUB_COLS} FROM submissions"  # noqa: S608
_SEL_INC = f"SELECT {_INC_COLS} FROM inclusions"  # noqa: S608
_LIVE = tuple(sorted(s.value for s in LIVE_STATUSES))
_SEL_LIVE = f"{_SEL_OPP} WHERE status IN ({', '.join('?' for _ in _LIVE)}) ORDER BY detected_block, id"


def _opportunity(r: Any) -> Opportunity:
    return Opportunity(
        id=r[0],
        strategy=r[1],
        protocol=r[2],
        detected_block=r[3],
        detected_block_timestamp=r[4],
        expected_profit=int(r[5]),
        expected_profit_asset=r[6],
        user=r[7],
        collateral_asset=r[8],
        debt_asset=r[9],
        debt_to_cover=_int(r[10]),
        expected_collateral=_int(r[11]),
        status=Status(r[12]),
        status_reason=r[13],
        detected_at_ms=r[14],
        updated_at_ms=r[15],
    )


def _simulation(r: Any) -> Simulation:
    return Simulation(
        opportunity_id=r[0],
        target_block=r[1],
        ok=bool(r[2]),
        simulated_profit_wei=_int(r[3]),
        gas_used=r[4],
        builder_payment_wei=_int(r[5]),
        net_profit_wei=_int(r[6]),
        error=r[7],
        simulated_at_ms=r[8],
    )


def _submission(r: Any) -> Submission:
    return Submission(
        opportunity_id=r[0],
        target_block=r[1],
        builder=r[2],
        ok=bool(r[3]),
        bundle_hash=r[4],
        replacement_uuid=r[5],
        latency_ms=r[6],
        error=r[7],
        sent_at_ms=r[8],
    )


def _inclusion(r: Any) -> Inclusion:
    return Inclusion(
        opportunity_id=r[0],
        block_number=r[1],
        tx_hash=r[2],
        gas_used=r[3],
        effective_gas_price=int(r[4]),
        gas_cost_wei=int(r[5]),
        builder_payment_wei=int(r[6]),
        realized_profit=int(r[7]),
        included_at=r[8],
        realized_profit_asset=r[9],
        success=bool(r[10]),
        builder=r[11],
        recorded_at_ms=r[12],
        realized_profit_wei=None if r[13] is None else int(r[13]),
    )


class LedgerReader:
    """Synchronous, read-only access to a ledger file (one connection; use it from one thread)."""

    def __init__(self, path: Path) -> None:
        check_sqlite_version()
        self.path = path
        if not path.is_file():
            raise LedgerError(f"ledger not found: {path}")
        try:
            # mode=rw: never create a file; query_only: never write through this connection.
            self._conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None, check_same_thread=False
            )
            configure_reader(self._conn)
            version = schema_version(self._conn)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read ledger {path}: {exc}") from exc
        if version != SCHEMA_VERSION:
            self._conn.close()
            if version == 0:
                raise LedgerError(f"{path} is not a keeper ledger (no schema)")
            raise LedgerError(
                f"ledger {path} has schema version {version}, this keeper reads version {SCHEMA_VERSION}"
                + ("; start `keeper run` once to migrate it" if version < SCHEMA_VERSION else "")
            )

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger read failed: {exc}") from exc

    def opportunity(self, opportunity_id: str) -> Opportunity | None:
        rows = self._all(_SEL_OPP + " WHERE id = ?", (opportunity_id,))
        return _opportunity(rows[0]) if rows else None

    def open_opportunities(self) -> list[Opportunity]:
        """Opportunities still live (open or submitted), oldest first: what a restarted keeper resumes."""
        return [_opportunity(r) for r in self._all(_SEL_LIVE, _LIVE)]

    def simulations(self, opportunity_id: str) -> list[Simulation]:
        sql = _SEL_SIM + " WHERE opportunity_id = ? ORDER BY id"
        return [_simulation(r) for r in self._all(sql, (opportunity_id,))]

    def submissions(self, opportunity_id: str) -> list[Submission]:
        sql = _SEL_SUB + " WHERE opportunity_id = ? ORDER BY id"
        return [_submission(r) for r in self._all(sql, (opportunity_id,))]

    def inclusions(self, opportunity_id: str) -> list[Inclusion]:
        sql = _SEL_INC + " WHERE opportunity_id = ? ORDER BY id"
        return [_inclusion(r) for r in self._all(sql, (opportunity_id,))]

    def send_intents(self, opportunity_id: str) -> list[SendIntent]:
        sql = (
            "SELECT opportunity_id, target_block, claimed_at_ms, pid FROM send_intents "
            "WHERE opportunity_id = ? ORDER BY target_block"
        )
        return [SendIntent(r[0], r[1], r[2], r[3]) for r in self._all(sql, (opportunity_id,))]

    def status_history(self, opportunity_id: str) -> list[StatusChange]:
        sql = (
            "SELECT opportunity_id, status, reason, at_ms, applied FROM opportunity_events "
            "WHERE opportunity_id = ? ORDER BY id"
        )
        return [
            StatusChange(r[0], Status(r[1]), r[2], r[3], bool(r[4]))
            for r in self._all(sql, (opportunity_id,))
        ]

    def report_data(self) -> ReportData:
        """Every row the report needs, from one read transaction (a consistent snapshot)."""
        try:
            self._conn.execute("BEGIN")
            try:
                opportunities = tuple(_opportunity(r) for r in self._all(_SEL_OPP + " ORDER BY rowid"))
                submissions = tuple(_submission(r) for r in self._all(_SEL_SUB + " ORDER BY id"))
                inclusions = tuple(_inclusion(r) for r in self._all(_SEL_INC + " ORDER BY id"))
                sims = dict(self._all("SELECT ok, count(*) FROM simulations GROUP BY ok"))
            finally:
                self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger read failed: {exc}") from exc
        return ReportData(
            opportunities=opportunities,
            submissions=submissions,
            inclusions=inclusions,
            simulations_ok=int(sims.get(1, 0)),
            simulations_failed=int(sims.get(0, 0)),
        )


# ---- writing ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Job:
    what: str
    run: Callable[[sqlite3.Connection], object]
    future: asyncio.Future[Any] | None


def _resolve(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; the write itself happened (or failed) regardless
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _as_ledger_error(what: str, exc: BaseException) -> LedgerError:
    if isinstance(exc, LedgerError):
        return exc
    err = LedgerError(f"{what}: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def _change_status(
    conn: sqlite3.Connection, opportunity_id: str, status: Status, reason: str | None, force: bool, at: int
) -> bool:
    """Inside a writer transaction. Final statuses are sticky except that `included` (a fact read from the
    chain) overrides the others; `force` (reorg handling) overrides everything. Every request, applied or
    refused, goes to `opportunity_events`."""
    row = conn.execute("SELECT status FROM opportunities WHERE id = ?", (opportunity_id,)).fetchone()
    if row is None:
        raise LedgerError(f"unknown opportunity {opportunity_id!r}")
    current = Status(row[0])
    applied = force or current not in FINAL_STATUSES or status in (current, Status.INCLUDED)
    if applied:
        conn.execute(
            "UPDATE opportunities SET status = ?, status_reason = ?, updated_at_ms = ? WHERE id = ?",
            (status.value, reason, at, opportunity_id),
        )
    else:
        log.warning(
            "ledger: status change refused (final status is sticky)",
            extra=kv(opportunity=opportunity_id, current=current.value, requested=status.value),
        )
    conn.execute(
        "INSERT INTO opportunity_events (opportunity_id, status, reason, applied, at_ms) "
        "VALUES (?, ?, ?, ?, ?)",
        (opportunity_id, status.value, reason, int(applied), at),
    )
    return applied


class Ledger:
    """Async facade over the ledger file. `async with Ledger.open(path) as ledger: ...`.

    Call its coroutines from the event loop that entered it (not from other threads).
    """

    def __init__(self, path: Path, *, max_batch: int = MAX_BATCH, max_pending: int = MAX_PENDING) -> None:
        self.path = Path(path)
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _accepting/_fatal against the enqueue; held for microseconds
        self._accepting = False
        self._fatal: BaseException | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._read_pool: ThreadPoolExecutor | None = None
        self._reader: LedgerReader | None = None  # touched only on the read thread
        self._inflight: list[_Job] = []  # touched only on the writer thread
        self._errors_lock = threading.Lock()
        self._failed_writes = 0
        self._first_error: str | None = None
        self.batches = 0
        """Transactions committed by the writer (for benchmarks: rows per fsync)."""

    @classmethod
    def open(cls, path: Path | str, *, max_batch: int = MAX_BATCH, max_pending: int = MAX_PENDING) -> Ledger:
        """An unstarted ledger; `async with` (or `await start()` ... `await close()`) runs it."""
        return cls(Path(path), max_batch=max_batch, max_pending=max_pending)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            await self.close()
            return
        try:  # do not replace the exception already propagating (e.g. CancelledError on shutdown)
            await self.close()
        except LedgerError as err:
            log.error("ledger closed with errors: %s", err)

    # ---- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._thread is not None:
            raise LedgerError("ledger already started")
        check_sqlite_version()
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._stopped = self._loop.create_future()
        # A daemon thread: a process that exits without closing the ledger (a crash on the way out) must
        # still exit. Committed rows are durable either way (synchronous=FULL); only writes not yet
        # committed can be lost, exactly as with SIGKILL, which the ledger is built to survive.
        self._thread = threading.Thread(
            target=self._writer_main, args=(ready,), name="ledger-writer", daemon=True
        )
        self._thread.start()
        try:
            await asyncio.shield(ready)
        except BaseException:  # open failed, or we were cancelled while it opened: stop the writer
            self._queue.put(None)
            await asyncio.shield(self._stopped)
            await asyncio.to_thread(self._thread.join)
            raise
        with self._lock:
            self._accepting = True
        self._read_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-read")
        log.info("ledger open", extra=kv(path=str(self.path), schema=SCHEMA_VERSION))

    async def close(self) -> None:
        """Commits everything queued, stops and joins the threads; raises LedgerWriteErrors if any
        fire-and-forget write failed during the ledger's life."""
        if self._closed or self._thread is None:
            return
        self._closed = True
        with self._lock:
            self._accepting = False
            self._queue.put(None)  # after every job already queued
        assert self._stopped is not None
        try:
            await asyncio.shield(self._stopped)
            await asyncio.to_thread(self._thread.join)
        finally:
            if self._read_pool is not None:
                pool = self._read_pool
                self._read_pool = None
                pool.submit(self._close_reader)
                await asyncio.to_thread(pool.shutdown, True)
        if self._fatal is not None:
            raise LedgerError(f"ledger writer stopped: {self._fatal}") from self._fatal
        if self._failed_writes:
            raise LedgerWriteErrors(self._failed_writes, self._first_error or "?")

    @property
    def failed_writes(self) -> int:
        """Fire-and-forget writes that failed so far (each also logged at ERROR)."""
        return self._failed_writes

    @property
    def first_error(self) -> str | None:
        return self._first_error

    # ---- the writer thread -------------------------------------------------------------------------

    def _call_loop(self, fn: Callable[..., object], *args: object) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(fn, *args)

    def _writer_main(self, ready: asyncio.Future[None]) -> None:
        conn: sqlite3.Connection | None = None
        try:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                configure_writer(conn)
                migrate(conn)
            except (sqlite3.Error, LedgerError, OSError) as exc:
                self._call_loop(
                    _resolve, ready, None, _as_ledger_error(f"cannot open ledger {self.path}", exc)
                )
                return
            self._call_loop(_resolve, ready, None, None)
            self._write_loop(conn)
        except BaseException as exc:
            self._fatal = exc
            log.critical("ledger writer crashed", exc_info=exc)
            with self._lock:
                self._accepting = False
            for job in self._inflight:
                self._report(job, _as_ledger_error(f"ledger writer crashed during {job.what}", exc))
            self._inflight = []
            self._fail_queued(exc)
        finally:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            assert self._stopped is not None
            self._call_loop(_resolve, self._stopped, None, None)

    def _fail_queued(self, exc: BaseException) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._report(job, _as_ledger_error(f"ledger writer stopped before {job.what}", exc))

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        while True:
            first = self._queue.get()
            batch: list[_Job] = []
            stop = first is None
            if first is not None:
                batch.append(first)
                while len(batch) < self._max_batch:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    batch.append(job)
            if batch:
                self._inflight = batch  # failed by _writer_main if the batch crashes the thread
                self._run_batch(conn, batch)
                self._inflight = []
            if stop:
                return

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        started = time.perf_counter()
        outcomes: list[tuple[_Job, object, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # busy beyond busy_timeout, I/O error: the batch fails, we go on
            for job in batch:
                self._report(job, _as_ledger_error(job.what, exc))
            return
        for job in batch:
            conn.execute("SAVEPOINT job")
            try:
                result = job.run(conn)
            except Exception as exc:
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append((job, None, exc))
            else:
                conn.execute("RELEASE job")
                outcomes.append((job, result, None))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(job, None, exc) for job, _, _ in outcomes]
        LEDGER_COMMIT_SECONDS.observe(time.perf_counter() - started)
        self.batches += 1
        ok = 0
        for job, result, error in outcomes:
            if error is None:
                ok += 1
                if job.future is not None:
                    self._call_loop(_resolve, job.future, result, None)
            else:
                self._report(job, _as_ledger_error(job.what, error))
        LEDGER_WRITES.inc(ok)

    def _report(self, job: _Job, error: LedgerError) -> None:
        if job.future is not None:
            LEDGER_WRITE_ERRORS.labels("awaited").inc()
            self._call_loop(_resolve, job.future, None, error)
            return
        LEDGER_WRITE_ERRORS.labels("fire_and_forget").inc()
        with self._errors_lock:
            self._failed_writes += 1
            if self._first_error is None:
                self._first_error = str(error)
        log.error("ledger write failed", extra=kv(write=job.what, error=str(error)))

    # ---- enqueueing (loop thread) ------------------------------------------------------------------

    async def _write(self, what: str, run: Callable[[sqlite3.Connection], T], wait: bool) -> T | None:
        assert self._loop is not None or not self._accepting
        with self._lock:
            if not self._accepting:
                if self._fatal is not None:
                    raise LedgerError(f"ledger writer stopped: {self._fatal}")
                raise LedgerError(f"ledger is not open (cannot {what})")
            assert self._loop is not None
            if not wait and self._queue.qsize() >= self._max_pending:
                wait = True  # back-pressure: wait for our own commit instead of growing the queue
            future: asyncio.Future[T] | None = self._loop.create_future() if wait else None
            self._queue.put(_Job(what, run, future))
        if future is None:
            return None
        return await future

    async def flush(self) -> None:
        """Returns once every write queued before it is committed (or has failed)."""
        await self._write("flush", lambda conn: None, True)

    async def subsidy_spent(self, since: int, until: int) -> int:
        """What loss-making inclusions with a block timestamp in [since, until) cost: the sum of
        gas - realized profit (wei) where that is positive (inclusions whose token profit was not valued
        in wei are left out). Read in the writer thread, after every write queued before it."""

        def run(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                "SELECT gas_cost_wei, realized_profit, realized_profit_asset, realized_profit_wei "
                "FROM inclusions WHERE included_at >= ? AND included_at < ?",
                (_check_int(since, "since"), _check_int(until, "until")),
            ).fetchall()
            total = 0
            for gas, realized, asset, realized_wei in rows:
                value = realized if asset == ETH else realized_wei
                if value is not None:
                    total += max(int(gas) - int(value), 0)
            return total

        spent = await self._write(f"subsidy_spent {since}..{until}", run, True)
        return int(spent or 0)

    async def record_opportunity(self, opp: Opportunity, *, wait: bool = False) -> None:
        """Inserts a newly detected opportunity. If the id exists, the first record is kept (re-detections
        in later blocks belong in `simulations`), its status unchanged."""
        at = opp.detected_at_ms if opp.detected_at_ms is not None else now_ms()
        params = (
            opp.id,
            opp.strategy,
            opp.protocol,
            opp.user,
            opp.collateral_asset,
            opp.debt_asset,
            _amt(opp.debt_to_cover, "debt_to_cover"),
            _amt(opp.expected_collateral, "expected_collateral"),
            _req_amt(opp.expected_profit, "expected_profit"),
            opp.expected_profit_asset,
            _check_int(opp.detected_block, "detected_block"),
            _check_int(opp.detected_block_timestamp, "detected_block_timestamp"),
            at,
            Status(opp.status).value,
            opp.status_reason,
            at,
        )

        def run(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "INSERT INTO opportunities (id, strategy, protocol, user, collateral_asset, debt_asset, "
                "debt_to_cover, expected_collateral, expected_profit, expected_profit_asset, detected_block, "
                "detected_block_timestamp, detected_at_ms, status, status_reason, updated_at_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                params,
            )
            if cur.rowcount == 1:
                conn.execute(
                    "INSERT INTO opportunity_events (opportunity_id, status, reason, applied, at_ms) "
                    "VALUES (?, ?, ?, 1, ?)",
                    (opp.id, params[13], opp.status_reason or "detected", at),
                )

        await self._write(f"record_opportunity {opp.id}", run, wait)

    async def record_simulation(self, sim: Simulation, *, wait: bool = False) -> None:
        params = (
            sim.opportunity_id,
            _check_int(sim.target_block, "target_block"),
            int(bool(sim.ok)),
            _amt(sim.simulated_profit_wei, "simulated_profit_wei"),
            None if sim.gas_used is None else _check_int(sim.gas_used, "gas_used"),
            _amt(sim.builder_payment_wei, "builder_payment_wei"),
            _amt(sim.net_profit_wei, "net_profit_wei"),
            sim.error,
            sim.simulated_at_ms if sim.simulated_at_ms is not None else now_ms(),
        )

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO simulations (opportunity_id, target_block, ok, simulated_profit_wei, gas_used, "
                "builder_payment_wei, net_profit_wei, error, simulated_at_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )

        await self._write(f"record_simulation {sim.opportunity_id}@{sim.target_block}", run, wait)

    async def claim_send(self, opportunity_id: str, target_block: int) -> bool:
        """Call BEFORE signing or sending. True: the (opportunity, target block) is ours to send, and the
        claim is committed (fsynced) before this returns. False: it was claimed before, by this process or
        an earlier one (even one killed right after claiming): do not send. Raises LedgerError if the claim
        could not be recorded (unknown opportunity, I/O): do not send either."""
        params = (opportunity_id, _check_int(target_block, "target_block"), now_ms(), os.getpid())

        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT INTO send_intents (opportunity_id, target_block, claimed_at_ms, pid) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (opportunity_id, target_block) DO NOTHING",
                params,
            )
            return cur.rowcount == 1

        claimed = await self._write(f"claim_send {opportunity_id}@{target_block}", run, True)
        return bool(claimed)

    async def record_submission(self, sub: Submission, *, wait: bool = False) -> None:
        """One row per (opportunity, target block, builder); the pair must have been claimed with
        `claim_send` (foreign key). The first accepted submission moves the opportunity open -> submitted."""
        at = sub.sent_at_ms if sub.sent_at_ms is not None else now_ms()
        params = (
            sub.opportunity_id,
            _check_int(sub.target_block, "target_block"),
            builder_identity(sub.builder),
            sub.bundle_hash,
            sub.replacement_uuid,
            at,
            None if sub.latency_ms is None else float(sub.latency_ms),
            int(bool(sub.ok)),
            sub.error,
        )

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO submissions (opportunity_id, target_block, builder, bundle_hash, "
                "replacement_uuid, sent_at_ms, latency_ms, ok, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )
            if sub.ok:
                row = conn.execute("SELECT status FROM opportunities WHERE id = ?", (sub.opportunity_id,))
                if row.fetchone() == (Status.OPEN.value,):
                    _change_status(conn, sub.opportunity_id, Status.SUBMITTED, "submitted", False, at)

        what = f"record_submission {sub.opportunity_id}@{sub.target_block} {params[2]}"
        await self._write(what, run, wait)

    async def record_inclusion(self, inc: Inclusion, *, wait: bool = False) -> None:
        """Records (or, after a reorg moved it, updates) our included transaction and sets the status to
        `included` (or `failed` if it reverted) in the same transaction."""
        at = inc.recorded_at_ms if inc.recorded_at_ms is not None else now_ms()
        params = (
            inc.opportunity_id,
            _check_int(inc.block_number, "block_number"),
            inc.tx_hash,
            int(bool(inc.success)),
            _check_int(inc.gas_used, "gas_used"),
            _req_amt(inc.effective_gas_price, "effective_gas_price"),
            _req_amt(inc.gas_cost_wei, "gas_cost_wei"),
            _req_amt(inc.builder_payment_wei, "builder_payment_wei"),
            _req_amt(inc.realized_profit, "realized_profit"),
            inc.realized_profit_asset,
            None if inc.builder is None else builder_identity(inc.builder),
            _check_int(inc.included_at, "included_at"),
            at,
            _amt(inc.realized_profit_wei, "realized_profit_wei"),
        )
        status = Status.INCLUDED if inc.success else Status.FAILED
        reason = "included" if inc.success else "reverted on chain"  # a category: the block is in the row

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO inclusions (opportunity_id, block_number, tx_hash, success, gas_used, "
                "effective_gas_price, gas_cost_wei, builder_payment_wei, realized_profit, "
                "realized_profit_asset, builder, included_at, recorded_at_ms, realized_profit_wei) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (opportunity_id, tx_hash) DO UPDATE SET block_number = excluded.block_number, "
                "success = excluded.success, gas_used = excluded.gas_used, "
                "effective_gas_price = excluded.effective_gas_price, gas_cost_wei = excluded.gas_cost_wei, "
                "builder_payment_wei = excluded.builder_payment_wei, "
                "realized_profit = excluded.realized_profit, "
                "realized_profit_asset = excluded.realized_profit_asset, builder = excluded.builder, "
                "included_at = excluded.included_at, recorded_at_ms = excluded.recorded_at_ms, "
                "realized_profit_wei = excluded.realized_profit_wei",
                params,
            )
            _change_status(conn, inc.opportunity_id, status, reason, False, at)

        await self._write(f"record_inclusion {inc.opportunity_id} {inc.tx_hash}", run, wait)

    async def set_status(
        self,
        opportunity_id: str,
        status: Status,
        reason: str | None = None,
        *,
        force: bool = False,
        wait: bool = False,
    ) -> None:
        """Final statuses (included, gone, abandoned, failed) are sticky: a later request is recorded in
        the audit trail but not applied, except `included` (read from the chain), or with `force=True`
        (reorg handling)."""
        new = Status(status)
        at = now_ms()

        def run(conn: sqlite3.Connection) -> None:
            _change_status(conn, opportunity_id, new, reason, force, at)

        await self._write(f"set_status {opportunity_id} {new.value}", run, wait)

    # ---- reads (on the read thread) ----------------------------------------------------------------

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _with_reader(self, fn: Callable[[LedgerReader], T]) -> T:
        if self._reader is None:
            self._reader = LedgerReader(self.path)
        return fn(self._reader)

    async def _read(self, fn: Callable[[LedgerReader], T]) -> T:
        if self._read_pool is None or self._loop is None:
            raise LedgerError("ledger is not open")
        return await self._loop.run_in_executor(self._read_pool, self._with_reader, fn)

    async def open_opportunities(self) -> list[Opportunity]:
        return await self._read(LedgerReader.open_opportunities)

    async def opportunity(self, opportunity_id: str) -> Opportunity | None:
        return await self._read(lambda r: r.opportunity(opportunity_id))

    async def simulations(self, opportunity_id: str) -> list[Simulation]:
        return await self._read(lambda r: r.simulations(opportunity_id))

    async def submissions(self, opportunity_id: str) -> list[Submission]:
        return await self._read(lambda r: r.submissions(opportunity_id))

    async def inclusions(self, opportunity_id: str) -> list[Inclusion]:
        return await self._read(lambda r: r.inclusions(opportunity_id))

    async def send_intents(self, opportunity_id: str) -> list[SendIntent]:
        return await self._read(lambda r: r.send_intents(opportunity_id))

    async def status_history(self, opportunity_id: str) -> list[StatusChange]:
        return await self._read(lambda r: r.status_history(opportunity_id))

    async def report_data(self) -> ReportData:
        return await self._read(LedgerReader.report_data)
