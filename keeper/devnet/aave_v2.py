"""Deploy an Aave V2 market (the real @aave/protocol-v2 1.0.1 bytecode) on the devnet.

Order: LendingPoolAddressesProvider (owner = deployer; pool and emergency admin = deployer), the
libraries (ReserveLogic, GenericLogic, then ValidationLogic which links GenericLogic), LendingPool and
LendingPoolConfigurator behind the provider's proxies, LendingPoolCollateralManager (liquidationCall
is delegatecalled into it), AaveOracle, LendingRateOracle, AaveProtocolDataProvider, then per reserve
its own AToken / StableDebtToken / VariableDebtToken implementations (this version bakes pool, asset
and treasury into the implementation's constructor; `initReserve` wraps each in a proxy), a rate
strategy, `initReserve`, and the risk settings.

Market choices (numbers in `keeper.devnet.aave_params`):
- Prices are in ETH with 18 decimals (base currency = WETH). AaveOracle(assets, sources, fallback=0,
  WETH) with `eth_feeds` (symbol -> asset/ETH Chainlink-compatible feed, 18 decimals; V2's AaveOracle
  reads only `latestAnswer()`); WETH has no feed, the oracle answers 1e18 for it. No fallback oracle:
  a feed answering <= 0 makes price reads revert.
- The LendingRateOracle (needed: the rate strategy reads the market borrow rate as the base of the
  stable rate on every rate update) gets a market borrow rate per asset.
- Close factor 50% whatever the health factor, flash-loan premium 9 bps: both constants in this
  version. No liquidation protocol fee, no e-mode.
- The data provider is registered as on mainnet, under id 0x01 followed by 31 zero bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address

from keeper.devnet.aave_params import V2_RESERVES, RateStrategyV2, ReserveParamsV2
from keeper.devnet.aave_v3 import (
    DEFAULT_TREASURY,
    ZERO,
    ReserveTokens,
    deploy_rate_strategies,
    read,
    reserve_tokens,
    resolve_params,
    send,
)
from keeper.devnet.artifacts import Artifact, load_artifact
from keeper.devnet.deployer import Deployer
from keeper.devnet.model import TokenInfo
from keeper.errors import DevnetError

MARKET_ID = "Aave genesis market (devnet)"
DATA_PROVIDER_ID = b"\x01" + b"\x00" * 31

_V2 = "@aave/protocol-v2/artifacts/contracts"


def v2_artifact(path: str) -> Artifact:
    """`path` below protocol-v2's artifacts/contracts."""
    return load_artifact(f"{_V2}/{path}")


