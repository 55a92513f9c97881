"""One block builder / relay: signing, posting, retries within a deadline.

Spec: /work/shared/facts/flashbots.md.

Methods: `eth_sendBundle`, `eth_callBundle`, `eth_cancelBundle`, `mev_sendBundle` (MEV-Share v0.1) and
`eth_sendPrivateTransaction`, over aiohttp with one keep-alive session and orjson bodies.

Authentication: every request carries `X-Flashbots-Signature: <address>:0x<65-byte sig>`, an EIP-191
signature over `"0x" + hex(keccak256(body))` made with `keeper.chain.flashbots_auth` over the exact bytes
POSTed (`data=body`, never `json=`).

Deadline: `timeout` (seconds, default 2) bounds a whole request, retries and back-off included. Transient
failures (`RelayTransportError`: connection refused/reset, HTTP 408/425/429/5xx) are retried, `retries`
attempts in all, with a short exponential back-off, only while the deadline leaves room for the back-off;
when the deadline passes the request fails with a `RelayTransportError` ("no answer ... within N s").
Every method here is idempotent at the builder (same bundle hash / tx hash / replacementUuid), so a retry
is safe. Answers (`RelayRejected`) and malformed replies (`RelayResponseError`) are never retried.

Identity: `BundleClient.name` is the builder's identity (`keeper.executors.builder_identity`): the name
given with `name=url`, else the redacted URL. Metrics are labelled with it; errors show it (and the
redacted URL); the URL itself, which may carry an API key, never appears.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Self

import aiohttp
import orjson
from prometheus_client import Counter, Histogram

from keeper.chain.flashbots_auth import HEADER
from keeper.core.metrics import REGISTRY
from keeper.executors.builder_identity import BuilderEndpoint, parse_builder
from keeper.executors.relay_types import (
    _TRANSIENT_STATUS,
    Bundle,
    CallBundleResult,
    MevBundle,
    RawTx,
    RelayRejected,
    RelayResponseError,
    RelayTransportError,
    SignedRequest,
    SignerKey,
    _address,
    _bundle_hash_of,
    _echo,
    _loads,
    _rejected,
    _signer_of,
    _uuid_str,
    raw_tx_hex,
)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = 2.0
"""Seconds for one request to one builder, retries included."""

# -- metrics (labelled by builder identity: a name or a redacted URL, never a secret) -------------


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


def make_session(limit_per_host: int = 16) -> aiohttp.ClientSession:
    """A session tuned for builders: keep-alive past a 12 s slot, DNS cached, no cookies."""
    connector = aiohttp.TCPConnector(
        limit=0, limit_per_host=limit_per_host, keepalive_timeout=75, ttl_dns_cache=300
    )
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


class BundleClient:
    """One builder / relay. `async with BundleClient(url, key) as c:` or call `close()`.

    `url` may be `name=url` or a `BuilderEndpoint`; `name` (or the name in `url`) is the builder's
    identity, else the redacted URL is. `timeout` bounds a whole request in seconds, retries included;
    `retries` is the number of attempts in all (>= 1). Pass a shared `session` to reuse one connection
    pool across clients (then it is not closed here).
    """

    def __init__(
        self,
        url: str | BuilderEndpoint,
        signer_key: SignerKey,
        *,
        name: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 2,
        backoff: float = 0.02,
        max_backoff: float = 0.25,
    ) -> None:
        endpoint = parse_builder(url)
        if name is not None:
            endpoint = parse_builder(BuilderEndpoint(name, endpoint.url))
        if not timeout > 0:
            raise ValueError("timeout must be positive (seconds)")
        self.endpoint = endpoint
        self._url = endpoint.url
        self._signer = _signer_of(signer_key)
        self._session = session
        self._owns_session = session is None
        self._timeout_s = float(timeout)
        # per attempt: never before the request's own deadline, which reports the timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout + 1.0)
        self._retries = max(1, retries)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._ids = itertools.count(1)
        self._session_factory: Callable[[], aiohttp.ClientSession] | None = None
        """Set by MultiBuilderClient: where to get the shared session from (not owned here)."""
        self.display_url = endpoint.display_url
        self._where = self.display_url if not endpoint.named else f"{endpoint.name} ({self.display_url})"

    @property
    def name(self) -> str:
        """The builder's identity: the name given (`name=url`), else the redacted URL."""
        return self.endpoint.name

    @property
    def label(self) -> str:
        """The metric label: the identity (kept for callers of the former host-only label)."""
        return self.endpoint.name

    @property
    def timeout(self) -> float:
        """Seconds for one request, retries included."""
        return self._timeout_s

    def __repr__(self) -> str:
        return f"BundleClient({self._where}, signer={self._signer.address})"

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
        where = self._where
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
        """Attempts until an answer, a non-transient failure, `retries` attempts, or the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        last: RelayTransportError | None = None
        delay = self._backoff
        try:
            async with asyncio.timeout_at(deadline):
                for attempt in range(1, self._retries + 1):
                    try:
                        return await self._post_once(req)
                    except RelayTransportError as exc:
                        last = exc
                        if attempt == self._retries or loop.time() + delay >= deadline:
                            raise
                        log.debug("%s to %s: %s; retrying", req.method, self.name, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_backoff)
        except TimeoutError:
            detail = f"; earlier attempt: {last}" if last is not None else ""
            raise RelayTransportError(
                f"{req.method}: no answer from {self._where} within {self._timeout_s:g} s "
                f"(TimeoutError){detail}",
                status=None if last is None else last.status,
            ) from None
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

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
            BUILDER_REQUEST_SECONDS.labels(self.name, req.method).observe(time.perf_counter() - start)
            BUILDER_REQUESTS.labels(self.name, req.method, outcome).inc()

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


__all__ = ["BUILDER_REQUESTS", "BUILDER_REQUEST_SECONDS", "DEFAULT_TIMEOUT", "BundleClient", "make_session"]
