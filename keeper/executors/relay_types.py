"""Bundle RPC types: request bodies, replies, parsing helpers and errors (no I/O).

Spec: /work/shared/facts/flashbots.md. Everything here is pure: `Bundle`, `MevBundle` (request params),
`CallBundleResult` / `TxResult` (the `eth_callBundle` reply, amounts as ints), `SignedRequest` (one
serialized, signed body that can go to any builder), the parse helpers and the error classes:

- `RelayTransportError`: connection refused/reset, timeout, HTTP 408/425/429/5xx. Transient, retried.
- `RelayRejected`: the builder answered with an error, in either form seen in the wild: a bare
  `{"error": "..."}` with HTTP 400/403, or a JSON-RPC error object (`-32600` "signature is required",
  `-32025` invalid signature, `-32602` bad params, ...). `code` and `status` are set. Never retried.
- `RelayResponseError`: the reply is malformed (non-JSON, not an object, neither result nor error,
  wrong types in an `eth_callBundle` result). Never retried.
- `SimulationUnavailable`: `MultiBuilderClient.simulate` found no builder able to simulate.

Target blocks: a bundle is valid for exactly one block; each target block of an opportunity gets its own
replacement uuid, `uuid5(replacement_uuid, "block:<n>")` (`block_replacement_uuid`), because builders
key replacement on (signer, replacementUuid) regardless of the block.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import orjson
from pydantic import SecretStr

from keeper.chain.flashbots_auth import FlashbotsSigner
from keeper.errors import RelayError

MAX_BUNDLE_TXS: Final = 100
MAX_BUNDLE_BYTES: Final = 300_000
_TRANSIENT_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_ECHO: Final = 200  # characters of server text kept in an error message
_ERROR_SELECTOR: Final = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR: Final = bytes.fromhex("4e487b71")  # Panic(uint256)
TRANSIENT_STATUS: Final = _TRANSIENT_STATUS
"""HTTP statuses that mean "try again": transport errors, retried."""

SignerKey = FlashbotsSigner | SecretStr | str | bytes
RawTx = str | bytes

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


class SimulationUnavailable(RelayError):
    """No builder could simulate (`MultiBuilderClient.simulate`): each failed at transport level, with a
    5xx, a malformed reply, a timeout or a "method not found". `failures` holds (builder, error) pairs in
    the order tried."""

    def __init__(self, message: str, failures: tuple[tuple[str, RelayError], ...]) -> None:
        super().__init__(message)
        self.failures = failures


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


__all__ = [
    "MAX_BUNDLE_BYTES",
    "MAX_BUNDLE_TXS",
    "TRANSIENT_STATUS",
    "Bundle",
    "CallBundleResult",
    "MevBundle",
    "MevHash",
    "MevTx",
    "RawTx",
    "RelayRejected",
    "RelayResponseError",
    "RelayTransportError",
    "SignedRequest",
    "SignerKey",
    "SimulationUnavailable",
    "TxResult",
    "block_replacement_uuid",
    "decode_revert_reason",
    "parse_hex_bytes",
    "parse_int",
    "raw_tx_hex",
]
