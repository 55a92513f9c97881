"""The devnet as one unit: cached deployed state, anvil, block production and the bundle relay.

`Devnet` runs in-process (tests, `keeper demo`): `async with Devnet(block_time=None) as net:` gives a
deployed chain in ~0.2 s from the cached state, with blocks produced on demand (`await net.mine()`), or on
a fixed interval with anvil's automine off so the mempool is visible between blocks.
`Devnet(arbitrageur=True, arb_speed_bps=5000)` adds the background arbitrageur
(`keeper.devnet.arbitrageur`): before every block it sends public swaps that move the Uniswap pools
toward the oracle prices (off by default here, so tests see a still market; on in `keeper devnet up`).

`keeper devnet up` runs the same thing in a detached `keeper devnet serve` process and records it in a
run file; `keeper devnet down` stops it. anvil is that process's child and dies with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import orjson

from keeper.chain.rpc import RpcClient
from keeper.devnet.anvil import PROJECT_ROOT, Anvil, AnvilConfig
from keeper.devnet.arbitrageur import DEFAULT_SPEED_BPS, Arbitrageur
from keeper.devnet.cache import CACHE_DIR, CachedState, cached_state
from keeper.devnet.deploy import DevnetDeployment, deploy_all
from keeper.devnet.relay import RelayServer
from keeper.errors import DevnetError

log = logging.getLogger("keeper.devnet")

DEPLOYMENTS_FILE = PROJECT_ROOT / "deployments" / "devnet.json"
RUN_FILE = CACHE_DIR / "run.json"
GAS_LIMIT = 60_000_000
"""The block gas limit: mainnet's in late 2026 (raised from 30M to 36M in 2025, 45M, then 60M)."""


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


async def ensure_state(*, fresh: bool = False) -> tuple[CachedState, DevnetDeployment, float | None]:
    """Returns the cached deployed state, deploying from scratch first if needed.

    The third value is the cold-deploy time in seconds, or None when the cache was used.
    """
    cache = cached_state()
    if cache.complete and not fresh:
        return cache, DevnetDeployment.from_json(orjson.loads(cache.deployments_file.read_bytes())), None
    started = time.perf_counter()
    tmp_state = cache.state_file.with_suffix(f".partial{os.getpid()}")
    tmp_state.parent.mkdir(parents=True, exist_ok=True)
    anvil = Anvil(AnvilConfig(dump_state=tmp_state, gas_limit=GAS_LIMIT))
    await anvil.start()
    try:
        async with RpcClient(anvil.http_url) as rpc:
            deployment = await deploy_all(rpc)
    finally:
        await anvil.stop()  # anvil writes --dump-state on SIGTERM
    if not tmp_state.is_file():
        raise DevnetError("anvil did not write its state dump")
    tmp_state.replace(cache.state_file)
    _write_atomic(cache.deployments_file, orjson.dumps(deployment.to_json(), option=orjson.OPT_INDENT_2))
    return cache, deployment, time.perf_counter() - started


