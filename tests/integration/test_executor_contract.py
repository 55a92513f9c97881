"""LiquidationExecutor against the real Aave V3/V2 and Uniswap V2/V3 bytecode, on real positions.

One devnet for the module: 50 borrowers, ETH crashed by 25% through real oracle transactions (the
Uniswap pools follow), then WBTC dropped by 50% on the V3 market's feed so that WBTC-collateral /
WETH-debt positions also become liquidatable. Each test runs inside evm_snapshot/evm_revert.

Every successful liquidation is checked to the wei: the pool's own LiquidationCall event, the swap output
against Uniswap's quoter/router at the same state, the Aave flash premium, the owner's and the builder's
balance deltas, the user's scaled debt, and that the executor holds nothing and has no allowance left.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import orjson
import pytest
from eth_abi.abi import decode, encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient, hex_to_bytes, hex_to_int
from keeper.chain.units import ray_div
from keeper.contracts import artifact_path
from keeper.contracts import our_artifact as packaged_artifact
from keeper.contracts_cli import MARKET_POOLS
from keeper.devnet.anvil import DEV_ACCOUNTS, Anvil, AnvilConfig
from keeper.devnet.contracts import our_artifact
from keeper.devnet.deploy import DevnetDeployment
from keeper.devnet.deployer import Deployer, fn_signature
from keeper.devnet.scenarios.borrowers import create_borrowers
from keeper.devnet.scenarios.crash import run_crash
from keeper.devnet.scenarios.depeg import run_depeg
from keeper.devnet.scenarios.positions import AAVE_V2, AAVE_V3, discover, read_health_factors
from keeper.devnet.stack import GAS_LIMIT, Devnet, ensure_state
from keeper.devnet.tokens import next_epoch_round, send_price_update
from keeper.errors import DecodeError, ExecutionReverted
from keeper.executors.executor_contract import (
    BATCH_ITEM_FAILED_TOPIC,
    BATCH_SELECTOR,
    BATCH_SIGNATURE,
    ERRORS,
    EXECUTE_OPERATION_SIGNATURE,
    LIQUIDATE_SELECTOR,
    LIQUIDATE_SIGNATURE,
    LIQUIDATED_TOPIC,
    PARAMS_TUPLE,
    ArbitrageParams,
    BalancerRoute,
    BatchItemFailure,
    FlashSource,
    LiquidatedEvent,
    LiquidationParams,
    MixedRoute,
    Route,
    RouteLeg,
    UnsupportedChainError,
    V2Route,
    V3Route,
    Venue,
    arbitraged_events,
    batch_item_failures,
    decode_batch_result,
    decode_executor_error,
    decode_liquidate,
    decode_liquidate_result,
    decode_liquidated,
    deploy_executor,
    encode_accept_ownership,
    encode_arbitrage,
    encode_batch,
    encode_liquidate,
    encode_set_max_coinbase_bps,
    encode_set_max_slippage_bps,
    encode_set_operator,
    encode_set_pool,
    encode_sweep,
    encode_sweep_eth,
    encode_transfer_ownership,
    encode_v3_path,
    executor_build,
    liquidated_events,
    slippage_floor,
    supports_transient_storage,
)

pytestmark = pytest.mark.integration

SEED = 1
N_BORROWERS = 50
GAS = 3_000_000
COINBASE = to_checksum_address("0x" + keccak(b"keeper-test-builder").hex()[:40])
OPERATOR_EOA = to_checksum_address("0x" + keccak(b"keeper-test-operator").hex()[:40])
NEW_OWNER = to_checksum_address("0x" + keccak(b"keeper-test-new-owner").hex()[:40])
WAD = 10**18
LIQUIDATION_CALL_TOPIC = (
    "0x" + keccak(text="LiquidationCall(address,address,address,uint256,uint256,address,bool)").hex()
)
GAS_FIGURES: dict[str, int] = {}
MAX_COINBASE_BPS = 9_500
MAX_SLIPPAGE_BPS = 1_000


@dataclass(frozen=True)
class Target:
    market: str
    user: str
    collateral: str
    debt: str
    health_factor: int
    debt_balance: int


@dataclass
class Env:
    net: Miner
    rpc: RpcClient
    dep: DevnetDeployment
    executor: str
    owner: str
    attacker: str
    targets: dict[str, Target]
    """case name -> a liquidatable position"""

    def sym(self, symbol: str) -> str:
        return self.dep.tokens[symbol].address

    def pool_of(self, market: str) -> str:
        return self.dep.aave_v3.pool if market == AAVE_V3 else self.dep.aave_v2.lending_pool

    def reserves_of(self, market: str) -> Any:
        return self.dep.aave_v3.reserves if market == AAVE_V3 else self.dep.aave_v2.reserves


# --- small chain helpers --------------------------------------------------------------------------------


async def call_uint(rpc: RpcClient, to: str, sig: str, types: Sequence[str], args: Sequence[Any]) -> int:
    (value,) = decode(["uint256"], await rpc.eth_call(to, encode_call(sig, types, args)))
    return int(value)


async def balance_of(rpc: RpcClient, token: str, who: str, block: str | int = "latest") -> int:
    raw = await rpc.eth_call(token, encode_call("balanceOf(address)", ["address"], [who]), block)
    return int(decode(["uint256"], raw)[0])


async def send(
    env: Env, sender: str, to: str, data: bytes, *, gas: int = GAS, value: int = 0
) -> dict[str, Any]:
    """Sends one transaction, mines one block with it, returns the receipt (status may be 0)."""
    tx = {"from": sender, "to": to, "data": "0x" + data.hex(), "gas": hex(gas), "value": hex(value)}
    tx_hash = await env.rpc.call("eth_sendTransaction", [tx])
    await env.net.mine()
    receipt = await env.rpc.call("eth_getTransactionReceipt", [tx_hash])
    assert receipt is not None, "transaction was not mined"
    return dict(receipt)


async def revert_error(env: Env, sender: str, to: str, data: bytes) -> tuple[str, tuple[Any, ...]]:
    """eth_call that must revert with one of the executor's custom errors; returns (name, args)."""
    with pytest.raises(ExecutionReverted) as info:
        await env.rpc.eth_call(to, data, sender=sender)
    data_field = info.value.data
    assert isinstance(data_field, str), f"no revert data: {info.value}"
    decoded = decode_executor_error(hex_to_bytes(data_field))
    assert decoded is not None, f"not an executor error: {data_field}"
    return decoded


