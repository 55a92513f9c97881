"""Websocket JSON-RPC subscriptions (`eth_subscribe`) over aiohttp, with a supervised reconnecting form.

One subscription per connection, on purpose: the mempool firehose must never delay new heads behind it
(head-of-line blocking on a shared socket), and a dropped socket then concerns exactly one consumer.

Two layers:
- `WsClient`: one connection. `async with WsClient(url) as ws: async for n in ws.subscribe("newHeads")`.
  Raises `WsError` (an `RpcTransportError`) when the socket closes, errors or goes silent.
- `subscribe_forever(url, kind, ...)`: reconnects with jittered exponential backoff and resubscribes
  forever. It yields a `Subscribed` marker every time a subscription is (re)established, so the caller
  knows that notifications may have been missed and can backfill (the subscription is only a hint).

Liveness: aiohttp pings every `heartbeat` seconds and closes the socket when no pong arrives; on top of
that `idle_timeout` bounds the time between two notifications of the subscription (a no-head watchdog
for newHeads). Either way the socket counts as dead and the supervised form reconnects.

Malformed frames (non-JSON, binary garbage, unknown subscription ids, notifications without `result`)
are logged, counted and skipped; they never end a subscription. URLs are only ever logged redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Self

import aiohttp
import orjson
from prometheus_client import Counter

from keeper.chain.redact import redact_url
from keeper.core.metrics import REGISTRY
from keeper.errors import JsonRpcError, RpcResponseError, RpcTransportError

log = logging.getLogger("keeper.ws")

WS_RECONNECTS = Counter(
    "keeper_ws_reconnects_total", "Websocket reconnects after a drop", ["subscription"], registry=REGISTRY
)
WS_MALFORMED = Counter(
    "keeper_ws_malformed_total", "Malformed websocket frames skipped", ["subscription"], registry=REGISTRY
)

_MAX_MSG_SIZE = 64 * 1024 * 1024


class WsError(RpcTransportError):
    """The websocket closed, errored or timed out. Transient: reconnect."""


@dataclass(frozen=True, slots=True)
class Notification:
    """One `eth_subscription` payload. `received_at_ns` is `time.monotonic_ns()` when the frame was read."""

    result: Any
    received_at_ns: int


@dataclass(frozen=True, slots=True)
class Subscribed:
    """Yielded by `subscribe_forever` each time a subscription is established.

    `reconnect` is False for the first one. After a reconnect, notifications may have been missed.
    """

    reconnect: bool
    connects: int


class WsClient:
    """One websocket connection carrying (at most) one active subscription."""

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        heartbeat: float | None = 15.0,
        connect_timeout: float = 10.0,
        request_timeout: float = 10.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._url = url
        self._session = session
        self._owns_session = session is None
        self._heartbeat = heartbeat
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._headers = headers or {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._active = False
        self._kind = ""
        self.malformed = 0
        """Frames skipped because they could not be understood."""

    def __repr__(self) -> str:
        return f"WsClient({redact_url(self._url)})"

    @property
    def display_url(self) -> str:
        return redact_url(self._url)

    @property
    def closed(self) -> bool:
        return self._ws is None or self._ws.closed

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        try:
            self._ws = await asyncio.wait_for(
                self._session.ws_connect(
                    self._url,
                    heartbeat=self._heartbeat,
                    max_msg_size=_MAX_MSG_SIZE,
                    headers=self._headers,
                ),
                self._connect_timeout,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self._close_session()
            raise WsError(f"cannot connect to {self.display_url}: {type(exc).__name__}") from None

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close()
        await self._close_session()

    async def _close_session(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        if self._owns_session:
            self._session = None

    async def _receive(self, timeout: float | None) -> tuple[Any, int] | None:
        """Next parsed JSON frame and its receipt time; None for a skipped (malformed) frame."""
        ws = self._ws
        if ws is None or ws.closed:
            raise WsError(f"websocket to {self.display_url} is closed")
        try:
            msg = await ws.receive(timeout=timeout)
        except TimeoutError:
            raise WsError(f"no message from {self.display_url} for {timeout:.3g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise WsError(f"websocket to {self.display_url} failed: {type(exc).__name__}") from None
        received_at_ns = time.monotonic_ns()
        if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            try:
                return orjson.loads(msg.data), received_at_ns
            except orjson.JSONDecodeError:
                self._skip("non-JSON frame", msg.data)
                return None
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            raise WsError(f"websocket to {self.display_url} closed (code {ws.close_code})")
        if msg.type == aiohttp.WSMsgType.ERROR:
            raise WsError(f"websocket to {self.display_url} errored: {type(msg.data).__name__}")
        return None  # PING/PONG are handled by aiohttp (autoping); nothing else is expected

    def _skip(self, why: str, data: Any, label: str = "") -> None:
        self.malformed += 1
        WS_MALFORMED.labels(label).inc()
        if self.malformed > 10 and self.malformed % 1000:
            return  # logged the first ten, then every thousandth: no log floods
        log.warning(
            "skipping malformed websocket frame url=%s why=%s frame=%.120r skipped=%d",
            self.display_url,
            why,
            data,
            self.malformed,
        )

    async def _send(self, payload: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise WsError(f"websocket to {self.display_url} is closed")
        try:
            await ws.send_bytes(orjson.dumps(payload))
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            raise WsError(f"send to {self.display_url} failed: {type(exc).__name__}") from None

    async def _request(self, method: str, params: list[Any]) -> Any:
        """Sends a request and reads frames until its reply (the only reader of this socket)."""
        req_id = next(self._ids)
        await self._send({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._request_timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise WsError(f"{method}: no reply from {self.display_url} in {self._request_timeout}s")
            frame = await self._receive(remaining)
            if frame is None:
                continue
            obj = frame[0]
            if not isinstance(obj, dict) or obj.get("id") != req_id:
                continue  # a notification of an earlier subscription, or noise
            if obj.get("error") is not None:
                err = obj["error"]
                if isinstance(err, dict) and isinstance(err.get("code"), int):
                    raise JsonRpcError(err["code"], str(err.get("message", "")), err.get("data"), method)
                raise JsonRpcError(-32603, f"malformed error object: {str(err)[:200]}", method=method)
            if "result" not in obj:
                raise RpcResponseError(f"{method}: reply has neither result nor error")
            return obj["result"]

    async def start_subscription(self, kind: str, *params: Any) -> str:
        """`eth_subscribe(kind, *params)`; returns the subscription id."""
        if self._active:
            raise RuntimeError("one subscription per WsClient; open another connection")
        sub_id = await self._request("eth_subscribe", [kind, *params])
        if not isinstance(sub_id, str):
            raise RpcResponseError(f"eth_subscribe({kind}) returned a non-string id")
        self._active = True
        self._kind = kind
        log.info("subscribed kind=%s url=%s", kind, self.display_url)
        return sub_id

    async def notifications(
        self, sub_id: str, *, idle_timeout: float | None = None
    ) -> AsyncGenerator[Notification, None]:
        """Yields each notification of `sub_id` until the socket dies (raises WsError)."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            timeout = None if idle_timeout is None else max(0.0, last + idle_timeout - loop.time())
            try:
                frame = await self._receive(timeout)
            except WsError as exc:
                if idle_timeout is not None and loop.time() - last >= idle_timeout:
                    raise WsError(f"no {self._kind} notification for {idle_timeout}s: {exc}") from None
                raise
            if frame is None:
                continue
            obj, received_at_ns = frame
            result, why = _notification_result(obj, sub_id)
            if why:
                self._skip(why, obj, self._kind)
                continue
            last = loop.time()
            yield Notification(result, received_at_ns)

    async def subscribe(
        self, kind: str, *params: Any, idle_timeout: float | None = None
    ) -> AsyncGenerator[Notification, None]:
        """Subscribes and yields each notification until the socket dies.

        kind: "newHeads", "newPendingTransactions" (param True for full txs), "logs" (param: filter).
        idle_timeout: seconds allowed between two notifications before the socket is declared dead.
        """
        sub_id = await self.start_subscription(kind, *params)
        async for note in self.notifications(sub_id, idle_timeout=idle_timeout):
            yield note


