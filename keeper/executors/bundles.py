"""Bundle client for block builders and the Flashbots relay (spec: /work/shared/facts/flashbots.md).

Methods: `eth_sendBundle`, `eth_callBundle`, `eth_cancelBundle`, `mev_sendBundle` (MEV-Share v0.1) and
`eth_sendPrivateTransaction`, over aiohttp with one keep-alive session and orjson bodies.

Authentication: every request carries `X-Flashbots-Signature: <address>:0x<65-byte sig>`, an EIP-191
signature over `"0x" + hex(keccak256(body))` made with `keeper.chain.flashbots_auth` over the exact bytes
POSTed (`data=body`, never `json=`). The body is serialized and signed once; a fan-out to several
builders sends those same bytes and header to each.

Errors: every failure is a `RelayError` (never a bare aiohttp/orjson exception):
- `RelayTransportError`: connection refused/reset, timeout, HTTP 408/425/429/5xx. Transient; retried
  with tenacity (`retries` attempts in all, short exponential back-off) since every method here is
  idempotent at the builder (same bundle hash / tx hash / replacementUuid).
- `RelayRejected`: the builder answered with an error, in either form seen in the wild: a bare
  `{"error": "..."}` with HTTP 400/403, or a JSON-RPC error object (`-32600` "signature is required",
  `-32025` invalid signature, `-32602` bad params, ...). `code` and `status` are set. Never retried.
- `RelayResponseError`: the reply is malformed (non-JSON, not an object, neither result nor error,
  wrong types in an `eth_callBundle` result). Never retried.

Target blocks (`MultiBuilderClient.send_bundle_for_blocks`): a bundle is valid for exactly one block, so
one bundle is sent per target block: N+1 by default, N+1 and N+2 with `n_blocks=2` (useful when block
N arrives late in the slot and N+1's builders may already be sealing). Builders key replacement on
(signer, replacementUuid) regardless of the block, so reusing one uuid for N+1 and N+2 would make the
N+2 bundle replace the N+1 one. Each target block therefore gets its own uuid derived deterministically
from the opportunity's uuid: `uuid5(replacement_uuid, "block:<n>")` (`block_replacement_uuid`). Resending
for the same opportunity and block replaces the earlier bundle; `cancel_for_blocks` cancels them all.

Secrets: the signing key is held by a `FlashbotsSigner` (which never prints it); URLs appear only
through `redact_url` in logs, errors and repr; metrics are labelled by builder host, never the URL.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Self
from urllib.parse import urlsplit

import aiohttp
import orjson
from prometheus_client import Counter, Histogram
from pydantic import SecretStr
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from keeper.chain.flashbots_auth import HEADER, FlashbotsSigner
from keeper.chain.redact import redact_url
from keeper.core.metrics import REGISTRY
from keeper.errors import RelayError

log = logging.getLogger(__name__)

MAX_BUNDLE_TXS: Final = 100
MAX_BUNDLE_BYTES: Final = 300_000
_TRANSIENT_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_ECHO: Final = 200  # characters of server text kept in an error message
_ERROR_SELECTOR: Final = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR: Final = bytes.fromhex("4e487b71")  # Panic(uint256)

SignerKey = FlashbotsSigner | SecretStr | str | bytes
RawTx = str | bytes

# -- metrics (labelled by builder host only: URLs may carry API keys) ------------------------------

BUILDER_REQUEST_SECONDS = Histogram(
    "keeper_builder_request_seconds",
    "Latency of a request to a block builder / relay, retries included",
    ["builder", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 5.0),
    registry=REGISTRY,
)
BUILDER_REQUESTS = Counter(
    "keeper_builder_requests_total",
    "Requests to block builders / relays by outcome (ok, rejected, transport, malformed, cancelled)",
    ["builder", "method", "outcome"],
    registry=REGISTRY,
)


# -- errors ---------------------------------------------------------------------------------------


class RelayTransportError(RelayError):
    """No usable answer: connection error, timeout, HTTP 408/425/429/5xx. Transient, retried."""


class RelayRejected(RelayError):
    """The builder answered with an error (bare `{"error": ...}` or a JSON-RPC error object)."""

    def __init__(
        self, message: str, *, code: int | None = None, status: int | None = None, reason: str = ""
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.reason = reason
        """The builder's own error text (truncated)."""


class RelayResponseError(RelayError):
    """The reply is not what the method documents (non-JSON, wrong shape, wrong types)."""


