"""The best route for selling an exact amount: direct on any venue and pool, two hops via a connector
(each hop on any venue), or the amount split over two such paths.

Exact integers throughout: every candidate is valued with its venues' own math from the refreshed state,
and every swap of a route is quoted on the state the swaps before it leave (which matters when two hops
or two legs touch one pool, and costs nothing otherwise).

Executor formats. A route whose hops are all on one venue is that venue's own format: a Uniswap V3
packed path (`token | fee | token | fee | token`, fee tiers may differ per hop) for SwapRouter
`exactInput`, a V2 path for Router02 (one factory), or a Balancer V2 path (`token | poolId | token ...`)
for the Vault (the pool ids come from the venue's `pool_id`). A route that mixes venues along its path
(V3 then V2, Balancer then V3, ...) is the contract's Mixed kind with one leg; a split is a Mixed route of
two legs, the input divided by bps exactly as the contract does (`MixedRoute.split`: each leg floored,
the remainder to the last), the legs run in order.

Selection: the highest amount_out wins. Ties go to the first candidate in this order: direct routes
before two-hop ones, two hops on one venue before two hops across venues, venues in the order given,
connectors in the order given (within a venue, its own tie rule: Uniswap V3 prefers the lower fee tier).
`best_route` never splits; `best_split` divides a sale over two paths of `candidate_routes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise

from keeper.errors import KeeperError
from keeper.executors.executor_contract import BalancerRoute, HopRoute, MixedRoute, RouteLeg, V2Route, V3Route
from keeper.executors.executor_contract import Route as ExecutorRoute
from strategies.venues.base import Quote, QuoteError, RouteKind, Venue

__all__ = [
    "MIXED",
    "Route",
    "best_route",
    "best_split",
    "candidate_routes",
    "executor_route",
    "leg_routes",
    "path_rate",
    "requote",
    "split_route",
]

BPS = 10_000
MIXED = "mixed"
"""`Route.venue` of a route whose swaps are on several venues."""


@dataclass(frozen=True, slots=True)
class Route:
    """A route: one leg of one or more hops (on one venue or several), or a split over several legs;
    `executor_route` / `path` is what the executor takes.

    `hops` lists every swap in execution order (the first leg's hops, then the next leg's), each quoted
    on the state the ones before it leave: applying them in order to the venues gives the state after the
    route. `leg_hops`: how many of the hops each leg has (empty: one leg of all hops)."""

    hops: tuple[Quote, ...]
    executor_route: ExecutorRoute
    leg_hops: tuple[int, ...] = ()

    @property
    def legs(self) -> tuple[tuple[Quote, ...], ...]:
        """The hops of each leg, in execution order."""
        if len(self.leg_hops) <= 1:
            return (self.hops,)
        out, start = [], 0
        for n in self.leg_hops:
            out.append(self.hops[start : start + n])
            start += n
        return tuple(out)

    @property
    def is_split(self) -> bool:
        return len(self.leg_hops) > 1

    @property
    def venue(self) -> str:
        """The venue of every hop, or `MIXED` when they are on several."""
        first = self.hops[0].venue
        return first if all(h.venue == first for h in self.hops) else MIXED

    @property
    def kind(self) -> RouteKind:
        """The executor contract's route kind (MIXED for cross-venue and split routes)."""
        return self.executor_route.venue

    @property
    def token_in(self) -> str:
        return self.hops[0].token_in

    @property
    def token_out(self) -> str:
        return self.hops[-1].token_out

    @property
    def amount_in(self) -> int:
        return sum(leg[0].amount_in for leg in self.legs)

    @property
    def amount_out(self) -> int:
        """What the route pays in total (every leg's output)."""
        return sum(leg[-1].amount_out for leg in self.legs)

    @property
    def tokens(self) -> tuple[str, ...]:
        """The tokens along the path (a split: its ends only)."""
        if self.is_split:
            return (self.token_in, self.token_out)
        return (self.hops[0].token_in, *(h.token_out for h in self.hops))

    @property
    def path(self) -> bytes:
        """The packed path (`LiquidationParams.route.encode()`)."""
        return self.executor_route.encode()


