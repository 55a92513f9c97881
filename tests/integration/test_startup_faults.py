"""A node that answers 30% of requests with HTTP 500 at start-up must not kill the keeper: the build and
the initial sync are retried as a whole (keeper.runner.start_components), on top of the RPC client's own
retries of transient failures."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from keeper.devnet.cache import CachedState
from keeper.devnet.scenarios.borrowers import create_borrowers
from keeper.devnet.stack import Devnet, DevnetMiner
from keeper.runner import plan_run, run_keeper
from tests.integration.keeper_harness import devnet_settings

pytestmark = pytest.mark.integration


@asynccontextmanager
async def flaky_proxy(upstream: str, failure_rate: float, seed: int) -> AsyncIterator[tuple[str, list[int]]]:
    """An HTTP JSON-RPC proxy that answers `failure_rate` of requests with HTTP 500 (seeded)."""
    rng = random.Random(seed)
    counts = [0, 0]  # forwarded, failed
    session = aiohttp.ClientSession()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if rng.random() < failure_rate:
            counts[1] += 1
            return web.Response(status=500, text="internal error")
        counts[0] += 1
        async with session.post(upstream, data=body, headers={"Content-Type": "application/json"}) as r:
            return web.Response(status=r.status, body=await r.read(), content_type="application/json")

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/", counts
    finally:
        await runner.cleanup()
        await session.close()


async def test_three_starts_through_a_node_failing_30_percent_of_requests(
    devnet_state: CachedState, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="keeper.runner")
    async with Devnet(block_time=0.5) as net:
        rpc, dep = net.require()
        await create_borrowers(rpc, dep, 200, seed=3, miner=DevnetMiner(net))
        for attempt in range(3):
            async with flaky_proxy(net.http_url, 0.3, seed=attempt) as (url, counts):
                workdir = tmp_path / f"start{attempt}"
                workdir.mkdir()
                settings = devnet_settings(net, workdir, rpc_http_url=url)
                started = asyncio.Event()
                task = asyncio.create_task(run_keeper(plan_run(settings), started=started))
                try:
                    async with asyncio.timeout(120):
                        await started.wait()  # built, synced, reconciled: the engine is about to run
                    assert not task.done()
                finally:
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                assert counts[1] > 0  # the proxy did fail requests
                print(f"start {attempt}: {counts[0]} requests forwarded, {counts[1]} answered HTTP 500")
        retried = [r for r in caplog.records if r.getMessage() == "start-up failed, retrying"]
        print(f"start-ups retried as a whole: {len(retried)}")
