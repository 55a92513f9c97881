"""Balancer V2 ComposableStablePools as a venue: a fixed list of pools, their state, exact quotes.

State per pool, read in one JSON-RPC batch for all pools (every call pinned to the block asked for):
the Vault's `getPoolTokens(poolId)` (balances of every registered token, the pool's own BPT included),
`getAmplificationParameter()`, `getSwapFeePercentage()`, `getPausedState()`, and for every token with a
rate provider the pool's `getTokenRateCache(token)` (cached rate, duration, expiry) and the provider's
`getRate()`; plus the block's timestamp. Immutable parameters (pool id, registered tokens, BPT index,
rate providers, token decimals) are read once by `load_stable_pools`.

Quotes run `strategies.venues.balancer_math` (an exact port of the pool's swap path): swap fee taken
from the amount in first, balances and amount upscaled by the scaling factors (decimals and token
rates), the StableSwap invariant of the non-BPT balances, the out balance solved for and downscaled
rounding down. Only swaps between the pool's listed tokens are quoted (not its BPT, which is a
join/exit). A quote raises QuoteError where the pool or the Vault would revert (dust whose solved
balance is not below the current one, a balance past the Vault's 112 bits, a paused pool, an expired
rate whose provider reverts); an amount the pool swaps for nothing is a Quote with amount_out 0 (the
Vault does not revert on it). `quote_exact_out` is the GIVEN_OUT swap (fee added on top, rounded up).

Token rates, as the pool uses them: before a swap the pool re-reads a provider's rate when the cache has
expired (`block.timestamp > expires`), so the rate a swap uses depends on the timestamp it executes at.
Quotes are for a swap at `timestamp of the block read + swap_time_offset` seconds: offset 0 is a swap in
the block read itself (what `Vault.queryBatchSwap` returns at that block), the default 1 the earliest
next block (mainnet's next block is 12 s later). Where the cache has expired by then, the quote uses the
provider's rate read at the block. Two things the venue cannot know for a later timestamp, so quotes
there assume they do not change: a provider whose rate moves with time, and an amplification ramp in
progress (`StablePoolState.amp_updating`; the amp read is the value at the block).

Executor: `kind` is `RouteKind.BALANCER_V2`, the executor contract's Balancer V2 route (`token | poolId |
token ...`, swapped through the Vault); `router.executor_route` builds it from this venue's quotes with
`pool_id` (a quote's `pool` is the pool's address, the Vault needs its pool id).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Self

from eth_abi.abi import decode, encode

from strategies.venues import balancer_math as bm
from strategies.venues.base import (
    BatchRpc,
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

__all__ = [
    "BALANCER_V2_ROUTE_KIND",
    "BalancerStableVenue",
    "StablePool",
    "StablePoolState",
    "TokenRate",
    "balancer_route_kind",
    "load_stable_pools",
]

BALANCER_V2_ROUTE_KIND = int(RouteKind.BALANCER_V2)
"""`LiquidationExecutor.Venue.BalancerV2` (3)."""

_GET_POOL_ID = "0x" + selector("getPoolId()").hex()
_GET_BPT_INDEX = "0x" + selector("getBptIndex()").hex()
_GET_RATE_PROVIDERS = "0x" + selector("getRateProviders()").hex()
_GET_AMP = "0x" + selector("getAmplificationParameter()").hex()
_GET_SWAP_FEE = "0x" + selector("getSwapFeePercentage()").hex()
_GET_PAUSED_STATE = "0x" + selector("getPausedState()").hex()
_GET_RATE = "0x" + selector("getRate()").hex()
_DECIMALS = "0x" + selector("decimals()").hex()
_GET_POOL_TOKENS = selector("getPoolTokens(bytes32)")
_GET_TOKEN_RATE_CACHE = selector("getTokenRateCache(address)")
_ZERO_ADDRESS = "0x" + "00" * 20


def balancer_route_kind() -> RouteKind:
    """`RouteKind.BALANCER_V2`: the executor contract's Balancer V2 route format (kept as a function for
    the callers written before the executor had it)."""
    return RouteKind.BALANCER_V2


@dataclass(frozen=True, slots=True)
class StablePool:
    """A ComposableStablePool's immutable parameters (read once with `load_stable_pools`)."""

    address: str
    pool_id: str
    """0x-prefixed 32-byte hex, lowercase."""
    vault: str
    tokens: tuple[str, ...]
    """Registered tokens in the Vault's order, the pool's own BPT included (at bpt_index)."""
    bpt_index: int
    decimals: tuple[int, ...]
    """Per registered token (the BPT: 18)."""
    rate_providers: tuple[str | None, ...]
    """Per registered token: the rate provider, None without one (the BPT: None)."""

    @property
    def key(self) -> str:
        return addr_key(self.address)

    @property
    def swap_tokens(self) -> tuple[str, ...]:
        """The tokens the pool swaps between (its BPT left out)."""
        return tuple(t for i, t in enumerate(self.tokens) if i != self.bpt_index)

    def index(self, token: str) -> int | None:
        """Registered index of a swap token (None for the BPT or a token not in the pool)."""
        t = token.lower()
        for i, registered in enumerate(self.tokens):
            if i != self.bpt_index and registered.lower() == t:
                return i
        return None


