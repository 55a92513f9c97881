"""What every trading venue (Uniswap V2, Uniswap V3, later Balancer, Curve, ...) offers the strategies.

A venue keeps a local copy of the state of a fixed list of pools, refreshed in one batched read per block
(`refresh`), and answers quotes from it with the venue's own integer math (`quote_exact_in`): no I/O, no
floats, equal to what the venue's router would pay out at that state, to the wei.

`apply(quote)` returns a copy of the venue with the quoted swap applied to that pool (the original is
untouched), so a strategy can value a swap that runs after another one: a pending transaction it
backruns, the first hop of its own route, or two sales on the same pool in one bundle.

Addresses: venues accept token and pool addresses in any case and return them as they were configured
(checksummed). Amounts are integers in the token's base units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, runtime_checkable

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from keeper.errors import KeeperError
from keeper.executors.executor_contract import Venue as RouteKind

__all__ = [
    "BatchRpc",
    "InsufficientLiquidity",
    "OutsideReadRange",
    "Pair",
    "Quote",
    "QuoteError",
    "RouteKind",
    "StateNotLoaded",
    "Venue",
    "VenueError",
    "addr_key",
    "pair_key",
]


class VenueError(KeeperError):
    """Base of the errors venues raise on purpose."""


class StateNotLoaded(VenueError):
    """A quote was asked for a pool whose state was never read (call `refresh` first)."""


class QuoteError(VenueError):
    """The local state cannot give an exact answer for this quote."""


class OutsideReadRange(QuoteError):
    """The swap would move the price beyond the part of the pool's state that was read (Uniswap V3: the
    tick bitmap words near the current tick); read more words or quote a smaller amount."""


class InsufficientLiquidity(QuoteError):
    """The pool cannot absorb the whole input (the price would reach its limit first)."""


Pair = tuple[str, str]
"""Two token addresses, lowercase, sorted: what `pair_key` returns."""


def addr_key(address: str) -> str:
    """Lowercase 0x-address: how venues key tokens and pools internally."""
    return address.lower()


def pair_key(token_a: str, token_b: str) -> Pair:
    a, b = token_a.lower(), token_b.lower()
    return (a, b) if a < b else (b, a)


@dataclass(frozen=True, slots=True)
class Quote:
    """One exact-input swap on one pool, valued at the venue's state of `block`.

    fee: in the venue's own unit: Uniswap V3 hundredths of a bip (500 = 0.05%, what its packed path
    holds), Uniswap V2 basis points (30). `kind` says which route format of the executor contract can
    execute it (a V3 hop is `token_in | fee | token_out`, a V2 hop `token_in | token_out`).
    """

    venue: str
    kind: RouteKind
    pool: str
    token_in: str
    token_out: str
    amount_in: int
    amount_out: int
    fee: int
    block: int | None
    state_after: Any = field(default=None, compare=False, repr=False)
    """The pool's state after this swap (venue-specific; what `Venue.apply` installs)."""


class BatchRpc(Protocol):
    """The part of `keeper.chain.rpc.RpcClient` venues use."""

    async def call(self, method: str, params: Any = None) -> Any: ...

    async def batch(self, calls: Sequence[tuple[str, Any]], *, raise_errors: bool = True) -> list[Any]: ...


@runtime_checkable
class Venue(Protocol):
    """A set of pools on one venue kind whose swaps one executor route format can chain."""

    @property
    def name(self) -> str:
        """Short venue name, e.g. "uniswap_v3" (goes into quotes and logs)."""
        ...

    @property
    def kind(self) -> RouteKind:
        """The executor contract's route format for this venue's swaps."""
        ...

    @property
    def block(self) -> int | None:
        """The block the state was read at (None before the first refresh)."""
        ...

    def pairs(self) -> frozenset[Pair]:
        """Token pairs (lowercase, sorted) with at least one configured pool."""
        ...

    def pools(self, token_a: str, token_b: str) -> tuple[str, ...]:
        """The configured pools trading this pair (either order), in a fixed order; () if none."""
        ...

    async def refresh(self, rpc: BatchRpc, block: int) -> None:
        """Reads the state of every configured pool at `block` (batched; usually one round trip)."""
        ...

    def quote_exact_in(
        self, token_in: str, token_out: str, amount_in: int, *, pool: str | None = None
    ) -> Quote | None:
        """Exact output of selling `amount_in` of token_in for token_out, from the refreshed state.

        pool=None: the best of this venue's pools for the pair (ties: the first in `pools()` order).
        None when no configured pool trades the pair. Raises QuoteError when the state cannot give an
        exact answer (OutsideReadRange, InsufficientLiquidity), ValueError for amount_in <= 0."""
        ...

    def apply(self, quote: Quote) -> Self:
        """A copy of this venue whose pool `quote.pool` is in the state after the quoted swap."""
        ...


# ------------------------------------------------------------------ raw eth_call helpers for refresh


def selector(signature: str) -> bytes:
    return bytes(keccak(text=signature)[:4])


def encode_int_arg(sel: bytes, value: int) -> str:
    """0x-calldata of a one-argument call with an integer (signed or not) argument."""
    return "0x" + (sel + (value % 2**256).to_bytes(32, "big")).hex()


def eth_call(to: str, data: str, tag: str) -> tuple[str, Any]:
    return ("eth_call", [{"to": to, "data": data}, tag])


def result_word(raw: Any, index: int, what: str) -> int:
    """The `index`-th 32-byte word of an eth_call result, unsigned. Raises VenueError if it is missing
    (no contract at the address, or not the contract expected)."""
    if not isinstance(raw, str) or not raw.startswith("0x"):
        raise VenueError(f"{what}: eth_call returned {str(raw)[:80]!r}")
    start = 2 + 64 * index
    if len(raw) < start + 64:
        raise VenueError(f"{what}: eth_call returned {len(raw) // 2 - 1} bytes (is there a contract?)")
    return int(raw[start : start + 64], 16)


def signed(word: int) -> int:
    """Two's complement: an ABI-encoded intN word as a Python int."""
    return word - 2**256 if word >= 2**255 else word


def word_address(word: int) -> str:
    """A checksummed address from an ABI word (its low 20 bytes)."""
    return str(to_checksum_address(word.to_bytes(32, "big")[12:]))
