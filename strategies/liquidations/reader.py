"""Fill the liquidation model from chain state with batched reads.

Every read is pre-encoded calldata; a group of reads goes out as Multicall3 `aggregate3` calls (with
allowFailure, chunked, all chunks in one JSON-RPC batch) or, without Multicall3, as one raw JSON-RPC
batch of `eth_call`s. All reads of one `read_*` call are pinned to one block number, and the block's
timestamp (what view calls at that block use as block.timestamp) comes with the market.

A reverted or undecodable sub-call never raises: it is logged and its reserve, price or user is
skipped (a position is only returned when every one of its reads succeeded, so a returned position is
always complete; a user whose bitmap names a reserve not held locally is skipped too). Failures of the
node itself (transport errors, a whole request refused) do raise `keeper.errors.RpcError`/`DecodeError`
for the caller's retry policy.

Round trips: `read_market` 3-5 (header unless the timestamp is given, reserves list, reserve data,
prices, e-mode categories), `read_prices` 1, `read_positions` 1 for a few users (every balance a user
could hold, read with the configuration) or 2 for many (configurations, then the balances of the
reserves each user uses).

The per-block path is `prepare_market(number)`: the whole market read as requests the caller sends in
its own JSON-RPC batch (with the block's eth_getLogs), one round trip. It reads the reserves list, the
reserve data of the reserves listed last time, their prices and the e-mode categories and price sources
read last time, and checks that guess against what it decodes: when the list, the reserves with data,
the categories or the price sources changed (a governance action), it reads the market again the
normal way at the same block. Either way the result equals `read_market(number)` exactly.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from eth_abi.abi import decode
from eth_utils.address import to_checksum_address

from keeper.chain.abi import encode_call as calldata
from keeper.chain.multicall import (
    MULTICALL3_ADDRESS,
    decode_aggregate3_result,
    encode_aggregate3,
    multicall,
)
from keeper.chain.rpc import block_tag, hex_to_bytes
from keeper.errors import DecodeError, JsonRpcError, KeeperError, RpcResponseError
from keeper.logs import kv
from strategies.liquidations.model import (
    EModeCategory,
    MarketState,
    ReserveConfig,
    ReserveState,
    UserPosition,
    UserReserve,
    reserve_ids_in,
)

log = logging.getLogger("strategies.liquidations.reader")

Call = tuple[str, bytes]
"""(target, calldata)."""


class BatchRpc(Protocol):
    async def call(self, method: str, params: Any = None) -> Any: ...

    async def batch(self, calls: Sequence[tuple[str, Any]], *, raise_errors: bool = True) -> list[Any]: ...


_GET_RESERVES_LIST = calldata("getReservesList()")
_V3_RESERVE_DATA = (
    "((uint256),uint128,uint128,uint128,uint128,uint128,uint40,uint16,address,address,address,address,"
    "uint128,uint128,uint128)"
)
_V2_RESERVE_DATA = (
    "((uint256),uint128,uint128,uint128,uint128,uint128,uint40,address,address,address,address,uint8)"
)


def _user_call(signature: str, user: str) -> bytes:
    return calldata(signature, ["address"], [user])


class BatchCaller:
    """Runs (target, calldata) reads at one block; returns each call's return data, or None if it failed.

    With `multicall_address` (default: the canonical Multicall3) reads go through aggregate3 in chunks of
    `chunk_size`; with None, as a raw JSON-RPC batch of eth_calls (chunks of `chunk_size` per batch).
    One HTTP request carries at most `max_calls_per_request` reads (nodes refuse very large bodies:
    anvil answers "Invalid request" around 2 MiB); larger reads go out as several concurrent requests.
    """

    def __init__(
        self,
        rpc: BatchRpc,
        *,
        multicall_address: str | None = MULTICALL3_ADDRESS,
        chunk_size: int = 500,
        max_calls_per_request: int = 2500,
    ) -> None:
        self.rpc = rpc
        self.multicall_address = multicall_address
        self.chunk_size = chunk_size
        self.max_calls_per_request = max(chunk_size, max_calls_per_request)
        self._encoded: tuple[Sequence[Call], list[str]] | None = None
        """The calls `prepare` encoded last (the same list object every block) and their encoding."""

    async def __call__(self, calls: Sequence[Call], block: int | str) -> list[bytes | None]:
        if not calls:
            return []
        if self.multicall_address is not None:
            address, step = self.multicall_address, self.max_calls_per_request
            groups = await asyncio.gather(
                *(self._multicall(address, calls[i : i + step], block) for i in range(0, len(calls), step))
            )
            return [r for g in groups for r in g]
        out: list[bytes | None] = []
        tag = block_tag(block)
        for i in range(0, len(calls), self.chunk_size):
            chunk = calls[i : i + self.chunk_size]
            requests = [("eth_call", [{"to": t, "data": "0x" + d.hex()}, tag]) for t, d in chunk]
            for reply in await self.rpc.batch(requests, raise_errors=False):
                if isinstance(reply, JsonRpcError):
                    out.append(None)
                else:
                    try:
                        out.append(hex_to_bytes(reply))
                    except KeeperError:
                        out.append(None)
        return out

    async def _multicall(self, address: str, calls: Sequence[Call], block: int | str) -> list[bytes | None]:
        results = await multicall(self.rpc, address, calls, block=block, chunk_size=self.chunk_size)
        return [data if ok else None for ok, data in results]

    def prepare(
        self, calls: Sequence[Call], block: int | str
    ) -> tuple[list[tuple[str, Any]], Callable[[Sequence[Any]], list[bytes | None]]]:
        """The same reads as `__call__`, as JSON-RPC requests for the caller's own batch (one HTTP
        request: meant for small reads, at most `max_calls_per_request`), and the function turning their
        replies (as `batch(..., raise_errors=False)` returns them) into each call's return data or None.
        Errors are those of `__call__`: a failed aggregate3 request raises, a failed eth_call is None."""
        if len(calls) > self.max_calls_per_request:
            raise ValueError(f"{len(calls)} calls do not fit in one request")
        tag = block_tag(block)
        if self.multicall_address is None:
            raw_requests = [("eth_call", [{"to": t, "data": "0x" + d.hex()}, tag]) for t, d in calls]

            def decode_raw(replies: Sequence[Any]) -> list[bytes | None]:
                out: list[bytes | None] = []
                for reply in replies:
                    if isinstance(reply, JsonRpcError):
                        out.append(None)
                        continue
                    try:
                        out.append(hex_to_bytes(reply))
                    except KeeperError:
                        out.append(None)
                return out

            return raw_requests, decode_raw

        address = self.multicall_address
        chunks = [calls[i : i + self.chunk_size] for i in range(0, len(calls), self.chunk_size)]
        if self._encoded is not None and self._encoded[0] is calls:
            encoded = self._encoded[1]
        else:
            encoded = ["0x" + encode_aggregate3(chunk).hex() for chunk in chunks]
            self._encoded = (calls, encoded)
        requests: list[tuple[str, Any]] = [("eth_call", [{"to": address, "data": d}, tag]) for d in encoded]

        def decode_multicall(replies: Sequence[Any]) -> list[bytes | None]:
            for reply in replies:
                if isinstance(reply, JsonRpcError):
                    raise reply
            out: list[bytes | None] = []
            for chunk, reply in zip(chunks, replies, strict=True):
                try:
                    data = hex_to_bytes(reply)
                except RpcResponseError as exc:
                    raise DecodeError(f"aggregate3 reply is not hex: {exc}") from None
                if not data:
                    raise DecodeError(f"aggregate3 returned nothing: is Multicall3 deployed at {address}?")
                results = _fast_aggregate3(data, len(chunk)) or decode_aggregate3_result(data, len(chunk))
                out.extend(d if ok else None for ok, d in results)
            return out

        return requests, decode_multicall


def _decode(types: Sequence[str], data: bytes | None) -> tuple[Any, ...] | None:
    if data is None or not data:
        return None
    try:
        return tuple(decode(list(types), data))
    except Exception:  # eth_abi raises several unrelated exception types on bad data
        return None


@functools.lru_cache(maxsize=256)
def _decode_memo(types: tuple[str, ...], data: bytes | None) -> tuple[Any, ...] | None:
    """`_decode` for data that rarely changes between blocks (e-mode categories)."""
    return _decode(types, data)


@functools.lru_cache(maxsize=8192)
def _checksum(address: str) -> str:
    """to_checksum_address, memoized: the same few token addresses come back every block."""
    return str(to_checksum_address(address))


# Fast paths for the per-block decoding. Each accepts ONLY the canonical ABI encoding (exact length,
# canonical offsets, zero padding, in-range values), which eth_abi decodes to the same values; anything
# else returns None and the caller decodes with eth_abi as before (same result, same errors).


def _word(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 32], "big")


def _static_words(data: bytes | None, widths: Sequence[int]) -> list[int] | None:
    """A static tuple of uint<bits>/address words (address: 160 bits)."""
    if data is None or len(data) != 32 * len(widths):
        return None
    out: list[int] = []
    for i, bits in enumerate(widths):
        value = _word(data, 32 * i)
        if value >> bits:
            return None
        out.append(value)
    return out


def _array_words(data: bytes | None, bits: int) -> list[int] | None:
    """A lone dynamic array of uint<bits>/address (`uint256[]`, `address[]`)."""
    if data is None or len(data) < 64 or _word(data, 0) != 32:
        return None
    n = _word(data, 32)
    if len(data) != 64 + 32 * n:
        return None
    out = [_word(data, 64 + 32 * i) for i in range(n)]
    if bits < 256 and any(v >> bits for v in out):
        return None
    return out


def _address_of(word: int) -> str:
    return _checksum("0x" + word.to_bytes(20, "big").hex())


def _fast_aggregate3(data: bytes, expected: int) -> list[tuple[bool, bytes]] | None:
    """aggregate3's `(bool,bytes)[]` return data."""
    size = len(data)
    if size < 64 or size % 32 or _word(data, 0) != 32 or _word(data, 32) != expected:
        return None
    base, pos = 64, 32 * expected
    out: list[tuple[bool, bytes]] = []
    for i in range(expected):
        at = base + pos
        if _word(data, base + 32 * i) != pos or at + 96 > size:
            return None
        flag = _word(data, at)
        if flag > 1 or _word(data, at + 32) != 64:
            return None
        length = _word(data, at + 64)
        padded = -(-length // 32) * 32
        end = at + 96 + padded
        if end > size or any(data[at + 96 + length : end]):
            return None
        out.append((bool(flag), data[at + 96 : at + 96 + length]))
        pos += 96 + padded
    if base + pos != size:
        return None
    return out


@dataclass(frozen=True, slots=True)
class _Header:
    number: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class _MarketHint:
    """What the last market read asked for: the guess of the next one-round-trip read."""

    assets: tuple[str, ...]
    """The reserves list."""
    with_data: tuple[str, ...]
    """The reserves whose data decoded: their prices are asked for, in this order."""
    emode_ids: tuple[int, ...]
    """E-mode categories read (sorted, without 0)."""
    sources: tuple[str, ...]
    """E-mode price sources priced (sorted)."""


@dataclass(frozen=True, slots=True)
class MarketRead:
    """A market read prepared for one block: send `requests` in one JSON-RPC batch (with whatever else
    is wanted at that block, `batch(..., raise_errors=False)`), then `await finish(their replies, the
    block's timestamp)`. The result equals `read_market(number)`."""

    requests: list[tuple[str, Any]]
    finish: Callable[[Sequence[Any], int], Awaitable[MarketState]]


_SCALED_BALANCE = "scaledBalanceOf(address)"
_STABLE_READS = ("principalBalanceOf(address)", "getUserStableRate(address)", "getUserLastUpdated(address)")


class _AaveReader:
    """What the V3 and V2 readers share: block pinning, reserves list, prices, user balances."""

    _reserve_data_type: str = _V3_RESERVE_DATA
    _reserve_widths: tuple[int, ...] = ()
    """Bit width of each word of `_reserve_data_type` (address: 160), for the fast decoder."""
    protocol: str = "aave"
    has_emode: bool = False

    def __init__(
        self,
        rpc: BatchRpc,
        pool: str,
        oracle: str,
        *,
        caller: BatchCaller | None = None,
        one_round_users: int = 16,
    ) -> None:
        self.rpc = rpc
        self.pool = to_checksum_address(pool)
        self.oracle = to_checksum_address(oracle)
        self.caller = caller or BatchCaller(rpc)
        self.one_round_users = one_round_users
        """Up to this many users, `read_positions` reads every balance they could hold together with
        their configurations (one round trip); more users: configurations first, then what they use."""
        self._hint: _MarketHint | None = None
        self._hint_calls: tuple[_MarketHint, list[Call]] | None = None

    # -- helpers ---------------------------------------------------------------------------------------

    async def header(self, block: int | str = "latest") -> _Header:
        """Block number and timestamp of `block` (resolves "latest" to a number for pinning)."""
        raw = await self.rpc.call("eth_getBlockByNumber", [block_tag(block), False])
        if not isinstance(raw, dict):
            raise DecodeError(f"no block {block!r}")
        return _Header(int(raw["number"], 16), int(raw["timestamp"], 16))

    async def _head(self, block: int | str, timestamp: int | None) -> _Header:
        """`block` as a number with its timestamp; no round trip when both are known."""
        if isinstance(block, int) and timestamp is not None:
            return _Header(block, timestamp)
        return await self.header(block)

    def _warn(self, message: str, **fields: Any) -> None:
        log.warning(message, extra=kv(protocol=self.protocol, pool=self.pool, **fields))

    def _decode_reserves_list(self, data: bytes | None, block: int) -> list[str]:
        words = _array_words(data, 160)
        if words is not None:
            return [_address_of(w) for w in words]
        decoded = _decode(["address[]"], data)
        if decoded is None:
            self._warn("getReservesList failed", block=block)
            return []
        return [_checksum(a) for a in decoded[0]]

    async def _reserves_list(self, block: int) -> list[str]:
        (data,) = await self.caller([(self.pool, _GET_RESERVES_LIST)], block)
        return self._decode_reserves_list(data, block)

    def _prices_call(self, assets: Sequence[str]) -> Call:
        return (self.oracle, calldata("getAssetsPrices(address[])", ["address[]"], [list(assets)]))

    async def _prices_from(self, assets: Sequence[str], data: bytes | None, block: int) -> dict[str, int]:
        """The answer of getAssetsPrices(assets); if it reverted (one bad feed reverts it all), each
        asset's getAssetPrice on its own. Assets without a price are logged and left out."""
        words = _array_words(data, 256)
        decoded = (words,) if words is not None else _decode(["uint256[]"], data)
        if decoded is not None and len(decoded[0]) == len(assets):
            return {a: int(p) for a, p in zip(assets, decoded[0], strict=True)}
        calls = [(self.oracle, calldata("getAssetPrice(address)", ["address"], [a])) for a in assets]
        out: dict[str, int] = {}
        for asset, raw in zip(assets, await self.caller(calls, block), strict=True):
            one = _decode(["uint256"], raw)
            if one is None:
                self._warn("no oracle price; reserve skipped", asset=asset, block=block)
            else:
                out[asset] = int(one[0])
        return out

    async def _prices(self, assets: Sequence[str], block: int) -> dict[str, int]:
        """AaveOracle.getAssetsPrices(assets), with the per-asset fallback of `_prices_from`."""
        if not assets:
            return {}
        (data,) = await self.caller([self._prices_call(assets)], block)
        return await self._prices_from(assets, data, block)

    def _reserve_data_calls(self, assets: Sequence[str]) -> list[Call]:
        return [(self.pool, calldata("getReserveData(address)", ["address"], [a])) for a in assets]

    def _decode_reserve_data(
        self, assets: Sequence[str], raws: Sequence[bytes | None], block: int
    ) -> dict[str, ReserveState]:
        out: dict[str, ReserveState] = {}
        for asset, raw in zip(assets, raws, strict=True):
            words = _static_words(raw, self._reserve_widths)
            if words is not None:
                fields: list[Any] = [
                    _address_of(w) if bits == 160 else w
                    for w, bits in zip(words, self._reserve_widths, strict=True)
                ]
                fields[0] = (fields[0],)
                decoded: tuple[Any, ...] | None = (tuple(fields),)
            else:
                decoded = _decode([self._reserve_data_type], raw)
            if decoded is None:
                self._warn("getReserveData failed; reserve skipped", asset=asset, block=block)
                continue
            state = self._reserve_state(asset, decoded[0])
            if int(state.a_token, 16) == 0:
                self._warn("not a reserve of this pool; skipped", asset=asset)
                continue
            out[asset] = state
        return out

    async def _reserve_data(self, assets: Sequence[str], block: int) -> dict[str, ReserveState]:
        raws = await self.caller(self._reserve_data_calls(assets), block)
        return self._decode_reserve_data(assets, raws, block)

    def _reserve_state(self, asset: str, t: tuple[Any, ...]) -> ReserveState:
        raise NotImplementedError

    # -- e-mode (Aave V3) --------------------------------------------------------------------------------

    @staticmethod
    def _emode_ids(reserves: Mapping[str, ReserveState], extra: Iterable[int] = ()) -> list[int]:
        ids = {r.config.emode_category for r in reserves.values()} | set(extra)
        return sorted({i for i in ids if i != 0})

    def _emode_calls(self, id_list: Sequence[int]) -> list[Call]:
        return [(self.pool, calldata("getEModeCategoryData(uint8)", ["uint8"], [i])) for i in id_list]

    def _decode_emode(self, id_list: Sequence[int], raws: Sequence[bytes | None]) -> dict[int, EModeCategory]:
        out: dict[int, EModeCategory] = {}
        for cid, raw in zip(id_list, raws, strict=True):
            decoded = _decode_memo(("(uint16,uint16,uint16,address,string)",), raw)
            if decoded is None:
                self._warn("getEModeCategoryData failed; category skipped", category=cid)
                continue
            ltv, lt, bonus, source, label = decoded[0]
            out[cid] = EModeCategory(cid, int(ltv), int(lt), int(bonus), _checksum(source), str(label))
        return out

    @staticmethod
    def _sources(categories: Mapping[int, EModeCategory]) -> list[str]:
        return sorted({c.price_source for c in categories.values() if c.has_price_source})

    def _priced_categories(
        self, categories: Mapping[int, EModeCategory], prices: Mapping[str, int]
    ) -> dict[int, EModeCategory]:
        out = dict(categories)
        for cid, c in list(out.items()):
            if c.has_price_source:
                if c.price_source in prices:
                    out[cid] = c.with_price(prices[c.price_source])
                else:
                    self._warn("no price for the e-mode price source; category skipped", category=cid)
                    del out[cid]
        return out

    async def _read_emode(
        self, id_list: Sequence[int], block: int
    ) -> tuple[dict[int, EModeCategory], list[str]]:
        """The categories (priced) and the price sources that were asked for."""
        decoded = self._decode_emode(id_list, await self.caller(self._emode_calls(id_list), block))
        sources = self._sources(decoded)
        prices = await self._prices(sources, block)
        return self._priced_categories(decoded, prices), sources

    # -- market ----------------------------------------------------------------------------------------

    async def _read_market(
        self, block: int | str, timestamp: int | None, extra_emode_ids: Iterable[int]
    ) -> MarketState:
        """Every reserve (data + price) and, on V3, the e-mode categories the reserves (or
        `extra_emode_ids`) refer to, at one block."""
        head = await self._head(block, timestamp)
        assets = await self._reserves_list(head.number)
        reserves = await self._reserve_data(assets, head.number)
        prices = await self._prices(list(reserves), head.number)
        priced = {a: r.with_price(prices[a]) for a, r in reserves.items() if a in prices}
        categories: dict[int, EModeCategory] = {}
        id_list: list[int] = []
        sources: list[str] = []
        if self.has_emode:
            id_list = self._emode_ids(priced, extra_emode_ids)
            categories, sources = await self._read_emode(id_list, head.number)
        hint = _MarketHint(tuple(assets), tuple(reserves), tuple(id_list), tuple(sources))
        if hint != self._hint:
            self._hint = hint
        return MarketState(priced, categories, head.number, head.timestamp)

    def prepare_market(self, number: int) -> MarketRead:
        """The market at block `number` as requests for the caller's batch (see the module docstring).
        Before any `read_market` (nothing to guess from), `requests` is empty and `finish` reads it the
        normal way."""

        async def full(replies: Sequence[Any], timestamp: int) -> MarketState:
            return await self._read_market(number, timestamp, ())

        hint = self._hint
        if hint is None:
            return MarketRead([], full)
        if self._hint_calls is not None and self._hint_calls[0] is hint:
            calls = self._hint_calls[1]
        else:
            calls = [(self.pool, _GET_RESERVES_LIST), *self._reserve_data_calls(hint.assets)]
            if hint.with_data:
                calls.append(self._prices_call(hint.with_data))
            calls.extend(self._emode_calls(hint.emode_ids))
            if hint.sources:
                calls.append(self._prices_call(hint.sources))
            self._hint_calls = (hint, calls)
        if len(calls) > self.caller.max_calls_per_request:  # does not fit in one request
            return MarketRead([], full)
        requests, decode_replies = self.caller.prepare(calls, number)

        async def finish(replies: Sequence[Any], timestamp: int) -> MarketState:
            market = await self._market_from(hint, decode_replies(replies), number, timestamp)
            if market is None:  # the reserves, categories or sources changed: read them afresh
                return await full(replies, timestamp)
            return market

        return MarketRead(requests, finish)

    async def _market_from(
        self, hint: _MarketHint, raws: Sequence[bytes | None], number: int, timestamp: int
    ) -> MarketState | None:
        """The market from the replies of `prepare_market`'s calls, or None when the guess was wrong."""
        assets = self._decode_reserves_list(raws[0], number)
        if tuple(assets) != hint.assets:
            return None
        i = 1 + len(assets)
        reserves = self._decode_reserve_data(assets, raws[1:i], number)
        if tuple(reserves) != hint.with_data:
            return None
        prices: dict[str, int] = {}
        if hint.with_data:
            prices = await self._prices_from(hint.with_data, raws[i], number)
            i += 1
        priced = {a: r.with_price(prices[a]) for a, r in reserves.items() if a in prices}
        categories: dict[int, EModeCategory] = {}
        if self.has_emode:
            id_list = self._emode_ids(priced)
            if tuple(id_list) != hint.emode_ids:
                return None
            decoded = self._decode_emode(id_list, raws[i : i + len(id_list)])
            i += len(id_list)
            sources = self._sources(decoded)
            if tuple(sources) != hint.sources:
                return None
            source_prices = await self._prices_from(sources, raws[i], number) if sources else {}
            categories = self._priced_categories(decoded, source_prices)
        return MarketState(priced, categories, number, timestamp)

    # -- positions -------------------------------------------------------------------------------------

    def _config_calls(self, user: str, with_emode: bool) -> list[Call]:
        calls: list[Call] = [(self.pool, _user_call("getUserConfiguration(address)", user))]
        if with_emode:
            calls.append((self.pool, _user_call("getUserEMode(address)", user)))
        return calls

    def _decode_config(
        self, user: str, raws: Sequence[bytes | None], block: int, with_emode: bool
    ) -> tuple[int, int] | None:
        cfg = _decode(["(uint256)"], raws[0])
        emode = _decode(["uint256"], raws[1]) if with_emode else (0,)
        if cfg is None or emode is None:
            self._warn("user configuration read failed; user skipped", user=user, block=block)
            return None
        return int(cfg[0][0]), int(emode[0])

    async def _user_configs(
        self, users: Sequence[str], block: int, with_emode: bool
    ) -> dict[str, tuple[int, int]]:
        calls: list[Call] = []
        for u in users:
            calls.extend(self._config_calls(u, with_emode))
        results = await self.caller(calls, block)
        step = 2 if with_emode else 1
        out: dict[str, tuple[int, int]] = {}
        for i, u in enumerate(users):
            decoded = self._decode_config(u, results[i * step : i * step + step], block, with_emode)
            if decoded is not None:
                out[u] = decoded
        return out

    async def _positions(
        self,
        users: Iterable[str],
        reserves: Mapping[str, ReserveState],
        block: int,
        *,
        with_emode: bool,
        emode_ok: Callable[[int], bool] = lambda _: True,
    ) -> dict[str, UserPosition]:
        """Per user the balances of the reserves whose bits are set (aToken only where the collateral bit
        is set, debt tokens where the borrowing bit is). Many users: two rounds (configurations and
        e-mode, then those balances). A few (`one_round_users`): one round, reading every balance they
        could hold with their configurations and keeping the same ones."""
        by_id = {r.id: r for r in reserves.values()}
        user_list = [to_checksum_address(u) for u in users]
        one_round = 0 < len(user_list) <= self.one_round_users
        wide: dict[str, dict[str, Sequence[bytes | None]]] = {}
        """one round: user -> asset -> the 5 reads (aToken, variable, stable principal/rate/time)"""
        if one_round:
            listed = list(by_id.values())
            calls: list[Call] = []
            for u in user_list:
                calls.extend(self._config_calls(u, with_emode))
                for r in listed:
                    calls.append((r.a_token, _user_call(_SCALED_BALANCE, u)))
                    calls.append((r.variable_debt_token, _user_call(_SCALED_BALANCE, u)))
                    calls.extend((r.stable_debt_token, _user_call(sig, u)) for sig in _STABLE_READS)
            everything = await self.caller(calls, block)
            head = 2 if with_emode else 1
            per_user = head + 5 * len(listed)
            configs: dict[str, tuple[int, int]] = {}
            for i, u in enumerate(user_list):
                at = i * per_user
                decoded = self._decode_config(u, everything[at : at + head], block, with_emode)
                if decoded is None:
                    continue
                configs[u] = decoded
                wide[u] = {
                    r.asset: everything[at + head + 5 * k : at + head + 5 * k + 5]
                    for k, r in enumerate(listed)
                }
        else:
            configs = await self._user_configs(user_list, block, with_emode)

        calls = []
        plans: list[tuple[str, int, int, list[tuple[str, str]]]] = []
        """(user, config, emode, [(asset, kind)]) with kind in a/v/s; the calls follow in that order."""
        for user, (config, emode) in configs.items():
            if not emode_ok(emode):
                self._warn("user in an unknown e-mode category; user skipped", user=user, emode=emode)
                continue
            items: list[tuple[str, str]] = []
            unknown = [i for i in reserve_ids_in(config) if i not in by_id]
            if unknown:
                self._warn("user uses reserves not held locally; user skipped", user=user, ids=unknown)
                continue
            for rid in reserve_ids_in(config):
                r = by_id[rid]
                if (config >> (rid * 2 + 1)) & 1:
                    items.append((r.asset, "a"))
                    if not one_round:
                        calls.append((r.a_token, _user_call(_SCALED_BALANCE, user)))
                if (config >> (rid * 2)) & 1:
                    items.append((r.asset, "v"))
                    items.append((r.asset, "s"))
                    if not one_round:
                        calls.append((r.variable_debt_token, _user_call(_SCALED_BALANCE, user)))
                        calls.extend((r.stable_debt_token, _user_call(sig, user)) for sig in _STABLE_READS)
            plans.append((user, config, emode, items))

        results = iter([] if one_round else await self.caller(calls, block))
        out: dict[str, UserPosition] = {}
        for user, config, emode, items in plans:
            balances: dict[str, dict[str, int]] = {}
            ok = True
            for asset, kind in items:
                if one_round:
                    five = wide[user][asset]
                    raws = list(five[0:1] if kind == "a" else five[1:2] if kind == "v" else five[2:5])
                else:
                    raws = [next(results) for _ in range(3 if kind == "s" else 1)]
                values = [_decode(["uint256"], raw) for raw in raws]
                if any(v is None for v in values):
                    ok = False
                    continue
                ints = [int(v[0]) for v in values if v is not None]
                fields = balances.setdefault(asset, {})
                if kind == "a":
                    fields["scaled_a_token_balance"] = ints[0]
                elif kind == "v":
                    fields["scaled_variable_debt"] = ints[0]
                else:
                    fields["stable_debt_principal"] = ints[0]
                    fields["stable_rate"] = ints[1]
                    fields["stable_last_update"] = ints[2]
            if not ok:
                self._warn("a balance read failed; user skipped", user=user, block=block)
                continue
            out[user] = UserPosition(
                user=user,
                config=config,
                emode_category=emode,
                reserves={a: UserReserve(**f) for a, f in balances.items()},
            )
        return out

    async def _block_number(self, market: MarketState, block: int | str | None) -> int:
        if block is None:
            return market.block_number
        if isinstance(block, int):
            return block
        return (await self.header(block)).number

    # -- public ----------------------------------------------------------------------------------------

    async def read_prices(self, market: MarketState, block: int | str = "latest") -> MarketState:
        """The same market with fresh oracle prices of the reserves and of the e-mode categories' price
        sources (one call): with `read_indexes`, the per-block update. A reserve (or category) whose
        price cannot be read is dropped (logged), never kept with a stale price."""
        head = await self.header(block)
        sources = [c.price_source for c in market.emode_categories.values() if c.has_price_source]
        assets = list(dict.fromkeys([*market.reserves, *sources]))
        prices = await self._prices(assets, head.number)
        reserves = {a: r.with_price(prices[a]) for a, r in market.reserves.items() if a in prices}
        categories = {
            i: c.with_price(prices[c.price_source]) if c.has_price_source else c
            for i, c in market.emode_categories.items()
            if not c.has_price_source or c.price_source in prices
        }
        return replace(
            market,
            reserves=reserves,
            emode_categories=categories,
            block_number=head.number,
            timestamp=head.timestamp,
        )

    async def read_indexes(self, market: MarketState, block: int | str = "latest") -> MarketState:
        """The same market with fresh reserve data (indexes, rates, configuration), prices kept. A
        reserve whose data cannot be read is dropped (logged)."""
        head = await self.header(block)
        fresh = await self._reserve_data(list(market.reserves), head.number)
        reserves = {a: replace(fresh[a], price=r.price) for a, r in market.reserves.items() if a in fresh}
        return replace(market, reserves=reserves, block_number=head.number, timestamp=head.timestamp)


class AaveV3Reader(_AaveReader):
    """Aave V3 (1.19.x): `pool` is the Pool proxy, `oracle` the AaveOracle."""

    _reserve_data_type = _V3_RESERVE_DATA
    _reserve_widths = (256, 128, 128, 128, 128, 128, 40, 16, 160, 160, 160, 160, 128, 128, 128)
    protocol = "aave-v3"
    has_emode = True

    def _reserve_state(self, asset: str, t: tuple[Any, ...]) -> ReserveState:
        return ReserveState(
            asset=asset,
            id=int(t[7]),
            config=ReserveConfig.from_bitmap(int(t[0][0])),
            liquidity_index=int(t[1]),
            current_liquidity_rate=int(t[2]),
            variable_borrow_index=int(t[3]),
            current_variable_borrow_rate=int(t[4]),
            current_stable_borrow_rate=int(t[5]),
            last_update_timestamp=int(t[6]),
            a_token=_checksum(t[8]),
            stable_debt_token=_checksum(t[9]),
            variable_debt_token=_checksum(t[10]),
            interest_rate_strategy=_checksum(t[11]),
            accrued_to_treasury=int(t[12]),
            unbacked=int(t[13]),
            isolation_mode_total_debt=int(t[14]),
        )

    async def read_emode_categories(self, ids: Iterable[int], block: int) -> dict[int, EModeCategory]:
        """getEModeCategoryData for each id, then the oracle price of the categories' price sources."""
        categories, _ = await self._read_emode(sorted({i for i in ids if i != 0}), block)
        return categories

    async def read_market(
        self,
        block: int | str = "latest",
        *,
        extra_emode_ids: Iterable[int] = (),
        timestamp: int | None = None,
    ) -> MarketState:
        """Every reserve (data + price) and the e-mode categories the reserves (or `extra_emode_ids`)
        refer to, at one block (`timestamp`: the block's, saves reading its header)."""
        return await self._read_market(block, timestamp, extra_emode_ids)

    async def read_positions(
        self, users: Iterable[str], market: MarketState, block: int | str | None = None
    ) -> dict[str, UserPosition]:
        """user (checksummed) -> position, at `block` (default: the market's block)."""
        return await self._positions(
            users,
            market.reserves,
            await self._block_number(market, block),
            with_emode=True,
            emode_ok=lambda e: e == 0 or e in market.emode_categories,
        )


class AaveV2Reader(_AaveReader):
    """Aave V2 (1.0.1): `pool` is the LendingPool proxy, `oracle` the AaveOracle (prices in ETH)."""

    _reserve_data_type = _V2_RESERVE_DATA
    _reserve_widths = (256, 128, 128, 128, 128, 128, 40, 160, 160, 160, 160, 8)
    protocol = "aave-v2"

    def _reserve_state(self, asset: str, t: tuple[Any, ...]) -> ReserveState:
        return ReserveState(
            asset=asset,
            id=int(t[11]),
            config=ReserveConfig.from_bitmap(int(t[0][0])),
            liquidity_index=int(t[1]),
            variable_borrow_index=int(t[2]),
            current_liquidity_rate=int(t[3]),
            current_variable_borrow_rate=int(t[4]),
            current_stable_borrow_rate=int(t[5]),
            last_update_timestamp=int(t[6]),
            a_token=_checksum(t[7]),
            stable_debt_token=_checksum(t[8]),
            variable_debt_token=_checksum(t[9]),
            interest_rate_strategy=_checksum(t[10]),
        )

    async def read_market(self, block: int | str = "latest", *, timestamp: int | None = None) -> MarketState:
        return await self._read_market(block, timestamp, ())

    async def read_positions(
        self, users: Iterable[str], market: MarketState, block: int | str | None = None
    ) -> dict[str, UserPosition]:
        return await self._positions(
            users, market.reserves, await self._block_number(market, block), with_emode=False
        )
