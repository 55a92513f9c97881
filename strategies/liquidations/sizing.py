"""The size and the (collateral, debt) pair of one liquidation, by the profit of the whole execution.

Pure and exact: for a request `debt_to_cover` = d of one pair, the Pool's amounts come from
`LiquidationTerms.outcome(d)` (what liquidationCall moves for that very d), the sale of the seized
collateral from the venues' exact quotes at the given pool state, and

    gross(d) = sale(collateral(d)) - debt repaid(d) - flash premium(d)        (debt-asset units)

with the Aave V3 flash premium `percentMul(d, premium)` on the flash-borrowed amount d.

Search. The largest useful request D is `terms.max_cover()` (the whole collateral when the close factor
allows it, else the close-factor maximum; beyond it nothing more is seized and only the premium grows).
On one route the sale is concave in its input and the collateral linear in d, so gross(d) is unimodal on
[1, D] up to the protocol's 1-wei roundings: the search checks D against D - D/1000 first (the common case,
a pool deep enough that the largest size is best: two quotes), otherwise runs an integer golden-section
search (one quote per step) down to a window of D/4000, and returns the best size it evaluated. The route
is the best one (`best_route`, over every venue and connector) at D; at the chosen size the best route is
asked again and, if another route pays more there, the size is searched on that one too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from keeper.chain.units import percent_mul
from keeper.errors import KeeperError
from strategies.liquidations.common import LiquidationOutcome, LiquidationTerms, NotLiquidatable
from strategies.venues.base import Venue
from strategies.venues.router import Route, best_route, candidate_routes, requote

__all__ = ["Execution", "Sizer", "maximize_unimodal"]

FULL_SIZE_CHECK = 1000
"""The largest size D is kept when gross(D) >= gross(D - D / FULL_SIZE_CHECK)."""
WINDOW = 4000
"""The golden-section search stops at a window of (upper end) / WINDOW sizes."""
MAX_STEPS = 120
PROBE_FRACTION = 256
"""The probe for a path's rate bound sells (largest sale) / PROBE_FRACTION ..."""
MIN_PROBE = 1000
"""... and at least this many units (below, integer rounding dominates: every path is sized)."""
UNBOUNDED = 2**256


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


class Sizer:
    """Sizes liquidations on one pool state (`venues`, by name; not modified)."""

    def __init__(
        self, venues: Mapping[str, Venue], *, connectors: Sequence[str] = (), flash_premium_bps: int = 0
    ) -> None:
        self.venues = venues
        self.connectors = tuple(connectors)
        self.flash_premium_bps = flash_premium_bps
        self.quotes = 0
        """Route quotes made (for benchmarks)."""

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

    def execute(self, terms: LiquidationTerms, route: Route, debt_to_cover: int) -> Execution | None:
        """The execution of the smallest request seizing what `debt_to_cover` seizes
        (`terms.smallest_request`) on the path of `route`, or None where the Pool reverts (dust) or the
        path cannot take the collateral."""
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
        premium = self.premium(debt_to_cover)
        gross = sale.amount_out - outcome.actual_debt_to_cover - premium
        return Execution(terms, outcome, sale, premium, gross)

    def on_route(self, terms: LiquidationTerms, route: Route, largest: int) -> Execution | None:
        """The most profitable request in [1, largest] on the path of `route` (`largest` must not revert).

        The search runs over the request when the collateral is finer than the debt asset (more collateral
        units than debt units seized), else over the collateral (each at its smallest request,
        `terms.request_for`): over the request, whole collateral units would make plateaus."""
        runs: dict[int, Execution | None] = {}

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
        searched = True
        if top > 8 * step:
            # Still rising just below the top (the top itself is left out of the test: at the request that
            # seizes the whole collateral the Pool repays a little less, a step up even when the rest falls).
            gross(largest)
            near, lower = knob(top - step), knob(top - 2 * step)
            searched = near is None or (lower is not None and lower > near)
        if searched:
            maximize_unimodal(knob, 1, top)
            gross(largest)
        best = None
        for ex in runs.values():  # the best size evaluated
            if ex is not None and (
                best is None or (ex.gross_profit, ex.debt_to_cover) > (best.gross_profit, best.debt_to_cover)
            ):
                best = ex
        return best

    def best_for_pair(self, terms: LiquidationTerms) -> Execution | None:
        """The most profitable execution of one pair: size and route. None: no route or always reverts.

        Every path (`candidate_routes` at the largest size) is a candidate; a path is sized only if a
        bound of its profit can beat the best found so far: the sale is concave, so
        out(x) <= x * (out(p) + 1) / (p - 1) for any x >= a probe p = (largest sale) / 256, which bounds
        the profit at any size from p up by its value at the largest size at that rate (paths are sized
        in the order of that bound). Sizes below p are not bounded: a path that is the best only there,
        against another path that is better everywhere above, is missed (its profit is below 1/256 of
        what the largest sale would make at the probe's rate)."""
        largest = terms.max_cover()
        if largest <= 0:
            return None
        try:
            top = terms.outcome(largest)
            routes = self.routes_at(terms, top.collateral_to_liquidator)
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
        probe = sale // PROBE_FRACTION
        cost_top = top.actual_debt_to_cover + self.premium(largest)
        bounded: list[tuple[int, int, Route]] = []
        for i, route in enumerate(routes):
            bound = UNBOUNDED
            if probe >= MIN_PROBE:
                self.quotes += 1
                at_probe = requote(self.venues, route, probe)
                if at_probe is not None:
                    # (probe - 1): the venue's 1-unit roundings (fee rounded up, output down) at the probe
                    bound = (at_probe.amount_out + 1) * sale // (probe - 1) - cost_top
            bounded.append((bound, -i, route))
        bounded.sort(reverse=True, key=lambda t: (t[0], t[1]))
        best: Execution | None = None
        for bound, _, route in bounded:
            if best is not None and bound <= best.gross_profit:
                break
            ex = self.on_route(terms, route, largest)
            if ex is not None and (best is None or ex.gross_profit > best.gross_profit):
                best = ex
        return best

    def routes_at(self, terms: LiquidationTerms, collateral: int) -> list[Route]:
        """Every path selling `collateral` of the pair's collateral asset into its debt asset, best first."""
        via = [
            c
            for c in self.connectors
            if c.lower() not in (terms.collateral_asset.lower(), terms.debt_asset.lower())
        ]
        self.quotes += 1
        return candidate_routes(
            self.venues.values(), terms.collateral_asset, terms.debt_asset, collateral, via=via
        )


def _path(route: Route) -> tuple[tuple[str, str, str], ...]:
    return tuple((h.venue, h.pool.lower(), h.token_in.lower()) for h in route.hops)