async def mined_revert(env: Env, receipt: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """The executor error a mined, reverted transaction ended with (from its call trace)."""
    assert receipt["status"] == "0x0"
    trace = await env.rpc.call(
        "debug_traceTransaction", [receipt["transactionHash"], {"tracer": "callTracer"}]
    )
    decoded = decode_executor_error(hex_to_bytes(trace.get("output", "0x")))
    assert decoded is not None, trace
    return decoded


def eth_transfers_to(trace: dict[str, Any], to: str) -> list[int]:
    """Values of every call frame in a callTracer trace that sends ETH to `to`."""
    out = []
    if trace.get("to", "").lower() == to.lower() and hex_to_int(trace.get("value", "0x0")) > 0:
        out.append(hex_to_int(trace["value"]))
    for sub in trace.get("calls", []):
        out += eth_transfers_to(sub, to)
    return out


async def coinbase_tips(rpc: RpcClient, receipt: dict[str, Any]) -> int:
    """What block.coinbase earned from the block's transactions' priority fees (base fee is burnt)."""
    block = await rpc.call("eth_getBlockByNumber", [receipt["blockNumber"], False])
    base_fee = hex_to_int(block["baseFeePerGas"])
    tips = 0
    for tx_hash in block["transactions"]:
        r = await rpc.call("eth_getTransactionReceipt", [tx_hash])
        tips += (hex_to_int(r["effectiveGasPrice"]) - base_fee) * hex_to_int(r["gasUsed"])
    return tips


async def debt_balance(env: Env, market: str, symbol_addr: str, user: str) -> int:
    reserve = next(r for r in env.reserves_of(market).values() if r.asset.lower() == symbol_addr.lower())
    return await balance_of(env.rpc, reserve.variable_debt_token, user) + await balance_of(
        env.rpc, reserve.stable_debt_token, user
    )


async def scaled_variable_debt(env: Env, market: str, asset: str, user: str, block: int) -> int:
    reserve = next(r for r in env.reserves_of(market).values() if r.asset.lower() == asset.lower())
    raw = await env.rpc.eth_call(
        reserve.variable_debt_token, encode_call("scaledBalanceOf(address)", ["address"], [user]), block
    )
    return int(decode(["uint256"], raw)[0])


# --- fixtures -------------------------------------------------------------------------------------------


async def _pick_targets(rpc: RpcClient, dep: DevnetDeployment) -> dict[str, Target]:
    by_addr = {t.address.lower(): s for s, t in dep.tokens.items()}
    positions = list((await discover(rpc, dep)).values())
    await read_health_factors(rpc, dep, positions)
    candidates: dict[str, list[Target]] = {}
    for p in positions:
        assert p.health_factor is not None
        if p.health_factor >= WAD or len(p.collateral) != 1 or len(p.debt) != 1:
            continue
        coll, debt = by_addr[p.collateral[0].lower()], by_addr[p.debt[0].lower()]
        case = {
            (AAVE_V3, "WETH", "USDC"): "v3-weth-usdc",
            (AAVE_V3, "WETH", "USDT"): "v3-weth-usdt",
            (AAVE_V3, "WBTC", "WETH"): "v3-wbtc-weth",
            (AAVE_V2, "WETH", "DAI"): "v2-weth-dai",
            (AAVE_V2, "WETH", "USDC"): "v2-weth-usdc",
        }.get((p.market, coll, debt))
        if case is None:
            continue
        reserves = dep.aave_v3.reserves if p.market == AAVE_V3 else dep.aave_v2.reserves
        r = reserves[debt]
        owed = await balance_of(rpc, r.variable_debt_token, p.user) + await balance_of(
            rpc, r.stable_debt_token, p.user
        )
        candidates.setdefault(case, []).append(
            Target(p.market, p.user, p.collateral[0], p.debt[0], p.health_factor, owed)
        )
    # The smallest debt of each kind: least price impact, so the liquidation is surely profitable.
    targets = {case: min(ts, key=lambda t: t.debt_balance) for case, ts in candidates.items()}
    # And the deepest under water: its collateral is worth less than debt + bonus, so the pool takes
    # less debt than offered and seizes all the collateral.
    if "v3-weth-usdc" in candidates:
        targets["v3-weth-usdc-capped"] = min(candidates["v3-weth-usdc"], key=lambda t: t.health_factor)
    return targets


class Miner(Protocol):
    async def mine(self) -> int: ...


class EvmMiner:
    """Blocks on demand with evm_mine (an anvil of our own, without the devnet's relay)."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    async def mine(self) -> int:
        await self.rpc.call("evm_mine")
        return await self.rpc.block_number()


async def make_env(net: Miner, rpc: RpcClient, dep: DevnetDeployment, evm_version: str = "auto") -> Env:
    """Borrowers, the crash, WBTC -50%, then a fresh executor owned by the keeper account."""
    await create_borrowers(rpc, dep, N_BORROWERS, seed=SEED)
    await run_crash(rpc, dep, drop_bps=2_500, blocks=5, mine=True)
    # WBTC -50% on the V3 market's feed (a real transmit): WBTC-backed WETH loans go under water.
    feed = dep.feeds.usd["WBTC"]
    (answer,) = decode(["int256"], await rpc.eth_call(feed, encode_call("latestAnswer()", [], [])))
    await send_price_update(
        rpc,
        feed,
        int(answer) // 2,
        transmitter=dep.feeds.transmitter,
        epoch_round=await next_epoch_round(rpc, feed),
    )
    await net.mine()
    targets = await _pick_targets(rpc, dep)

    owner = dep.accounts["keeper"]
    await rpc.call("evm_setAutomine", [True])
    try:
        executor = await deploy_executor(
            Deployer(rpc, dep.accounts["deployer"]),
            owner,
            None,
            flash_pool=dep.aave_v3.pool,
            router_v3=dep.uniswap_v3.swap_router,
            router_v2=dep.uniswap_v2.router,
            weth=dep.tokens["WETH"].address,
            pools={dep.aave_v3.pool: dep.aave_v3.oracle, dep.aave_v2.lending_pool: dep.aave_v2.oracle},
            max_coinbase_bps=MAX_COINBASE_BPS,
            max_slippage_bps=MAX_SLIPPAGE_BPS,
            evm_version=evm_version,
            balancer_vault=dep.balancer.vault,
        )
    finally:
        await rpc.call("evm_setAutomine", [False])
    for account in (OPERATOR_EOA, NEW_OWNER):
        await rpc.call("anvil_setBalance", [account, hex(10 * WAD)])
        await rpc.call("anvil_impersonateAccount", [account])
    return Env(net, rpc, dep, executor, owner, dep.accounts["competitor"], targets)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    async with Devnet(block_time=None) as net:
        rpc, dep = net.require()
        yield await make_env(net, rpc, dep)
        if GAS_FIGURES:
            print("\nLiquidationExecutor gas used:", GAS_FIGURES)


@pytest.fixture
async def e(env: Env) -> AsyncIterator[Env]:
    snap = await env.rpc.call("evm_snapshot")
    await env.rpc.call("anvil_setCoinbase", [COINBASE])
    try:
        yield env
    finally:
        assert await env.rpc.call("evm_revert", [snap]) is True


# --- building calls -------------------------------------------------------------------------------------


async def head(env: Env) -> int:
    return await env.rpc.block_number()


def route_for(env: Env, case: str) -> tuple[Route, V3Route | None]:
    """(collateral -> debt route, debt -> WETH route for the builder's share) for each case."""
    s = env.sym
    weth_usdc = V3Route((s("USDC"), s("WETH")), (500,))
    routes: dict[str, tuple[Route, V3Route | None]] = {
        "v3-weth-usdc": (V3Route((s("WETH"), s("USDC")), (500,)), weth_usdc),
        "v3-weth-usdt": (
            V3Route((s("WETH"), s("USDC"), s("USDT")), (500, 100)),
            V3Route((s("USDT"), s("USDC"), s("WETH")), (100, 500)),
        ),
        "v3-wbtc-weth": (V3Route((s("WBTC"), s("WETH")), (3000,)), None),
        "v2-weth-dai": (
            V2Route((s("WETH"), s("DAI"))),
            V3Route((s("DAI"), s("USDC"), s("WETH")), (100, 500)),
        ),
        "v2-weth-usdc": (V2Route((s("WETH"), s("USDC"))), weth_usdc),
    }
    return routes[case]


async def params_for(
    env: Env, case: str, *, coinbase_bps: int = 3_000, min_profit: int = 1
) -> LiquidationParams:
    if case not in env.targets:
        pytest.fail(f"no liquidatable position for {case}: the scenario changed")
    t = env.targets[case]
    route, coinbase_route = route_for(env, case.removesuffix("-capped"))
    # Close factor: Aave V3 allows 100% below HF 0.95, else 50%; Aave V2 always 50%.
    full = t.market == AAVE_V3 and t.health_factor < 95 * WAD // 100
    return LiquidationParams(
        lending_pool=env.pool_of(t.market),
        collateral=t.collateral,
        debt=t.debt,
        user=t.user,
        debt_to_cover=t.debt_balance if full else t.debt_balance // 2,
        route=route,
        min_profit=min_profit,
        coinbase_bps=coinbase_bps,
        coinbase_route=coinbase_route,
        max_block=await head(env) + 1,
    )


async def quote_swap(env: Env, route: Route, amount_in: int, block: int) -> int:
    """The swap output at `block`'s state: QuoterV2 (V3) or Router02.getAmountsOut (V2)."""
    assert isinstance(route, (V3Route, V2Route)), "quote Balancer and mixed routes with the Python venues"
    if isinstance(route, V3Route):
        raw = await env.rpc.eth_call(
            env.dep.uniswap_v3.quoter_v2,
            encode_call("quoteExactInput(bytes,uint256)", ["bytes", "uint256"], [route.encode(), amount_in]),
            block,
        )
        return int(decode(["uint256", "uint160[]", "uint32[]", "uint256"], raw)[0])
    raw = await env.rpc.eth_call(
        env.dep.uniswap_v2.router,
        encode_call(
            "getAmountsOut(uint256,address[])", ["uint256", "address[]"], [amount_in, list(route.tokens)]
        ),
        block,
    )
    return int(decode(["uint256[]"], raw)[0][-1])


async def assert_executor_clean(env: Env) -> None:
    """No token, no ETH, no allowance left anywhere the executor ever approved."""
    spenders = [
        env.dep.aave_v3.pool,
        env.dep.aave_v2.lending_pool,
        env.dep.uniswap_v3.swap_router,
        env.dep.uniswap_v2.router,
        env.dep.balancer.vault,
    ]
    for symbol, token in env.dep.tokens.items():
        assert await balance_of(env.rpc, token.address, env.executor) == 0, symbol
        for spender in spenders:
            allowance = await call_uint(
                env.rpc,
                token.address,
                "allowance(address,address)",
                ["address", "address"],
                [env.executor, spender],
            )
            assert allowance == 0, (symbol, spender)
    assert await env.rpc.get_balance(env.executor) == 0


class Quoter(Protocol):
    """The output of selling `amount` along `route` at `block`'s state."""

    async def __call__(self, env: Env, route: Route, amount: int, block: int) -> int: ...


async def liquidate_and_check(
    env: Env, p: LiquidationParams, sender: str, *, quote: Quoter | None = None
) -> tuple[LiquidatedEvent, int]:
    """Sends liquidate(p), checks every amount (the sale against `quote`, default the Uniswap quoter and
    router); returns the event and the gas used."""
    rpc = env.rpc
    flash_bps = await call_uint(rpc, env.dep.aave_v3.pool, "FLASHLOAN_PREMIUM_TOTAL()", [], [])
    start = await head(env)
    market = AAVE_V3 if p.lending_pool == env.dep.aave_v3.pool else AAVE_V2
    owner_before = await balance_of(rpc, p.debt, env.owner)
    coinbase_before = await rpc.get_balance(COINBASE)
    debt_before = await debt_balance(env, market, p.debt, p.user)
    scaled_before = await scaled_variable_debt(env, market, p.debt, p.user, start)

    receipt = await send(env, sender, env.executor, encode_liquidate(p))
    assert receipt["status"] == "0x1", receipt
    block = hex_to_int(receipt["blockNumber"])
    assert block == start + 1

    events = liquidated_events(receipt, env.executor)
    assert len(events) == 1
    ev = events[0]
    assert (ev.lending_pool, ev.user, ev.collateral, ev.debt) == (
        to_checksum_address(p.lending_pool),
        to_checksum_address(p.user),
        to_checksum_address(p.collateral),
        to_checksum_address(p.debt),
    )

    # The pool's own event agrees on the amounts, and the liquidator was the executor.
    pool_logs = [
        log
        for log in receipt["logs"]
        if log["topics"][0] == LIQUIDATION_CALL_TOPIC and log["address"].lower() == p.lending_pool.lower()
    ]
    assert len(pool_logs) == 1
    repaid, seized, liquidator, receive_a = decode(
        ["uint256", "uint256", "address", "bool"], hex_to_bytes(pool_logs[0]["data"])
    )
    assert (ev.debt_repaid, ev.collateral_seized) == (repaid, seized)
    assert liquidator.lower() == env.executor.lower() and receive_a is False
    assert 0 < ev.debt_repaid <= p.debt_to_cover

    # Flash premium: Aave's percentMul (half up) of the borrowed amount.
    assert ev.flash_premium == (p.debt_to_cover * flash_bps + 5_000) // 10_000
    # All the seized collateral was sold, for exactly what the venue quoted at the pre-tx state.
    assert ev.swap_out == await (quote or quote_swap)(env, p.route, ev.collateral_seized, start)

    gross = ev.swap_out - ev.debt_repaid - ev.flash_premium
    assert gross == ev.gross_profit > 0
    share = gross * p.coinbase_bps // 10_000
    assert ev.profit == gross - share >= p.min_profit

    # The owner got exactly the profit; the builder exactly the payment (plus the block's tips).
    assert await balance_of(rpc, p.debt, env.owner) - owner_before == ev.profit
    tips = await coinbase_tips(rpc, receipt)
    assert await rpc.get_balance(COINBASE) - coinbase_before == ev.coinbase_paid + tips
    if p.coinbase_bps > 0:
        assert ev.coinbase_paid > 0
        if p.debt.lower() == env.sym("WETH").lower():
            assert ev.coinbase_paid == share  # unwrapped 1:1

    # The user's debt went down by exactly what was repaid (scaled at the block's borrow index).
    index = await call_uint(
        rpc, p.lending_pool, "getReserveNormalizedVariableDebt(address)", ["address"], [p.debt]
    )
    scaled_after = await scaled_variable_debt(env, market, p.debt, p.user, block)
    assert scaled_before - scaled_after == ray_div(ev.debt_repaid, index)
    assert await debt_balance(env, market, p.debt, p.user) < debt_before

    await assert_executor_clean(env)
    return ev, hex_to_int(receipt["gasUsed"])


# --- tests ----------------------------------------------------------------------------------------------


async def test_abi_matches_the_artifact(env: Env) -> None:
    """The Python encoders agree with the compiled contract's ABI, and calldata round-trips."""
    abi = our_artifact("LiquidationExecutor").abi
    sigs = {fn_signature(item) for item in abi if item["type"] == "function"}
    assert LIQUIDATE_SIGNATURE in sigs
    assert function_signature_to_4byte_selector(LIQUIDATE_SIGNATURE) == LIQUIDATE_SELECTOR
    assert EXECUTE_OPERATION_SIGNATURE in sigs
    assert {"setOperator(address,bool)", "sweep(address)", "sweepETH()"} <= sigs
    assert {
        BATCH_SIGNATURE,
        "setPool(address,address)",
        "setMaxCoinbaseBps(uint16)",
        "setMaxSlippageBps(uint16)",
        "transferOwnership(address)",
        "acceptOwnership()",
    } <= sigs
    failed = next(item for item in abi if item["type"] == "event" and item["name"] == "BatchItemFailed")
    assert "0x" + keccak(text=fn_signature(failed)).hex() == BATCH_ITEM_FAILED_TOPIC
    errors = {fn_signature(item) for item in abi if item["type"] == "error"}
    assert errors == {f"{name}({','.join(types)})" for name, types in ERRORS.values()}
    event = next(item for item in abi if item["type"] == "event" and item["name"] == "Liquidated")
    assert "0x" + keccak(text=fn_signature(event)).hex() == LIQUIDATED_TOPIC

    p = await params_for(env, "v3-weth-usdt")
    assert decode_liquidate(encode_liquidate(p)) == replace(
        p,
        lending_pool=to_checksum_address(p.lending_pool),
        collateral=to_checksum_address(p.collateral),
        debt=to_checksum_address(p.debt),
        user=to_checksum_address(p.user),
    )


@pytest.mark.parametrize(
    "case", ["v3-weth-usdc", "v3-weth-usdt", "v3-wbtc-weth", "v2-weth-dai", "v2-weth-usdc"]
)
async def test_profitable_liquidation_in_one_tx(e: Env, case: str) -> None:
    p = await params_for(e, case)
    ev, gas = await liquidate_and_check(e, p, e.owner)
    GAS_FIGURES[case] = gas


async def test_pool_takes_less_than_borrowed(e: Env) -> None:
    """Collateral-capped: the pool repays less than the flash loan; the rest repays the loan."""
    p = await params_for(e, "v3-weth-usdc-capped")
    assert p.debt_to_cover == e.targets["v3-weth-usdc-capped"].debt_balance  # HF < 0.95: all of it
    ev, _ = await liquidate_and_check(e, p, e.owner)
    assert ev.debt_repaid < p.debt_to_cover
    a_weth = e.dep.aave_v3.reserves["WETH"].a_token
    # All the collateral was taken (to us and the protocol fee); Aave's half-up rounding of scaled aToken
    # amounts may leave one wei.
    assert await balance_of(e.rpc, a_weth, p.user) <= 1


@pytest.mark.parametrize("case", ["v3-weth-usdc", "v2-weth-dai"])
async def test_zero_builder_share_pays_nothing(e: Env, case: str) -> None:
    p = replace(await params_for(e, case), coinbase_bps=0, coinbase_route=None)
    ev, gas = await liquidate_and_check(e, p, e.owner)
    assert ev.coinbase_paid == 0 and ev.profit == ev.gross_profit
    GAS_FIGURES[f"{case} (no builder payment)"] = gas


async def test_min_profit_exactly_met_succeeds_and_one_more_wei_reverts(e: Env) -> None:
    p = await params_for(e, "v3-weth-usdc")
    block = await e.rpc.call("eth_getBlockByNumber", ["latest", False])
    timestamp = hex_to_int(block["timestamp"]) + 12
    snap = await e.rpc.call("evm_snapshot")
    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    ev, _ = await liquidate_and_check(e, p, e.owner)
    assert await e.rpc.call("evm_revert", [snap]) is True
    # Same state, same block timestamp: the profit is reproducible to the wei, so a minimum one wei above
    # it reverts (mined, status 0) and a minimum equal to it passes with the same event.
    snap = await e.rpc.call("evm_snapshot")
    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    receipt = await send(e, e.owner, e.executor, encode_liquidate(replace(p, min_profit=ev.profit + 1)))
    assert await mined_revert(e, receipt) == ("InsufficientProfit", (ev.profit, ev.profit + 1))
    assert await e.rpc.call("evm_revert", [snap]) is True
    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    ev2, _ = await liquidate_and_check(e, replace(p, min_profit=ev.profit), e.owner)
    assert ev2 == ev


async def test_unprofitable_reverts_and_builder_is_not_paid(e: Env) -> None:
    p = await params_for(e, "v3-weth-usdc")
    p = replace(p, min_profit=p.debt_to_cover)  # more than any liquidation bonus can give
    name, args = await revert_error(e, e.owner, e.executor, encode_liquidate(p))
    assert name == "InsufficientProfit" and args[1] == p.debt_to_cover and 0 < args[0] < args[1]

    coinbase_before = await e.rpc.get_balance(COINBASE)
    owner_before = await balance_of(e.rpc, p.debt, e.owner)
    debt_before = await debt_balance(e, AAVE_V3, p.debt, p.user)
    receipt = await send(e, e.owner, e.executor, encode_liquidate(p))
    assert (await mined_revert(e, receipt))[0] == "InsufficientProfit"
    assert receipt["logs"] == []
    trace = await e.rpc.call("debug_traceTransaction", [receipt["transactionHash"], {"tracer": "callTracer"}])
    assert eth_transfers_to(trace, COINBASE) == []
    # The builder got only the reverted tx's own priority fee: no payment from the contract.
    assert await e.rpc.get_balance(COINBASE) - coinbase_before == await coinbase_tips(e.rpc, receipt)
    assert await balance_of(e.rpc, p.debt, e.owner) == owner_before
    assert await debt_balance(e, AAVE_V3, p.debt, p.user) >= debt_before  # untouched (interest only)
    await assert_executor_clean(e)


async def test_non_owner_non_operator_cannot_call(e: Env) -> None:
    p = await params_for(e, "v3-weth-usdc")
    for who in (e.attacker, OPERATOR_EOA, e.dep.accounts["deployer"]):
        assert await revert_error(e, who, e.executor, encode_liquidate(p)) == ("NotOperator", ())
    receipt = await send(e, e.attacker, e.executor, encode_liquidate(p))
    assert await mined_revert(e, receipt) == ("NotOperator", ())
    for data in (encode_set_operator(e.attacker, True), encode_sweep(e.sym("USDC")), encode_sweep_eth()):
        assert await revert_error(e, e.attacker, e.executor, data) == ("NotOwner", ())
    # The deployer is not the owner either.
    assert await revert_error(e, e.dep.accounts["deployer"], e.executor, encode_sweep_eth()) == (
        "NotOwner",
        (),
    )


async def test_operator_set_by_owner_can_call(e: Env) -> None:
    p = await params_for(e, "v2-weth-usdc")
    assert await revert_error(e, OPERATOR_EOA, e.executor, encode_liquidate(p)) == ("NotOperator", ())
    receipt = await send(e, e.owner, e.executor, encode_set_operator(OPERATOR_EOA, True))
    assert receipt["status"] == "0x1"
    assert await call_uint(e.rpc, e.executor, "isOperator(address)", ["address"], [OPERATOR_EOA]) == 1

    p = replace(p, max_block=await head(e) + 1)
    ev, _ = await liquidate_and_check(e, p, OPERATOR_EOA)
    # The profit went to the owner, not to the operator who sent the call.
    assert await balance_of(e.rpc, p.debt, OPERATOR_EOA) == 0
    assert ev.profit > 0

    await send(e, e.owner, e.executor, encode_set_operator(OPERATOR_EOA, False))
    assert await revert_error(e, OPERATOR_EOA, e.executor, encode_liquidate(p)) == ("NotOperator", ())


def _execute_operation_call(asset: str, amount: int, premium: int, initiator: str, params: bytes) -> bytes:
    return encode_call(
        EXECUTE_OPERATION_SIGNATURE,
        ["address", "uint256", "uint256", "address", "bytes"],
        [asset, amount, premium, initiator, params],
    )


async def test_spoofed_callbacks_revert(e: Env) -> None:
    p = await params_for(e, "v3-weth-usdc")
    inner = encode_liquidate(p)[4:]  # abi.encode(Params), what the contract passes to the pool
    usdc = e.sym("USDC")
    premium = (p.debt_to_cover * 5 + 5_000) // 10_000
    spoof = _execute_operation_call(usdc, p.debt_to_cover, premium, e.executor, inner)
    # 1. Direct calls with the right arguments, from an EOA and even from the owner.
    for who in (e.attacker, e.owner):
        assert await revert_error(e, who, e.executor, spoof) == ("UnauthorizedCallback", ())
    receipt = await send(e, e.attacker, e.executor, spoof)
    assert await mined_revert(e, receipt) == ("UnauthorizedCallback", ())

    # 2. From the real pool address (impersonated) with initiator = the executor, outside a liquidate():
    #    the in-flight flag is not set.
    pool = e.dep.aave_v3.pool
    await e.rpc.call("anvil_impersonateAccount", [pool])
    await e.rpc.call("anvil_setBalance", [pool, hex(WAD)])
    try:
        assert await revert_error(e, pool, e.executor, spoof) == ("UnauthorizedCallback", ())
    finally:
        await e.rpc.call("anvil_stopImpersonatingAccount", [pool])

    # 3. A real flash loan taken by the attacker with the executor as receiver: the pool calls back with
    #    initiator = attacker.
    flash = encode_call(
        "flashLoanSimple(address,address,uint256,bytes,uint16)",
        ["address", "address", "uint256", "bytes", "uint16"],
        [e.executor, usdc, p.debt_to_cover, inner, 0],
    )
    with pytest.raises(ExecutionReverted) as info:
        await e.rpc.eth_call(pool, flash, sender=e.attacker)
    assert decode_executor_error(hex_to_bytes(info.value.data)) == ("UnauthorizedCallback", ())
    receipt = await send(e, e.attacker, pool, flash)
    assert receipt["status"] == "0x0"
    await assert_executor_clean(e)


async def test_expired_and_bad_routes_revert(e: Env) -> None:
    p = await params_for(e, "v3-weth-usdc")
    now = await head(e)
    late = replace(p, max_block=now - 1)
    assert await revert_error(e, e.owner, e.executor, encode_liquidate(late)) == ("Expired", (now - 1,))
    # Mined one block after its max_block: reverted, nothing liquidated.
    receipt = await send(e, e.owner, e.executor, encode_liquidate(replace(p, max_block=now)))
    assert await mined_revert(e, receipt) == ("Expired", (now,))
    assert receipt["logs"] == []
    # Raw tuples bypass the Python-side validation: the contract must refuse on its own.
    s = e.sym
    base = list(p.abi_tuple())

    def raw(**changes: Any) -> bytes:
        t = list(base)
        for index, value in changes.items():
            t[int(index[1:])] = value
        return LIQUIDATE_SELECTOR + encode([PARAMS_TUPLE], [tuple(t)])

    bad_paths = [
        raw(i7=encode_v3_path([s("WETH"), s("USDC"), s("USDT")], [500, 100])),  # ends at USDT, not USDC
        raw(i7=encode_v3_path([s("WBTC"), s("USDC")], [500])),  # starts at WBTC, not the collateral
        raw(i7=encode_v3_path([s("WETH"), s("USDC")], [500])[:-1]),  # truncated
        raw(i6=0),  # venue Invalid
        raw(i6=int(Venue.UNISWAP_V2)),  # a V3 path read as V2
        raw(i9=encode_v3_path([s("USDC"), s("USDT")], [100])),  # builder route not ending at WETH
        raw(i9=b""),  # builder share but no route to WETH
    ]
    for data in bad_paths:
        assert await revert_error(e, e.owner, e.executor, data) == ("BadPath", ())
    for data in (raw(i4=0), raw(i1=p.debt)):
        assert await revert_error(e, e.owner, e.executor, data) == ("BadParams", ())
    assert await revert_error(e, e.owner, e.executor, raw(i8=10_001)) == (
        "CoinbaseShareTooHigh",
        (10_001, MAX_COINBASE_BPS),
    )


async def test_receive_and_sweep(e: Env) -> None:
    # ETH from anyone but WETH is refused.
    receipt = await send(e, e.attacker, e.executor, b"", value=10**15)
    assert await mined_revert(e, receipt) == ("NotWeth", ())
    # Tokens sent by mistake: only the owner can sweep them, and they go to the owner.
    usdc = e.sym("USDC")
    amount = 12_345_678
    mint = encode_call("mint(address,uint256)", ["address", "uint256"], [e.executor, amount])
    assert (await send(e, e.attacker, usdc, mint))["status"] == "0x1"  # the devnet's mintable USDC
    assert await revert_error(e, e.attacker, e.executor, encode_sweep(usdc)) == ("NotOwner", ())
    owner_before = await balance_of(e.rpc, usdc, e.owner)
    assert (await send(e, e.owner, e.executor, encode_sweep(usdc)))["status"] == "0x1"
    assert await balance_of(e.rpc, usdc, e.owner) - owner_before == amount
    # ETH forced in (selfdestruct-style via anvil) can be rescued too.
    await e.rpc.call("anvil_setBalance", [e.executor, hex(777)])
    owner_eth = await e.rpc.get_balance(e.owner)
    receipt = await send(e, e.owner, e.executor, encode_sweep_eth())
    assert receipt["status"] == "0x1"
    fee = hex_to_int(receipt["effectiveGasPrice"]) * hex_to_int(receipt["gasUsed"])
    assert await e.rpc.get_balance(e.owner) - owner_eth == 777 - fee
    await assert_executor_clean(e)


def test_route_encoding_layout() -> None:
    """Packed paths byte for byte, and malformed calldata/logs are rejected with DecodeError."""
    a, b, c = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20
    assert encode_v3_path([a, b, c], [500, 3000]) == (
        bytes.fromhex("11" * 20) + bytes.fromhex("0001f4") + bytes.fromhex("22" * 20)
    ) + bytes.fromhex("000bb8") + bytes.fromhex("33" * 20)
    assert V2Route((a, b, c)).encode() == bytes.fromhex("11" * 20 + "22" * 20 + "33" * 20)
    with pytest.raises(ValueError):
        encode_v3_path([a, b], [2**24])
    with pytest.raises(ValueError):
        V3Route((a, b), ())
    for junk in (b"", LIQUIDATE_SELECTOR, LIQUIDATE_SELECTOR + b"\x00" * 64, b"\xde\xad\xbe\xef" * 50):
        with pytest.raises(DecodeError):
            decode_liquidate(junk)
    with pytest.raises(DecodeError):
        decode_liquidated({"topics": [LIQUIDATED_TOPIC], "data": "0x", "address": a})


# --- owner bounds ---------------------------------------------------------------------------------------


async def make_operator(e: Env) -> None:
    receipt = await send(e, e.owner, e.executor, encode_set_operator(OPERATOR_EOA, True))
    assert receipt["status"] == "0x1"


async def read_word(e: Env, signature: str, types: Sequence[str] = (), args: Sequence[Any] = ()) -> Any:
    out = "address" if signature.startswith(("owner", "pendingOwner", "oracleOf")) else "uint256"
    return decode([out], await e.rpc.eth_call(e.executor, encode_call(signature, types, args)))[0]


def revert_string(data: bytes) -> str:
    """The message of a Solidity `Error(string)` revert."""
    assert data[:4] == function_signature_to_4byte_selector("Error(string)"), data.hex()
    return str(decode(["string"], data[4:])[0])


async def revert_data(e: Env, sender: str, data: bytes) -> bytes:
    with pytest.raises(ExecutionReverted) as info:
        await e.rpc.eth_call(e.executor, data, sender=sender)
    return info.value.revert_data


async def test_operator_cannot_raise_the_builder_share_above_the_owners_max(e: Env) -> None:
    await make_operator(e)
    assert await read_word(e, "maxCoinbaseBps()") == MAX_COINBASE_BPS
    p = await params_for(e, "v3-weth-usdc", coinbase_bps=MAX_COINBASE_BPS + 1)
    assert await revert_error(e, OPERATOR_EOA, e.executor, encode_liquidate(p)) == (
        "CoinbaseShareTooHigh",
        (MAX_COINBASE_BPS + 1, MAX_COINBASE_BPS),
    )
    receipt = await send(e, OPERATOR_EOA, e.executor, encode_liquidate(p))
    assert await mined_revert(e, receipt) == (
        "CoinbaseShareTooHigh",
        (MAX_COINBASE_BPS + 1, MAX_COINBASE_BPS),
    )
    # The operator cannot move the bound; the owner can (down here), and it binds at once.
    assert await revert_error(e, OPERATOR_EOA, e.executor, encode_set_max_coinbase_bps(10_000)) == (
        "NotOwner",
        (),
    )
    assert (await send(e, e.owner, e.executor, encode_set_max_coinbase_bps(3_000)))["status"] == "0x1"
    assert await read_word(e, "maxCoinbaseBps()") == 3_000
    p = await params_for(e, "v3-weth-usdc", coinbase_bps=3_001)
    assert await revert_error(e, OPERATOR_EOA, e.executor, encode_liquidate(p)) == (
        "CoinbaseShareTooHigh",
        (3_001, 3_000),
    )
    assert await revert_error(e, e.owner, e.executor, encode_set_max_coinbase_bps(10_001)) == (
        "BadParams",
        (),
    )
    # Exactly at the bound: paid, to the wei.
    ev, _ = await liquidate_and_check(
        e, await params_for(e, "v3-weth-usdc", coinbase_bps=3_000), OPERATOR_EOA
    )
    assert ev.coinbase_paid > 0


async def test_operator_cannot_liquidate_on_an_unlisted_pool(e: Env) -> None:
    await make_operator(e)
    v2, v3 = e.dep.aave_v2.lending_pool, e.dep.aave_v3.pool
    assert (
        await read_word(e, "oracleOf(address)", ["address"], [v3])
    ).lower() == e.dep.aave_v3.oracle.lower()
    assert (
        await read_word(e, "oracleOf(address)", ["address"], [v2])
    ).lower() == e.dep.aave_v2.oracle.lower()
    # Any other address (here: a contract the operator controls, the attacker's EOA) is refused before any
    # approval or call.
    p = await params_for(e, "v3-weth-usdc")
    for fake in (e.attacker, e.dep.uniswap_v2.router):
        assert await revert_error(
            e, OPERATOR_EOA, e.executor, encode_liquidate(replace(p, lending_pool=fake))
        ) == (
            "PoolNotAllowed",
            (fake.lower(),),
        )
    # Only the owner manages the list; removing the V2 pool makes its liquidations revert.
    assert await revert_error(e, OPERATOR_EOA, e.executor, encode_set_pool(e.attacker, e.attacker)) == (
        "NotOwner",
        (),
    )
    zero = "0x" + "00" * 20
    receipt = await send(e, e.owner, e.executor, encode_set_pool(v2, zero))
    assert receipt["status"] == "0x1"
    assert receipt["logs"][0]["topics"][0] == "0x" + keccak(text="PoolSet(address,address)").hex()
    p2 = await params_for(e, "v2-weth-dai")
    receipt = await send(e, OPERATOR_EOA, e.executor, encode_liquidate(p2))
    assert await mined_revert(e, receipt) == ("PoolNotAllowed", (v2.lower(),))
    await assert_executor_clean(e)
    # Listed again: works.
    assert (await send(e, e.owner, e.executor, encode_set_pool(v2, e.dep.aave_v2.oracle)))["status"] == "0x1"
    await liquidate_and_check(e, replace(p2, max_block=await head(e) + 1), OPERATOR_EOA)


async def oracle_floor(e: Env, p: LiquidationParams, seized: int, max_slippage_bps: int, block: int) -> int:
    """The floor computed off chain from the pool's oracle (Python mirror of slippageFloor)."""
    oracle = e.dep.aave_v3.oracle if p.lending_pool == e.dep.aave_v3.pool else e.dep.aave_v2.oracle

    async def price(asset: str) -> int:
        raw = await e.rpc.eth_call(oracle, encode_call("getAssetPrice(address)", ["address"], [asset]), block)
        return int(decode(["uint256"], raw)[0])

    decimals = {t.address.lower(): t.decimals for t in e.dep.tokens.values()}
    return slippage_floor(
        seized,
        await price(p.collateral),
        await price(p.debt),
        decimals[p.collateral.lower()],
        decimals[p.debt.lower()],
        max_slippage_bps,
    )


async def test_slippage_floor_is_exact_and_binds(e: Env) -> None:
    """The oracle floor, to the wei: the largest maxSlippageBps that rejects this sale reverts with
    SlippageTooHigh(received, floor), one bp more lets the same sale through."""
    p = await params_for(e, "v3-weth-usdc")
    timestamp = hex_to_int((await e.rpc.call("eth_getBlockByNumber", ["latest", False]))["timestamp"]) + 12
    snap = await e.rpc.call("evm_snapshot")
    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    ev, _ = await liquidate_and_check(e, p, e.owner)
    assert await e.rpc.call("evm_revert", [snap]) is True
    start = await head(e)
    # The contract's view (at the deployed maxSlippageBps) agrees with the Python mirror.
    on_chain = await call_uint(
        e.rpc,
        e.executor,
        "slippageFloor(address,address,address,uint256)",
        ["address", "address", "address", "uint256"],
        [p.lending_pool, p.collateral, p.debt, ev.collateral_seized],
    )
    assert on_chain == await oracle_floor(e, p, ev.collateral_seized, MAX_SLIPPAGE_BPS, start)
    floors = [await oracle_floor(e, p, ev.collateral_seized, bps, start) for bps in range(0, 1_001)]
    passing = [bps for bps, floor in enumerate(floors) if floor <= ev.swap_out]
    assert passing, "the sale lost more than 10% against the oracle: the scenario changed"
    s = passing[0]
    if s == 0:
        pytest.fail("the pool paid at least the oracle value: no slippage to bound in this scenario")
    assert floors[s - 1] > ev.swap_out >= floors[s]
    assert (await send(e, e.owner, e.executor, encode_set_max_slippage_bps(s - 1)))["status"] == "0x1"
    p = replace(p, max_block=await head(e) + 1)
    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp + 12])
    snap = await e.rpc.call("evm_snapshot")
    receipt = await send(e, e.owner, e.executor, encode_liquidate(p))
    assert await mined_revert(e, receipt) == ("SlippageTooHigh", (ev.swap_out, floors[s - 1]))
    assert await e.rpc.call("evm_revert", [snap]) is True
    assert (await send(e, e.owner, e.executor, encode_set_max_slippage_bps(s)))["status"] == "0x1"
    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp + 24])
    ev2, _ = await liquidate_and_check(e, replace(p, max_block=await head(e) + 1), e.owner)
    assert (ev2.collateral_seized, ev2.swap_out) == (ev.collateral_seized, ev.swap_out)
    # Operators cannot loosen it.
    await make_operator(e)
    assert await revert_error(e, OPERATOR_EOA, e.executor, encode_set_max_slippage_bps(10_000)) == (
        "NotOwner",
        (),
    )


