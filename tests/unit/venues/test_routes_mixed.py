"""Routes across venues and split sales, on exact synthetic V2 / V3 / Balancer states (no node):
cross-venue two-hop routes quoted hop by hop on their own venues, `best_split` against brute force over
every bps, the executor's split reproducing the quoted amounts, legs that share a pool quoted in order."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import pytest

from keeper.executors.executor_contract import BalancerRoute, MixedRoute, RouteLeg, V2Route, V3Route
from strategies.venues.base import Quote, RouteKind, Venue
from strategies.venues.router import (
    BPS,
    MIXED,
    Route,
    best_route,
    best_split,
    candidate_routes,
    path_rate,
    requote,
    split_route,
)
from tests.unit.peg.cases import (
    address,
    balancer_state,
    balancer_venue,
    v2_state,
    v2_venue,
    v3_state,
    v3_venue,
)

A = "0x" + "a1" * 20  # e.g. WETH
B = "0x" + "b1" * 20  # e.g. USDC
C = "0x" + "c1" * 20  # connector (e.g. DAI)
D = "0x" + "d1" * 20  # a second stablecoin


def by_name(venues: Sequence[Venue]) -> dict[str, Venue]:
    return {v.name: v for v in venues}


def sequential(venues: Mapping[str, Venue], legs: Sequence[Sequence[Quote]], amounts: Sequence[int]) -> int:
    """The legs' total quoted the slow way: every hop on its venue, the venue replaced by the state the
    hop leaves before the next hop (of any leg) is quoted."""
    working = dict(venues)
    total = 0
    for leg, amount in zip(legs, amounts, strict=True):
        for hop in leg:
            q = working[hop.venue].quote_exact_in(hop.token_in, hop.token_out, amount, pool=hop.pool)
            assert q is not None
            working[hop.venue] = working[hop.venue].apply(q)
            amount = q.amount_out
        total += amount
    return total


def market(rng: random.Random, *, depth_v3: float = 1.0, depth_v2: float = 1.0) -> list[Venue]:
    """A/B on V3 (0.05%) and V2, A/C on V3, C/B on V2, and a Balancer stable pool of B, C, D."""
    price = rng.uniform(1500, 3000)  # B per A (both 18 decimals here)
    ab3 = v3_state(
        address(1, 0x31), A, B, price, int(depth_v3 * 10**21), fee=500, concentration=5, width_ticks=300
    )
    ac3 = v3_state(address(2, 0x31), A, C, price * rng.uniform(0.999, 1.001), int(depth_v3 * 10**21), fee=500)
    ab2 = v2_state(address(1, 0x21), A, B, price * rng.uniform(0.998, 1.002), int(depth_v2 * 4 * 10**20))
    cb2 = v2_state(address(2, 0x21), C, B, rng.uniform(0.999, 1.001), int(depth_v2 * 10**24))
    bal = balancer_state(address(1, 0xBA), [B, C, D], [18, 18, 18], 3_000_000, amp=200_000)
    return [v3_venue([ab3, ac3]), v2_venue([ab2, cb2]), balancer_venue([bal])]


def test_two_hops_on_two_venues_are_quoted_hop_by_hop_and_run_as_one_mixed_leg() -> None:
    vs = market(random.Random(1), depth_v2=0.01)  # V2's C/B is shallow: C -> B is best on Balancer
    amount = 30 * 10**18
    routes = candidate_routes(vs, A, B, amount, via=[C])
    cross = [r for r in routes if r.venue == MIXED]
    assert cross, "no cross-venue path"
    names = by_name(vs)
    for r in cross:
        assert r.kind is RouteKind.MIXED and not r.is_split and len(r.hops) == 2
        assert r.hops[0].venue != r.hops[1].venue
        assert r.amount_out == sequential(names, [r.hops], [amount])
        assert isinstance(r.executor_route, MixedRoute) and len(r.executor_route.legs) == 1
        leg = r.executor_route.legs[0]
        assert leg.bps == BPS and [h.venue for h in leg.hops] == [h.kind for h in r.hops]
        again = requote(names, r, amount // 7)
        assert again is not None and again.amount_out == sequential(names, [r.hops], [amount // 7])
        assert [h.pool for h in again.hops] == [h.pool for h in r.hops]
    # Through Balancer: its hop carries the pool id.
    bal = next(r for r in cross if r.hops[1].kind is RouteKind.BALANCER_V2)
    assert isinstance(bal.executor_route, MixedRoute)
    hop = bal.executor_route.legs[0].hops[1]
    assert isinstance(hop, BalancerRoute) and hop.pool_ids == (vs[2].pool_id(bal.hops[1].pool).lower(),)  # type: ignore[attr-defined]
    best = best_route(vs, A, B, amount, via=[C])
    assert best is not None and best.amount_out == routes[0].amount_out


def test_same_venue_hops_keep_that_venues_route() -> None:
    vs = market(random.Random(2))
    route = split_route(
        [
            (
                vs[0].quote_exact_in(A, C, 10**18),  # type: ignore[list-item]
            )
        ]
    )
    assert isinstance(route.executor_route, V3Route) and route.venue == "uniswap_v3"


def test_a_mixed_leg_merges_consecutive_hops_of_one_venue() -> None:
    vs = market(random.Random(3))
    q1 = vs[0].quote_exact_in(A, C, 10**18)
    assert q1 is not None
    q2 = vs[2].quote_exact_in(C, D, q1.amount_out)
    assert q2 is not None
    q3 = vs[2].apply(q2).quote_exact_in(D, B, q2.amount_out)
    assert q3 is not None
    route = split_route([(q1, q2, q3)], pool_ids=vs[2].pool_id)  # type: ignore[attr-defined]
    assert isinstance(route.executor_route, MixedRoute)
    (leg,) = route.executor_route.legs
    assert [type(h) for h in leg.hops] == [V3Route, BalancerRoute]
    assert leg.hops[1].tokens == (C, D, B)


def brute_force(
    venues: Mapping[str, Venue], first: Route, second: Route, amount: int, step: int = 1
) -> tuple[int, int]:
    """(best total, its bps) over every `step`-th share of the first leg, each quoted exactly."""
    best = (-1, 0)
    for b in range(1, BPS, step):
        one = amount * b // BPS
        if one <= 0 or amount - one <= 0:
            continue
        legs = [first.hops, second.hops]
        try:
            total = sequential(venues, legs, [one, amount - one])
        except AssertionError:
            continue
        best = max(best, (total, b))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_best_split_matches_brute_force_over_every_bps(seed: int) -> None:
    rng = random.Random(seed)
    vs = market(rng, depth_v3=rng.uniform(0.3, 3), depth_v2=rng.uniform(0.3, 3))
    names = by_name(vs)
    amount = int(rng.uniform(50, 800) * 10**18)
    direct = [r for r in candidate_routes(vs, A, B, amount) if len(r.hops) == 1]
    assert len(direct) == 2
    first, second = direct
    split = best_split(names, first, second, amount)
    brute, brute_b = brute_force(names, first, second, amount)
    single = max(first.amount_out, second.amount_out)
    assert brute > single  # deep-ish and similar pools: a split pays
    assert split is not None
    gain, brute_gain = split.amount_out - single, brute - single
    assert split.amount_out <= brute
    assert brute_gain - gain <= max(2, brute_gain // 10_000), (split.executor_route, brute_b)
    # What the contract runs: its split of the input gives exactly the legs' quoted inputs.
    assert isinstance(split.executor_route, MixedRoute) and split.is_split
    legs = split.legs
    assert split.executor_route.split(amount) == [leg[0].amount_in for leg in legs]
    assert split.amount_in == amount and split.amount_out == sum(leg[-1].amount_out for leg in legs)
    assert list(split.hops) == [h for leg in legs for h in leg]
    assert split.amount_out == sequential(names, legs, [leg[0].amount_in for leg in legs])
    again = requote(names, split, amount)
    assert again is not None and again.hops == split.hops
    # A smaller amount on the same split: the contract's floors again.
    smaller = requote(names, split, amount // 3 + 1)
    assert smaller is not None
    assert [leg[0].amount_in for leg in smaller.legs] == split.executor_route.split(amount // 3 + 1)


def test_the_split_total_is_concave_in_the_share() -> None:
    vs = market(random.Random(7))
    names = by_name(vs)
    amount = 400 * 10**18
    first, second = [r for r in candidate_routes(vs, A, B, amount) if len(r.hops) == 1]
    totals = [
        sequential(names, [first.hops, second.hops], [amount * b // BPS, amount - amount * b // BPS])
        for b in range(100, BPS, 100)
    ]
    steps = [y - x for x, y in zip(totals, totals[1:])]
    assert all(b <= a + 2 for a, b in zip(steps, steps[1:]))  # non-increasing slope (up to roundings)


def test_no_split_when_one_path_is_better_at_every_share() -> None:
    vs = market(random.Random(4), depth_v2=0.001)  # V2's A/B is nearly empty
    names = by_name(vs)
    amount = 10**18
    first, second = [r for r in candidate_routes(vs, A, B, amount) if len(r.hops) == 1]
    assert best_split(names, first, second, amount) is None
    # A split that cannot pay its leg's cost either.
    vs = market(random.Random(4))
    names = by_name(vs)
    amount = 100 * 10**18
    first, second = [r for r in candidate_routes(vs, A, B, amount) if len(r.hops) == 1]
    found = best_split(names, first, second, amount)
    assert found is not None
    gain = found.amount_out - max(first.amount_out, second.amount_out)
    assert best_split(names, first, second, amount, min_gain=gain + 1) is None


def test_legs_that_share_a_pool_are_quoted_in_execution_order() -> None:
    """A -> C on the same V3 pool in both legs, then C -> B on V2 or on Balancer: the second leg's first
    hop sees the first leg's swap; the share is still found (against brute force on a grid)."""
    vs = market(random.Random(5), depth_v3=5, depth_v2=100)
    names = by_name(vs)
    amount = 300 * 10**18
    via_c = [
        r
        for r in candidate_routes(vs, A, B, amount, via=[C])
        if len(r.hops) == 2 and r.hops[0].venue == "uniswap_v3"
    ]
    on_v2 = next(r for r in via_c if r.hops[1].venue == "uniswap_v2")
    on_bal = next(r for r in via_c if r.hops[1].venue == "balancer_stable")
    assert on_v2.hops[0].pool == on_bal.hops[0].pool
    split = best_split(names, on_bal, on_v2, amount)
    assert split is not None
    legs = split.legs
    assert split.amount_out == sequential(names, legs, [leg[0].amount_in for leg in legs])
    # The second leg's A -> C is quoted on the pool after the first leg's.
    fresh = names["uniswap_v3"].quote_exact_in(A, C, legs[1][0].amount_in, pool=legs[1][0].pool)
    assert fresh is not None and legs[1][0].amount_out < fresh.amount_out
    brute, _ = brute_force(names, on_bal, on_v2, amount, step=25)
    assert split.amount_out >= brute - max(2, (brute - max(on_bal.amount_out, on_v2.amount_out)) // 1000)


def test_path_rate_of_a_split_weights_its_legs() -> None:
    vs = market(random.Random(6))
    names = by_name(vs)
    amount = 200 * 10**18
    first, second = [r for r in candidate_routes(vs, A, B, amount) if len(r.hops) == 1]
    split = best_split(names, first, second, amount)
    assert split is not None
    rate = path_rate(names, split, marginal=True)
    assert rate is not None
    step = amount // 10**6
    more = requote(names, split, amount + step)
    assert more is not None
    gained = more.amount_out - split.amount_out
    assert abs(gained * rate[1] - step * rate[0]) <= step * rate[0] // 1000
    spot = path_rate(names, split, marginal=False)
    assert spot is not None and split.amount_out * spot[1] <= amount * spot[0]


def test_split_route_checks_the_contracts_split() -> None:
    vs = market(random.Random(8))
    q1 = vs[0].quote_exact_in(A, B, 3 * 10**18)
    q2 = vs[1].quote_exact_in(A, B, 7 * 10**18)
    assert q1 is not None and q2 is not None
    route = split_route([(q1,), (q2,)], (3000, 7000))
    assert route.executor_route == MixedRoute(
        (RouteLeg(3000, (V3Route((A, B), (500,)),)), RouteLeg(7000, (V2Route((A, B)),)))
    )
    assert route.tokens == (A, B) and route.venue == MIXED
    with pytest.raises(ValueError, match="split"):
        split_route([(q1,), (q2,)], (4000, 6000))
