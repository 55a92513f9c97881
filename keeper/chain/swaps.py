"""Pending swap transactions: decode router and Vault calldata into the swap it will make.

Supported calls (`to` must be one of the addresses the `SwapDecoder` watches, with its protocol):

- "uniswap_v2" (Router02): swapExactTokensForTokens, swapTokensForExactTokens, swapExactETHForTokens,
  swapTokensForExactETH, swapExactTokensForETH, swapETHForExactTokens, and the three
  ...SupportingFeeOnTransferTokens variants. ETH amounts come from the tx value; with `weth` given, a
  path that does not start (ETH in) or end (ETH out) with it is rejected, as the router does.
- "uniswap_v3" (v3-periphery SwapRouter, whose params carry a `deadline`): exactInputSingle,
  exactInput, exactOutputSingle, exactOutput (its packed path runs from tokenOut back to tokenIn: hops
  are returned in swap order, tokenIn first), `multicall(bytes[])`. Also SwapRouter02's selectors
  (params without deadline; `multicall(uint256 deadline, bytes[])`, `multicall(bytes32, bytes[])`, and
  its two Uniswap V2 swaps), whose amount 0 means "the router's own balance": not known from calldata,
  so such calls give None.
- "balancer_v2" (Vault): swap(SingleSwap, FundManagement, limit, deadline) and
  batchSwap(kind, BatchSwapStep[], assets, funds, limits, deadline) when its steps form one chain
  (the first step has an amount, every later step 0 = "the previous step's result"), GIVEN_IN or
  GIVEN_OUT. The zero address (ETH) is read as `weth` when given.

Not decodable into an exact swap without simulation, so never decoded (None): direct pool calls (a V2
pair's `swap(amount0Out, amount1Out, to, data)` names outputs, its input is whatever was transferred
before; a V3 pool's `swap` pays through a callback of the caller's own code), aggregators and the
Universal Router (not watched), multicalls holding several swaps, batchSwaps of several chains.

Results: `SwapDecoder.decode` returns a `PendingSwap`, or None for a tx it does not decode (unwatched
`to`, unknown selector, a supported call of a shape listed above as not decoded, a multicall with no
swap). It raises `SwapDecodeError` (and nothing else) for calldata the router or Vault would reject
from the calldata alone, whatever the chain state: bad ABI encoding (offsets or lengths out of range,
address words with dirty upper bytes, a bool or enum out of range), a path of fewer than two tokens, a
zero amount, ETH sent to a non-payable function, a batchSwap index out of range, a limit already
violated by the amounts given. ABI decoding is as strict as Solidity's ABI coder v2 (SwapRouter, the
Vault); Router02, compiled with coder v1, may accept address words with dirty upper bytes, which are
rejected here (nobody's wallet makes them).

Speed: `wants(to, input)` is one dict lookup and one set lookup; decoding reads 32-byte words by hand
(no eth_abi): ~5-15 us per call, eth_abi's decode alone takes ~25-65 us
(`benchmarks/bench_swap_decode.py`). Every length is checked against the data before a loop
runs, and loops are capped (`MAX_HOPS`, `MAX_MULTICALL`, one level of nested multicall), so no input
makes it slow.

Addresses in the results are lowercase 0x-hex (as `PendingTx`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Final, Literal, get_args

from eth_utils.abi import function_signature_to_4byte_selector

from keeper.core.events import PendingTx
from keeper.errors import DecodeError

__all__ = [
    "MAX_HOPS",
    "MAX_MULTICALL",
    "PROTOCOLS",
    "SELECTORS",
    "PendingSwap",
    "SwapDecodeError",
    "SwapDecoder",
    "SwapHop",
    "SwapProtocol",
]

SwapProtocol = Literal["uniswap_v2", "uniswap_v3", "balancer_v2"]
PROTOCOLS: Final[tuple[SwapProtocol, ...]] = get_args(SwapProtocol)

MAX_HOPS = 8
"""Longer paths are valid on chain but not decoded (None): nobody routes a peg trade over 9 pools."""
MAX_MULTICALL = 32
"""Multicalls with more inner calls are not decoded (None)."""

ZERO_ADDRESS = "0x" + "00" * 20
_ZERO12 = bytes(12)
_ZERO31 = bytes(31)
_U24 = 1 << 24
_U160 = 1 << 160
_I256_MIN = 1 << 255
_MAX_OFFSET = 1 << 32  # larger offsets or lengths cannot fit in a tx's input


class SwapDecodeError(DecodeError):
    """Swap calldata the router or Vault would reject from the calldata alone (malformed or invalid)."""


@dataclass(frozen=True, slots=True)
class SwapHop:
    """One pool swap of a pending swap, in execution-path order (token_in first)."""

    protocol: SwapProtocol
    token_in: str
    token_out: str
    pool_hint: int | str | None
    """Uniswap V3: the fee tier (hundredths of a bip); Balancer: the pool id (0x + 64 hex, lowercase;
    its first 20 bytes are the pool's address); Uniswap V2: None (the pair of the router's factory)."""
    sqrt_price_limit_x96: int = 0
    """Uniswap V3 exact*Single only: the price limit (0 = none). The pool stops there: a partial fill."""


@dataclass(frozen=True, slots=True)
class PendingSwap:
    """The swap a pending tx will make through a router or the Balancer Vault."""

    tx_hash: bytes
    router: str
    """The tx's `to`: the router or Vault called (lowercase)."""
    hops: tuple[SwapHop, ...]
    exact_in: bool
    amount: int
    """amountIn if exact_in, else amountOut."""
    limit: int
    """exact_in: the minimum output the tx accepts (amountOutMin); else the maximum input (amountInMax).
    0 = no minimum."""
    recipient: str
    """As in the calldata (SwapRouter02's address(1) = msg.sender and address(2) = the router are left
    as they are)."""
    deadline: int | None
    """The tx reverts in a block whose timestamp is above it. None: the call has none."""

    @property
    def token_in(self) -> str:
        return self.hops[0].token_in

    @property
    def token_out(self) -> str:
        return self.hops[-1].token_out