async def test_operator_cannot_sell_into_a_manipulated_pool(e: Env) -> None:
    """Someone dumps WETH into the V2 WETH/USDC pair first (a sandwich): the sale returns far less than the
    oracle value and the liquidation reverts, whatever minOut the operator passed (even 0)."""
    await make_operator(e)
    p = await params_for(e, "v2-weth-usdc")
    weth, usdc = e.sym("WETH"), e.sym("USDC")
    factory = e.dep.uniswap_v2.factory
    (pair,) = decode(
        ["address"],
        await e.rpc.eth_call(
            factory, encode_call("getPair(address,address)", ["address", "address"], [weth, usdc])
        ),
    )
    dump = await balance_of(e.rpc, weth, pair)  # doubles the pair's WETH: the price roughly quarters
    deposit = encode_call("deposit()", [], [])
    assert (await send(e, e.attacker, weth, deposit, value=dump))["status"] == "0x1"
    approve = encode_call("approve(address,uint256)", ["address", "uint256"], [e.dep.uniswap_v2.router, dump])
    assert (await send(e, e.attacker, weth, approve))["status"] == "0x1"
    swap = encode_call(
        "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
        ["uint256", "uint256", "address[]", "address", "uint256"],
        [dump, 0, [weth, usdc], e.attacker, 2**40],
    )
    assert (await send(e, e.attacker, e.dep.uniswap_v2.router, swap))["status"] == "0x1"
    p = replace(p, max_block=await head(e) + 1, min_out=0)
    name, (received, floor) = await revert_error(e, OPERATOR_EOA, e.executor, encode_liquidate(p))
    assert name == "SlippageTooHigh" and 0 < received < floor
    receipt = await send(e, OPERATOR_EOA, e.executor, encode_liquidate(p))
    assert (await mined_revert(e, receipt))[0] == "SlippageTooHigh"
    await assert_executor_clean(e)


