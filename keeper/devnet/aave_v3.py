"""Deploy an Aave V3 market (the real @aave/core-v3 1.19.x bytecode) on the devnet.

Order follows Aave's own deploy scripts (see /work/shared/facts/devnet.md): libraries, addresses
provider + ACL, data provider, Pool and PoolConfigurator behind the provider's proxies, AaveOracle,
token implementations, rate strategies, `initReserves`, then per-reserve risk settings.

Market choices (mainnet-like, simplified; the numbers are in `keeper.devnet.aave_params`):
- Oracle: AaveOracle over the given Chainlink-compatible USD feeds (8 decimals), base currency USD
  (base unit 1e8), no fallback oracle: a feed answering <= 0 makes price reads revert.
- Risk: LTV / liquidation threshold / bonus / reserve factor close to Aave V3 Ethereum (2023);
  liquidation protocol fee 10% of the bonus on every reserve (sent to `treasury` as aTokens).
- Borrowable: WETH, WBTC and the stables; wstETH is collateral only. Stable-rate borrowing is off,
  caps are 0 (none), no isolation mode. Flash loans are enabled on every reserve (they are NOT by
  default in this version: ConfiguratorLogic leaves the flag off).
- Flash-loan premium: total 5 bps of the amount (mainnet); to-protocol 0 (launch value; it is a
  share of the premium, not of the amount, and changes nothing for the flash borrower).
- E-mode category 1 "ETH correlated": LTV 90%, LT 93%, bonus 1%, no category oracle; WETH and wstETH.
- The deployer account becomes the provider owner, ACL admin, pool admin and emergency admin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address

from keeper.devnet.aave_params import (
    ETH_CORRELATED,
    FLASHLOAN_PREMIUM_TO_PROTOCOL,
    FLASHLOAN_PREMIUM_TOTAL,
    V3_RESERVES,
    EModeCategory,
    RateStrategyV3,
    ReserveParams,
)
from keeper.devnet.artifacts import Artifact, load_artifact
from keeper.devnet.deployer import Deployer
from keeper.devnet.model import TokenInfo
from keeper.errors import DevnetError

ZERO = "0x0000000000000000000000000000000000000000"
DEFAULT_TREASURY = "0x464C71f6c2F760DdA6093dCB91C24c39e5d6e18c"
"""The mainnet Aave collector's address, reused as a recognisable treasury (no code on the devnet)."""
MARKET_ID = "Aave Ethereum Market (devnet)"
BASE_CURRENCY_UNIT = 10**8

_V3 = "@aave/core-v3/artifacts/contracts"
_LIBS = ("SupplyLogic", "BorrowLogic", "LiquidationLogic", "EModeLogic", "BridgeLogic", "PoolLogic")


def v3_artifact(path: str) -> Artifact:
    """`path` below core-v3's artifacts/contracts, e.g. "protocol/pool/Pool.sol/Pool.json"."""
    return load_artifact(f"{_V3}/{path}")


def _logic(name: str) -> Artifact:
    return v3_artifact(f"protocol/libraries/logic/{name}.sol/{name}.json")


def _arg_types(signature: str) -> list[str]:
    inner = signature[signature.index("(") + 1 : -1]
    if "(" in inner:
        raise DevnetError(f"{signature}: tuple arguments need explicit types")
    return [t for t in inner.split(",") if t]


async def send(d: Deployer, to: str, signature: str, *args: Any) -> dict[str, Any]:
    """d.transact with the argument types read from a flat signature like "f(address,uint256)"."""
    return await d.transact(to, signature, _arg_types(signature), args)


async def read(d: Deployer, to: str, signature: str, out_types: Sequence[str], *args: Any) -> tuple[Any, ...]:
    return await d.call(to, signature, _arg_types(signature), args, out_types)


