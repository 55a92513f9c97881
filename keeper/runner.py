"""`keeper run`: settings -> RPC client -> strategies and executors -> engine, until SIGINT/SIGTERM.

    settings ─> RpcClient ─> (deployments/devnet.json when KEEPER_DEVNET, read once here)
             ─> strategy factories (keeper.strategies_registry; async ones get `RunServices`)
             ─> Engine([Supervised(BlockCollector)], strategies, executors) + /metrics,/health server

The runner only composes: each strategy's wiring lives with the strategy (the liquidation keeper in
strategies/liquidations/wiring.py). `RunServices` opens what a factory asks for, once, and closes it on
the way out: the SQLite ledger (`KEEPER_LEDGER_PATH`), the builder client (`KEEPER_RELAY_URLS`, signed
with the relay identity `KEEPER_FLASHBOTS_SIGNER_KEY`; under KEEPER_DEVNET the devnet's relay is added
to the ones listed), the signers (the funds key, then `KEEPER_OPERATOR_KEYS`) and the public senders.
Building the strategies and their initial sync are retried as a whole on RPC errors (a flaky node at
start-up), up to `STARTUP_ATTEMPTS` times. `keeper demo` goes through this same path.

Keys are never logged: signers, builder clients and senders print addresses only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from keeper import __version__
from keeper.chain.redact import redact_url
from keeper.chain.rpc import RpcClient
from keeper.chain.signer import TxSigner
from keeper.config import Settings, env_name, funds_account
from keeper.core.actions import SendMode
from keeper.core.health import SendWatch
from keeper.errors import ConfigError, KeeperError, RelayError, RpcError
from keeper.executors.builder_identity import parse_builder
from keeper.logs import kv, scrub, setup_logging
from keeper.strategies_registry import Components, StrategyContext, build_components

if TYPE_CHECKING:
    from keeper.core.interfaces import Strategy
    from keeper.executors.builders import MultiBuilderClient
    from keeper.executors.public import PublicSender
    from keeper.ledger import Ledger

log = logging.getLogger("keeper.runner")

EXIT_CRASH = 1
EXIT_CONFIG = 2
BPS = 10_000


class StartupError(KeeperError):
    """The node could not be reached at start-up: one error line and exit 1, no traceback."""


# ---- the devnet file ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DevnetInfo:
    """What `deployments/devnet.json` (or a file like it) says about a running devnet."""

    path: Path
    deployment: dict[str, Any]
    relay_url: str | None


def read_devnet_file(path: Path) -> DevnetInfo:
    """Reads a devnet record ({"deployment": {...}, "relay_url": ...}); ConfigError when unusable."""
    var = env_name("devnet_file")
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(
            [f"{var}: cannot read {path}: {exc.strerror} (is `keeper devnet up` running?)"]
        ) from None
    except orjson.JSONDecodeError:
        raise ConfigError([f"{var}: {path} is not JSON"]) from None
    deployment = data.get("deployment") if isinstance(data, dict) else None
    if not isinstance(deployment, dict):
        raise ConfigError([f'{var}: {path} has no "deployment" object (written by `keeper devnet up`)'])
    missing = [
        k
        for k in ("chain_id", "tokens", "aave_v3", "aave_v2", "uniswap_v3", "uniswap_v2")
        if k not in deployment
    ]
    if missing:
        raise ConfigError([f"{var}: {path}: the deployment lacks {', '.join(missing)}"])
    relay = data.get("relay_url")
    return DevnetInfo(path, deployment, str(relay) if relay else None)


def devnet_operator_signers(deployment: Mapping[str, Any], exclude: str) -> list[TxSigner]:
    """Signers for the devnet's operators (anvil's public dev keys, devnet only)."""
    from keeper.chain.dev_accounts import DEV_ACCOUNTS

    listed = str(deployment.get("accounts", {}).get("operators", ""))
    wanted = {a.strip().lower() for a in listed.split(",") if a.strip()} - {exclude.lower()}
    return [TxSigner.from_key(key) for address, key in DEV_ACCOUNTS if address.lower() in wanted]


# ---- services ----------------------------------------------------------------------------------------


@dataclass
class RunPlan:
    """Everything decided before the event loop starts (keystore decryption is CPU-bound)."""

    settings: Settings
    signers: list[TxSigner]
    devnet: DevnetInfo | None
    relay_urls: list[str]
    event_sink: Callable[[str, dict[str, Any]], None] | None = None
    """Executors' events for a front end (`keeper demo` prints them)."""
    mevshare_url: str | None = None
    """The MEV-Share hint stream (the settings', or the devnet relay's)."""
    mevshare_builders: tuple[str, ...] = ()
    """Builder identities that take `mev_sendBundle`."""


