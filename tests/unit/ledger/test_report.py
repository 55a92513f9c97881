"""The ledger report: exact P&L sums, groupings, builder inclusion rates, missed-opportunity reasons, and
the `keeper report` command."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from typer.testing import CliRunner

from keeper.ledger import Inclusion, Ledger, Opportunity, ReportData, Status, Submission
from keeper.ledger.cli import report_command
from keeper.ledger.report import build_report, builder_stats, format_eth, report_to_json, utc_day

BIG = 10**30
DAY1_END = 1_700_006_399  # 2023-11-14 23:59:59 UTC
DAY2_START = 1_700_006_400  # 2023-11-15 00:00:00 UTC
USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"


def opp(oid: str, strategy: str, protocol: str, status: Status, reason: str | None = None) -> Opportunity:
    return Opportunity(
        id=oid,
        strategy=strategy,
        protocol=protocol,
        detected_block=1,
        detected_block_timestamp=DAY1_END - 100,
        expected_profit=1,
        status=status,
        status_reason=reason,
    )


def inc(
    oid: str,
    block: int,
    realized: int,
    gas: int,
    bribe: int,
    ts: int,
    *,
    asset: str = "ETH",
    success: bool = True,
    builder: str | None = None,
) -> Inclusion:
    return Inclusion(
        opportunity_id=oid,
        block_number=block,
        tx_hash=f"0x{oid}{block}",
        gas_used=300_000,
        effective_gas_price=gas // 300_000 if gas % 300_000 == 0 else 1,
        gas_cost_wei=gas,
        builder_payment_wei=bribe,
        realized_profit=realized,
        included_at=ts,
        realized_profit_asset=asset,
        success=success,
        builder=builder,
    )


def data() -> ReportData:
    opps = (
        opp("a", "liquidations", "aave_v3", Status.INCLUDED, "included"),
        opp("b", "liquidations", "aave_v2", Status.INCLUDED, "included"),
        opp("c", "peg", "curve", Status.INCLUDED, "included"),
        opp("d", "liquidations", "aave_v3", Status.FAILED, "reverted on chain"),
        opp("e", "liquidations", "aave_v3", Status.GONE, "liquidated by competitor"),
        opp("f", "liquidations", "aave_v3", Status.GONE, "liquidated by competitor"),
        opp("g", "liquidations", "aave_v2", Status.ABANDONED, "unprofitable at base fee"),
        opp("h", "liquidations", "aave_v2", Status.GONE, None),
        opp("i", "liquidations", "aave_v3", Status.OPEN),
    )
    inclusions = (
        inc("a", 11, BIG + 1, 3 * 10**15, 10**17, DAY1_END, builder="titan.example"),
        inc("b", 21, BIG + 2, 2 * 10**15, 10**17, DAY2_START, builder=None),
        inc("c", 31, 5_000_000, 10**15, 0, DAY2_START + 5, asset=USDC, builder="beaver.example"),
        inc("d", 41, 0, 4 * 10**15, 0, DAY2_START + 60, success=False, builder="titan.example"),
    )
    subs = (
        Submission("a", 11, "titan.example", True, latency_ms=30.0),
        Submission("a", 11, "beaver.example", True, latency_ms=80.0),
        Submission("a", 10, "titan.example", True),  # an earlier block that did not land
        Submission("b", 21, "titan.example", True),
        Submission("b", 21, "beaver.example", False, error="HTTP 503"),
        Submission("c", 31, "beaver.example", True),
        Submission("e", 51, "titan.example", True),
    )
    return ReportData(opps, subs, inclusions, simulations_ok=7, simulations_failed=3)


def test_totals_are_exact_ints() -> None:
    r = build_report(data())
    t = r.total
    assert t.inclusions == 4 and t.reverted == 1
    assert t.realized_wei == 2 * BIG + 3  # exact beyond 2**64 (a float would lose the +3)
    assert t.gas_wei == 10 * 10**15
    assert t.builder_payments_wei == 2 * 10**17
    assert t.net_wei == 2 * BIG + 3 - 10 * 10**15
    assert t.gross_wei == 2 * BIG + 3 + 2 * 10**17
    assert t.other_assets == {USDC: 5_000_000}  # not valued in ETH, not mixed into net
    assert t.gas_used == 4 * 300_000
    assert (r.opportunities, r.submissions, r.simulations_ok, r.simulations_failed) == (9, 7, 7, 3)


def test_by_strategy_and_protocol() -> None:
    r = build_report(data())
    assert list(r.by_strategy) == ["liquidations", "peg"]
    liq = r.by_strategy["liquidations"]
    assert (liq.inclusions, liq.realized_wei, liq.gas_wei) == (3, 2 * BIG + 3, 9 * 10**15)
    peg = r.by_strategy["peg"]
    assert (peg.realized_wei, peg.other_assets, peg.net_wei) == (0, {USDC: 5_000_000}, -(10**15))
    assert {k: v.realized_wei for k, v in r.by_protocol.items()} == {
        "aave_v2": BIG + 2,
        "aave_v3": BIG + 1,
        "curve": 0,
    }
    assert r.by_protocol["aave_v3"].reverted == 1


def test_by_utc_day_of_block_timestamp() -> None:
    assert utc_day(DAY1_END) == "2023-11-14"
    assert utc_day(DAY2_START) == "2023-11-15"
    r = build_report(data())
    assert {k: (v.inclusions, v.realized_wei) for k, v in r.by_day.items()} == {
        "2023-11-14": (1, BIG + 1),
        "2023-11-15": (3, BIG + 2),
    }


def test_builder_inclusion_rates() -> None:
    stats = {b.builder: b for b in build_report(data()).builders}
    titan, beaver = stats["titan.example"], stats["beaver.example"]
    # titan: a@11 (landed, built by titan), a@10 (no), b@21 (landed, builder unknown), e@51 (no)
    assert (titan.submitted, titan.accepted, titan.included, titan.included_unattributed) == (4, 4, 1, 1)
    assert titan.inclusion_rate == 0.25
    # beaver: a@11 (landed but built by titan: not beaver's), b@21 (rejected; builder unknown), c@31 (yes)
    assert (beaver.submitted, beaver.accepted, beaver.included, beaver.included_unattributed) == (3, 2, 1, 1)
    assert beaver.latency_ms_max == 80.0
    assert builder_stats([], []) == ()


def test_missed_opportunities_by_status_and_reason() -> None:
    r = build_report(data())
    assert r.by_status == {
        Status.OPEN: 1,
        Status.INCLUDED: 3,
        Status.GONE: 3,
        Status.ABANDONED: 1,
        Status.FAILED: 1,
    }
    assert r.reasons == {
        (Status.GONE, "liquidated by competitor"): 2,
        (Status.ABANDONED, "unprofitable at base fee"): 1,
        (Status.FAILED, "reverted on chain"): 1,
        (Status.GONE, "?"): 1,
    }
    assert list(r.reasons.values()) == [2, 1, 1, 1]  # most common first


def test_empty_report() -> None:
    r = build_report(ReportData((), (), (), 0, 0))
    assert (r.total.net_wei, r.by_strategy, r.builders, r.reasons) == (0, {}, (), {})


def test_json_keeps_amounts_exact() -> None:
    out = report_to_json(build_report(data()))
    assert out["total"]["realized_wei"] == str(2 * BIG + 3)
    assert out["total"]["net_eth"] == format_eth(2 * BIG + 3 - 10 * 10**15, None)
    assert out["by_day"]["2023-11-14"]["inclusions"] == 1
    assert out["missed"][0] == {"status": "gone", "reason": "liquidated by competitor", "count": 2}
    orjson.dumps(out)  # serializable as is
    assert format_eth(-(10**15)) == "-0.001000"  # fixed places: columns line up
    assert format_eth(1234567890123456789, 6) == "1.234567"


# ---- the command ------------------------------------------------------------------------------------------

app = typer.Typer()


@app.command()
def report(ledger: Path, json: bool = False) -> None:
    report_command(ledger, json)


runner = CliRunner()


def test_report_command_missing_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, [str(tmp_path / "nope.sqlite")])
    assert result.exit_code == 2
    assert "error: ledger not found:" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "nope.sqlite").exists()


def test_report_command_not_a_ledger_exits_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    result = runner.invoke(app, [str(junk)])
    assert result.exit_code == 2
    assert result.output.startswith("error: ")


async def test_report_command_on_a_real_ledger(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    async with Ledger.open(path) as ledger:
        for o in data().opportunities:
            await ledger.record_opportunity(o)
        assert await ledger.claim_send("a", 11)
        await ledger.record_submission(Submission("a", 11, "titan.example", True, latency_ms=12.0))
        await ledger.record_inclusion(
            inc("a", 11, BIG + 1, 3 * 10**15, 10**17, DAY1_END, builder="titan.example")
        )
        await ledger.set_status("e", Status.GONE, "liquidated by competitor")

    result = runner.invoke(app, [str(path), "--json"])
    assert result.exit_code == 0, result.output
    out = orjson.loads(result.output)
    assert out["total"]["realized_wei"] == str(BIG + 1)
    assert out["builders"][0]["builder"] == "titan.example"
    assert out["builders"][0]["included"] == 1

    result = runner.invoke(app, [str(path)])
    assert result.exit_code == 0, result.output
    for text in ("P&L by strategy", "titan.example", "Missed opportunities", "liquidated by competitor"):
        assert text in result.output


def test_token_profit_valued_in_wei_counts_in_the_eth_pnl() -> None:
    valued = inc("v", 20, 10**17, 10**15, 5 * 10**16, 1_700_000_000, asset=USDC)
    from dataclasses import replace

    valued = replace(valued, realized_profit=250_000_000, realized_profit_wei=10**17)
    unvalued = inc("u", 21, 7, 10**15, 0, 1_700_000_000, asset=USDC)
    r = build_report(
        ReportData(
            opportunities=(
                opp("v", "liq", "aave_v3", Status.INCLUDED),
                opp("u", "liq", "aave_v3", Status.INCLUDED),
            ),
            submissions=(),
            inclusions=(valued, unvalued),
            simulations_ok=2,
            simulations_failed=0,
        )
    )
    assert r.total.realized_wei == 10**17  # the valued one, in wei
    assert r.total.net_wei == 10**17 - 2 * 10**15
    assert r.total.other_assets == {USDC: 7}  # only what could not be valued stays per asset


async def test_report_per_builder_identity_two_builders_on_one_host(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    a, b, named = "http://10.0.0.5:8545", "http://10.0.0.5:8546/…", "titan"
    async with Ledger.open(path) as ledger:
        await ledger.record_opportunity(opp("a", "liquidations", "aave_v3", Status.OPEN))
        assert await ledger.claim_send("a", 11)
        for builder, latency in ((a, 5.0), (b, 7.0), (named, 9.0)):
            await ledger.record_submission(Submission("a", 11, builder, True, latency_ms=latency))
        await ledger.record_inclusion(inc("a", 11, 10**17, 10**15, 0, DAY1_END, builder=b))
        await ledger.flush()
        assert ledger.failed_writes == 0
    result = runner.invoke(app, [str(path), "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["builder"]: r for r in orjson.loads(result.output)["builders"]}
    assert set(rows) == {a, b, named}
    assert [(rows[x]["submitted"], rows[x]["included"]) for x in (a, b, named)] == [(1, 0), (1, 1), (1, 0)]
    result = runner.invoke(app, [str(path)])
    assert result.exit_code == 0, result.output
    for text in ("10.0.0.5:8545", "10.0.0.5:8546", "titan"):
        assert text in result.output


def test_subsidy_sums_the_losses_after_gas_by_day() -> None:
    # A protocol keeper's loss-making liquidations: the subsidy is gas - realized where that is positive;
    # a profitable inclusion does not offset it, and unvalued token profits are left out.
    inclusions = (
        inc("a", 11, 10**15, 3 * 10**15, 0, DAY1_END),  # lost 2e15
        inc("b", 21, 5 * 10**15, 10**15, 0, DAY2_START),  # earned: no subsidy
        inc("c", 31, 0, 10**15, 0, DAY2_START + 5, success=False),  # reverted: lost the gas
        inc("d", 41, 7, 10**15, 0, DAY2_START + 9, asset=USDC),  # not valued in wei: left out
    )
    r = build_report(ReportData((), (), inclusions, simulations_ok=0, simulations_failed=0))
    assert r.total.subsidy_wei == 3 * 10**15
    assert r.by_day[utc_day(DAY1_END)].subsidy_wei == 2 * 10**15
    assert r.by_day[utc_day(DAY2_START)].subsidy_wei == 10**15
    assert report_to_json(r)["total"]["subsidy_wei"] == str(3 * 10**15)
