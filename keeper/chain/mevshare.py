"""MEV-Share hints: the Server-Sent Events wire format, hint decoding, oracle updates seen in hints.

Spec: the MEV-Share event stream as described in /work/shared/facts/flashbots.md (Flashbots
"mev-share" docs; the stream at `mev-share.flashbots.net`): an HTTP GET answered with Server-Sent Events
(WHATWG HTML "server-sent events": lines ended by LF, CRLF or CR; `data:` fields joined by LF; a blank line
ends an event; lines starting with `:` are comments, the stream's `:ping` keep-alives). Each event's data
is one JSON object:

    {"hash": "0x..", "logs": [{"address", "topics", "data"}] | null,
     "txs": [{"to", "functionSelector", "callData"}] | null, "mevGasPrice"?: "0x..", "gasUsed"?: "0x.."}

which fields are present depends on the sender's hints (`calldata`, `contract_address`,
`function_selector`, `logs`, `default_logs`, `hash`, `tx_hash`); a bundle's event has several txs (with
`hash` each when it shares `tx_hash`).

Pure code, no I/O, no clock: `SseParser` (incremental, bounded), `parse_hint` (raises `DecodeError` and
nothing else on any input), and `OracleHintMatcher` / `oracle_update_from_hint`, which recognise a
Chainlink OCR2 `transmit` (an SVR oracle update sent privately) in a hint and decode its report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from keeper.chain.ocr2 import TRANSMIT_SELECTOR, TransmitReport, decode_transmit
from keeper.errors import DecodeError

MAX_LINE_BYTES: Final = 1 << 20
"""A longer SSE line is discarded (counted in `SseParser.overflows`): a hint carries at most a few
transactions' calldata."""
MAX_HINT_TXS: Final = 100
MAX_HINT_LOGS: Final = 1_000
MAX_LOG_TOPICS: Final = 4

_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_SELECTOR = re.compile(r"0x[0-9a-fA-F]{8}")
_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")
_EOL = re.compile(rb"\r\n|\r|\n")


# -- Server-Sent Events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event: `data` is its `data:` lines joined by LF."""

    data: str
    event: str = "message"
    id: str | None = None


class SseParser:
    """Incremental Server-Sent Events parser: `feed(chunk)` returns the events completed by it.

    Follows the WHATWG event-stream interpretation (fields `data`, `event`, `id`; `retry` and unknown
    fields ignored; one leading space of a value stripped; comments counted in `comments`). Bytes that are
    not UTF-8 are replaced (U+FFFD), as the spec says; the JSON parse of such data then fails. A line
    longer than `max_line` is dropped up to its end and counted in `overflows`, and the event it belonged
    to is dropped too: memory stays bounded whatever the server sends.
    """

    __slots__ = ("_buf", "_cr", "_data", "_discarding", "_event", "_id", "comments", "max_line", "overflows")

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self.max_line = max_line
        self.comments = 0
        self.overflows = 0
        self._buf = bytearray()
        self._cr = False  # the previous chunk ended with CR: a leading LF belongs to it
        self._discarding = False
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None

    def reset(self) -> None:
        """Forgets a partial event (a new connection starts clean)."""
        self._buf.clear()
        self._cr = False
        self._discarding = False
        self._data = []
        self._event = ""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        out: list[SseEvent] = []
        start = 0
        if self._cr and chunk[:1] == b"\n":
            start = 1  # the CR that ended the previous chunk was a CRLF
        self._cr = False
        for m in _EOL.finditer(chunk, start):
            self._take_line(chunk[start : m.start()], out)
            start = m.end()
            if start == len(chunk) and m.group() == b"\r":
                self._cr = True
        if start < len(chunk) and not self._discarding:
            self._buf += chunk[start:]
            if len(self._buf) > self.max_line:
                self._overflow()
        return out

    def _overflow(self) -> None:
        self.overflows += 1
        self._buf.clear()
        self._discarding = True
        self._data = []
        self._event = ""

    def _take_line(self, tail: bytes, out: list[SseEvent]) -> None:
        if self._discarding:
            self._discarding = False
            self._buf.clear()
            self._data = []
            return
        if self._buf:
            self._buf += tail
            raw = bytes(self._buf)
            self._buf.clear()
        else:
            raw = tail
        if len(raw) > self.max_line:
            self.overflows += 1
            self._data = []
            self._event = ""
            return
        line = raw.decode("utf-8", errors="replace")
        if not line:
            if self._data:
                out.append(SseEvent("\n".join(self._data), self._event or "message", self._id))
            self._data = []
            self._event = ""
            return
        if line[0] == ":":
            self.comments += 1
            return
        field, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._id = value