def _echo(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _MAX_ECHO else text[: _MAX_ECHO - 3] + "..."


# -- value helpers --------------------------------------------------------------------------------


def raw_tx_hex(tx: RawTx) -> str:
    """A signed raw transaction as 0x-prefixed lowercase hex."""
    if isinstance(tx, bytes | bytearray | memoryview):
        return "0x" + bytes(tx).hex()
    if isinstance(tx, str) and tx[:2] in ("0x", "0X") and len(tx) % 2 == 0:
        try:
            bytes.fromhex(tx[2:])
        except ValueError:
            pass
        else:
            return "0x" + tx[2:].lower()
    raise ValueError(f"not a signed raw transaction (0x-hex or bytes): {_echo(tx)[:40]}")


def _hash32(value: str | bytes, name: str) -> str:
    text = "0x" + bytes(value).hex() if isinstance(value, bytes | bytearray) else value
    if not isinstance(text, str) or len(text) != 66 or text[:2] not in ("0x", "0X"):
        raise ValueError(f"{name} must be a 0x-prefixed 32-byte hash")
    try:
        bytes.fromhex(text[2:])
    except ValueError:
        raise ValueError(f"{name} must be a 0x-prefixed 32-byte hash") from None
    return "0x" + text[2:].lower()


def _address(value: str, name: str) -> str:
    if not isinstance(value, str) or len(value) != 42 or value[:2] not in ("0x", "0X"):
        raise ValueError(f"{name} must be a 0x-prefixed 20-byte address")
    try:
        bytes.fromhex(value[2:])
    except ValueError:
        raise ValueError(f"{name} must be a 0x-prefixed 20-byte address") from None
    return value


def _uuid_str(value: uuid.UUID | str, name: str = "replacement_uuid") -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise ValueError(f"{name} must be a UUID") from None


def block_replacement_uuid(replacement_uuid: uuid.UUID | str, block_number: int) -> str:
    """The uuid used for one target block of an opportunity (see the module docstring)."""
    base = uuid.UUID(_uuid_str(replacement_uuid))
    return str(uuid.uuid5(base, f"block:{block_number}"))


def parse_int(value: Any, name: str) -> int:
    """An integer field of a reply: JSON integer, decimal string or 0x-hex string. Never a float."""
    if isinstance(value, bool):
        raise RelayResponseError(f"{name}: expected an integer, got {_echo(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if text[:2] in ("0x", "0X"):
                if len(text) > 2:
                    return int(text, 16)
            elif text and (text.isdigit() or (text[0] == "-" and text[1:].isdigit())):
                return int(text, 10)
        except ValueError:
            pass
    raise RelayResponseError(f"{name}: expected an integer (number, decimal or 0x-hex), got {_echo(value)}")


def parse_hex_bytes(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or value[:2] not in ("0x", "0X"):
        raise RelayResponseError(f"{name}: expected 0x-hex, got {_echo(value)}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise RelayResponseError(f"{name}: bad hex {_echo(value)}") from None


def _str_field(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise RelayResponseError(f"{where}.{key}: expected a string, got {_echo(value)}")
    return value


def _has_float(obj: Any) -> bool:
    stack = [obj]  # iterative: a hostile reply may nest deeper than the recursion limit
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _loads(raw: bytes) -> Any:
    """orjson, except that integers beyond 64 bits (which orjson turns into floats) stay exact.

    Raises ValueError on anything that is not JSON.
    """
    obj = orjson.loads(raw)
    if _has_float(obj):
        try:
            obj = json.loads(raw)
        except RecursionError:
            raise ValueError("reply nests too deeply") from None
    return obj


def decode_revert_reason(data: bytes) -> str | None:
    """`Error(string)` -> the string, `Panic(uint256)` -> "panic 0x..", else None."""
    if data[:4] == _ERROR_SELECTOR and len(data) >= 4 + 64:
        body = data[4:]
        offset = int.from_bytes(body[:32], "big")
        if offset + 32 <= len(body):
            length = int.from_bytes(body[offset : offset + 32], "big")
            start = offset + 32
            if start + length <= len(body):
                return body[start : start + length].decode("utf-8", errors="replace")
    if data[:4] == _PANIC_SELECTOR and len(data) == 4 + 32:
        return f"panic 0x{int.from_bytes(data[4:], 'big'):02x}"
    return None


# -- request bodies -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bundle:
    """The `eth_sendBundle` params object. Build with `Bundle.build(...)` to normalize inputs.

    The builder-specific extras (`refund_*`, `dropping_tx_hashes`: BuilderNet, Titan) are sent only
    when set. An empty `txs` with a `replacement_uuid` is BuilderNet's way to cancel.
    """

    txs: tuple[str, ...]
    block_number: int
    min_timestamp: int | None = None
    max_timestamp: int | None = None
    reverting_tx_hashes: tuple[str, ...] = ()
    replacement_uuid: str | None = None
    builders: tuple[str, ...] | None = None
    refund_percent: int | None = None
    refund_recipient: str | None = None
    refund_tx_hashes: tuple[str, ...] | None = None
    dropping_tx_hashes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.block_number, bool) or not isinstance(self.block_number, int):
            raise TypeError("block_number must be an int")
        if self.block_number <= 0:
            raise ValueError("block_number must be positive")
        if not self.txs and self.replacement_uuid is None:
            raise ValueError("a bundle needs txs (an empty one only cancels, with a replacement_uuid)")
        if len(self.txs) > MAX_BUNDLE_TXS:
            raise ValueError(f"too many txs: {len(self.txs)} > {MAX_BUNDLE_TXS}")
        size = sum((len(t) - 2) // 2 for t in self.txs)
        if size > MAX_BUNDLE_BYTES:
            raise ValueError(f"bundle too large: {size} bytes > {MAX_BUNDLE_BYTES}")
        for name in ("min_timestamp", "max_timestamp"):
            ts = getattr(self, name)
            if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int) or ts < 0):
                raise ValueError(f"{name} must be a non-negative int")
        if (
            self.min_timestamp is not None
            and self.max_timestamp is not None
            and self.min_timestamp > self.max_timestamp
        ):
            raise ValueError("min_timestamp is after max_timestamp")
        if self.refund_percent is not None and not (
            isinstance(self.refund_percent, int) and 1 <= self.refund_percent <= 99
        ):
            raise ValueError("refund_percent must be an int in 1..99")

    @classmethod
    def build(
        cls,
        txs: Sequence[RawTx],
        block_number: int,
        *,
        min_timestamp: int | None = None,
        max_timestamp: int | None = None,
        reverting_tx_hashes: Iterable[str | bytes] = (),
        replacement_uuid: uuid.UUID | str | None = None,
        builders: Iterable[str] | None = None,
        refund_percent: int | None = None,
        refund_recipient: str | None = None,
        refund_tx_hashes: Iterable[str | bytes] | None = None,
        dropping_tx_hashes: Iterable[str | bytes] | None = None,
    ) -> Bundle:
        return cls(
            txs=tuple(raw_tx_hex(t) for t in txs),
            block_number=block_number,
            min_timestamp=min_timestamp,
            max_timestamp=max_timestamp,
            reverting_tx_hashes=tuple(
                _hash32(h, f"reverting_tx_hashes[{i}]") for i, h in enumerate(reverting_tx_hashes)
            ),
            replacement_uuid=None if replacement_uuid is None else _uuid_str(replacement_uuid),
            builders=None if builders is None else tuple(builders),
            refund_percent=refund_percent,
            refund_recipient=None
            if refund_recipient is None
            else _address(refund_recipient, "refund_recipient"),
            refund_tx_hashes=None
            if refund_tx_hashes is None
            else tuple(_hash32(h, f"refund_tx_hashes[{i}]") for i, h in enumerate(refund_tx_hashes)),
            dropping_tx_hashes=None
            if dropping_tx_hashes is None
            else tuple(_hash32(h, f"dropping_tx_hashes[{i}]") for i, h in enumerate(dropping_tx_hashes)),
        )

    def for_block(self, block_number: int, replacement_uuid: str | None = None) -> Bundle:
        return replace(
            self,
            block_number=block_number,
            replacement_uuid=self.replacement_uuid if replacement_uuid is None else replacement_uuid,
        )

    def to_params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"txs": list(self.txs), "blockNumber": hex(self.block_number)}
        if self.min_timestamp is not None:
            out["minTimestamp"] = self.min_timestamp
        if self.max_timestamp is not None:
            out["maxTimestamp"] = self.max_timestamp
        if self.reverting_tx_hashes:
            out["revertingTxHashes"] = list(self.reverting_tx_hashes)
        if self.replacement_uuid is not None:
            out["replacementUuid"] = self.replacement_uuid
        if self.builders is not None:
            out["builders"] = list(self.builders)
        if self.refund_percent is not None:
            out["refundPercent"] = self.refund_percent
        if self.refund_recipient is not None:
            out["refundRecipient"] = self.refund_recipient
        if self.refund_tx_hashes is not None:
            out["refundTxHashes"] = list(self.refund_tx_hashes)
        if self.dropping_tx_hashes is not None:
            out["droppingTxHashes"] = list(self.dropping_tx_hashes)
        return out


@dataclass(frozen=True, slots=True)
class MevHash:
    """A MEV-Share body item referring to someone else's (private) tx by hash: what we back-run."""

    hash: str

    def to_json(self) -> dict[str, Any]:
        return {"hash": _hash32(self.hash, "hash")}


@dataclass(frozen=True, slots=True)
class MevTx:
    """A MEV-Share body item carrying a signed raw tx."""

    tx: RawTx
    can_revert: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"tx": raw_tx_hex(self.tx), "canRevert": self.can_revert}


@dataclass(frozen=True, slots=True)
class MevBundle:
    """`mev_sendBundle` params (MEV-Share v0.1). Nested bundles are body items too.

    `refund`: (bodyIdx, percent) pairs; `refund_config`: (address, percent) pairs; `hints` and
    `builders` go under `privacy`.
    """

    block: int
    body: tuple[MevHash | MevTx | MevBundle, ...]
    max_block: int | None = None
    refund: tuple[tuple[int, int], ...] = ()
    refund_config: tuple[tuple[str, int], ...] = ()
    hints: tuple[str, ...] | None = None
    builders: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.body:
            raise ValueError("mev bundle body is empty")
        if self.block <= 0 or (self.max_block is not None and self.max_block < self.block):
            raise ValueError("inclusion: need 0 < block <= max_block")

    def to_json(self) -> dict[str, Any]:
        inclusion: dict[str, Any] = {"block": hex(self.block)}
        if self.max_block is not None:
            inclusion["maxBlock"] = hex(self.max_block)
        out: dict[str, Any] = {
            "version": "v0.1",
            "inclusion": inclusion,
            "body": [
                {"bundle": item.to_json()} if isinstance(item, MevBundle) else item.to_json()
                for item in self.body
            ],
        }
        if self.refund or self.refund_config:
            validity: dict[str, Any] = {}
            if self.refund:
                validity["refund"] = [{"bodyIdx": i, "percent": p} for i, p in self.refund]
            if self.refund_config:
                validity["refundConfig"] = [
                    {"address": _address(a, "refund_config.address"), "percent": p}
                    for a, p in self.refund_config
                ]
            out["validity"] = validity
        if self.hints is not None or self.builders is not None:
            privacy: dict[str, Any] = {}
            if self.hints is not None:
                privacy["hints"] = list(self.hints)
            if self.builders is not None:
                privacy["builders"] = list(self.builders)
            out["privacy"] = privacy
        return out


# -- eth_callBundle result ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TxResult:
    """One tx of an `eth_callBundle` result. Amounts in wei (ints). `gas_price` is the builder's
    `coinbaseDiff / gasUsed`, not the tx's own price. Exactly one of `value` (success: return data)
    and `error` is set; `revert` holds the raw revert bytes when the builder sends them."""

    tx_hash: str
    gas_used: int
    from_address: str
    to_address: str | None
    coinbase_diff: int
    eth_sent_to_coinbase: int
    gas_fees: int
    gas_price: int
    value: bytes | None
    error: str | None
    revert: bytes | None

    @property
    def success(self) -> bool:
        return self.error is None

    @property
    def revert_reason(self) -> str | None:
        return None if self.revert is None else decode_revert_reason(self.revert)

    @classmethod
    def from_json(cls, obj: Any, where: str = "results[?]") -> TxResult:
        if not isinstance(obj, dict):
            raise RelayResponseError(f"{where}: expected an object, got {_echo(obj)}")
        to = obj.get("toAddress")
        if to is not None and not isinstance(to, str):
            raise RelayResponseError(f"{where}.toAddress: expected a string, got {_echo(to)}")
        error = obj.get("error")
        value: bytes | None = None
        revert: bytes | None = None
        if error is not None and error != "":
            if not isinstance(error, str):
                raise RelayResponseError(f"{where}.error: expected a string, got {_echo(error)}")
            raw_revert = obj.get("revert")
            if isinstance(raw_revert, str):
                # Hex from most builders; the reference builder sends the bytes as a Go string.
                try:
                    revert = parse_hex_bytes(raw_revert, f"{where}.revert")
                except RelayResponseError:
                    revert = raw_revert.encode("utf-8", errors="surrogateescape")
            elif raw_revert is not None:
                raise RelayResponseError(f"{where}.revert: expected a string, got {_echo(raw_revert)}")
        else:
            error = None
            value = parse_hex_bytes(obj.get("value", "0x"), f"{where}.value")
        return cls(
            tx_hash=_str_field(obj, "txHash", where),
            gas_used=parse_int(obj.get("gasUsed"), f"{where}.gasUsed"),
            from_address=_str_field(obj, "fromAddress", where),
            to_address=to,
            coinbase_diff=parse_int(obj.get("coinbaseDiff"), f"{where}.coinbaseDiff"),
            eth_sent_to_coinbase=parse_int(obj.get("ethSentToCoinbase"), f"{where}.ethSentToCoinbase"),
            gas_fees=parse_int(obj.get("gasFees"), f"{where}.gasFees"),
            gas_price=parse_int(obj.get("gasPrice"), f"{where}.gasPrice"),
            value=value,
            error=error,
            revert=revert,
        )


@dataclass(frozen=True, slots=True)
class CallBundleResult:
    bundle_gas_price: int
    bundle_hash: str
    coinbase_diff: int
    eth_sent_to_coinbase: int
    gas_fees: int
    results: tuple[TxResult, ...]
    state_block_number: int
    total_gas_used: int

    @property
    def all_succeeded(self) -> bool:
        return all(r.success for r in self.results)

    @property
    def failed(self) -> tuple[TxResult, ...]:
        return tuple(r for r in self.results if not r.success)

    @classmethod
    def from_json(cls, obj: Any) -> CallBundleResult:
        if not isinstance(obj, dict):
            raise RelayResponseError(f"eth_callBundle: result is not an object: {_echo(obj)}")
        results = obj.get("results")
        if not isinstance(results, list):
            raise RelayResponseError(f"eth_callBundle: results is not a list: {_echo(results)}")
        return cls(
            bundle_gas_price=parse_int(obj.get("bundleGasPrice"), "bundleGasPrice"),
            bundle_hash=_str_field(obj, "bundleHash", "result"),
            coinbase_diff=parse_int(obj.get("coinbaseDiff"), "coinbaseDiff"),
            eth_sent_to_coinbase=parse_int(obj.get("ethSentToCoinbase"), "ethSentToCoinbase"),
            gas_fees=parse_int(obj.get("gasFees"), "gasFees"),
            results=tuple(TxResult.from_json(r, f"results[{i}]") for i, r in enumerate(results)),
            state_block_number=parse_int(obj.get("stateBlockNumber"), "stateBlockNumber"),
            total_gas_used=parse_int(obj.get("totalGasUsed"), "totalGasUsed"),
        )


def _bundle_hash_of(result: Any, method: str) -> str:
    if isinstance(result, dict) and isinstance(result.get("bundleHash"), str):
        return str(result["bundleHash"])
    raise RelayResponseError(f"{method}: result has no bundleHash: {_echo(result)}")


# -- transport ------------------------------------------------------------------------------------


def builder_label(url: str) -> str:
    """`host[:port]` of a builder URL: the metric label and display name (no path, query or user)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "invalid"
    host = parts.hostname or "invalid"
    return f"{host}:{port}" if port else host


def make_session(limit_per_host: int = 16) -> aiohttp.ClientSession:
    """A session tuned for builders: keep-alive past a 12 s slot, DNS cached, no cookies."""
    connector = aiohttp.TCPConnector(
        limit=0, limit_per_host=limit_per_host, keepalive_timeout=75, ttl_dns_cache=300
    )
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


def _signer_of(key: SignerKey) -> FlashbotsSigner:
    if isinstance(key, FlashbotsSigner):
        return key
    if isinstance(key, SecretStr):
        return FlashbotsSigner(key.get_secret_value())
    return FlashbotsSigner(key)


def _rejected(
    method: str, where: str, status: int, err: Any, *, code_default: int | None = None
) -> RelayRejected:
    if isinstance(err, dict):
        code = err.get("code")
        reason = _echo(str(err.get("message", "")))
        code_i = code if isinstance(code, int) and not isinstance(code, bool) else code_default
        return RelayRejected(
            f"{method} rejected by {where} (HTTP {status}, JSON-RPC {code_i}): {reason}",
            code=code_i,
            status=status,
            reason=reason,
        )
    reason = _echo(err if isinstance(err, str) else repr(err))
    return RelayRejected(
        f"{method} rejected by {where} (HTTP {status}): {reason}",
        code=code_default,
        status=status,
        reason=reason,
    )


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A serialized, signed JSON-RPC request: the same bytes and header can go to any builder."""

    method: str
    request_id: int
    body: bytes = field(repr=False)
    signature: str = field(repr=False)


class BundleClient:
    """One builder / relay. `async with BundleClient(url, key) as c:` or call `close()`.

    `timeout` is per HTTP attempt (seconds); `retries` is the number of attempts in all (>= 1).
    Pass a shared `session` to reuse one connection pool across clients (then it is not closed here).
    """

    def __init__(
        self,
        url: str,
        signer_key: SignerKey,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 2.0,
        retries: int = 2,
        backoff: float = 0.02,
        max_backoff: float = 0.25,
    ) -> None:
        self._url = url
        self._signer = _signer_of(signer_key)
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = max(1, retries)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._ids = itertools.count(1)
        self._session_factory: Callable[[], aiohttp.ClientSession] | None = None
        """Set by MultiBuilderClient: where to get the shared session from (not owned here)."""
        self.label = builder_label(url)
        self.display_url = redact_url(url)

    def __repr__(self) -> str:
        return f"BundleClient({self.display_url}, signer={self._signer.address})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("BundleClient is not picklable (it holds a signing key)")

    @property
    def signer_address(self) -> str:
        return self._signer.address

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if self._session_factory is not None:
                self._session = self._session_factory()
                self._owns_session = False
            else:
                self._session = make_session()
                self._owns_session = True
        return self._session

    # -- the wire -------------------------------------------------------------------------------

    def sign(self, method: str, params: Any, request_id: int | None = None) -> SignedRequest:
        rid = next(self._ids) if request_id is None else request_id
        body = orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        return SignedRequest(method, rid, body, self._signer.sign(body))

    async def _post_once(self, req: SignedRequest) -> Any:
        session = self._get_session()
        where = self.display_url
        headers = {"Content-Type": "application/json", HEADER: req.signature}
        try:
            async with session.post(self._url, data=req.body, headers=headers, timeout=self._timeout) as resp:
                status = resp.status
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RelayTransportError(f"{req.method}: {type(exc).__name__} talking to {where}") from None
        try:
            reply = _loads(raw) if raw else None
        except (orjson.JSONDecodeError, ValueError):
            reply = None
            if status == 200:
                raise RelayResponseError(
                    f"{req.method}: non-JSON reply from {where}: {_echo(raw[:120])}", status=status
                ) from None
        if status in _TRANSIENT_STATUS:
            detail = ""
            code: int | None = None
            if isinstance(reply, dict) and reply.get("error") is not None:
                rej = _rejected(req.method, where, status, reply["error"])
                detail, code = f": {rej.reason}", rej.code
            raise RelayTransportError(
                f"{req.method}: HTTP {status} from {where}{detail}", code=code, status=status
            )
        if isinstance(reply, dict) and reply.get("error") is not None:
            raise _rejected(req.method, where, status, reply["error"])
        if status != 200:
            snippet = _echo(raw[:120]) if raw else "empty body"
            raise RelayRejected(
                f"{req.method} rejected by {where} (HTTP {status}): {snippet}", status=status, reason=snippet
            )
        if not isinstance(reply, dict):
            raise RelayResponseError(f"{req.method}: reply from {where} is not a JSON object: {_echo(reply)}")
        if "result" not in reply:
            raise RelayResponseError(f"{req.method}: reply from {where} has neither result nor error")
        reply_id = reply.get("id")
        if reply_id is not None and reply_id != req.request_id and reply_id != str(req.request_id):
            raise RelayResponseError(
                f"{req.method}: reply from {where} has id {_echo(reply_id)}, expected {req.request_id}"
            )
        return reply["result"]

    async def _post_retrying(self, req: SignedRequest) -> Any:
        """First attempt directly (tenacity costs ~40 us per call); tenacity only once one failed."""
        try:
            return await self._post_once(req)
        except RelayTransportError as exc:
            if self._retries <= 1:
                raise
            log.debug("%s to %s: %s; retrying", req.method, self.label, exc)
        await asyncio.sleep(self._backoff)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retries - 1),
            wait=wait_exponential(multiplier=self._backoff * 2, max=self._max_backoff),
            retry=retry_if_exception_type(RelayTransportError),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                result = await self._post_once(req)
        return result

    async def send_signed(self, req: SignedRequest) -> Any:
        """POSTs a signed request (retrying transient failures); returns `result`, records metrics."""
        start = time.perf_counter()
        outcome = "error"
        try:
            result = await self._post_retrying(req)
            outcome = "ok"
            return result
        except RelayTransportError:
            outcome = "transport"
            raise
        except RelayRejected:
            outcome = "rejected"
            raise
        except RelayResponseError:
            outcome = "malformed"
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            BUILDER_REQUEST_SECONDS.labels(self.label, req.method).observe(time.perf_counter() - start)
            BUILDER_REQUESTS.labels(self.label, req.method, outcome).inc()

    async def request(self, method: str, params: Any) -> Any:
        return await self.send_signed(self.sign(method, params))

    # -- methods --------------------------------------------------------------------------------

    async def send_bundle(self, bundle: Bundle) -> str:
        """`eth_sendBundle`; returns the bundle hash (BuilderNet-style cancels may return none: "")."""
        result = await self.request("eth_sendBundle", [bundle.to_params()])
        if not bundle.txs and result is None:
            return ""
        return _bundle_hash_of(result, "eth_sendBundle")

    async def call_bundle(
        self,
        txs: Sequence[RawTx],
        block_number: int,
        *,
        state_block: int | str = "latest",
        timestamp: int | None = None,
        coinbase: str | None = None,
        timeout_ms: int | None = None,
        gas_limit: int | None = None,
        base_fee: int | None = None,
    ) -> CallBundleResult:
        """`eth_callBundle`: simulate `txs` on top of `state_block` as if in `block_number`."""
        params: dict[str, Any] = {
            "txs": [raw_tx_hex(t) for t in txs],
            "blockNumber": hex(block_number),
            "stateBlockNumber": hex(state_block) if isinstance(state_block, int) else state_block,
        }
        if timestamp is not None:
            params["timestamp"] = timestamp
        if coinbase is not None:
            params["coinbase"] = _address(coinbase, "coinbase")
        if timeout_ms is not None:
            params["timeout"] = timeout_ms
        if gas_limit is not None:
            params["gasLimit"] = gas_limit
        if base_fee is not None:
            params["baseFee"] = base_fee
        return CallBundleResult.from_json(await self.request("eth_callBundle", [params]))

    async def cancel_bundle(self, replacement_uuid: uuid.UUID | str) -> Any:
        """`eth_cancelBundle`; returns whatever the builder answers (often null)."""
        return await self.request("eth_cancelBundle", [{"replacementUuid": _uuid_str(replacement_uuid)}])

    async def send_mev_bundle(self, bundle: MevBundle) -> str:
        """`mev_sendBundle` (MEV-Share v0.1); returns the bundle hash."""
        return _bundle_hash_of(await self.request("mev_sendBundle", [bundle.to_json()]), "mev_sendBundle")

    async def send_private_transaction(
        self,
        tx: RawTx,
        *,
        max_block_number: int | None = None,
        preferences: Mapping[str, Any] | None = None,
    ) -> str:
        """`eth_sendPrivateTransaction`; returns the tx hash."""
        params: dict[str, Any] = {"tx": raw_tx_hex(tx)}
        if max_block_number is not None:
            params["maxBlockNumber"] = hex(max_block_number)
        if preferences is not None:
            params["preferences"] = dict(preferences)
        result = await self.request("eth_sendPrivateTransaction", [params])
        if not isinstance(result, str):
            raise RelayResponseError(f"eth_sendPrivateTransaction: result is not a tx hash: {_echo(result)}")
        return result