PoolIds = Mapping[str, str] | Callable[[str], str]
"""Balancer pool address -> its Vault pool id (0x 32-byte hex): a mapping or a lookup such as
`BalancerStableVenue.pool_id`."""


def _pool_id(pool: str, pool_ids: PoolIds | None) -> str:
    if pool_ids is None:
        raise ValueError(f"a Balancer hop needs its pool id: pass pool_ids (no id for pool {pool})")
    if callable(pool_ids):
        return pool_ids(pool)
    found = pool_ids.get(pool) or pool_ids.get(pool.lower())
    if found is None:
        found = next((v for k, v in pool_ids.items() if k.lower() == pool.lower()), None)
    if found is None:
        raise ValueError(f"no pool id for Balancer pool {pool}")
    return found


def _venue_pool_ids(venue: Venue) -> PoolIds | None:
    """The venue's pool-id lookup, if it has one (Balancer venues)."""
    lookup = getattr(venue, "pool_id", None)
    return lookup if callable(lookup) else None


def _venues_pool_ids(venues: Iterable[Venue]) -> Callable[[str], str]:
    """One pool-id lookup over every venue that has one."""
    lookups = [f for f in (_venue_pool_ids(v) for v in venues) if f is not None]

    def lookup(pool: str) -> str:
        for f in lookups:
            try:
                found = _pool_id(pool, f)
            except (KeyError, ValueError, KeeperError):
                continue
            if found:
                return str(found)
        raise ValueError(f"no Balancer pool id for {pool}")

    return lookup


def executor_route(hops: Sequence[Quote], *, pool_ids: PoolIds | None = None) -> HopRoute:
    """The executor contract's route for consecutive hops on one venue kind. Balancer hops need their
    pools' Vault ids (`Quote.pool` is the pool address): `pool_ids`, e.g. the venue's `pool_id`."""
    if not hops:
        raise ValueError("a route needs at least one hop")
    kind = hops[0].kind
    for prev, nxt in pairwise(hops):
        if nxt.kind is not kind or nxt.venue != hops[0].venue:
            raise ValueError("all hops of a route must be on one venue")
        if prev.token_out.lower() != nxt.token_in.lower() or prev.amount_out != nxt.amount_in:
            raise ValueError("hops do not chain")
    tokens = (hops[0].token_in, *(h.token_out for h in hops))
    if kind is RouteKind.UNISWAP_V3:
        return V3Route(tokens, tuple(h.fee for h in hops))
    if kind is RouteKind.UNISWAP_V2:
        return V2Route(tokens)
    if kind is RouteKind.BALANCER_V2:
        return BalancerRoute(tokens, tuple(_pool_id(h.pool, pool_ids) for h in hops))
    raise ValueError(f"no executor route format for venue kind {kind!r}")


def _leg(hops: Sequence[Quote], pool_ids: PoolIds | None) -> tuple[HopRoute, ...]:
    """A Mixed leg's hops: consecutive swaps on one venue merged into that venue's own route."""
    out: list[HopRoute] = []
    start = 0
    for i in range(1, len(hops) + 1):
        if i == len(hops) or hops[i].venue != hops[start].venue or hops[i].kind is not hops[start].kind:
            out.append(executor_route(hops[start:i], pool_ids=pool_ids))
            start = i
    return tuple(out)