# -- hints -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HintLog:
    address: str
    """Lowercase 0x-hex."""
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class HintTx:
    """One transaction of a hint; each field is None when the sender did not share it."""

    to: str | None
    """Lowercase 0x-hex (`contract_address` hint)."""
    selector: bytes | None
    """4 bytes (`function_selector` hint; also taken from `callData` when only that is shared)."""
    calldata: bytes | None
    """Full input (`calldata` hint)."""
    hash: bytes | None = None
    """The tx hash (`tx_hash` hint, bundles)."""


@dataclass(frozen=True, slots=True)
class MevShareHint:
    """One MEV-Share event: a private transaction or bundle a searcher may back-run by `hash`.

    `to`, `selector` and `calldata` are those of the first transaction (a single private tx has one).
    """

    hash: bytes
    """What a backrun names in `mev_sendBundle` body `[{hash}, ...]`: the tx hash, or a bundle's hash."""
    txs: tuple[HintTx, ...] = ()
    logs: tuple[HintLog, ...] = ()
    mev_gas_price: int | None = None
    gas_used: int | None = None
    received_at_ns: int = 0
    """Monotonic clock (ns) when the event was read off the stream; for latency metrics only."""

    @property
    def to(self) -> str | None:
        return self.txs[0].to if self.txs else None

    @property
    def selector(self) -> bytes | None:
        return self.txs[0].selector if self.txs else None

    @property
    def calldata(self) -> bytes | None:
        return self.txs[0].calldata if self.txs else None

    @property
    def hash_hex(self) -> str:
        return "0x" + self.hash.hex()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _hex_bytes(value: Any, pattern: re.Pattern[str], what: str) -> bytes:
    if isinstance(value, str) and pattern.fullmatch(value):
        return bytes.fromhex(value[2:])
    raise DecodeError(f"{what} is not {pattern.pattern}: {_short(value)}")


def _address(value: Any, what: str) -> str:
    if isinstance(value, str) and _ADDRESS.fullmatch(value):
        return value.lower()
    raise DecodeError(f"{what} is not an address: {_short(value)}")


def _opt_quantity(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str) and _QUANTITY.fullmatch(value):
        return int(value, 16)
    raise DecodeError(f"hint field {key!r} is not a hex quantity: {_short(value)}")


def _parse_log(obj: Any, i: int) -> HintLog:
    if not isinstance(obj, dict):
        raise DecodeError(f"logs[{i}] is not an object: {_short(obj)}")
    address = _address(obj.get("address"), f"logs[{i}].address")
    topics = obj.get("topics")
    if topics is None:
        topics = []
    if not isinstance(topics, list) or len(topics) > MAX_LOG_TOPICS:
        raise DecodeError(f"logs[{i}].topics is not a list of at most 4 hashes: {_short(topics)}")
    data = obj.get("data")
    return HintLog(
        address=address,
        topics=tuple(_hex_bytes(t, _HASH, f"logs[{i}].topics[{j}]") for j, t in enumerate(topics)),
        data=b"" if data is None else _hex_bytes(data, _DATA, f"logs[{i}].data"),
    )


def _parse_tx(obj: Any, i: int) -> HintTx:
    if not isinstance(obj, dict):
        raise DecodeError(f"txs[{i}] is not an object: {_short(obj)}")
    to = obj.get("to")
    sel = obj.get("functionSelector")
    data = obj.get("callData")
    h = obj.get("hash")
    calldata = None if data is None else _hex_bytes(data, _DATA, f"txs[{i}].callData")
    selector = None if sel is None else _hex_bytes(sel, _SELECTOR, f"txs[{i}].functionSelector")
    if calldata is not None and len(calldata) >= 4:
        if selector is not None and selector != calldata[:4]:
            raise DecodeError(f"txs[{i}]: functionSelector does not match callData")
        selector = calldata[:4]
    return HintTx(
        to=None if to is None else _address(to, f"txs[{i}].to"),
        selector=selector,
        calldata=calldata,
        hash=None if h is None else _hex_bytes(h, _HASH, f"txs[{i}].hash"),
    )


