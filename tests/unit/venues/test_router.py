"""best_route over small fake venues: selection, ties, two-hop chaining through `apply`, encoding."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Self

import pytest

from keeper.executors.executor_contract import (
    MixedRoute,
    RouteLeg,
    V2Route,
    V3Route,
    encode_v2_path,
    encode_v3_path,
)
from strategies.venues.base import Pair, Quote, QuoteError, RouteKind, Venue, pair_key
from strategies.venues.router import MIXED, Route, best_route, executor_route

A = "0x" + "aa" * 20
B = "0x" + "bb" * 20
C = "0x" + "cc" * 20  # connector 1
D = "0x" + "dd" * 20  # connector 2
E = "0x" + "ee" * 20  # a token nobody trades


@dataclass
class FakePool:
    """Constant product over any number of tokens (swap X->Y uses reserves of X and Y), or a fixed
    rate (out = in * num // den) when `rate` is set; `broken` raises QuoteError on every quote."""

    address: str
    reserves: dict[str, int]
    fee: int = 30
    rate: tuple[int, int] | None = None
    broken: bool = False
    no_direct: tuple[str, str] | None = None
    """A pair of its tokens this pool does not trade with each other."""

    def trades(self, t_in: str, t_out: str) -> bool:
        if t_in == t_out or t_in not in self.reserves or t_out not in self.reserves:
            return False
        return self.no_direct is None or {t_in, t_out} != set(self.no_direct)

    def out(self, t_in: str, t_out: str, amount: int) -> int:
        if self.broken:
            raise QuoteError(f"{self.address}: cannot quote")
        if self.rate is not None:
            return amount * self.rate[0] // self.rate[1]
        r_in, r_out = self.reserves[t_in], self.reserves[t_out]
        x = amount * (10_000 - self.fee)
        return x * r_out // (r_in * 10_000 + x)


@dataclass
class FakeVenue:
    name: str
    pools_: list[FakePool]
    kind: RouteKind = RouteKind.UNISWAP_V3
    block: int | None = 1
    quotes_asked: list[tuple[str, str, int]] = field(default_factory=list)

    def pairs(self) -> frozenset[Pair]:
        return frozenset(
            pair_key(a, b) for p in self.pools_ for a in p.reserves for b in p.reserves if a != b
        )

    def pools(self, token_a: str, token_b: str) -> tuple[str, ...]:
        return tuple(p.address for p in self.pools_ if p.trades(token_a, token_b))

    async def refresh(self, rpc: Any, block: int) -> None:
        self.block = block

    def quote_exact_in(
        self, token_in: str, token_out: str, amount_in: int, *, pool: str | None = None
    ) -> Quote | None:
        self.quotes_asked.append((token_in, token_out, amount_in))
        best: Quote | None = None
        for p in self.pools_:
            if not p.trades(token_in, token_out):
                continue
            if pool is not None and pool != p.address:
                continue
            out = p.out(token_in, token_out, amount_in)
            after = dict(p.reserves)
            after[token_in] += amount_in
            after[token_out] -= out
            q = Quote(
                self.name, self.kind, p.address, token_in, token_out, amount_in, out, p.fee, self.block, after
            )
            if best is None or q.amount_out > best.amount_out:
                best = q
        return best

    def apply(self, quote: Quote) -> Self:
        out = copy.copy(self)
        out.pools_ = [
            FakePool(p.address, dict(quote.state_after), p.fee, p.rate, p.broken)
            if p.address == quote.pool
            else p
            for p in self.pools_
        ]
        return out


def cp(address: str, **reserves: int) -> FakePool:
    names = {"a": A, "b": B, "c": C, "d": D}
    return FakePool(address, {names[k]: v for k, v in reserves.items()})


def rate(address: str, t_in: str, t_out: str, num: int, den: int, fee: int = 30) -> FakePool:
    return FakePool(address, {t_in: 10**30, t_out: 10**30}, fee=fee, rate=(num, den))


def test_fake_venue_satisfies_the_protocol() -> None:
    assert isinstance(FakeVenue("x", []), Venue)


def test_direct_beats_two_hop_when_it_pays_more() -> None:
    venue = FakeVenue(
        "v3", [cp("p_ab", a=10**24, b=10**24), cp("p_ac", a=10**22, c=10**22), cp("p_cb", c=10**22, b=10**22)]
    )
    route = best_route([venue], A, B, 10**18, via=(C,))
    assert route is not None
    assert [h.pool for h in route.hops] == ["p_ab"]
    x = 10**18 * 9970
    assert route.amount_out == x * 10**24 // (10**24 * 10_000 + x)
    assert route.executor_route == V3Route((A, B), (30,))
    assert route.path == encode_v3_path([A, B], [30])
    assert (route.token_in, route.token_out, route.amount_in, route.kind) == (
        A,
        B,
        10**18,
        RouteKind.UNISWAP_V3,
    )


def test_two_hop_wins_when_the_direct_pool_is_shallow() -> None:
    venue = FakeVenue(
        "v3", [cp("p_ab", a=10**19, b=10**19), cp("p_ac", a=10**24, c=10**24), cp("p_cb", c=10**24, b=10**24)]
    )
    amount = 10**18
    route = best_route([venue], A, B, amount, via=(C,))
    assert route is not None
    assert [h.pool for h in route.hops] == ["p_ac", "p_cb"]
    assert route.tokens == (A, C, B)
    mid = amount * 9970 * 10**24 // (10**24 * 10_000 + amount * 9970)
    assert route.hops[0].amount_out == route.hops[1].amount_in == mid
    assert route.amount_out == mid * 9970 * 10**24 // (10**24 * 10_000 + mid * 9970)
    assert route.path == encode_v3_path([A, C, B], [30, 30])
    direct = venue.quote_exact_in(A, B, amount)
    assert direct is not None and route.amount_out > direct.amount_out


def test_two_hops_through_one_pool_see_the_first_hop() -> None:
    """A three-token pool that does not trade A/B directly: the route is A->C->B in that one pool, and
    the second hop must be quoted on the state the first hop leaves (via `apply`)."""
    reserves = {A: 10**21, B: 10**21, C: 10**21}
    venue = FakeVenue("v3", [FakePool("tri", dict(reserves), no_direct=(A, B))])
    amount = 10**20
    route = best_route([venue], A, B, amount, via=(C,))
    assert route is not None
    assert [h.pool for h in route.hops] == ["tri", "tri"]
    mid = venue.pools_[0].out(A, C, amount)
    applied = FakePool("tri", {A: 10**21 + amount, B: 10**21, C: 10**21 - mid}).out(C, B, mid)
    stale = venue.pools_[0].out(C, B, mid)
    assert applied > stale  # C is scarcer after hop 1: selling it back pays more
    assert route.amount_out == applied
    assert route.hops[1].state_after == {A: 10**21 + amount, B: 10**21 - applied, C: 10**21}
    assert venue.pools_[0].reserves == reserves  # apply() left the venue itself alone


def test_ties_go_to_direct_then_to_the_first_venue() -> None:
    # Direct rate 4 and two-hop 2 x 2: equal outputs, direct wins.
    venue = FakeVenue("v3", [rate("ab", A, B, 4, 1), rate("ac", A, C, 2, 1), rate("cb", C, B, 2, 1)])
    route = best_route([venue], A, B, 1000, via=(C,))
    assert route is not None
    assert route.amount_out == 4000 and len(route.hops) == 1
    # Same output on two venues: the first listed wins, in either order.
    v1 = FakeVenue("first", [rate("x", A, B, 3, 1)])
    v2 = FakeVenue("second", [rate("y", A, B, 3, 1)], kind=RouteKind.UNISWAP_V2)
    r12 = best_route([v1, v2], A, B, 10, via=())
    r21 = best_route([v2, v1], A, B, 10, via=())
    assert r12 is not None and r21 is not None
    assert (r12.venue, r21.venue) == ("first", "second")
    assert r21.executor_route == V2Route((A, B)) and r21.path == encode_v2_path([A, B])
    # Two connectors with equal results: the first in `via` wins.
    venue = FakeVenue(
        "v3", [rate("ac", A, C, 2, 1), rate("cb", C, B, 3, 1), rate("ad", A, D, 3, 1), rate("db", D, B, 2, 1)]
    )
    r_cd = best_route([venue], A, B, 7, via=(C, D))
    r_dc = best_route([venue], A, B, 7, via=(D, C))
    assert r_cd is not None and r_dc is not None
    assert r_cd.amount_out == r_dc.amount_out == 42
    assert (r_cd.tokens[1], r_dc.tokens[1]) == (C, D)
    # Within a venue, the venue's own order decides ties between pools (the first pool here).
    venue = FakeVenue(
        "v3",
        [
            FakePool("lo", {A: 1, B: 1}, fee=100, rate=(5, 1)),
            FakePool("hi", {A: 1, B: 1}, fee=500, rate=(5, 1)),
        ],
    )
    r = best_route([venue], A, B, 10)
    assert r is not None and r.hops[0].pool == "lo"


def test_none_when_no_path() -> None:
    venue = FakeVenue("v3", [rate("ac", A, C, 2, 1), rate("db", D, B, 2, 1)])
    assert best_route([venue], A, B, 100, via=(C, D)) is None
    assert best_route([], A, B, 100, via=(C,)) is None
    assert best_route([venue], A, E, 100, via=(C, D)) is None


def test_hops_on_two_venues_are_one_mixed_leg() -> None:
    first = FakeVenue("v3", [rate("ac", A, C, 2, 1)])
    second = FakeVenue("v2", [rate("cb", C, B, 2, 1)], kind=RouteKind.UNISWAP_V2)
    route = best_route([first, second], A, B, 100, via=(C,))
    assert route is not None and route.amount_out == 400 and route.venue == MIXED
    assert route.kind is RouteKind.MIXED and not route.is_split
    assert route.executor_route == MixedRoute((RouteLeg(10_000, (V3Route((A, C), (30,)), V2Route((C, B)))),))
    assert route.tokens == (A, C, B) and route.amount_in == 100


def test_connectors_equal_to_the_ends_are_skipped() -> None:
    venue = FakeVenue("v3", [rate("ab", A, B, 2, 1)])
    route = best_route([venue], A, B, 100, via=(A, B))
    assert route is not None and len(route.hops) == 1
    assert all(q[:2] == (A, B) for q in venue.quotes_asked)


def test_zero_first_hop_is_not_chained() -> None:
    venue = FakeVenue("v3", [rate("ac", A, C, 1, 1000), rate("cb", C, B, 1000, 1)])
    assert best_route([venue], A, B, 999, via=(C,)) is None
    assert (C, B, 0) not in venue.quotes_asked


def test_quote_errors_raise_unless_skipped() -> None:
    broken = FakePool("bad", {A: 1, B: 1}, rate=(10, 1), broken=True)
    venue = FakeVenue("v3", [rate("ac", A, C, 2, 1), rate("cb", C, B, 2, 1)])
    bad = FakeVenue("bad", [broken])
    with pytest.raises(QuoteError, match="cannot quote"):
        best_route([venue, bad], A, B, 10, via=(C,))
    route = best_route([venue, bad], A, B, 10, via=(C,), skip_errors=True)
    assert route is not None and route.amount_out == 40 and route.venue == "v3"


def test_bad_inputs() -> None:
    venue = FakeVenue("v3", [rate("ab", A, B, 2, 1)])
    with pytest.raises(ValueError, match="amount_in"):
        best_route([venue], A, B, 0)
    with pytest.raises(ValueError, match="same token"):
        best_route([venue], A, A.upper().replace("0X", "0x"), 10)


def test_executor_route_checks_hops() -> None:
    q1 = Quote("v3", RouteKind.UNISWAP_V3, "p1", A, C, 10, 20, 500, 1)
    q2 = Quote("v3", RouteKind.UNISWAP_V3, "p2", C, B, 20, 30, 3000, 1)
    assert executor_route([q1, q2]) == V3Route((A, C, B), (500, 3000))
    with pytest.raises(ValueError, match="one venue"):
        executor_route([q1, Quote("v2", RouteKind.UNISWAP_V2, "p2", C, B, 20, 30, 30, 1)])
    with pytest.raises(ValueError, match="chain"):
        executor_route([q1, Quote("v3", RouteKind.UNISWAP_V3, "p2", C, B, 21, 30, 3000, 1)])
    with pytest.raises(ValueError, match="at least one"):
        executor_route([])
    v2 = [Quote("v2", RouteKind.UNISWAP_V2, "p", A, B, 1, 2, 30, 1)]
    assert executor_route(v2) == V2Route((A, B))
    assert Route(tuple(v2), executor_route(v2)).path == encode_v2_path([A, B])
