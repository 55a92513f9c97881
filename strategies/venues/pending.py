"""Venues as they will be after a pending swap (`keeper.chain.swaps.PendingSwap`) executes.

`apply_pending(venues, swap)` quotes each hop on the venue tracking its pool, from the venues' current
state, and applies it (`Venue.apply`), as the router or Vault will execute it:

- exact input: hops in path order, each hop's output the next one's input; the last output must reach
  `swap.limit` (amountOutMin) or the tx reverts (None).
- exact output: hops from the last back to the first (the order the V3 router and the Vault run them in;
  Router02 computes the same amounts from the reserves before the swap), each hop's input the previous
  one's output; the first input must be at most `swap.limit` (amountInMax).

Exact-output hops are exact per venue: Uniswap V2 pays `getAmountIn` (rounded up, + 1) and the pair
sends exactly the amount asked, so its reserves move by (amountIn, amountOut), not by an exact-input swap
of amountIn (which would pay out a few wei more); Uniswap V3 runs the pool's own exact-output swap loop
(its price moves by the output, not the input); Balancer uses the venue's `quote_exact_out` (GIVEN_OUT).
Another venue with neither falls back to the least input whose exact-input quote gives the output (a
binary search over `quote_exact_in`), exact only for venues whose exact-output swap is that.
Uniswap V3 hops with a price limit (exact*Single's sqrtPriceLimitX96) run the pool's loop with that
limit: a partial fill, as on chain.

None ("the swap will not move the tracked state predictably") when a hop's pool is not tracked by any
venue given (the swap touches pools we do not follow), a venue cannot quote it exactly (state not read,
beyond the V3 words read), the swap would revert on chain (limit, deadline given `timestamp`, not enough
liquidity, a zero output on V2, a V3 pool entered twice by exact output), or a V2 path uses one pair
twice (Router02 prices every hop from the reserves before the swap: not modelled). `explain_pending`
returns the reason instead of None.

Hop -> venue: a hop's protocol picks venues by kind (Uniswap V2 / V3 route kinds, the Balancer kind);
`venue_names` (router address -> venue names) restricts a router's swaps to the venues of its own
factory or Vault (needed when two venues of one kind track the same pair, e.g. two V2 forks); with
it, the swaps of a router it does not list touch no tracked pool. A V2 hop
runs on the pair of its tokens; a V3 hop on the pool of its tokens and fee tier; a Balancer hop on the
pool whose address starts its pool id.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

from keeper.chain import uniswap_v2_math as v2
from keeper.chain import uniswap_v3_math as v3
from keeper.chain.swaps import PendingSwap, SwapHop
from strategies.venues.balancer_stable import balancer_route_kind
from strategies.venues.base import (
    InsufficientLiquidity,
    OutsideReadRange,
    Quote,
    QuoteError,
    RouteKind,
    Venue,
    VenueError,
)
from strategies.venues.uniswap_v2 import UniswapV2Venue, V2Reserves
from strategies.venues.uniswap_v3 import UniswapV3Venue

__all__ = [
    "PendingApplied",
    "apply_pending",
    "explain_pending",
    "hop_pool",
    "resolve_pools",
    "touches",
]

log = logging.getLogger("strategies.venues.pending")

PendingApplied = tuple[list[Venue], list[Quote]]
"""The venues after the swap (same order as given, touched ones replaced) and one quote per hop, in path
order (token_in first)."""

_MAX_SEARCH_STEPS = 600


@runtime_checkable
class _ExactOut(Protocol):
    def quote_exact_out(
        self, token_in: str, token_out: str, amount_out: int, *, pool: str | None = None
    ) -> Quote | None: ...


class _Fail(Exception):
    """Internal: why a pending swap cannot be applied."""


def _kind_matches(venue: Venue, hop: SwapHop) -> bool:
    kind = venue.kind
    if hop.protocol == "uniswap_v2":
        return kind == RouteKind.UNISWAP_V2
    if hop.protocol == "uniswap_v3":
        return kind == RouteKind.UNISWAP_V3
    return int(kind) == int(balancer_route_kind())


def hop_pool(
    venues: Sequence[Venue], hop: SwapHop, *, names: Collection[str] | None = None
) -> tuple[int, str] | None:
    """(index in `venues`, pool address as the venue spells it) of the pool a hop swaps on; None if no
    venue given tracks it. `names`: only venues with these names are considered."""
    for i, venue in enumerate(venues):
        if names is not None and venue.name not in names:
            continue
        if not _kind_matches(venue, hop):
            continue
        candidates = venue.pools(hop.token_in, hop.token_out)
        if not candidates:
            continue
        if hop.protocol == "uniswap_v2":
            return i, candidates[0]
        if hop.protocol == "uniswap_v3":
            if not isinstance(venue, UniswapV3Venue):
                continue
            for pool in candidates:
                if venue.pool_info(pool).fee == hop.pool_hint:
                    return i, pool
            continue
        if not isinstance(hop.pool_hint, str):
            continue
        address = hop.pool_hint[:42].lower()
        for pool in candidates:
            if pool.lower() == address:
                return i, pool
    return None


def _names(venue_names: Mapping[str, Collection[str]] | None, swap: PendingSwap) -> Collection[str] | None:
    if venue_names is None:
        return None
    for router, names in venue_names.items():
        if router.lower() == swap.router:
            return names
    return ()


def resolve_pools(
    venues: Sequence[Venue], swap: PendingSwap, *, venue_names: Mapping[str, Collection[str]] | None = None
) -> tuple[str | None, ...]:
    """Per hop, the tracked pool it swaps on (None: no venue given tracks it). No quoting: cheap."""
    names = _names(venue_names, swap)
    out = []
    for hop in swap.hops:
        found = hop_pool(venues, hop, names=names)
        out.append(None if found is None else found[1])
    return tuple(out)


def touches(
    venues: Sequence[Venue],
    swap: PendingSwap,
    pools: Collection[str],
    *,
    venue_names: Mapping[str, Collection[str]] | None = None,
) -> bool:
    """Whether the swap trades on any of `pools` (addresses, any case): "does it move one of my pegged
    pools". Only pools some venue given tracks can be recognized."""
    wanted = {p.lower() for p in pools}
    return any(
        p is not None and p.lower() in wanted for p in resolve_pools(venues, swap, venue_names=venue_names)
    )