# ---------------------------------------------------------------------------------- word reading


def _word(d: bytes, pos: int) -> int:
    end = pos + 32
    if pos < 0 or end > len(d):
        raise SwapDecodeError(f"calldata too short: word at {pos} of {len(d)} bytes")
    return int.from_bytes(d[pos:end], "big")


def _uint(d: bytes, pos: int, bound: int = 0) -> int:
    value = _word(d, pos)
    if bound and value >= bound:
        raise SwapDecodeError(f"value at {pos} out of range")
    return value


def _int256(d: bytes, pos: int) -> int:
    value = _word(d, pos)
    return value - (1 << 256) if value >= _I256_MIN else value


def _address(d: bytes, pos: int) -> str:
    end = pos + 32
    if pos < 0 or end > len(d):
        raise SwapDecodeError(f"calldata too short: address at {pos} of {len(d)} bytes")
    if d[pos : pos + 12] != _ZERO12:
        raise SwapDecodeError(f"address at {pos} has dirty upper bytes")
    return "0x" + d[pos + 12 : end].hex()


def _small(d: bytes, pos: int, limit: int, what: str) -> int:
    """A bool (limit 2) or enum (limit = its member count) word."""
    end = pos + 32
    if pos < 0 or end > len(d):
        raise SwapDecodeError(f"calldata too short: {what} at {pos} of {len(d)} bytes")
    if d[pos : end - 1] != _ZERO31 or d[end - 1] >= limit:
        raise SwapDecodeError(f"{what} at {pos} out of range")
    return d[end - 1]


def _offset(d: bytes, pos: int, base: int) -> int:
    """A dynamic value's offset word (relative to `base`, the start of its enclosing tuple) -> absolute
    position of the value, checked to lie inside the data."""
    off = _word(d, pos)
    if off >= _MAX_OFFSET or base + off + 32 > len(d):
        raise SwapDecodeError(f"offset at {pos} points outside the calldata")
    return base + off


def _length(d: bytes, at: int, item_size: int) -> int:
    """The length word at `at` of an array or bytes whose items take `item_size` bytes of head each."""
    n = _word(d, at)
    if n >= _MAX_OFFSET or at + 32 + n * item_size > len(d):
        raise SwapDecodeError(f"length at {at} runs past the calldata")
    return n


def _bytes(d: bytes, pos: int, base: int) -> bytes:
    at = _offset(d, pos, base)
    n = _length(d, at, 1)
    return d[at + 32 : at + 32 + n]


