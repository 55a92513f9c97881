"""The best route for selling an exact amount: direct on any venue and pool, or two hops via a connector.

Exact integers throughout: every candidate is valued with its venue's own math from the refreshed state,
and the second hop of a two-hop route is quoted on the venue with the first hop already applied (which
matters when both hops touch one pool, and costs nothing otherwise).

Both hops of a route are on the same venue: a route here is one of the executor contract's single-venue
formats, a Uniswap V3 packed path (`token | fee | token | fee | token`, fee tiers may differ per hop) for
SwapRouter `exactInput`, a V2 path for Router02 (one factory), or a Balancer V2 path (`token | poolId |
token ...`) for the Vault (the pool ids come from the venue's `pool_id`). Routes that mix venues or split
the amount are the contract's Mixed kind (`keeper.executors.executor_contract.MixedRoute`), built from
several of these.

Selection: the highest amount_out wins. Ties go to the first candidate in this order: direct routes
before two-hop ones, venues in the order given, connectors in the order given (within a venue, its own
tie rule: Uniswap V3 prefers the lower fee tier).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from keeper.executors.executor_contract import BalancerRoute, V2Route, V3Route
from keeper.executors.executor_contract import Route as ExecutorRoute
from strategies.venues.base import Quote, QuoteError, RouteKind, Venue

__all__ = ["Route", "best_route", "candidate_routes", "executor_route", "requote"]


@dataclass(frozen=True, slots=True)
class Route:
    """A route of one or two hops on one venue; `executor_route` / `path` is what the executor takes."""

    hops: tuple[Quote, ...]
    executor_route: ExecutorRoute

    @property
    def venue(self) -> str:
        return self.hops[0].venue

    @property
    def kind(self) -> RouteKind:
        return self.hops[0].kind

    @property
    def token_in(self) -> str:
        return self.hops[0].token_in

    @property
    def token_out(self) -> str:
        return self.hops[-1].token_out

    @property
    def amount_in(self) -> int:
        return self.hops[0].amount_in

    @property
    def amount_out(self) -> int:
        return self.hops[-1].amount_out

    @property
    def tokens(self) -> tuple[str, ...]:
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


def executor_route(hops: Sequence[Quote], *, pool_ids: PoolIds | None = None) -> ExecutorRoute:
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
    token_out on one venue for every connector c in `via` (e.g. WETH, USDC). None if no venue can trade
    the pair directly or through a connector.

    A candidate whose quote raises QuoteError (e.g. a V3 swap leaving the bitmap words read) makes the
    call raise, so a better route is never dropped silently; skip_errors=True leaves such candidates out.
    """
    if amount_in <= 0:
        raise ValueError("amount_in must be > 0")
    if token_in.lower() == token_out.lower():
        raise ValueError("token_in and token_out are the same token")
    venues = list(venues)
    best: Route | None = None

    def consider(hops: tuple[Quote, ...], venue: Venue) -> None:
        nonlocal best
        if best is None or hops[-1].amount_out > best.amount_out:
            best = Route(hops, executor_route(hops, pool_ids=_venue_pool_ids(venue)))

    for venue in venues:
        try:
            q = venue.quote_exact_in(token_in, token_out, amount_in)
        except QuoteError:
            if not skip_errors:
                raise
            continue
        if q is not None:
            consider((q,), venue)

    ends = {token_in.lower(), token_out.lower()}
    for venue in venues:
        for connector in via:
            if connector.lower() in ends:
                continue
            try:
                first = venue.quote_exact_in(token_in, connector, amount_in)
                if first is None or first.amount_out == 0:
                    continue
                second = venue.apply(first).quote_exact_in(connector, token_out, first.amount_out)
            except QuoteError:
                if not skip_errors:
                    raise
                continue
            if second is not None:
                consider((first, second), venue)
    return best


def candidate_routes(
    venues: Iterable[Venue], token_in: str, token_out: str, amount_in: int, *, via: Sequence[str] = ()
) -> list[Route]:
    """Every distinct path `best_route` chooses from, each quoted for `amount_in`: a direct swap on every
    pool of every venue, and token_in -> c -> token_out on one venue for every connector c (best pool of
    each hop). Paths that cannot quote the amount (QuoteError) or pay nothing are left out. Best first
    (ties: direct before two-hop, venues and connectors in the order given)."""
    if amount_in <= 0:
        raise ValueError("amount_in must be > 0")
    if token_in.lower() == token_out.lower():
        raise ValueError("token_in and token_out are the same token")
    venues = list(venues)
    found: list[Route] = []
    for venue in venues:
        for pool in venue.pools(token_in, token_out):
            try:
                q = venue.quote_exact_in(token_in, token_out, amount_in, pool=pool)
            except QuoteError:
                continue
            if q is not None and q.amount_out > 0:
                found.append(Route((q,), executor_route((q,), pool_ids=_venue_pool_ids(venue))))
    ends = {token_in.lower(), token_out.lower()}
    for venue in venues:
        for connector in via:
            if connector.lower() in ends:
                continue
            try:
                first = venue.quote_exact_in(token_in, connector, amount_in)
                if first is None or first.amount_out == 0:
                    continue
                second = venue.apply(first).quote_exact_in(connector, token_out, first.amount_out)
            except QuoteError:
                continue
            if second is not None and second.amount_out > 0:
                hops = (first, second)
                found.append(Route(hops, executor_route(hops, pool_ids=_venue_pool_ids(venue))))
    order = {id(r): i for i, r in enumerate(found)}
    found.sort(key=lambda r: (-r.amount_out, order[id(r)]))
    return found


def requote(venues: Mapping[str, Venue], route: Route, amount_in: int) -> Route | None:
    """The same path as `route` (same venue, same pools, same tokens) quoted for `amount_in`, on the
    venues' current state (`venues` by name). None when a pool of the path cannot quote that amount
    (QuoteError) or the path no longer trades; ValueError for amount_in <= 0.

    What a size search on one route needs: the output of one fixed path as a function of the input.
    """
    if amount_in <= 0:
        raise ValueError("amount_in must be > 0")
    venue = venues.get(route.venue)
    if venue is None:
        return None
    hops: list[Quote] = []
    amount = amount_in
    try:
        for i, hop in enumerate(route.hops):
            if i:
                venue = venue.apply(hops[-1])
            q = venue.quote_exact_in(hop.token_in, hop.token_out, amount, pool=hop.pool)
            if q is None or q.amount_out <= 0:
                return None
            hops.append(q)
            amount = q.amount_out
    except QuoteError:
        return None
    return Route(tuple(hops), route.executor_route)
