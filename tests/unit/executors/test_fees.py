"""EIP-1559 fee arithmetic: exact base fee, worst-case caps, profit cap, replacement bumps."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.executors.fees import (
    FeeCaps,
    FeeQuote,
    Unprofitable,
    bump_fees,
    fee_caps_for_target,
    is_valid_replacement,
    max_base_fee_after,
    min_replacement,
    next_base_fee,
    next_base_fee_from_header,
    price_tx,
    profit_fee_cap,
)

GWEI = 10**9
fees = st.integers(min_value=0, max_value=10**15)
even_limits = st.integers(min_value=5_000, max_value=60_000_000).map(lambda x: x * 2)


# ---- next base fee --------------------------------------------------------------------------


def test_london_block_12965000_header() -> None:
    """Mainnet's first EIP-1559 block: base fee 1 gwei, gasUsed 30,025,257 of 30,029,122.
    Its child (12965001) carries 1,124,967,822 wei, which the formula must reproduce."""
    header = {
        "number": "0xc5d488",
        "baseFeePerGas": "0x3b9aca00",
        "gasUsed": "0x1ca2629",
        "gasLimit": "0x1ca3542",
    }
    assert int(header["gasUsed"], 16) == 30_025_257
    assert int(header["gasLimit"], 16) == 30_029_122
    assert next_base_fee_from_header(header) == 1_124_967_822
    assert next_base_fee(1_000_000_000, 30_025_257, 30_029_122) == 1_124_967_822


@pytest.mark.parametrize(
    ("base", "used", "limit", "expected"),
    [
        # go-ethereum consensus/misc/eip1559 TestCalcBaseFee vectors
        (1_000_000_000, 10_000_000, 20_000_000, 1_000_000_000),  # at target: unchanged
        (1_000_000_000, 9_000_000, 20_000_000, 987_500_000),  # below target
        (1_000_000_000, 11_000_000, 20_000_000, 1_012_500_000),  # above target
        # extremes of a 30M block
        (20 * GWEI, 30_000_000, 30_000_000, 22_500_000_000),  # full: +12.5%
        (20 * GWEI, 0, 30_000_000, 17_500_000_000),  # empty: -12.5%
        # the +1 wei floor when above target
        (7, 15_000_001, 30_000_000, 8),
        (0, 30_000_000, 30_000_000, 1),
        # rounding down on the way down
        (7, 0, 30_000_000, 7),
        (9, 0, 30_000_000, 8),
    ],
)
def test_known_values(base: int, used: int, limit: int, expected: int) -> None:
    assert next_base_fee(base, used, limit) == expected


def test_header_with_int_fields_and_bad_input() -> None:
    assert next_base_fee_from_header({"baseFeePerGas": GWEI, "gasUsed": 0, "gasLimit": 30_000_000}) == (
        875_000_000
    )
    with pytest.raises(ValueError):
        next_base_fee_from_header({"gasUsed": "0x0", "gasLimit": "0x1"})
    with pytest.raises(ValueError):
        next_base_fee(GWEI, 0, 1)
    with pytest.raises(TypeError):
        next_base_fee(1.5, 0, 30_000_000)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        next_base_fee(-1, 0, 30_000_000)


@given(base=fees, limit=even_limits, data=st.data())
def test_next_base_fee_matches_rational_spec(base: int, limit: int, data: st.DataObject) -> None:
    used = data.draw(st.integers(min_value=0, max_value=limit))
    target = limit // 2
    change = Fraction(base * (used - target), target) / 8
    got = next_base_fee(base, used, limit)
    if used > target:
        assert got == base + max(int(change), 1)  # floor of a positive rational
    else:
        assert got == base - int(-change)  # floor of the magnitude, subtracted
    assert base - base // 8 <= got <= base + max(base // 8, 1)


# ---- caps for a target block ----------------------------------------------------------------


@given(base=fees, limit=even_limits, data=st.data())
def test_worst_case_bounds_any_sequence_of_blocks(base: int, limit: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(min_value=0, max_value=8))
    b = base
    for _ in range(k):
        b = next_base_fee(b, data.draw(st.integers(min_value=0, max_value=limit)), limit)
    assert b <= max_base_fee_after(base, k)
    assert max_base_fee_after(base, k) == max_base_fee_after(base, k, gas_limit=limit)


def test_worst_case_with_an_odd_gas_limit_is_exact() -> None:
    # limit 3 -> target 1: a full block moves the base fee by 2/8, not 1/8.
    assert max_base_fee_after(800, 1, gas_limit=3) == 1000
    assert max_base_fee_after(800, 1) == 900


@given(base=fees, tip=fees, k=st.integers(min_value=1, max_value=12))
def test_caps_are_monotone(base: int, tip: int, k: int) -> None:
    caps = fee_caps_for_target(base, k, tip)
    assert caps.max_priority_fee_per_gas == tip
    assert caps.max_fee_per_gas >= base + tip
    assert fee_caps_for_target(base, k + 1, tip).max_fee_per_gas >= caps.max_fee_per_gas
    assert fee_caps_for_target(base + 1, k, tip).max_fee_per_gas >= caps.max_fee_per_gas
    assert fee_caps_for_target(base, k, tip + 1).max_fee_per_gas == caps.max_fee_per_gas + 1
    assert isinstance(caps.max_fee_per_gas, int)


def test_caps_for_next_block_and_three_ahead() -> None:
    assert fee_caps_for_target(100 * GWEI, 1, 2 * GWEI) == FeeCaps(102 * GWEI, 2 * GWEI)
    # N+3: two full blocks after N+1: 100 -> 112.5 -> 126.5625 gwei
    assert fee_caps_for_target(100 * GWEI, 3, 0).max_fee_per_gas == 126_562_500_000
    with pytest.raises(ValueError):
        fee_caps_for_target(GWEI, 0, 0)


# ---- profit cap ------------------------------------------------------------------------------


@given(
    profit=st.integers(min_value=-(10**20), max_value=10**24),
    gas=st.integers(min_value=21_000, max_value=30_000_000),
    bps=st.integers(min_value=0, max_value=10_000),
)
def test_profit_cap_never_pays_more_than_the_share(profit: int, gas: int, bps: int) -> None:
    cap = profit_fee_cap(profit, gas, bps)
    assert isinstance(cap, int) and cap >= 0
    if profit <= 0:
        assert cap == 0
        return
    assert cap * gas * 10_000 <= profit * bps  # never more than profit * share
    assert (cap + 1) * gas > profit * bps // 10_000  # and it is the highest such fee


def test_unprofitable_at_this_base_fee_is_a_result() -> None:
    # 0.01 ETH profit, 500k gas, at most 50% to gas: cap = 10 gwei/gas.
    quote = price_tx(
        next_fee=5 * GWEI,
        priority_fee=GWEI,
        gas_limit=500_000,
        expected_profit_wei=10**16,
        max_gas_share_bps=5_000,
    )
    assert isinstance(quote, FeeQuote)
    assert quote.max_fee_per_gas == 6 * GWEI and not quote.capped_by_profit
    assert quote.max_cost_wei <= 10**16 // 2
    # Base fee x20: the same opportunity is skipped with the numbers, not an exception.
    spike = price_tx(
        next_fee=100 * GWEI,
        priority_fee=GWEI,
        gas_limit=500_000,
        expected_profit_wei=10**16,
        max_gas_share_bps=5_000,
    )
    assert isinstance(spike, Unprofitable)
    assert spike.fee_cap == 10 * GWEI
    assert "unprofitable at this base fee" in spike.reason
    # In between: capped by profit (alert-worthy) though still sendable.
    mid = price_tx(
        next_fee=9 * GWEI,
        priority_fee=GWEI // 2,
        gas_limit=500_000,
        expected_profit_wei=10**16,
        max_gas_share_bps=5_000,
        blocks_ahead=3,
    )
    assert isinstance(mid, FeeQuote) and mid.capped_by_profit and mid.max_fee_per_gas == 10 * GWEI


@given(
    base=st.integers(min_value=0, max_value=10**13),
    tip=st.integers(min_value=0, max_value=10**11),
    gas=st.integers(min_value=21_000, max_value=10_000_000),
    profit=st.integers(min_value=-(10**18), max_value=10**21),
    bps=st.integers(min_value=0, max_value=10_000),
    k=st.integers(min_value=1, max_value=5),
)
def test_price_tx_properties(base: int, tip: int, gas: int, profit: int, bps: int, k: int) -> None:
    q = price_tx(
        next_fee=base,
        priority_fee=tip,
        gas_limit=gas,
        expected_profit_wei=profit,
        max_gas_share_bps=bps,
        blocks_ahead=k,
    )
    cap = profit_fee_cap(profit, gas, bps)
    if isinstance(q, Unprofitable):
        assert cap < base + tip or profit <= 0
    else:
        assert profit > 0
        assert base + tip <= q.max_fee_per_gas <= cap
        assert q.max_fee_per_gas <= fee_caps_for_target(base, k, tip).max_fee_per_gas
        assert q.max_cost_wei * 10_000 <= profit * bps


# ---- replacement bumps -----------------------------------------------------------------------


def test_min_replacement_rounds_up() -> None:
    assert min_replacement(100) == 110
    assert min_replacement(101) == 112  # 111.1 -> 112: geth's floor threshold is then always met
    assert min_replacement(0) == 1
    assert min_replacement(5) == 6


@given(
    fee=st.integers(min_value=1, max_value=10**13),
    tip_share=st.integers(min_value=0, max_value=100),
    cap=st.integers(min_value=0, max_value=10**14),
    bps=st.integers(min_value=1_000, max_value=5_000),
)
def test_bump_is_a_valid_replacement_never_above_the_cap(
    fee: int, tip_share: int, cap: int, bps: int
) -> None:
    old = FeeCaps(fee, fee * tip_share // 100)
    new = bump_fees(old, cap=cap, bump_bps=bps)
    if new is None:
        # Only when no valid replacement fits under the cap.
        assert min_replacement(fee) > cap or min_replacement(old.max_priority_fee_per_gas) > cap
        return
    assert is_valid_replacement(old, new)
    assert new.max_fee_per_gas <= cap
    assert new.max_priority_fee_per_gas <= new.max_fee_per_gas
    # geth's check, literally: new >= old * (100 + 10) / 100 (integer), and strictly greater.
    assert (
        new.max_fee_per_gas >= old.max_fee_per_gas * 110 // 100 and new.max_fee_per_gas > old.max_fee_per_gas
    )
    assert new.max_priority_fee_per_gas >= old.max_priority_fee_per_gas * 110 // 100
    assert new.max_priority_fee_per_gas > old.max_priority_fee_per_gas


def test_bump_ladder_stops_at_the_cap() -> None:
    cur = FeeCaps(2 * GWEI, GWEI)
    ladder = [cur]
    while (nxt := bump_fees(cur, cap=10 * GWEI)) is not None:
        ladder.append(nxt)
        cur = nxt
    assert len(ladder) > 5
    assert all(c.max_fee_per_gas <= 10 * GWEI for c in ladder)
    assert all(
        b.max_fee_per_gas * 100 >= a.max_fee_per_gas * 110 for a, b in zip(ladder, ladder[1:], strict=False)
    )
    with pytest.raises(ValueError):
        bump_fees(cur, cap=10 * GWEI, bump_bps=500)
