"""Ledger schema (SQLite), connection settings and migrations.

Amounts: TEXT decimal strings. Wei and token base units exceed 2**63 (SQLite's INTEGER is 64-bit signed;
larger Python ints raise OverflowError, and REAL would round), so every amount column is TEXT holding a
canonical decimal integer (no leading zeros, no '+', optional '-', at most 79 characters: uint256 plus a
sign), enforced by a named CHECK constraint (`<col>_is_amount`; a float bound by mistake becomes '1e+30'
and is refused). Tables are STRICT, so INTEGER columns refuse text. Sums are exact: the report converts
with `int()` and adds Python ints; SQL never does arithmetic on amounts (`SUM` over TEXT goes via REAL).
Block numbers, gas used and timestamps fit 64 bits and are INTEGER.

Durability: WAL with `synchronous=FULL`. In WAL mode NORMAL already survives a process crash (SIGKILL):
a commit is in the WAL file in the OS page cache. It does not survive power loss or a kernel crash: the
last commits before the WAL fsync may roll back. The send claim (`send_intents`) is the at-most-once guard
against a second send after a restart, and a send may have left the machine just after the claim, so a
claim that "un-happens" on power loss is the failure we are guarding against. FULL fsyncs the WAL at every
commit; the writer groups every queued write into one transaction, so the cost is one fsync per batch,
not per row (see benchmarks/bench_ledger.py).

Versioning: `PRAGMA user_version` is the schema version; `schema_history` records each migration applied.
`MIGRATIONS` is the hook: append `Migration(n + 1, "what", apply)`; `migrate` runs the pending ones in
order, each in its own IMMEDIATE transaction (so two processes opening one file at once cannot both
apply it), and refuses a file written by a newer keeper.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from keeper.ledger.rows import LedgerError, Status

MIN_SQLITE = (3, 37, 0)
"""STRICT tables."""
BUSY_TIMEOUT_MS = 5000


def amount_check(col: str) -> str:
    """Named CHECK: `col` is NULL or a canonical decimal integer string (NOT NULL is declared apart)."""
    return (
        f"CONSTRAINT {col}_is_amount CHECK ({col} IS NULL OR (typeof({col}) = 'text' AND length({col}) <= 79"
        f" AND ({col} = '0'"
        f" OR ({col} GLOB '[1-9]*' AND NOT substr({col}, 2) GLOB '*[^0-9]*')"
        f" OR ({col} GLOB '-[1-9]*' AND NOT substr({col}, 3) GLOB '*[^0-9]*'))))"
    )


def _bool_check(col: str) -> str:
    return f"CHECK ({col} IN (0, 1))"


_STATUSES = ", ".join(f"'{s.value}'" for s in Status)
_HOST_CHECK = "CHECK (builder <> '' AND instr(builder, '/') = 0 AND instr(builder, '@') = 0)"

_V1: tuple[str, ...] = (
    f"""
    CREATE TABLE opportunities (
        id                       TEXT PRIMARY KEY,
        strategy                 TEXT NOT NULL,
        protocol                 TEXT NOT NULL,
        user                     TEXT,
        collateral_asset         TEXT,
        debt_asset               TEXT,
        debt_to_cover            TEXT {amount_check("debt_to_cover")},
        expected_collateral      TEXT {amount_check("expected_collateral")},
        expected_profit          TEXT NOT NULL {amount_check("expected_profit")},
        expected_profit_asset    TEXT NOT NULL,
        detected_block           INTEGER NOT NULL CHECK (detected_block >= 0),
        detected_block_timestamp INTEGER NOT NULL CHECK (detected_block_timestamp >= 0),
        detected_at_ms           INTEGER NOT NULL,
        status                   TEXT NOT NULL DEFAULT 'open' CHECK (status IN ({_STATUSES})),
        status_reason            TEXT,
        updated_at_ms            INTEGER NOT NULL
    ) STRICT
    """,
    "CREATE INDEX opportunities_by_status ON opportunities (status)",
    f"""
    CREATE TABLE opportunity_events (
        id             INTEGER PRIMARY KEY,
        opportunity_id TEXT NOT NULL REFERENCES opportunities (id),
        status         TEXT NOT NULL CHECK (status IN ({_STATUSES})),
        reason         TEXT,
        applied        INTEGER NOT NULL {_bool_check("applied")},
        at_ms          INTEGER NOT NULL
    ) STRICT
    """,
    "CREATE INDEX opportunity_events_by_opportunity ON opportunity_events (opportunity_id)",
    f"""
    CREATE TABLE simulations (
        id                   INTEGER PRIMARY KEY,
        opportunity_id       TEXT NOT NULL REFERENCES opportunities (id),
        target_block         INTEGER NOT NULL,
        ok                   INTEGER NOT NULL {_bool_check("ok")},
        simulated_profit_wei TEXT {amount_check("simulated_profit_wei")},
        gas_used             INTEGER,
        builder_payment_wei  TEXT {amount_check("builder_payment_wei")},
        net_profit_wei       TEXT {amount_check("net_profit_wei")},
        error                TEXT,
        simulated_at_ms      INTEGER NOT NULL
    ) STRICT
    """,
    "CREATE INDEX simulations_by_opportunity ON simulations (opportunity_id, target_block)",
    """
    CREATE TABLE send_intents (
        opportunity_id TEXT NOT NULL REFERENCES opportunities (id),
        target_block   INTEGER NOT NULL,
        claimed_at_ms  INTEGER NOT NULL,
        pid            INTEGER NOT NULL,
        UNIQUE (opportunity_id, target_block)
    ) STRICT
    """,
    # A submission must have been claimed first: the foreign key to send_intents makes "sent without a
    # claim" impossible to record.
    f"""
    CREATE TABLE submissions (
        id               INTEGER PRIMARY KEY,
        opportunity_id   TEXT NOT NULL REFERENCES opportunities (id),
        target_block     INTEGER NOT NULL,
        builder          TEXT NOT NULL {_HOST_CHECK},
        bundle_hash      TEXT,
        replacement_uuid TEXT,
        sent_at_ms       INTEGER NOT NULL,
        latency_ms       REAL,
        ok               INTEGER NOT NULL {_bool_check("ok")},
        error            TEXT,
        UNIQUE (opportunity_id, target_block, builder),
        FOREIGN KEY (opportunity_id, target_block) REFERENCES send_intents (opportunity_id, target_block)
    ) STRICT
    """,
    f"""
    CREATE TABLE inclusions (
        id                    INTEGER PRIMARY KEY,
        opportunity_id        TEXT NOT NULL REFERENCES opportunities (id),
        block_number          INTEGER NOT NULL,
        tx_hash               TEXT NOT NULL,
        success               INTEGER NOT NULL {_bool_check("success")},
        gas_used              INTEGER NOT NULL CHECK (gas_used >= 0),
        effective_gas_price   TEXT NOT NULL {amount_check("effective_gas_price")},
        gas_cost_wei          TEXT NOT NULL {amount_check("gas_cost_wei")},
        builder_payment_wei   TEXT NOT NULL {amount_check("builder_payment_wei")},
        realized_profit       TEXT NOT NULL {amount_check("realized_profit")},
        realized_profit_asset TEXT NOT NULL,
        builder               TEXT,
        included_at           INTEGER NOT NULL,
        recorded_at_ms        INTEGER NOT NULL,
        UNIQUE (opportunity_id, tx_hash)
    ) STRICT
    """,
    "CREATE INDEX inclusions_by_block ON inclusions (block_number)",
)


def _apply_statements(statements: tuple[str, ...]) -> Callable[[sqlite3.Connection], None]:
    def apply(conn: sqlite3.Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return apply


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    apply: Callable[[sqlite3.Connection], None]
    """Runs inside the migration's transaction; must not commit."""


