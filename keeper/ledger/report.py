"""The ledger report: pure functions from rows to figures (exact ints), then display helpers.

Computation (`build_report`) never formats and never touches floats for money: amounts are Python ints
summed exactly. Formatting (`format_eth`, `report_to_json`) is separate and only turns ints into text.

P&L follows the convention documented on `Inclusion`: realized profit is our balance change (already net
of the builder payment made from the contract), gas is paid on top, so net = realized - gas. Realized
profit in a token other than ETH cannot be valued without a price: it is summed per asset in base units
(`other_assets`) and left out of `net_wei`. Groups: by strategy, by protocol (of the opportunity), and by
UTC day of the inclusion's block timestamp.

Inclusion rate per builder: a submission counts as included when one of our transactions for that
opportunity landed in its target block, built by that builder. When the inclusion row does not say
which builder built the block (`builder` is None), every builder that had the bundle for that block is
credited in `included_unattributed` instead, so `included / submitted` is a lower bound and
`(included + included_unattributed) / submitted` an upper bound. Builders are told apart by their identity
(a name, or a redacted URL with its port): two builders on one host are two lines. Rows written before
ledger schema v3 name a builder by host only, so they form lines of their own.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from keeper.chain.units import format_units
from keeper.ledger.rows import ETH, FINAL_STATUSES, Inclusion, Opportunity, ReportData, Status, Submission

UNKNOWN = "?"


@dataclass(slots=True)
class PnL:
    """Figures of one group (all amounts exact ints, wei unless said otherwise)."""

    inclusions: int = 0
    reverted: int = 0
    realized_wei: int = 0
    """Sum of realized profit of ETH-denominated inclusions (after builder payments, before gas)."""
    gas_wei: int = 0
    builder_payments_wei: int = 0
    gas_used: int = 0
    other_assets: dict[str, int] = field(default_factory=dict)
    """Realized profit in other assets: asset -> base units."""
    subsidy_wei: int = 0
    """What loss-making inclusions cost: the sum, over inclusions valued in wei whose realized profit is
    below their gas, of gas - realized (a protocol keeper's subsidy; 0 for a searcher that never sends
    at a loss)."""

    @property
    def net_wei(self) -> int:
        """Realized ETH profit minus gas."""
        return self.realized_wei - self.gas_wei

    @property
    def gross_wei(self) -> int:
        """Before the builder was paid and gas spent: realized + builder payments."""
        return self.realized_wei + self.builder_payments_wei

    def add(self, inc: Inclusion) -> None:
        self.inclusions += 1
        self.reverted += 0 if inc.success else 1
        self.gas_wei += inc.gas_cost_wei
        self.gas_used += inc.gas_used
        self.builder_payments_wei += inc.builder_payment_wei
        if inc.realized_profit_asset == ETH:
            realized: int | None = inc.realized_profit
        else:
            realized = inc.realized_profit_wei  # a token profit valued in wei by the executor
        if realized is None:
            asset = inc.realized_profit_asset
            self.other_assets[asset] = self.other_assets.get(asset, 0) + inc.realized_profit
            return
        self.realized_wei += realized
        self.subsidy_wei += max(inc.gas_cost_wei - realized, 0)


@dataclass(frozen=True, slots=True)
class BuilderStats:
    builder: str
    submitted: int
    """Bundles sent to this builder (accepted or not)."""
    accepted: int
    """The builder answered without an error."""
    included: int
    """Landed in the target block, and the inclusion row names this builder."""
    included_unattributed: int
    """Landed in the target block, builder of the block unknown."""
    latency_ms_max: float | None

    @property
    def inclusion_rate(self) -> float | None:
        """included / submitted (display only; the ints are the data)."""
        return self.included / self.submitted if self.submitted else None


@dataclass(frozen=True, slots=True)
class Report:
    total: PnL
    by_strategy: dict[str, PnL]
    by_protocol: dict[str, PnL]
    by_day: dict[str, PnL]
    """UTC day (YYYY-MM-DD) of the block timestamp of the inclusion."""
    builders: tuple[BuilderStats, ...]
    opportunities: int
    by_status: dict[Status, int]
    reasons: dict[tuple[Status, str], int]
    """(final status other than included, reason) -> count: the missed opportunities and why."""
    submissions: int
    simulations_ok: int
    simulations_failed: int


def utc_day(block_timestamp: int) -> str:
    return datetime.fromtimestamp(block_timestamp, tz=UTC).date().isoformat()


def pnl_by(inclusions: Iterable[Inclusion], key: Any) -> dict[str, PnL]:
    """Groups inclusions by `key(inclusion) -> str`; groups sorted by key."""
    groups: dict[str, PnL] = defaultdict(PnL)
    for inc in inclusions:
        groups[key(inc)].add(inc)
    return dict(sorted(groups.items()))


def builder_stats(
    submissions: Iterable[Submission], inclusions: Iterable[Inclusion]
) -> tuple[BuilderStats, ...]:
    """Per builder; builders sorted by name."""
    landed: dict[tuple[str, int], set[str | None]] = defaultdict(set)
    for inc in inclusions:
        landed[(inc.opportunity_id, inc.block_number)].add(inc.builder)
    submitted: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    included: Counter[str] = Counter()
    unattributed: Counter[str] = Counter()
    latency: dict[str, float] = {}
    for sub in submissions:
        submitted[sub.builder] += 1
        accepted[sub.builder] += 1 if sub.ok else 0
        if sub.latency_ms is not None:
            latency[sub.builder] = max(latency.get(sub.builder, 0.0), sub.latency_ms)
        builders = landed.get((sub.opportunity_id, sub.target_block))
        if builders is None:
            continue
        if sub.builder in builders:
            included[sub.builder] += 1
        elif None in builders:
            unattributed[sub.builder] += 1
    return tuple(
        BuilderStats(
            builder=b,
            submitted=submitted[b],
            accepted=accepted[b],
            included=included[b],
            included_unattributed=unattributed[b],
            latency_ms_max=latency.get(b),
        )
        for b in sorted(submitted)
    )


def status_counts(
    opportunities: Iterable[Opportunity],
) -> tuple[dict[Status, int], dict[tuple[Status, str], int]]:
    """(count per status, count per (final status other than included, reason)); reasons most common
    first."""
    by_status: Counter[Status] = Counter()
    reasons: Counter[tuple[Status, str]] = Counter()
    for opp in opportunities:
        by_status[opp.status] += 1
        if opp.status in FINAL_STATUSES and opp.status is not Status.INCLUDED:
            reasons[(opp.status, opp.status_reason or UNKNOWN)] += 1
    ordered_status = {s: by_status[s] for s in Status if by_status[s]}
    ordered_reasons = dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0][0].value, kv[0][1])))
    return ordered_status, ordered_reasons


def build_report(data: ReportData) -> Report:
    opps = {opp.id: opp for opp in data.opportunities}

    def strategy(inc: Inclusion) -> str:
        opp = opps.get(inc.opportunity_id)
        return opp.strategy if opp is not None else UNKNOWN

    def protocol(inc: Inclusion) -> str:
        opp = opps.get(inc.opportunity_id)
        return opp.protocol if opp is not None else UNKNOWN

    total = PnL()
    for inc in data.inclusions:
        total.add(inc)
    by_status, reasons = status_counts(data.opportunities)
    return Report(
        total=total,
        by_strategy=pnl_by(data.inclusions, strategy),
        by_protocol=pnl_by(data.inclusions, protocol),
        by_day=pnl_by(data.inclusions, lambda inc: utc_day(inc.included_at)),
        builders=builder_stats(data.submissions, data.inclusions),
        opportunities=len(data.opportunities),
        by_status=by_status,
        reasons=reasons,
        submissions=len(data.submissions),
        simulations_ok=data.simulations_ok,
        simulations_failed=data.simulations_failed,
    )


# ---- display ---------------------------------------------------------------------------------------------


def format_eth(wei: int, places: int | None = 6) -> str:
    """`wei` as ETH text, truncated toward zero to `places` decimals (None: exact)."""
    return format_units(wei, 18, places)


def format_rate(numerator: int, denominator: int) -> str:
    if denominator == 0:
        return "-"
    return f"{100 * numerator / denominator:.1f}%"


def _pnl_json(p: PnL) -> dict[str, Any]:
    # Amounts as decimal strings: JSON numbers above 2**53 lose precision in most readers.
    return {
        "inclusions": p.inclusions,
        "reverted": p.reverted,
        "realized_wei": str(p.realized_wei),
        "gas_wei": str(p.gas_wei),
        "builder_payments_wei": str(p.builder_payments_wei),
        "net_wei": str(p.net_wei),
        "net_eth": format_eth(p.net_wei, None),
        "gas_used": p.gas_used,
        "subsidy_wei": str(p.subsidy_wei),
        "other_assets": {asset: str(amount) for asset, amount in sorted(p.other_assets.items())},
    }


def report_to_json(report: Report) -> dict[str, Any]:
    return {
        "total": _pnl_json(report.total),
        "by_strategy": {k: _pnl_json(v) for k, v in report.by_strategy.items()},
        "by_protocol": {k: _pnl_json(v) for k, v in report.by_protocol.items()},
        "by_day": {k: _pnl_json(v) for k, v in report.by_day.items()},
        "builders": [
            {
                "builder": b.builder,
                "submitted": b.submitted,
                "accepted": b.accepted,
                "included": b.included,
                "included_unattributed": b.included_unattributed,
                "inclusion_rate": b.inclusion_rate,
                "latency_ms_max": b.latency_ms_max,
            }
            for b in report.builders
        ],
        "opportunities": report.opportunities,
        "by_status": {s.value: n for s, n in report.by_status.items()},
        "missed": [
            {"status": status.value, "reason": reason, "count": n}
            for (status, reason), n in report.reasons.items()
        ],
        "submissions": report.submissions,
        "simulations": {"ok": report.simulations_ok, "failed": report.simulations_failed},
    }
