"""Deploy the whole devnet (tokens, feeds, Multicall3, Aave V3 and V2, Uniswap V2 and V3,
Balancer V2) on a fresh anvil.

Accounts (anvil's default mnemonic; public test keys, never use them elsewhere):
0 deployer/admin and liquidity provider, 1 oracle transmitter, 2 the keeper's funds account (owner of
our executor contract), 3 a competing liquidator, 4 a whale for the depeg scenario, 5-9 the keeper's
operators (extra senders allowed to call the executor); account 10 of the same mnemonic is the
background arbitrageur (`keeper.devnet.arbitrageur.ARBITRAGEUR`, funded here).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keeper.chain.rpc import RpcClient
from keeper.devnet.aave_v2 import AaveV2Market, deploy_aave_v2
from keeper.devnet.aave_v3 import AaveV3Market, deploy_aave_v3
from keeper.devnet.anvil import DEV_ACCOUNTS
from keeper.devnet.arbitrageur import fund_arbitrageur
from keeper.devnet.balancer import BalancerDeployment, deploy_balancer
from keeper.devnet.deployer import Deployer
from keeper.devnet.model import DEFAULT_PRICES_USD, TokenInfo
from keeper.devnet.tokens import FeedSet, deploy_feeds, deploy_tokens, install_multicall3
from keeper.devnet.uniswap_v2 import UniswapV2Deployment, deploy_uniswap_v2
from keeper.devnet.uniswap_v3 import UniswapV3Deployment, deploy_uniswap_v3
from keeper.executors.executor_contract import deploy_executor, encode_set_operator

DEPLOYER = DEV_ACCOUNTS[0][0]
TRANSMITTER = DEV_ACCOUNTS[1][0]
KEEPER = DEV_ACCOUNTS[2][0]
COMPETITOR = DEV_ACCOUNTS[3][0]
WHALE = DEV_ACCOUNTS[4][0]
OPERATORS = tuple(a for a, _ in DEV_ACCOUNTS[5:10])
"""Accounts 5-9: extra senders for the keeper's executor (one nonce each, so several liquidations can
land in the same block as independent bundles)."""


@dataclass
class DevnetDeployment:
    chain_id: int
    tokens: dict[str, TokenInfo]
    feeds: FeedSet
    multicall3: str
    aave_v3: AaveV3Market
    aave_v2: AaveV2Market
    uniswap_v2: UniswapV2Deployment
    uniswap_v3: UniswapV3Deployment
    balancer: BalancerDeployment
    executor: str = ""
    """Our LiquidationExecutor, owned by the keeper account (accounts["keeper"])."""
    accounts: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    tx_count: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "tokens": {
                s: {"address": t.address, "decimals": t.decimals, "symbol": t.symbol}
                for s, t in self.tokens.items()
            },
            "feeds": self.feeds.to_json(),
            "multicall3": self.multicall3,
            "aave_v3": self.aave_v3.to_json(),
            "aave_v2": self.aave_v2.to_json(),
            "uniswap_v2": self.uniswap_v2.to_json(),
            "uniswap_v3": self.uniswap_v3.to_json(),
            "balancer": self.balancer.to_json(),
            "executor": self.executor,
            "accounts": dict(self.accounts),
            "timings": dict(self.timings),
            "tx_count": self.tx_count,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DevnetDeployment:
        return cls(
            chain_id=int(data["chain_id"]),
            tokens={
                s: TokenInfo(symbol=t["symbol"], address=t["address"], decimals=int(t["decimals"]))
                for s, t in data["tokens"].items()
            },
            feeds=FeedSet.from_json(data["feeds"]),
            multicall3=str(data["multicall3"]),
            aave_v3=AaveV3Market.from_json(data["aave_v3"]),
            aave_v2=AaveV2Market.from_json(data["aave_v2"]),
            uniswap_v2=UniswapV2Deployment.from_json(data["uniswap_v2"]),
            uniswap_v3=UniswapV3Deployment.from_json(data["uniswap_v3"]),
            balancer=BalancerDeployment.from_json(data["balancer"]),
            executor=str(data.get("executor", "")),
            accounts=dict(data.get("accounts", {})),
            timings={k: float(v) for k, v in data.get("timings", {}).items()},
            tx_count=int(data.get("tx_count", 0)),
        )


async def deploy_all(rpc: RpcClient, prices_usd: Mapping[str, int] = DEFAULT_PRICES_USD) -> DevnetDeployment:
    """Deploys everything with automine on (one block per transaction). Takes a few seconds."""
    d = Deployer(rpc, DEPLOYER)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 3)
        return now

    t = t0
    tokens = await deploy_tokens(d)
    feeds = await deploy_feeds(d, prices_usd, transmitter=TRANSMITTER)
    multicall3 = await install_multicall3(rpc)
    t = lap("tokens_feeds", t)
    aave_v3 = await deploy_aave_v3(d, tokens, feeds.usd)
    t = lap("aave_v3", t)
    aave_v2 = await deploy_aave_v2(
        d, {s: tok for s, tok in tokens.items() if s in ("WETH", "USDC", "DAI", "WBTC", "USDT")}, feeds.eth
    )
    t = lap("aave_v2", t)
    uniswap_v2 = await deploy_uniswap_v2(d, tokens)
    t = lap("uniswap_v2", t)
    uniswap_v3 = await deploy_uniswap_v3(d, tokens)
    t = lap("uniswap_v3", t)
    balancer = await deploy_balancer(d, tokens)
    t = lap("balancer", t)
    arb_txs = await fund_arbitrageur(
        rpc, tokens, dict(prices_usd), (uniswap_v3.swap_router, uniswap_v2.router)
    )
    t = lap("arbitrageur", t)
    executor = await deploy_executor(
        Deployer(rpc, KEEPER),
        KEEPER,
        None,
        flash_pool=aave_v3.pool,
        router_v3=uniswap_v3.swap_router,
        router_v2=uniswap_v2.router,
        weth=tokens["WETH"].address,
        pools={aave_v3.pool: aave_v3.oracle, aave_v2.lending_pool: aave_v2.oracle},
        max_coinbase_bps=9_500,
        max_slippage_bps=1_000,
        balancer_vault=balancer.vault,
    )
    keeper_d = Deployer(rpc, KEEPER)
    for operator in OPERATORS:
        await keeper_d.send_raw({"to": executor, "data": "0x" + encode_set_operator(operator, True).hex()})
    lap("executor", t)
    timings["total"] = round(time.perf_counter() - t0, 3)
    return DevnetDeployment(
        chain_id=await rpc.chain_id(),
        tokens=tokens,
        feeds=feeds,
        multicall3=multicall3,
        aave_v3=aave_v3,
        aave_v2=aave_v2,
        uniswap_v2=uniswap_v2,
        uniswap_v3=uniswap_v3,
        balancer=balancer,
        executor=executor,
        accounts={
            "deployer": DEPLOYER,
            "transmitter": TRANSMITTER,
            "keeper": KEEPER,
            "competitor": COMPETITOR,
            "whale": WHALE,
            "operators": ",".join(OPERATORS),
        },
        timings=timings,
        tx_count=d.txs_sent + arb_txs,
    )