@dataclass(frozen=True)
class AaveV2Market:
    lending_pool: str
    """The LendingPool proxy."""
    lending_pool_addresses_provider: str
    lending_pool_configurator: str
    collateral_manager: str
    oracle: str
    lending_rate_oracle: str
    data_provider: str
    treasury: str
    weth: str
    reserves: Mapping[str, ReserveTokens] = field(default_factory=dict)
    start_block: int = 0
    deploy_txs: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "lending_pool": self.lending_pool,
            "lending_pool_addresses_provider": self.lending_pool_addresses_provider,
            "lending_pool_configurator": self.lending_pool_configurator,
            "collateral_manager": self.collateral_manager,
            "oracle": self.oracle,
            "lending_rate_oracle": self.lending_rate_oracle,
            "data_provider": self.data_provider,
            "treasury": self.treasury,
            "weth": self.weth,
            "reserves": {sym: r.to_json() for sym, r in self.reserves.items()},
            "start_block": self.start_block,
            "deploy_txs": self.deploy_txs,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AaveV2Market:
        keys = (
            "lending_pool",
            "lending_pool_addresses_provider",
            "lending_pool_configurator",
            "collateral_manager",
            "oracle",
            "lending_rate_oracle",
            "data_provider",
            "treasury",
            "weth",
        )
        try:
            addrs = {k: to_checksum_address(data[k]) for k in keys}
            return cls(
                **addrs,
                reserves={s: ReserveTokens.from_json(r) for s, r in data["reserves"].items()},
                start_block=int(data.get("start_block", 0)),
                deploy_txs=int(data.get("deploy_txs", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DevnetError(f"bad Aave V2 market record: {exc!r}") from None


async def _deploy_core(d: Deployer, admin: str) -> tuple[str, str, str]:
    """Provider, LendingPool proxy and LendingPoolConfigurator proxy."""
    provider = (
        await d.deploy(
            v2_artifact(
                "protocol/configuration/LendingPoolAddressesProvider.sol/LendingPoolAddressesProvider.json"
            ),
            MARKET_ID,
        )
    ).address
    await send(d, provider, "setPoolAdmin(address)", admin)
    await send(d, provider, "setEmergencyAdmin(address)", admin)

    logic = "protocol/libraries/logic"
    reserve_logic = (await d.deploy(v2_artifact(f"{logic}/ReserveLogic.sol/ReserveLogic.json"))).address
    generic_logic = (await d.deploy(v2_artifact(f"{logic}/GenericLogic.sol/GenericLogic.json"))).address
    validation_logic = (
        await d.deploy(
            v2_artifact(f"{logic}/ValidationLogic.sol/ValidationLogic.json"),
            libraries={"GenericLogic": generic_logic},
        )
    ).address

    pool_impl = (
        await d.deploy(
            v2_artifact("protocol/lendingpool/LendingPool.sol/LendingPool.json"),
            libraries={"ReserveLogic": reserve_logic, "ValidationLogic": validation_logic},
        )
    ).address
    await send(d, pool_impl, "initialize(address)", provider)  # lock the impl
    await send(d, provider, "setLendingPoolImpl(address)", pool_impl)
    (pool,) = await read(d, provider, "getLendingPool()", ["address"])

    conf_impl = (
        await d.deploy(
            v2_artifact("protocol/lendingpool/LendingPoolConfigurator.sol/LendingPoolConfigurator.json")
        )
    ).address
    await send(d, provider, "setLendingPoolConfiguratorImpl(address)", conf_impl)
    (configurator,) = await read(d, provider, "getLendingPoolConfigurator()", ["address"])
    return provider, to_checksum_address(pool), to_checksum_address(configurator)


async def deploy_aave_v2(
    d: Deployer,
    tokens: Mapping[str, TokenInfo],
    eth_feeds: Mapping[str, str],
    *,
    params: Mapping[str, ReserveParamsV2] | None = None,
    treasury: str | None = None,
) -> AaveV2Market:
    """Deploys and configures the market. `tokens` must include WETH (the oracle's base currency);
    `eth_feeds` maps every other symbol to its asset/ETH feed (18 decimals).

    `params` overrides `aave_params.V2_RESERVES` per symbol. With the six default reserves: 69 transactions.
    """
    if "WETH" not in tokens:
        raise DevnetError("Aave V2 prices are in ETH: `tokens` must include WETH")
    missing_feeds = [s for s in tokens if s != "WETH" and s not in eth_feeds]
    if missing_feeds:
        raise DevnetError(f"no ETH price feed for {missing_feeds}")
    reserve_params: dict[str, ReserveParamsV2] = resolve_params(tokens, V2_RESERVES, params)
    treasury = to_checksum_address(treasury or DEFAULT_TREASURY)
    weth = tokens["WETH"].address
    admin = d.sender
    txs0 = d.txs_sent
    start_block = await d.rpc.block_number() + 1

    provider, pool, configurator = await _deploy_core(d, admin)

    manager = (
        await d.deploy(
            v2_artifact(
                "protocol/lendingpool/LendingPoolCollateralManager.sol/LendingPoolCollateralManager.json"
            )
        )
    ).address
    await send(d, provider, "setLendingPoolCollateralManager(address)", manager)

    priced = [s for s in tokens if s != "WETH"]
    assets = [tokens[s].address for s in priced]
    oracle = (
        await d.deploy(
            v2_artifact("misc/AaveOracle.sol/AaveOracle.json"),
            assets,
            [to_checksum_address(eth_feeds[s]) for s in priced],
            ZERO,
            weth,
        )
    ).address
    await send(d, provider, "setPriceOracle(address)", oracle)
    (prices,) = await read(d, oracle, "getAssetsPrices(address[])", ["uint256[]"], assets)
    bad = [s for s, p in zip(priced, prices, strict=True) if p <= 0]
    if bad:
        raise DevnetError(f"feeds answer no positive price for {bad}")

    rate_oracle = (
        await d.deploy(v2_artifact("mocks/oracle/LendingRateOracle.sol/LendingRateOracle.json"))
    ).address
    for sym, t in tokens.items():
        await send(
            d,
            rate_oracle,
            "setMarketBorrowRate(address,uint256)",
            t.address,
            reserve_params[sym].market_borrow_rate,
        )
    await send(d, provider, "setLendingRateOracle(address)", rate_oracle)

    data_provider = (
        await d.deploy(
            v2_artifact("misc/AaveProtocolDataProvider.sol/AaveProtocolDataProvider.json"), provider
        )
    ).address
    await send(d, provider, "setAddress(bytes32,address)", DATA_PROVIDER_ID, data_provider)

    strategy_art = v2_artifact(
        "protocol/lendingpool/DefaultReserveInterestRateStrategy.sol/DefaultReserveInterestRateStrategy.json"
    )
    curves: list[RateStrategyV2] = [p.rates for p in reserve_params.values()]
    strategies = await deploy_rate_strategies(d, strategy_art, provider, curves)
    for sym, t in tokens.items():
        p = reserve_params[sym]
        await _init_reserve(d, pool, configurator, t, p, strategies[p.rates], treasury)

    return AaveV2Market(
        lending_pool=pool,
        lending_pool_addresses_provider=provider,
        lending_pool_configurator=configurator,
        collateral_manager=manager,
        oracle=oracle,
        lending_rate_oracle=rate_oracle,
        data_provider=data_provider,
        treasury=treasury,
        weth=weth,
        reserves=await reserve_tokens(d, data_provider, tokens),
        start_block=start_block,
        deploy_txs=d.txs_sent - txs0,
    )


async def _init_reserve(
    d: Deployer,
    pool: str,
    configurator: str,
    t: TokenInfo,
    p: ReserveParamsV2,
    strategy: str,
    treasury: str,
) -> None:
    tok = "protocol/tokenization"
    s = t.symbol
    a_token = (
        await d.deploy(
            v2_artifact(f"{tok}/AToken.sol/AToken.json"),
            pool,
            t.address,
            treasury,
            f"Aave interest bearing {s}",
            f"a{s}",
            ZERO,
        )
    ).address
    stable = (
        await d.deploy(
            v2_artifact(f"{tok}/StableDebtToken.sol/StableDebtToken.json"),
            pool,
            t.address,
            f"Aave stable debt bearing {s}",
            f"stableDebt{s}",
            ZERO,
        )
    ).address
    variable = (
        await d.deploy(
            v2_artifact(f"{tok}/VariableDebtToken.sol/VariableDebtToken.json"),
            pool,
            t.address,
            f"Aave variable debt bearing {s}",
            f"variableDebt{s}",
            ZERO,
        )
    ).address
    await send(
        d,
        configurator,
        "initReserve(address,address,address,uint8,address)",
        a_token,
        stable,
        variable,
        t.decimals,
        strategy,
    )
    if p.liquidation_threshold:
        await send(
            d,
            configurator,
            "configureReserveAsCollateral(address,uint256,uint256,uint256)",
            t.address,
            p.ltv,
            p.liquidation_threshold,
            p.liquidation_bonus,
        )
    if p.borrowing_enabled:
        await send(
            d, configurator, "enableBorrowingOnReserve(address,bool)", t.address, p.stable_borrowing_enabled
        )
    await send(d, configurator, "setReserveFactor(address,uint256)", t.address, p.reserve_factor)