@pytest.mark.parametrize("case", ["v3-weth-usdc", "v2-weth-usdc", "v2-weth-dai"])
async def test_min_out_is_passed_to_the_router(e: Env, case: str) -> None:
    """minOut one above what the sale gives: the router itself refuses; equal to it: the exact sale."""
    p = await params_for(e, case)
    timestamp = hex_to_int((await e.rpc.call("eth_getBlockByNumber", ["latest", False]))["timestamp"]) + 12
    snap = await e.rpc.call("evm_snapshot")
    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    ev, _ = await liquidate_and_check(e, p, e.owner)
    assert await e.rpc.call("evm_revert", [snap]) is True

    snap = await e.rpc.call("evm_snapshot")
    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    receipt = await send(e, e.owner, e.executor, encode_liquidate(replace(p, min_out=ev.swap_out + 1)))
    assert receipt["status"] == "0x0"
    trace = await e.rpc.call("debug_traceTransaction", [receipt["transactionHash"], {"tracer": "callTracer"}])
    expected = (
        "Too little received"
        if isinstance(p.route, V3Route)
        else "UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT"
    )
    assert revert_string(hex_to_bytes(trace["output"])) == expected
    assert await e.rpc.call("evm_revert", [snap]) is True

    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    ev2, _ = await liquidate_and_check(e, replace(p, min_out=ev.swap_out), e.owner)
    assert ev2 == ev


