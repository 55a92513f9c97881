"""Structured logging with secret scrubbing.

Usage: plain stdlib loggers; key=value fields go through `kv`:

    log = logging.getLogger("keeper.engine")
    log.info("new block", extra=kv(number=n, hash=block_hash, base_fee=fee))

`kv(**fields)` returns `{"fields": {...}}` for `extra=`; it avoids clashes with LogRecord attributes
(`extra={"msg": ...}` would raise). Other `extra=` keys are output as fields too.

Output, one record per line (exception text follows on the next lines in text mode):
- text: `2026-01-01T00:00:00.000Z INFO keeper.engine new block number=1 hash=0xab...`
- json: `{"ts": "...", "level": "INFO", "logger": "...", "msg": "...", "number": 1, ..., "exc": "..."}`

Scrubbing (`RedactingFilter`, installed on our handler so it sees every record of every logger):
- registered secrets (`register_secrets`, e.g. `Settings.secrets()`: keys, keystore password, RPC URLs
  with API keys in their paths) are replaced everywhere: message, fields, exception and stack text;
- any other 64-hex-digit string (what a private key looks like) is replaced in the message, string
  fields and exception text. Fields given as `bytes` are ours and typed (block and tx hashes are 32 bytes
  too), so they are shown in full as 0x-hex, but still checked against the registered secrets.

Records are formatted on the calling thread and written by a `QueueListener` thread, so a slow stderr
reader (a full pipe, journald under load) never blocks the event loop.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys
import time
from typing import IO, Any, Literal

import orjson

from keeper.chain.redact import redact_text

LogFormat = Literal["text", "json"]

_SECRETS: set[str] = set()
_secrets_sorted: tuple[str, ...] = ()
_listener: logging.handlers.QueueListener | None = None
_handler: logging.Handler | None = None

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "fields",
    "kv_fields",
}
_RESERVED_JSON = frozenset({"ts", "level", "logger", "msg", "exc", "stack"})
_QUIET = ("web3", "websockets", "aiohttp.access", "urllib3", "asyncio")


def kv(**fields: Any) -> dict[str, Any]:
    """`extra=` payload for key=value fields: `log.info("msg", extra=kv(a=1))`."""
    return {"fields": fields}


def register_secrets(*secrets: str) -> None:
    """Adds strings to scrub from every log record (very short strings are ignored)."""
    global _secrets_sorted
    _SECRETS.update(s for s in secrets if s and len(s) >= 4)
    _secrets_sorted = tuple(sorted(_SECRETS, key=len, reverse=True))


def clear_secrets() -> None:
    """For tests."""
    global _secrets_sorted
    _SECRETS.clear()
    _secrets_sorted = ()


def scrub(text: str) -> str:
    """Registered secrets and 64-hex strings replaced."""
    return redact_text(text, _secrets_sorted)


def _scrub_known(text: str) -> str:
    for secret in _secrets_sorted:
        text = text.replace(secret, "<redacted>")
    return text


def _render_value(value: Any) -> Any:
    """JSON-compatible, scrubbed field value."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return _scrub_known("0x" + bytes(value).hex())
    return scrub(value if isinstance(value, str) else str(value))


class RedactingFilter(logging.Filter):
    """Scrubs a record in place and collects its fields into `record.kv_fields`. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_keeper_scrubbed", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        record.msg = scrub(message)
        record.args = None
        fields: dict[str, Any] = {}
        raw = record.__dict__.get("fields")
        if isinstance(raw, dict):
            fields.update(raw)
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                fields[key] = value
        record.kv_fields = {str(k): _render_value(v) for k, v in fields.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        # exc_info stays for other handlers: every stdlib Formatter prefers an existing exc_text.
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        record._keeper_scrubbed = True
        return True


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _text_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return orjson.dumps(text).decode()
    return text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "kv_fields", {})
        line = f"{_timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        if fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in getattr(record, "kv_fields", {}).items():
            obj[f"field_{key}" if key in _RESERVED_JSON else key] = value
        if record.exc_text:
            obj["exc"] = record.exc_text
        if record.stack_info:
            obj["stack"] = record.stack_info
        return orjson.dumps(obj, default=str).decode()


def make_handler(fmt: LogFormat, stream: IO[str] | None = None) -> logging.Handler:
    """A synchronous stream handler with the redacting filter and the chosen formatter."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    return handler


class _PreformattedQueueHandler(logging.handlers.QueueHandler):
    """Scrubs and formats on the caller's thread; the listener thread only writes the finished line."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        line = self.format(record)
        out = logging.makeLogRecord({"msg": line, "levelno": record.levelno, "levelname": record.levelname})
        return out


def setup_logging(
    format: LogFormat = "text",
    level: str | int = "INFO",
    *,
    stream: IO[str] | None = None,
    threaded: bool = True,
) -> None:
    """Configures the root logger (idempotent: replaces what a previous call installed)."""
    global _listener, _handler
    stop_logging()
    root = logging.getLogger()
    formatter: logging.Formatter = JsonFormatter() if format == "json" else TextFormatter()
    if threaded:
        q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        handler: logging.Handler = _PreformattedQueueHandler(q)
        handler.addFilter(RedactingFilter())
        handler.setFormatter(formatter)
        writer = logging.StreamHandler(stream if stream is not None else sys.stderr)
        writer.setFormatter(logging.Formatter("%(message)s"))
        _listener = logging.handlers.QueueListener(q, writer)
        _listener.start()
    else:
        handler = make_handler(format, stream)
    _handler = handler
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def stop_logging() -> None:
    """Removes our handler and flushes the writer thread (also registered with atexit)."""
    global _listener, _handler
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler = None
    if _listener is not None:
        _listener.stop()
        _listener = None


atexit.register(stop_logging)
