"""`/metrics` (Prometheus text) and `/health` (head freshness) served from the running event loop.

Use as a context manager around the engine, so the server lives exactly as long as the work it reports on:

    async with ObservabilityServer(host, port, head_watch):
        await engine.run()

or as a task: `tg.create_task(serve(host, port, head_watch))`. Port 0 disables the server (nothing is
bound). `/health` answers 200 while `HeadWatch.healthy()` (a head arrived within `max_age` seconds) and
503 before the first head or when heads stop, so a supervisor (docker, k8s, systemd) restarts a stuck
keeper.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Self

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from keeper.core.health import HeadWatch, SendWatch
from keeper.core.metrics import REGISTRY
from keeper.logs import kv

log = logging.getLogger("keeper.observability")

HEAD_WATCH_KEY = web.AppKey("head_watch", HeadWatch)
SEND_WATCH_KEY = web.AppKey("send_watch", SendWatch)


async def _metrics(request: web.Request) -> web.Response:
    # generate_latest is synchronous but takes well under a millisecond for our few dozen series.
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _health(request: web.Request) -> web.Response:
    watch = request.app[HEAD_WATCH_KEY]
    sends = request.app[SEND_WATCH_KEY]
    age = watch.age()
    healthy = watch.healthy() and sends.healthy()
    if not watch.healthy():
        status = "starting" if age is None else "stale"
    elif not sends.healthy():
        status = "not_sending"
    else:
        status = "ok"
    failing = sends.failing_for()
    body = {
        "status": status,
        "head": watch.last_number,
        "age": None if age is None else round(age, 3),
        "max_age": watch.max_age,
        "send_failing_for": None if failing is None else round(failing, 3),
        "send_failures": sends.failures,
        "last_send_error": sends.last_error or None,
    }
    return web.json_response(body, status=200 if healthy else 503)


def make_app(head_watch: HeadWatch, send_watch: SendWatch | None = None) -> web.Application:
    app = web.Application()
    app[HEAD_WATCH_KEY] = head_watch
    app[SEND_WATCH_KEY] = send_watch if send_watch is not None else SendWatch(head_watch.max_age)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/health", _health)
    return app


class ObservabilityServer:
    """Async context manager running the HTTP server on the current loop; `port` 0 = disabled."""

    def __init__(
        self, host: str, port: int, head_watch: HeadWatch, send_watch: SendWatch | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.head_watch = head_watch
        self.send_watch = send_watch
        self._runner: web.AppRunner | None = None

    @property
    def enabled(self) -> bool:
        return self.port != 0

    async def start(self) -> None:
        if not self.enabled:
            log.info("metrics server disabled (metrics_port=0)")
            return
        runner = web.AppRunner(
            make_app(self.head_watch, self.send_watch), access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("metrics server listening", extra=kv(url=f"http://{self.host}:{self.port}"))

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve(host: str, port: int, head_watch: HeadWatch) -> None:
    """Runs the server until cancelled (returns at once when port is 0). For a TaskGroup."""
    if port == 0:
        log.info("metrics server disabled (metrics_port=0)")
        return
    async with ObservabilityServer(host, port, head_watch):
        await asyncio.Event().wait()
