"""Uniswap V2 (and same-formula forks) as a venue: a fixed list of pairs, their reserves, exact quotes.

State per pair: `getReserves()` at the refreshed block (one JSON-RPC batch for all pairs). Quotes are
`UniswapV2Library.getAmountOut`, which Router02's swapExactTokensForTokens pays to the wei. A quote whose
output rounds to zero raises QuoteError: the pair would revert (INSUFFICIENT_OUTPUT_AMOUNT).

All pairs of one venue must belong to one factory: Router02 finds the pair of each hop of a path from
its factory, so a two-hop route only executes if both pairs are that factory's.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Self

from keeper.chain import uniswap_v2_math as v2
from strategies.venues.base import (
    BatchRpc,
    InsufficientLiquidity,
    Pair,
    Quote,
    QuoteError,
    RouteKind,
    StateNotLoaded,
    VenueError,
    addr_key,
    eth_call,
    pair_key,
    result_word,
    selector,
    word_address,
)

__all__ = ["UniswapV2Venue", "V2Pair", "V2Reserves", "load_v2_pairs"]

_GET_RESERVES = "0x" + selector("getReserves()").hex()
_TOKEN0 = "0x" + selector("token0()").hex()
_TOKEN1 = "0x" + selector("token1()").hex()


@dataclass(frozen=True, slots=True)
class V2Pair:
    address: str
    token0: str
    token1: str
    fee_bps: int = v2.DEFAULT_FEE_BPS

    @property
    def key(self) -> str:
        return addr_key(self.address)


@dataclass(frozen=True, slots=True)
class V2Reserves:
    reserve0: int
    reserve1: int


async def load_v2_pairs(
    rpc: BatchRpc, addresses: Iterable[str], *, fee_bps: int = v2.DEFAULT_FEE_BPS, block: int | str = "latest"
) -> list[V2Pair]:
    """token0 and token1 of each pair, in one batch."""
    pairs = list(addresses)
    tag = hex(block) if isinstance(block, int) else block
    replies = await rpc.batch([eth_call(p, data, tag) for p in pairs for data in (_TOKEN0, _TOKEN1)])
    return [
        V2Pair(
            word_address(int(address, 16)),
            word_address(result_word(replies[2 * i], 0, f"pair {address}")),
            word_address(result_word(replies[2 * i + 1], 0, f"pair {address}")),
            fee_bps,
        )
        for i, address in enumerate(pairs)
    ]


class UniswapV2Venue:
    """Uniswap V2 pairs of one factory (the executor swaps through that factory's Router02)."""

    def __init__(self, pairs: Sequence[V2Pair], *, name: str = "uniswap_v2") -> None:
        self._name = name
        self._pairs: dict[str, V2Pair] = {}
        self._by_pair: dict[Pair, list[V2Pair]] = {}
        for p in pairs:
            if p.key in self._pairs:
                raise ValueError(f"pair {p.address} listed twice")
            self._pairs[p.key] = p
            self._by_pair.setdefault(pair_key(p.token0, p.token1), []).append(p)
        for group in self._by_pair.values():
            if len(group) > 1:  # one factory has one pair per token pair
                raise ValueError(f"{name}: several pairs for one token pair: {[g.address for g in group]}")
        self._reserves: dict[str, V2Reserves] = {}
        self._block: int | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> RouteKind:
        return RouteKind.UNISWAP_V2

    @property
    def block(self) -> int | None:
        return self._block

    def pairs(self) -> frozenset[Pair]:
        return frozenset(self._by_pair)

    def pools(self, token_a: str, token_b: str) -> tuple[str, ...]:
        return tuple(p.address for p in self._by_pair.get(pair_key(token_a, token_b), ()))

    def reserves(self, pair: str) -> V2Reserves:
        r = self._reserves.get(addr_key(pair))
        if r is None:
            raise StateNotLoaded(f"{self._name}: pair {pair} has no state: refresh first")
        return r

    async def refresh(self, rpc: BatchRpc, block: int) -> None:
        tag = hex(block)
        pairs = list(self._pairs.values())
        replies = await rpc.batch([eth_call(p.address, _GET_RESERVES, tag) for p in pairs])
        reserves = {}
        for p, raw in zip(pairs, replies, strict=True):
            what = f"{self._name} pair {p.address}"
            reserves[p.key] = V2Reserves(result_word(raw, 0, what), result_word(raw, 1, what))
        self._reserves, self._block = reserves, block

    def quote_exact_in(
        self, token_in: str, token_out: str, amount_in: int, *, pool: str | None = None
    ) -> Quote | None:
        if amount_in <= 0:
            raise ValueError("amount_in must be > 0")
        group = self._by_pair.get(pair_key(token_in, token_out))
        if not group or token_in.lower() == token_out.lower():
            return None
        p = group[0]
        if pool is not None and pool.lower() != p.key:
            return None
        r = self.reserves(p.address)
        zero_for_one = token_in.lower() == p.token0.lower()
        reserve_in, reserve_out = (r.reserve0, r.reserve1) if zero_for_one else (r.reserve1, r.reserve0)
        what = f"{self._name} pair {p.address}"
        if reserve_in == 0 or reserve_out == 0:
            raise InsufficientLiquidity(f"{what}: no reserves")
        out = v2.get_amount_out(amount_in, reserve_in, reserve_out, p.fee_bps)
        if out == 0:
            raise QuoteError(f"{what}: {amount_in} in gives 0 out (the pair would revert)")
        after = (
            V2Reserves(r.reserve0 + amount_in, r.reserve1 - out)
            if zero_for_one
            else V2Reserves(r.reserve0 - out, r.reserve1 + amount_in)
        )
        if max(after.reserve0, after.reserve1) >= 2**112:
            raise QuoteError(f"{what}: reserves would overflow uint112 (the pair would revert)")
        t_in, t_out = (p.token0, p.token1) if zero_for_one else (p.token1, p.token0)
        return Quote(
            venue=self._name,
            kind=RouteKind.UNISWAP_V2,
            pool=p.address,
            token_in=t_in,
            token_out=t_out,
            amount_in=amount_in,
            amount_out=out,
            fee=p.fee_bps,
            block=self._block,
            state_after=after,
        )

    def spot_rate(self, token_in: str, token_out: str, pool: str) -> tuple[int, int] | None:
        """(num, den): the output per unit of input of an infinitesimal swap at the pair's current
        reserves, fee included; every exact quote pays at most amount_in * num / den. None if unknown."""
        p = self._pairs.get(pool.lower())
        r = self._reserves.get(pool.lower())
        if p is None or r is None:
            return None
        return self._rate(p, token_in, r)

    def marginal_rate(self, quote: Quote) -> tuple[int, int] | None:
        """(num, den): the output per unit of input of an infinitesimal further swap in the same direction
        on the pair, after `quote` (the derivative of the exact output at quote.amount_in)."""
        p = self._pairs.get(quote.pool.lower())
        after = quote.state_after
        if p is None or not isinstance(after, V2Reserves):
            return None
        zero_for_one = quote.token_in.lower() == p.token0.lower()
        r_in_after, r_out_after = (
            (after.reserve0, after.reserve1) if zero_for_one else (after.reserve1, after.reserve0)
        )
        # d/dx of x*g*Rout / (Rin*1e4 + x*g) at the quote's x, with the reserves before it: the fee stays in
        # the pair, so the spot rate at the reserves after is lower than this swap's own slope.
        r_in, r_out = r_in_after - quote.amount_in, r_out_after + quote.amount_out
        gamma = v2.FEE_DENOMINATOR - p.fee_bps
        if r_in <= 0:
            return None
        denominator = r_in * v2.FEE_DENOMINATOR + quote.amount_in * gamma
        return (gamma * r_out * r_in * v2.FEE_DENOMINATOR, denominator * denominator)

    def amount_in_for_rate(
        self, token_in: str, token_out: str, pool: str, rate: tuple[int, int]
    ) -> int | None:
        """The input at which the marginal output rate of one swap on the pair falls to `rate` (num, den):
        x with g*Rout*Rin*1e4 / (Rin*1e4 + g*x)^2 = rate, rounded down; 0 when the spot rate is already at or
        below it. Where selling more stops paying `rate` per unit. None if unknown."""
        p = self._pairs.get(pool.lower())
        r = self._reserves.get(pool.lower())
        num, den = rate
        if p is None or r is None or num <= 0 or den <= 0:
            return None
        zero_for_one = token_in.lower() == p.token0.lower()
        r_in, r_out = (r.reserve0, r.reserve1) if zero_for_one else (r.reserve1, r.reserve0)
        gamma = v2.FEE_DENOMINATOR - p.fee_bps
        root = math.isqrt(gamma * r_out * r_in * v2.FEE_DENOMINATOR * den // num)
        base = r_in * v2.FEE_DENOMINATOR
        return max(0, (root - base) // gamma)

    @staticmethod
    def _rate(p: V2Pair, token_in: str, r: V2Reserves) -> tuple[int, int] | None:
        zero_for_one = token_in.lower() == p.token0.lower()
        reserve_in, reserve_out = (r.reserve0, r.reserve1) if zero_for_one else (r.reserve1, r.reserve0)
        if reserve_in <= 0:
            return None
        return ((v2.FEE_DENOMINATOR - p.fee_bps) * reserve_out, v2.FEE_DENOMINATOR * reserve_in)

    def with_reserves(self, reserves: Mapping[str, tuple[int, int]], block: int | None = None) -> Self:
        """A copy whose pairs hold the given (reserve0, reserve1) by pair address (others unchanged):
        a state known without reading it (a replay, a test, a simulated block)."""
        out = copy.copy(self)
        out._reserves = dict(self._reserves)
        for address, (r0, r1) in reserves.items():
            if address.lower() not in self._pairs:
                raise VenueError(f"{self._name}: unknown pair {address}")
            out._reserves[address.lower()] = V2Reserves(r0, r1)
        out._block = block if block is not None else self._block
        return out

    def apply(self, quote: Quote) -> Self:
        if quote.venue != self._name or quote.pool.lower() not in self._pairs:
            raise VenueError(f"{self._name}: quote is for {quote.venue} pool {quote.pool}")
        if not isinstance(quote.state_after, V2Reserves):
            raise VenueError(f"{self._name}: quote carries no reserves")
        out = copy.copy(self)
        out._reserves = dict(self._reserves)
        out._reserves[quote.pool.lower()] = quote.state_after
        return out
