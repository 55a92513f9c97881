"""Deploy Balancer V2 (Vault + Authorizer) and ComposableStablePools from @balancer-labs/v2-deployments.

Artifacts (Hardhat JSON with bytecode, no libraries to link) from `dist/tasks/<task>/artifact/`:
- 20210418-authorizer: Authorizer(admin)
- 20210418-vault: Vault(authorizer, weth, pauseWindowDuration, bufferPeriodDuration); 24,513 bytes deployed,
  just under EIP-170, so no `--code-size-limit` is needed.
- 20220725-protocol-fee-percentages-provider: ProtocolFeePercentagesProvider(vault, maxYield, maxAUM)
- 20230206-composable-stable-pool-v3: ComposableStablePoolFactory(vault, feeProvider, factoryVersion,
  poolVersion); `create(name, symbol, tokens, amp, rateProviders, rateCacheDurations, exemptFlags,
  swapFee, owner)` (v3 has no `salt` argument; v4+ added it). The factory emits `PoolCreated(pool)`.

Pools (defaults): wstETH/WETH with the LST contract itself as wstETH's rate provider (it exposes
`getRate()`), A=200, $150M a side; USDC/USDT/DAI, A=1000, $100M each; both 0.01% swap fee. They are the
devnet's peg anchors: deep and flat near the peg, standing for mainnet's aggregate stable-swap depth
(Curve and Balancer together), so a de-pegged Uniswap pool arbitraged against them returns within a few
bps of the target (a $6M round trip moves the wstETH/WETH pool ~10 bps, the stable pool ~3 bps).

Rate cache duration is 0, so the pool refreshes a rate on the first swap/join/exit in any block after the
one it was cached in (mainnet pools use hours; 0 makes a rate change visible to the next trade, which
devnet scenarios want).

Initialization: `Vault.joinPool` with JoinKind.INIT (0) and `abi.encode(0, amountsIn)` where `amountsIn`
has an entry for every registered token INCLUDING the pool's own BPT (0 there), and `maxAmountsIn` has
MAX_UINT256 for the BPT: the pool pre-mints 2^111 BPT to itself via the Vault.
Token order: the Vault's `getPoolTokens` order (sorted by address, BPT included).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import encode

from keeper.devnet.artifacts import load_artifact
from keeper.devnet.deployer import Deployer
from keeper.devnet.model import TokenInfo
from keeper.devnet.uniswap import (
    LST,
    MAX_UINT256,
    WETH,
    Funder,
    PriceBook,
    checksum,
    default_funder,
    fund_and_approve,
    token,
)
from keeper.errors import DevnetError

log = logging.getLogger(__name__)

_TASKS = "@balancer-labs/v2-deployments/dist/tasks"
AUTHORIZER_ARTIFACT = f"{_TASKS}/20210418-authorizer/artifact/Authorizer.json"
VAULT_ARTIFACT = f"{_TASKS}/20210418-vault/artifact/Vault.json"
FEE_PROVIDER_ARTIFACT = (
    f"{_TASKS}/20220725-protocol-fee-percentages-provider/artifact/ProtocolFeePercentagesProvider.json"
)
CSP_FACTORY_ARTIFACT = (
    f"{_TASKS}/20230206-composable-stable-pool-v3/artifact/ComposableStablePoolFactory.json"
)
CSP_FACTORY_VERSION = (
    '{"name":"ComposableStablePoolFactory","version":3,"deployment":"20230206-composable-stable-pool-v3"}'
)
CSP_POOL_VERSION = (
    '{"name":"ComposableStablePool","version":3,"deployment":"20230206-composable-stable-pool-v3"}'
)
POOL_CREATED_TOPIC = "0x83a48fbcfc991335314e74d0496aab6a1987e992ddc85dddbcc4d6dd6ef2e9fc"
"""keccak256("PoolCreated(address)")."""
MAX_FEE_VALUE = 5 * 10**17
"""ProtocolFeePercentagesProvider maxima for yield and AUM fees (50%, as on mainnet)."""

JOIN_KIND_INIT = 0
CREATE_SIG = "create(string,string,address[],uint256,address[],uint256[],bool[],uint256,address)"
CREATE_TYPES = [
    "string",
    "string",
    "address[]",
    "uint256",
    "address[]",
    "uint256[]",
    "bool[]",
    "uint256",
    "address",
]
JOIN_SIG = "joinPool(bytes32,address,address,(address[],uint256[],bytes,bool))"
JOIN_TYPES = ["bytes32", "address", "address", "(address[],uint256[],bytes,bool)"]
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


@dataclass(frozen=True)
class StablePoolSpec:
    symbols: tuple[str, ...]
    amp: int
    swap_fee: int
    """18 decimals: 10**14 = 0.01%."""
    usd_per_token: int
    rate_providers: Mapping[str, str] = field(default_factory=dict)
    """symbol -> "self" (the token is its own rate provider, e.g. the LST) or an address."""

    @property
    def name(self) -> str:
        return "/".join(self.symbols)


DEFAULT_STABLE_POOLS: tuple[StablePoolSpec, ...] = (
    StablePoolSpec((LST, WETH), 200, 10**14, 150_000_000, {LST: "self"}),
    StablePoolSpec(("USDC", "USDT", "DAI"), 1000, 10**14, 100_000_000),
)


@dataclass(frozen=True)
class BalancerPool:
    address: str
    pool_id: str
    """0x-prefixed 32-byte hex."""

    def to_json(self) -> dict[str, Any]:
        return {"address": checksum(self.address), "pool_id": self.pool_id}


@dataclass(frozen=True)
class BalancerDeployment:
    vault: str
    authorizer: str
    protocol_fee_provider: str
    composable_stable_factory: str
    pools: Mapping[str, BalancerPool] = field(default_factory=dict)
    """"wstETH/WETH", "USDC/USDT/DAI" -> pool."""

    def to_json(self) -> dict[str, Any]:
        return {
            "vault": checksum(self.vault),
            "authorizer": checksum(self.authorizer),
            "protocol_fee_provider": checksum(self.protocol_fee_provider),
            "composable_stable_factory": checksum(self.composable_stable_factory),
            "pools": {name: pool.to_json() for name, pool in self.pools.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BalancerDeployment:
        try:
            return cls(
                vault=checksum(data["vault"]),
                authorizer=checksum(data["authorizer"]),
                protocol_fee_provider=checksum(data["protocol_fee_provider"]),
                composable_stable_factory=checksum(data["composable_stable_factory"]),
                pools={
                    str(k): BalancerPool(checksum(v["address"]), str(v["pool_id"]).lower())
                    for k, v in dict(data.get("pools", {})).items()
                },
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DevnetError(f"bad Balancer deployment record: {exc}") from None


def _initial_amounts(spec: StablePoolSpec, toks: Sequence[TokenInfo], prices: PriceBook) -> dict[str, int]:
    """Balanced amounts: each token worth `usd_per_token`; a rate-provided LST is sized so that
    amount * rate equals the WETH side exactly when WETH is in the pool."""
    amounts = {t.symbol: prices.amount_for_usd(t, spec.usd_per_token) for t in toks}
    if prices.lst_symbol in amounts and prices.weth_symbol in amounts:
        weth_amount = amounts[prices.weth_symbol]
        lst_amount = weth_amount * 10**18 // prices.lst_rate
        lst_amount -= lst_amount % (10**18 // math.gcd(prices.lst_rate, 10**18))
        amounts[prices.lst_symbol] = lst_amount
        amounts[prices.weth_symbol] = lst_amount * prices.lst_rate // 10**18
    return amounts


async def deploy_balancer(
    deployer: Deployer,
    tokens: Mapping[str, TokenInfo],
    *,
    pools: Sequence[StablePoolSpec] = DEFAULT_STABLE_POOLS,
    prices: PriceBook | None = None,
    funder: Funder = default_funder,
    weth_symbol: str = WETH,
) -> BalancerDeployment:
    """Authorizer(admin=deployer), Vault (no pause window), fee provider, ComposableStablePoolFactory v3,
    then creates and initializes `pools` (BPT to the deployer, pool owner = deployer)."""
    prices = prices or PriceBook.default()
    t0 = time.perf_counter()
    sent0 = deployer.txs_sent
    weth = token(tokens, weth_symbol).address
    authorizer = await deployer.deploy(load_artifact(AUTHORIZER_ARTIFACT), deployer.sender)
    vault = await deployer.deploy(load_artifact(VAULT_ARTIFACT), authorizer.address, weth, 0, 0)
    provider = await deployer.deploy(
        load_artifact(FEE_PROVIDER_ARTIFACT), vault.address, MAX_FEE_VALUE, MAX_FEE_VALUE
    )
    factory = await deployer.deploy(
        load_artifact(CSP_FACTORY_ARTIFACT),
        vault.address,
        provider.address,
        CSP_FACTORY_VERSION,
        CSP_POOL_VERSION,
    )

    plans: list[tuple[StablePoolSpec, list[TokenInfo], dict[str, int]]] = []
    needs: dict[str, int] = {}
    for spec in pools:
        toks = sorted((token(tokens, s) for s in spec.symbols), key=lambda t: int(t.address, 16))
        amounts = _initial_amounts(spec, toks, prices)
        plans.append((spec, toks, amounts))
        for symbol, amount in amounts.items():
            needs[symbol] = needs.get(symbol, 0) + amount
    await fund_and_approve(deployer, tokens, needs, vault.address, funder)

    created: dict[str, BalancerPool] = {}
    for spec, toks, amounts in plans:
        providers = []
        for t in toks:
            rp = spec.rate_providers.get(t.symbol, ZERO_ADDRESS)
            providers.append(t.address if rp == "self" else rp)
        receipt = await deployer.transact(
            factory.address,
            CREATE_SIG,
            CREATE_TYPES,
            [
                f"Balancer {spec.name} Stable",
                "B-" + "-".join(spec.symbols) + "-STABLE",
                [t.address for t in toks],
                spec.amp,
                providers,
                [0] * len(toks),
                [False] * len(toks),
                spec.swap_fee,
                deployer.sender,
            ],
        )
        pool_address = _pool_from_receipt(receipt, factory.address)
        (pool_id,) = await deployer.call(pool_address, "getPoolId()", [], [], ["bytes32"])
        assets, _balances, _block = await deployer.call(
            vault.address,
            "getPoolTokens(bytes32)",
            ["bytes32"],
            [pool_id],
            ["address[]", "uint256[]", "uint256"],
        )
        by_address = {t.address.lower(): amounts[t.symbol] for t in toks}
        amounts_in: list[int] = []
        max_in: list[int] = []
        for asset in assets:
            if asset.lower() == pool_address.lower():
                amounts_in.append(0)
                max_in.append(MAX_UINT256)
            else:
                amounts_in.append(by_address[asset.lower()])
                max_in.append(by_address[asset.lower()])
        user_data = encode(["uint256", "uint256[]"], [JOIN_KIND_INIT, amounts_in])
        await deployer.transact(
            vault.address,
            JOIN_SIG,
            JOIN_TYPES,
            [pool_id, deployer.sender, deployer.sender, (list(assets), max_in, user_data, False)],
        )
        created[spec.name] = BalancerPool(pool_address, "0x" + bytes(pool_id).hex())

    log.info(
        "balancer: vault and %d composable stable pools in %.2fs (%d txs)",
        len(created),
        time.perf_counter() - t0,
        deployer.txs_sent - sent0,
    )
    return BalancerDeployment(vault.address, authorizer.address, provider.address, factory.address, created)


def _pool_from_receipt(receipt: Mapping[str, Any], factory: str) -> str:
    for entry in receipt.get("logs", []):
        topics = entry.get("topics", [])
        if (
            str(entry.get("address", "")).lower() == factory.lower()
            and topics
            and str(topics[0]).lower() == POOL_CREATED_TOPIC
        ):
            return checksum("0x" + str(topics[1])[-40:])
    raise DevnetError("ComposableStablePoolFactory.create emitted no PoolCreated event")
