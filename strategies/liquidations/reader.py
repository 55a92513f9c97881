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

Round trips: `read_market` 3-4 (header, reserves list, reserve data + prices, e-mode categories),
`read_prices` 1, `read_positions` 2 (configurations, then the balances of the reserves each user uses).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from eth_abi.abi import decode, encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address

from keeper.chain.multicall import MULTICALL3_ADDRESS, multicall
from keeper.chain.rpc import block_tag, hex_to_bytes
from keeper.errors import DecodeError, JsonRpcError, KeeperError
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


def calldata(signature: str, types: Sequence[str] = (), args: Sequence[Any] = ()) -> bytes:
    """Selector + ABI-encoded arguments."""
    selector = function_signature_to_4byte_selector(signature)
    return selector + encode(list(types), list(args)) if types else selector


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


def _decode(types: Sequence[str], data: bytes | None) -> tuple[Any, ...] | None:
    if data is None or not data:
        return None
    try:
        return tuple(decode(list(types), data))
    except Exception:  # eth_abi raises several unrelated exception types on bad data
        return None


@dataclass(frozen=True, slots=True)
class _Header:
    number: int
    timestamp: int


class _AaveReader:
    """What the V3 and V2 readers share: block pinning, reserves list, prices, user balances."""

    _reserve_data_type: str = _V3_RESERVE_DATA
    protocol: str = "aave"

    def __init__(self, rpc: BatchRpc, pool: str, oracle: str, *, caller: BatchCaller | None = None) -> None:
        self.rpc = rpc
        self.pool = to_checksum_address(pool)
        self.oracle = to_checksum_address(oracle)
        self.caller = caller or BatchCaller(rpc)

    # -- helpers ---------------------------------------------------------------------------------------

    async def header(self, block: int | str = "latest") -> _Header:
        """Block number and timestamp of `block` (resolves "latest" to a number for pinning)."""
        raw = await self.rpc.call("eth_getBlockByNumber", [block_tag(block), False])
        if not isinstance(raw, dict):
            raise DecodeError(f"no block {block!r}")
        return _Header(int(raw["number"], 16), int(raw["timestamp"], 16))

    def _warn(self, message: str, **fields: Any) -> None:
        log.warning(message, extra=kv(protocol=self.protocol, pool=self.pool, **fields))

    async def _reserves_list(self, block: int) -> list[str]:
        (data,) = await self.caller([(self.pool, _GET_RESERVES_LIST)], block)
        decoded = _decode(["address[]"], data)
        if decoded is None:
            self._warn("getReservesList failed", block=block)
            return []
        return [to_checksum_address(a) for a in decoded[0]]

    async def _prices(self, assets: Sequence[str], block: int) -> dict[str, int]:
        """AaveOracle.getAssetsPrices(assets); if it reverts (one bad feed reverts it all), each asset's
        getAssetPrice on its own. Assets without a price are logged and left out."""
        if not assets:
            return {}
        call = calldata("getAssetsPrices(address[])", ["address[]"], [list(assets)])
        (data,) = await self.caller([(self.oracle, call)], block)
        decoded = _decode(["uint256[]"], data)
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

    async def _reserve_data(self, assets: Sequence[str], block: int) -> dict[str, ReserveState]:
        calls = [(self.pool, calldata("getReserveData(address)", ["address"], [a])) for a in assets]
        out: dict[str, ReserveState] = {}
        for asset, raw in zip(assets, await self.caller(calls, block), strict=True):
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

    def _reserve_state(self, asset: str, t: tuple[Any, ...]) -> ReserveState:
        raise NotImplementedError

    async def _user_configs(
        self, users: Sequence[str], block: int, with_emode: bool
    ) -> dict[str, tuple[int, int]]:
        calls: list[Call] = []
        for u in users:
            calls.append((self.pool, _user_call("getUserConfiguration(address)", u)))
            if with_emode:
                calls.append((self.pool, _user_call("getUserEMode(address)", u)))
        results = await self.caller(calls, block)
        step = 2 if with_emode else 1
        out: dict[str, tuple[int, int]] = {}
        for i, u in enumerate(users):
            cfg = _decode(["(uint256)"], results[i * step])
            emode = _decode(["uint256"], results[i * step + 1]) if with_emode else (0,)
            if cfg is None or emode is None:
                self._warn("user configuration read failed; user skipped", user=u, block=block)
                continue
            out[u] = (int(cfg[0][0]), int(emode[0]))
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
        """Two rounds: configurations (and e-mode), then per user the balances of the reserves whose
        bits are set (aToken only where the collateral bit is set, debt tokens where the borrowing bit is)."""
        by_id = {r.id: r for r in reserves.values()}
        user_list = [to_checksum_address(u) for u in users]
        configs = await self._user_configs(user_list, block, with_emode)

        calls: list[Call] = []
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
                    calls.append((r.a_token, _user_call("scaledBalanceOf(address)", user)))
                if (config >> (rid * 2)) & 1:
                    items.append((r.asset, "v"))
                    calls.append((r.variable_debt_token, _user_call("scaledBalanceOf(address)", user)))
                    items.append((r.asset, "s"))
                    calls.extend(
                        (r.stable_debt_token, _user_call(sig, user))
                        for sig in (
                            "principalBalanceOf(address)",
                            "getUserStableRate(address)",
                            "getUserLastUpdated(address)",
                        )
                    )
            plans.append((user, config, emode, items))

        results = iter(await self.caller(calls, block))
        out: dict[str, UserPosition] = {}
        for user, config, emode, items in plans:
            balances: dict[str, dict[str, int]] = {}
            ok = True
            for asset, kind in items:
                n = 3 if kind == "s" else 1
                raws = [next(results) for _ in range(n)]
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
    protocol = "aave-v3"

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
            a_token=to_checksum_address(t[8]),
            stable_debt_token=to_checksum_address(t[9]),
            variable_debt_token=to_checksum_address(t[10]),
            interest_rate_strategy=to_checksum_address(t[11]),
            accrued_to_treasury=int(t[12]),
            unbacked=int(t[13]),
            isolation_mode_total_debt=int(t[14]),
        )

    async def read_emode_categories(self, ids: Iterable[int], block: int) -> dict[int, EModeCategory]:
        """getEModeCategoryData for each id, then the oracle price of the categories' price sources."""
        id_list = sorted({i for i in ids if i != 0})
        calls = [(self.pool, calldata("getEModeCategoryData(uint8)", ["uint8"], [i])) for i in id_list]
        out: dict[int, EModeCategory] = {}
        for cid, raw in zip(id_list, await self.caller(calls, block), strict=True):
            decoded = _decode(["(uint16,uint16,uint16,address,string)"], raw)
            if decoded is None:
                self._warn("getEModeCategoryData failed; category skipped", category=cid)
                continue
            ltv, lt, bonus, source, label = decoded[0]
            out[cid] = EModeCategory(
                cid, int(ltv), int(lt), int(bonus), to_checksum_address(source), str(label)
            )
        sources = sorted({c.price_source for c in out.values() if c.has_price_source})
        prices = await self._prices(sources, block)
        for cid, c in list(out.items()):
            if c.has_price_source:
                if c.price_source in prices:
                    out[cid] = c.with_price(prices[c.price_source])
                else:
                    self._warn("no price for the e-mode price source; category skipped", category=cid)
                    del out[cid]
        return out

    async def read_market(
        self, block: int | str = "latest", *, extra_emode_ids: Iterable[int] = ()
    ) -> MarketState:
        """Every reserve (data + price) and the e-mode categories the reserves (or `extra_emode_ids`)
        refer to, at one block."""
        head = await self.header(block)
        assets = await self._reserves_list(head.number)
        reserves = await self._reserve_data(assets, head.number)
        prices = await self._prices(list(reserves), head.number)
        priced = {a: r.with_price(prices[a]) for a, r in reserves.items() if a in prices}
        ids = {r.config.emode_category for r in priced.values()} | set(extra_emode_ids)
        categories = await self.read_emode_categories(ids, head.number)
        return MarketState(priced, categories, head.number, head.timestamp)

    async def read_positions(
        self, users: Iterable[str], market: MarketState, block: int | str | None = None
    ) -> dict[str, UserPosition]:
        """user (checksummed) -> position, at `block` (default: the market's block)."""
        number = market.block_number if block is None else (await self.header(block)).number
        return await self._positions(
            users,
            market.reserves,
            number,
            with_emode=True,
            emode_ok=lambda e: e == 0 or e in market.emode_categories,
        )


class AaveV2Reader(_AaveReader):
    """Aave V2 (1.0.1): `pool` is the LendingPool proxy, `oracle` the AaveOracle (prices in ETH)."""

    _reserve_data_type = _V2_RESERVE_DATA
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
            a_token=to_checksum_address(t[7]),
            stable_debt_token=to_checksum_address(t[8]),
            variable_debt_token=to_checksum_address(t[9]),
            interest_rate_strategy=to_checksum_address(t[10]),
        )

    async def read_market(self, block: int | str = "latest") -> MarketState:
        head = await self.header(block)
        assets = await self._reserves_list(head.number)
        reserves = await self._reserve_data(assets, head.number)
        prices = await self._prices(list(reserves), head.number)
        priced = {a: r.with_price(prices[a]) for a, r in reserves.items() if a in prices}
        return MarketState(priced, {}, head.number, head.timestamp)

    async def read_positions(
        self, users: Iterable[str], market: MarketState, block: int | str | None = None
    ) -> dict[str, UserPosition]:
        number = market.block_number if block is None else (await self.header(block)).number
        return await self._positions(users, market.reserves, number, with_emode=False)
