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
  every relay, inclusion tracking, ledger); `public`/`private`: `SingleTxExecutor` below.
`KEEPER_DRY_RUN=true` does everything but send (simulations and the ledger's opportunities included).

`SingleTxExecutor` (protocol-keeper mode; simple on purpose). Limits, stated honestly:
- it sends a `SubmitBundle` of exactly one of our own transactions (`TxIntent`) or a `SendTx`, as a
  normal transaction through `PublicSender` (eth_sendRawTransaction, or eth_sendPrivateTransaction to the
  first relay); bundles with someone else's transaction (back-runs) cannot be expressed and are skipped;
- the profit check is a local `eth_call` at the head (not at the target block, not the relay's
  simulation): net = profit decoded from the call's return (profit, builderPaid) valued in wei, minus
  estimated gas x (next base fee + priority fee); below the minimum nothing is sent. The fee cap of the
  transaction and of every replacement is the price per gas at which the net profit would fall to the
  minimum, so fee bumps can never turn it into a loss beyond the gas of a revert;
- the liquidation's calldata expires after its target block (the contract's `maxBlock`), so a public
  transaction still pending after it is replaced with a no-op (`PublicSender.cancel`): that costs 21000
  gas; one that lands late reverts (Expired) and costs its gas. Both are recorded in the ledger;
- one opportunity is in flight at a time; senders are used round-robin, each with its own nonce manager.
Keys are never logged: signers, builder clients and senders print addresses only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from eth_abi.abi import decode

from keeper import __version__
from keeper.chain.redact import redact_url
from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.chain.signer import TxSigner
from keeper.config import Settings, env_name, funds_account
from keeper.core.actions import Action, SendMode, SendTx, SubmitBundle, TxIntent
from keeper.core.events import NewBlock
from keeper.errors import ConfigError, ExecutionReverted, KeeperError, RelayError, RpcError
from keeper.executors.bundle_executor import InclusionTracker, ledger_opportunity
from keeper.logs import kv, scrub, setup_logging
from keeper.strategies_registry import Components, StrategyContext, build_components

if TYPE_CHECKING:
    from keeper.executors.bundles import MultiBuilderClient
    from keeper.executors.public import PublicSender, TrackedTx
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
    from keeper.devnet.deployer import encode_call

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


# ---- single transactions (KEEPER_SUBMIT=public|private) -----------------------------------------------


@dataclass
class InFlight:
    base_id: str
    """The strategy's opportunity id."""
    opportunity_id: str
    """The ledger's id for this episode (`base_id`, then `base_id#2`, ... after each settlement)."""
    target_block: int
    sender: PublicSender
    tracked: TrackedTx
    profit_token: str
    profit_to_wei: tuple[int, int]
    cancelled: bool = False