async def test_coinbase_min_out_is_passed_to_the_router(e: Env) -> None:
    p = await params_for(e, "v3-weth-usdc")
    timestamp = hex_to_int((await e.rpc.call("eth_getBlockByNumber", ["latest", False]))["timestamp"]) + 12
    snap = await e.rpc.call("evm_snapshot")
    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    ev, _ = await liquidate_and_check(e, p, e.owner)
    assert await e.rpc.call("evm_revert", [snap]) is True
    snap = await e.rpc.call("evm_snapshot")
    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    receipt = await send(
        e, e.owner, e.executor, encode_liquidate(replace(p, coinbase_min_out=ev.coinbase_paid + 1))
    )
    trace = await e.rpc.call("debug_traceTransaction", [receipt["transactionHash"], {"tracer": "callTracer"}])
    assert receipt["status"] == "0x0"
    assert revert_string(hex_to_bytes(trace["output"])) == "Too little received"
    assert await e.rpc.call("evm_revert", [snap]) is True
    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    ev2, _ = await liquidate_and_check(e, replace(p, coinbase_min_out=ev.coinbase_paid), e.owner)
    assert ev2 == ev


# --- ownership ------------------------------------------------------------------------------------------


async def test_two_step_owner_rotation(e: Env) -> None:
    zero = "0x" + "00" * 20
    assert await revert_error(e, e.attacker, e.executor, encode_transfer_ownership(e.attacker)) == (
        "NotOwner",
        (),
    )
    receipt = await send(e, e.owner, e.executor, encode_transfer_ownership(NEW_OWNER))
    assert receipt["status"] == "0x1"
    started = "0x" + keccak(text="OwnershipTransferStarted(address,address)").hex()
    assert [log["topics"][0] for log in receipt["logs"]] == [started]
    assert (await read_word(e, "owner()")).lower() == e.owner.lower()
    assert (await read_word(e, "pendingOwner()")).lower() == NEW_OWNER.lower()

    # Until the new owner accepts, the old one keeps full control and the pending one has none.
    assert (await send(e, e.owner, e.executor, encode_set_operator(OPERATOR_EOA, True)))["status"] == "0x1"
    assert await revert_error(e, NEW_OWNER, e.executor, encode_set_max_slippage_bps(10_000)) == (
        "NotOwner",
        (),
    )
    p = await params_for(e, "v3-wbtc-weth")
    assert await revert_error(e, NEW_OWNER, e.executor, encode_liquidate(p)) == ("NotOperator", ())
    # Nobody else can accept: not the attacker, not the old owner, not an operator.
    for who in (e.attacker, e.owner, OPERATOR_EOA):
        assert await revert_error(e, who, e.executor, encode_accept_ownership()) == ("NotPendingOwner", ())
    receipt = await send(e, e.attacker, e.executor, encode_accept_ownership())
    assert await mined_revert(e, receipt) == ("NotPendingOwner", ())

    receipt = await send(e, NEW_OWNER, e.executor, encode_accept_ownership())
    assert receipt["status"] == "0x1"
    transferred = "0x" + keccak(text="OwnershipTransferred(address,address)").hex()
    (log,) = receipt["logs"]
    assert log["topics"][0] == transferred
    assert [to_checksum_address("0x" + t[-40:]) for t in log["topics"][1:]] == [
        to_checksum_address(e.owner),
        NEW_OWNER,
    ]
    assert (await read_word(e, "owner()")).lower() == NEW_OWNER.lower()
    assert await read_word(e, "pendingOwner()") == zero
    # The old owner lost control; operators stay (the new owner removes them as before); profit goes to
    # the new owner.
    assert await revert_error(e, e.owner, e.executor, encode_sweep_eth()) == ("NotOwner", ())
    assert await revert_error(e, e.owner, e.executor, encode_liquidate(p)) == ("NotOperator", ())
    new = replace(e, owner=NEW_OWNER)
    ev, _ = await liquidate_and_check(new, replace(p, max_block=await head(e) + 1), OPERATOR_EOA)
    assert ev.profit > 0
    assert (await send(e, NEW_OWNER, e.executor, encode_set_operator(OPERATOR_EOA, False)))["status"] == "0x1"
    p = await params_for(e, "v3-weth-usdc")
    assert await revert_error(e, OPERATOR_EOA, e.executor, encode_liquidate(p)) == ("NotOperator", ())