def apply_pending(
    venues: Sequence[Venue],
    swap: PendingSwap,
    *,
    timestamp: int | None = None,
    venue_names: Mapping[str, Collection[str]] | None = None,
) -> PendingApplied | None:
    """The venues after `swap` and its per-hop quotes; None when it cannot be applied exactly or would
    revert (see the module docstring). `timestamp`: of the block it is expected in (checks the deadline)."""
    result = explain_pending(venues, swap, timestamp=timestamp, venue_names=venue_names)
    if isinstance(result, str):
        log.debug("pending swap %s not applied: %s", swap.tx_hash.hex(), result)
        return None
    return result


def explain_pending(
    venues: Sequence[Venue],
    swap: PendingSwap,
    *,
    timestamp: int | None = None,
    venue_names: Mapping[str, Collection[str]] | None = None,
) -> PendingApplied | str:
    """`apply_pending`, with the reason (a short sentence) instead of None."""
    try:
        return _apply(venues, swap, timestamp, _names(venue_names, swap))
    except _Fail as exc:
        return str(exc)


def _apply(
    venues: Sequence[Venue], swap: PendingSwap, timestamp: int | None, names: Collection[str] | None
) -> PendingApplied:
    if not swap.hops:
        raise _Fail("no hops")
    if timestamp is not None and swap.deadline is not None and timestamp > swap.deadline:
        raise _Fail(f"deadline {swap.deadline} passed at timestamp {timestamp} (reverts)")
    located: list[tuple[int, str]] = []
    for hop in swap.hops:
        found = hop_pool(venues, hop, names=names)
        if found is None:
            raise _Fail(f"pool of hop {hop.token_in} -> {hop.token_out} ({hop.protocol}) is not tracked")
        located.append(found)
    keys = [(i, pool.lower()) for i, pool in located]
    repeated = len(set(keys)) != len(keys)
    if repeated and any(h.protocol == "uniswap_v2" for h in swap.hops):
        raise _Fail("a V2 path through one pair twice (Router02 prices it from the reserves before)")
    if repeated and not swap.exact_in and any(h.protocol == "uniswap_v3" for h in swap.hops):
        raise _Fail("a V3 exact-output path entering one pool twice (reverts: LOK)")
    state = list(venues)
    quotes: list[Quote] = []
    amount = swap.amount
    try:
        if swap.exact_in:
            for hop, (i, pool) in zip(swap.hops, located, strict=True):
                q = _exact_in(state[i], hop, pool, amount)
                state[i] = state[i].apply(q)
                quotes.append(q)
                amount = q.amount_out
            if amount < swap.limit:
                raise _Fail(f"output {amount} below amountOutMin {swap.limit} (reverts)")
        else:
            for hop, (i, pool) in zip(reversed(swap.hops), reversed(located), strict=True):
                q = _exact_out(state[i], hop, pool, amount)
                state[i] = state[i].apply(q)
                quotes.append(q)
                amount = q.amount_in
            quotes.reverse()
            if amount > swap.limit:
                raise _Fail(f"input {amount} above amountInMax {swap.limit} (reverts)")
    except (VenueError, ValueError) as exc:  # QuoteError, StateNotLoaded, ...; ValueError: amounts <= 0
        raise _Fail(f"{type(exc).__name__}: {exc}") from None
    return state, quotes


