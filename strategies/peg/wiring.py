"""The peg strategy's wiring: the one place that builds it (`KEEPER_STRATEGIES=peg`).

    settings (+ the devnet record when KEEPER_DEVNET) -> pegs ([[peg]] tables, presets, the devnet's)
        -> venues (Uniswap V3 pools, V2 pairs, Balancer stable pools) -> strategy + action builder
        -> the shared submit executor (`keeper.executors.submission`: the liquidations use the same one)
        -> a mempool collector for the swaps that move a pegged pool (bundle mode, KEEPER_PEG_BACKRUNS)

Before anything runs: every peg's tokens are known, every peg has at least two pools to trade between,
every rate target reads, the executor contract is ours and every signer may call it. Each problem is one
line naming the `[[peg]]` entry (or the setting) and what is wrong; `keeper run` exits with code 2.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from keeper.chain.rpc import RpcClient
from keeper.chain.swaps import SwapDecoder, SwapProtocol
from keeper.collectors.mempool import PendingTxCollector
from keeper.config import Settings, env_name
from keeper.core.interfaces import Collector, Executor
from keeper.errors import ConfigError
from keeper.executors.bundle_executor import BundleExecutor
from keeper.executors.single_tx import SingleTxExecutor
from keeper.executors.submission import (
    MISSING_EXECUTOR,
    TokenPricer,
    block_gas_budget,
    check_executor_access,
    devnet_executor,
    submit_executor,
)
from keeper.logs import kv
from keeper.strategies_registry import Components, StrategyContext
from strategies.peg.actions import PegActions, PegExecutionConfig
from strategies.peg.pegs import (
    MAINNET_TOKENS,
    Peg,
    PegConfigError,
    TargetReader,
    check_venues,
    devnet_pegs,
    load_pegs,
    preset_pegs,
)
from strategies.peg.pending import PendingSwaps
from strategies.peg.strategy import PegStrategy
from strategies.venues.balancer_stable import BalancerStableVenue
from strategies.venues.base import RouteKind, Venue
from strategies.venues.lenders import FlashLiquidity, read_flash_premium_bps
from strategies.venues.loading import VenueAddresses, devnet_venue_addresses, load_venues
from strategies.venues.router import best_route

log = logging.getLogger("strategies.peg")

MAINNET_SWAP_ROUTER02 = "0x68b3465833fb72A70ecDF485E0e4C7bD8665Fc45"
"""Uniswap's SwapRouter02 (V2 and V3 swaps): watched for pending swaps next to KEEPER_ROUTER_V3/V2."""


@dataclass(frozen=True)
class PegSetup:
    pegs: list[Peg]
    addresses: VenueAddresses
    executor: str
    weth: str
    flash_pool: str
    routers: Mapping[str, SwapProtocol]
    """Router/Vault address (lowercase) -> protocol: whose pending swaps are decoded."""
    connectors: tuple[str, ...] = ()
    """Tokens the builder's payment may pass through on its way to WETH (e.g. USDC)."""


def _unique(pegs: Sequence[Peg]) -> list[Peg]:
    seen: dict[str, Peg] = {}
    problems: list[str] = []
    for peg in pegs:
        if peg.name in seen:
            problems.append(f"{peg.label}: the name {peg.name!r} is used twice (also {seen[peg.name].label})")
        else:
            seen[peg.name] = peg
    if problems:
        raise PegConfigError(problems)
    return list(seen.values())