# --- batch ----------------------------------------------------------------------------------------------


async def repay_all(e: Env, case: str) -> None:
    """The borrower of `case` repays all its (variable) debt: the position is gone before we get to it."""
    t = e.targets[case]
    pool = e.pool_of(t.market)
    await e.rpc.call("anvil_impersonateAccount", [t.user])
    await e.rpc.call("anvil_setBalance", [t.user, hex(WAD)])
    owed = await debt_balance(e, t.market, t.debt, t.user)
    mint = encode_call("mint(address,uint256)", ["address", "uint256"], [t.user, 2 * owed])
    assert (await send(e, e.attacker, t.debt, mint))["status"] == "0x1"
    approve = encode_call("approve(address,uint256)", ["address", "uint256"], [pool, 2**256 - 1])
    assert (await send(e, t.user, t.debt, approve))["status"] == "0x1"
    repay = encode_call(
        "repay(address,uint256,uint256,address)",
        ["address", "uint256", "uint256", "address"],
        [t.debt, 2**256 - 1, 2, t.user],
    )
    assert (await send(e, t.user, pool, repay))["status"] == "0x1"
    assert await debt_balance(e, t.market, t.debt, t.user) == 0


async def run_alone(e: Env, p: LiquidationParams, timestamp: int) -> tuple[LiquidatedEvent, int]:
    """liquidate(p) alone in the next block at `timestamp`, fully checked, then rolled back."""
    snap = await e.rpc.call("evm_snapshot")
    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    try:
        return await liquidate_and_check(e, p, e.owner)
    finally:
        assert await e.rpc.call("evm_revert", [snap]) is True


async def batch_output(e: Env, receipt: dict[str, Any]) -> bytes:
    trace = await e.rpc.call("debug_traceTransaction", [receipt["transactionHash"], {"tracer": "callTracer"}])
    return hex_to_bytes(trace.get("output", "0x"))


async def test_batch_skips_a_failed_item_and_runs_the_others(e: Env) -> None:
    """[WBTC->WETH on V3, a position repaid meanwhile, WETH->DAI on V2]: the middle item reverts alone;
    the others give exactly what they give when run alone at the same state (disjoint pools)."""
    await repay_all(e, "v3-weth-usdc")
    a = await params_for(e, "v3-wbtc-weth")
    gone = await params_for(e, "v3-weth-usdc")
    b = await params_for(e, "v2-weth-dai")
    gone_reason = await revert_data(e, e.owner, encode_liquidate(gone))
    assert gone_reason  # Aave's own error (health factor not below the threshold)
    timestamp = hex_to_int((await e.rpc.call("eth_getBlockByNumber", ["latest", False]))["timestamp"]) + 12
    ev_a, gas_a = await run_alone(e, a, timestamp)
    ev_b, gas_b = await run_alone(e, b, timestamp)
    assert ev_a.coinbase_paid > 0 and ev_b.coinbase_paid > 0

    owner_weth = await balance_of(e.rpc, e.sym("WETH"), e.owner)
    owner_dai = await balance_of(e.rpc, e.sym("DAI"), e.owner)
    coinbase_before = await e.rpc.get_balance(COINBASE)
    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    calls = [encode_liquidate(a), encode_liquidate(gone), encode_liquidate(b)]
    receipt = await send(e, e.owner, e.executor, encode_batch(calls))
    assert receipt["status"] == "0x1"

    results = decode_batch_result(await batch_output(e, receipt))
    assert [ok for ok, _ in results] == [True, False, True]
    assert decode_liquidate_result(results[0][1]) == (ev_a.profit, ev_a.coinbase_paid)
    assert results[1][1] == gone_reason
    assert decode_liquidate_result(results[2][1]) == (ev_b.profit, ev_b.coinbase_paid)
    assert liquidated_events(receipt, e.executor) == [ev_a, ev_b]
    assert batch_item_failures(receipt, e.executor) == [BatchItemFailure(e.executor, 1, gone_reason)]
    # Each item paid the owner its profit and the builder its own share.
    assert await balance_of(e.rpc, e.sym("WETH"), e.owner) - owner_weth == ev_a.profit
    assert await balance_of(e.rpc, e.sym("DAI"), e.owner) - owner_dai == ev_b.profit
    tips = await coinbase_tips(e.rpc, receipt)
    assert (
        await e.rpc.get_balance(COINBASE) - coinbase_before == ev_a.coinbase_paid + ev_b.coinbase_paid + tips
    )
    await assert_executor_clean(e)
    GAS_FIGURES["batch of 3 (1 failed)"] = hex_to_int(receipt["gasUsed"])