# ------------------------------------------------------------------------------------------ hops


def _exact_in(venue: Venue, hop: SwapHop, pool: str, amount_in: int) -> Quote:
    if amount_in <= 0:
        raise _Fail("a hop's input is 0 (a previous hop pays nothing)")
    if hop.sqrt_price_limit_x96:
        return _v3_swap(_v3_venue(venue), hop, pool, amount_in, hop.sqrt_price_limit_x96)
    q = venue.quote_exact_in(hop.token_in, hop.token_out, amount_in, pool=pool)
    if q is None:
        raise _Fail(f"{venue.name} does not quote {hop.token_in} -> {hop.token_out} on {pool}")
    return q


def _exact_out(venue: Venue, hop: SwapHop, pool: str, amount_out: int) -> Quote:
    if amount_out <= 0:
        raise _Fail("a hop's output is 0 (a later hop needs nothing)")
    if isinstance(venue, UniswapV2Venue):
        return _v2_exact_out(venue, hop, pool, amount_out)
    if isinstance(venue, UniswapV3Venue) or hop.sqrt_price_limit_x96:
        return _v3_swap(_v3_venue(venue), hop, pool, -amount_out, hop.sqrt_price_limit_x96)
    if isinstance(venue, _ExactOut):
        q = venue.quote_exact_out(hop.token_in, hop.token_out, amount_out, pool=pool)
        if q is None:
            raise _Fail(f"{venue.name} does not quote {hop.token_in} -> {hop.token_out} on {pool}")
        return q
    return _search_exact_out(venue, hop, pool, amount_out)


def _v3_venue(venue: Venue) -> UniswapV3Venue:
    if not isinstance(venue, UniswapV3Venue):
        raise _Fail(f"{venue.name}: a V3 price limit on a venue whose swap loop is not known")
    return venue