def devnet_peg_setup(devnet: Mapping[str, Any], tables: Sequence[Mapping[str, Any]] = ()) -> PegSetup:
    """The devnet's pegs (plus any `[[peg]]` tables over its tokens), pools, executor and routers."""
    tokens = devnet["tokens"]
    executor = devnet_executor(devnet)
    addresses = devnet_venue_addresses(devnet)
    declared = devnet_pegs(devnet) + (load_pegs(tables, tokens) if tables else [])
    routers: dict[str, SwapProtocol] = {
        str(devnet["uniswap_v2"]["router"]).lower(): "uniswap_v2",
        str(devnet["uniswap_v3"]["swap_router"]).lower(): "uniswap_v3",
    }
    if addresses.balancer_vault:
        routers[addresses.balancer_vault.lower()] = "balancer_v2"
    return PegSetup(
        pegs=_unique(declared),
        addresses=addresses,
        executor=executor,
        weth=str(tokens["WETH"]["address"]),
        flash_pool=str(devnet["aave_v3"]["pool"]),
        routers=routers,
        connectors=(str(tokens["USDC"]["address"]),),
    )


def peg_setup(settings: Settings, devnet: Mapping[str, Any] | None) -> PegSetup:
    """Pegs, pools and addresses from the devnet record or the settings (ConfigError naming each problem)."""
    if devnet is not None:
        return devnet_peg_setup(devnet, settings.peg)
    problems: list[str] = []
    presets = []
    try:
        presets = preset_pegs(settings.peg_presets)
    except PegConfigError as exc:
        problems.extend(f"{env_name('peg_presets')}: {p}" for p in exc.problems)
    pegs: list[Peg] = [p for preset in presets for p in preset.pegs]
    try:
        pegs += load_pegs(settings.peg, MAINNET_TOKENS)
    except PegConfigError as exc:
        problems.extend(exc.problems)
    if not pegs and not problems:
        problems.append(
            f"{env_name('peg_presets')} / [[peg]]: no peg to watch; e.g. KEEPER_PEG_PRESETS=wsteth-weth"
        )
    if settings.executor_address is None:
        problems.append(MISSING_EXECUTOR)
    if problems:
        raise ConfigError(problems)
    assert settings.executor_address is not None

    def merged(configured: Sequence[str], attr: str) -> list[str]:
        out = {a.lower(): a for a in configured}
        for preset in presets:
            for a in getattr(preset, attr):
                out.setdefault(a.lower(), a)
        return list(out.values())

    addresses = VenueAddresses(
        v3_pools=merged(settings.v3_pools, "v3_pools"),
        v2_pairs=merged(settings.v2_pairs, "v2_pairs"),
        balancer_vault=settings.balancer_vault,
        balancer_pools=merged(settings.balancer_pools, "balancer_pools"),
    )
    return PegSetup(
        pegs=_unique(pegs),
        addresses=addresses,
        executor=settings.executor_address,
        weth=settings.weth_address,
        flash_pool=settings.flash_pool,
        connectors=tuple(c for c in settings.connectors if c.lower() != settings.weth_address.lower()),
        routers={
            settings.router_v2.lower(): "uniswap_v2",
            settings.router_v3.lower(): "uniswap_v3",
            MAINNET_SWAP_ROUTER02.lower(): "uniswap_v3",
            settings.balancer_vault.lower(): "balancer_v2",
        },
    )


def balancer_tokens(venues: Sequence[Venue]) -> frozenset[str]:
    """Tokens (lowercase) held in the Balancer pools we track: what the Vault can flash-lend."""
    out: set[str] = set()
    for venue in venues:
        if isinstance(venue, BalancerStableVenue):
            for a, b in venue.pairs():
                out |= {a, b}
    return frozenset(out)


def venue_pricer(strategy: PegStrategy, setup: PegSetup) -> TokenPricer:
    """(num, den) valuing a token's base units in wei at the exact Uniswap V3 quote of one whole token
    into WETH, read now (the executor uses it for profits found on chain after a restart)."""
    decimals = {p.token_a.lower(): p.decimals_a for p in setup.pegs} | {
        p.token_b.lower(): p.decimals_b for p in setup.pegs
    }

    async def to_wei(token: str) -> tuple[int, int]:
        if token.lower() == setup.weth.lower():
            return (1, 1)
        if any(v.block is None for v in strategy.venues):
            await strategy.refresh(await strategy.rpc.block_number())
        unit = 10 ** decimals.get(token.lower(), 18)
        v3 = [v for v in strategy.venues if v.kind is RouteKind.UNISWAP_V3]
        route = best_route(v3, token, setup.weth, unit, via=list(setup.connectors), skip_errors=True)
        return (route.amount_out, unit) if route is not None and route.amount_out > 0 else (0, 1)

    return to_wei