@dataclass(frozen=True, slots=True)
class TokenRate:
    """A token's rate cache in the pool, and its provider's rate at the block read."""

    rate: int
    """The cache's current rate (what `getScalingFactors` uses now)."""
    old_rate: int
    duration: int
    expires: int
    provider_rate: int | None
    """`getRate()` of the provider at the block read; None if it reverted."""

    def rate_at(self, timestamp: int) -> int | None:
        """The rate a swap at `timestamp` uses (None: the provider reverted, so would the swap)."""
        return self.provider_rate if timestamp > self.expires else self.rate

    def after_swap_at(self, timestamp: int) -> TokenRate:
        """The cache after a swap at `timestamp` (refreshed if it had expired)."""
        if timestamp <= self.expires or self.provider_rate is None:
            return self
        return TokenRate(
            self.provider_rate, self.old_rate, self.duration, timestamp + self.duration, self.provider_rate
        )


@dataclass(frozen=True, slots=True)
class StablePoolState:
    """What a swap on the pool depends on, at one block."""

    balances: tuple[int, ...]
    """Vault balances (cash + managed) of the registered tokens, BPT included, in raw token units."""
    amp: int
    """Amplification parameter times its precision (1000), as `getAmplificationParameter` returns it."""
    swap_fee: int
    """1e18 = 100%."""
    rates: tuple[TokenRate | None, ...]
    """Per registered token; None without a rate provider."""
    timestamp: int
    """Timestamp of the block read."""
    amp_updating: bool = False
    paused: bool = False