@dataclass
class SingleTxStats:
    actions: int = 0
    simulated: int = 0
    simulation_failed: int = 0
    below_minimum: int = 0
    skipped: int = 0
    sent: int = 0
    included: int = 0
    reverted: int = 0
    cancelled: int = 0
    dropped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def count(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


class SingleTxExecutor:
    """`SubmitBundle` of one `TxIntent` (or `SendTx`) -> one transaction through a PublicSender.

    See the module docstring for what it checks and its limits.
    """

    name = "single-tx"

    def __init__(
        self,
        rpc: RpcClient,
        senders: Sequence[PublicSender],
        *,
        min_profit_wei: int,
        ledger: Ledger | None = None,
        dry_run: bool = False,
        channel: str = "mempool",
    ) -> None:
        if not senders:
            raise ValueError("the single-tx executor needs at least one sender")
        self.rpc = rpc
        self.senders = list(senders)
        self.min_profit_wei = min_profit_wei
        self.ledger = ledger
        self.dry_run = dry_run
        self.channel = channel
        """Recorded as the submission's "builder" in the ledger (mempool / private)."""
        self.stats = SingleTxStats()
        self.in_flight: dict[str, InFlight] = {}
        self._recorded: set[str] = set()
        self._episodes: dict[str, int] = {}
        self._next = itertools.cycle(range(len(self.senders)))

    async def execute(self, action: Action) -> None:
        self.stats.actions += 1
        if isinstance(action, SendTx):
            intent, target, minimum = action.tx, 0, action.min_profit_wei
            token, to_wei = "", (1, 1)
        elif len(action.txs) == 1 and isinstance(action.txs[0], TxIntent):
            intent, target, minimum = action.txs[0], action.target_block, action.min_profit_wei
            token, to_wei = action.profit_token, action.profit_to_wei
        else:
            self._skip(action.opportunity_id, "bundle with foreign or several txs needs KEEPER_SUBMIT=bundle")
            return
        base_id = action.opportunity_id
        if base_id in self.in_flight:
            self.stats.skipped += 1  # one transaction per opportunity at a time
            return
        episode = self._episodes.get(base_id, 1)
        opp_id = base_id if episode == 1 else f"{base_id}#{episode}"
        minimum = self.min_profit_wei if minimum is None else minimum
        await self._record_opportunity(action, opp_id)
        sender = self.senders[next(self._next)]
        # 1. local simulation: revert -> nothing sent; else (profit, builderPaid) from our executor.
        call = {
            "from": sender.address,
            "to": intent.to,
            "data": "0x" + intent.data.hex(),
            "value": hex(intent.value),
        }
        try:
            raw = await self.rpc.call("eth_call", [call, "latest"])
            gas = intent.gas_limit if intent.gas_limit is not None else await sender.estimate_gas(intent)
        except ExecutionReverted as exc:
            await self._sim_failed(opp_id, target, self._revert_reason(exc))
            return
        self.stats.simulated += 1
        if isinstance(action, SendTx):
            profit_wei, builder_paid = action.expected_profit_wei, 0
        else:
            try:
                profit, builder_paid = (
                    int(x) for x in decode(["uint256", "uint256"], bytes.fromhex(raw[2:]))
                )
            except Exception:
                await self._sim_failed(opp_id, target, "call did not return (profit, builderPaid)")
                return
            profit_wei = profit * to_wei[0] // to_wei[1]
        base_fee = sender.next_base_fee or 0
        price = base_fee + sender.priority_fee
        net = profit_wei - gas * price
        await self._ledger_sim(opp_id, target, True, profit_wei + builder_paid, gas, builder_paid, net, None)
        if net < minimum:
            self.stats.below_minimum += 1
            self.stats.count("below minimum after simulation")
            return
        if self.dry_run:
            log.info("dry run: would send", extra=kv(id=opp_id, net_wei=net, channel=self.channel))
            return
        target = max(target, sender.head + 1)
        if self.ledger is not None and not await self.ledger.claim_send(opp_id, target):
            self.stats.skipped += 1
            return
        # The most per gas we may ever pay (bumps included) and still clear the minimum.
        cap = max((profit_wei - minimum) // gas, 1)
        try:
            tracked = await sender.send(TxIntent(intent.to, intent.data, intent.value, gas), max_fee_cap=cap)
        except (KeeperError, RelayError) as exc:
            await self._record_submission(opp_id, target, ok=False, error=str(exc)[:500])
            self.stats.count(f"send failed: {type(exc).__name__}")
            log.warning("send failed", extra=kv(id=opp_id, error=str(exc)[:200]))
            return
        self.stats.sent += 1
        self.in_flight[base_id] = InFlight(base_id, opp_id, target, sender, tracked, token, to_wei)
        await self._record_submission(opp_id, target, ok=True, tx_hash=tracked.current.hash)
        log.info(
            "transaction sent",
            extra=kv(id=opp_id, hash=tracked.current.hash, net_wei=net, cap=cap, channel=self.channel),
        )

    def _skip(self, opp_id: str, reason: str) -> None:
        self.stats.skipped += 1
        self.stats.count(reason)
        log.warning("action skipped", extra=kv(id=opp_id, reason=reason))

    @staticmethod
    def _revert_reason(exc: ExecutionReverted) -> str:
        from keeper.executors.executor_contract import decode_executor_error

        decoded = decode_executor_error(exc.revert_data)
        if decoded is not None:
            name, args = decoded
            return f"{name}{args}" if args else name
        return exc.message or "execution reverted"

    async def on_block(self, block: NewBlock) -> None:
        """Drives every sender (inclusion, bumps, gaps), then settles or cancels what we sent."""
        from keeper.executors.public import SendError, TxState

        for sender in self.senders:
            try:
                await sender.on_new_block(block.number)
            except (RpcError, KeeperError) as exc:
                log.warning("sender update failed", extra=kv(sender=sender.address, error=str(exc)[:200]))
        for opp_id, f in list(self.in_flight.items()):
            t = f.tracked
            if t.state is TxState.MINED and t.receipt is not None:
                await self._settled(f, t.receipt, block, noop=t.cancelled)
                del self.in_flight[opp_id]
            elif t.state is TxState.DROPPED:
                self.stats.dropped += 1
                del self.in_flight[opp_id]
                self._episodes[f.base_id] = self._episodes.get(f.base_id, 1) + 1
                await self._set_status(
                    f.opportunity_id, "gone", "nonce used by another transaction of this key"
                )
            elif f.target_block and block.number >= f.target_block and not f.cancelled:
                # Calldata expires after its target block: landing later would only revert.
                f.cancelled = True
                try:
                    await f.sender.cancel(t.nonce)
                except (SendError, KeyError, KeeperError) as exc:
                    log.info("cancel not possible", extra=kv(id=opp_id, error=str(exc)[:200]))

    async def _settled(self, f: InFlight, receipt: dict[str, Any], block: NewBlock, *, noop: bool) -> None:
        from keeper.executors.executor_contract import liquidated_events
        from keeper.ledger import Inclusion

        success = receipt.get("status") == "0x1" and not noop
        gas_used = hex_to_int(receipt["gasUsed"])
        price = hex_to_int(receipt["effectiveGasPrice"])
        events = liquidated_events(receipt) if success else []
        profit = sum(e.profit for e in events)
        if noop:
            self.stats.cancelled += 1
        elif success:
            self.stats.included += 1
        else:
            self.stats.reverted += 1
        log.info(
            "transaction settled",
            extra=kv(
                id=f.opportunity_id, hash=receipt.get("transactionHash"), success=success, cancelled=noop
            ),
        )
        if self.ledger is not None:
            await self.ledger.record_inclusion(
                Inclusion(
                    opportunity_id=f.opportunity_id,
                    block_number=hex_to_int(receipt["blockNumber"]),
                    tx_hash=str(receipt["transactionHash"]),
                    gas_used=gas_used,
                    effective_gas_price=price,
                    gas_cost_wei=gas_used * price,
                    builder_payment_wei=sum(e.coinbase_paid for e in events),
                    realized_profit=profit,
                    realized_profit_asset=f.profit_token or "ETH",
                    included_at=block.timestamp,
                    success=success,
                    builder=self.channel,
                    realized_profit_wei=profit * f.profit_to_wei[0] // f.profit_to_wei[1],
                )
            )
        # A later detection of the same position (partial liquidation, or after a cancel) is a new episode.
        self._episodes[f.base_id] = self._episodes.get(f.base_id, 1) + 1

    # -- ledger ------------------------------------------------------------------------------------------

    async def _record_opportunity(self, action: SubmitBundle | SendTx, opp_id: str) -> None:
        if self.ledger is None or opp_id in self._recorded:
            return
        self._recorded.add(opp_id)
        await self.ledger.record_opportunity(ledger_opportunity(opp_id, action))

    async def _ledger_sim(
        self,
        opp_id: str,
        target: int,
        ok: bool,
        profit_wei: int | None,
        gas: int | None,
        builder_paid: int | None,
        net: int | None,
        error: str | None,
    ) -> None:
        from keeper.ledger import Simulation

        if self.ledger is None:
            return
        await self.ledger.record_simulation(
            Simulation(
                opportunity_id=opp_id,
                target_block=target,
                ok=ok,
                simulated_profit_wei=None if profit_wei is None else max(profit_wei, 0),
                gas_used=gas,
                builder_payment_wei=builder_paid,
                net_profit_wei=net,
                error=error,
            )
        )

    async def _sim_failed(self, opp_id: str, target: int, reason: str) -> None:
        self.stats.simulation_failed += 1
        self.stats.count(f"simulation failed: {reason}")
        await self._ledger_sim(opp_id, target, False, None, None, None, None, reason[:500])

    async def _record_submission(
        self, opp_id: str, target: int, *, ok: bool, tx_hash: str | None = None, error: str | None = None
    ) -> None:
        from keeper.ledger import Submission

        if self.ledger is None:
            return
        await self.ledger.record_submission(
            Submission(
                opportunity_id=opp_id,
                target_block=target,
                builder=self.channel,
                ok=ok,
                bundle_hash=tx_hash,
                error=error,
            )
        )

    async def _set_status(self, opp_id: str, status: str, reason: str) -> None:
        from keeper.ledger import Status

        if self.ledger is not None:
            await self.ledger.set_status(opp_id, Status(status), reason)