def parse_hint(obj: Any, received_at_ns: int = 0) -> MevShareHint:
    """A decoded event object -> MevShareHint. Raises DecodeError (only) on any malformed input:
    a missing or bad `hash`, wrong types, too many txs/logs/topics, a selector contradicting the calldata.
    Unknown fields are ignored (the stream may grow)."""
    if not isinstance(obj, dict):
        raise DecodeError(f"hint is not an object: {_short(obj)}")
    h = _hex_bytes(obj.get("hash"), _HASH, "hint hash")
    txs_obj = obj.get("txs")
    logs_obj = obj.get("logs")
    if txs_obj is None:
        txs_obj = []
    if logs_obj is None:
        logs_obj = []
    if not isinstance(txs_obj, list) or len(txs_obj) > MAX_HINT_TXS:
        raise DecodeError(f"hint txs is not a list of at most {MAX_HINT_TXS}: {_short(txs_obj)}")
    if not isinstance(logs_obj, list) or len(logs_obj) > MAX_HINT_LOGS:
        raise DecodeError(f"hint logs is not a list of at most {MAX_HINT_LOGS}: {_short(logs_obj)}")
    return MevShareHint(
        hash=h,
        txs=tuple(_parse_tx(t, i) for i, t in enumerate(txs_obj)),
        logs=tuple(_parse_log(lg, i) for i, lg in enumerate(logs_obj)),
        mev_gas_price=_opt_quantity(obj, "mevGasPrice"),
        gas_used=_opt_quantity(obj, "gasUsed"),
        received_at_ns=received_at_ns,
    )


def parse_hint_data(data: str | bytes, received_at_ns: int = 0) -> MevShareHint:
    """An SSE event's data (JSON text) -> MevShareHint; DecodeError (only) if it is not a valid hint."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"hint is not JSON: {exc}") from None
    return parse_hint(obj, received_at_ns)


# -- oracle updates in hints -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HintedOracleUpdate:
    """A `transmit` to a tracked aggregator, read from a hint's full calldata."""

    hint_hash: bytes
    """Back-run it with `mev_sendBundle` body `[{hash: hint_hash}, {tx: ...}]`."""
    aggregator: str
    """Lowercase 0x-hex."""
    tx_index: int
    """Index of the transaction in the hint (0 for a single private tx)."""
    report: TransmitReport

    @property
    def answer(self) -> int:
        """The feed's next answer: the report's median observation."""
        return self.report.median


class OracleHintMatcher:
    """Recognises oracle updates of the aggregators we track in MEV-Share hints.

    `match(hint)`: the decoded updates (hints that share `to` and the full calldata of a `transmit`);
    `mentions(hint)`: True for a hint that looks like an update of ours but cannot be priced (a `to` of
    ours with the transmit selector or no selector, but no calldata), so a strategy can count them.
    A transmit whose calldata does not decode is skipped (counted in `undecodable`), never raised.
    """

    __slots__ = ("aggregators", "selector", "undecodable")

    def __init__(self, aggregators: Iterable[str], selector: bytes = TRANSMIT_SELECTOR) -> None:
        self.aggregators = frozenset(a.lower() for a in aggregators)
        self.selector = selector
        self.undecodable = 0

    def match(self, hint: MevShareHint) -> tuple[HintedOracleUpdate, ...]:
        out: list[HintedOracleUpdate] = []
        for i, tx in enumerate(hint.txs):
            if tx.to is None or tx.to not in self.aggregators or tx.calldata is None:
                continue
            if tx.calldata[:4] != self.selector:
                continue
            try:
                report = decode_transmit(self.selector + tx.calldata[4:])
            except DecodeError:
                self.undecodable += 1
                continue
            out.append(HintedOracleUpdate(hint.hash, tx.to, i, report))
        return tuple(out)

    def mentions(self, hint: MevShareHint) -> bool:
        return any(
            tx.to is not None
            and tx.to in self.aggregators
            and tx.calldata is None
            and tx.selector in (None, self.selector)
            for tx in hint.txs
        )


def oracle_update_from_hint(
    hint: MevShareHint, aggregators: Iterable[str], selector: bytes = TRANSMIT_SELECTOR
) -> HintedOracleUpdate | None:
    """The first oracle update (decoded `transmit` report, `.answer` = median) of a tracked aggregator
    in `hint`, or None when the hint carries none with its full calldata. For many hints, build one
    `OracleHintMatcher` instead."""
    found = OracleHintMatcher(aggregators, selector).match(hint)
    return found[0] if found else None


__all__ = [
    "MAX_HINT_LOGS",
    "MAX_HINT_TXS",
    "MAX_LINE_BYTES",
    "HintLog",
    "HintTx",
    "HintedOracleUpdate",
    "MevShareHint",
    "OracleHintMatcher",
    "SseEvent",
    "SseParser",
    "oracle_update_from_hint",
    "parse_hint",
    "parse_hint_data",
]