def _v2_exact_out(venue: UniswapV2Venue, hop: SwapHop, pool: str, amount_out: int) -> Quote:
    """Router02's exact-output hop: getAmountIn, and the pair sends exactly amount_out."""
    before = venue.reserves(pool)
    # Which reserve is the input: the pair's token order is by address (UniswapV2Factory sorts them).
    zero_for_one = hop.token_in.lower() < hop.token_out.lower()
    r_in, r_out = (before.reserve0, before.reserve1) if zero_for_one else (before.reserve1, before.reserve0)
    try:
        guess = v2.get_amount_in(amount_out, r_in, r_out)
        probe = venue.quote_exact_in(hop.token_in, hop.token_out, guess, pool=pool)  # the pair's fee
        if probe is None:
            raise _Fail(f"{venue.name} does not quote {hop.token_in} -> {hop.token_out}")
        amount_in = (
            guess if probe.fee == v2.DEFAULT_FEE_BPS else v2.get_amount_in(amount_out, r_in, r_out, probe.fee)
        )
    except ValueError as exc:  # the library's reverts (INSUFFICIENT_LIQUIDITY)
        raise _Fail(f"{venue.name} pair {pool}: {exc}") from None
    if not isinstance(probe.state_after, V2Reserves) or (
        (probe.state_after.reserve0 > before.reserve0) != zero_for_one
    ):
        raise _Fail(f"{venue.name} pair {pool}: token0 is not the lower address")
    after_in, after_out = r_in + amount_in, r_out - amount_out
    if after_in >= 2**112:
        raise _Fail(f"{venue.name} pair {pool}: reserves would overflow uint112 (reverts)")
    after = V2Reserves(after_in, after_out) if zero_for_one else V2Reserves(after_out, after_in)
    return replace(probe, amount_in=amount_in, amount_out=amount_out, state_after=after)


def _v3_swap(
    venue: UniswapV3Venue, hop: SwapHop, pool: str, amount_specified: int, price_limit: int
) -> Quote:
    """The pool's swap loop from the venue's state: exact input (> 0) or output (< 0), with the hop's
    price limit (0: none; then SwapRouter requires the whole amount to be swapped)."""
    info = venue.pool_info(pool)
    state = venue.state(pool)
    zero_for_one = hop.token_in.lower() == info.token0.lower()
    what = f"{venue.name} pool {info.address}"
    if state.sqrt_price_x96 == 0:
        raise _Fail(f"{what}: not initialized")
    try:
        result = v3.swap(state, zero_for_one, amount_specified, price_limit or None)
    except v3.UniswapV3MathError as exc:
        raise _Fail(f"{what}: {exc}") from None
    paid_in = result.amount0 if zero_for_one else result.amount1
    received = -(result.amount1 if zero_for_one else result.amount0)
    if not price_limit:
        if amount_specified > 0 and paid_in != amount_specified:
            raise _Fail(f"{what}: only {paid_in} of {amount_specified} can be swapped (price limit)")
        if amount_specified < 0 and received != -amount_specified:
            raise _Fail(
                f"{what}: only {received} of {-amount_specified} out before the price limit (reverts)"
            )
    token_in, token_out = (info.token0, info.token1) if zero_for_one else (info.token1, info.token0)
    return Quote(
        venue=venue.name,
        kind=venue.kind,
        pool=info.address,
        token_in=token_in,
        token_out=token_out,
        amount_in=paid_in,
        amount_out=received,
        fee=info.fee,
        block=venue.block,
        state_after=result.state_after(state),
    )


def _search_exact_out(venue: Venue, hop: SwapHop, pool: str, amount_out: int) -> Quote:
    """The least input whose exact-input quote pays at least `amount_out` (bracketing, then bisection)."""

    def quote(x: int) -> Quote | None:
        try:
            return venue.quote_exact_in(hop.token_in, hop.token_out, x, pool=pool)
        except (InsufficientLiquidity, OutsideReadRange):
            raise
        except QuoteError:  # e.g. an input too small to pay anything
            return None

    steps = 0
    lo, hi = 0, max(1, amount_out)
    best = quote(hi)
    while best is None or best.amount_out < amount_out:
        steps += 1
        if steps > 256:
            raise _Fail(f"{venue.name}: no input buys {amount_out}")
        lo, hi = hi, hi * 2
        best = quote(hi)
    while hi - lo > 1 and steps < _MAX_SEARCH_STEPS:
        steps += 1
        mid = (lo + hi) // 2
        q = quote(mid)
        if q is not None and q.amount_out >= amount_out:
            hi, best = mid, q
        else:
            lo = mid
    return best
