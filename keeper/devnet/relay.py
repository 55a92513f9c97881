"""A local bundle relay for the devnet: a stand-in for real block builders, NOT a real relay.

It speaks the builder JSON-RPC API described in /work/shared/facts/flashbots.md (Flashbots docs
"advanced/rpc-endpoint", flashbots/builder `internal/ethapi/api.go`, flashbots/go-utils signature):
`eth_sendBundle`, `eth_callBundle`, `eth_cancelBundle`, `eth_sendPrivateTransaction` (and
`eth_cancelPrivateTransaction`), each request authenticated by `X-Flashbots-Signature` over the exact body
bytes. MEV-Share (`keeper.devnet.mevshare` has the spec and the auction rule): `mev_sendBundle` (v0.1),
private transactions with `preferences.privacy.hints`, the hint stream (Server-Sent Events on GET `/`,
`stream_url`) and the history API (GET `/api/v1/history`, `/api/v1/history/info`).
Bundles are kept in memory and included by `keeper.devnet.builder.assemble.Builder`, which produces the
blocks of an anvil node started with automine off (`no_mining=True`, `--order fifo`).

Errors are JSON-RPC error objects:
- missing signature: HTTP 403, -32600 "signature is required"; bad signature: HTTP 403, -32025
  "invalid flashbots signature: ...";
- unparsable body -32700, not a request -32600, unknown method -32601, bad params -32602
  (including "unable to decode txs: ..."), all HTTP 400;
- a bundle transaction that cannot be applied in eth_callBundle: -32000 "err: ...; txhash 0x...", HTTP 400;
- anything unexpected: -32603, HTTP 500 (the server keeps running).

Everything received is recorded in `received` (method, params, signer, time, error) and what was
included in which block in `included` (block number -> bundle hashes), for tests and the demo.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import web

from keeper.chain.flashbots_auth import HEADER, FlashbotsAuthError, recover_signer
from keeper.chain.redact import redact_url
from keeper.chain.rpc import RpcClient
from keeper.devnet.builder import (
    BUILDER_COINBASE,
    MAX_BUNDLE_BYTES,
    MAX_BUNDLE_TXS,
    PRIVATE_TX_BLOCKS,
    Builder,
    Bundle,
    PrivateTx,
    SignedTx,
    SimulationError,
    TxDecodeError,
    bundle_hash,
    decode_raw_tx,
)
from keeper.devnet.mevshare import HINTS, MAX_INCLUSION_BLOCKS, MevShare
from keeper.devnet.miner import mine_forever
from keeper.errors import KeeperError

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 2 * 1024 * 1024
MAX_BUILD_BLOCKS: Final = 10_000
_THREAD_DECODE_ABOVE: Final = 16  # decode bigger bundles off the event loop (~0.3 ms per tx)
_HASH_LEN: Final = 66


class ParamsError(Exception):
    """Invalid params: answered with -32602 and this message."""


@dataclass(frozen=True, slots=True)
class Received:
    method: str | None
    params: Any
    signer: str | None
    at: float
    """Wall-clock time (time.time()) the request arrived."""
    error: str | None = None


Handler = Callable[[Any, str], Awaitable[Any]]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _single_object(params: Any) -> dict[str, Any]:
    if not isinstance(params, list) or len(params) != 1 or not isinstance(params[0], dict):
        raise ParamsError("params must be a list holding exactly one object")
    return params[0]


def _quantity(value: Any, name: str) -> int:
    if not isinstance(value, str) or not value.startswith(("0x", "0X")) or not 2 < len(value) <= 66:
        raise ParamsError(f"{name} must be a hex quantity like 0x1b4, got {_short(value)}")
    try:
        return int(value, 16)
    except ValueError:
        raise ParamsError(f"{name} must be a hex quantity like 0x1b4, got {_short(value)}") from None


def _opt_int(value: Any, name: str) -> int | None:
    """An optional non-negative integer: JSON number, or hex quantity string."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ParamsError(f"{name} must be an integer, got {_short(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ParamsError(f"{name} must not be negative")
        return value
    if isinstance(value, str):
        return _quantity(value, name)
    raise ParamsError(f"{name} must be an integer, got {_short(value)}")


def _tx_hash(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) != _HASH_LEN or not value.startswith("0x"):
        raise ParamsError(f"{name} must be a 0x-prefixed 32-byte hash, got {_short(value)}")
    try:
        bytes.fromhex(value[2:])
    except ValueError:
        raise ParamsError(f"{name} must be a 0x-prefixed 32-byte hash, got {_short(value)}") from None
    return value.lower()


def _address(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) != 42 or not value.startswith("0x"):
        raise ParamsError(f"{name} must be a 0x-prefixed 20-byte address, got {_short(value)}")
    try:
        bytes.fromhex(value[2:])
    except ValueError:
        raise ParamsError(f"{name} must be a 0x-prefixed 20-byte address, got {_short(value)}") from None
    return value


def _uuid(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParamsError(f"replacementUuid must be a UUID string, got {_short(value)}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ParamsError(f"replacementUuid must be a UUID, got {_short(value)}") from None


def _raw_txs(value: Any) -> list[bytes]:
    """The checks that need no decoding: a list of 0x-hex strings within the size limits."""
    if value is None:
        raise ParamsError("missing txs")
    if not isinstance(value, list):
        raise ParamsError("txs must be a list of signed raw transactions (0x-hex strings)")
    if len(value) > MAX_BUNDLE_TXS:
        raise ParamsError(f"too many txs: {len(value)} > {MAX_BUNDLE_TXS}")
    raws: list[bytes] = []
    total = 0
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.startswith("0x"):
            raise ParamsError(f"txs[{i}] must be a 0x-prefixed hex string, got {_short(item)}")
        try:
            raw = bytes.fromhex(item[2:])
        except ValueError:
            raise ParamsError(f"txs[{i}] is not valid hex") from None
        total += len(raw)
        if total > MAX_BUNDLE_BYTES:
            raise ParamsError(f"bundle too large: more than {MAX_BUNDLE_BYTES} bytes of txs")
        raws.append(raw)
    return raws


@functools.lru_cache(maxsize=4096)
def _decode_cached(raw: bytes) -> SignedTx:
    """`decode_raw_tx` (sender recovery included, ~0.4 ms a transaction), remembered by the signed bytes:
    a searcher's transactions come back (eth_callBundle, then eth_sendBundle; a new version of a bundle
    per block). A failure is not remembered (it raises again)."""
    return decode_raw_tx(raw)


def _decode_all(raws: list[bytes]) -> list[SignedTx]:
    out = []
    for i, raw in enumerate(raws):
        try:
            out.append(_decode_cached(raw))
        except TxDecodeError as exc:
            raise ParamsError(f"unable to decode txs: txs[{i}]: {exc}") from None
    return out


async def _decode_txs(value: Any) -> list[SignedTx]:
    raws = _raw_txs(value)
    if not raws:
        raise ParamsError("missing txs: the bundle is empty")
    if len(raws) > _THREAD_DECODE_ABOVE:
        return await asyncio.to_thread(_decode_all, raws)
    return _decode_all(raws)


def _hint_list(value: Any, name: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
        raise ParamsError(f"{name} must be a list of hint names")
    unknown = sorted(set(value) - HINTS)
    if unknown:
        raise ParamsError(f"{name}: unknown hints {unknown}; known: {sorted(HINTS)}")
    return frozenset(value)


def _private_tx_hints(preferences: Any) -> frozenset[str]:
    """`eth_sendPrivateTransaction` `preferences.privacy.hints` (Flashbots Protect / MEV-Share)."""
    if preferences is None:
        return frozenset()
    if not isinstance(preferences, dict):
        raise ParamsError("preferences must be an object {fast?, privacy?, validity?}")
    privacy = preferences.get("privacy")
    if privacy is None:
        return frozenset()
    if not isinstance(privacy, dict):
        raise ParamsError("preferences.privacy must be an object {hints?, builders?}")
    return _hint_list(privacy.get("hints"), "preferences.privacy.hints")


def _percent(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ParamsError(f"{name} must be an integer percent 0..100, got {_short(value)}")
    return value


def _refund_percent(validity: Any, body_len: int) -> int | None:
    """`validity.refund` [{bodyIdx, percent}] -> the percent for bodyIdx 0 (None when not given): the
    minimum refund a shared bundle requires, or what a backrun offers for its `{hash}` item (see
    `keeper.devnet.mevshare`). `validity.refundConfig` [{address, percent}] is checked and ignored."""
    if validity is None:
        return None
    if not isinstance(validity, dict):
        raise ParamsError("validity must be an object {refund?, refundConfig?}")
    refund = validity.get("refund") or []
    config = validity.get("refundConfig") or []
    if not isinstance(refund, list) or not isinstance(config, list):
        raise ParamsError("validity.refund and validity.refundConfig must be lists")
    out: int | None = None
    total = 0
    for i, r in enumerate(refund):
        if not isinstance(r, dict):
            raise ParamsError(f"validity.refund[{i}] must be an object {{bodyIdx, percent}}")
        idx = r.get("bodyIdx")
        if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < body_len:
            raise ParamsError(f"validity.refund[{i}].bodyIdx must index the body, got {_short(idx)}")
        pct = _percent(r.get("percent"), f"validity.refund[{i}].percent")
        total += pct
        if idx == 0:
            out = pct
    if total > 100:
        raise ParamsError("validity.refund percents add up to more than 100")
    for i, c in enumerate(config):
        if not isinstance(c, dict):
            raise ParamsError(f"validity.refundConfig[{i}] must be an object {{address, percent}}")
        _address(c.get("address"), f"validity.refundConfig[{i}].address")
        _percent(c.get("percent"), f"validity.refundConfig[{i}].percent")
    return out


def _response(
    req_id: Any, *, result: Any = None, error: tuple[int, str] | None = None, status: int = 200
) -> web.Response:
    payload: dict[str, Any] = {"jsonrpc": "2.0", "id": req_id}
    if error is not None:
        payload["error"] = {"code": error[0], "message": error[1]}
    else:
        payload["result"] = result
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


class RelayServer:
    """`async with RelayServer(anvil_http_url, port=0) as relay:` then POST to `relay.url`.

    Binds 127.0.0.1 by default. `relay.builder.build_block()` builds the next block on demand.
    """

    def __init__(
        self,
        anvil_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        coinbase: str = BUILDER_COINBASE,
        max_records: int = 100_000,
        stream_ping_interval: float = 5.0,
    ) -> None:
        self.anvil_url = anvil_url
        self.host = host
        self.port = port
        self.rpc = RpcClient(anvil_url, retries=1, timeout=30.0)
        self.builder = Builder(self.rpc, coinbase=coinbase)
        self.mevshare = MevShare(self.builder, ping_interval=stream_ping_interval)
        """MEV-Share: shared items, backruns, auctions, refunds, the hint stream and history."""
        self.received: deque[Received] = deque(maxlen=max_records)
        """The last `max_records` requests, oldest first."""
        self._runner: web.AppRunner | None = None
        self._methods: dict[str, Handler] = {
            "eth_sendBundle": self._send_bundle,
            "eth_callBundle": self._call_bundle,
            "eth_cancelBundle": self._cancel_bundle,
            "eth_sendPrivateTransaction": self._send_private,
            "eth_cancelPrivateTransaction": self._cancel_private,
            "mev_sendBundle": self._mev_send_bundle,
            "devnet_buildBlock": self._build_block,
        }

    def __repr__(self) -> str:
        return f"RelayServer({self.url}, anvil={redact_url(self.anvil_url)})"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def stream_url(self) -> str:
        """The MEV-Share hint stream (Server-Sent Events, HTTP GET)."""
        return f"{self.url}/"

    @property
    def included(self) -> dict[int, list[str]]:
        return self.builder.included

    async def start(self) -> None:
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("the devnet relay is bound to %s, not loopback", self.host)
        await self.builder.setup()
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/", self._handle)
        app.router.add_get("/", self.mevshare.handle_stream)
        app.router.add_get("/api/v1/history", self.mevshare.handle_history)
        app.router.add_get("/api/v1/history/info", self.mevshare.handle_history_info)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        if self.port == 0:
            self.port = int(runner.addresses[0][1])
        log.info("devnet relay listening on %s (builder for %s)", self.url, redact_url(self.anvil_url))

    async def stop(self) -> None:
        self.mevshare.close_streams()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.rpc.close()

    async def __aenter__(self) -> RelayServer:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- request handling ------------------------------------------------------------------------

    def _record(self, method: str | None, params: Any, signer: str | None, error: str | None) -> None:
        self.received.append(Received(method, params, signer, time.time(), error))

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self._record(None, None, None, "request body too large")
            return _response(None, error=(-32600, "request body too large"), status=413)
        try:
            signer = recover_signer(request.headers.get(HEADER, ""), body)
        except FlashbotsAuthError as exc:
            self._record(None, None, None, str(exc))
            return _response(None, error=(exc.code or -32025, str(exc)), status=403)
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            self._record(None, None, signer, "parse error")
            return _response(None, error=(-32700, "parse error: body is not JSON"), status=400)
        if isinstance(req, list):
            self._record(None, None, signer, "batch")
            return _response(None, error=(-32600, "batch requests are not supported"), status=400)
        if not isinstance(req, dict):
            self._record(None, None, signer, "not an object")
            return _response(None, error=(-32600, "invalid request: not a JSON object"), status=400)
        req_id = req.get("id")
        method = req.get("method")
        params = req.get("params", [])
        if not isinstance(method, str):
            self._record(None, params, signer, "no method")
            return _response(req_id, error=(-32600, "invalid request: method must be a string"), status=400)
        handler = self._methods.get(method)
        if handler is None:
            self._record(method, params, signer, "method not found")
            return _response(req_id, error=(-32601, f"method {_short(method)} not found"), status=400)
        try:
            result = await handler(params, signer)
        except ParamsError as exc:
            self._record(method, params, signer, str(exc))
            return _response(req_id, error=(-32602, str(exc)), status=400)
        except SimulationError as exc:
            self._record(method, params, signer, str(exc))
            return _response(req_id, error=(-32000, str(exc)), status=400)
        except (KeeperError, OSError) as exc:
            log.warning("%s failed: %s", method, exc)
            self._record(method, params, signer, str(exc))
            return _response(req_id, error=(-32603, f"internal error: {exc}"), status=500)
        except Exception as exc:
            log.exception("%s failed unexpectedly", method)
            self._record(method, params, signer, repr(exc))
            return _response(req_id, error=(-32603, "internal error"), status=500)
        self._record(method, params, signer, None)
        return _response(req_id, result=result)

    # -- methods ---------------------------------------------------------------------------------

    async def _send_bundle(self, params: Any, signer: str) -> Any:
        obj = _single_object(params)
        replacement = _uuid(obj.get("replacementUuid"))
        if isinstance(obj.get("txs"), list) and not obj["txs"] and replacement is not None:
            # BuilderNet-style cancellation: same uuid, no txs
            self.builder.cancel_bundle(replacement, signer)
            return None
        txs = await _decode_txs(obj.get("txs"))
        block = _quantity(obj.get("blockNumber"), "blockNumber")
        reverting = obj.get("revertingTxHashes") or []
        if not isinstance(reverting, list):
            raise ParamsError("revertingTxHashes must be a list of tx hashes")
        builders = obj.get("builders")
        if builders is not None and not (
            isinstance(builders, list) and all(isinstance(b, str) for b in builders)
        ):
            raise ParamsError("builders must be a list of names")
        bundle = Bundle(
            txs=tuple(txs),
            block_number=block,
            bundle_hash=bundle_hash(txs),
            reverting_tx_hashes=frozenset(
                _tx_hash(h, f"revertingTxHashes[{i}]") for i, h in enumerate(reverting)
            ),
            min_timestamp=_opt_int(obj.get("minTimestamp"), "minTimestamp"),
            max_timestamp=_opt_int(obj.get("maxTimestamp"), "maxTimestamp"),
            replacement_uuid=replacement,
            signer=signer,
            received_at=time.time(),
        )
        self.builder.add_bundle(bundle)
        return {"bundleHash": bundle.bundle_hash}

    async def _call_bundle(self, params: Any, signer: str) -> Any:
        obj = _single_object(params)
        txs = await _decode_txs(obj.get("txs"))
        block = _quantity(obj.get("blockNumber"), "blockNumber")
        state = obj.get("stateBlockNumber", "latest")
        state_block = None if state in ("latest", None) else _quantity(state, "stateBlockNumber")
        coinbase = obj.get("coinbase")
        sim = await self.builder.call_bundle(
            txs,
            block_number=block,
            state_block=state_block,
            timestamp=_opt_int(obj.get("timestamp"), "timestamp"),
            coinbase=None if coinbase is None else _address(coinbase, "coinbase"),
            base_fee=_opt_int(obj.get("baseFee"), "baseFee"),
            gas_limit=_opt_int(obj.get("gasLimit"), "gasLimit"),
        )
        return sim.to_json()

    async def _cancel_bundle(self, params: Any, signer: str) -> Any:
        obj = _single_object(params)
        replacement = _uuid(obj.get("replacementUuid"))
        if replacement is None:
            raise ParamsError("missing replacementUuid")
        self.builder.cancel_bundle(replacement, signer)
        return None

    async def _send_private(self, params: Any, signer: str) -> Any:
        obj = _single_object(params)
        raw_hex = obj.get("tx")
        if raw_hex is None:
            raise ParamsError("missing tx")
        if not isinstance(raw_hex, str) or not raw_hex.startswith("0x"):
            raise ParamsError(f"tx must be a 0x-prefixed signed raw transaction, got {_short(raw_hex)}")
        (tx,) = _decode_all(_raw_txs([raw_hex]))
        max_block = obj.get("maxBlockNumber")
        if max_block is None:
            latest = await self.rpc.block_number()
            limit = latest + PRIVATE_TX_BLOCKS
        else:
            limit = _quantity(max_block, "maxBlockNumber")
        hints = _private_tx_hints(obj.get("preferences"))
        self.builder.add_private_tx(PrivateTx(tx, limit, signer, time.time()))
        if hints:
            latest = await self.rpc.block_number()
            await self.mevshare.share(
                "tx", [tx], hints=hints, first_block=latest + 1, max_block=limit, signer=signer
            )
        return tx.hash

    async def _mev_send_bundle(self, params: Any, signer: str) -> Any:
        """`mev_sendBundle` (MEV-Share v0.1): a backrun `[{hash}, {tx, canRevert}...]` of a shared item,
        or a bundle of `{tx}` items (shared when `privacy.hints` is given, else an ordinary bundle for
        each block of `inclusion`). Returns `{bundleHash}`."""
        obj = _single_object(params)
        version = obj.get("version", "v0.1")
        if version != "v0.1":
            raise ParamsError(f"unsupported version {_short(version)} (only v0.1)")
        inclusion = obj.get("inclusion")
        if not isinstance(inclusion, dict):
            raise ParamsError("missing inclusion: {block, maxBlock?}")
        block = _quantity(inclusion.get("block"), "inclusion.block")
        max_block = (
            block
            if inclusion.get("maxBlock") is None
            else _quantity(inclusion["maxBlock"], "inclusion.maxBlock")
        )
        if not block <= max_block <= block + MAX_INCLUSION_BLOCKS:
            raise ParamsError(f"inclusion: need block <= maxBlock <= block + {MAX_INCLUSION_BLOCKS}")
        body = obj.get("body")
        if not isinstance(body, list) or not body:
            raise ParamsError("body must be a non-empty list of {hash} | {tx, canRevert} items")
        if len(body) > MAX_BUNDLE_TXS:
            raise ParamsError(f"too many body items: {len(body)} > {MAX_BUNDLE_TXS}")
        target: str | None = None
        raws: list[Any] = []
        can_revert_idx: list[int] = []
        for i, item in enumerate(body):
            if not isinstance(item, dict):
                raise ParamsError(f"body[{i}] must be an object")
            if "bundle" in item:
                raise ParamsError(f"body[{i}]: nested bundles are not supported by the devnet relay")
            if "hash" in item:
                if i != 0:
                    raise ParamsError(f"body[{i}]: a {{hash}} item must come first (a backrun)")
                target = _tx_hash(item["hash"], "body[0].hash")
                continue
            if "tx" not in item:
                raise ParamsError(f"body[{i}] must hold hash or tx")
            can_revert = item.get("canRevert", False)
            if not isinstance(can_revert, bool):
                raise ParamsError(f"body[{i}].canRevert must be a boolean")
            if can_revert:
                can_revert_idx.append(len(raws))
            raws.append(item["tx"])
        if not raws:
            raise ParamsError("body holds no transaction")
        txs = await _decode_txs(raws)
        reverting = [txs[k].hash for k in can_revert_idx]
        refund = _refund_percent(obj.get("validity"), len(body))
        privacy = obj.get("privacy")
        hints = _hint_list(privacy.get("hints") if isinstance(privacy, dict) else None, "privacy.hints")
        if privacy is not None and not isinstance(privacy, dict):
            raise ParamsError("privacy must be an object {hints?, builders?}")
        if target is not None:
            try:
                backrun = self.mevshare.add_backrun(
                    target,
                    txs,
                    block=block,
                    max_block=max_block,
                    can_revert=reverting,
                    refund_percent=refund,
                    signer=signer,
                )
            except KeyError:
                raise ParamsError(f"unknown or already included hash {target}") from None
            return {"bundleHash": backrun.bundle_hash}
        if hints:
            item = await self.mevshare.share(
                "bundle",
                txs,
                hints=hints,
                first_block=block,
                max_block=max_block,
                can_revert=reverting,
                signer=signer,
                refund_percent=refund,
            )
            return {"bundleHash": item.hash}
        h = bundle_hash(txs)
        for n in range(block, max_block + 1):
            self.builder.add_bundle(
                Bundle(
                    txs=tuple(txs),
                    block_number=n,
                    bundle_hash=h,
                    reverting_tx_hashes=frozenset(reverting),
                    signer=signer,
                    received_at=time.time(),
                )
            )
        return {"bundleHash": h}

    async def _build_block(self, params: Any, signer: str) -> Any:
        """Devnet extension (not part of any builder API): build and mine the next block(s) now.

        params: [] or [N] (a number or hex quantity, 1..MAX_BUILD_BLOCKS): N blocks, one after the other.
        Scenarios that mine their own set-up blocks and `keeper devnet mine N` call this, so that every
        block on the devnet is produced by the builder under its lock (bundles first, the arbitrageur's
        swaps sent before each) and never interleaves with an interval build. Returns the last block.
        """
        if params in (None, []):
            count = 1
        elif isinstance(params, list) and len(params) == 1:
            count = _opt_int(params[0], "block count") or 0
        else:
            raise ParamsError("params must be [] or [number of blocks]")
        if not 1 <= count <= MAX_BUILD_BLOCKS:
            raise ParamsError(f"block count must be between 1 and {MAX_BUILD_BLOCKS}")
        built = None
        for _ in range(count):
            built = await self.builder.build_block()
        assert built is not None
        return {
            "number": built.number,
            "hash": built.hash,
            "transactions": len(built.tx_hashes),
            "blocks": count,
        }

    async def _cancel_private(self, params: Any, signer: str) -> Any:
        obj = _single_object(params)
        h = _tx_hash(obj.get("txHash"), "txHash")
        self.mevshare.cancel(h)
        return self.builder.cancel_private_tx(h)


async def run_relay(
    anvil_url: str,
    host: str = "127.0.0.1",
    port: int = 0,
    block_time: float = 2.0,
    *,
    started: asyncio.Future[str] | None = None,
) -> None:
    """Serves the relay and produces a block every `block_time` seconds until cancelled.

    `block_time <= 0` serves only (blocks are built by whoever calls `build_block`, or not at all).
    `started`, when given, receives the relay URL once it listens.
    """
    async with RelayServer(anvil_url, host=host, port=port) as relay:
        if started is not None and not started.done():
            started.set_result(relay.url)
        if block_time > 0:
            await mine_forever(relay.builder, block_time)
        else:
            await asyncio.Event().wait()


__all__ = ["MAX_BODY_BYTES", "ParamsError", "Received", "RelayServer", "run_relay"]
