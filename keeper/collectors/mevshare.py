"""MEV-Share hints: a client of the MEV-Share Server-Sent Events stream that yields `MevShareHint`s.

Spec: the MEV-Share event stream (/work/shared/facts/flashbots.md; Flashbots "mev-share" docs): an HTTP
GET to the stream URL (mainnet `https://mev-share.flashbots.net`, the devnet relay's `stream_url`)
answered with `text/event-stream`; `:ping` comments keep it alive; each `data:` event is a hint
(`keeper.chain.mevshare.parse_hint` documents the fields).

Supervision, as `keeper.chain.ws.subscribe_forever` does for websockets: the stream is reconnected
forever with jittered exponential backoff (reset once the connection has delivered a hint, or stayed up
for `max_backoff` seconds); an idle watchdog declares the connection dead when nothing at all (not even
a ping) arrived for `idle_timeout` seconds. HTTP errors, refused connections, EOF and timeouts all lead
to a reconnect; hints sent while disconnected are missed (the relay's history endpoint has them).

Bad input is logged (rate-limited), counted (`malformed`, and `keeper_mevshare_hints_malformed_total`
by reason: `json`, `hint`, `overflow`) and skipped: garbage, truncated lines, non-UTF-8 bytes, hints
with missing or ill-typed fields, lines above `max_line` bytes. Nothing a server sends ends `events()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncGenerator, Callable
from typing import Final

import aiohttp
from prometheus_client import Counter

from keeper.chain.mevshare import MAX_LINE_BYTES, MevShareHint, SseParser, parse_hint_data
from keeper.chain.redact import redact_url
from keeper.core.metrics import REGISTRY
from keeper.errors import DecodeError

log = logging.getLogger("keeper.collectors.mevshare")

MEVSHARE_HINTS = Counter(
    "keeper_mevshare_hints_total", "MEV-Share hints received and decoded", ["collector"], registry=REGISTRY
)
MEVSHARE_MALFORMED = Counter(
    "keeper_mevshare_hints_malformed_total",
    "MEV-Share stream events skipped as malformed",
    ["collector", "reason"],
    registry=REGISTRY,
)
MEVSHARE_RECONNECTS = Counter(
    "keeper_mevshare_reconnects_total",
    "MEV-Share stream reconnects after a drop, an error or an idle timeout",
    ["collector"],
    registry=REGISTRY,
)

HintFilter = Callable[[MevShareHint], bool]
DEFAULT_IDLE_TIMEOUT: Final = 30.0


class StreamLost(Exception):
    """The connection failed, ended or went silent (internal: always followed by a reconnect)."""


class MevShareCollector:
    """`async for hint in MevShareCollector(url).events():` decoded hints, forever (until cancelled).

    `filter`: keep only the hints it returns True for (counted in `filtered` otherwise).
    `session`: a shared aiohttp session (not closed here); by default one is owned per `events()` run.
    Counters for tests and logs: `hints`, `malformed`, `filtered`, `connects`, `reconnects`, `pings`.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "mevshare",
        filter: HintFilter | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        connect_timeout: float = 10.0,
        initial_backoff: float = 0.1,
        max_backoff: float = 10.0,
        max_line: int = MAX_LINE_BYTES,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if idle_timeout <= 0 or connect_timeout <= 0 or initial_backoff <= 0 or max_backoff < initial_backoff:
            raise ValueError("timeouts and backoffs must be positive, max_backoff >= initial_backoff")
        self.name = name
        self.url = url
        self.filter = filter
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_line = max_line
        self._session = session
        self.hints = 0
        self.malformed = 0
        self.filtered = 0
        self.connects = 0
        self.reconnects = 0
        self.pings = 0
        self.last_error = ""

    def __repr__(self) -> str:
        return f"MevShareCollector({self.name}, {redact_url(self.url)})"

    async def events(self) -> AsyncGenerator[MevShareHint, None]:
        owned: aiohttp.ClientSession | None = None
        session = self._session
        if session is None:
            owned = session = aiohttp.ClientSession()
        backoff = self.initial_backoff
        loop = asyncio.get_running_loop()
        try:
            while True:
                up_since = loop.time()
                stream = self._connection(session)
                try:
                    async with contextlib.aclosing(stream):
                        async for hint in stream:
                            backoff = self.initial_backoff
                            yield hint
                    err = "stream ended"
                except StreamLost as exc:
                    err = str(exc)
                if loop.time() - up_since >= self.max_backoff:
                    backoff = self.initial_backoff
                self.reconnects += 1
                self.last_error = err
                MEVSHARE_RECONNECTS.labels(self.name).inc()
                delay = backoff * (0.5 + random.random())
                log.warning(
                    "mev-share stream lost collector=%s url=%s error=%s retry_in=%.2fs",
                    self.name,
                    redact_url(self.url),
                    err,
                    delay,
                )
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self.max_backoff)
        finally:
            if owned is not None:
                await owned.close()

    async def _connection(self, session: aiohttp.ClientSession) -> AsyncGenerator[MevShareHint, None]:
        """One connection: yields its hints; raises StreamLost when it fails, ends or goes silent."""
        display = redact_url(self.url)
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.connect_timeout, sock_connect=self.connect_timeout
        )
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        try:
            async with session.get(self.url, headers=headers, timeout=timeout) as resp:
                if resp.status != 200:
                    raise StreamLost(f"HTTP {resp.status} from {display}")
                self.connects += 1
                log.info("mev-share stream connected collector=%s url=%s", self.name, display)
                parser = SseParser(self.max_line)
                while True:
                    try:
                        chunk = await asyncio.wait_for(resp.content.readany(), self.idle_timeout)
                    except TimeoutError:
                        raise StreamLost(f"nothing (not even a ping) for {self.idle_timeout:g}s") from None
                    if not chunk:
                        raise StreamLost("closed by the server")
                    received_at_ns = time.monotonic_ns()
                    comments, overflows = parser.comments, parser.overflows
                    events = parser.feed(chunk)
                    self.pings += parser.comments - comments
                    for _ in range(parser.overflows - overflows):
                        self._skip("overflow", f"line longer than {self.max_line} bytes")
                    for ev in events:
                        try:
                            hint = parse_hint_data(ev.data, received_at_ns)
                        except DecodeError as exc:
                            self._skip("json" if "not JSON" in str(exc) else "hint", str(exc))
                            continue
                        self.hints += 1
                        MEVSHARE_HINTS.labels(self.name).inc()
                        if self.filter is not None and not self.filter(hint):
                            self.filtered += 1
                            continue
                        yield hint
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise StreamLost(f"{type(exc).__name__} on {display}") from None

    def _skip(self, reason: str, detail: str) -> None:
        self.malformed += 1
        MEVSHARE_MALFORMED.labels(self.name, reason).inc()
        if self.malformed <= 10 or self.malformed % 1000 == 0:  # no log floods
            log.warning(
                "skipping malformed mev-share event collector=%s reason=%s error=%.200s count=%d",
                self.name,
                reason,
                detail,
                self.malformed,
            )


__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "MEVSHARE_HINTS",
    "MEVSHARE_MALFORMED",
    "MEVSHARE_RECONNECTS",
    "HintFilter",
    "MevShareCollector",
]