def _notification_result(obj: Any, sub_id: str) -> tuple[Any, str]:
    """(result, "") for a notification of `sub_id`; (None, reason) for anything else."""
    if not isinstance(obj, dict):
        return None, "not an object"
    if obj.get("method") != "eth_subscription":
        return None, "not a subscription notification"
    params = obj.get("params")
    if not isinstance(params, dict):
        return None, "params is not an object"
    if params.get("subscription") != sub_id:
        return None, "unknown subscription id"
    if "result" not in params:
        return None, "notification without result"
    return params["result"], ""


async def subscribe_forever(
    url: str,
    kind: str,
    *params: Any,
    idle_timeout: float | None = None,
    heartbeat: float | None = 15.0,
    initial_backoff: float = 0.1,
    max_backoff: float = 10.0,
    session: aiohttp.ClientSession | None = None,
) -> AsyncGenerator[Notification | Subscribed, None]:
    """Reconnects and resubscribes after any transport failure, forever (until cancelled).

    Yields `Subscribed` after each successful `eth_subscribe` (reconnect=True after a drop), then the
    notifications. Backoff is jittered exponential, reset once a notification arrives. A JSON-RPC
    error answering `eth_subscribe` (unsupported kind, bad filter) is not transient and propagates.
    """
    connects = 0
    backoff = initial_backoff
    display = redact_url(url)
    while True:
        try:
            async with WsClient(url, session=session, heartbeat=heartbeat) as ws:
                sub_id = await ws.start_subscription(kind, *params)
                connects += 1
                yield Subscribed(reconnect=connects > 1, connects=connects)
                notes = ws.notifications(sub_id, idle_timeout=idle_timeout)
                async with contextlib.aclosing(notes):
                    async for note in notes:
                        # Reset only once data flowed: a node that accepts and drops at once keeps
                        # backing off instead of being hammered.
                        backoff = initial_backoff
                        yield note
        except WsError as exc:
            err = str(exc)
        WS_RECONNECTS.labels(kind).inc()
        delay = backoff * (0.5 + random.random())
        log.warning("websocket lost kind=%s url=%s error=%s retry_in=%.2fs", kind, display, err, delay)
        await asyncio.sleep(delay)
        backoff = min(backoff * 2, max_backoff)
