"""Strategy names (as used in `KEEPER_STRATEGIES`) mapped to factories.

Factories are named as "module:callable" strings and imported only when a strategy is built, so loading
settings (which checks names against `available()`) never imports strategy code and its dependencies.

A factory takes a `StrategyContext` and returns, directly or as an awaitable:
- an object satisfying `keeper.core.interfaces.Strategy` (simple strategies such as `noop`), or
- `Components`: strategies plus the executors that carry out their actions (the liquidation keeper,
  wired in strategies/liquidations/wiring.py: its construction is async, since it loads venues from the
  chain, and it needs signers, builders and the ledger, which it asks `ctx.services` for).

`ctx.services` is provided by `keeper run` (`keeper.runner`); it opens the ledger and the builder client
lazily, so a strategy that needs neither never creates a ledger file or a relay session.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from keeper.errors import ConfigError

if TYPE_CHECKING:
    from keeper.chain.rpc import RpcClient
    from keeper.chain.signer import TxSigner
    from keeper.config import Settings
    from keeper.core.actions import SendMode
    from keeper.core.health import SendWatch
    from keeper.core.interfaces import Collector, Executor, Strategy
    from keeper.executors.builders import MultiBuilderClient
    from keeper.executors.public import PublicSender
    from keeper.ledger import Ledger

REGISTRY: dict[str, str] = {
    "noop": "strategies.noop:create",
    "liquidations": "strategies.liquidations.wiring:create",
    "peg": "strategies.peg.wiring:create",
}


class Services(Protocol):
    """What `keeper run` offers factories beyond settings and the RPC client (opened on first use)."""

    @property
    def chain_id(self) -> int: ...

    @property
    def devnet(self) -> Mapping[str, Any] | None:
        """The devnet deployment record (`deployments/devnet.json`'s "deployment") when KEEPER_DEVNET."""
        ...

    def signers(self) -> list[TxSigner]:
        """The funds key first, then the operator keys. ConfigError when no funds key is configured."""
        ...

    async def ledger(self) -> Ledger: ...

    async def builders(self) -> MultiBuilderClient:
        """The relays (bundle mode). ConfigError when no relay or no relay identity is configured."""
        ...

    async def senders(self, mode: SendMode) -> list[PublicSender]:
        """One started PublicSender per signer (KEEPER_SUBMIT=public|private), closed on the way out."""
        ...

    @property
    def send_watch(self) -> SendWatch:
        """Where executors report whether builders could be reached (`/health`)."""
        ...

    @property
    def event_sink(self) -> Callable[[str, dict[str, Any]], None] | None:
        """Receives executors' events (sent, included, ...) when a front end wants them (`keeper demo`)."""
        ...

    @property
    def mevshare(self) -> tuple[str | None, tuple[str, ...]]:
        """(the MEV-Share hint stream URL or None, the builders that take mev_sendBundle)."""
        ...

    async def shared(self, key: str, build: Callable[[], Awaitable[Any]]) -> Any:
        """The object built once under `key` for every strategy that asks (the first caller's `build`
        makes it). Strategies that send from the same keys share one executor this way: two executors
        handling one action type, or two nonce trackers for one account, would be a wiring error."""
        ...


@dataclass(frozen=True, slots=True)
class StrategyContext:
    """What a strategy factory may use to build its strategy."""

    settings: Settings
    rpc: RpcClient
    services: Services | None = None
    """None outside `keeper run` (e.g. a test building a simple strategy)."""


@dataclass
class Components:
    """Strategies and the executors for their actions, as a factory may return them."""

    strategies: list[Strategy] = field(default_factory=list)
    executors: list[Executor] = field(default_factory=list)
    collectors: list[Collector] = field(default_factory=list)
    """Event sources a strategy needs besides new blocks (e.g. a filtered mempool subscription)."""


StrategyFactory = Callable[[StrategyContext], Any]


def available() -> frozenset[str]:
    return frozenset(REGISTRY)


def factory(name: str) -> StrategyFactory:
    try:
        target = REGISTRY[name]
    except KeyError:
        raise ConfigError(
            [f"KEEPER_STRATEGIES: unknown strategy {name!r} (known: {', '.join(sorted(REGISTRY))})"]
        ) from None
    module_name, attr = target.split(":", 1)
    return cast(StrategyFactory, getattr(importlib.import_module(module_name), attr))


def _merge(into: Components, result: object, name: str) -> None:
    if isinstance(result, Components):
        into.strategies.extend(result.strategies)
        # An executor shared by several strategies (`Services.shared`) is listed once.
        into.executors.extend(e for e in result.executors if all(e is not x for x in into.executors))
        into.collectors.extend(result.collectors)
    elif hasattr(result, "process_event") and hasattr(result, "name"):
        into.strategies.append(cast("Strategy", result))
    else:
        raise TypeError(f"strategy factory {name!r} returned {type(result).__name__}")


async def build_components(names: Sequence[str], ctx: StrategyContext) -> Components:
    """Every named strategy's components, merged (async factories awaited)."""
    out = Components()
    for name in names:
        result = factory(name)(ctx)
        if inspect.isawaitable(result):
            result = await result
        _merge(out, result, name)
    return out


def build_strategies(names: Sequence[str], ctx: StrategyContext) -> list[Strategy]:
    """Synchronous construction of simple strategies (no executors, no async set-up)."""
    out = Components()
    for name in names:
        result = factory(name)(ctx)
        if inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if callable(close):
                close()  # a never-awaited coroutine would warn
            raise ConfigError([f"KEEPER_STRATEGIES: {name!r} needs `keeper run` (async set-up, executors)"])
        _merge(out, result, name)
    if out.executors:
        raise ConfigError([f"KEEPER_STRATEGIES: {', '.join(names)} bring executors: use `keeper run`"])
    return out.strategies
