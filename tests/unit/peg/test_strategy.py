"""The peg strategy's per-block search: only spreads with a pool whose state changed are sized again."""

from __future__ import annotations

from typing import Any

from strategies.peg.pegs import TargetReader
from strategies.peg.sizing import PegOpportunity, best_opportunities
from strategies.peg.strategy import PegStrategy
from strategies.venues.base import Venue
from tests.unit.peg.cases import address, make_peg, v2_state, v2_venue

A, B = "0x" + "a1" * 20, "0x" + "b1" * 20
C, D = "0x" + "c1" * 20, "0x" + "d1" * 20
DEPTH = 10_000 * 10**18


def venues(cd_cheap: float = 0.98) -> list[Venue]:
    return [
        v2_venue([v2_state(address(1), A, B, 0.97, DEPTH), v2_state(address(3), C, D, cd_cheap, DEPTH)]),
        v2_venue(
            [v2_state(address(2), A, B, 1.0, DEPTH), v2_state(address(4), C, D, 1.0, DEPTH)], name="sushiswap"
        ),
    ]


def test_only_spreads_with_a_changed_pool_are_sized_again() -> None:
    pegs = [make_peg(A, B, name="A/B"), make_peg(C, D, name="C/D")]
    calls: list[Any] = []

    def spy(*args: Any, **kw: Any) -> list[PegOpportunity]:
        calls.append(kw.get("changed_pools"))
        return best_opportunities(*args, **kw)

    strategy = PegStrategy(rpc=None, pegs=pegs, venues=venues(), targets=TargetReader(pegs), find=spy)  # type: ignore[arg-type]
    strategy._live = venues()
    strategy.targets = {"A/B": (1, 1), "C/D": (1, 1)}  # what the target reader gives fixed 1:1 pegs
    first = strategy._search()
    assert calls == [None] and {o.peg.name for o in first} == {"A/B", "C/D"}
    strategy.opportunities = first
    # The same states again: nothing is sized, the block's opportunities are the last ones.
    strategy._live = venues()
    assert strategy._search() == first and calls == [None]
    # C/D's cheap pool moved: only its spread is sized again; A/B's is kept as it was.
    strategy._live = venues(cd_cheap=0.95)
    again = strategy._search()
    assert calls[-1] == {address(3).lower()}
    full = best_opportunities(pegs, {}, strategy._live)
    assert [(o.peg.name, o.amount_in, o.profit) for o in again] == [
        (o.peg.name, o.amount_in, o.profit) for o in full
    ]
    # A target that moved: everything is sized again.
    strategy.opportunities = again
    strategy.targets = {"A/B": (101, 100), "C/D": (1, 1)}
    strategy._search()
    assert calls[-1] is None