@dataclass
class PegKeeper:
    """What the wiring built: tests and the CLI look inside."""

    strategy: PegStrategy
    actions: PegActions
    executor: BundleExecutor | SingleTxExecutor | None
    setup: PegSetup
    collectors: list[Collector] = field(default_factory=list)

    def components(self) -> Components:
        executors: list[Executor] = [self.executor] if self.executor is not None else []
        return Components([self.strategy], executors, list(self.collectors))


async def build_strategy(
    rpc: RpcClient,
    setup: PegSetup,
    *,
    builder_share_bps: int,
    min_profit_wei: int,
    pending: PendingSwaps | None = None,
) -> tuple[PegStrategy, PegActions]:
    """Venues loaded, pegs checked against them and their targets read once (PegConfigError otherwise),
    the strategy and its action builder."""
    venues = await load_venues(rpc, setup.addresses)
    for warning in check_venues(setup.pegs, venues):  # PegConfigError for a bad `venues` filter
        log.warning(warning)
    targets = TargetReader(setup.pegs)
    await targets.check(rpc)
    tokens = sorted({t for p in setup.pegs for t in (p.token_a, p.token_b)}, key=str.lower)
    flash = FlashLiquidity(tokens, setup.addresses.balancer_vault, setup.flash_pool)
    await flash.load(rpc)
    config = PegExecutionConfig(
        executor=setup.executor,
        weth=setup.weth,
        builder_share_bps=builder_share_bps,
        min_profit_wei=min_profit_wei,
        aave_premium_bps=await read_flash_premium_bps(rpc, setup.flash_pool),
        balancer_lends=balancer_tokens(venues),
        connectors=tuple(setup.connectors),
    )
    actions = PegActions(config, flash=flash)
    strategy = PegStrategy(
        rpc, setup.pegs, venues, targets=targets, actions=actions, pending=pending, flash=flash
    )
    return strategy, actions


async def build_keeper(ctx: StrategyContext) -> PegKeeper:
    services = ctx.services
    if services is None:
        raise ConfigError(["KEEPER_STRATEGIES: peg runs only under `keeper run`"])
    settings, rpc = ctx.settings, ctx.rpc
    setup = peg_setup(settings, services.devnet)
    signers = services.signers()
    await check_executor_access(rpc, setup.executor, signers, builder_share_bps=settings.builder_share_bps)
    backruns = settings.peg_backruns and settings.submit == "bundle"
    pending = PendingSwaps(SwapDecoder(setup.routers, weth=setup.weth)) if backruns else None
    strategy, actions = await build_strategy(
        rpc,
        setup,
        builder_share_bps=settings.builder_share_bps,
        min_profit_wei=settings.min_profit_wei,
        pending=pending,
    )
    gas_budget = await block_gas_budget(rpc, settings.block_gas_budget)
    executor = await submit_executor(
        ctx,
        executor_address=setup.executor,
        gas_budget=gas_budget,
        token_to_wei=venue_pricer(strategy, setup),
    )
    collectors: list[Collector] = []
    if pending is not None:
        collectors.append(PendingTxCollector(settings.ws_url, name="peg-swaps", filter=pending.filter))
    log.info(
        "peg",
        extra=kv(
            pegs=",".join(p.name for p in setup.pegs),
            venues=",".join(
                f"{v.name}:{sum(len(v.pools(*pair)) for pair in v.pairs())}" for v in strategy.venues
            ),
            executor=setup.executor,
            backruns=backruns,
        ),
    )
    return PegKeeper(strategy, actions, executor, setup, collectors)


async def create(ctx: StrategyContext) -> Components:
    """The `peg` registry entry."""
    return (await build_keeper(ctx)).components()