@dataclass(frozen=True)
class ReserveTokens:
    asset: str
    a_token: str
    stable_debt_token: str
    variable_debt_token: str
    decimals: int

    def to_json(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "a_token": self.a_token,
            "stable_debt_token": self.stable_debt_token,
            "variable_debt_token": self.variable_debt_token,
            "decimals": self.decimals,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReserveTokens:
        return cls(
            asset=to_checksum_address(data["asset"]),
            a_token=to_checksum_address(data["a_token"]),
            stable_debt_token=to_checksum_address(data["stable_debt_token"]),
            variable_debt_token=to_checksum_address(data["variable_debt_token"]),
            decimals=int(data["decimals"]),
        )


@dataclass(frozen=True)
class AaveV3Market:
    pool: str
    """The Pool proxy (what users and liquidators call)."""
    pool_addresses_provider: str
    pool_configurator: str
    """The PoolConfigurator proxy."""
    oracle: str
    data_provider: str
    acl_manager: str
    treasury: str
    reserves: Mapping[str, ReserveTokens] = field(default_factory=dict)
    """symbol -> the reserve's token addresses."""
    start_block: int = 0
    """First block of the deployment: where a log backfill can start."""
    deploy_txs: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "pool_addresses_provider": self.pool_addresses_provider,
            "pool_configurator": self.pool_configurator,
            "oracle": self.oracle,
            "data_provider": self.data_provider,
            "acl_manager": self.acl_manager,
            "treasury": self.treasury,
            "reserves": {sym: r.to_json() for sym, r in self.reserves.items()},
            "start_block": self.start_block,
            "deploy_txs": self.deploy_txs,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AaveV3Market:
        try:
            return cls(
                pool=to_checksum_address(data["pool"]),
                pool_addresses_provider=to_checksum_address(data["pool_addresses_provider"]),
                pool_configurator=to_checksum_address(data["pool_configurator"]),
                oracle=to_checksum_address(data["oracle"]),
                data_provider=to_checksum_address(data["data_provider"]),
                acl_manager=to_checksum_address(data["acl_manager"]),
                treasury=to_checksum_address(data["treasury"]),
                reserves={s: ReserveTokens.from_json(r) for s, r in data["reserves"].items()},
                start_block=int(data.get("start_block", 0)),
                deploy_txs=int(data.get("deploy_txs", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DevnetError(f"bad Aave V3 market record: {exc!r}") from None


def resolve_params(
    tokens: Mapping[str, TokenInfo],
    defaults: Mapping[str, Any],
    overrides: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """symbol -> params for every token: the override if given, else the default."""
    merged = {**defaults, **(overrides or {})}
    missing = [s for s in tokens if s not in merged]
    if missing:
        raise DevnetError(f"no reserve parameters for {missing}: pass them in `params`")
    return {s: merged[s] for s in tokens}


async def reserve_tokens(
    d: Deployer, data_provider: str, tokens: Mapping[str, TokenInfo]
) -> dict[str, ReserveTokens]:
    """Reads each reserve's aToken / stable / variable debt token from AaveProtocolDataProvider."""
    out: dict[str, ReserveTokens] = {}
    for sym, tok in tokens.items():
        a, s, v = await read(
            d, data_provider, "getReserveTokensAddresses(address)", ["address"] * 3, tok.address
        )
        if ZERO in (to_checksum_address(a), to_checksum_address(v)):
            raise DevnetError(f"reserve {sym} was not initialised")
        out[sym] = ReserveTokens(
            tok.address, to_checksum_address(a), to_checksum_address(s), to_checksum_address(v), tok.decimals
        )
    return out


async def deploy_rate_strategies(
    d: Deployer, artifact: Artifact, provider: str, strategies: Sequence[Any]
) -> dict[Any, str]:
    """One strategy contract per distinct parameter set (reserves sharing a curve share a contract)."""
    out: dict[Any, str] = {}
    for s in strategies:
        if s not in out:
            out[s] = (await d.deploy(artifact, provider, *s.args())).address
    return out


async def _deploy_core(d: Deployer, admin: str) -> tuple[str, str, str, str, str]:
    """Steps 1-5: libraries, provider + ACL, data provider, Pool and PoolConfigurator proxies.
    Returns (provider, acl, data_provider, pool, configurator)."""
    # 1. Libraries (FlashLoanLogic links BorrowLogic).
    libs: dict[str, str] = {}
    for name in _LIBS:
        libs[name] = (await d.deploy(_logic(name))).address
    libs["FlashLoanLogic"] = (
        await d.deploy(_logic("FlashLoanLogic"), libraries={"BorrowLogic": libs["BorrowLogic"]})
    ).address
    configurator_logic = (await d.deploy(_logic("ConfiguratorLogic"))).address

    # 2. Addresses provider and ACL (the ACL admin must be set before ACLManager is constructed).
    provider = (
        await d.deploy(
            v3_artifact("protocol/configuration/PoolAddressesProvider.sol/PoolAddressesProvider.json"),
            MARKET_ID,
            admin,
        )
    ).address
    await send(d, provider, "setACLAdmin(address)", admin)
    acl = (
        await d.deploy(v3_artifact("protocol/configuration/ACLManager.sol/ACLManager.json"), provider)
    ).address
    await send(d, provider, "setACLManager(address)", acl)
    await send(d, acl, "addPoolAdmin(address)", admin)
    await send(d, acl, "addEmergencyAdmin(address)", admin)

    # 3. Data provider.
    data_provider = (
        await d.deploy(
            v3_artifact("misc/AaveProtocolDataProvider.sol/AaveProtocolDataProvider.json"), provider
        )
    ).address
    await send(d, provider, "setPoolDataProvider(address)", data_provider)

    # 4. Pool implementation -> proxy.
    pool_impl = (
        await d.deploy(v3_artifact("protocol/pool/Pool.sol/Pool.json"), provider, libraries=libs)
    ).address
    await send(d, pool_impl, "initialize(address)", provider)
    await send(d, provider, "setPoolImpl(address)", pool_impl)
    (pool,) = await read(d, provider, "getPool()", ["address"])
    pool = to_checksum_address(pool)

    # 5. PoolConfigurator implementation -> proxy.
    conf_impl = (
        await d.deploy(
            v3_artifact("protocol/pool/PoolConfigurator.sol/PoolConfigurator.json"),
            libraries={"ConfiguratorLogic": configurator_logic},
        )
    ).address
    await send(d, conf_impl, "initialize(address)", provider)
    await send(d, provider, "setPoolConfiguratorImpl(address)", conf_impl)
    (configurator,) = await read(d, provider, "getPoolConfigurator()", ["address"])
    configurator = to_checksum_address(configurator)

    return provider, acl, data_provider, pool, configurator


async def deploy_aave_v3(
    d: Deployer,
    tokens: Mapping[str, TokenInfo],
    feeds: Mapping[str, str],
    *,
    params: Mapping[str, ReserveParams] | None = None,
    treasury: str | None = None,
    emode_categories: Sequence[EModeCategory] = (ETH_CORRELATED,),
) -> AaveV3Market:
    """Deploys and configures the market; `feeds` maps each symbol to its USD feed (8 decimals).

    `params` overrides `aave_params.V3_RESERVES` per symbol. With the six default reserves: 69 transactions.
    """
    missing_feeds = [s for s in tokens if s not in feeds]
    if missing_feeds:
        raise DevnetError(f"no USD price feed for {missing_feeds}")
    reserve_params: dict[str, ReserveParams] = resolve_params(tokens, V3_RESERVES, params)
    treasury = to_checksum_address(treasury or DEFAULT_TREASURY)
    admin = d.sender
    txs0 = d.txs_sent
    start_block = await d.rpc.block_number() + 1

    provider, acl, data_provider, pool, configurator = await _deploy_core(d, admin)

    # 6. Oracle (USD, 8 decimals).
    assets = [t.address for t in tokens.values()]
    sources = [to_checksum_address(feeds[s]) for s in tokens]
    oracle = (
        await d.deploy(
            v3_artifact("misc/AaveOracle.sol/AaveOracle.json"),
            provider,
            assets,
            sources,
            ZERO,
            ZERO,
            BASE_CURRENCY_UNIT,
        )
    ).address
    await send(d, provider, "setPriceOracle(address)", oracle)
    (prices,) = await read(d, oracle, "getAssetsPrices(address[])", ["uint256[]"], assets)
    bad = [s for s, p in zip(tokens, prices, strict=True) if p <= 0]
    if bad:
        raise DevnetError(f"feeds answer no positive price for {bad}")

    # 7. Token implementations (their constructors take the Pool PROXY), initialised as dummies.
    tok = "protocol/tokenization"
    a_impl = (await d.deploy(v3_artifact(f"{tok}/AToken.sol/AToken.json"), pool)).address
    s_impl = (await d.deploy(v3_artifact(f"{tok}/StableDebtToken.sol/StableDebtToken.json"), pool)).address
    v_impl = (
        await d.deploy(v3_artifact(f"{tok}/VariableDebtToken.sol/VariableDebtToken.json"), pool)
    ).address
    await send(
        d,
        a_impl,
        "initialize(address,address,address,address,uint8,string,string,bytes)",
        pool,
        ZERO,
        ZERO,
        ZERO,
        0,
        "ATOKEN_IMPL",
        "ATOKEN_IMPL",
        b"",
    )
    for impl, label in ((s_impl, "STABLE_DEBT_TOKEN_IMPL"), (v_impl, "VARIABLE_DEBT_TOKEN_IMPL")):
        await send(
            d,
            impl,
            "initialize(address,address,address,uint8,string,string,bytes)",
            pool,
            ZERO,
            ZERO,
            0,
            label,
            label,
            b"",
        )

    # 8. Rate strategies and reserves.
    strategy_art = v3_artifact(
        "protocol/pool/DefaultReserveInterestRateStrategy.sol/DefaultReserveInterestRateStrategy.json"
    )
    curves: list[RateStrategyV3] = [p.rates for p in reserve_params.values()]
    strategies = await deploy_rate_strategies(d, strategy_art, provider, curves)
    inputs = [
        (
            a_impl,
            s_impl,
            v_impl,
            t.decimals,
            strategies[reserve_params[s].rates],
            t.address,
            treasury,
            ZERO,
            f"Aave Ethereum {s}",
            f"aEth{s}",
            f"Aave Ethereum Variable Debt {s}",
            f"variableDebtEth{s}",
            f"Aave Ethereum Stable Debt {s}",
            f"stableDebtEth{s}",
            b"",
        )
        for s, t in tokens.items()
    ]
    await d.transact(
        configurator,
        "initReserves((address,address,address,uint8,address,address,address,address,"
        "string,string,string,string,string,string,bytes)[])",
        [
            "(address,address,address,uint8,address,address,address,address,"
            "string,string,string,string,string,string,bytes)[]"
        ],
        [inputs],
    )
    await configure_reserves(d, configurator, tokens, reserve_params, emode_categories)

    # 9. Pool-wide flash-loan premiums.
    await send(d, configurator, "updateFlashloanPremiumTotal(uint128)", FLASHLOAN_PREMIUM_TOTAL)
    if FLASHLOAN_PREMIUM_TO_PROTOCOL:
        await send(
            d, configurator, "updateFlashloanPremiumToProtocol(uint128)", FLASHLOAN_PREMIUM_TO_PROTOCOL
        )

    return AaveV3Market(
        pool=pool,
        pool_addresses_provider=provider,
        pool_configurator=configurator,
        oracle=oracle,
        data_provider=data_provider,
        acl_manager=acl,
        treasury=treasury,
        reserves=await reserve_tokens(d, data_provider, tokens),
        start_block=start_block,
        deploy_txs=d.txs_sent - txs0,
    )


async def configure_reserves(
    d: Deployer,
    configurator: str,
    tokens: Mapping[str, TokenInfo],
    reserve_params: Mapping[str, ReserveParams],
    emode_categories: Sequence[EModeCategory],
) -> None:
    """Risk settings per reserve, then e-mode (an asset joins a category after its LT is set)."""
    for sym, t in tokens.items():
        p = reserve_params[sym]
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
            await send(d, configurator, "setReserveBorrowing(address,bool)", t.address, True)
        if p.flash_loan_enabled:
            await send(d, configurator, "setReserveFlashLoaning(address,bool)", t.address, True)
        await send(d, configurator, "setReserveFactor(address,uint256)", t.address, p.reserve_factor)
        if p.liquidation_protocol_fee:
            await send(
                d,
                configurator,
                "setLiquidationProtocolFee(address,uint256)",
                t.address,
                p.liquidation_protocol_fee,
            )
        if p.supply_cap:
            await send(d, configurator, "setSupplyCap(address,uint256)", t.address, p.supply_cap)
        if p.borrow_cap:
            await send(d, configurator, "setBorrowCap(address,uint256)", t.address, p.borrow_cap)
    for cat in emode_categories:
        await send(
            d,
            configurator,
            "setEModeCategory(uint8,uint16,uint16,uint16,address,string)",
            cat.category_id,
            cat.ltv,
            cat.liquidation_threshold,
            cat.liquidation_bonus,
            cat.price_source,
            cat.label,
        )
    for sym, t in tokens.items():
        cat_id = reserve_params[sym].emode_category
        if cat_id:
            await send(d, configurator, "setAssetEModeCategory(address,uint8)", t.address, cat_id)
