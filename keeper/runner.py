"""`keeper run`: settings -> RPC client -> strategies and executors -> engine, until SIGINT/SIGTERM.

    settings ─> RpcClient ─> (deployments/devnet.json when KEEPER_DEVNET, else the settings)
             ─> strategy factories (keeper.strategies_registry; async ones get `RunServices`)
             ─> Engine([Supervised(BlockCollector)], strategies, executors) + /metrics,/health server

`RunServices` opens what a factory asks for, once, and closes it on the way out: the SQLite ledger
(`KEEPER_LEDGER_PATH`), the builder client (`KEEPER_RELAY_URLS`, signed with the relay identity
`KEEPER_FLASHBOTS_SIGNER_KEY`), and the signers (the funds key, then `KEEPER_OPERATOR_KEYS`).

The liquidation keeper (`KEEPER_STRATEGIES=liquidations`) is built by `create_liquidations`:
- markets, venues, flash pool, executor and WETH from the devnet file (KEEPER_DEVNET=true) or the settings
  (KEEPER_MARKETS presets, KEEPER_V3_POOLS / KEEPER_V2_PAIRS / KEEPER_CONNECTORS, KEEPER_EXECUTOR_ADDRESS);
- before anything runs, the executor must have code and every signer must be its owner or an operator
  (one clear error line otherwise: a liquidation from any other sender reverts with NotOperator);
- `KEEPER_SUBMIT=bundle`: the bundle executor (simulation at the first relay, min-profit gate, send to
  every relay, inclusion tracking, ledger); `public`/`private`: `keeper.executors.single_tx`.
`KEEPER_DRY_RUN=true` does everything but send (simulations and the ledger's opportunities included).

Keys are never logged: signers, builder clients and senders print addresses only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from eth_abi.abi import decode

from keeper import __version__
from keeper.chain.redact import redact_url
from keeper.chain.rpc import RpcClient
from keeper.chain.signer import TxSigner
from keeper.config import Settings, env_name, funds_account
from keeper.core.actions import SendMode
from keeper.errors import ConfigError, KeeperError, RpcError
from keeper.executors.bundle_executor import InclusionTracker
from keeper.executors.single_tx import SingleTxExecutor
from keeper.logs import kv, scrub, setup_logging
from keeper.strategies_registry import Components, StrategyContext, build_components

if TYPE_CHECKING:
    from keeper.executors.bundles import MultiBuilderClient
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
    from keeper.devnet.anvil import DEV_ACCOUNTS

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


def plan_run(settings: Settings) -> RunPlan:
    """Accounts and the devnet file; raises ConfigError with one line per problem."""
    account = funds_account(settings)
    signers: list[TxSigner] = []
    if account is not None:
        signers.append(TxSigner(account))
    signers += [TxSigner.from_key(k.get_secret_value()) for k in settings.operator_keys]
    devnet = read_devnet_file(settings.devnet_file) if settings.devnet else None
    relay_urls = list(settings.relay_urls)
    if devnet is not None:
        if not settings.operator_keys and signers:
            signers += devnet_operator_signers(devnet.deployment, exclude=signers[0].address)
        if devnet.relay_url:
            relay_urls = [devnet.relay_url]
    return RunPlan(settings, signers, devnet, relay_urls)


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
        from keeper.executors.bundles import MultiBuilderClient

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
                        relays=",".join(redact_url(u) for u in self.plan.relay_urls),
                        identity=client.clients[0].signer_address,
                    ),
                )
            return self._builders

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


async def run_keeper(plan: RunPlan, *, started: asyncio.Event | None = None) -> None:
    """Runs until cancelled. ConfigError for problems only the chain reveals (wrong devnet, no executor)."""
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
            components = await build_components(
                settings.strategies, StrategyContext(settings=settings, rpc=rpc, services=services)
            )
            head_watch = HeadWatch(settings.head_max_age_seconds)
            collector = Supervised(BlockCollector(settings.ws_url, rpc, head_watch=head_watch))
            engine = Engine(
                [collector],
                components.strategies,
                components.executors,
                coalesce_blocks=components.coalesce_blocks,
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
            async with ObservabilityServer(settings.metrics_host, settings.metrics_port, head_watch):
                if started is not None:
                    started.set()
                await engine.run()
        finally:
            await services.aclose()
    finally:
        await rpc.close()


# ---- the liquidation keeper ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LiquidationSetup:
    """Addresses and venues of the liquidation keeper, from the devnet file or the settings."""

    markets: list[Any]
    v3_pools: list[str]
    v2_pairs: list[str]
    connectors: list[str]
    flash_pool: str
    executor: str
    weth: str


def liquidation_setup(settings: Settings, devnet: Mapping[str, Any] | None) -> LiquidationSetup:
    from strategies.liquidations.markets import devnet_markets, presets

    if devnet is not None:
        tokens = devnet["tokens"]
        weth, usdc = str(tokens["WETH"]["address"]), str(tokens["USDC"]["address"])
        executor = str(devnet.get("executor") or "")
        if not executor:
            raise ConfigError(
                [
                    f"{env_name('devnet_file')}: the deployment has no executor "
                    "(restart the devnet with `keeper devnet up`)"
                ]
            )
        return LiquidationSetup(
            markets=devnet_markets(devnet),
            v3_pools=[str(a) for a in devnet["uniswap_v3"]["pools"].values()],
            v2_pairs=[str(a) for a in devnet["uniswap_v2"]["pairs"].values()],
            connectors=[weth, usdc],
            flash_pool=str(devnet["aave_v3"]["pool"]),
            executor=executor,
            weth=weth,
        )
    problems = []
    if not settings.markets:
        problems.append(
            f"{env_name('markets')}: missing (the liquidations strategy needs markets); "
            "e.g. KEEPER_MARKETS=aave-v3-ethereum,spark-ethereum"
        )
    if not settings.v3_pools and not settings.v2_pairs:
        problems.append(
            f"{env_name('v3_pools')} / {env_name('v2_pairs')}: missing (venues to sell collateral on); "
            "e.g. KEEPER_V3_POOLS=0x88e6A0c2dDD26FEEb64F039a2c41296FcB3f5640"
        )
    if settings.executor_address is None:
        problems.append(
            f"{env_name('executor_address')}: missing (deploy one with `keeper contracts deploy`); "
            "e.g. KEEPER_EXECUTOR_ADDRESS=0x<the printed address>"
        )
    if problems:
        raise ConfigError(problems)
    assert settings.executor_address is not None
    return LiquidationSetup(
        markets=presets(settings.markets),
        v3_pools=list(settings.v3_pools),
        v2_pairs=list(settings.v2_pairs),
        connectors=list(settings.connectors) or [settings.weth_address],
        flash_pool=settings.flash_pool,
        executor=settings.executor_address,
        weth=settings.weth_address,
    )


async def check_executor_access(rpc: RpcClient, executor: str, signers: Sequence[TxSigner]) -> None:
    """ConfigError unless `executor` has code and every signer is its owner or an operator."""
    from keeper.chain.abi import encode_call

    code = await rpc.call("eth_getCode", [executor, "latest"])
    if not isinstance(code, str) or len(code) <= 2:
        raise ConfigError(
            [
                f"{env_name('executor_address')}: no contract at {executor} on this chain "
                "(deploy one with `keeper contracts deploy`, or check KEEPER_RPC_HTTP_URL)"
            ]
        )
    calls: list[tuple[str, Any]] = [
        ("eth_call", [{"to": executor, "data": "0x" + encode_call("owner()", [], []).hex()}, "latest"])
    ]
    for s in signers:
        data = encode_call("isOperator(address)", ["address"], [s.address])
        calls.append(("eth_call", [{"to": executor, "data": "0x" + data.hex()}, "latest"]))
    results = await rpc.batch(calls)
    try:
        owner = str(decode(["address"], bytes.fromhex(results[0][2:]))[0])
        allowed = [bool(decode(["bool"], bytes.fromhex(r[2:]))[0]) for r in results[1:]]
    except Exception:
        raise ConfigError(
            [
                f"{env_name('executor_address')}: {executor} is not a LiquidationExecutor "
                "(no owner() / isOperator())"
            ]
        ) from None
    problems = []
    for i, (s, ok) in enumerate(zip(signers, allowed, strict=True)):
        if ok or s.address.lower() == owner.lower():
            continue
        var = env_name("private_key") if i == 0 else f"{env_name('operator_keys')} item {i}"
        problems.append(
            f"{var}: account {s.address} may not call the executor {executor} (owner {owner}); "
            "the owner must call setOperator(account, true), or redeploy with `keeper contracts deploy`"
        )
    if problems:
        raise ConfigError(problems)


async def create_liquidations(ctx: StrategyContext) -> Components:
    """The `liquidations` registry entry: strategy + inclusion tracking + the executor for KEEPER_SUBMIT."""
    from strategies.liquidations.actions import ExecutionConfig, LiquidationActions
    from strategies.liquidations.factory import build_keeper
    from strategies.liquidations.markets import build_adapters
    from strategies.liquidations.strategy import LiquidationStrategy
    from strategies.liquidations.valuation import build_valuer

    services = ctx.services
    if services is None:
        raise ConfigError(["KEEPER_STRATEGIES: liquidations runs only under `keeper run`"])
    settings, rpc = ctx.settings, ctx.rpc
    setup = liquidation_setup(settings, services.devnet)
    signers = services.signers()
    await check_executor_access(rpc, setup.executor, signers)
    execution = ExecutionConfig(
        executor=setup.executor,
        weth=setup.weth,
        builder_share_bps=settings.builder_share_bps,
        min_profit_wei=settings.min_profit_wei,
        connectors=tuple(c for c in setup.connectors if c.lower() != setup.weth.lower()),
    )
    ledger = await services.ledger()
    log.info(
        "liquidations",
        extra=kv(
            markets=",".join(m.name for m in setup.markets),
            v3_pools=len(setup.v3_pools),
            v2_pairs=len(setup.v2_pairs),
            executor=setup.executor,
            builder_share_bps=settings.builder_share_bps,
            min_profit_wei=settings.min_profit_wei,
        ),
    )
    if settings.submit == "bundle":
        keeper = await build_keeper(
            rpc,
            markets=setup.markets,
            v3_pools=setup.v3_pools,
            v2_pairs=setup.v2_pairs,
            connectors=setup.connectors,
            flash_pool=setup.flash_pool,
            execution=execution,
            signers=signers,
            builders=await services.builders(),
            chain_id=services.chain_id,
            ledger=ledger,
            dry_run=settings.dry_run,
        )
        return Components([keeper.strategy, keeper.tracker], [keeper.executor], coalesce_blocks=False)

    # public / private: the same strategy and action builder, single transactions instead of bundles.
    valuer = await build_valuer(
        rpc,
        v3_pools=setup.v3_pools,
        v2_pairs=setup.v2_pairs,
        connectors=setup.connectors,
        flash_pool=setup.flash_pool,
    )
    strategy = LiquidationStrategy(build_adapters(rpc, list(setup.markets)), valuer=valuer)
    strategy.action_builder = LiquidationActions(strategy, valuer.venues, execution)
    senders = await make_senders(ctx, signers)
    executor = SingleTxExecutor(
        rpc,
        senders,
        min_profit_wei=settings.min_profit_wei,
        ledger=ledger,
        dry_run=settings.dry_run,
        channel="mempool" if settings.submit == "public" else "private",
    )
    return Components(
        [strategy, InclusionTracker(executor, name="single-tx-inclusion")], [executor], coalesce_blocks=False
    )


async def make_senders(ctx: StrategyContext, signers: Sequence[TxSigner]) -> list[PublicSender]:
    """One PublicSender (with its own nonce manager) per signer, for KEEPER_SUBMIT=public|private."""
    from keeper.chain.flashbots_auth import FlashbotsSigner
    from keeper.executors.nonce import NonceManager
    from keeper.executors.public import PrivateRelay, PublicSender

    services = ctx.services
    assert isinstance(services, RunServices)
    mode = SendMode.PUBLIC if ctx.settings.submit == "public" else SendMode.PRIVATE
    relay: PrivateRelay | None = None
    if mode is SendMode.PRIVATE:
        if not services.relay_urls:
            raise ConfigError(
                [
                    f"{env_name('relay_urls')}: missing (KEEPER_SUBMIT=private sends to the first relay); "
                    "e.g. KEEPER_RELAY_URLS=https://rpc.flashbots.net"
                ]
            )
        relay = PrivateRelay(
            services.relay_urls[0], FlashbotsSigner(services.identity_key("to sign private transactions"))
        )
        services.push_close(relay.close)
    senders = []
    for signer in signers:
        sender = PublicSender(
            ctx.rpc,
            signer,
            NonceManager(ctx.rpc, signer.address),
            chain_id=services.chain_id,
            mode=mode,
            relay=relay,
        )
        await sender.start()
        senders.append(sender)
    return senders
