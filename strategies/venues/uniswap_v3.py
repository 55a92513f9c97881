"""Uniswap V3 as a venue: a fixed list of pools, their state near the current price, exact quotes.

State per pool (what `UniswapV3Pool.swap` reads): slot0's sqrtPriceX96 and tick, the in-range liquidity,
and the tick bitmap words within `words_each_side` words of the current one, with `liquidityNet` of every
initialized tick in them. A word covers 256 * tickSpacing ticks (2,560 ticks = a x1.29 price move at
spacing 10; 256 ticks = 2.6% at spacing 1), so 2-4 words each side cover any swap a keeper makes; a quote
that would move the price past the words read raises `OutsideReadRange` instead of treating the unread
words as empty.

Refresh cost: one JSON-RPC batch for all pools in the steady state. The batch reads slot0, liquidity,
the words the previous refresh needed and the ticks initialized in them; only when the price moved into
another word, or a tick was newly initialized, does a second (and third) batch read what is missing. All
reads are pinned to the block asked for.

Quotes run `keeper.chain.uniswap_v3_math.swap` (an exact port of the pool's swap loop) with a price limit
at the edge of the words read: inside the read range the steps are exactly the pool's, so the result is
what SwapRouter.exactInputSingle pays, to the wei.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

from keeper.chain import uniswap_v3_math as v3
from strategies.venues.base import (
    BatchRpc,
    InsufficientLiquidity,
    OutsideReadRange,
    Pair,
    Quote,
    QuoteError,
    RouteKind,
    StateNotLoaded,
    VenueError,
    addr_key,
    encode_int_arg,
    eth_call,
    pair_key,
    result_word,
    selector,
    signed,
    word_address,
)

__all__ = ["UniswapV3Venue", "V3Pool", "load_v3_pools"]

_SLOT0 = "0x" + selector("slot0()").hex()
_LIQUIDITY = "0x" + selector("liquidity()").hex()
_TOKEN0 = "0x" + selector("token0()").hex()
_TOKEN1 = "0x" + selector("token1()").hex()
_FEE = "0x" + selector("fee()").hex()
_TICK_SPACING = "0x" + selector("tickSpacing()").hex()
_TICK_BITMAP = selector("tickBitmap(int16)")
_TICKS = selector("ticks(int24)")

DEFAULT_WORDS_EACH_SIDE = 2


@dataclass(frozen=True, slots=True)
class V3Pool:
    """A pool's immutable parameters (read once with `load_v3_pools`, or from a config file)."""

    address: str
    token0: str
    token1: str
    fee: int
    """Hundredths of a bip: 500 = 0.05%."""
    tick_spacing: int

    @property
    def key(self) -> str:
        return addr_key(self.address)


async def load_v3_pools(rpc: BatchRpc, addresses: Iterable[str], block: int | str = "latest") -> list[V3Pool]:
    """token0, token1, fee and tickSpacing of each pool, in one batch."""
    pools = list(addresses)
    tag = hex(block) if isinstance(block, int) else block
    calls = [eth_call(p, data, tag) for p in pools for data in (_TOKEN0, _TOKEN1, _FEE, _TICK_SPACING)]
    replies = await rpc.batch(calls)
    out = []
    for i, address in enumerate(pools):
        t0, t1, fee, spacing = (result_word(r, 0, f"pool {address}") for r in replies[4 * i : 4 * i + 4])
        out.append(
            V3Pool(word_address(int(address, 16)), word_address(t0), word_address(t1), fee, signed(spacing))
        )
    return out


@dataclass(frozen=True, slots=True)
class _Limits:
    """sqrtPriceX96 at the edges of the words read (None: that side was read to the end of the pool)."""

    down: int | None
    up: int | None


