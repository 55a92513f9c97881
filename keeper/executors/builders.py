"""Several block builders at once: fan-out of one signed request, and simulation with fallback.

Fan-out: a request is serialized and signed once (`MultiBuilderClient.sign`), and the same bytes and
header go to every builder, each in its own task, each bounded by its own deadline (`timeout`, or a
per-builder value in `timeouts`; retries included, see `keeper.executors.builder_client`). A builder
that hangs or is down never delays the others: `stream()` / `stream_bundle_for_blocks()` yield each
builder's `BuilderResult` as soon as that builder answered (or failed), so a caller can record the fast
ones while a slow one is still pending; `send_signed()` / `send_bundle_for_blocks()` wait for all of them,
which takes at most the largest per-builder deadline. Every request task is owned by the client:
`close()` cancels the ones still in flight and waits for them (their results, if someone is still
iterating, say "cancelled").

Target blocks (`send_bundle_for_blocks`): one bundle per target block, N+1 by default, N+1 and N+2 with
`n_blocks=2`; each target block gets its own replacement uuid derived from the opportunity's
(`block_replacement_uuid`), so the N+2 bundle never replaces the N+1 one; `cancel_for_blocks` cancels them.

Simulation (`simulate`): `eth_callBundle` goes to one builder. Builders are tried in the preferred order
(`simulation_order`, default the list order; builders not named there come after, in list order); a
builder whose simulation failed in the last `cooldown` seconds is tried after the others. The next one is
tried when a builder fails at transport level (connection, timeout, HTTP 408/425/429/5xx), answers
something that is not a JSON-RPC reply, or does not offer the method (JSON-RPC -32601, HTTP 404/405/501).
A simulation that ran is a result, whatever it says (a reverted tx is in `CallBundleResult.results`); a
builder's refusal of the bundle itself (e.g. "nonce too low") is raised as `RelayRejected`. When every
builder failed, `SimulationUnavailable` (a `RelayError`) lists why.

Logging: failed attempts (simulations and fan-out sends alike) are logged at WARNING, at most one line per
builder and method per `warn_interval` seconds (default 30), the next line saying how many were suppressed:
a dead builder costs one line per interval, not one per block.

Identity: each builder is known by its name (`name=url`) or its redacted URL
(`keeper.executors.builder_identity`); `BuilderResult.name` / `SimulationOutcome.builder` carry it, and it
is what the ledger records. The signing key and the URLs' secrets never appear in repr, logs or errors.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Final, Self, TypeVar

import aiohttp
import orjson

from keeper.errors import RelayError
from keeper.executors.builder_client import DEFAULT_TIMEOUT, BundleClient, make_session
from keeper.executors.builder_identity import BuilderEndpoint, parse_builders
from keeper.executors.relay_types import (
    Bundle,
    CallBundleResult,
    MevBundle,
    RawTx,
    RelayRejected,
    RelayResponseError,
    RelayTransportError,
    SignedRequest,
    SignerKey,
    SimulationUnavailable,
    _bundle_hash_of,
    _signer_of,
    _uuid_str,
    block_replacement_uuid,
)

log = logging.getLogger(__name__)

K = TypeVar("K")

DEFAULT_WARN_INTERVAL: Final = 30.0
_NO_METHOD_STATUS: Final = frozenset({404, 405, 501})
_METHOD_NOT_FOUND: Final = -32601


@dataclass(frozen=True, slots=True)
class BuilderResult:
    """One builder's outcome of a fan-out. `name` is the builder's identity (what the ledger records);
    `url` its redacted URL. `latency` is seconds for this builder alone (retries included);
    `bundle_hash` is set for bundle methods that succeeded."""

    name: str
    url: str
    ok: bool
    result: Any
    error: RelayError | None
    latency: float
    bundle_hash: str | None = None

    @property
    def builder(self) -> str:
        """The identity (former name of `name`)."""
        return self.name


@dataclass(frozen=True, slots=True)
class SimulationOutcome:
    """`eth_callBundle` at the first builder able to run it. `builder` is that builder's identity;
    `latency` seconds at that builder; `failures` the (builder, error) pairs tried before, in order."""

    builder: str
    result: CallBundleResult
    latency: float
    failures: tuple[tuple[str, RelayError], ...] = ()


class RateLimitedWarnings:
    """At most one WARNING per key per `interval` seconds; the next line says how many were suppressed."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = DEFAULT_WARN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self.interval = interval
        self._clock = clock
        self._next_at: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def suppressed(self, key: str) -> int:
        return self._suppressed.get(key, 0)

    def warning(self, key: str, msg: str, *args: object) -> bool:
        """Logs `msg % args` (plus the suppressed count) unless `key` logged within `interval`."""
        now = self._clock()
        if now < self._next_at.get(key, float("-inf")):
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        count = self._suppressed.pop(key, 0)
        suffix = f" ({count} similar suppressed in the last {self.interval:g} s)" if count else ""
        self._log.warning(msg + "%s", *args, suffix)
        self._next_at[key] = now + self.interval
        return True


