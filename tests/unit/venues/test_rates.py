"""Venue rates (spot and marginal) and the router's path helpers, on Uniswap V2/V3 states set directly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.venues.base import QuoteError
from strategies.venues.router import best_route, candidate_routes, requote
from tests.unit.liquidations.crash_block import addr, venues

amounts = st.integers(min_value=10**6, max_value=10**24)


@settings(max_examples=200, deadline=None)
@given(amounts, st.sampled_from([("WETH", "USDC"), ("USDC", "WETH"), ("WBTC", "WETH"), ("DAI", "USDC")]))
def test_spot_rate_bounds_every_quote_and_marginal_rate_is_the_slope(
    amount: int, pair: tuple[str, str]
) -> None:
    a, b = addr(pair[0]), addr(pair[1])
    for venue in venues(2000.0):
        for pool in venue.pools(a, b):
            try:
                q = venue.quote_exact_in(a, b, amount, pool=pool)
            except QuoteError:
                continue  # pays nothing (dust) or beyond the pool
            if q is None or q.amount_out < 10**3:
                continue
            spot = venue.spot_rate(a, b, pool)  # type: ignore[attr-defined]
            assert spot is not None
            assert q.amount_out * spot[1] <= amount * spot[0]
            # Concave: the next step pays at most the marginal rate after this quote, and at least the
            # marginal rate after the next step (up to the roundings: 1 unit of input for the fee, 1 of
            # output for each quote).
            step = max(1, amount // 1000)
            try:
                q2 = venue.quote_exact_in(a, b, amount + step, pool=pool)
            except QuoteError:
                continue
            assert q2 is not None
            after = venue.marginal_rate(q)  # type: ignore[attr-defined]
            after2 = venue.marginal_rate(q2)  # type: ignore[attr-defined]
            assert after is not None and after2 is not None
            gained = q2.amount_out - q.amount_out
            assert gained * after[1] <= (step + 1) * after[0] + 2 * after[1]
            assert gained * after2[1] >= (step - 1) * after2[0] - 2 * after2[1]
            assert after[0] * spot[1] <= spot[0] * after[1]  # the rate only falls


def test_candidate_routes_hold_every_path_and_requote_pins_them() -> None:
    vs = venues(2000.0)
    weth, usdc, usdt = addr("WETH"), addr("USDC"), addr("USDT")
    amount = 50 * 10**18
    paths = candidate_routes(vs, weth, usdt, amount, via=[usdc])
    assert len(paths) >= 2  # V2 direct, and WETH -> USDC -> USDT on V3
    assert {len(r.hops) for r in paths} == {1, 2}
    outs = [r.amount_out for r in paths]
    assert outs == sorted(outs, reverse=True)
    best = best_route(vs, weth, usdt, amount, via=[usdc])
    assert best is not None and best.amount_out == outs[0]
    by_name = {v.name: v for v in vs}
    for route in paths:
        again = requote(by_name, route, amount)
        assert again is not None
        assert [h.pool for h in again.hops] == [h.pool for h in route.hops]
        assert again.amount_out == route.amount_out
        smaller = requote(by_name, route, amount // 3)
        assert smaller is not None and smaller.amount_out < route.amount_out
    # Every pool of a pair is its own path (both WETH/USDC fee tiers on V3, and V2).
    direct = candidate_routes(vs, weth, usdc, amount)
    assert len({r.hops[0].pool for r in direct}) == 3


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=400),
    st.sampled_from([("WETH", "USDC"), ("USDC", "WETH"), ("WBTC", "WETH"), ("WETH", "WBTC")]),
)
def test_amount_in_for_rate_is_where_the_marginal_rate_crosses_it(
    permille_below: int, pair: tuple[str, str]
) -> None:
    a, b = addr(pair[0]), addr(pair[1])
    for venue in venues(2000.0):
        for pool in venue.pools(a, b):
            spot = venue.spot_rate(a, b, pool)  # type: ignore[attr-defined]
            assert spot is not None
            rate = (spot[0] * (1000 - permille_below), spot[1] * 1000)  # up to 40% below the spot rate
            x = venue.amount_in_for_rate(a, b, pool, rate)  # type: ignore[attr-defined]
            assert x is not None and x > 0
            at = venue.quote_exact_in(a, b, x, pool=pool)
            beyond = venue.quote_exact_in(a, b, x + max(2, x // 10**6), pool=pool)
            assert at is not None and beyond is not None
            m_at = venue.marginal_rate(at)  # type: ignore[attr-defined]
            m_beyond = venue.marginal_rate(beyond)  # type: ignore[attr-defined]
            # At x the swap still pays at least `rate` at the margin (up to rounding), just beyond it less.
            assert m_at[0] * rate[1] * 10**6 >= rate[0] * m_at[1] * (10**6 - 1)
            assert m_beyond[0] * rate[1] <= rate[0] * m_beyond[1]
            assert venue.amount_in_for_rate(a, b, pool, (spot[0] * 2, spot[1])) == 0  # type: ignore[attr-defined]
