"""Which lending markets to track: from the devnet's deployment record, or mainnet presets.

Mainnet presets (Ethereum): Aave V3 Core, Spark (same code as Aave V3), Aave V2. `start_block` is where
the initial log scan begins (the pool's deployment block).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keeper.chain.rpc import RpcClient
from keeper.errors import ConfigError
from strategies.liquidations.protocols.aave_common import AaveAdapter
from strategies.liquidations.protocols.aave_v2 import AaveV2
from strategies.liquidations.protocols.aave_v3 import AaveV3


@dataclass(frozen=True)
class MarketConfig:
    name: str
    kind: str
    """"aave-v3" or "aave-v2": which adapter (Spark is "aave-v3")."""
    pool: str
    oracle: str
    start_block: int = 0


MAINNET_PRESETS: dict[str, MarketConfig] = {
    "aave-v3-ethereum": MarketConfig(
        "aave-v3-ethereum",
        "aave-v3",
        "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2",
        "0x54586bE62E3c3580375aE3723C145253060Ca0C2",
        16_291_127,
    ),
    "spark-ethereum": MarketConfig(
        "spark-ethereum",
        "aave-v3",
        "0xC13e21B648A5Ee794902342038FF3aDAB66BE987",
        "0x8105f69D9C41644c6A0803fDA7D03Aa70996cFD9",
        16_776_401,
    ),
    "aave-v2-ethereum": MarketConfig(
        "aave-v2-ethereum",
        "aave-v2",
        "0x7d2768dE32b0b80b7a3454c06BdAc94A69DDc7A9",
        "0xA50ba011c48153De246E5192C8f9258A2ba79Ca9",
        11_362_579,
    ),
}


def devnet_markets(deployment: Mapping[str, Any]) -> list[MarketConfig]:
    """The two Aave markets of a devnet deployment record (`deployments/devnet.json`'s "deployment")."""
    v3, v2 = deployment["aave_v3"], deployment["aave_v2"]
    return [
        MarketConfig("aave-v3", "aave-v3", v3["pool"], v3["oracle"], int(v3.get("start_block", 0))),
        MarketConfig("aave-v2", "aave-v2", v2["lending_pool"], v2["oracle"], int(v2.get("start_block", 0))),
    ]


def presets(names: list[str]) -> list[MarketConfig]:
    unknown = [n for n in names if n not in MAINNET_PRESETS]
    if unknown:
        raise ConfigError(
            [
                f"KEEPER_MARKETS: unknown market {n!r}; known: {', '.join(sorted(MAINNET_PRESETS))}"
                for n in unknown
            ]
        )
    return [MAINNET_PRESETS[n] for n in names]


def build_adapters(rpc: RpcClient, markets: list[MarketConfig]) -> list[AaveAdapter]:
    adapters: list[AaveAdapter] = []
    for m in markets:
        adapter: AaveAdapter
        if m.kind == "aave-v3":
            adapter = AaveV3(rpc, m.pool, m.oracle, start_block=m.start_block)
        elif m.kind == "aave-v2":
            adapter = AaveV2(rpc, m.pool, m.oracle, start_block=m.start_block)
        else:
            raise ConfigError([f"market {m.name}: unknown kind {m.kind!r} (aave-v3 or aave-v2)"])
        adapter.name = m.name
        adapters.append(adapter)
    return adapters