def _cannot_simulate(exc: RelayError) -> bool:
    """True when trying another builder may help (the bundle itself was not judged)."""
    if isinstance(exc, RelayTransportError | RelayResponseError):
        return True
    if isinstance(exc, RelayRejected):
        return exc.code == _METHOD_NOT_FOUND or exc.status in _NO_METHOD_STATUS
    return False


class MultiBuilderClient:
    """Signs a request once and POSTs the same bytes to every builder, each independently.

    `builders`: URLs, `name=url` items or `BuilderEndpoint`s (identities must be unique). `timeout`:
    seconds per request per builder, retries included; `timeouts` overrides it per identity.
    `simulation_order`: identities to try first for `simulate`. See the module docstring.
    """

    def __init__(
        self,
        builders: Sequence[str | BuilderEndpoint],
        signer_key: SignerKey,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        timeouts: Mapping[str, float] | None = None,
        retries: int = 2,
        backoff: float = 0.02,
        simulation_order: Sequence[str] | None = None,
        cooldown: float = DEFAULT_WARN_INTERVAL,
        warn_interval: float = DEFAULT_WARN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(builders, str) or not builders:
            raise ValueError("MultiBuilderClient needs a non-empty list of builder URLs")
        endpoints = parse_builders(builders)
        names = [e.name for e in endpoints]
        timeouts = dict(timeouts or {})
        unknown = sorted(set(timeouts) - set(names))
        if unknown:
            raise ValueError(f"timeouts for unknown builders: {', '.join(unknown)}")
        order = list(simulation_order or ())
        unknown = sorted(set(order) - set(names))
        if unknown:
            raise ValueError(f"simulation_order names unknown builders: {', '.join(unknown)}")
        if len(set(order)) != len(order):
            raise ValueError("simulation_order lists a builder twice")
        self._signer = _signer_of(signer_key)
        self._session = session
        self._owns_session = session is None
        self._ids = itertools.count(1)
        self.clients: tuple[BundleClient, ...] = tuple(
            BundleClient(
                e,
                self._signer,
                session=session,
                timeout=timeouts.get(e.name, timeout),
                retries=retries,
                backoff=backoff,
            )
            for e in endpoints
        )
        for c in self.clients:  # one shared pool: keep-alive connections to every builder
            c._session_factory = self._shared_session
        by_name = {c.name: c for c in self.clients}
        self._sim_order: tuple[BundleClient, ...] = tuple(
            [by_name[n] for n in order] + [c for c in self.clients if c.name not in order]
        )
        self._clock = clock
        self.cooldown = cooldown
        self._sim_failed_at: dict[str, float] = {}
        self.warnings = RateLimitedWarnings(log, warn_interval, clock)
        self._tasks: set[asyncio.Task[BuilderResult]] = set()

    def __repr__(self) -> str:
        shown = ", ".join(c.name for c in self.clients)
        return f"MultiBuilderClient([{shown}], signer={self._signer.address})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("MultiBuilderClient is not picklable (it holds a signing key)")

    @property
    def names(self) -> tuple[str, ...]:
        """Builder identities, in list order."""
        return tuple(c.name for c in self.clients)

    @property
    def simulation_order(self) -> tuple[str, ...]:
        """Identities in the preferred simulation order (before cool-down reordering)."""
        return tuple(c.name for c in self._sim_order)

    @property
    def in_flight(self) -> int:
        """Requests (one per builder) still running (a finished task leaves the owned set only on the
        loop's next turn: it is not counted)."""
        return sum(1 for t in self._tasks if not t.done())

    def client(self, name: str) -> BundleClient:
        for c in self.clients:
            if c.name == name:
                return c
        raise KeyError(name)

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
        """Cancels the requests still in flight, waits for them, then closes the session we own."""
        while self._tasks:
            tasks = list(self._tasks)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def sign(self, method: str, params: Any) -> SignedRequest:
        """Serializes and signs once; the result can be sent to every builder as is."""
        rid = next(self._ids)
        body = orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        return SignedRequest(method, rid, body, self._signer.sign(body))

    # -- one builder, as an owned task ----------------------------------------------------------

    async def _one(self, client: BundleClient, req: SignedRequest) -> BuilderResult:
        start = time.perf_counter()
        try:
            result = await client.send_signed(req)
        except RelayError as exc:
            self.warnings.warning(
                f"{client.name} {req.method}", "%s to %s failed: %s", req.method, client.name, exc
            )
            return BuilderResult(
                client.name, client.display_url, False, None, exc, time.perf_counter() - start
            )
        except Exception as exc:  # a bug must not take the other builders down with it
            log.exception("%s to %s failed unexpectedly", req.method, client.name)
            err = RelayError(f"{req.method} to {client.name}: unexpected {type(exc).__name__}")
            return BuilderResult(
                client.name, client.display_url, False, None, err, time.perf_counter() - start
            )
        latency = time.perf_counter() - start
        bundle_hash: str | None = None
        if req.method in ("eth_sendBundle", "mev_sendBundle"):
            try:
                bundle_hash = _bundle_hash_of(result, req.method)
            except RelayResponseError as exc:
                if result is not None:  # a BuilderNet-style cancel may answer null
                    return BuilderResult(client.name, client.display_url, False, result, exc, latency)
        log.debug("%s to %s ok in %.1f ms", req.method, client.name, latency * 1000)
        return BuilderResult(client.name, client.display_url, True, result, None, latency, bundle_hash)

    def _spawn(self, client: BundleClient, req: SignedRequest) -> asyncio.Task[BuilderResult]:
        task = asyncio.get_running_loop().create_task(
            self._one(client, req), name=f"{req.method} {client.name}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _as_they_come(
        self, jobs: Sequence[tuple[K, BundleClient, SignedRequest]]
    ) -> AsyncGenerator[tuple[K, BuilderResult]]:
        """Starts every job, yields (key, result) as each finishes (list order within a tie). Leaving
        early (or being closed) cancels the jobs still running."""
        started = time.perf_counter()
        tasks = {self._spawn(c, req): (i, key, c, req) for i, (key, c, req) in enumerate(jobs)}
        pending: set[asyncio.Task[BuilderResult]] = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: tasks[t][0]):
                    _, key, client, req = tasks[task]
                    if task.cancelled():  # close() while we were iterating
                        err = RelayError(f"{req.method} to {client.name}: cancelled (client closed)")
                        latency = time.perf_counter() - started
                        yield key, BuilderResult(client.name, client.display_url, False, None, err, latency)
                    else:
                        yield key, task.result()
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    # -- fan-out --------------------------------------------------------------------------------

    async def stream(self, req: SignedRequest) -> AsyncIterator[BuilderResult]:
        """Yields each builder's result as soon as it is known (fastest first).

        Leaving the loop early cancels the requests still in flight (immediately with
        `contextlib.aclosing(multi.stream(req))`, else when the generator is collected or the client
        closed); iterate to the end when the slower builders should still receive the bundle.
        """
        async with aclosing(self._as_they_come([(None, c, req) for c in self.clients])) as results:
            async for _, r in results:
                yield r

    async def send_signed(self, req: SignedRequest) -> list[BuilderResult]:
        """Sends `req` to every builder; results in the order of the builders (each within its own
        deadline, so this takes at most the largest one)."""
        out: dict[int, BuilderResult] = {}
        async with aclosing(self._as_they_come([(i, c, req) for i, c in enumerate(self.clients)])) as rs:
            async for i, r in rs:
                out[i] = r
        return [out[i] for i in range(len(self.clients))]

    async def request(self, method: str, params: Any) -> list[BuilderResult]:
        return await self.send_signed(self.sign(method, params))

    async def send_bundle(self, bundle: Bundle) -> list[BuilderResult]:
        return await self.request("eth_sendBundle", [bundle.to_params()])

    def stream_bundle_for_blocks(
        self,
        txs: Sequence[RawTx],
        first_block: int,
        n_blocks: int = 1,
        replacement_uuid: uuid.UUID | str | None = None,
        **extras: Any,
    ) -> AsyncGenerator[tuple[int, BuilderResult]]:
        """One bundle per target block `first_block .. first_block + n_blocks - 1` (n_blocks 1 or 2),
        each signed once (here, before this returns: bad input raises now) and sent to every builder when
        iteration starts; yields (target block, result) as each builder answers. With a
        `replacement_uuid`, block n uses `block_replacement_uuid(replacement_uuid, n)`. `extras` are
        `Bundle.build` keywords."""
        if n_blocks not in (1, 2):
            raise ValueError("n_blocks must be 1 (N+1) or 2 (N+1 and N+2)")
        base = Bundle.build(txs, first_block, **extras)
        jobs: list[tuple[int, BundleClient, SignedRequest]] = []
        for n in range(first_block, first_block + n_blocks):
            uid = None if replacement_uuid is None else block_replacement_uuid(replacement_uuid, n)
            req = self.sign("eth_sendBundle", [base.for_block(n, uid).to_params()])
            jobs += [(n, c, req) for c in self.clients]
        return self._stream_jobs(jobs)

    async def _stream_jobs(
        self, jobs: Sequence[tuple[int, BundleClient, SignedRequest]]
    ) -> AsyncGenerator[tuple[int, BuilderResult]]:
        async with aclosing(self._as_they_come(jobs)) as results:
            async for item in results:
                yield item

    async def send_bundle_for_blocks(
        self,
        txs: Sequence[RawTx],
        first_block: int,
        n_blocks: int = 1,
        replacement_uuid: uuid.UUID | str | None = None,
        **extras: Any,
    ) -> dict[int, list[BuilderResult]]:
        """As `stream_bundle_for_blocks`, waiting for every builder; per block, results in builder order."""
        stream = self.stream_bundle_for_blocks(txs, first_block, n_blocks, replacement_uuid, **extras)
        got: dict[tuple[int, str], BuilderResult] = {}
        async for n, r in stream:
            got[(n, r.name)] = r
        blocks = range(first_block, first_block + n_blocks)
        return {n: [got[(n, c.name)] for c in self.clients] for n in blocks}

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

    # -- simulation -----------------------------------------------------------------------------

    def _simulation_candidates(self) -> list[BundleClient]:
        now = self._clock()
        cooling = {name for name, at in self._sim_failed_at.items() if at + self.cooldown > now}
        return [c for c in self._sim_order if c.name not in cooling] + [
            c for c in self._sim_order if c.name in cooling
        ]

    async def simulate(
        self,
        raw_txs: Sequence[RawTx],
        block_number: int,
        *,
        state_block: int | str = "latest",
        timestamp: int | None = None,
        coinbase: str | None = None,
        timeout_ms: int | None = None,
        gas_limit: int | None = None,
        base_fee: int | None = None,
    ) -> SimulationOutcome:
        """`eth_callBundle` at one builder, falling back to the next when a builder cannot simulate (see
        the module docstring). Raises `RelayRejected` when a builder refused the bundle itself, and
        `SimulationUnavailable` when no builder could simulate."""
        failures: list[tuple[str, RelayError]] = []
        for client in self._simulation_candidates():
            start = time.perf_counter()
            try:
                result = await client.call_bundle(
                    raw_txs,
                    block_number,
                    state_block=state_block,
                    timestamp=timestamp,
                    coinbase=coinbase,
                    timeout_ms=timeout_ms,
                    gas_limit=gas_limit,
                    base_fee=base_fee,
                )
            except RelayError as exc:
                if not _cannot_simulate(exc):
                    raise
                failures.append((client.name, exc))
                self._sim_failed_at[client.name] = self._clock()
                self.warnings.warning(
                    f"{client.name} eth_callBundle",
                    "eth_callBundle at %s failed (%s); trying the next builder",
                    client.name,
                    exc,
                )
                continue
            self._sim_failed_at.pop(client.name, None)
            return SimulationOutcome(client.name, result, time.perf_counter() - start, tuple(failures))
        tried = "; ".join(f"{name}: {err}" for name, err in failures)
        raise SimulationUnavailable(
            f"eth_callBundle failed on every builder ({len(failures)}): {tried}", tuple(failures)
        )


__all__ = [
    "DEFAULT_WARN_INTERVAL",
    "BuilderResult",
    "MultiBuilderClient",
    "RateLimitedWarnings",
    "SimulationOutcome",
]
