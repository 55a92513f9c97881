"""The size and the (collateral, debt) pair of one liquidation, by the profit of the whole execution.

Pure and exact: for a request `debt_to_cover` = d of one pair, the Pool's amounts come from
`LiquidationTerms.outcome(d)` (what liquidationCall moves for that very d), the sale of the seized
collateral from the venues' exact quotes at the given pool state, and

    gross(d) = sale(collateral(d)) - debt repaid(d) - flash premium(d)        (debt-asset units)

with the Aave V3 flash premium `percentMul(d, premium)` on the flash-borrowed amount d.

Search, per pair. The largest useful request D is `terms.max_cover()` (the whole collateral when the
close factor allows it, else the close-factor maximum; beyond it nothing more is seized and only the
premium grows). Every path that sells the collateral into the debt asset (`candidate_routes`: each pool of
each venue, and two hops through each connector) is a candidate. On one path the sale is concave in its
input and the collateral linear in d, so gross(d) is unimodal on [1, D] (up to the protocol's roundings,
which `terms.smallest_request` removes: each size is taken at the first request of its collateral step):
- paths are sized in the order of an upper bound of their profit (sale at the spot rate, no slippage),
  and a path whose bound cannot beat the best found so far, or the caller's floor, is not quoted at all;
- on a path, D is kept when the profit still rises there (the path's marginal rate after the sale, times
  collateral per request, covers 1 + premium): one quote;
- otherwise the peak is where that slope crosses zero: in closed form for a one-pool path (the venue's
  `amount_in_for_rate`, checked by the slopes either side: four quotes), else by regula falsi (Illinois)
  on the slope, else (venues that give no rates, or whole-unit sales) by golden-section search; the best
  size evaluated wins.
Measured against brute force on 1000 random positions and pool states: `benchmarks/bench_liquidations.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from keeper.chain.units import percent_mul
from keeper.errors import KeeperError
from strategies.liquidations.common import LiquidationOutcome, LiquidationTerms, NotLiquidatable
from strategies.venues.base import Venue
from strategies.venues.router import (
    Route,
    best_route,
    best_split,
    candidate_routes,
    path_rate,
    requote,
)

__all__ = ["UNBOUNDED", "Execution", "PlanCache", "Sizer", "maximize_unimodal"]

FULL_SIZE_CHECK = 1000
"""Without rates: D is kept when gross(D - D / FULL_SIZE_CHECK) >= gross(D - 2 D / FULL_SIZE_CHECK)."""
WINDOW = 20_000
"""The golden-section search stops at a window of (upper end) / WINDOW sizes."""
MAX_STEPS = 120
ROOT_WINDOW = 2000
"""The slope search stops at a bracket of (its lower end) / ROOT_WINDOW: the size within 0.05% of the peak."""
PROBE_FRACTION = 256
"""The probe for a path's rate bound sells (largest sale) / PROBE_FRACTION ..."""
MIN_PROBE = 1000
"""... and at least this many units (below, integer rounding dominates: every path is sized)."""
MIN_ROOT_SALE = 10**6
"""Below this many collateral units at the largest size, the size search does not use slopes."""
UNBOUNDED = 2**256
BPS = 10_000
SPLIT_IMPACT_BPS = 5
"""A split of the sale over two paths is tried only when the best path's output at the largest size is
this many bps below its spot-rate value (the most any split can gain is that shortfall)."""
SPLIT_PARTNERS = 3
"""Paths (next best bounds) tried as the second leg of a split."""


@dataclass(frozen=True, slots=True)
class Execution:
    """One liquidation as it would execute: the Pool's amounts for `outcome.debt_to_cover`, the sale of
    `outcome.collateral_to_liquidator` on `route`, the flash premium, and the gross profit."""

    terms: LiquidationTerms
    outcome: LiquidationOutcome
    route: Route
    flash_premium: int
    gross_profit: int
    """route.amount_out - outcome.actual_debt_to_cover - flash_premium (debt-asset units)."""

    @property
    def debt_to_cover(self) -> int:
        return self.outcome.debt_to_cover

    @property
    def swap_out(self) -> int:
        return self.route.amount_out