def plan_run(settings: Settings) -> RunPlan:
    """Accounts and the devnet file; raises ConfigError with one line per problem."""
    account = funds_account(settings)
    signers: list[TxSigner] = []
    if account is not None:
        signers.append(TxSigner(account))
    signers += [TxSigner.from_key(k.get_secret_value()) for k in settings.operator_keys]
    devnet = read_devnet_file(settings.devnet_file) if settings.devnet else None
    relay_urls = list(settings.relay_urls)
    mevshare_url = settings.mevshare_url
    mevshare_builders = [parse_builder(b).name if "://" in b else b for b in settings.mevshare_builders]
    if devnet is not None:
        if not settings.operator_keys and signers:
            signers += devnet_operator_signers(devnet.deployment, exclude=signers[0].address)
        # The relays listed are honoured; the devnet's own relay is added after them.
        listed = {parse_builder(u).url: parse_builder(u).name for u in relay_urls}
        if devnet.relay_url and devnet.relay_url not in listed:
            relay_urls.append(f"devnet={devnet.relay_url}")
            listed[devnet.relay_url] = "devnet"
        if devnet.relay_url and mevshare_url is None:
            # The devnet relay serves the MEV-Share hint stream and takes mev_sendBundle.
            mevshare_url = devnet.relay_url + "/"
            mevshare_builders = mevshare_builders or [listed[devnet.relay_url]]
    return RunPlan(
        settings,
        signers,
        devnet,
        relay_urls,
        mevshare_url=mevshare_url,
        mevshare_builders=tuple(mevshare_builders),
    )


