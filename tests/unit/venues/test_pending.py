"""strategies.venues.pending: pending swaps applied to real venue classes holding synthetic states.

Exact-input hops equal the venues' own chained quotes; exact-output hops equal the routers' math
(Router02's getAmountsIn, the V3 pool's exact-output loop, Balancer GIVEN_OUT); the state after is the
pool's after that swap; untracked pools, limits, deadlines and reverts give None with a reason.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Self

from eth_abi.abi import encode

from keeper.chain import uniswap_v2_math as v2
from keeper.chain import uniswap_v3_math as v3
from keeper.chain.swaps import SELECTORS, PendingSwap, SwapDecoder, SwapHop
from strategies.venues import balancer_math as bm
from strategies.venues.balancer_stable import BalancerStableVenue, StablePool, StablePoolState
from strategies.venues.base import Pair, Quote, RouteKind, Venue, pair_key
from strategies.venues.pending import apply_pending, explain_pending, hop_pool, resolve_pools, touches
from strategies.venues.uniswap_v2 import UniswapV2Venue, V2Pair, V2Reserves
from strategies.venues.uniswap_v3 import UniswapV3Venue, V3Pool

# token addresses in increasing order (V2/V3 token0 is the lower one)
T1 = "0x" + "11" * 20
T2 = "0x" + "22" * 20
T3 = "0x" + "33" * 20
T4 = "0x" + "44" * 20
PAIR12 = "0x" + "a1" * 20
PAIR23 = "0x" + "a2" * 20
POOL12 = "0x" + "b1" * 20
POOL12_HIGH = "0x" + "b3" * 20
POOL23 = "0x" + "b2" * 20
BAL = "0x" + "c1" * 20
BAL_ID = BAL + "0000" + "00" * 9 + "07"
VAULT = "0x" + "ba" * 20
ROUTER = "0x" + "d0" * 20
ME = "0x" + "ee" * 20
H = b"\x01" * 32


def v2_venue() -> UniswapV2Venue:
    venue = UniswapV2Venue([V2Pair(PAIR12, T1, T2), V2Pair(PAIR23, T2, T3)])
    return venue.with_reserves({PAIR12: (10**24, 2 * 10**24), PAIR23: (5 * 10**23, 7 * 10**23)}, block=100)


def full_range_state(sqrt_price: int, liquidity: int, fee: int, spacing: int) -> v3.PoolState:
    lo = v3.nearest_usable_tick(v3.MIN_TICK, spacing)
    hi = v3.nearest_usable_tick(v3.MAX_TICK, spacing)
    near_lo, near_hi = -10 * spacing, 10 * spacing  # a narrow band too, so swaps cross ticks
    ticks = [lo, near_lo, near_hi, hi]
    nets = {lo: liquidity, near_lo: liquidity // 2, near_hi: -(liquidity // 2), hi: -liquidity}
    return v3.PoolState(
        sqrt_price_x96=sqrt_price,
        tick=v3.get_tick_at_sqrt_ratio(sqrt_price),
        liquidity=liquidity + liquidity // 2,
        fee=fee,
        tick_spacing=spacing,
        bitmap=v3.bitmap_from_ticks(ticks, spacing),
        liquidity_net=nets,
    )


def v3_venue() -> UniswapV3Venue:
    pools = [
        V3Pool(POOL12, T1, T2, 500, 10),
        V3Pool(POOL12_HIGH, T1, T2, 3000, 60),
        V3Pool(POOL23, T2, T3, 100, 1),
    ]
    venue = UniswapV3Venue(pools)
    one = 2**96
    return venue.with_states(
        {
            POOL12: full_range_state(one, 10**22, 500, 10),
            POOL12_HIGH: full_range_state(one * 1001 // 1000, 10**21, 3000, 60),
            POOL23: full_range_state(one, 5 * 10**21, 100, 1),
        },
        block=100,
    )


def bal_venue() -> BalancerStableVenue:
    pool = StablePool(
        address=BAL,
        pool_id=BAL_ID,
        vault=VAULT,
        tokens=(T2, T3, BAL),
        bpt_index=2,
        decimals=(18, 18, 18),
        rate_providers=(None, None, None),
    )
    state = StablePoolState(
        balances=(3 * 10**24, 4 * 10**24, 2**111),
        amp=200 * bm.AMP_PRECISION,
        swap_fee=10**14,
        rates=(None, None, None),
        timestamp=1_700_000_000,
    )
    return BalancerStableVenue([pool]).with_states({BAL: state}, block=100)


def swap(
    *hops: SwapHop, exact_in: bool = True, amount: int = 10**18, limit: int = 0, deadline: int | None = None
) -> PendingSwap:
    return PendingSwap(H, ROUTER, hops, exact_in, amount, limit, ME, deadline)


def v2hop(a: str, b: str) -> SwapHop:
    return SwapHop("uniswap_v2", a, b, None)


# ------------------------------------------------------------------------------------------ Uniswap V2


def test_v2_exact_in_path() -> None:
    venue = v2_venue()
    amount = 3 * 10**21
    result = apply_pending([venue], swap(v2hop(T1, T2), v2hop(T2, T3), amount=amount))
    assert result is not None
    (after,), quotes = result
    amounts = v2.get_amounts_out(amount, [(10**24, 2 * 10**24), (5 * 10**23, 7 * 10**23)])
    assert [q.amount_in for q in quotes] == amounts[:2] and quotes[-1].amount_out == amounts[2]
    assert isinstance(after, UniswapV2Venue)
    assert after.reserves(PAIR12) == V2Reserves(10**24 + amount, 2 * 10**24 - amounts[1])
    assert after.reserves(PAIR23) == V2Reserves(5 * 10**23 + amounts[1], 7 * 10**23 - amounts[2])
    assert venue.reserves(PAIR12) == V2Reserves(10**24, 2 * 10**24)  # the input venue is untouched


def test_v2_exact_out_path_is_router02s_get_amounts_in() -> None:
    venue = v2_venue()
    want = 10**21
    result = apply_pending(
        [venue], swap(v2hop(T3, T2), v2hop(T2, T1), exact_in=False, amount=want, limit=10**30)
    )
    assert result is not None
    (after,), quotes = result
    amounts = v2.get_amounts_in(want, [(7 * 10**23, 5 * 10**23), (2 * 10**24, 10**24)])
    assert [q.amount_in for q in quotes] == amounts[:2]
    assert [q.amount_out for q in quotes] == amounts[1:]
    assert isinstance(after, UniswapV2Venue)
    # the pair sends exactly what was asked: not the (larger) output of an exact-input swap of amounts[0]
    assert after.reserves(PAIR23) == V2Reserves(5 * 10**23 - amounts[1], 7 * 10**23 + amounts[0])
    assert after.reserves(PAIR12) == V2Reserves(10**24 - want, 2 * 10**24 + amounts[1])
    # where getAmountIn's rounding lets an exact-input swap of that input pay more than asked
    want = 10**18 + 1998
    need = v2.get_amount_in(want, 10**24, 2 * 10**24)
    exact_in = venue.quote_exact_in(T1, T2, need)
    assert exact_in is not None and exact_in.amount_out > want
    result = apply_pending([venue], swap(v2hop(T1, T2), exact_in=False, amount=want, limit=need))
    assert result is not None
    (after,), (q,) = result
    assert (q.amount_in, q.amount_out) == (need, want)
    assert isinstance(after, UniswapV2Venue) and after.reserves(PAIR12) == V2Reserves(
        10**24 + need, 2 * 10**24 - want
    )


def test_v2_limits_deadline_and_reverts() -> None:
    venue = v2_venue()
    out = v2.get_amount_out(10**18, 10**24, 2 * 10**24)
    assert apply_pending([venue], swap(v2hop(T1, T2), limit=out)) is not None
    reason = explain_pending([venue], swap(v2hop(T1, T2), limit=out + 1))
    assert isinstance(reason, str) and "amountOutMin" in reason
    need = v2.get_amount_in(10**18, 10**24, 2 * 10**24)
    assert apply_pending([venue], swap(v2hop(T1, T2), exact_in=False, limit=need)) is not None
    assert apply_pending([venue], swap(v2hop(T1, T2), exact_in=False, limit=need - 1)) is None
    assert apply_pending([venue], swap(v2hop(T1, T2), deadline=10), timestamp=10) is not None
    assert "deadline" in str(explain_pending([venue], swap(v2hop(T1, T2), deadline=10), timestamp=11))
    # more than the pair holds, or an output rounding to zero: the router reverts
    assert (
        apply_pending([venue], swap(v2hop(T1, T2), exact_in=False, amount=2 * 10**24, limit=2**200)) is None
    )
    assert apply_pending([venue], swap(v2hop(T2, T1), amount=1)) is None
    # one pair twice in a path: Router02 prices every hop from the reserves before; not modelled
    assert "twice" in str(explain_pending([venue], swap(v2hop(T1, T2), v2hop(T2, T1))))


def test_untracked_pools() -> None:
    venue = v2_venue()
    reason = explain_pending([venue], swap(v2hop(T1, T2), v2hop(T2, T4)))
    assert isinstance(reason, str) and "not tracked" in reason
    assert resolve_pools([venue], swap(v2hop(T1, T2), v2hop(T2, T4))) == (PAIR12, None)
    # a V2 hop is not matched on a V3 venue, even if it tracks the pair
    assert apply_pending([v3_venue()], swap(v2hop(T1, T2))) is None
    # no state read: cannot apply
    bare = UniswapV2Venue([V2Pair(PAIR12, T1, T2)])
    assert "StateNotLoaded" in str(explain_pending([bare], swap(v2hop(T1, T2))))


def test_touches_and_venue_names() -> None:
    v2v, v3v = v2_venue(), v3_venue()
    s = swap(SwapHop("uniswap_v3", T1, T2, 3000), SwapHop("uniswap_v3", T2, T3, 100))
    assert resolve_pools([v2v, v3v], s) == (POOL12_HIGH, POOL23)
    assert touches([v2v, v3v], s, {POOL23.upper().replace("0X", "0x")})
    assert not touches([v2v, v3v], s, {POOL12, PAIR12})
    assert hop_pool([v2v, v3v], SwapHop("uniswap_v3", T1, T2, 500)) == (1, POOL12)
    assert hop_pool([v2v, v3v], SwapHop("uniswap_v3", T1, T2, 10000)) is None  # no such fee tier
    # a router restricted to venues by name
    assert apply_pending([v2v], swap(v2hop(T1, T2)), venue_names={ROUTER: ["uniswap_v2"]}) is not None
    assert apply_pending([v2v], swap(v2hop(T1, T2)), venue_names={ROUTER: ["sushiswap"]}) is None
    assert apply_pending([v2v], swap(v2hop(T1, T2)), venue_names={"0x" + "99" * 20: ["uniswap_v2"]}) is None


# ------------------------------------------------------------------------------------------ Uniswap V3


def test_v3_exact_in_path_equals_chained_venue_quotes() -> None:
    venue = v3_venue()
    amount = 5 * 10**20
    s = swap(SwapHop("uniswap_v3", T1, T2, 500), SwapHop("uniswap_v3", T2, T3, 100), amount=amount)
    result = apply_pending([venue], s)
    assert result is not None
    (after,), quotes = result
    q1 = venue.quote_exact_in(T1, T2, amount, pool=POOL12)
    assert q1 is not None
    q2 = venue.apply(q1).quote_exact_in(T2, T3, q1.amount_out, pool=POOL23)
    assert q2 is not None
    assert quotes == [q1, q2]
    assert isinstance(after, UniswapV3Venue)
    assert after.state(POOL12) == q1.state_after and after.state(POOL23) == q2.state_after
    assert after.state(POOL12_HIGH) == venue.state(POOL12_HIGH)


def test_v3_exact_out_runs_the_pools_exact_output_loop() -> None:
    venue = v3_venue()
    want = 7 * 10**20  # crosses the narrow band's tick
    s = swap(SwapHop("uniswap_v3", T2, T1, 500), exact_in=False, amount=want, limit=2**128)
    result = apply_pending([venue], s)
    assert result is not None
    (after,), (q,) = result
    state = venue.state(POOL12)
    expected = v3.swap(state, False, -want)
    assert q.amount_out == want and q.amount_in == expected.amount1
    assert q.amount_in == v3.quote_exact_output_single(state, False, want)
    assert isinstance(after, UniswapV3Venue)
    assert after.state(POOL12).sqrt_price_x96 == expected.sqrt_price_x96
    assert after.state(POOL12).liquidity == expected.liquidity
    assert expected.ticks_crossed >= 1
    # over the limit: reverts
    assert (
        apply_pending(
            [venue],
            swap(SwapHop("uniswap_v3", T2, T1, 500), exact_in=False, amount=want, limit=q.amount_in - 1),
        )
        is None
    )
    # exact output across two pools: computed from the last hop back
    s2 = swap(
        SwapHop("uniswap_v3", T3, T2, 100),
        SwapHop("uniswap_v3", T2, T1, 500),
        exact_in=False,
        amount=want,
        limit=2**128,
    )
    result2 = apply_pending([venue], s2)
    assert result2 is not None
    _, (h1, h2) = result2
    assert h2.amount_out == want and h1.amount_out == h2.amount_in
    assert h1.amount_in == v3.quote_exact_output_single(venue.state(POOL23), False, h2.amount_in)


def test_v3_price_limit_is_a_partial_fill() -> None:
    venue = v3_venue()
    state = venue.state(POOL12)
    limit = state.sqrt_price_x96 * 9999 // 10000  # selling token0 moves the price down to at most here
    big = 10**24
    result = apply_pending([venue], swap(SwapHop("uniswap_v3", T1, T2, 500, limit), amount=big))
    assert result is not None
    (after,), (q,) = result
    assert q.amount_in < big
    assert isinstance(after, UniswapV3Venue) and after.state(POOL12).sqrt_price_x96 == limit
    # V3 hops (fee tiers, price limits) only run on the V3 venue, whose pools and swap loop are known
    fork = ConstantProductVenue((10**24, 10**24), kind_=RouteKind.UNISWAP_V3)
    assert "not tracked" in str(explain_pending([fork], swap(SwapHop("uniswap_v3", T1, T2, 500, limit))))
    # a limit on the wrong side of the price: the pool reverts (SPL)
    wrong = state.sqrt_price_x96 + 1
    assert "SPL" in str(explain_pending([venue], swap(SwapHop("uniswap_v3", T1, T2, 500, wrong))))


# ------------------------------------------------------------------------------------------ Balancer


def test_balancer_given_in_and_given_out() -> None:
    venue = bal_venue()
    hop = SwapHop("balancer_v2", T2, T3, BAL_ID)
    result = apply_pending([venue], swap(hop, amount=10**22))
    assert result is not None
    (after,), (q,) = result
    expected = venue.quote_exact_in(T2, T3, 10**22)
    assert q == expected
    assert isinstance(after, BalancerStableVenue) and after.state(BAL).balances == q.state_after.balances
    result = apply_pending([venue], swap(hop, exact_in=False, amount=10**22, limit=2 * 10**22))
    assert result is not None
    _, (q_out,) = result
    assert q_out == venue.quote_exact_out(T2, T3, 10**22) and q_out.amount_out == 10**22
    # a pool id of a pool we do not track
    other = SwapHop("balancer_v2", T2, T3, "0x" + "c2" * 20 + "00" * 12)
    assert apply_pending([venue], swap(other)) is None


def test_mixed_venues_decoded_end_to_end() -> None:
    """Calldata -> SwapDecoder -> apply_pending, with a V2, a V3 and a Balancer venue side by side."""
    venues: list[Venue] = [v2_venue(), v3_venue(), bal_venue()]
    decoder = SwapDecoder({ROUTER: "uniswap_v3", VAULT: "balancer_v2"})
    path = bytes.fromhex(T1[2:]) + (500).to_bytes(3, "big") + bytes.fromhex(T2[2:])
    data = SELECTORS["exactInput"] + encode(
        ["(bytes,address,uint256,uint256,uint256)"], [(path, ME, 10**10, 10**18, 0)]
    )
    s = decoder.decode({"to": ROUTER, "input": "0x" + data.hex(), "value": "0x0", "hash": "0x" + H.hex()})
    assert s is not None
    assert touches(venues, s, [POOL12]) and not touches(venues, s, [PAIR12, BAL])
    result = apply_pending(venues, s, timestamp=10**9)
    assert result is not None
    after, _ = result
    assert after[0] is venues[0] and after[2] is venues[2] and after[1] is not venues[1]
    funds = (ME, False, ME, False)
    bal = SELECTORS["batchSwap"] + encode(
        [
            "uint8",
            "(bytes32,uint256,uint256,uint256,bytes)[]",
            "address[]",
            "(address,bool,address,bool)",
            "int256[]",
            "uint256",
        ],
        [0, [(bytes.fromhex(BAL_ID[2:]), 0, 1, 10**21, b"")], [T2, T3], funds, [10**21, 0], 10**10],
    )
    s2 = decoder.decode({"to": VAULT, "input": "0x" + bal.hex()})
    assert s2 is not None and touches(venues, s2, [BAL])
    result2 = apply_pending(venues, s2)
    assert result2 is not None and result2[1][0].amount_in == 10**21


# ---------------------------------------------------------------------------- a venue with no exact-out


@dataclass
class ConstantProductVenue:
    """A V2-kind venue that is not UniswapV2Venue and has no quote_exact_out: the search fallback."""

    reserves: tuple[int, int]
    name: str = "fork"
    block: int | None = 1
    kind_: RouteKind = RouteKind.UNISWAP_V2

    @property
    def kind(self) -> RouteKind:
        return self.kind_

    def pairs(self) -> frozenset[Pair]:
        return frozenset({pair_key(T1, T2)})

    def pools(self, token_a: str, token_b: str) -> tuple[str, ...]:
        return (PAIR12,) if pair_key(token_a, token_b) == pair_key(T1, T2) else ()

    async def refresh(self, rpc: Any, block: int) -> None:
        self.block = block

    def quote_exact_in(
        self, token_in: str, token_out: str, amount_in: int, *, pool: str | None = None
    ) -> Quote | None:
        r_in, r_out = self.reserves if token_in == T1 else self.reserves[::-1]
        out = v2.get_amount_out(amount_in, r_in, r_out)
        after = (r_in + amount_in, r_out - out) if token_in == T1 else (r_out - out, r_in + amount_in)
        return Quote(self.name, self.kind, PAIR12, token_in, token_out, amount_in, out, 30, self.block, after)

    def apply(self, quote: Quote) -> Self:
        out = copy.copy(self)
        out.reserves = quote.state_after
        return out


def test_exact_out_search_fallback() -> None:
    venue = ConstantProductVenue((10**24, 2 * 10**24))
    want = 12345 * 10**15
    result = apply_pending([venue], swap(v2hop(T1, T2), exact_in=False, amount=want, limit=2**200))
    assert result is not None
    _, (q,) = result
    assert q.amount_out >= want
    assert v2.get_amount_out(q.amount_in - 1, 10**24, 2 * 10**24) < want  # the least such input