def split_route(
    legs: Sequence[Sequence[Quote]], bps: Sequence[int] = (), *, pool_ids: PoolIds | None = None
) -> Route:
    """The route of quoted legs run in order: one leg on one venue is that venue's own route, one leg
    across venues a Mixed route of one leg, several legs a Mixed route splitting the input by `bps`
    (summing to 10000; the legs' quoted inputs must be `MixedRoute.split` of their total)."""
    if not legs or any(not leg for leg in legs):
        raise ValueError("a route needs at least one leg of at least one hop")
    hops = tuple(h for leg in legs for h in leg)
    if len(legs) == 1:
        leg = legs[0]
        if all(h.venue == leg[0].venue and h.kind is leg[0].kind for h in leg):
            return Route(hops, executor_route(leg, pool_ids=pool_ids))
        return Route(hops, MixedRoute((RouteLeg(BPS, _leg(leg, pool_ids)),)))
    if len(bps) != len(legs):
        raise ValueError("a split needs the bps of every leg")
    mixed = MixedRoute(tuple(RouteLeg(b, _leg(leg, pool_ids)) for b, leg in zip(bps, legs, strict=True)))
    inputs = [leg[0].amount_in for leg in legs]
    if mixed.split(sum(inputs)) != inputs:
        raise ValueError("the legs' inputs are not the contract's split of their total")
    return Route(hops, mixed, tuple(len(leg) for leg in legs))


# ------------------------------------------------------------------------------------------ quoting


def _quote_legs(
    venues: Mapping[str, Venue], legs: Sequence[Sequence[Quote]], amounts: Sequence[int]
) -> list[tuple[Quote, ...]] | None:
    """The same swaps as `legs` (same pools, tokens, venues) for the legs' inputs `amounts`, each on the
    state the ones before it leave. None when a leg gets nothing, a pool cannot quote its amount or pays
    nothing. Raises nothing but ValueError for bad input."""
    flat = [h for leg in legs for h in leg]
    later = [{h.venue for h in flat[i + 1 :]} for i in range(len(flat))]
    working: dict[str, Venue] = {}
    out: list[tuple[Quote, ...]] = []
    i = 0
    try:
        for leg, leg_in in zip(legs, amounts, strict=True):
            if leg_in <= 0:
                return None
            amount = leg_in
            quoted: list[Quote] = []
            for hop in leg:
                venue = working.get(hop.venue) or venues.get(hop.venue)
                if venue is None:
                    return None
                q = venue.quote_exact_in(hop.token_in, hop.token_out, amount, pool=hop.pool)
                if q is None or q.amount_out <= 0:
                    return None
                if hop.venue in later[i]:
                    working[hop.venue] = venue.apply(q)
                quoted.append(q)
                amount = q.amount_out
                i += 1
            out.append(tuple(quoted))
    except QuoteError:
        return None
    return out


def requote(venues: Mapping[str, Venue], route: Route, amount_in: int) -> Route | None:
    """The same path as `route` (same venues, pools and tokens; a split: the same legs and bps, the input
    divided as the contract divides it) quoted for `amount_in`, on the venues' current state (`venues` by
    name). None when a pool of the path cannot quote its amount (QuoteError), a leg gets nothing, or the
    path no longer trades; ValueError for amount_in <= 0.

    What a size search on one route needs: the output of one fixed path as a function of the input.
    """
    if amount_in <= 0:
        raise ValueError("amount_in must be > 0")
    legs = route.legs
    er = route.executor_route
    amounts = er.split(amount_in) if isinstance(er, MixedRoute) and len(legs) > 1 else [amount_in]
    quoted = _quote_legs(venues, legs, amounts)
    if quoted is None:
        return None
    return Route(tuple(h for leg in quoted for h in leg), er, route.leg_hops)