def _address_array(d: bytes, pos: int, base: int) -> list[str] | None:
    """None when longer than MAX_HOPS + 1 (valid, not decoded)."""
    at = _offset(d, pos, base)
    n = _length(d, at, 32)
    if n > MAX_HOPS + 1:
        return None
    return [_address(d, at + 32 + 32 * i) for i in range(n)]


# --------------------------------------------------------------------------------------- selectors


def _sel(signature: str) -> bytes:
    return bytes(function_signature_to_4byte_selector(signature))


_V2_ARGS5 = "(uint256,uint256,address[],address,uint256)"
_V2_ARGS4 = "(uint256,address[],address,uint256)"
_V3_SINGLE = "((address,address,uint24,address,uint256,uint256,uint256,uint160))"
_V3_PATH = "((bytes,address,uint256,uint256,uint256))"
_V3_SINGLE_02 = "((address,address,uint24,address,uint256,uint256,uint160))"
_V3_PATH_02 = "((bytes,address,uint256,uint256))"
_BAL_SWAP = "((bytes32,uint8,address,address,uint256,bytes),(address,bool,address,bool),uint256,uint256)"
_BAL_BATCH = (
    "(uint8,(bytes32,uint256,uint256,uint256,bytes)[],address[],(address,bool,address,bool),int256[],uint256)"
)

SELECTORS: Final[dict[str, bytes]] = {
    name: _sel(name.split(":")[0] + args)
    for name, args in (
        ("swapExactTokensForTokens", _V2_ARGS5),
        ("swapTokensForExactTokens", _V2_ARGS5),
        ("swapExactETHForTokens", _V2_ARGS4),
        ("swapTokensForExactETH", _V2_ARGS5),
        ("swapExactTokensForETH", _V2_ARGS5),
        ("swapETHForExactTokens", _V2_ARGS4),
        ("swapExactTokensForTokensSupportingFeeOnTransferTokens", _V2_ARGS5),
        ("swapExactETHForTokensSupportingFeeOnTransferTokens", _V2_ARGS4),
        ("swapExactTokensForETHSupportingFeeOnTransferTokens", _V2_ARGS5),
        ("exactInputSingle", _V3_SINGLE),
        ("exactInput", _V3_PATH),
        ("exactOutputSingle", _V3_SINGLE),
        ("exactOutput", _V3_PATH),
        ("multicall", "(bytes[])"),
        ("exactInputSingle:02", _V3_SINGLE_02),
        ("exactInput:02", _V3_PATH_02),
        ("exactOutputSingle:02", _V3_SINGLE_02),
        ("exactOutput:02", _V3_PATH_02),
        ("multicall:deadline", "(uint256,bytes[])"),
        ("multicall:blockhash", "(bytes32,bytes[])"),
        ("swapExactTokensForTokens:02", "(uint256,uint256,address[],address)"),
        ("swapTokensForExactTokens:02", "(uint256,uint256,address[],address)"),
        ("swap", _BAL_SWAP),
        ("batchSwap", _BAL_BATCH),
    )
}
"""Name -> 4-byte selector; ":02" marks SwapRouter02's variants."""


@dataclass(frozen=True, slots=True)
class _Call:
    """What one decoded call contributes: swaps, or (for multicall) the inner swaps."""

    swaps: tuple[PendingSwap, ...]
    unsupported: bool = False
    """A swap that cannot be represented (SwapRouter02 contract-balance amounts, long paths, ...)."""


_NONE: Final = _Call((), unsupported=True)
_Handler = Callable[["SwapDecoder", bytes, bytes, str, int, int], _Call]


# ------------------------------------------------------------------------------------- the decoder


