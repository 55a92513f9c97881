"""Strategy names (as used in `KEEPER_STRATEGIES`) mapped to factories.

Factories are named as "module:callable" strings and imported only when a strategy is built, so loading
settings (which checks names against `available()`) never imports strategy code and its dependencies.
A factory takes a `StrategyContext` and returns an object satisfying `keeper.core.interfaces.Strategy`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from keeper.errors import ConfigError

if TYPE_CHECKING:
    from keeper.chain.rpc import RpcClient
    from keeper.config import Settings
    from keeper.core.interfaces import Strategy

REGISTRY: dict[str, str] = {
    "noop": "strategies.noop:create",
}


@dataclass(frozen=True, slots=True)
class StrategyContext:
    """What a strategy factory may use to build its strategy."""

    settings: Settings
    rpc: RpcClient


StrategyFactory = Callable[[StrategyContext], "Strategy"]


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


def build_strategies(names: Sequence[str], ctx: StrategyContext) -> list[Strategy]:
    return [factory(name)(ctx) for name in names]