def maximize_unimodal(f: Callable[[int], int | None], lo: int, hi: int, *, window: int = WINDOW) -> int:
    """An integer x in [lo, hi] maximizing a unimodal f (None counts as minus infinity), by golden-section
    search with reuse of the inner point, down to a window of max(2, hi_now // window); the best point
    evaluated is returned (ties: the larger x)."""
    if lo > hi:
        raise ValueError("empty interval")
    seen: dict[int, int | None] = {}

    def val(x: int) -> int | None:
        if x not in seen:
            seen[x] = f(x)
        return seen[x]

    def better(x: int, y: int) -> bool:
        """Whether f(x) > f(y), None being the lowest."""
        vx, vy = val(x), val(y)
        if vx is None:
            return False
        return vy is None or vx > vy

    a, b = lo, hi
    x1 = a + (b - a) * 382 // 1000
    x2 = a + b - x1
    for _ in range(MAX_STEPS):
        if b - a <= max(2, b // window):
            break
        if not a < x1 < x2 < b:
            x1 = a + (b - a) * 382 // 1000
            x2 = a + b - x1
            if not a < x1 < x2 < b:
                break
        if better(x2, x1):
            a, x1 = x1, x2
            x2 = a + b - x1
        else:
            b, x2 = x2, x1
            x1 = a + b - x2
    for x in range(a, b + 1) if b - a <= 4 else (a, b):
        val(x)
    best = None
    for x, v in seen.items():
        if v is None:
            continue
        if best is None or (v, x) > best:
            best = (v, x)
    return lo if best is None else best[1]


Plans = tuple[LiquidationOutcome, list[tuple[int, int, "Route"]], dict[int, Execution]] | None
"""(outcome at the largest size, [(profit bound, -index, path)], executions already quoted by index)."""
PlanCache = dict[tuple[int, int], tuple[LiquidationTerms, Plans]]
"""(id(terms), state version) -> (terms, plans)."""


class Sizer:
    """Sizes liquidations on one pool state (`venues`, by name; not modified)."""

    def __init__(
        self,
        venues: Mapping[str, Venue],
        *,
        connectors: Sequence[str] = (),
        flash_premium_bps: int = 0,
        paths: dict[tuple[str, str], list[Route]] | None = None,
        tops: dict[int, tuple[LiquidationTerms, LiquidationOutcome | None]] | None = None,
        planned: PlanCache | None = None,
        version: int = 0,
        spots: dict[tuple[int, str, str, str], tuple[int, int] | None] | None = None,
        max_request: Mapping[str, int] | None = None,
    ) -> None:
        self.venues = venues
        self.max_request = max_request or {}
        """Debt asset (lowercase) -> the largest debtToCover the flash lender can fund now (the request
        is flash-borrowed whole): sizes are searched below it. Absent: no limit known."""
        self.tops = {} if tops is None else tops
        """id(terms) -> (terms, `top(terms)`): the largest size's outcome does not depend on the pools."""
        self.version = version
        """Which pool state `venues` holds (the caller's counter): `_plans` results are kept per state."""
        self.planned: PlanCache = {} if planned is None else planned
        self.spots = {} if spots is None else spots
        """(version, venue, pool, token_in) -> that hop's spot rate on the state `version` (shared like
        `planned`: many paths and positions share hops)."""
        """(id(terms), version) -> the pair's paths and bounds on that state (`_plans`)."""
        self.paths = {} if paths is None else paths
        """(collateral, debt) -> the paths found for it (on any state: a path's tokens and pools do not
        change), shared across sizers of one block so that a pair valued again can be bounded first."""
        self.connectors = tuple(connectors)
        self.flash_premium_bps = flash_premium_bps
        self.quotes = 0
        """Route quotes made (for benchmarks)."""
        self.below_floor = False
        """Whether the last `best_for_pair` found that no path can reach its floor."""

    def premium(self, amount: int) -> int:
        """Aave V3 flashLoanSimple's premium: amount.percentMul(FLASHLOAN_PREMIUM_TOTAL)."""
        return percent_mul(amount, self.flash_premium_bps)

    def route_at(self, terms: LiquidationTerms, collateral: int) -> Route | None:
        """The best route selling `collateral` of the pair's collateral asset into its debt asset."""
        self.quotes += 1
        via = [
            c
            for c in self.connectors
            if c.lower() not in (terms.collateral_asset.lower(), terms.debt_asset.lower())
        ]
        return best_route(
            self.venues.values(),
            terms.collateral_asset,
            terms.debt_asset,
            collateral,
            via=via,
            skip_errors=True,
        )

    def execute(
        self,
        terms: LiquidationTerms,
        route: Route,
        debt_to_cover: int,
        *,
        outcome: LiquidationOutcome | None = None,
    ) -> Execution | None:
        """The execution of the smallest request seizing what `debt_to_cover` seizes
        (`terms.smallest_request`) on the path of `route`, or None where the Pool reverts (dust) or the
        path cannot take the collateral. `outcome`: that request's outcome, when known."""
        if outcome is None:
            try:
                outcome = terms.outcome(terms.smallest_request(debt_to_cover))
            except NotLiquidatable:
                return None
        if outcome.collateral_to_liquidator <= 0:
            return None
        self.quotes += 1
        sale = requote(self.venues, route, outcome.collateral_to_liquidator)
        if sale is None:
            return None
        premium = self.premium(outcome.debt_to_cover)
        gross = sale.amount_out - outcome.actual_debt_to_cover - premium
        return Execution(terms, outcome, sale, premium, gross)

    def on_route(
        self,
        terms: LiquidationTerms,
        route: Route,
        largest: int,
        *,
        rising: bool | None = None,
        seed: Execution | None = None,
    ) -> Execution | None:
        """The most profitable request in [1, largest] on the path of `route` (`largest` must not revert).

        `rising`: whether the profit still rises at `largest` (known from the path's marginal rate; None:
        test it with two more sizes just below). If it does, `largest` is the answer (unimodal); otherwise
        a golden-section search runs over the request when the collateral is finer than the debt asset
        (more collateral units than debt units seized), else over the collateral (each at its smallest
        request, `terms.request_for`): over the request, whole collateral units would make plateaus.
        `seed`: the execution at `largest` when already quoted."""
        runs: dict[int, Execution | None] = {}
        if seed is not None:
            runs[largest] = seed

        def gross(d: int) -> int | None:
            if d not in runs:
                runs[d] = self.execute(terms, route, d)
            ex = runs[d]
            return None if ex is None else ex.gross_profit

        sale = terms.max_collateral(largest)
        coarse = 0 < sale < largest
        top = sale if coarse else largest

        def knob(k: int) -> int | None:
            return gross(min(largest, terms.request_for(k)) if coarse else k)

        step = max(4, top // FULL_SIZE_CHECK)
        if rising is None and top > 8 * step:
            # Still rising just below the top (the top itself is left out of the test: at the request that
            # seizes the whole collateral the Pool repays a little less, a step up even when the rest falls).
            near, lower = knob(top - step), knob(top - 2 * step)
            rising = near is not None and (lower is None or near >= lower)
        gross(largest)
        if not rising:
            to_request = (lambda k: min(largest, terms.request_for(k))) if coarse else (lambda k: k)
            # The slope test needs sales large enough for whole units not to matter at top / 1024.
            if sale < MIN_ROOT_SALE or not (
                self._closed_form(runs, knob, to_request, route, top, largest)
                or self._root_search(runs, knob, to_request, top)
            ):
                maximize_unimodal(knob, 1, top)
        best = None
        for ex in runs.values():  # the best size evaluated
            if ex is not None and (
                best is None or (ex.gross_profit, ex.debt_to_cover) > (best.gross_profit, best.debt_to_cover)
            ):
                best = ex
        return best

    def _slope(self, ex: Execution | None) -> int | None:
        """The sign-carrying slope of the profit at `ex`'s size, relative, scaled by 1e18: marginal rate
        of the path after the sale * (collateral / request) - (1 + premium). None when unknown."""
        if ex is None:
            return None
        rate = self._path_rate(ex.route, marginal=True)
        if rate is None:
            return None
        c, d = ex.outcome.collateral_to_liquidator, ex.outcome.debt_to_cover
        num = rate[0] * c * BPS - rate[1] * d * (BPS + self.flash_premium_bps)
        return num * 10**18 // (rate[1] * d * BPS)

    def _closed_form(
        self,
        runs: dict[int, Execution | None],
        knob: Callable[[int], int | None],
        to_request: Callable[[int], int],
        route: Route,
        top: int,
        largest: int,
    ) -> bool:
        """A one-pool path: the venue says where its marginal rate falls to the break-even one
        (`amount_in_for_rate`), the size is that sale's (three sizes tried: it and 1/2000 either side) and
        the slopes there must change sign, else False (the caller searches)."""
        if len(route.hops) != 1:
            return False
        hop = route.hops[0]
        venue = self.venues.get(hop.venue)
        fn = getattr(venue, "amount_in_for_rate", None)
        at_top = runs.get(largest)
        if fn is None or at_top is None:
            return False
        c_top, d_top = at_top.outcome.collateral_to_liquidator, at_top.outcome.debt_to_cover
        if c_top <= 0:
            return False
        x = fn(hop.token_in, hop.token_out, hop.pool, ((BPS + self.flash_premium_bps) * d_top, BPS * c_top))
        if not x:
            return False
        k = max(1, min(top, x * top // c_top))
        width = max(1, k // ROOT_WINDOW)
        below, above = max(1, k - width), min(top, k + width)
        for point in (below, k, above):
            knob(point)
        s_below = self._slope(runs.get(to_request(below)))
        s_above = self._slope(runs.get(to_request(above)))
        return s_below is not None and s_above is not None and s_below >= 0 >= s_above

    def _root_search(
        self,
        runs: dict[int, Execution | None],
        knob: Callable[[int], int | None],
        to_request: Callable[[int], int],
        top: int,
    ) -> bool:
        """Where the profit's slope (`_slope`, from the path's marginal rate) crosses zero on [1, top], by
        the Illinois variant of regula falsi on the knob (one quote a step, superlinear), down to a bracket of
        (lower end) / ROOT_WINDOW; the sizes tried are left in `runs`. False when the slope is unknown or
        does not change sign (the caller then searches without it)."""

        def slope(k: int) -> int | None:
            knob(k)
            return self._slope(runs.get(to_request(k)))

        hi, s_hi = top, slope(top)
        lo = max(1, top // 1024)
        s_lo = slope(lo)
        if s_hi is None or s_lo is None or s_hi >= 0:
            return False
        if s_lo <= 0:
            if lo == 1:
                return True  # falling from the smallest size: the search is over
            hi, s_hi, lo = lo, s_lo, 1
            s_lo = slope(1)
            if s_lo is None or s_lo <= 0:
                return s_lo is not None
        side = 0
        for _ in range(40):
            if hi - lo <= max(2, lo // ROOT_WINDOW):
                break
            # Secant point, kept strictly inside and at least 1/64 of the bracket from its ends.
            x = lo + (hi - lo) * s_lo // (s_lo - s_hi)
            margin = max(1, (hi - lo) // 64)
            x = min(max(x, lo + margin), hi - margin)
            s_x = slope(x)
            if s_x is None:
                return False
            if s_x > 0:
                lo, s_lo = x, s_x
                if side == 1:
                    s_hi //= 2
                side = 1
            else:
                hi, s_hi = x, s_x
                if side == -1:
                    s_lo //= 2
                side = -1
        for k in (lo, hi):
            knob(k)
        return True

    def best_for_pair(
        self, terms: LiquidationTerms, *, floor: int | None = None, leg_cost: int = 0
    ) -> Execution | None:
        """The most profitable execution of one pair: size and route. None: no route or always reverts.

        Every path (`candidate_routes` at the largest size D, one quote each) is a candidate. With the
        venues' rates (`spot_rate`, `marginal_rate`), no other quote is needed unless the profit peaks
        below D: the sale is concave, so
        - out(x) <= x * spot rate of the path: the profit at any size is at most its value at D at that
          rate (the bound); paths whose bound cannot beat the best found so far (or `floor`) are skipped;
        - the profit still rises at D if marginal rate after the sale * dcollateral/ddebt >= 1 + premium:
          then D is the best size on that path; otherwise its size is searched (`on_route`).
        Venues without rates: the bound comes from a probe quote at D / 256 (valid from there up) and the
        rise from two quotes just below D.

        `floor`: the smallest gross profit worth having (debt-asset units; e.g. what covers gas, the
        builder's share and the minimum); paths whose bound is below it are not sized, and None is returned
        when no path can reach it (`self.below_floor` is then True).

        Splits: the best execution's sale, at its size, divided over its path and one of the next ones
        when that pays at least `leg_cost` (debt-asset units, e.g. the gas of the second leg) more
        (`_split`). The size is the best single path's (a split pays more per unit at the margin, so its
        own best size may be larger: not searched)."""
        self.below_floor = False
        found = self._plans(terms)
        if found is None:
            return None
        top, plans, seeds = found
        self.planned.pop((id(terms), self.version), None)  # the seeds are used once
        sale = top.collateral_to_liquidator
        if floor is not None and plans and plans[0][0] < floor:
            self.below_floor = True
            return None
        best: Execution | None = None
        best_worth = 0

        def worth(ex: Execution) -> int:
            return ex.gross_profit - (leg_cost * (len(ex.route.legs) - 1))

        # Every path that may win is quoted at D first (one quote each): its profit there is reached, so
        # a path whose spot bound is below the best of those cannot win; the others are sized in the
        # order of their tangent bounds (`tangent_bound`), until a bound cannot beat the best sized.
        quoted: list[tuple[int, int, Execution]] = []
        reached: int | None = None
        for bound, neg_i, route in plans:
            if reached is not None and bound <= reached:
                break
            if floor is not None and bound < floor:
                break
            seed = seeds.get(-neg_i) or self.execute(terms, route, top.debt_to_cover, outcome=top)
            if seed is None:
                continue
            tight = self.tangent_bound(seed)
            quoted.append((bound if tight is None else min(bound, tight), neg_i, seed))
            reached = seed.gross_profit if reached is None else max(reached, seed.gross_profit)
        quoted.sort(key=lambda t: (t[0], t[1]), reverse=True)
        for bound, _, seed in quoted:
            if best is not None and bound <= best_worth:
                break
            if floor is not None and bound < floor:
                break
            rising = None
            marginal = self._path_rate(seed.route, marginal=True)
            if marginal is not None:
                # d(sale)/d(request) ~ sale / request along the non-capped branch (through the origin).
                lhs = marginal[0] * sale * BPS
                rising = lhs >= marginal[1] * top.debt_to_cover * (BPS + self.flash_premium_bps)
            ex = self.on_route(terms, seed.route, top.debt_to_cover, rising=rising, seed=seed)
            if ex is not None and (best is None or worth(ex) > best_worth):
                best, best_worth = ex, worth(ex)
        if best is not None:
            best = self._split(best, [route for _, _, route in plans], leg_cost)
        return best

    def tangent_bound(self, ex: Execution) -> int | None:
        """An upper bound of the gross profit on `ex`'s path at any size up to ex's (its largest), from
        its exact sale there: a concave sale lies below its tangent at that size (marginal rate m) and
        below the spot-rate line (s), so with k the cost (repaid + premium) per unit of collateral sold,
        profit(c) <= min(c s, out - (C - c) m) - k c, whose maximum is at C when m >= k, else where the
        two lines meet. Plus a few units for the roundings. None: no rates (or a split: its legs' rates
        after a shared pool are not its slope)."""
        route = ex.route
        if route.is_split:
            return None
        c_top = ex.outcome.collateral_to_liquidator
        if c_top <= 0:
            return None
        spot = self._path_rate(route, marginal=False)
        after = self._path_rate(route, marginal=True)
        if spot is None or after is None:
            return None
        out = route.amount_out
        cost = ex.outcome.actual_debt_to_cover + ex.flash_premium
        slack = 3 + -(-cost // c_top)
        s_n, s_d = spot
        m_n, m_d = after
        # m >= k: the profit still rises at C (at most the profit there).
        if m_n * c_top >= cost * m_d:
            return ex.gross_profit + slack
        # s <= k: never profitable past the roundings.
        if s_n * c_top <= cost * s_d:
            return slack
        # c* = (out - C m) / (s - m), clipped to [0, C]; bound c* (s - k).
        num = (out * m_d - c_top * m_n) * s_d  # (out - C m) * m_d * s_d
        den = s_n * m_d - m_n * s_d  # (s - m) * m_d * s_d
        if den <= 0:
            return ex.gross_profit + slack
        # bound = c* (s - k) = num / den * (s_n / s_d - cost / C), rounded up.
        top = num * (s_n * c_top - cost * s_d)
        bottom = den * s_d * c_top
        if num <= 0:
            return slack
        if num >= c_top * den:
            return ex.gross_profit + slack
        return -(-top // bottom) + slack

    def _split(self, ex: Execution, paths: Sequence[Route], leg_cost: int) -> Execution:
        """`ex` with its sale divided over its path and one of the next paths (`best_split`, by bps, at
        ex's size), when that pays at least `leg_cost` more; `ex` itself otherwise. Tried only when ex's
        path loses more than SPLIT_IMPACT_BPS of its spot-rate value to price impact (the most a split can
        gain is that loss), with the partners (the next SPLIT_PARTNERS paths by bound) whose first unit
        pays more than ex's path's last."""
        first = ex.route
        sale = ex.outcome.collateral_to_liquidator
        if first.is_split or sale <= 0 or len(paths) < 2:
            return ex
        spot = self._path_rate(first, marginal=False)
        if spot is None or first.amount_out * BPS * spot[1] >= sale * spot[0] * (BPS - SPLIT_IMPACT_BPS):
            return ex
        after = self._path_rate(first, marginal=True)
        pools = [(h.venue, h.pool.lower()) for h in first.hops]
        found: Route | None = None
        counter = [0]
        partners = 0
        for r2 in paths:
            if r2.is_split or [(h.venue, h.pool.lower()) for h in r2.hops] == pools:
                continue
            partners += 1
            if partners > SPLIT_PARTNERS:
                break
            spot2 = self._path_rate(r2, marginal=False)
            need = max(1, leg_cost) + (found.amount_out - first.amount_out if found is not None else 0)
            if after is not None and spot2 is not None:
                # Moving x from the first path to the second gains at most x * (spot2 - after): the first
                # path's output is concave (it loses at least its last rate per unit), the second's pays
                # at most its spot rate per unit.
                gain = sale * (spot2[0] * after[1] - after[0] * spot2[1]) // (spot2[1] * after[1])
                if gain < need:
                    continue
            split = best_split(
                self.venues,
                first,
                r2,
                sale,
                baseline=first.amount_out + need - max(1, leg_cost),
                min_gain=max(1, leg_cost),
                fresh=True,
                evaluations=counter,
            )
            if split is not None:
                found = split
        self.quotes += counter[0]
        if found is None:
            return ex
        gross = found.amount_out - ex.outcome.actual_debt_to_cover - ex.flash_premium
        return Execution(ex.terms, ex.outcome, found, ex.flash_premium, gross)

    def bound(self, terms: LiquidationTerms) -> int | None:
        """An upper bound of the pair's gross profit (debt-asset units) at any size on the current state,
        from the paths' spot rates (no quote once the pair's paths are known); None: no path, or the Pool
        reverts at the largest size. UNBOUNDED when a path's venue gives no rate."""
        found = self._plans(terms)
        if found is None:
            return None
        return max(bound for bound, _, _ in found[1])

    def _plans(self, terms: LiquidationTerms) -> Plans:
        """(outcome of the largest size, [(profit bound, -index, path)] best bound first, executions at the
        largest size already quoted by index), or None when there is no path or the Pool reverts. Kept for
        the state `version` (`bound` then `best_for_pair` on one state compute it once)."""
        key = (id(terms), self.version)
        hit = self.planned.get(key)
        if hit is not None and hit[0] is terms:
            return hit[1]
        found = self._plans_now(terms)
        self.planned[key] = (terms, found)
        return found

    def _plans_now(self, terms: LiquidationTerms) -> Plans:
        try:
            top = self.top(terms)
        except NotLiquidatable:
            return None
        if top is None:
            return None
        largest = top.debt_to_cover
        try:
            known = self.paths.get((terms.collateral_asset.lower(), terms.debt_asset.lower()))
            routes = known or self.routes_at(terms, top.collateral_to_liquidator)
            divisor = 16
            while not routes and largest // divisor >= 1 and divisor <= 4096:
                # The largest sale may not be quotable (beyond the pool state read): find paths lower.
                smaller = terms.outcome(largest // divisor)
                if smaller.collateral_to_liquidator > 0:
                    routes = self.routes_at(terms, smaller.collateral_to_liquidator)
                divisor *= 16
        except (NotLiquidatable, KeeperError, ValueError):
            return None
        if not routes:
            return None
        sale = top.collateral_to_liquidator
        premium_top = self.premium(top.debt_to_cover)
        cost_top = top.actual_debt_to_cover + premium_top
        probe = sale // PROBE_FRACTION
        plans: list[tuple[int, int, Route]] = []
        seeds: dict[int, Execution] = {}
        for i, route in enumerate(routes):
            if known is None and route.amount_in == sale:  # quoted just now, at the largest size
                seeds[i] = Execution(terms, top, route, premium_top, route.amount_out - cost_top)
            spot = self._path_rate(route, marginal=False)
            bound = UNBOUNDED
            if spot is not None:
                bound = spot[0] * sale // spot[1] + 2 - cost_top
            elif probe >= MIN_PROBE:
                self.quotes += 1
                at_probe = requote(self.venues, route, probe)
                if at_probe is not None:
                    # (probe - 1): the venue's 1-unit roundings (fee rounded up, output down) at the probe
                    bound = (at_probe.amount_out + 1) * sale // (probe - 1) - cost_top
            seed = seeds.get(i)
            if seed is not None:
                tight = self.tangent_bound(seed)
                if tight is not None:
                    bound = min(bound, tight)
            plans.append((bound, -i, route))
        plans.sort(reverse=True, key=lambda t: (t[0], t[1]))
        return top, plans, seeds

    def top(self, terms: LiquidationTerms) -> LiquidationOutcome | None:
        """The outcome of the pair's largest useful request (`max_cover`, lowered to the first request of
        its collateral step); None when it is 0. Kept in `tops` (shared, like `paths`)."""
        key = id(terms)
        hit = self.tops.get(key)
        if hit is not None and hit[0] is terms:
            return hit[1]
        largest = terms.max_cover()
        limit = self.max_request.get(terms.debt_asset.lower())
        if limit is not None:
            largest = min(largest, limit)
        top = terms.outcome(terms.smallest_request(largest)) if largest > 0 else None
        self.tops[key] = (terms, top)
        return top

    def _path_rate(self, route: Route, *, marginal: bool) -> tuple[int, int] | None:
        """The path's output per unit input: at the current state (spot) or after its quoted sale
        (marginal); the product of its hops' rates (a split: `path_rate`). None when a venue does not
        tell."""
        if marginal or route.is_split:
            return path_rate(self.venues, route, marginal=marginal)
        num, den = 1, 1
        for hop in route.hops:
            key = (self.version, hop.venue, hop.pool, hop.token_in)
            if key in self.spots:
                rate = self.spots[key]
            else:
                fn = getattr(self.venues.get(hop.venue), "spot_rate", None)
                rate = fn(hop.token_in, hop.token_out, hop.pool) if fn is not None else None
                self.spots[key] = rate
            if rate is None or rate[1] <= 0:
                return None
            num, den = num * rate[0], den * rate[1]
        return num, den

    def routes_at(self, terms: LiquidationTerms, collateral: int) -> list[Route]:
        """Every path selling `collateral` of the pair's collateral asset into its debt asset, best first."""
        via = [
            c
            for c in self.connectors
            if c.lower() not in (terms.collateral_asset.lower(), terms.debt_asset.lower())
        ]
        self.quotes += 1
        routes = candidate_routes(
            self.venues.values(), terms.collateral_asset, terms.debt_asset, collateral, via=via
        )
        if routes:
            self.paths[(terms.collateral_asset.lower(), terms.debt_asset.lower())] = routes
        return routes