def _word_range(pool: V3Pool, tick: int, words_each_side: int | None) -> tuple[int, int, bool]:
    """(lowest word, highest word, whether that is every word the pool can use) to read around `tick`."""
    spacing = pool.tick_spacing
    min_word = v3.compress_tick(v3.MIN_TICK, spacing) >> 8
    max_word = v3.compress_tick(v3.MAX_TICK, spacing) >> 8
    if words_each_side is None:
        return min_word, max_word, True
    here = v3.compress_tick(tick, spacing) >> 8
    lo, hi = max(min_word, here - words_each_side), min(max_word, here + words_each_side)
    return lo, hi, (lo, hi) == (min_word, max_word)


def _limits(pool: V3Pool, lo: int, hi: int) -> _Limits:
    """The prices at which a swap would need a word outside [lo, hi]: going down, the first tick of
    word lo (the pool's next step would search word lo - 1); going up, the last tick of word hi."""
    spacing = pool.tick_spacing
    min_word = v3.compress_tick(v3.MIN_TICK, spacing) >> 8
    max_word = v3.compress_tick(v3.MAX_TICK, spacing) >> 8
    down = v3.get_sqrt_ratio_at_tick(lo * 256 * spacing) if lo > min_word else None
    up = v3.get_sqrt_ratio_at_tick((hi * 256 + 255) * spacing) if hi < max_word else None
    return _Limits(down, up)


def _rate(pool: V3Pool, zero_for_one: bool, sqrt_price_x96: int) -> tuple[int, int] | None:
    """Output per unit input at a price, after the fee: token1/token0 = sqrtP^2 / 2^192."""
    if sqrt_price_x96 <= 0:
        return None
    keep = 1_000_000 - pool.fee
    square = sqrt_price_x96 * sqrt_price_x96
    if zero_for_one:
        return (keep * square, 1_000_000 << 192)
    return (keep << 192, 1_000_000 * square)


