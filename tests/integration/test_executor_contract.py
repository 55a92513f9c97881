"""LiquidationExecutor against the real Aave V3/V2 and Uniswap V2/V3 bytecode, on real positions.

One devnet for the module: 50 borrowers, ETH crashed by 25% through real oracle transactions (the
Uniswap pools follow), then WBTC dropped by 50% on the V3 market's feed so that WBTC-collateral /
WETH-debt positions also become liquidatable. Each test runs inside evm_snapshot/evm_revert.

Every successful liquidation is checked to the wei: the pool's own LiquidationCall event, the swap output
against Uniswap's quoter/router at the same state, the Aave flash premium, the owner's and the builder's
balance deltas, the user's scaled debt, and that the executor holds nothing and has no allowance left.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from eth_abi.abi import decode, encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient, hex_to_bytes, hex_to_int
from keeper.chain.units import ray_div
from keeper.devnet.contracts import our_artifact
from keeper.devnet.deploy import DevnetDeployment
from keeper.devnet.deployer import Deployer, fn_signature
from keeper.devnet.scenarios.borrowers import create_borrowers
from keeper.devnet.scenarios.crash import run_crash
from keeper.devnet.scenarios.positions import AAVE_V2, AAVE_V3, discover, read_health_factors
from keeper.devnet.stack import Devnet
from keeper.devnet.tokens import next_epoch_round, send_price_update
from keeper.errors import DecodeError, ExecutionReverted
from keeper.executors.executor_contract import (
    ERRORS,
    EXECUTE_OPERATION_SIGNATURE,
    LIQUIDATE_SELECTOR,
    LIQUIDATE_SIGNATURE,
    LIQUIDATED_TOPIC,
    PARAMS_TUPLE,
    LiquidatedEvent,
    LiquidationParams,
    Route,
    V2Route,
    V3Route,
    Venue,
    decode_executor_error,
    decode_liquidate,
    decode_liquidated,
    deploy_executor,
    encode_liquidate,
    encode_set_operator,
    encode_sweep,
    encode_sweep_eth,
    encode_v3_path,
    liquidated_events,
)

pytestmark = pytest.mark.integration

SEED = 1
N_BORROWERS = 50
GAS = 3_000_000
COINBASE = to_checksum_address("0x" + keccak(b"keeper-test-builder").hex()[:40])
OPERATOR_EOA = to_checksum_address("0x" + keccak(b"keeper-test-operator").hex()[:40])
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
    net: Devnet
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


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    async with Devnet(block_time=None) as net:
        rpc, dep = net.require()
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
            )
        finally:
            await rpc.call("evm_setAutomine", [False])
        await rpc.call("anvil_setBalance", [OPERATOR_EOA, hex(10 * WAD)])
        await rpc.call("anvil_impersonateAccount", [OPERATOR_EOA])
        yield Env(net, rpc, dep, executor, owner, dep.accounts["competitor"], targets)
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


async def liquidate_and_check(env: Env, p: LiquidationParams, sender: str) -> tuple[LiquidatedEvent, int]:
    """Sends liquidate(p), checks every amount; returns the event and the gas used."""
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
    assert ev.swap_out == await quote_swap(env, p.route, ev.collateral_seized, start)

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
