"""Positions that stay liquidatable are reported after N blocks, with the reason, and again every N."""

import pytest

from strategies.liquidations.stuck import STUCK, StuckWatch, reasons_by_position

A = ("aave-v3", "0xa")
B = ("aave-v2", "0xb")


def gauge() -> float:
    return float(STUCK._value.get())


def test_alerts_after_n_blocks_with_the_reason_and_repeats_every_n() -> None:
    watch = StuckWatch(after_blocks=3)
    reasons = {A: "below minimum: net -5 wei"}
    assert watch.update(100, [A, B], reasons) == []
    assert watch.update(102, [A, B], reasons) == []
    due = watch.update(103, [A, B], reasons)
    assert [(s.market, s.user, s.blocks, s.since_block) for s in due] == [
        ("aave-v2", "0xb", 3, 100),
        ("aave-v3", "0xa", 3, 100),
    ]
    assert {s.user: s.reason for s in due}["0xa"] == "below minimum: net -5 wei"
    assert "not landed" in {s.user: s.reason for s in due}["0xb"]
    assert gauge() == 2
    assert watch.update(104, [A, B], reasons) == []  # said once...
    assert [s.user for s in watch.update(106, [A, B], reasons)] == ["0xb", "0xa"]  # ...and again every 3
    # B is liquidated: it leaves; A stays stuck.
    watch.update(107, [A], reasons)
    assert [s.user for s in watch.stuck] == ["0xa"]
    assert gauge() == 1
    # A comes back after being healthy: a new episode, counted from scratch.
    watch.update(108, [], {})
    assert gauge() == 0
    assert watch.update(109, [A], {}) == []


def test_reasons_are_keyed_by_market_and_user_whatever_pair_was_valued() -> None:
    reasons = reasons_by_position(
        {"aave-v3:0xa:0xweth:0xusdc": "no route"},
        {"aave-v3:0xa:0xwbtc:0xusdc": "later", "aave-v2:0xb:x:y": "b"},
    )
    assert reasons == {A: "no route", B: "b"}


def test_the_threshold_is_at_least_one_block() -> None:
    with pytest.raises(ValueError, match="after_blocks"):
        StuckWatch(0)