class Devnet:
    """A deployed devnet: anvil loaded from the cached state, plus block production.

    block_time=None or <= 0: blocks only when asked (`mine`, or `devnet_buildBlock` at the relay, which
    `keeper devnet mine N` calls); otherwise one block every `block_time` seconds.
    relay=True (default): blocks are built by the local bundle relay's builder (bundles first, then the
    mempool) and the relay serves eth_sendBundle & co. at `relay_url`; relay=False: plain evm_mine.
    arbitrageur=True: the background arbitrageur closes `arb_speed_bps` of every pool's gap to the oracle
    price with public swaps sent before each block (`self.arbitrageur`; default off).
    """

    def __init__(
        self,
        *,
        block_time: float | None = 2.0,
        port: int = 0,
        relay: bool = True,
        relay_port: int = 0,
        fresh: bool = False,
        arbitrageur: bool = False,
        arb_speed_bps: int = DEFAULT_SPEED_BPS,
    ) -> None:
        self.block_time = block_time if block_time is not None and block_time > 0 else None
        self.with_arbitrageur = arbitrageur
        self.arb_speed_bps = arb_speed_bps
        self.arbitrageur: Arbitrageur | None = None
        self.with_relay = relay
        self._relay_port = relay_port
        self.relay: RelayServer | None = None
        self.fresh = fresh
        self._port = port
        self.anvil: Anvil | None = None
        self.rpc: RpcClient | None = None
        self.deployment: DevnetDeployment | None = None
        self.cold_deploy_seconds: float | None = None
        self.start_seconds: float = 0.0
        self._miner: asyncio.Task[None] | None = None
        self._mine_lock = asyncio.Lock()

    @property
    def http_url(self) -> str:
        return self._require_anvil().http_url

    @property
    def ws_url(self) -> str:
        return self._require_anvil().ws_url

    @property
    def relay_url(self) -> str | None:
        return self.relay.url if self.relay is not None else None

    def _require_anvil(self) -> Anvil:
        if self.anvil is None:
            raise DevnetError("devnet is not running")
        return self.anvil

    def require(self) -> tuple[RpcClient, DevnetDeployment]:
        if self.rpc is None or self.deployment is None:
            raise DevnetError("devnet is not running")
        return self.rpc, self.deployment

    async def start(self) -> None:
        started = time.perf_counter()
        cache, deployment, cold = await ensure_state(fresh=self.fresh)
        self.deployment = deployment
        self.cold_deploy_seconds = cold
        self.anvil = Anvil(
            AnvilConfig(
                port=self._port,
                load_state=cache.state_file,
                no_mining=True,
                gas_limit=GAS_LIMIT,
                extra_args=["--order", "fifo"],
            )
        )
        await self.anvil.start()
        self.rpc = RpcClient(self.anvil.http_url)
        if self.with_arbitrageur:
            self.arbitrageur = Arbitrageur(
                self.rpc,
                deployment.tokens,
                deployment.feeds.usd,
                deployment.uniswap_v3,
                deployment.uniswap_v2,
                speed_bps=self.arb_speed_bps,
            )
        if self.with_relay:
            self.relay = RelayServer(self.anvil.http_url, port=self._relay_port)
            await self.relay.start()
            if self.arbitrageur is not None:
                self.relay.builder.pre_build.append(self.arbitrageur.step)
        if self.block_time is not None:
            self._miner = asyncio.create_task(self._mine_forever(self.block_time), name="devnet:miner")
        self.start_seconds = time.perf_counter() - started

    async def mine(self, blocks: int = 1) -> int:
        """Produces `blocks` blocks now; returns the new head number."""
        rpc, _ = self.require()
        async with self._mine_lock:
            for _ in range(blocks):
                if self.relay is not None:
                    await self.relay.builder.build_block()  # runs the arbitrageur first (pre_build)
                else:
                    if self.arbitrageur is not None:
                        await self.arbitrageur.step()
                    await rpc.call("evm_mine")
            return await rpc.block_number()

    async def _mine_forever(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += interval
            try:
                await self.mine()
            except Exception as exc:  # a failed block must not kill the devnet; log and go on
                log.warning("block production failed: %s", exc)

    async def stop(self) -> None:
        if self._miner is not None:
            self._miner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._miner
            self._miner = None
        if self.relay is not None:
            await self.relay.stop()
            self.relay = None
        if self.rpc is not None:
            await self.rpc.close()
            self.rpc = None
        if self.anvil is not None:
            await self.anvil.stop()
            self.anvil = None

    async def __aenter__(self) -> Devnet:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def describe(self) -> dict[str, Any]:
        _, deployment = self.require()
        return {
            "rpc_http_url": self.http_url,
            "rpc_ws_url": self.ws_url,
            "relay_url": self.relay_url,
            "block_time": self.block_time,
            "arbitrageur": None
            if self.arbitrageur is None
            else {"address": self.arbitrageur.address, "speed_bps": self.arbitrageur.speed_bps},
            "deployment": deployment.to_json(),
        }


def write_deployments_file(info: dict[str, Any], path: Path = DEPLOYMENTS_FILE) -> Path:
    _write_atomic(path, orjson.dumps(info, option=orjson.OPT_INDENT_2))
    return path


def read_deployments_file(path: Path = DEPLOYMENTS_FILE) -> dict[str, Any]:
    if not path.is_file():
        raise DevnetError(f"{path} not found: run `keeper devnet up` first")
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise DevnetError(f"{path} is not a JSON object")
    return data


class DevnetMiner:
    """The `Miner` for an in-process Devnet (serialized with its interval block production)."""

    def __init__(self, net: Devnet) -> None:
        self.net = net

    async def mine(self) -> int:
        return await self.net.mine()
