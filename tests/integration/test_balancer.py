"""Balancer V2 Vault + ComposableStablePools (v3 factory) on a real anvil: deploy, initial balances, and
swaps through the Vault that pay exactly what `queryBatchSwap` quoted."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from eth_abi.abi import decode

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient
from keeper.devnet.anvil import DEV_ACCOUNTS, Anvil, AnvilConfig
from keeper.devnet.balancer import DEFAULT_STABLE_POOLS, BalancerDeployment, deploy_balancer
from keeper.devnet.contracts import our_artifact
from keeper.devnet.deployer import Deployer
from keeper.devnet.model import DEFAULT_LST_RATE, TokenInfo
from keeper.devnet.uniswap import FAR_DEADLINE, balance_of
from tests.integration.test_uniswap import deploy_mock_tokens

pytestmark = pytest.mark.integration

GIVEN_IN = 0
SWAP_SIG = "swap((bytes32,uint8,address,address,uint256,bytes),(address,bool,address,bool),uint256,uint256)"
SWAP_TYPES = [
    "(bytes32,uint8,address,address,uint256,bytes)",
    "(address,bool,address,bool)",
    "uint256",
    "uint256",
]
QUERY_SIG = (
    "queryBatchSwap(uint8,(bytes32,uint256,uint256,uint256,bytes)[],address[],(address,bool,address,bool))"
)
QUERY_TYPES = [
    "uint8",
    "(bytes32,uint256,uint256,uint256,bytes)[]",
    "address[]",
    "(address,bool,address,bool)",
]


@dataclass
class Net:
    rpc: RpcClient
    deployer: Deployer
    trader: Deployer
    tokens: dict[str, TokenInfo]
    bal: BalancerDeployment


@pytest.fixture(scope="module")
async def net() -> AsyncIterator[Net]:
    async with Anvil(AnvilConfig()) as node:
        rpc = RpcClient(node.http_url, timeout=60)
        deployer = Deployer(rpc, DEV_ACCOUNTS[0][0])
        tokens = await deploy_mock_tokens(deployer)
        # the devnet's LST (rate provider of itself), constant rate
        lst = await deployer.deploy(our_artifact("LiquidStakingToken"), "LST", "wstETH", DEFAULT_LST_RATE, 0)
        tokens["wstETH"] = TokenInfo("wstETH", lst.address, 18)
        t = time.perf_counter()
        bal = await deploy_balancer(deployer, tokens)
        print(f"balancer deploy: {time.perf_counter() - t:.3f}s")
        try:
            yield Net(rpc, deployer, Deployer(rpc, DEV_ACCOUNTS[1][0]), tokens, bal)
        finally:
            await rpc.close()


async def _pool_tokens(n: Net, pool_id: str) -> tuple[list[str], list[int]]:
    assets, balances, _ = await n.deployer.call(
        n.bal.vault,
        "getPoolTokens(bytes32)",
        ["bytes32"],
        [bytes.fromhex(pool_id[2:])],
        ["address[]", "uint256[]", "uint256"],
    )
    return [str(a) for a in assets], [int(b) for b in balances]


def test_json_round_trip(net: Net) -> None:
    assert BalancerDeployment.from_json(net.bal.to_json()) == net.bal
    assert set(net.bal.pools) == {p.name for p in DEFAULT_STABLE_POOLS}


async def test_pools_are_initialized_balanced(net: Net) -> None:
    pool = net.bal.pools["wstETH/WETH"]
    assets, balances = await _pool_tokens(net, pool.pool_id)
    by = {a.lower(): b for a, b in zip(assets, balances, strict=True)}
    assert len(assets) == 3 and pool.address.lower() in by  # BPT is a registered token
    lst, weth = by[net.tokens["wstETH"].address.lower()], by[net.tokens["WETH"].address.lower()]
    assert lst * DEFAULT_LST_RATE == weth * 10**18  # equal value at the LST rate, exactly
    (providers,) = await net.deployer.call(pool.address, "getRateProviders()", [], [], ["address[]"])
    assert net.tokens["wstETH"].address.lower() in [p.lower() for p in providers]

    stable = net.bal.pools["USDC/USDT/DAI"]
    assets, balances = await _pool_tokens(net, stable.pool_id)
    by = {a.lower(): b for a, b in zip(assets, balances, strict=True)}
    assert by[net.tokens["USDC"].address.lower()] == 100_000_000 * 10**6
    assert by[net.tokens["USDT"].address.lower()] == 100_000_000 * 10**6
    assert by[net.tokens["DAI"].address.lower()] == 100_000_000 * 10**18
    (bpt,) = await net.deployer.call(
        stable.address, "balanceOf(address)", ["address"], [net.deployer.sender], ["uint256"]
    )
    assert bpt > 0


@pytest.mark.parametrize(
    ("pool_name", "sym_in", "sym_out", "amount"),
    [
        ("wstETH/WETH", "WETH", "wstETH", 1_234 * 10**18 + 5),
        ("wstETH/WETH", "wstETH", "WETH", 777 * 10**18 + 3),
        ("USDC/USDT/DAI", "USDC", "DAI", 2_500_000 * 10**6 + 1),
        ("USDC/USDT/DAI", "DAI", "USDT", 1_000_000 * 10**18 + 7),
    ],
)
async def test_swap_pays_the_queried_amount(
    net: Net, pool_name: str, sym_in: str, sym_out: str, amount: int
) -> None:
    snap = await net.rpc.call("evm_snapshot")
    try:
        pool = net.bal.pools[pool_name]
        t_in, t_out = net.tokens[sym_in], net.tokens[sym_out]
        trader = net.trader.sender
        funds = (trader, False, trader, False)
        raw = await net.rpc.eth_call(
            net.bal.vault,
            encode_call(
                QUERY_SIG,
                QUERY_TYPES,
                [
                    GIVEN_IN,
                    [(bytes.fromhex(pool.pool_id[2:]), 0, 1, amount, b"")],
                    [t_in.address, t_out.address],
                    funds,
                ],
            ),
        )
        (deltas,) = decode(["int256[]"], raw)
        assert deltas[0] == amount and deltas[1] < 0
        expected_out = -int(deltas[1])

        if sym_in == "WETH":
            await net.rpc.call("anvil_setBalance", [trader, hex(10**24 + amount)])
            await net.trader.transact(t_in.address, "deposit()", [], [], value=amount)
        else:
            await net.deployer.transact(
                t_in.address, "mint(address,uint256)", ["address", "uint256"], [trader, amount]
            )
        await net.trader.transact(
            t_in.address, "approve(address,uint256)", ["address", "uint256"], [net.bal.vault, amount]
        )
        before = await balance_of(net.deployer, t_out.address, trader)
        await net.trader.transact(
            net.bal.vault,
            SWAP_SIG,
            SWAP_TYPES,
            [
                (bytes.fromhex(pool.pool_id[2:]), GIVEN_IN, t_in.address, t_out.address, amount, b""),
                funds,
                expected_out,
                FAR_DEADLINE,
            ],
        )
        assert await balance_of(net.deployer, t_out.address, trader) - before == expected_out
        assert await balance_of(net.deployer, t_in.address, trader) == 0
        # near the peg a stable pool pays close to 1:1 in value (less 0.01% fee and a little slippage)
        if pool_name == "USDC/USDT/DAI":
            scale_in, scale_out = 10 ** (18 - t_in.decimals), 10 ** (18 - t_out.decimals)
            value_in, value_out = amount * scale_in, expected_out * scale_out
            assert value_in * 9_990 // 10_000 < value_out < value_in
    finally:
        assert await net.rpc.call("evm_revert", [snap]) is True