async def test_batch_gas_overhead_per_item(e: Env) -> None:
    """Two liquidations in one batch vs the same two as separate transactions."""
    a = await params_for(e, "v3-wbtc-weth")
    b = await params_for(e, "v2-weth-dai")
    timestamp = hex_to_int((await e.rpc.call("eth_getBlockByNumber", ["latest", False]))["timestamp"]) + 12
    ev_a, gas_a = await run_alone(e, a, timestamp)
    ev_b, gas_b = await run_alone(e, b, timestamp)
    # One item alone in a batch: the cost of the wrapper itself (self-call, copies, results, flag).
    snap = await e.rpc.call("evm_snapshot")
    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    receipt = await send(e, e.owner, e.executor, encode_batch([encode_liquidate(a)]))
    assert liquidated_events(receipt, e.executor) == [ev_a]
    wrapper = hex_to_int(receipt["gasUsed"]) - gas_a
    assert await e.rpc.call("evm_revert", [snap]) is True

    await e.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    receipt = await send(e, e.owner, e.executor, encode_batch([encode_liquidate(a), encode_liquidate(b)]))
    assert receipt["status"] == "0x1"
    assert liquidated_events(receipt, e.executor) == [ev_a, ev_b]
    gas_batch = hex_to_int(receipt["gasUsed"])
    GAS_FIGURES["a alone"] = gas_a
    GAS_FIGURES["batch [a] - a alone (wrapper overhead, 1 item)"] = wrapper
    GAS_FIGURES["a + b as separate txs"] = gas_a + gas_b
    GAS_FIGURES["batch [a, b]"] = gas_batch
    # Per item beyond the first: the batch pays one 21,000 base cost instead of two and finds the flash
    # pool, the owner slot and WETH already warm, which outweighs the wrapper.
    GAS_FIGURES["batch [a, b] - (a + b separate)"] = gas_batch - (gas_a + gas_b)
    assert 0 < wrapper < 21_000
    assert gas_batch < gas_a + gas_b
    await assert_executor_clean(e)


async def test_batch_where_every_item_fails_reverts(e: Env) -> None:
    await repay_all(e, "v3-weth-usdc")
    gone = await params_for(e, "v3-weth-usdc")
    greedy = await params_for(e, "v3-wbtc-weth", min_profit=10**30)
    gone_reason = await revert_data(e, e.owner, encode_liquidate(gone))
    data = encode_batch([encode_liquidate(gone), encode_liquidate(greedy)])
    assert await revert_error(e, e.owner, e.executor, data) == ("AllItemsFailed", (gone_reason,))
    coinbase_before = await e.rpc.get_balance(COINBASE)
    receipt = await send(e, e.owner, e.executor, data)
    assert await mined_revert(e, receipt) == ("AllItemsFailed", (gone_reason,))
    assert receipt["logs"] == []
    assert await e.rpc.get_balance(COINBASE) - coinbase_before == await coinbase_tips(e.rpc, receipt)
    await assert_executor_clean(e)
    # The first item's reason is carried whatever it is: here the greedy one first.
    (name, (inner,)) = await revert_error(
        e, e.owner, e.executor, encode_batch([encode_liquidate(greedy), encode_liquidate(gone)])
    )
    assert name == "AllItemsFailed" and decode_executor_error(inner) is not None
    assert decode_executor_error(inner)[0] == "InsufficientProfit"


async def test_batch_access_and_items(e: Env) -> None:
    p = await params_for(e, "v3-wbtc-weth")
    data = encode_batch([encode_liquidate(p)])
    for who in (e.attacker, OPERATOR_EOA):
        assert await revert_error(e, who, e.executor, data) == ("NotOperator", ())
    # Only batchable entry points: a sweep (owner-only) smuggled in as an item is refused outright, as is
    # an empty batch. encode_batch refuses both on the Python side too.
    smuggled = BATCH_SELECTOR + encode(["bytes[]"], [[encode_liquidate(p), encode_sweep(e.sym("USDC"))]])
    assert await revert_error(e, e.owner, e.executor, smuggled) == ("NotBatchable", (1,))
    assert await revert_error(e, e.owner, e.executor, BATCH_SELECTOR + encode(["bytes[]"], [[]])) == (
        "BadParams",
        (),
    )
    with pytest.raises(ValueError):
        encode_batch([encode_liquidate(p), encode_sweep(e.sym("USDC"))])
    with pytest.raises(ValueError):
        encode_batch([])
    # The contract calling itself passes the operator check only inside a batch: from its own address
    # (impersonated) outside one, liquidate is refused.
    await e.rpc.call("anvil_impersonateAccount", [e.executor])
    await e.rpc.call("anvil_setBalance", [e.executor, hex(WAD)])
    try:
        assert await revert_error(e, e.executor, e.executor, encode_liquidate(p)) == ("NotOperator", ())
    finally:
        await e.rpc.call("anvil_setBalance", [e.executor, "0x0"])
        await e.rpc.call("anvil_stopImpersonatingAccount", [e.executor])
    # An operator's batch works and pays the owner.
    await make_operator(e)
    receipt = await send(
        e, OPERATOR_EOA, e.executor, encode_batch([encode_liquidate(replace(p, max_block=await head(e) + 1))])
    )
    assert receipt["status"] == "0x1"
    (ev,) = liquidated_events(receipt, e.executor)
    assert ev.profit > 0 and ev.user == to_checksum_address(p.user)
    await assert_executor_clean(e)


# --- builds for chains with and without EIP-1153; keeper contracts deploy ----------------------------


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KEEPER_")}
    env.update(overrides)
    return env


async def keeper_cli(cwd: Path, rpc_url: str, *args: str) -> tuple[int, str]:
    """`python -m keeper contracts deploy ARGS` against `rpc_url`, owner = dev account 0."""
    env = clean_env(KEEPER_RPC_HTTP_URL=rpc_url, KEEPER_PRIVATE_KEY=DEV_ACCOUNTS[0][1])
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keeper",
        "contracts",
        "deploy",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    raw, _ = await proc.communicate()
    out = raw.decode()
    assert DEV_ACCOUNTS[0][1][2:] not in out and "Traceback" not in out, out
    assert proc.returncode is not None
    return proc.returncode, out