class RunServices:
    """`keeper.strategies_registry.Services` for `keeper run`: opened on first use, closed by `aclose`."""

    def __init__(self, plan: RunPlan, rpc: RpcClient, chain_id: int) -> None:
        self.plan = plan
        self.rpc = rpc
        self._chain_id = chain_id
        self._stack = contextlib.AsyncExitStack()
        self._ledger: Ledger | None = None
        self._builders: MultiBuilderClient | None = None
        self._lock = asyncio.Lock()
        self._send_watch = SendWatch(plan.settings.head_max_age_seconds)
        self._shared: dict[str, Any] = {}
        self._shared_lock = asyncio.Lock()

    @property
    def send_watch(self) -> SendWatch:
        return self._send_watch

    @property
    def event_sink(self) -> Callable[[str, dict[str, Any]], None] | None:
        return self.plan.event_sink

    @property
    def mevshare(self) -> tuple[str | None, tuple[str, ...]]:
        return self.plan.mevshare_url, self.plan.mevshare_builders

    @property
    def chain_id(self) -> int:
        return self._chain_id

    @property
    def devnet(self) -> Mapping[str, Any] | None:
        return self.plan.devnet.deployment if self.plan.devnet is not None else None

    @property
    def relay_urls(self) -> list[str]:
        return list(self.plan.relay_urls)

    def signers(self) -> list[TxSigner]:
        if not self.plan.signers:
            raise ConfigError(
                [
                    f"{env_name('private_key')}: missing (or {env_name('keystore')}): the funds key is "
                    "needed to send; e.g. KEEPER_KEYSTORE=/secure/keystore.json"
                ]
            )
        return list(self.plan.signers)

    async def ledger(self) -> Ledger:
        from keeper.ledger import Ledger

        async with self._lock:
            if self._ledger is None:
                self._ledger = await self._stack.enter_async_context(
                    Ledger.open(self.plan.settings.ledger_path)
                )
                log.info("ledger open", extra=kv(path=str(self.plan.settings.ledger_path)))
            return self._ledger

    def identity_key(self, purpose: str) -> str:
        key = self.plan.settings.flashbots_signer_key
        if key is None:
            raise ConfigError(
                [
                    f"{env_name('flashbots_signer_key')}: missing (required {purpose}); "
                    "e.g. KEEPER_FLASHBOTS_SIGNER_KEY=0x<64 hex digits of a fresh key that holds no funds>"
                ]
            )
        return key.get_secret_value()

    async def builders(self) -> MultiBuilderClient:
        from keeper.executors.builders import MultiBuilderClient

        async with self._lock:
            if self._builders is None:
                if not self.plan.relay_urls:
                    raise ConfigError(
                        [
                            f"{env_name('relay_urls')}: missing (KEEPER_SUBMIT=bundle sends to relays); "
                            "e.g. KEEPER_RELAY_URLS=https://relay.flashbots.net"
                        ]
                    )
                key = self.identity_key("to sign bundles with KEEPER_SUBMIT=bundle")
                client = MultiBuilderClient(self.plan.relay_urls, key)
                self._builders = await self._stack.enter_async_context(client)
                log.info(
                    "relays",
                    extra=kv(
                        relays=",".join(client.names),
                        identity=client.clients[0].signer_address,
                    ),
                )
            return self._builders

    async def senders(self, mode: SendMode) -> list[PublicSender]:
        """One PublicSender (with its own nonce manager) per signer, for KEEPER_SUBMIT=public|private."""
        from keeper.chain.flashbots_auth import FlashbotsSigner
        from keeper.executors.nonce import NonceManager
        from keeper.executors.public import PrivateRelay, PublicSender

        relay: PrivateRelay | None = None
        if mode is SendMode.PRIVATE:
            if not self.plan.relay_urls:
                raise ConfigError(
                    [
                        f"{env_name('relay_urls')}: missing (KEEPER_SUBMIT=private sends to the first "
                        "relay); e.g. KEEPER_RELAY_URLS=https://rpc.flashbots.net"
                    ]
                )
            relay = PrivateRelay(
                parse_builder(self.plan.relay_urls[0]).url,
                FlashbotsSigner(self.identity_key("to sign private transactions")),
            )
            self.push_close(relay.close)
        out = []
        for signer in self.signers():
            sender = PublicSender(
                self.rpc,
                signer,
                NonceManager(self.rpc, signer.address),
                chain_id=self.chain_id,
                mode=mode,
                relay=relay,
            )
            await sender.start()
            out.append(sender)
        return out

    async def shared(self, key: str, build: Callable[[], Awaitable[Any]]) -> Any:
        async with self._shared_lock:
            if key not in self._shared:
                self._shared[key] = await build()
            return self._shared[key]

    def push_close(self, close: Any) -> None:
        """Registers an async close callback (run in reverse order by `aclose`)."""
        self._stack.push_async_callback(close)

    async def aclose(self) -> None:
        await self._stack.aclose()


# ---- the command -------------------------------------------------------------------------------------


def _print_problems(exc: ConfigError) -> None:
    for problem in exc.problems:
        print(scrub(f"error: {problem}"), file=sys.stderr, flush=True)


def run_command(settings: Settings) -> int:
    """`keeper run` after settings are loaded (and their secrets registered): returns the exit code."""
    from keeper.core.runtime import run as run_main

    setup_logging(settings.log_format, settings.log_level)
    try:
        plan = plan_run(settings)
    except ConfigError as exc:
        _print_problems(exc)
        return EXIT_CONFIG
    failures: list[ConfigError | StartupError] = []

    async def main() -> None:
        try:
            await run_keeper(plan)
        except (ConfigError, StartupError) as exc:
            failures.append(exc)

    code = run_main(main)
    if failures:
        from keeper.logs import stop_logging

        stop_logging()  # flush log lines first: the error lines come last
        failure = failures[0]
        if isinstance(failure, StartupError):
            print(scrub(f"error: {failure}"), file=sys.stderr, flush=True)
            return EXIT_CRASH
        _print_problems(failure)
        return EXIT_CONFIG
    return code


