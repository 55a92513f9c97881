"""/metrics and /health, through aiohttp's test client and through a real bound server."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from keeper.core.health import HeadWatch, SendWatch
from keeper.devnet.anvil import free_port
from keeper.observability import ObservabilityServer, make_app, serve


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watch_with_clock(max_age: float = 60.0) -> tuple[HeadWatch, FakeClock]:
    watch = HeadWatch(max_age)
    clock = FakeClock()
    watch._clock = clock
    return watch, clock


async def test_metrics_exposes_registry() -> None:
    watch, _ = watch_with_clock()
    watch.mark(4242)
    async with TestClient(TestServer(make_app(watch))) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    assert "keeper_head_block_number 4242.0" in text
    assert "# TYPE keeper_events_total counter" in text


async def test_health_lifecycle_starting_ok_stale() -> None:
    watch, clock = watch_with_clock(max_age=30)
    async with TestClient(TestServer(make_app(watch))) as client:
        resp = await client.get("/health")
        assert resp.status == 503
        assert (await resp.json()).items() >= {
            "status": "starting",
            "head": None,
            "age": None,
            "max_age": 30,
        }.items()

        watch.mark(100)
        clock.now += 5
        resp = await client.get("/health")
        assert resp.status == 200
        assert (await resp.json()).items() >= {"status": "ok", "head": 100, "age": 5.0, "max_age": 30}.items()

        clock.now += 26
        resp = await client.get("/health")
        assert resp.status == 503
        body = await resp.json()
        assert body["status"] == "stale"
        assert body["head"] == 100
        assert body["age"] == 31.0

        watch.mark(101)
        resp = await client.get("/health")
        assert resp.status == 200


async def test_real_server_binds_and_stops() -> None:
    watch, _ = watch_with_clock()
    watch.mark(7)
    port = free_port()
    async with ObservabilityServer("127.0.0.1", port, watch), aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/health") as resp:
            assert resp.status == 200
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert "keeper_head_block_number 7.0" in await resp.text()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{port}/health")


async def test_serve_task_cancels_cleanly_and_port_zero_disables() -> None:
    watch, _ = watch_with_clock()
    await asyncio.wait_for(serve("127.0.0.1", 0, watch), timeout=1)  # returns at once

    port = free_port()
    task = asyncio.create_task(serve("127.0.0.1", port, watch))
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(f"http://127.0.0.1:{port}/health") as resp:
                    assert resp.status == 503
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.01)
        else:
            pytest.fail("server did not start")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    server = ObservabilityServer("127.0.0.1", 0, watch)
    async with server:
        assert not server.enabled


async def test_health_reports_a_keeper_that_acts_but_cannot_send() -> None:
    watch, clock = watch_with_clock(max_age=30)
    sends = SendWatch(max_age=30)
    sends._clock = clock
    watch.mark(100)
    async with TestClient(TestServer(make_app(watch, sends))) as client:
        sends.failed("eth_callBundle: connection refused")
        clock.now += 10
        watch.mark(101)
        assert (await client.get("/health")).status == 200  # not for long enough yet
        clock.now += 25
        watch.mark(102)
        resp = await client.get("/health")
        assert resp.status == 503
        body = await resp.json()
        assert body["status"] == "not_sending"
        assert body["send_failures"] == 1
        assert body["last_send_error"] == "eth_callBundle: connection refused"
        sends.ok()
        assert (await client.get("/health")).status == 200