# -- fan-out --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuilderResult:
    """One builder's outcome of a fan-out. `latency` is seconds for this builder alone (retries
    included); `bundle_hash` is set for bundle methods that succeeded."""

    builder: str
    url: str
    ok: bool
    result: Any
    error: RelayError | None
    latency: float
    bundle_hash: str | None = None


class MultiBuilderClient:
    """Signs a request once and POSTs the same bytes to every builder in parallel.

    One failing or slow builder never affects another: each has its own timeout and retries, errors are
    returned per builder, and `stream()` yields each outcome as soon as it is known.
    """

    def __init__(
        self,
        urls: Sequence[str],
        signer_key: SignerKey,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 2.0,
        retries: int = 2,
        backoff: float = 0.02,
    ) -> None:
        if not urls:
            raise ValueError("MultiBuilderClient needs at least one builder URL")
        self._signer = _signer_of(signer_key)
        self._session = session
        self._owns_session = session is None
        self._ids = itertools.count(1)
        self.clients: tuple[BundleClient, ...] = tuple(
            BundleClient(u, self._signer, session=session, timeout=timeout, retries=retries, backoff=backoff)
            for u in urls
        )
        for c in self.clients:  # one shared pool: keep-alive connections to every builder
            c._session_factory = self._shared_session

    def __repr__(self) -> str:
        urls = ", ".join(c.display_url for c in self.clients)
        return f"MultiBuilderClient([{urls}], signer={self._signer.address})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("MultiBuilderClient is not picklable (it holds a signing key)")

    async def __aenter__(self) -> Self:
        self._shared_session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _shared_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = make_session()
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def sign(self, method: str, params: Any) -> SignedRequest:
        """Serializes and signs once; the result can be sent to every builder as is."""
        rid = next(self._ids)
        body = orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        return SignedRequest(method, rid, body, self._signer.sign(body))

    async def _one(self, client: BundleClient, req: SignedRequest) -> BuilderResult:
        start = time.perf_counter()
        try:
            result = await client.send_signed(req)
        except RelayError as exc:
            log.warning("%s to %s failed: %s", req.method, client.display_url, exc)
            return BuilderResult(
                client.label, client.display_url, False, None, exc, time.perf_counter() - start
            )
        except Exception as exc:  # a bug must not take the other builders down with it
            log.exception("%s to %s failed unexpectedly", req.method, client.display_url)
            err = RelayError(f"{req.method} to {client.display_url}: unexpected {type(exc).__name__}")
            return BuilderResult(
                client.label, client.display_url, False, None, err, time.perf_counter() - start
            )
        latency = time.perf_counter() - start
        bundle_hash: str | None = None
        if req.method in ("eth_sendBundle", "mev_sendBundle"):
            try:
                bundle_hash = _bundle_hash_of(result, req.method)
            except RelayResponseError as exc:
                if result is not None:  # a BuilderNet-style cancel may answer null
                    return BuilderResult(client.label, client.display_url, False, result, exc, latency)
        log.debug("%s to %s ok in %.1f ms", req.method, client.label, latency * 1000)
        return BuilderResult(client.label, client.display_url, True, result, None, latency, bundle_hash)

    async def send_signed(self, req: SignedRequest) -> list[BuilderResult]:
        """Sends `req` to every builder; results in the order of the URLs."""
        return list(await asyncio.gather(*(self._one(c, req) for c in self.clients)))

    async def stream(self, req: SignedRequest) -> AsyncIterator[BuilderResult]:
        """Yields each builder's result as soon as it is known (fastest first).

        Leaving the loop early cancels the requests still in flight; iterate to the end (or use
        `send_signed` in a task) when the slower builders should still receive the bundle.
        """
        tasks = [asyncio.create_task(self._one(c, req)) for c in self.clients]
        try:
            for fut in asyncio.as_completed(tasks):
                yield await fut
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def request(self, method: str, params: Any) -> list[BuilderResult]:
        return await self.send_signed(self.sign(method, params))

    async def send_bundle(self, bundle: Bundle) -> list[BuilderResult]:
        return await self.request("eth_sendBundle", [bundle.to_params()])

    async def send_bundle_for_blocks(
        self,
        txs: Sequence[RawTx],
        first_block: int,
        n_blocks: int = 1,
        replacement_uuid: uuid.UUID | str | None = None,
        **extras: Any,
    ) -> dict[int, list[BuilderResult]]:
        """One bundle per target block `first_block .. first_block + n_blocks - 1` (n_blocks 1 or 2),
        each signed once and sent to every builder, all in parallel. With a `replacement_uuid`, block n
        uses `block_replacement_uuid(replacement_uuid, n)`. `extras` are `Bundle.build` keywords."""
        if n_blocks not in (1, 2):
            raise ValueError("n_blocks must be 1 (N+1) or 2 (N+1 and N+2)")
        base = Bundle.build(txs, first_block, **extras)
        blocks = [first_block + i for i in range(n_blocks)]
        reqs = [
            self.sign(
                "eth_sendBundle",
                [
                    base.for_block(
                        n,
                        None if replacement_uuid is None else block_replacement_uuid(replacement_uuid, n),
                    ).to_params()
                ],
            )
            for n in blocks
        ]
        outcomes = await asyncio.gather(*(self.send_signed(r) for r in reqs))
        return dict(zip(blocks, outcomes, strict=True))

    async def cancel_bundle(self, replacement_uuid: uuid.UUID | str) -> list[BuilderResult]:
        return await self.request("eth_cancelBundle", [{"replacementUuid": _uuid_str(replacement_uuid)}])

    async def cancel_for_blocks(
        self, replacement_uuid: uuid.UUID | str, first_block: int, n_blocks: int = 1
    ) -> dict[int, list[BuilderResult]]:
        """Cancels what `send_bundle_for_blocks` sent for these blocks with this uuid."""
        blocks = [first_block + i for i in range(n_blocks)]
        outcomes = await asyncio.gather(
            *(self.cancel_bundle(block_replacement_uuid(replacement_uuid, n)) for n in blocks)
        )
        return dict(zip(blocks, outcomes, strict=True))

    async def send_mev_bundle(self, bundle: MevBundle) -> list[BuilderResult]:
        return await self.request("mev_sendBundle", [bundle.to_json()])


__all__ = [
    "BUILDER_REQUESTS",
    "BUILDER_REQUEST_SECONDS",
    "MAX_BUNDLE_BYTES",
    "MAX_BUNDLE_TXS",
    "BuilderResult",
    "Bundle",
    "BundleClient",
    "CallBundleResult",
    "MevBundle",
    "MevHash",
    "MevTx",
    "MultiBuilderClient",
    "RelayRejected",
    "RelayResponseError",
    "RelayTransportError",
    "SignedRequest",
    "TxResult",
    "block_replacement_uuid",
    "builder_label",
    "decode_revert_reason",
    "make_session",
    "parse_int",
    "raw_tx_hex",
]