class UniswapV3Venue:
    """Uniswap V3 pools whose swaps SwapRouter `exactInput` chains (one factory).

    `words_each_side`: bitmap words read each side of the current one (None: every word; for
    spacing-1 pools that is 6,932 words per pool, fine once, too much every block).
    """

    def __init__(
        self,
        pools: Sequence[V3Pool],
        *,
        words_each_side: int | None = DEFAULT_WORDS_EACH_SIDE,
        name: str = "uniswap_v3",
    ) -> None:
        if words_each_side is not None and words_each_side < 0:
            raise ValueError("words_each_side must be >= 0 or None")
        self._name = name
        self.words_each_side = words_each_side
        self._pools: dict[str, V3Pool] = {}
        self._by_pair: dict[Pair, list[V3Pool]] = {}
        for pool in pools:
            if pool.key in self._pools:
                raise ValueError(f"pool {pool.address} listed twice")
            if pool.tick_spacing <= 0:
                raise ValueError(f"pool {pool.address}: bad tick spacing {pool.tick_spacing}")
            self._pools[pool.key] = pool
            self._by_pair.setdefault(pair_key(pool.token0, pool.token1), []).append(pool)
        for group in self._by_pair.values():
            group.sort(key=lambda p: (p.fee, p.key))  # ties between pools go to the lower fee
        self._states: dict[str, v3.PoolState] = {}
        self._limits: dict[str, _Limits] = {}
        self._block: int | None = None
        self.last_refresh_round_trips = 0
        self.last_refresh_calls = 0

    # -------------------------------------------------------------------------------- Venue protocol

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> RouteKind:
        return RouteKind.UNISWAP_V3

    @property
    def block(self) -> int | None:
        return self._block

    def pairs(self) -> frozenset[Pair]:
        return frozenset(self._by_pair)

    def pools(self, token_a: str, token_b: str) -> tuple[str, ...]:
        return tuple(p.address for p in self._by_pair.get(pair_key(token_a, token_b), ()))

    def pool_info(self, pool: str) -> V3Pool:
        try:
            return self._pools[addr_key(pool)]
        except KeyError:
            raise VenueError(f"{self._name}: unknown pool {pool}") from None

    def state(self, pool: str) -> v3.PoolState:
        """The pool's current local state (after `refresh`, or as `apply` left it)."""
        state = self._states.get(addr_key(pool))
        if state is None:
            raise StateNotLoaded(f"{self._name}: pool {pool} has no state: refresh first")
        return state

    async def refresh(self, rpc: BatchRpc, block: int) -> None:
        tag = hex(block)
        pools = list(self._pools.values())
        # Round 1: slot0 and liquidity of every pool, plus the words the previous state needed and the
        # ticks initialized in them (in the steady state this is all that is needed).
        calls: list[tuple[str, Any]] = []
        guesses: list[tuple[list[int], list[int]]] = []
        for pool in pools:
            calls.append(eth_call(pool.address, _SLOT0, tag))
            calls.append(eth_call(pool.address, _LIQUIDITY, tag))
            prev = self._states.get(pool.key)
            words: list[int] = []
            ticks: list[int] = []
            if prev is not None:
                lo, hi, _ = _word_range(pool, prev.tick, self.words_each_side)
                words = list(range(lo, hi + 1))
                ticks = [
                    t
                    for t in v3.ticks_from_bitmap(prev.bitmap, pool.tick_spacing)
                    if lo <= v3.compress_tick(t, pool.tick_spacing) >> 8 <= hi
                ]
            calls.extend(eth_call(pool.address, encode_int_arg(_TICK_BITMAP, w), tag) for w in words)
            calls.extend(eth_call(pool.address, encode_int_arg(_TICKS, t), tag) for t in ticks)
            guesses.append((words, ticks))
        replies = await rpc.batch(calls)
        round_trips, n_calls = 1, len(calls)

        heads: list[tuple[int, int, int]] = []
        bitmaps: list[dict[int, int]] = []
        nets: list[dict[int, int]] = []
        i = 0
        for pool, (words, ticks) in zip(pools, guesses, strict=True):
            what = f"{self._name} pool {pool.address}"
            sqrt_price = result_word(replies[i], 0, what)
            tick = signed(result_word(replies[i], 1, what))
            liquidity = result_word(replies[i + 1], 0, what)
            i += 2
            heads.append((sqrt_price, tick, liquidity))
            bitmap: dict[int, int] = {}
            for w in words:
                bitmap[w] = result_word(replies[i], 0, what)
                i += 1
            net: dict[int, int] = {}
            for t in ticks:
                net[t] = signed(result_word(replies[i], 1, what))
                i += 1
            bitmaps.append(bitmap)
            nets.append(net)

        # Further rounds: words the current tick needs that were not read, then ticks initialized in
        # the needed words whose liquidityNet was not read.
        ranges = [
            _word_range(pool, tick, self.words_each_side)
            for pool, (_, tick, _) in zip(pools, heads, strict=True)
        ]
        while True:
            wanted: list[tuple[int, str, int]] = []  # (pool index, "w" | "t", word or tick)
            for k, (pool, (lo, hi, _)) in enumerate(zip(pools, ranges, strict=True)):
                missing_words = [w for w in range(lo, hi + 1) if w not in bitmaps[k]]
                wanted.extend((k, "w", w) for w in missing_words)
                needed = {w: bitmaps[k][w] for w in range(lo, hi + 1) if bitmaps[k].get(w)}
                wanted.extend(
                    (k, "t", t) for t in v3.ticks_from_bitmap(needed, pool.tick_spacing) if t not in nets[k]
                )
            if not wanted:
                break
            replies = await rpc.batch(
                [
                    eth_call(
                        pools[k].address, encode_int_arg(_TICK_BITMAP if kind == "w" else _TICKS, x), tag
                    )
                    for k, kind, x in wanted
                ]
            )
            round_trips += 1
            n_calls += len(wanted)
            for (k, kind, x), raw in zip(wanted, replies, strict=True):
                what = f"{self._name} pool {pools[k].address}"
                if kind == "w":
                    bitmaps[k][x] = result_word(raw, 0, what)
                else:
                    nets[k][x] = signed(result_word(raw, 1, what))

        states: dict[str, v3.PoolState] = {}
        limits: dict[str, _Limits] = {}
        for k, pool in enumerate(pools):
            sqrt_price, tick, liquidity = heads[k]
            lo, hi, everything = ranges[k]
            bitmap = {w: word for w in range(lo, hi + 1) if (word := bitmaps[k].get(w, 0))}
            initialized = v3.ticks_from_bitmap(bitmap, pool.tick_spacing)
            states[pool.key] = v3.PoolState(
                sqrt_price_x96=sqrt_price,
                tick=tick,
                liquidity=liquidity,
                fee=pool.fee,
                tick_spacing=pool.tick_spacing,
                bitmap=bitmap,
                liquidity_net={t: nets[k][t] for t in initialized},
                word_bounds=None if everything else (lo, hi),
            )
            limits[pool.key] = _limits(pool, lo, hi)
        self._states, self._limits, self._block = states, limits, block
        self.last_refresh_round_trips, self.last_refresh_calls = round_trips, n_calls

    def quote_exact_in(
        self, token_in: str, token_out: str, amount_in: int, *, pool: str | None = None
    ) -> Quote | None:
        if amount_in <= 0:
            raise ValueError("amount_in must be > 0")
        t_in = token_in.lower()
        candidates = self._by_pair.get(pair_key(token_in, token_out))
        if not candidates or t_in == token_out.lower():
            return None
        if pool is not None:
            candidates = [p for p in candidates if p.key == pool.lower()]
            if not candidates:
                return None
        best: Quote | None = None
        for p in candidates:
            q = self._quote_pool(p, t_in == p.token0.lower(), amount_in)
            if best is None or q.amount_out > best.amount_out:
                best = q
        return best

    def spot_rate(self, token_in: str, token_out: str, pool: str) -> tuple[int, int] | None:
        """(num, den): the output per unit of input of an infinitesimal swap at the pool's current price,
        fee included; every exact quote pays at most amount_in * num / den. None if unknown."""
        info = self._pools.get(pool.lower())
        state = self._states.get(pool.lower())
        if info is None or state is None:
            return None
        return _rate(info, token_in.lower() == info.token0.lower(), state.sqrt_price_x96)

    def marginal_rate(self, quote: Quote) -> tuple[int, int] | None:
        """(num, den): the output per unit of input of an infinitesimal further swap in the same direction
        on the pool after `quote` (the derivative of the exact output at quote.amount_in)."""
        info = self._pools.get(quote.pool.lower())
        if info is None or not isinstance(quote.state_after, v3.PoolState):
            return None
        return _rate(info, quote.token_in.lower() == info.token0.lower(), quote.state_after.sqrt_price_x96)

    def amount_in_for_rate(
        self, token_in: str, token_out: str, pool: str, rate: tuple[int, int]
    ) -> int | None:
        """The input at which the marginal output rate of one swap on the pool falls to `rate` (num, den):
        what the pool's own swap takes to move the price to (rate / (1 - fee)); 0 when the spot rate is
        already at or below it. None if unknown or beyond the part of the pool read."""
        info = self._pools.get(pool.lower())
        state = self._states.get(pool.lower())
        num, den = rate
        if info is None or state is None or num <= 0 or den <= 0 or state.sqrt_price_x96 <= 0:
            return None
        zero_for_one = token_in.lower() == info.token0.lower()
        keep = 1_000_000 - info.fee
        # token1/token0 price P = sqrtP^2 / 2^192; out per in = keep/1e6 * P (0 -> 1) or keep/1e6 / P (1 -> 0)
        if zero_for_one:
            target = math.isqrt((num * 1_000_000 << 192) // (den * keep))
            if target >= state.sqrt_price_x96:
                return 0
        else:
            target = math.isqrt((keep << 192) * den // (num * 1_000_000))
            if target <= state.sqrt_price_x96:
                return 0
        target = max(v3.MIN_SQRT_RATIO + 1, min(v3.MAX_SQRT_RATIO - 1, target))
        limits = self._limits.get(info.key, _Limits(None, None))
        edge = limits.down if zero_for_one else limits.up
        if edge is not None and (target <= edge if zero_for_one else target >= edge):
            return None
        try:
            result = v3.swap(state, zero_for_one, 2**255 - 1, target)
        except v3.UniswapV3MathError:
            return None
        return result.amount0 if zero_for_one else result.amount1

    def with_states(self, states: Mapping[str, v3.PoolState], block: int | None = None) -> Self:
        """A copy whose pools hold the given states by pool address (others unchanged): a state known
        without reading it (a replay, a test, a simulated block). Quotes are limited to the states' own
        `word_bounds`, as after a refresh."""
        out = copy.copy(self)
        out._states = dict(self._states)
        out._limits = dict(self._limits)
        for address, state in states.items():
            pool = self.pool_info(address)
            out._states[pool.key] = state
            if state.word_bounds is None:
                out._limits[pool.key] = _Limits(None, None)
            else:
                out._limits[pool.key] = _limits(pool, state.word_bounds[0], state.word_bounds[1])
        out._block = block if block is not None else self._block
        return out

    def apply(self, quote: Quote) -> Self:
        if quote.venue != self._name or quote.pool.lower() not in self._pools:
            raise VenueError(f"{self._name}: quote is for {quote.venue} pool {quote.pool}")
        if not isinstance(quote.state_after, v3.PoolState):
            raise VenueError(f"{self._name}: quote carries no pool state")
        out = copy.copy(self)
        out._states = dict(self._states)
        out._states[quote.pool.lower()] = quote.state_after
        return out

    # -------------------------------------------------------------------------------------- internals

    def _quote_pool(self, pool: V3Pool, zero_for_one: bool, amount_in: int) -> Quote:
        state = self._states.get(pool.key)
        if state is None:
            raise StateNotLoaded(f"{self._name}: pool {pool.address} has no state: refresh first")
        what = f"{self._name} pool {pool.address} (fee {pool.fee})"
        if state.sqrt_price_x96 == 0:
            raise QuoteError(f"{what}: not initialized")
        limits = self._limits.get(pool.key, _Limits(None, None))
        edge = limits.down if zero_for_one else limits.up
        if edge is None:
            limit = v3.MIN_SQRT_RATIO + 1 if zero_for_one else v3.MAX_SQRT_RATIO - 1
        else:
            limit = edge
            at_edge = state.sqrt_price_x96 <= edge if zero_for_one else state.sqrt_price_x96 >= edge
            if at_edge:
                raise self._outside(what, zero_for_one, amount_in, state)
        try:
            result = v3.swap(state, zero_for_one, amount_in, limit)
        except v3.UniswapV3MathError as exc:
            if "outside the words read" in str(exc):
                raise self._outside(what, zero_for_one, amount_in, state) from None
            raise QuoteError(f"{what}: the pool would revert: {exc}") from None
        paid_in = result.amount0 if zero_for_one else result.amount1
        if paid_in != amount_in:
            if edge is not None and result.sqrt_price_x96 == edge:
                raise self._outside(what, zero_for_one, amount_in, state)
            raise InsufficientLiquidity(
                f"{what}: only {paid_in} of {amount_in} can be swapped before the price limit"
            )
        token_in, token_out = (pool.token0, pool.token1) if zero_for_one else (pool.token1, pool.token0)
        return Quote(
            venue=self._name,
            kind=RouteKind.UNISWAP_V3,
            pool=pool.address,
            token_in=token_in,
            token_out=token_out,
            amount_in=amount_in,
            amount_out=-(result.amount1 if zero_for_one else result.amount0),
            fee=pool.fee,
            block=self._block,
            state_after=result.state_after(state),
        )

    def _outside(
        self, what: str, zero_for_one: bool, amount_in: int, state: v3.PoolState
    ) -> OutsideReadRange:
        bounds = state.word_bounds
        return OutsideReadRange(
            f"{what}: selling {amount_in} of token{0 if zero_for_one else 1} moves the price "
            f"{'below' if zero_for_one else 'above'} the tick bitmap words read ({bounds}, "
            f"{self.words_each_side} each side of the current tick {state.tick}); "
            "refresh with more words_each_side to quote it"
        )
