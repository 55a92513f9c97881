"""The ledger: opportunities, simulations, send claims, submissions, inclusions and P&L, in SQLite.

    async with Ledger.open(settings.ledger_path) as ledger:
        await ledger.record_opportunity(Opportunity(...))
        if await ledger.claim_send(opp_id, target_block):   # durable before it returns
            ...sign and send...
            await ledger.record_submission(Submission(...))

Modules: `rows` (row dataclasses, statuses, errors), `schema` (DDL, pragmas, migrations), `store`
(`Ledger`: async, one writer thread; `LedgerReader`: sync reads), `report` (pure P&L computation and
formatting), `cli` (`keeper report`).
"""

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
)
from keeper.ledger.schema import SCHEMA_VERSION
from keeper.ledger.store import Ledger, LedgerReader, builder_host

__all__ = [
    "ETH",
    "FINAL_STATUSES",
    "LIVE_STATUSES",
    "SCHEMA_VERSION",
    "Inclusion",
    "Ledger",
    "LedgerError",
    "LedgerReader",
    "LedgerWriteErrors",
    "Opportunity",
    "ReportData",
    "SendIntent",
    "Simulation",
    "Status",
    "StatusChange",
    "Submission",
    "builder_host",
]