async def load_stable_pools(
    rpc: BatchRpc, vault: str, addresses: Iterable[str], block: int | str = "latest"
) -> list[StablePool]:
    """Pool id, registered tokens, BPT index, rate providers and token decimals of each pool
    (three batches: pool parameters, the Vault's token lists, the tokens' decimals)."""
    pools = list(addresses)
    tag = hex(block) if isinstance(block, int) else block
    replies = await rpc.batch(
        [
            eth_call(p, data, tag)
            for p in pools
            for data in (_GET_POOL_ID, _GET_BPT_INDEX, _GET_RATE_PROVIDERS)
        ]
    )
    ids: list[bytes] = []
    bpt_indexes: list[int] = []
    providers: list[list[str]] = []
    for i, address in enumerate(pools):
        what = f"balancer pool {address}"
        ids.append(result_word(replies[3 * i], 0, what).to_bytes(32, "big"))
        bpt_indexes.append(result_word(replies[3 * i + 1], 0, what))
        (raw_providers,) = _decode(["address[]"], replies[3 * i + 2], what)
        providers.append([str(a) for a in raw_providers])
    token_replies = await rpc.batch([eth_call(vault, _pool_tokens_call(pid), tag) for pid in ids])
    token_lists: list[list[str]] = []
    for address, raw in zip(pools, token_replies, strict=True):
        tokens, _, _ = _decode(
            ["address[]", "uint256[]", "uint256"], raw, f"vault getPoolTokens of {address}"
        )
        token_lists.append([word_address(int(t, 16)) for t in tokens])
    flat = [t for tokens in token_lists for t in tokens]
    dec_replies = await rpc.batch([eth_call(t, _DECIMALS, tag) for t in flat])
    out: list[StablePool] = []
    k = 0
    for address, pid, bpt, provs, tokens in zip(pools, ids, bpt_indexes, providers, token_lists, strict=True):
        what = f"balancer pool {address}"
        if len(provs) != len(tokens) or not 0 <= bpt < len(tokens) or tokens[bpt].lower() != address.lower():
            raise VenueError(f"{what}: not a ComposableStablePool (BPT index {bpt}, {len(tokens)} tokens)")
        decimals = []
        for _ in tokens:
            decimals.append(result_word(dec_replies[k], 0, f"{what} token {flat[k]} decimals()"))
            k += 1
        out.append(
            StablePool(
                address=word_address(int(address, 16)),
                pool_id="0x" + pid.hex(),
                vault=word_address(int(vault, 16)),
                tokens=tuple(tokens),
                bpt_index=bpt,
                decimals=tuple(decimals),
                rate_providers=tuple(
                    None if i == bpt or p.lower() == _ZERO_ADDRESS else word_address(int(p, 16))
                    for i, p in enumerate(provs)
                ),
            )
        )
    return out


def _pool_tokens_call(pool_id: bytes) -> str:
    return "0x" + (_GET_POOL_TOKENS + pool_id).hex()


def _decode(types: list[str], raw: Any, what: str) -> tuple[Any, ...]:
    if not isinstance(raw, str) or not raw.startswith("0x"):
        raise VenueError(f"{what}: eth_call returned {str(raw)[:80]!r}")
    try:
        return tuple(decode(types, bytes.fromhex(raw[2:])))
    except Exception as exc:  # eth_abi raises several types for short or malformed data
        raise VenueError(f"{what}: cannot decode {raw[:80]!r}: {exc}") from None