class SwapDecoder:
    """Decodes pending txs sent to the watched routers / Vaults.

    routers: address -> protocol ("uniswap_v2" for a V2 Router02, "uniswap_v3" for a SwapRouter or
    SwapRouter02, "balancer_v2" for the Vault). weth: wrapped ether, for ETH paths (path checks, and
    Balancer's zero-address ETH asset); None: ETH swaps decode without the checks and Balancer ETH stays
    the zero address.
    """

    __slots__ = ("_tables", "routers", "weth")

    def __init__(self, routers: Mapping[str, SwapProtocol], *, weth: str | None = None) -> None:
        self.routers: dict[str, SwapProtocol] = {}
        self._tables: dict[str, dict[bytes, _Handler]] = {}
        for address, protocol in routers.items():
            if protocol not in _TABLES:
                raise ValueError(f"unknown swap protocol {protocol!r} for {address} (one of {PROTOCOLS})")
            key = address.lower()
            if len(key) != 42 or not key.startswith("0x"):
                raise ValueError(f"not an address: {address!r}")
            self.routers[key] = protocol
            self._tables[key] = _TABLES[protocol]
        self.weth = weth.lower() if weth is not None else None

    def wants(self, to: str | None, input_prefix: bytes) -> bool:
        """The cheap pre-filter: `to` is a watched router and the input starts with one of its swap
        selectors. `to` lowercase is the fast path (PendingTx's); other cases are lowered."""
        if to is None:
            return False
        table = self._tables.get(to)
        if table is None:
            table = self._tables.get(to.lower())
            if table is None:
                return False
        return input_prefix[:4] in table

    def tx_filter(self) -> Callable[[PendingTx], bool]:
        """`wants` as a `PendingTxCollector` filter."""
        tables = self._tables

        def keep(tx: PendingTx) -> bool:
            to = tx.to
            if to is None:
                return False
            table = tables.get(to)
            return table is not None and tx.input[:4] in table

        return keep

    def decode_call(
        self, to: str | None, data: bytes, value: int = 0, tx_hash: bytes = b""
    ) -> PendingSwap | None:
        """The swap a call with this `to`, input and value makes; None if not decoded (see the module);
        SwapDecodeError if the calldata is invalid."""
        if to is None:
            return None
        key = to.lower()
        table = self._tables.get(key)
        if table is None:
            return None
        handler = table.get(data[:4])
        if handler is None:
            return None
        if value < 0:
            raise SwapDecodeError("negative tx value")
        call = handler(self, data[4:], tx_hash, key, value, 0)
        if call.unsupported or len(call.swaps) != 1:
            return None
        return call.swaps[0]

    def decode_pending(self, tx: PendingTx) -> PendingSwap | None:
        return self.decode_call(tx.to, tx.input, tx.value, tx.hash)

    def decode(self, tx: Mapping[str, Any]) -> PendingSwap | None:
        """A JSON-RPC transaction object (hex strings: `to`, `input` or `data`, `value`, `hash`; bytes
        and ints are accepted too) -> its swap, or None. Raises SwapDecodeError on malformed fields or
        calldata, and nothing else."""
        try:  # a Mapping whose get() misbehaves still gives only SwapDecodeError
            to, raw_data, raw_value, raw_hash = (
                tx.get("to"),
                tx.get("input", tx.get("data")),
                tx.get("value", 0),
                tx.get("hash"),
            )
        except Exception as exc:
            raise SwapDecodeError(f"bad tx object: {exc!r}"[:200]) from None
        if to is None:
            return None
        if not isinstance(to, str):
            raise SwapDecodeError(f"tx `to` is not a string: {type(to).__name__}")
        table = self._tables.get(to.lower())
        if table is None:
            return None
        data = _as_bytes(raw_data, "input")
        if data[:4] not in table:
            return None
        value = _as_int(raw_value, "value")
        tx_hash = b"" if raw_hash is None else _as_bytes(raw_hash, "hash")
        return self.decode_call(to, data, value, tx_hash)