async def test_legacy_build_runs_where_there_is_no_transient_storage(tmp_path: Path) -> None:
    """anvil --hardfork shanghai with the devnet's state: the Cancun build is refused with a clear error
    (library and CLI, nothing sent), the legacy build is chosen by default and liquidates to the wei,
    alone and in a batch, leaving its storage-backed per-call slots at zero."""
    cache, dep, _ = await ensure_state()
    config = AnvilConfig(
        load_state=cache.state_file,
        no_mining=True,
        gas_limit=GAS_LIMIT,
        extra_args=["--hardfork", "shanghai", "--order", "fifo"],
    )
    async with Anvil(config) as node, RpcClient(node.http_url) as rpc:
        assert await supports_transient_storage(rpc) is False
        deployer = Deployer(rpc, dep.accounts["deployer"])
        nonce = await rpc.call("eth_getTransactionCount", [deployer.sender, "latest"])
        with pytest.raises(UnsupportedChainError, match=r"transient storage \(EIP-1153\)"):
            await deploy_executor(
                deployer,
                dep.accounts["keeper"],
                None,
                flash_pool=dep.aave_v3.pool,
                router_v3=dep.uniswap_v3.swap_router,
                router_v2=dep.uniswap_v2.router,
                weth=dep.tokens["WETH"].address,
                pools={dep.aave_v3.pool: dep.aave_v3.oracle},
                evm_version="cancun",
            )
        assert await rpc.call("eth_getTransactionCount", [deployer.sender, "latest"]) == nonce

        # The CLI: refused for cancun, a dry run names the legacy build, then the real deploy uses it.
        await rpc.call("evm_setAutomine", [True])
        try:
            code, out = await keeper_cli(tmp_path, node.http_url, "--evm-version", "cancun")
            assert code == 1, out
            assert "deploy failed: LiquidationExecutor is built for cancun" in out
            assert "deploy LiquidationExecutorLegacy" in out
            code, out = await keeper_cli(tmp_path, node.http_url, "--dry-run")
            assert code == 0, out
            assert "dry run: nothing sent. Would deploy LiquidationExecutorLegacy (EVM paris)" in out
            owner0 = DEV_ACCOUNTS[0][0]
            before = await rpc.call("eth_getTransactionCount", [owner0, "latest"])
            record = tmp_path / "executor.json"
            code, out = await keeper_cli(tmp_path, node.http_url, "--out", str(record))
            assert code == 0, out
            data = orjson.loads(record.read_bytes())
            assert (data["contract"], data["evm_version"]) == ("LiquidationExecutorLegacy", "paris")
            assert f"LiquidationExecutorLegacy deployed at {data['address']}" in out
            assert await rpc.call("eth_getTransactionCount", [owner0, "latest"]) == hex(int(before, 16) + 1)
        finally:
            await rpc.call("evm_setAutomine", [False])

        # The library picks the legacy build by itself; it runs the whole flow.
        env = await make_env(EvmMiner(rpc), rpc, dep)
        await rpc.call("anvil_setCoinbase", [COINBASE])
        legacy = packaged_artifact("LiquidationExecutorLegacy")
        runtime = await rpc.call("eth_getCode", [env.executor, "latest"])
        assert len(runtime) == len(orjson.loads(artifact_path(legacy.name).read_bytes())["deployedBytecode"])
        p = await params_for(env, "v3-weth-usdc")
        ev, gas = await liquidate_and_check(env, p, env.owner)
        GAS_FIGURES["v3-weth-usdc (legacy build, shanghai)"] = gas
        await repay_all(env, "v2-weth-usdc")
        b = await params_for(env, "v2-weth-dai")
        gone = await params_for(env, "v2-weth-usdc")
        receipt = await send(
            env, env.owner, env.executor, encode_batch([encode_liquidate(gone), encode_liquidate(b)])
        )
        assert receipt["status"] == "0x1"
        assert [ok for ok, _ in decode_batch_result(await batch_output(env, receipt))] == [False, True]
        assert [f.index for f in batch_item_failures(receipt, env.executor)] == [0]
        assert len(liquidated_events(receipt, env.executor)) == 1
        await assert_executor_clean(env)
        # Slots 4-8 hold what the Cancun build keeps in transient storage (the flags and the callback
        # expected, then the four amounts): reset at the end of each call.
        await assert_transient_slots_clear(env)
        assert hex_to_int(await rpc.call("eth_getStorageAt", [env.executor, "0x0", "latest"])) != 0  # owner

        # Arbitrages on the legacy build, through both flash sources, after the depeg scenario.
        await run_depeg(rpc, dep, miner=EvmMiner(rpc))
        weth, lst = env.sym("WETH"), env.sym("wstETH")
        buy = V3Route((weth, lst), (100,))
        sells: list[tuple[FlashSource, V2Route | BalancerRoute]] = [
            (FlashSource.BALANCER_VAULT, V2Route((lst, weth))),
            (FlashSource.AAVE_V3, BalancerRoute((lst, weth), (dep.balancer.pools["wstETH/WETH"].pool_id,))),
        ]
        for source, sell in sells:
            a = ArbitrageParams(
                source=source,
                token=weth,
                amount=10 * WAD,
                route=MixedRoute((RouteLeg(10_000, (buy, sell)),)),
                min_out=10 * WAD,
                min_profit=1,
                coinbase_bps=5_000,
                max_block=await head(env) + 1,
                tag=keccak(text=source.name),
            )
            owner_before = await balance_of(rpc, weth, env.owner)
            receipt = await send(env, env.owner, env.executor, encode_arbitrage(a))
            assert receipt["status"] == "0x1"
            (arb_ev,) = arbitraged_events(receipt, env.executor)
            assert arb_ev.profit > 0 and arb_ev.coinbase_paid > 0 and arb_ev.tag == a.tag
            assert await balance_of(rpc, weth, env.owner) - owner_before == arb_ev.profit
            GAS_FIGURES[f"arbitrage, {source.name} (legacy build)"] = hex_to_int(receipt["gasUsed"])
            await assert_executor_clean(env)
            await assert_transient_slots_clear(env)


async def assert_transient_slots_clear(env: Env) -> None:
    """The legacy build's storage-backed per-call slots (4-8) are all zero between calls."""
    for slot in range(4, 9):
        value = await env.rpc.call("eth_getStorageAt", [env.executor, hex(slot), "latest"])
        assert hex_to_int(value) == 0, slot


async def test_contracts_deploy_dry_run_and_options(tmp_path: Path) -> None:
    """On a Cancun chain: the dry run names the transient-storage build, the preset pools and the bounds
    and sends nothing; --pool and the bounds reach the contract; bad options are refused."""
    pool, oracle = to_checksum_address("0x" + "11" * 20), to_checksum_address("0x" + "22" * 20)
    async with Anvil(AnvilConfig()) as node, RpcClient(node.http_url) as rpc:
        assert await supports_transient_storage(rpc) is True
        owner0 = DEV_ACCOUNTS[0][0]
        code, out = await keeper_cli(tmp_path, node.http_url, "--dry-run")
        assert code == 0, out
        assert "Would deploy LiquidationExecutor (EVM cancun)" in out
        for preset_pool, preset_oracle in MARKET_POOLS.values():
            assert f"{preset_pool} (oracle {preset_oracle})" in out
        assert "max builder share 9500 bps; max slippage vs oracle 1000 bps" in out
        # No code at Balancer's canonical Vault on this chain: none.
        assert f"Balancer V2 Vault {'0x' + '00' * 20} (none)" in out
        assert await rpc.call("eth_getTransactionCount", [owner0, "latest"]) == "0x0"

        record = tmp_path / "executor.json"
        vault = to_checksum_address("0x" + "33" * 20)
        args = ["--pool", f"{pool}={oracle}", "--max-coinbase-bps", "8000", "--max-slippage-bps", "300"]
        args += ["--balancer-vault", vault]
        code, out = await keeper_cli(tmp_path, node.http_url, *args, "--out", str(record))
        assert code == 0, out
        data = orjson.loads(record.read_bytes())
        assert (data["contract"], data["evm_version"]) == ("LiquidationExecutor", "cancun")
        assert data["pools"] == {pool: oracle}
        assert data["balancer_vault"] == vault and f"Balancer V2 Vault {vault}" in out
        address = data["address"]

        async def read(sig: str, types: list[str], args: list[Any], out_type: str) -> Any:
            return decode([out_type], await rpc.eth_call(address, encode_call(sig, types, args)))[0]

        assert await read("maxCoinbaseBps()", [], [], "uint16") == 8_000
        assert await read("maxSlippageBps()", [], [], "uint16") == 300
        assert (await read("oracleOf(address)", ["address"], [pool], "address")).lower() == oracle.lower()
        assert (await read("balancerVault()", [], [], "address")).lower() == vault.lower()
        preset = MARKET_POOLS["aave-v3-ethereum"][0]
        assert int(await read("oracleOf(address)", ["address"], [preset], "address"), 16) == 0

        for bad in (
            ["--pool", pool],
            ["--max-coinbase-bps", "10001"],
            ["--evm-version", "frontier"],
            ["--balancer-vault", "0x1234"],
        ):
            code, out = await keeper_cli(tmp_path, node.http_url, *bad, "--dry-run")
            assert code == 2, out
            assert out.startswith("error: --"), out


def test_market_pool_presets_match_the_strategies() -> None:
    """keeper contracts deploy cannot import strategies/: its copy of the presets' pools must not drift."""
    from strategies.liquidations.markets import MAINNET_PRESETS

    assert {name: (m.pool, m.oracle) for name, m in MAINNET_PRESETS.items()} == MARKET_POOLS


def test_python_helpers() -> None:
    """Batch calldata and results, the floor mirror, build names: exact layouts, bad input refused."""
    p = LiquidationParams(
        lending_pool="0x" + "01" * 20,
        collateral="0x" + "02" * 20,
        debt="0x" + "03" * 20,
        user="0x" + "04" * 20,
        debt_to_cover=10**6,
        route=V2Route(("0x" + "02" * 20, "0x" + "03" * 20)),
        min_profit=1,
        coinbase_bps=0,
        max_block=7,
        min_out=123,
        coinbase_min_out=456,
    )
    assert decode_liquidate(encode_liquidate(p)).min_out == 123
    assert decode_liquidate(encode_liquidate(p)).coinbase_min_out == 456
    data = encode_batch([encode_liquidate(p)])
    assert data[:4] == BATCH_SELECTOR == function_signature_to_4byte_selector("batch(bytes[])")
    assert decode(["bytes[]"], data[4:]) == ((encode_liquidate(p),),)
    ret = encode(
        ["bool[]", "bytes[]"], [[True, False], [encode(["uint256", "uint256"], [5, 6]), b"\x01\x02"]]
    )
    results = decode_batch_result(ret)
    assert results == [(True, encode(["uint256", "uint256"], [5, 6])), (False, b"\x01\x02")]
    assert decode_liquidate_result(results[0][1]) == (5, 6)
    for junk in (b"", b"\x00" * 63, b"\x00" * 96):
        with pytest.raises(DecodeError):
            decode_liquidate_result(junk)
    with pytest.raises(DecodeError):
        decode_batch_result(b"\x00" * 31)
    # 1 WETH at $2000 sold for USDC at $1, 10% slippage: 1800 USDC; roundings go up.
    assert slippage_floor(10**18, 2000 * 10**8, 10**8, 18, 6, 1_000) == 1_800 * 10**6
    assert slippage_floor(1, 2000 * 10**8, 10**8, 18, 6, 1_000) == 1
    assert slippage_floor(0, 2000 * 10**8, 10**8, 18, 6, 1_000) == 0
    assert executor_build("cancun") == executor_build("osaka") == "LiquidationExecutor"
    assert executor_build("shanghai") == executor_build("legacy") == "LiquidationExecutorLegacy"
    with pytest.raises(ValueError):
        executor_build("frontier")
    err = ERRORS[function_signature_to_4byte_selector("AllItemsFailed(bytes)")]
    assert err == ("AllItemsFailed", ("bytes",))