class BalancerStableVenue:
    """ComposableStablePools of one Balancer V2 Vault.

    swap_time_offset: quotes are for a swap at the read block's timestamp plus this many seconds (0: in
    the block read, as `queryBatchSwap` at that block; 1: the earliest next block)."""

    def __init__(
        self, pools: Sequence[StablePool], *, name: str = "balancer_stable", swap_time_offset: int = 1
    ) -> None:
        if swap_time_offset < 0:
            raise ValueError("swap_time_offset must be >= 0")
        self._name = name
        self.swap_time_offset = swap_time_offset
        self._pools: dict[str, StablePool] = {}
        self._by_pair: dict[Pair, list[StablePool]] = {}
        vaults = {p.vault.lower() for p in pools}
        if len(vaults) > 1:
            raise ValueError(f"{name}: pools of several vaults: {sorted(vaults)}")
        for pool in pools:
            if pool.key in self._pools:
                raise ValueError(f"pool {pool.address} listed twice")
            self._pools[pool.key] = pool
            swap_tokens = pool.swap_tokens
            for a in range(len(swap_tokens)):
                for b in range(a + 1, len(swap_tokens)):
                    self._by_pair.setdefault(pair_key(swap_tokens[a], swap_tokens[b]), []).append(pool)
        self._states: dict[str, StablePoolState] = {}
        self._block: int | None = None

    # -------------------------------------------------------------------------------- Venue protocol

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> RouteKind:
        return balancer_route_kind()

    @property
    def block(self) -> int | None:
        return self._block

    def pairs(self) -> frozenset[Pair]:
        return frozenset(self._by_pair)

    def pools(self, token_a: str, token_b: str) -> tuple[str, ...]:
        return tuple(p.address for p in self._by_pair.get(pair_key(token_a, token_b), ()))

    def pool_id(self, pool: str) -> str:
        """The Vault's id of `pool` (an address): what the executor's Balancer route holds per hop."""
        return self.pool_info(pool).pool_id

    def pool_info(self, pool: str) -> StablePool:
        try:
            return self._pools[addr_key(pool)]
        except KeyError:
            raise VenueError(f"{self._name}: unknown pool {pool}") from None

    def state(self, pool: str) -> StablePoolState:
        state = self._states.get(addr_key(pool))
        if state is None:
            raise StateNotLoaded(f"{self._name}: pool {pool} has no state: refresh first")
        return state

    async def refresh(self, rpc: BatchRpc, block: int) -> None:
        tag = hex(block)
        pools = list(self._pools.values())
        calls: list[tuple[str, Any]] = [("eth_getBlockByNumber", [tag, False])]
        for pool in pools:
            calls.append(eth_call(pool.vault, _pool_tokens_call(bytes.fromhex(pool.pool_id[2:])), tag))
            calls.append(eth_call(pool.address, _GET_AMP, tag))
            calls.append(eth_call(pool.address, _GET_SWAP_FEE, tag))
            calls.append(eth_call(pool.address, _GET_PAUSED_STATE, tag))
            for token, provider in zip(pool.tokens, pool.rate_providers, strict=True):
                if provider is not None:
                    data = "0x" + (_GET_TOKEN_RATE_CACHE + encode(["address"], [token])).hex()
                    calls.append(eth_call(pool.address, data, tag))
                    calls.append(eth_call(provider, _GET_RATE, tag))
        replies = await rpc.batch(calls, raise_errors=False)
        head = replies[0]
        if not isinstance(head, dict) or "timestamp" not in head:
            raise VenueError(f"{self._name}: block {block} not found ({str(head)[:80]!r})")
        timestamp = int(head["timestamp"], 16)
        states: dict[str, StablePoolState] = {}
        i = 1
        for pool in pools:
            what = f"{self._name} pool {pool.address}"
            tokens, balances, _ = _decode(
                ["address[]", "uint256[]", "uint256"], replies[i], f"{what} getPoolTokens"
            )
            if [t.lower() for t in tokens] != [t.lower() for t in pool.tokens]:
                raise VenueError(f"{what}: the Vault lists tokens {tokens}, not {pool.tokens}")
            amp = result_word(replies[i + 1], 0, what)
            amp_updating = result_word(replies[i + 1], 1, what) != 0
            precision = result_word(replies[i + 1], 2, what)
            if precision != bm.AMP_PRECISION:
                raise VenueError(f"{what}: amplification precision {precision}, not {bm.AMP_PRECISION}")
            swap_fee = result_word(replies[i + 2], 0, what)
            paused = result_word(replies[i + 3], 0, what) != 0
            i += 4
            rates: list[TokenRate | None] = []
            for provider in pool.rate_providers:
                if provider is None:
                    rates.append(None)
                    continue
                cache, provided = replies[i], replies[i + 1]
                i += 2
                rates.append(
                    TokenRate(
                        rate=result_word(cache, 0, f"{what} getTokenRateCache"),
                        old_rate=result_word(cache, 1, f"{what} getTokenRateCache"),
                        duration=result_word(cache, 2, f"{what} getTokenRateCache"),
                        expires=result_word(cache, 3, f"{what} getTokenRateCache"),
                        provider_rate=result_word(provided, 0, f"{what} rate provider {provider}")
                        if isinstance(provided, str)
                        else None,
                    )
                )
            states[pool.key] = StablePoolState(
                balances=tuple(int(b) for b in balances),
                amp=amp,
                swap_fee=swap_fee,
                rates=tuple(rates),
                timestamp=timestamp,
                amp_updating=amp_updating,
                paused=paused,
            )
        self._states, self._block = states, block

    def quote_exact_in(
        self, token_in: str, token_out: str, amount_in: int, *, pool: str | None = None
    ) -> Quote | None:
        if amount_in <= 0:
            raise ValueError("amount_in must be > 0")
        best: Quote | None = None
        for p in self._candidates(token_in, token_out, pool):
            q = self._quote(p, token_in, token_out, amount_in, given_in=True)
            if best is None or q.amount_out > best.amount_out:
                best = q
        return best

    def quote_exact_out(
        self, token_in: str, token_out: str, amount_out: int, *, pool: str | None = None
    ) -> Quote | None:
        """The exact input (swap fee included) that buys `amount_out` of token_out (a GIVEN_OUT swap).

        pool=None: the pool asking the least input (ties: the first in `pools()` order). None when no
        configured pool trades the pair; QuoteError when the pool would revert (e.g. amount_out is more
        than it holds); ValueError for amount_out <= 0."""
        if amount_out <= 0:
            raise ValueError("amount_out must be > 0")
        best: Quote | None = None
        for p in self._candidates(token_in, token_out, pool):
            q = self._quote(p, token_in, token_out, amount_out, given_in=False)
            if best is None or q.amount_in < best.amount_in:
                best = q
        return best

    def apply(self, quote: Quote) -> Self:
        if quote.venue != self._name or quote.pool.lower() not in self._pools:
            raise VenueError(f"{self._name}: quote is for {quote.venue} pool {quote.pool}")
        if not isinstance(quote.state_after, StablePoolState):
            raise VenueError(f"{self._name}: quote carries no pool state")
        out = copy.copy(self)
        out._states = dict(self._states)
        out._states[quote.pool.lower()] = quote.state_after
        return out

    # ----------------------------------------------------------------------------------- prices

    def mid_price(self, token_a: str, token_b: str, pool: str) -> tuple[int, int] | None:
        """(num, den): raw units of token_b one raw unit of token_a is worth at the pool's current state
        (the marginal price of an infinitesimal swap, before the swap fee), with the token rates a swap
        at the quote timestamp would use. None if unknown."""
        return self._marginal(token_a, token_b, pool, None, fee=False)

    def spot_rate(self, token_in: str, token_out: str, pool: str) -> tuple[int, int] | None:
        """(num, den): the output per unit of input of an infinitesimal swap at the pool's current state,
        swap fee included. None if unknown."""
        return self._marginal(token_in, token_out, pool, None, fee=True)

    def marginal_rate(self, quote: Quote) -> tuple[int, int] | None:
        """(num, den): the output per unit of input of an infinitesimal further swap in the same direction
        on the pool after `quote`, swap fee included."""
        if not isinstance(quote.state_after, StablePoolState):
            return None
        return self._marginal(quote.token_in, quote.token_out, quote.pool, quote.state_after, fee=True)

    # ------------------------------------------------------------------------------ state setters

    def with_states(self, states: Mapping[str, StablePoolState], block: int | None = None) -> Self:
        """A copy whose pools hold the given states by pool address (others unchanged): a state known
        without reading it (a replay, a test, a simulated block)."""
        out = copy.copy(self)
        out._states = dict(self._states)
        for address, state in states.items():
            info = self._pools.get(address.lower())
            if info is None:
                raise VenueError(f"{self._name}: unknown pool {address}")
            if len(state.balances) != len(info.tokens) or len(state.rates) != len(info.tokens):
                raise VenueError(f"{self._name}: pool {address} has {len(info.tokens)} registered tokens")
            out._states[address.lower()] = state
        out._block = block if block is not None else self._block
        return out

    def scaling_factors(self, pool: str, state: StablePoolState | None = None) -> tuple[int, ...]:
        """The pool's scaling factors (registered order, BPT included) for a swap at the quote timestamp.
        Raises QuoteError if a rate the swap needs cannot be read (its provider reverted)."""
        info = self.pool_info(pool)
        return self._scaling_factors(info, state or self.state(pool), f"{self._name} pool {info.address}")

    # -------------------------------------------------------------------------------- internals

    def _candidates(self, token_in: str, token_out: str, pool: str | None) -> list[StablePool]:
        if token_in.lower() == token_out.lower():
            return []
        candidates = self._by_pair.get(pair_key(token_in, token_out), [])
        if pool is not None:
            candidates = [p for p in candidates if p.key == pool.lower()]
        return candidates

    def _swap_timestamp(self, state: StablePoolState) -> int:
        return state.timestamp + self.swap_time_offset

    def _scaling_factors(self, info: StablePool, state: StablePoolState, what: str) -> tuple[int, ...]:
        at = self._swap_timestamp(state)
        factors = []
        for i, (decimals, rate) in enumerate(zip(info.decimals, state.rates, strict=True)):
            if i == info.bpt_index or rate is None:
                factors.append(bm.scaling_factor(18 if i == info.bpt_index else decimals))
                continue
            value = rate.rate_at(at)
            if value is None:
                raise QuoteError(f"{what}: the rate provider of {info.tokens[i]} reverts (so would the swap)")
            factors.append(bm.scaling_factor(decimals, value))
        return tuple(factors)

    def _quote(
        self, info: StablePool, token_in: str, token_out: str, amount: int, *, given_in: bool
    ) -> Quote:
        state = self.state(info.address)
        what = f"{self._name} pool {info.address}"
        if state.paused:
            raise QuoteError(f"{what}: paused (swaps revert)")
        i_in, i_out = info.index(token_in), info.index(token_out)
        if i_in is None or i_out is None:  # _candidates only gives pools holding both
            raise VenueError(f"{what}: does not swap {token_in} for {token_out}")
        factors = self._scaling_factors(info, state, what)
        keep = [k for k in range(len(info.tokens)) if k != info.bpt_index]
        balances = [state.balances[k] for k in keep]
        sfs = [factors[k] for k in keep]
        j_in, j_out = keep.index(i_in), keep.index(i_out)
        try:
            if given_in:
                amount_in = amount
                amount_out = bm.swap_given_in(state.amp, state.swap_fee, balances, sfs, j_in, j_out, amount)
            else:
                amount_out = amount
                amount_in = bm.swap_given_out(state.amp, state.swap_fee, balances, sfs, j_in, j_out, amount)
        except bm.BalancerMathError as exc:
            raise QuoteError(f"{what}: the pool would revert ({exc})") from None
        new_balances = list(state.balances)
        new_balances[i_in] += amount_in
        new_balances[i_out] -= amount_out
        at = self._swap_timestamp(state)
        after = replace(
            state,
            balances=tuple(new_balances),
            rates=tuple(r.after_swap_at(at) if r is not None else None for r in state.rates),
        )
        return Quote(
            venue=self._name,
            kind=balancer_route_kind(),
            pool=info.address,
            token_in=info.tokens[i_in],
            token_out=info.tokens[i_out],
            amount_in=amount_in,
            amount_out=amount_out,
            fee=state.swap_fee,
            block=self._block,
            state_after=after,
        )

    def _marginal(
        self, token_in: str, token_out: str, pool: str, state: StablePoolState | None, *, fee: bool
    ) -> tuple[int, int] | None:
        info = self._pools.get(pool.lower())
        if info is None:
            return None
        state = state or self._states.get(info.key)
        i_in, i_out = info.index(token_in), info.index(token_out)
        if state is None or i_in is None or i_out is None or i_in == i_out:
            return None
        try:
            factors = self._scaling_factors(info, state, info.address)
            keep = [k for k in range(len(info.tokens)) if k != info.bpt_index]
            num, den = bm.marginal_price(
                state.amp,
                [state.balances[k] for k in keep],
                [factors[k] for k in keep],
                keep.index(i_in),
                keep.index(i_out),
            )
        except (QuoteError, bm.BalancerMathError):
            return None
        if fee:
            return num * bm.complement(state.swap_fee), den * bm.ONE
        return num, den
