"""Logging: text and JSON formats, key=value fields, secret scrubbing (messages, fields, exceptions)."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import orjson
import pytest

from keeper.devnet.anvil import DEV_ACCOUNTS
from keeper.logs import clear_secrets, kv, register_secrets, setup_logging, stop_logging

KEY = DEV_ACCOUNTS[0][1]
API_URL = "https://eth.example.com/v2/my-api-key-123"
TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    stream = io.StringIO()
    yield stream, logging.getLogger("keeper.test")
    stop_logging()
    clear_secrets()


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_text_format_with_fields(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    setup_logging("text", "INFO", stream=stream, threaded=False)
    log.info("new block", extra=kv(number=12, hash=b"\x01\x02", note="two words", ok=True, none=None))
    log.debug("hidden")
    (line,) = lines(stream)
    assert re.fullmatch(
        TS + r' INFO keeper\.test new block number=12 hash=0x0102 note="two words" ok=true none=null', line
    ), line


def test_json_format(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    setup_logging("json", "DEBUG", stream=stream, threaded=False)
    log.debug("hello %s", "world", extra=kv(number=7, msg="clash", addr="0xabc"))
    log.warning("plain extra", extra={"block": 3})
    first, second = (orjson.loads(x) for x in lines(stream))
    assert re.fullmatch(TS, first["ts"])
    assert first["level"] == "DEBUG"
    assert first["logger"] == "keeper.test"
    assert first["msg"] == "hello world"
    assert first["number"] == 7
    assert first["field_msg"] == "clash"  # a field never overwrites the record's own keys
    assert second["block"] == 3


def test_json_exception_info(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    setup_logging("json", "INFO", stream=stream, threaded=False)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    (obj,) = (orjson.loads(x) for x in lines(stream))
    assert obj["level"] == "ERROR"
    assert "Traceback" in obj["exc"]
    assert "ValueError: boom" in obj["exc"]


def test_unknown_64_hex_is_scrubbed_everywhere(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    setup_logging("text", "INFO", stream=stream, threaded=False)
    bare = KEY[2:]
    log.info("key is %s", KEY, extra=kv(k=bare))
    try:
        raise RuntimeError(f"failed with {bare}")
    except RuntimeError:
        log.exception("oops")
    out = stream.getvalue()
    assert bare not in out
    assert "<redacted-hex32>" in out
    assert "RuntimeError: failed with <redacted-hex32>" in out


def test_hash_bytes_fields_stay_readable(capture: tuple[io.StringIO, logging.Logger]) -> None:
    """Block hashes are 32 bytes as well: typed bytes fields are shown, only registered secrets go."""
    stream, log = capture
    setup_logging("text", "INFO", stream=stream, threaded=False)
    block_hash = bytes(range(32))
    log.info("new block", extra=kv(hash=block_hash))
    assert "hash=0x" + block_hash.hex() in stream.getvalue()

    register_secrets(KEY, KEY[2:])
    log.info("oops", extra=kv(raw=bytes.fromhex(KEY[2:])))
    assert KEY[2:] not in stream.getvalue()


def test_registered_secrets_are_scrubbed(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    setup_logging("json", "INFO", stream=stream, threaded=False)
    register_secrets(API_URL, "/v2/my-api-key-123", "hunter2-password")
    log.info("connecting to %s", API_URL, extra=kv(url=API_URL, pw="hunter2-password"))
    try:
        raise ConnectionError(f"cannot connect to {API_URL}/extra with hunter2-password")
    except ConnectionError:
        log.error("failed", exc_info=True)
    log.info("stack", stack_info=True, extra=kv(path="/v2/my-api-key-123"))
    out = stream.getvalue()
    assert "my-api-key-123" not in out
    assert "hunter2" not in out
    assert out.count("<redacted>") >= 5
    assert all(isinstance(orjson.loads(x), dict) for x in lines(stream))


def test_threaded_writer_flushes_on_stop(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    setup_logging("text", "INFO", stream=stream)
    register_secrets(API_URL)
    for i in range(100):
        log.info("line", extra=kv(i=i, url=API_URL))
    stop_logging()
    out = lines(stream)
    assert len(out) == 100
    assert out[-1].endswith("i=99 url=<redacted>")


def test_setup_is_idempotent(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    setup_logging("text", "INFO", stream=stream, threaded=False)
    setup_logging("text", "INFO", stream=stream, threaded=False)
    log.info("once")
    assert len(lines(stream)) == 1


def test_bad_format_args_do_not_lose_the_line() -> None:
    from keeper.logs import RedactingFilter, TextFormatter

    record = logging.LogRecord("keeper.test", logging.INFO, __file__, 1, "value %d", ("nan",), None)
    assert RedactingFilter().filter(record)
    assert "value %d" in TextFormatter().format(record)