STARTUP_ATTEMPTS = 5
STARTUP_BACKOFF = 0.5


async def start_components(
    names: Sequence[str], ctx: StrategyContext, *, attempts: int = STARTUP_ATTEMPTS
) -> Components:
    """Builds the strategies and runs their initial sync, retried as a whole on RPC errors (a node that
    answers some requests with HTTP 500 or drops connections at start-up must not kill the keeper)."""
    backoff = STARTUP_BACKOFF
    for attempt in range(1, attempts + 1):
        try:
            components = await build_components(names, ctx)
            for strategy in components.strategies:
                await strategy.sync_state()
            return components
        except (RpcError, RelayError) as exc:
            if attempt == attempts:
                raise StartupError(f"start-up failed {attempts} times; last error: {exc}") from None
            log.warning(
                "start-up failed, retrying",
                extra=kv(attempt=attempt, error=f"{type(exc).__name__}: {str(exc)[:200]}", backoff=backoff),
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
    raise AssertionError("unreachable")


async def run_keeper(
    plan: RunPlan,
    *,
    started: asyncio.Event | None = None,
    extra_strategies: Sequence[Strategy] = (),
    on_components: Callable[[Components], None] | None = None,
) -> None:
    """Runs until cancelled. ConfigError for problems only the chain reveals (wrong devnet, no executor).
    `extra_strategies` run next to the configured ones (the demo's block printer); `on_components` is
    called with what was built, before the engine starts."""
    from keeper.collectors.blocks import BlockCollector
    from keeper.core.engine import Engine, Supervised
    from keeper.core.health import HeadWatch
    from keeper.observability import ObservabilityServer

    settings = plan.settings
    rpc = RpcClient(settings.rpc_http_url)
    try:
        try:
            chain_id = await rpc.chain_id()
        except RpcError as exc:
            raise StartupError(
                f"cannot reach {env_name('rpc_http_url')} ({redact_url(settings.rpc_http_url)}): {exc}"
            ) from None
        if plan.devnet is not None:
            expected = int(plan.devnet.deployment["chain_id"])
            if chain_id != expected:
                raise ConfigError(
                    [
                        f"{env_name('devnet')}: {env_name('rpc_http_url')} is on chain {chain_id}, "
                        f"{plan.devnet.path} describes chain {expected}"
                    ]
                )
        services = RunServices(plan, rpc, chain_id)
        try:
            components = await start_components(
                settings.strategies, StrategyContext(settings=settings, rpc=rpc, services=services)
            )
            if on_components is not None:
                on_components(components)
            head_watch = HeadWatch(settings.head_max_age_seconds)
            collector = Supervised(BlockCollector(settings.ws_url, rpc, head_watch=head_watch))
            engine = Engine(
                [collector, *(Supervised(c) for c in components.collectors)],
                [*components.strategies, *extra_strategies],
                components.executors,
                sync_on_start=False,
            )
            log.info(
                "keeper starting",
                extra=kv(
                    version=__version__,
                    chain_id=chain_id,
                    rpc=redact_url(settings.rpc_http_url),
                    ws=redact_url(settings.ws_url),
                    strategies=",".join(settings.strategies),
                    executors=",".join(e.name for e in components.executors) or None,
                    collectors=",".join(["blocks", *(c.name for c in components.collectors)]),
                    submit=settings.submit,
                    dry_run=settings.dry_run,
                    devnet=str(plan.devnet.path) if plan.devnet is not None else None,
                    senders=",".join(s.address for s in plan.signers) or None,
                ),
            )
            if settings.ws_url_is_derived:
                log.warning(
                    "KEEPER_RPC_WS_URL not set; using a websocket URL derived from KEEPER_RPC_HTTP_URL",
                    extra=kv(ws=redact_url(settings.ws_url)),
                )
            async with ObservabilityServer(
                settings.metrics_host, settings.metrics_port, head_watch, services.send_watch
            ):
                if started is not None:
                    started.set()
                await engine.run()
        finally:
            await services.aclose()
    finally:
        await rpc.close()