def path_rate(venues: Mapping[str, Venue], route: Route, *, marginal: bool) -> tuple[int, int] | None:
    """The route's output per unit of input (num, den): at the venues' current state (spot: the best
    leg's, an upper bound of what any amount pays per unit) or after its quoted sale (marginal: each leg's
    product of its hops' marginal rates, weighted by the leg's share). None when a venue does not tell
    (`spot_rate` / `marginal_rate`)."""
    legs = route.legs
    rates: list[tuple[int, int]] = []
    for leg in legs:
        num, den = 1, 1
        for hop in leg:
            venue = venues.get(hop.venue)
            if venue is None:
                return None
            if marginal:
                fn = getattr(venue, "marginal_rate", None)
                rate = fn(hop) if fn is not None else None
            else:
                fn = getattr(venue, "spot_rate", None)
                rate = fn(hop.token_in, hop.token_out, hop.pool) if fn is not None else None
            if rate is None or rate[1] <= 0:
                return None
            num, den = num * rate[0], den * rate[1]
        rates.append((num, den))
    if len(rates) == 1:
        return rates[0]
    if not marginal:
        return max(rates, key=lambda r: Fraction(r[0], r[1]))
    amounts = [leg[0].amount_in for leg in legs]
    total = sum(amounts)
    den_all = 1
    for _, d in rates:
        den_all *= d
    num_all = sum(a * n * (den_all // d) for a, (n, d) in zip(amounts, rates, strict=True))
    return num_all, den_all * total


# ------------------------------------------------------------------------------------------ search


def _two_hops(
    venues: Sequence[Venue],
    token_in: str,
    token_out: str,
    amount_in: int,
    via: Sequence[str],
    skip_errors: bool,
) -> Iterator[tuple[Quote, Quote]]:
    """token_in -> c -> token_out for every connector c: the first hop's best pool on each venue X, the
    second's best pool on each venue Y (on the state the first leaves when Y is X). One-venue paths
    first (venues, then connectors in order), then cross-venue ones."""
    ends = {token_in.lower(), token_out.lower()}
    connectors = [c for c in via if c.lower() not in ends]
    firsts: dict[tuple[int, int], Quote | None] = {}

    def first(i: int, j: int) -> Quote | None:
        key = (i, j)
        if key not in firsts:
            try:
                q = venues[i].quote_exact_in(token_in, connectors[j], amount_in)
            except QuoteError:
                if not skip_errors:
                    raise
                q = None
            firsts[key] = q if q is not None and q.amount_out > 0 else None
        return firsts[key]

    def second(x: int, y: int, q1: Quote, c: str) -> Quote | None:
        try:
            on = venues[x].apply(q1) if x == y else venues[y]
            q = on.quote_exact_in(c, token_out, q1.amount_out)
        except QuoteError:
            if not skip_errors:
                raise
            return None
        return q if q is not None and q.amount_out > 0 else None

    for x in range(len(venues)):
        for j, c in enumerate(connectors):
            q1 = first(x, j)
            if q1 is not None and (q2 := second(x, x, q1, c)) is not None:
                yield q1, q2
    if len(venues) < 2:
        return
    for x in range(len(venues)):
        for j, c in enumerate(connectors):
            q1 = first(x, j)
            if q1 is None:
                continue
            for y in range(len(venues)):
                if y != x and (q2 := second(x, y, q1, c)) is not None:
                    yield q1, q2


def _every_two_hop(
    venues: Sequence[Venue], token_in: str, token_out: str, amount_in: int, via: Sequence[str]
) -> Iterator[tuple[Quote, Quote]]:
    """token_in -> c -> token_out for every connector c, every pool of the first hop (any venue) and
    every pool of the second (any venue; on the state the first leaves when it is the same venue);
    quotes that fail or pay nothing left out. One-venue paths first, then cross-venue ones."""
    ends = {token_in.lower(), token_out.lower()}
    connectors = [c for c in via if c.lower() not in ends]

    def quote(venue: Venue, t_in: str, t_out: str, amount: int, pool: str) -> Quote | None:
        try:
            q = venue.quote_exact_in(t_in, t_out, amount, pool=pool)
        except QuoteError:
            return None
        return q if q is not None and q.amount_out > 0 else None

    firsts: list[tuple[int, str, Quote]] = []
    for x, venue in enumerate(venues):
        for c in connectors:
            for pool in venue.pools(token_in, c):
                q1 = quote(venue, token_in, c, amount_in, pool)
                if q1 is not None:
                    firsts.append((x, c, q1))
    for cross in (False, True):
        for x, c, q1 in firsts:
            for y, venue in enumerate(venues):
                if (y != x) is not cross:
                    continue
                on = venues[x].apply(q1) if y == x else venue
                for pool in on.pools(c, token_out):
                    q2 = quote(on, c, token_out, q1.amount_out, pool)
                    if q2 is not None:
                        yield q1, q2


def best_route(
    venues: Iterable[Venue],
    token_in: str,
    token_out: str,
    amount_in: int,
    *,
    via: Sequence[str] = (),
    skip_errors: bool = False,
) -> Route | None:
    """The route that pays the most `token_out` for exactly `amount_in` of `token_in`.

    Candidates: a direct swap on every venue (best pool / fee tier of each), and token_in -> c ->
    token_out for every connector c in `via` (e.g. WETH, USDC), each hop on any venue (the best pool of
    each). None if no venue can trade the pair directly or through a connector. Never a split
    (`best_split`).

    A candidate whose quote raises QuoteError (e.g. a V3 swap leaving the bitmap words read) makes the
    call raise, so a better route is never dropped silently; skip_errors=True leaves such candidates out.
    """
    if amount_in <= 0:
        raise ValueError("amount_in must be > 0")
    if token_in.lower() == token_out.lower():
        raise ValueError("token_in and token_out are the same token")
    venues = list(venues)
    best: tuple[Quote, ...] | None = None

    for venue in venues:
        try:
            q = venue.quote_exact_in(token_in, token_out, amount_in)
        except QuoteError:
            if not skip_errors:
                raise
            continue
        if q is not None and (best is None or q.amount_out > best[-1].amount_out):
            best = (q,)
    for hops in _two_hops(venues, token_in, token_out, amount_in, via, skip_errors):
        if best is None or hops[-1].amount_out > best[-1].amount_out:
            best = hops
    if best is None:
        return None
    return split_route([best], pool_ids=_venues_pool_ids(venues))


def candidate_routes(
    venues: Iterable[Venue], token_in: str, token_out: str, amount_in: int, *, via: Sequence[str] = ()
) -> list[Route]:
    """Every distinct path, each quoted for `amount_in`: a direct swap on every pool of every venue, and
    token_in -> c -> token_out for every connector c with each hop on any pool of any venue (not only the
    pools best at this state: a caller that keeps the paths for later states, after other sales moved
    the pools, still has the path through the pool best then). Paths that cannot quote the amount
    (QuoteError) or pay nothing are left out. Best first (ties: direct before two-hop, one venue before
    across venues, venues, connectors and pools in the order given)."""
    if amount_in <= 0:
        raise ValueError("amount_in must be > 0")
    if token_in.lower() == token_out.lower():
        raise ValueError("token_in and token_out are the same token")
    venues = list(venues)
    ids = _venues_pool_ids(venues)
    found: list[Route] = []
    for venue in venues:
        for pool in venue.pools(token_in, token_out):
            try:
                q = venue.quote_exact_in(token_in, token_out, amount_in, pool=pool)
            except QuoteError:
                continue
            if q is not None and q.amount_out > 0:
                found.append(split_route([(q,)], pool_ids=ids))
    for hops in _every_two_hop(venues, token_in, token_out, amount_in, via):
        found.append(split_route([hops], pool_ids=ids))
    order = {id(r): i for i, r in enumerate(found)}
    found.sort(key=lambda r: (-r.amount_out, order[id(r)]))
    return found


def _shares(amount_in: int, first_bps: int) -> list[int]:
    first = amount_in * first_bps // BPS
    return [first, amount_in - first]


SPLIT_TOLERANCE_BPS = 4
"""The split search stops at a bracket of this many bps around where the legs' marginal rates meet (the
total is flat there: a share off by d bps loses about d^2 times its curvature)."""


def best_split(
    venues: Mapping[str, Venue],
    first: Route,
    second: Route,
    amount_in: int,
    *,
    min_gain: int = 1,
    baseline: int | None = None,
    fresh: bool = False,
    evaluations: list[int] | None = None,
) -> Route | None:
    """`amount_in` divided over two paths, `first`'s leg run first, by the bps (1..9999 to the first)
    that pays the most on the exact quotes; None when no split pays at least `min_gain` more than the
    better of the two paths alone (`baseline`: that output when the caller knows it), or a path cannot
    quote. Splits are not nested: `first` and `second` are single-leg routes (their pools matter, and
    `first`'s quotes when it is quoted for exactly `amount_in` on the current state, which `fresh` says
    when the caller knows it: they are reused).
    `evaluations`: a one-element counter the number of shares quoted is added to.

    The total is concave in the share for constant-product and concentrated-liquidity pools (two
    disjoint paths), so its peak is where the legs' marginal rates meet: found by regula falsi (Illinois)
    on the difference of the legs' marginal rates (`marginal_rate`; at the ends, a leg's spot rate and
    the other's rate after the whole amount; legs that share a pool: the rates of their other hops) down
    to a bracket of SPLIT_TOLERANCE_BPS, the best share quoted winning (usually the first: two or three
    quotes of both legs). When a venue gives no rates: golden-section search on the exact totals."""
    if first.is_split or second.is_split:
        raise ValueError("best_split combines two single-leg routes")
    if amount_in <= 0:
        raise ValueError("amount_in must be > 0")
    legs = (first.hops, second.hops)
    seen: dict[int, list[tuple[Quote, ...]] | None] = {}

    def quote(b: int) -> list[tuple[Quote, ...]] | None:
        if b not in seen:
            seen[b] = _quote_legs(venues, legs, _shares(amount_in, b))
        return seen[b]

    def total(b: int) -> int | None:
        q = quote(b) if 0 < b < BPS else None
        return None if q is None else q[0][-1].amount_out + q[1][-1].amount_out

    def diff(r1: tuple[int, int] | None, r2: tuple[int, int] | None) -> int | None:
        """Leg 1's rate minus leg 2's, relative, scaled by 1e18 (the sign of the total's slope)."""
        if r1 is None or r2 is None:
            return None
        return (r1[0] * r2[1] - r2[0] * r1[1]) * 10**18 // (r1[1] * r2[1])

    # A pool in both legs (two-hop legs sharing their first or their last pool): what that pool pays for
    # both legs together hardly depends on the share, so the total's slope has the sign of the difference
    # of the other hops' rates; the exact totals decide in the end.
    shared = {(h.venue, h.pool.lower()) for h in first.hops} & {
        (h.venue, h.pool.lower()) for h in second.hops
    }

    def own(leg: Sequence[Quote]) -> list[Quote]:
        return [h for h in leg if (h.venue, h.pool.lower()) not in shared]

    def slope(b: int) -> int | None:
        q = quote(b)
        return None if q is None else diff(_leg_rate(venues, own(q[0])), _leg_rate(venues, own(q[1])))

    s_lo = s_hi = None
    if own(first.hops) and own(second.hops):
        # b = 10000: all on the first leg (its quotes reused when they are for this amount).
        if first.amount_in == amount_in and (fresh or _fresh(venues, first)):
            r1_full = _leg_rate(venues, own(first.hops))
        else:
            alone1 = _quote_legs(venues, (first.hops,), (amount_in,))
            r1_full = None if alone1 is None else _leg_rate(venues, own(alone1[0]))
        s_hi = diff(r1_full, _leg_spot(venues, own(second.hops)))
        if s_hi is not None and s_hi >= 0:
            return None  # the second leg's first unit pays less than the first leg's last
        alone2 = _quote_legs(venues, (second.hops,), (amount_in,))
        r2_full = None if alone2 is None else _leg_rate(venues, own(alone2[0]))
        s_lo = diff(_leg_spot(venues, own(first.hops)), r2_full)
        if s_lo is not None and s_lo <= 0:
            return None  # the reverse: all to the second leg
    if s_lo is not None and s_hi is not None:
        lo, hi = 0, BPS
        side = 0
        for _ in range(40):
            if hi - lo <= SPLIT_TOLERANCE_BPS or s_lo - s_hi <= 0:
                break
            x = lo + (hi - lo) * s_lo // (s_lo - s_hi)
            x = min(max(x, lo + 1), hi - 1)
            s_x = slope(x)
            if s_x is None:
                break
            if s_x == 0:
                break
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
        if 0 < lo < BPS:
            total(lo)
        if 0 < hi < BPS:
            total(hi)
    else:
        _golden(total, 1, BPS - 1)
    best_b, best_total = 0, None
    for b in sorted(seen):
        t = total(b)
        if t is not None and (best_total is None or t > best_total):
            best_b, best_total = b, t
    if evaluations is not None:
        evaluations[0] += len(seen) + 2
    if best_total is None:
        return None
    if baseline is None:
        baseline = -1
        for route in (first, second):
            again = requote(venues, route, amount_in)
            if again is not None:
                baseline = max(baseline, again.amount_out)
    if best_total < baseline + min_gain:
        return None
    quoted = quote(best_b)
    assert quoted is not None
    return split_route(quoted, (best_b, BPS - best_b), pool_ids=_venues_pool_ids(venues.values()))


def _fresh(venues: Mapping[str, Venue], route: Route) -> bool:
    """Whether the route's quotes were made on the venues' current state (same block, same pool state)."""
    for hop in route.hops:
        venue = venues.get(hop.venue)
        if venue is None:
            return False
        again = venue.quote_exact_in(hop.token_in, hop.token_out, hop.amount_in, pool=hop.pool)
        if again is None or again.amount_out != hop.amount_out:
            return False
        break  # the first hop tells: later hops chain from it
    return True


def _leg_spot(venues: Mapping[str, Venue], leg: Sequence[Quote]) -> tuple[int, int] | None:
    num, den = 1, 1
    for hop in leg:
        fn = getattr(venues.get(hop.venue), "spot_rate", None)
        rate = fn(hop.token_in, hop.token_out, hop.pool) if fn is not None else None
        if rate is None or rate[0] <= 0 or rate[1] <= 0:
            return None
        num, den = num * rate[0], den * rate[1]
    return num, den


def leg_routes(route: Route) -> list[Route]:
    """Each leg of a split route as a route of its own (its quotes as they are in the split); a route that
    is not a split: itself."""
    er = route.executor_route
    if not route.is_split or not isinstance(er, MixedRoute):
        return [route]
    out: list[Route] = []
    for quotes, leg in zip(route.legs, er.legs, strict=True):
        own: ExecutorRoute = leg.hops[0] if len(leg.hops) == 1 else MixedRoute((RouteLeg(BPS, leg.hops),))
        out.append(Route(quotes, own))
    return out


def _leg_rate(venues: Mapping[str, Venue], leg: Sequence[Quote]) -> tuple[int, int] | None:
    num, den = 1, 1
    for hop in leg:
        fn = getattr(venues.get(hop.venue), "marginal_rate", None)
        rate = fn(hop) if fn is not None else None
        if rate is None or rate[0] <= 0 or rate[1] <= 0:
            return None
        num, den = num * rate[0], den * rate[1]
    return num, den


def _golden(total: Callable[[int], int | None], lo: int, hi: int) -> None:
    """Golden-section search for the share in [lo, hi] maximizing a unimodal total (None lowest), down to
    a bracket of SPLIT_TOLERANCE_BPS (the inner point reused); the caller takes the best share quoted."""

    def key(b: int) -> tuple[int, int]:
        v = total(b)
        return (-1, 0) if v is None else (0, v)

    a, b = lo, hi
    x1 = a + (b - a) * 382 // 1000
    x2 = a + b - x1
    while b - a > SPLIT_TOLERANCE_BPS:
        if not a < x1 < x2 < b:
            x1 = a + (b - a) * 382 // 1000
            x2 = a + b - x1
            if not a < x1 < x2 < b:
                break
        if key(x2) > key(x1):
            a, x1 = x1, x2
            x2 = a + b - x1
        else:
            b, x2 = x2, x1
            x1 = a + b - x2