def _as_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str) and value[:2] in ("0x", "0X"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise SwapDecodeError(f"tx {what} is not 0x-hex bytes: {str(value)[:80]!r}")


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value[:2] in ("0x", "0X") and 2 < len(value) <= 66:
        try:
            return int(value[2:], 16)
        except ValueError:
            pass
    raise SwapDecodeError(f"tx {what} is not a quantity: {str(value)[:80]!r}")


# ------------------------------------------------------------------------------------ Uniswap V2


def _v2_path(d: bytes, pos: int) -> list[str] | None:
    path = _address_array(d, pos, 0)
    if path is None:
        return None
    if len(path) < 2:
        raise SwapDecodeError("UniswapV2Library: INVALID_PATH (fewer than two tokens)")
    return path


def _v2_swap(
    dec: SwapDecoder,
    tx_hash: bytes,
    router: str,
    path: list[str],
    exact_in: bool,
    amount: int,
    limit: int,
    recipient: str,
    deadline: int | None,
) -> _Call:
    if amount == 0:
        raise SwapDecodeError("UniswapV2Library: zero amount")
    hops = tuple(SwapHop("uniswap_v2", a, b, None) for a, b in pairwise(path))
    if any(h.token_in == h.token_out for h in hops):
        raise SwapDecodeError("UniswapV2Library: IDENTICAL_ADDRESSES")
    return _Call((PendingSwap(tx_hash, router, hops, exact_in, amount, limit, recipient, deadline),))


def _v2_tokens(
    *, exact_in: bool, eth_in: bool = False, eth_out: bool = False, router02: bool = False
) -> _Handler:
    """Router02 functions taking (amount, other amount, path, to, deadline), or (amountOutMin or
    amountOut, path, to, deadline) with ETH in. SwapRouter02's two V2 functions have no deadline."""

    def handler(dec: SwapDecoder, d: bytes, tx_hash: bytes, router: str, value: int, depth: int) -> _Call:
        deadline: int | None
        if eth_in:
            first = _uint(d, 0)  # amountOutMin (exact in) or amountOut (exact out)
            path = _v2_path(d, 32)
            recipient, deadline = _address(d, 64), _uint(d, 96)
            amount, limit = (value, first) if exact_in else (first, value)
        else:
            if value and not router02:
                raise SwapDecodeError("ETH sent to a non-payable Router02 function")
            a, b = _uint(d, 0), _uint(d, 32)
            path = _v2_path(d, 64)
            recipient = _address(d, 96)
            deadline = None if router02 else _uint(d, 128)
            amount, limit = a, b
            if router02 and amount == 0:  # Constants.CONTRACT_BALANCE (exact in): the router's balance
                return _NONE
        if path is None:
            return _NONE
        if dec.weth is not None:
            if eth_in and path[0] != dec.weth:
                raise SwapDecodeError("UniswapV2Router: INVALID_PATH (ETH in, path does not start with WETH)")
            if eth_out and path[-1] != dec.weth:
                raise SwapDecodeError("UniswapV2Router: INVALID_PATH (ETH out, path does not end with WETH)")
        return _v2_swap(dec, tx_hash, router, path, exact_in, amount, limit, recipient, deadline)

    return handler


_V2_TABLE: dict[bytes, _Handler] = {
    SELECTORS["swapExactTokensForTokens"]: _v2_tokens(exact_in=True),
    SELECTORS["swapTokensForExactTokens"]: _v2_tokens(exact_in=False),
    SELECTORS["swapExactETHForTokens"]: _v2_tokens(exact_in=True, eth_in=True),
    SELECTORS["swapTokensForExactETH"]: _v2_tokens(exact_in=False, eth_out=True),
    SELECTORS["swapExactTokensForETH"]: _v2_tokens(exact_in=True, eth_out=True),
    SELECTORS["swapETHForExactTokens"]: _v2_tokens(exact_in=False, eth_in=True),
    SELECTORS["swapExactTokensForTokensSupportingFeeOnTransferTokens"]: _v2_tokens(exact_in=True),
    SELECTORS["swapExactETHForTokensSupportingFeeOnTransferTokens"]: _v2_tokens(exact_in=True, eth_in=True),
    SELECTORS["swapExactTokensForETHSupportingFeeOnTransferTokens"]: _v2_tokens(exact_in=True, eth_out=True),
}


# ------------------------------------------------------------------------------------ Uniswap V3


def _v3_packed_path(path: bytes, *, reverse: bool) -> tuple[SwapHop, ...] | None:
    """v3-periphery's packed path (token | fee | token | fee | token ...) -> hops in swap order. As the
    router's Path library reads it: (len - 20) // 23 pools, trailing bytes ignored. exactOutput paths
    run from tokenOut back to tokenIn (reverse=True)."""
    if len(path) < 43:
        raise SwapDecodeError(f"V3 path of {len(path)} bytes (a pool needs 43)")
    n = (len(path) - 20) // 23
    if n > MAX_HOPS:
        return None
    hops = []
    for i in range(n):
        at = 23 * i
        a = "0x" + path[at : at + 20].hex()
        fee = int.from_bytes(path[at + 20 : at + 23], "big")
        b = "0x" + path[at + 23 : at + 43].hex()
        hops.append(SwapHop("uniswap_v3", b, a, fee) if reverse else SwapHop("uniswap_v3", a, b, fee))
    if reverse:
        hops.reverse()
    if any(h.token_in == h.token_out for h in hops):
        raise SwapDecodeError("V3 path swaps a token for itself")
    return tuple(hops)


def _v3_single(*, exact_in: bool, router02: bool) -> _Handler:
    """exact{Input,Output}Single((tokenIn, tokenOut, fee, recipient, [deadline,] amount, limit,
    sqrtPriceLimitX96)): a static tuple, inline in the head."""

    def handler(dec: SwapDecoder, d: bytes, tx_hash: bytes, router: str, value: int, depth: int) -> _Call:
        t_in, t_out = _address(d, 0), _address(d, 32)
        fee = _uint(d, 64, _U24)
        recipient = _address(d, 96)
        k = 128
        deadline: int | None = None
        if not router02:
            deadline, k = _uint(d, 128), 160
        amount, limit = _uint(d, k), _uint(d, k + 32)
        price_limit = _uint(d, k + 64, _U160)
        if amount == 0:
            if router02 and exact_in:  # Constants.CONTRACT_BALANCE
                return _NONE
            raise SwapDecodeError("V3 swap of amount 0")
        if t_in == t_out:
            raise SwapDecodeError("V3 swap of a token for itself")
        hop = SwapHop("uniswap_v3", t_in, t_out, fee, price_limit)
        return _Call((PendingSwap(tx_hash, router, (hop,), exact_in, amount, limit, recipient, deadline),))

    return handler


def _v3_path(*, exact_in: bool, router02: bool) -> _Handler:
    """exact{Input,Output}((path, recipient, [deadline,] amount, limit)): a dynamic tuple."""

    def handler(dec: SwapDecoder, d: bytes, tx_hash: bytes, router: str, value: int, depth: int) -> _Call:
        base = _offset(d, 0, 0)
        path = _bytes(d, base, base)
        recipient = _address(d, base + 32)
        k = base + 64
        deadline: int | None = None
        if not router02:
            deadline, k = _uint(d, k), k + 32
        amount, limit = _uint(d, k), _uint(d, k + 32)
        hops = _v3_packed_path(path, reverse=not exact_in)
        if amount == 0:
            if router02 and exact_in:
                return _NONE
            raise SwapDecodeError("V3 swap of amount 0")
        if hops is None:
            return _NONE
        return _Call((PendingSwap(tx_hash, router, hops, exact_in, amount, limit, recipient, deadline),))

    return handler


def _multicall(kind: Literal["plain", "deadline", "blockhash"]) -> _Handler:
    """multicall(bytes[]), SwapRouter02's multicall(uint256 deadline, bytes[]) and
    multicall(bytes32 previousBlockhash, bytes[]): the swaps of the inner calls to the same router
    (delegatecalls: inner calls see the same msg.value). Inner calls that are not swaps (refundETH,
    unwrapWETH9, sweepToken, selfPermit, ...) are skipped; an inner multicall is read one level deep."""

    def handler(dec: SwapDecoder, d: bytes, tx_hash: bytes, router: str, value: int, depth: int) -> _Call:
        deadline: int | None = None
        pos = 0
        if kind != "plain":
            if kind == "deadline":
                deadline = _uint(d, 0)
            else:
                _word(d, 0)
            pos = 32
        at = _offset(d, pos, 0)
        n = _length(d, at, 32)
        if n > MAX_MULTICALL or depth >= 2:
            return _NONE
        start = at + 32
        table = dec._tables[router]
        swaps: list[PendingSwap] = []
        unsupported = False
        for i in range(n):
            inner = _bytes(d, start + 32 * i, start)
            handler_ = table.get(inner[:4])
            if handler_ is None:
                continue
            call = handler_(dec, inner[4:], tx_hash, router, value, depth + 1)
            unsupported = unsupported or call.unsupported
            swaps.extend(call.swaps)
        if deadline is not None:
            swaps = [s if s.deadline is not None else _with_deadline(s, deadline) for s in swaps]
        return _Call(tuple(swaps), unsupported)

    return handler


def _with_deadline(s: PendingSwap, deadline: int) -> PendingSwap:
    return PendingSwap(s.tx_hash, s.router, s.hops, s.exact_in, s.amount, s.limit, s.recipient, deadline)


_V3_TABLE: dict[bytes, _Handler] = {
    SELECTORS["exactInputSingle"]: _v3_single(exact_in=True, router02=False),
    SELECTORS["exactOutputSingle"]: _v3_single(exact_in=False, router02=False),
    SELECTORS["exactInput"]: _v3_path(exact_in=True, router02=False),
    SELECTORS["exactOutput"]: _v3_path(exact_in=False, router02=False),
    SELECTORS["exactInputSingle:02"]: _v3_single(exact_in=True, router02=True),
    SELECTORS["exactOutputSingle:02"]: _v3_single(exact_in=False, router02=True),
    SELECTORS["exactInput:02"]: _v3_path(exact_in=True, router02=True),
    SELECTORS["exactOutput:02"]: _v3_path(exact_in=False, router02=True),
    SELECTORS["swapExactTokensForTokens:02"]: _v2_tokens(exact_in=True, router02=True),
    SELECTORS["swapTokensForExactTokens:02"]: _v2_tokens(exact_in=False, router02=True),
    SELECTORS["multicall"]: _multicall("plain"),
    SELECTORS["multicall:deadline"]: _multicall("deadline"),
    SELECTORS["multicall:blockhash"]: _multicall("blockhash"),
}


# ------------------------------------------------------------------------------------ Balancer V2

GIVEN_IN, GIVEN_OUT = 0, 1


def _bal_asset(dec: SwapDecoder, asset: str) -> str:
    return dec.weth if asset == ZERO_ADDRESS and dec.weth is not None else asset


def _bal_pool_id(d: bytes, pos: int) -> str:
    _word(d, pos)  # bounds
    return "0x" + d[pos : pos + 32].hex()


def _bal_swap(dec: SwapDecoder, d: bytes, tx_hash: bytes, router: str, value: int, depth: int) -> _Call:
    """swap(SingleSwap(poolId, kind, assetIn, assetOut, amount, userData), FundManagement(sender,
    fromInternalBalance, recipient, toInternalBalance), limit, deadline)."""
    s = _offset(d, 0, 0)
    pool_id = _bal_pool_id(d, s)
    kind = _small(d, s + 32, 2, "SwapKind")
    asset_in, asset_out = _address(d, s + 64), _address(d, s + 96)
    amount = _uint(d, s + 128)
    _bytes(d, s + 160, s)  # userData: validated, unused by stable pools
    _address(d, 32)
    _small(d, 64, 2, "fromInternalBalance")
    recipient = _address(d, 96)
    _small(d, 128, 2, "toInternalBalance")
    limit, deadline = _uint(d, 160), _uint(d, 192)
    if amount == 0:
        raise SwapDecodeError("Vault swap: BAL#510 UNKNOWN_AMOUNT_IN_FIRST_SWAP (amount 0)")
    t_in, t_out = _bal_asset(dec, asset_in), _bal_asset(dec, asset_out)
    if t_in == t_out:
        raise SwapDecodeError("Vault swap: BAL#509 CANNOT_SWAP_SAME_TOKEN")
    hop = SwapHop("balancer_v2", t_in, t_out, pool_id)
    exact_in = kind == GIVEN_IN
    return _Call((PendingSwap(tx_hash, router, (hop,), exact_in, amount, limit, recipient, deadline),))


def _bal_batch(dec: SwapDecoder, d: bytes, tx_hash: bytes, router: str, value: int, depth: int) -> _Call:
    """batchSwap(kind, BatchSwapStep(poolId, assetInIndex, assetOutIndex, amount, userData)[], assets,
    funds, int256[] limits, deadline), when the steps form one chain."""
    kind = _small(d, 0, 2, "SwapKind")
    steps_at = _offset(d, 32, 0)
    n_steps = _length(d, steps_at, 32)
    assets = _address_array(d, 64, 0)
    _address(d, 96)
    _small(d, 128, 2, "fromInternalBalance")
    recipient = _address(d, 160)
    _small(d, 192, 2, "toInternalBalance")
    limits_at = _offset(d, 224, 0)
    n_limits = _length(d, limits_at, 32)
    deadline = _uint(d, 256)
    if assets is None:
        return _NONE
    if n_limits != len(assets):
        raise SwapDecodeError("Vault batchSwap: BAL#103 INPUT_LENGTH_MISMATCH (limits vs assets)")
    limits = [_int256(d, limits_at + 32 + 32 * i) for i in range(n_limits)]
    if n_steps == 0:
        return _Call(())  # valid, swaps nothing
    if n_steps > MAX_HOPS:
        return _NONE
    start = steps_at + 32
    steps = []
    for i in range(n_steps):
        s = _offset(d, start + 32 * i, start)
        pool_id = _bal_pool_id(d, s)
        i_in, i_out, amount = _uint(d, s + 32), _uint(d, s + 64), _uint(d, s + 96)
        _bytes(d, s + 128, s)
        if i_in >= len(assets) or i_out >= len(assets):
            raise SwapDecodeError("Vault batchSwap: BAL#100 OUT_OF_BOUNDS (asset index)")
        if i_in == i_out:
            raise SwapDecodeError("Vault batchSwap: BAL#509 CANNOT_SWAP_SAME_TOKEN")
        steps.append((pool_id, i_in, i_out, amount))
    given_in = kind == GIVEN_IN
    if steps[0][3] == 0:
        raise SwapDecodeError("Vault batchSwap: BAL#510 UNKNOWN_AMOUNT_IN_FIRST_SWAP")
    for prev, step in pairwise(steps):
        if step[3] != 0:
            return _NONE  # several chains in one batch: not one PendingSwap
        linked = step[1] == prev[2] if given_in else step[2] == prev[1]
        if not linked:
            raise SwapDecodeError("Vault batchSwap: BAL#508 MALCONSTRUCTED_MULTIHOP_SWAP")
    # The chain's path, token_in first: GIVEN_OUT steps run from the final output back to the input.
    path_steps = steps if given_in else steps[::-1]
    first_in, last_out = path_steps[0][1], path_steps[-1][2]
    amount = steps[0][3]
    # Net asset deltas (positive: paid into the Vault) must stay <= limits[i]; intermediate assets net 0.
    for i, lim in enumerate(limits):
        if i not in (first_in, last_out) and lim < 0:
            raise SwapDecodeError(f"Vault batchSwap: BAL#507 SWAP_LIMIT (asset {i} limit {lim} < 0)")
    if given_in:
        if first_in == last_out:  # a cycle: the net delta is amountIn - amountOut
            limit = max(0, amount - limits[first_in])
        else:
            if amount > limits[first_in]:
                raise SwapDecodeError("Vault batchSwap: BAL#507 SWAP_LIMIT (amount in above its limit)")
            limit = max(0, -limits[last_out])
    else:
        if first_in == last_out:
            limit = amount + limits[first_in]
        else:
            if -amount > limits[last_out]:
                raise SwapDecodeError("Vault batchSwap: BAL#507 SWAP_LIMIT (amount out below its limit)")
            limit = limits[first_in]
        if limit < 0:
            raise SwapDecodeError("Vault batchSwap: BAL#507 SWAP_LIMIT (negative max amount in)")
    hops = tuple(
        SwapHop("balancer_v2", _bal_asset(dec, assets[a]), _bal_asset(dec, assets[b]), pool_id)
        for pool_id, a, b, _ in path_steps
    )
    if any(h.token_in == h.token_out for h in hops):  # ETH and WETH in one step
        raise SwapDecodeError("Vault batchSwap: BAL#509 CANNOT_SWAP_SAME_TOKEN")
    return _Call((PendingSwap(tx_hash, router, hops, given_in, amount, limit, recipient, deadline),))


_BALANCER_TABLE: dict[bytes, _Handler] = {
    SELECTORS["swap"]: _bal_swap,
    SELECTORS["batchSwap"]: _bal_batch,
}

_TABLES: Final[dict[str, dict[bytes, _Handler]]] = {
    "uniswap_v2": _V2_TABLE,
    "uniswap_v3": _V3_TABLE,
    "balancer_v2": _BALANCER_TABLE,
}