_V2 = (f"ALTER TABLE inclusions ADD COLUMN realized_profit_wei TEXT {amount_check('realized_profit_wei')}",)

# v3: a builder is known by its identity (keeper.executors.builder_identity): a name, or its URL redacted to
# scheme://host[:port] with "/…" standing for a path. v1 reduced it to a host name, so two builders on one
# host (different ports or paths) collided on the unique key. SQLite cannot alter a CHECK: the table is
# rebuilt, rows kept as they are (host names are valid names). The CHECK is a backstop; the store
# validates identities before writing (`builder_identity`).
_IDENTITY_CHECK = (
    "CHECK (builder <> '' AND instr(builder, '@') = 0 AND instr(builder, '?') = 0"
    " AND instr(builder, '#') = 0 AND instr(builder, ' ') = 0"
    " AND (CASE WHEN instr(builder, '://') = 0 THEN instr(builder, '/') = 0"
    " ELSE instr(substr(builder, instr(builder, '://') + 3), '/') = 0"
    " OR substr(substr(builder, instr(builder, '://') + 3),"
    " instr(substr(builder, instr(builder, '://') + 3), '/')) = '/…' END))"
)
_SUB_COLUMNS = (
    "id, opportunity_id, target_block, builder, bundle_hash, replacement_uuid, sent_at_ms, latency_ms, "
    "ok, error"
)
_V3: tuple[str, ...] = (
    f"""
    CREATE TABLE submissions_v3 (
        id               INTEGER PRIMARY KEY,
        opportunity_id   TEXT NOT NULL REFERENCES opportunities (id),
        target_block     INTEGER NOT NULL,
        builder          TEXT NOT NULL {_IDENTITY_CHECK},
        bundle_hash      TEXT,
        replacement_uuid TEXT,
        sent_at_ms       INTEGER NOT NULL,
        latency_ms       REAL,
        ok               INTEGER NOT NULL {_bool_check("ok")},
        error            TEXT,
        UNIQUE (opportunity_id, target_block, builder),
        FOREIGN KEY (opportunity_id, target_block) REFERENCES send_intents (opportunity_id, target_block)
    ) STRICT
    """,
    f"INSERT INTO submissions_v3 ({_SUB_COLUMNS}) SELECT {_SUB_COLUMNS} FROM submissions",  # noqa: S608
    "DROP TABLE submissions",
    "ALTER TABLE submissions_v3 RENAME TO submissions",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _apply_statements(_V1)),
    Migration(2, "inclusions.realized_profit_wei: profit valued in wei", _apply_statements(_V2)),
    Migration(
        3,
        "submissions.builder: the builder's identity (name or redacted URL), not its host",
        _apply_statements(_V3),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def check_sqlite_version() -> None:
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        need = ".".join(map(str, MIN_SQLITE))
        raise LedgerError(
            f"the ledger needs SQLite >= {need} (STRICT tables); found {sqlite3.sqlite_version}"
        )


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def configure_writer(conn: sqlite3.Connection) -> None:
    """Pragmas of the writer connection (WAL is persistent in the file; the others are per connection)."""
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise LedgerError(f"cannot switch the ledger to WAL mode (journal_mode is {mode})")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def configure_reader(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA query_only = ON")


def _check_not_newer(current: int, latest: int) -> None:
    if current > latest:
        raise LedgerError(
            f"ledger schema version {current} is newer than this keeper knows ({latest}); "
            "upgrade keeper or use another ledger file"
        )


def _check_next(version: int, current: int) -> None:
    if version != current + 1:
        raise LedgerError(f"migration {version} cannot follow schema version {current}")


def migrate(conn: sqlite3.Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Applies pending migrations (connection in autocommit mode); returns the resulting version."""
    latest = migrations[-1].version
    if schema_version(conn) == latest:
        return latest
    for migration in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = schema_version(conn)  # read under the write lock: another process may have migrated
            if migration.version <= current:
                _check_not_newer(current, latest)
                conn.execute("ROLLBACK")
                continue
            _check_next(migration.version, current)
            migration.apply(conn)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_history ("
                " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at_ms INTEGER NOT NULL"
                ") STRICT"
            )
            conn.execute(
                "INSERT INTO schema_history (version, description, applied_at_ms) VALUES (?, ?, ?)",
                (migration.version, migration.description, time.time_ns() // 1_000_000),
            )
            conn.execute(f"PRAGMA user_version = {int(migration.version)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return schema_version(conn)
