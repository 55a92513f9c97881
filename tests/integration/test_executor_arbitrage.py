"""LiquidationExecutor.arbitrage against the real Balancer V2 Vault, Aave V3 Pool and Uniswap pools.

One devnet for the module: the scenario of test_executor_contract.py (so batches can mix liquidations and
arbitrages), then the `depeg` scenario: the whale sells wstETH into Uniswap V3's wstETH/WETH/100 pool (3%
below the oracle) and USDT into USDC/USDT/100 (1.5% below), while Uniswap V2 and the Balancer stable pools
stay at the peg. Each test runs inside evm_snapshot/evm_revert.

Every arbitrage is checked to the wei: the route's output against the Python venues at the
pre-transaction state (at the transaction's own timestamp, for the Balancer pool's rate cache), the flash
fee (Aave's premium, the Vault's fee), the owner's profit and the builder's payment, the flash source's own
FlashLoan event, and that the executor ends holding nothing, with no allowance left.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from keeper.chain.abi import encode_call
from keeper.chain.rpc import hex_to_int
from keeper.devnet.contracts import our_artifact
from keeper.devnet.deployer import fn_signature
from keeper.devnet.scenarios.depeg import run_depeg
from keeper.devnet.stack import Devnet
from keeper.errors import ExecutionReverted
from keeper.executors.executor_contract import (
    ARB_PARAMS_TUPLE,
    ARBITRAGE_SELECTOR,
    ARBITRAGE_SIGNATURE,
    ARBITRAGED_TOPIC,
    EXECUTE_OPERATION_SIGNATURE,
    RECEIVE_FLASH_LOAN_SIGNATURE,
    ArbitragedEvent,
    ArbitrageParams,
    BalancerRoute,
    FlashSource,
    MixedRoute,
    Route,
    RouteLeg,
    V2Route,
    V3Route,
    Venue,
    arbitraged_events,
    batch_item_failures,
    decode_arbitrage,
    decode_arbitrage_result,
    decode_batch_result,
    decode_executor_error,
    decode_liquidate_result,
    encode_arbitrage,
    encode_batch,
    encode_liquidate,
    encode_set_operator,
    liquidated_events,
)
from tests.integration.test_executor_contract import (
    COINBASE,
    MAX_COINBASE_BPS,
    OPERATOR_EOA,
    WAD,
    Env,
    assert_executor_clean,
    balance_of,
    batch_output,
    call_uint,
    coinbase_tips,
    eth_transfers_to,
    head,
    make_env,
    mined_revert,
    params_for,
    repay_all,
    revert_data,
    revert_error,
    send,
)
from tests.integration.test_executor_routes import load_venues, route_quote

pytestmark = pytest.mark.integration

ARB_GAS: dict[str, int] = {}
TAG = keccak(b"keeper-test-arbitrage")
AAVE_FLASH_LOAN_TOPIC = (
    "0x" + keccak(text="FlashLoan(address,address,address,uint256,uint8,uint256,uint16)").hex()
)
BALANCER_FLASH_LOAN_TOPIC = "0x" + keccak(text="FlashLoan(address,address,uint256,uint256)").hex()
WETH_AMOUNT = 20 * WAD
USDC_AMOUNT = 50_000 * 10**6


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    async with Devnet(block_time=None) as net:
        rpc, dep = net.require()
        e = await make_env(net, rpc, dep)
        await run_depeg(rpc, dep, miner=net)
        yield e
        if ARB_GAS:
            print("\nLiquidationExecutor.arbitrage gas used:", ARB_GAS)


@pytest.fixture
async def e(env: Env) -> AsyncIterator[Env]:
    snap = await env.rpc.call("evm_snapshot")
    await env.rpc.call("anvil_setCoinbase", [COINBASE])
    try:
        yield env
    finally:
        assert await env.rpc.call("evm_revert", [snap]) is True


# --- routes and params ---------------------------------------------------------------------------------


def pool_id(e: Env, name: str) -> str:
    return e.dep.balancer.pools[name].pool_id


def weth_via_v2(e: Env) -> MixedRoute:
    """WETH -> wstETH on V3 (cheap there) -> WETH on V2: no Balancer hop (a Vault flash loan can run it)."""
    weth, lst = e.sym("WETH"), e.sym("wstETH")
    return MixedRoute((RouteLeg(10_000, (V3Route((weth, lst), (100,)), V2Route((lst, weth)))),))


def weth_via_balancer(e: Env) -> MixedRoute:
    weth, lst = e.sym("WETH"), e.sym("wstETH")
    lst_pool = pool_id(e, "wstETH/WETH")
    return MixedRoute(
        (RouteLeg(10_000, (V3Route((weth, lst), (100,)), BalancerRoute((lst, weth), (lst_pool,)))),)
    )


def weth_split(e: Env) -> MixedRoute:
    """Half through Balancer, half through V2; both legs buy on the same V3 pool (the second after the
    first)."""
    via_balancer, via_v2 = weth_via_balancer(e).legs[0], weth_via_v2(e).legs[0]
    return MixedRoute((replace(via_balancer, bps=5_000), replace(via_v2, bps=5_000)))


def arb(
    e: Env,
    route: Route,
    *,
    source: FlashSource = FlashSource.AAVE_V3,
    amount: int = WETH_AMOUNT,
    max_block: int,
    coinbase_bps: int = 5_000,
    min_profit: int = 1,
    coinbase_route: V3Route | None = None,
) -> ArbitrageParams:
    return ArbitrageParams(
        source=source,
        token=route.token_in,
        amount=amount,
        route=route,
        min_out=amount,
        min_profit=min_profit,
        coinbase_bps=coinbase_bps,
        max_block=max_block,
        tag=TAG,
        coinbase_route=coinbase_route,
    )


async def balancer_flash_fee(e: Env, amount: int) -> int:
    """The Vault's fee on a flash loan of `amount`: mulUp(amount, the fee collector's percentage)."""
    (collector,) = decode(
        ["address"], await e.rpc.eth_call(e.dep.balancer.vault, encode_call("getProtocolFeesCollector()"))
    )
    pct = await call_uint(e.rpc, collector, "getFlashLoanFeePercentage()", [], [])
    return 0 if amount * pct == 0 else (amount * pct - 1) // WAD + 1


async def arbitrage_and_check(e: Env, p: ArbitrageParams, sender: str) -> tuple[ArbitragedEvent, int]:
    """Sends arbitrage(p) in the next block (timestamp fixed), checks every amount; returns the event
    and the gas used."""
    rpc = e.rpc
    start = await head(e)
    block = await rpc.call("eth_getBlockByNumber", ["latest", False])
    timestamp = hex_to_int(block["timestamp"]) + 12
    venues = await load_venues(e, start, swap_time_offset=12)
    expected_out = route_quote(venues, p.route, p.amount)
    if p.source is FlashSource.AAVE_V3:
        premium_bps = await call_uint(rpc, e.dep.aave_v3.pool, "FLASHLOAN_PREMIUM_TOTAL()", [], [])
        fee = (p.amount * premium_bps + 5_000) // 10_000
    else:
        fee = await balancer_flash_fee(e, p.amount)
    owner_before = await balance_of(rpc, p.token, e.owner)
    coinbase_before = await rpc.get_balance(COINBASE)

    await rpc.call("evm_setNextBlockTimestamp", [timestamp])
    receipt = await send(e, sender, e.executor, encode_arbitrage(p))
    assert receipt["status"] == "0x1", receipt
    assert hex_to_int(receipt["blockNumber"]) == start + 1

    (ev,) = arbitraged_events(receipt, e.executor)
    assert (ev.tag, ev.token, ev.amount_in) == (p.tag, to_checksum_address(p.token), p.amount)
    assert ev.amount_out == expected_out
    assert ev.flash_fee == fee
    # The loan came from the source asked for (its own FlashLoan event).
    source = e.dep.aave_v3.pool if p.source is FlashSource.AAVE_V3 else e.dep.balancer.vault
    topic = AAVE_FLASH_LOAN_TOPIC if p.source is FlashSource.AAVE_V3 else BALANCER_FLASH_LOAN_TOPIC
    loans = [log for log in receipt["logs"] if log["topics"][0] == topic]
    assert len(loans) == 1 and loans[0]["address"].lower() == source.lower()

    gross = ev.amount_out - p.amount - fee
    assert gross == ev.gross_profit > 0
    share = gross * p.coinbase_bps // 10_000
    assert ev.profit == gross - share >= p.min_profit
    assert await balance_of(rpc, p.token, e.owner) - owner_before == ev.profit
    tips = await coinbase_tips(rpc, receipt)
    assert await rpc.get_balance(COINBASE) - coinbase_before == ev.coinbase_paid + tips
    if p.coinbase_bps > 0:
        assert ev.coinbase_paid > 0
        if p.token.lower() == e.sym("WETH").lower():
            assert ev.coinbase_paid == share
    else:
        assert ev.coinbase_paid == 0
    await assert_executor_clean(e)
    return ev, hex_to_int(receipt["gasUsed"])


async def make_operator(e: Env) -> None:
    assert (await send(e, e.owner, e.executor, encode_set_operator(OPERATOR_EOA, True)))["status"] == "0x1"


# --- profitable arbitrages -----------------------------------------------------------------------------


async def test_abi_matches_the_artifact(e: Env) -> None:
    abi = our_artifact("LiquidationExecutor").abi
    sigs = {fn_signature(item) for item in abi if item["type"] == "function"}
    assert {ARBITRAGE_SIGNATURE, RECEIVE_FLASH_LOAN_SIGNATURE, "balancerVault()"} <= sigs
    event = next(item for item in abi if item["type"] == "event" and item["name"] == "Arbitraged")
    assert "0x" + keccak(text=fn_signature(event)).hex() == ARBITRAGED_TOPIC
    p = arb(e, weth_split(e), max_block=7)
    assert decode_arbitrage(encode_arbitrage(p)) == replace(p, token=to_checksum_address(p.token))


async def test_arbitrage_with_a_balancer_flash_loan(e: Env) -> None:
    p = arb(e, weth_via_v2(e), source=FlashSource.BALANCER_VAULT, max_block=await head(e) + 1)
    ev, gas = await arbitrage_and_check(e, p, e.owner)
    assert ev.flash_fee == 0  # the devnet Vault's fee collector charges nothing, as mainnet's today
    ARB_GAS["WETH, Balancer flash, V3 -> V2"] = gas


async def test_arbitrage_with_an_aave_flash_loan(e: Env) -> None:
    p = arb(e, weth_via_balancer(e), source=FlashSource.AAVE_V3, max_block=await head(e) + 1)
    ev, gas = await arbitrage_and_check(e, p, e.owner)
    assert ev.flash_fee > 0
    ARB_GAS["WETH, Aave flash, V3 -> Balancer"] = gas


@pytest.mark.parametrize("source", [FlashSource.AAVE_V3, FlashSource.BALANCER_VAULT])
async def test_arbitrage_in_a_stablecoin_pays_the_builder_through_a_swap(e: Env, source: FlashSource) -> None:
    """USDC borrowed, USDT bought cheap on V3 and sold on Balancer (Aave loan) or V2 (Vault loan); the
    builder's share is swapped USDC -> WETH and unwrapped."""
    usdc, usdt = e.sym("USDC"), e.sym("USDT")
    back: V2Route | BalancerRoute = (
        BalancerRoute((usdt, usdc), (pool_id(e, "USDC/USDT/DAI"),))
        if source is FlashSource.AAVE_V3
        else V2Route((usdt, usdc))
    )
    route = MixedRoute((RouteLeg(10_000, (V3Route((usdc, usdt), (100,)), back)),))
    p = arb(
        e,
        route,
        source=source,
        amount=USDC_AMOUNT,
        max_block=await head(e) + 1,
        coinbase_route=V3Route((usdc, e.sym("WETH")), (500,)),
    )
    _, gas = await arbitrage_and_check(e, p, e.owner)
    ARB_GAS[f"USDC, {source.name}, builder paid via V3"] = gas


async def test_arbitrage_on_a_split_route(e: Env) -> None:
    p = arb(e, weth_split(e), max_block=await head(e) + 1, coinbase_bps=0)
    ev, gas = await arbitrage_and_check(e, p, e.owner)
    assert ev.profit == ev.gross_profit
    ARB_GAS["WETH, Aave flash, split 50/50"] = gas


async def test_arbitrage_min_out_and_min_profit_bind(e: Env) -> None:
    """The exact profit passes as min_profit; one wei more reverts (InsufficientProfit, nobody paid); a
    min_out one above the route's output reverts (InsufficientOutput, summed over the legs)."""
    p = arb(e, weth_split(e), max_block=await head(e) + 2)
    snap = await e.rpc.call("evm_snapshot")
    ev, _ = await arbitrage_and_check(e, p, e.owner)
    assert await e.rpc.call("evm_revert", [snap]) is True
    for bad, error in (
        (replace(p, min_profit=ev.profit + 1), ("InsufficientProfit", (ev.profit, ev.profit + 1))),
        (replace(p, min_out=ev.amount_out + 1), ("InsufficientOutput", (ev.amount_out, ev.amount_out + 1))),
    ):
        snap = await e.rpc.call("evm_snapshot")
        await e.rpc.call("evm_setNextBlockTimestamp", [await _next_timestamp(e)])
        coinbase_before = await e.rpc.get_balance(COINBASE)
        receipt = await send(e, e.owner, e.executor, encode_arbitrage(bad))
        assert await mined_revert(e, receipt) == error
        assert receipt["logs"] == []
        trace = await e.rpc.call(
            "debug_traceTransaction", [receipt["transactionHash"], {"tracer": "callTracer"}]
        )
        assert eth_transfers_to(trace, COINBASE) == []
        assert await e.rpc.get_balance(COINBASE) - coinbase_before == await coinbase_tips(e.rpc, receipt)
        await assert_executor_clean(e)
        assert await e.rpc.call("evm_revert", [snap]) is True
    ev2, _ = await arbitrage_and_check(e, replace(p, min_profit=ev.profit, min_out=ev.amount_out), e.owner)
    assert ev2 == ev


async def _next_timestamp(e: Env) -> int:
    return hex_to_int((await e.rpc.call("eth_getBlockByNumber", ["latest", False]))["timestamp"]) + 12


async def test_a_losing_cycle_reverts(e: Env) -> None:
    """The reverse cycle (buy wstETH at the peg, sell it where it is cheap) returns less than the loan:
    InsufficientProfit(0, minProfit) from inside the callback, before any repayment or payment."""
    weth, lst = e.sym("WETH"), e.sym("wstETH")
    route = MixedRoute((RouteLeg(10_000, (V2Route((weth, lst)), V3Route((lst, weth), (100,)))),))
    p = arb(e, route, source=FlashSource.BALANCER_VAULT, max_block=await head(e) + 1, min_profit=0)
    p = replace(p, min_out=0)  # the route's own minimum would stop it first (InsufficientOutput)
    assert await revert_error(e, e.owner, e.executor, encode_arbitrage(p)) == ("InsufficientProfit", (0, 0))
    receipt = await send(e, e.owner, e.executor, encode_arbitrage(p))
    assert await mined_revert(e, receipt) == ("InsufficientProfit", (0, 0))
    # A cycle on one Balancer pool (one batchSwap whose assets list WETH twice) runs and pays its fees.
    lst_pool = pool_id(e, "wstETH/WETH")
    cycle = BalancerRoute((weth, lst, weth), (lst_pool, lst_pool))
    q = replace(p, source=FlashSource.AAVE_V3, route=cycle, max_block=await head(e) + 1)
    assert await revert_error(e, e.owner, e.executor, encode_arbitrage(q)) == ("InsufficientProfit", (0, 0))
    await assert_executor_clean(e)


# --- guards --------------------------------------------------------------------------------------------


async def test_only_owner_and_operators(e: Env) -> None:
    p = arb(e, weth_via_balancer(e), max_block=await head(e) + 1)
    for who in (e.attacker, OPERATOR_EOA, e.dep.accounts["deployer"]):
        assert await revert_error(e, who, e.executor, encode_arbitrage(p)) == ("NotOperator", ())
    receipt = await send(e, e.attacker, e.executor, encode_arbitrage(p))
    assert await mined_revert(e, receipt) == ("NotOperator", ())
    await make_operator(e)
    operator_before = await balance_of(e.rpc, p.token, OPERATOR_EOA)
    ev, _ = await arbitrage_and_check(e, replace(p, max_block=await head(e) + 1), OPERATOR_EOA)
    assert ev.profit > 0 and await balance_of(e.rpc, p.token, OPERATOR_EOA) == operator_before
    # The contract itself only inside a batch.
    await e.rpc.call("anvil_impersonateAccount", [e.executor])
    await e.rpc.call("anvil_setBalance", [e.executor, hex(WAD)])
    try:
        assert await revert_error(e, e.executor, e.executor, encode_arbitrage(p)) == ("NotOperator", ())
    finally:
        await e.rpc.call("anvil_setBalance", [e.executor, "0x0"])
        await e.rpc.call("anvil_stopImpersonatingAccount", [e.executor])


async def test_expired_and_coinbase_bound(e: Env) -> None:
    now = await head(e)
    p = arb(e, weth_via_balancer(e), max_block=now - 1)
    assert await revert_error(e, e.owner, e.executor, encode_arbitrage(p)) == ("Expired", (now - 1,))
    receipt = await send(e, e.owner, e.executor, encode_arbitrage(replace(p, max_block=now)))
    assert await mined_revert(e, receipt) == ("Expired", (now,))
    p = arb(e, weth_via_balancer(e), max_block=await head(e) + 1, coinbase_bps=MAX_COINBASE_BPS + 1)
    assert await revert_error(e, e.owner, e.executor, encode_arbitrage(p)) == (
        "CoinbaseShareTooHigh",
        (MAX_COINBASE_BPS + 1, MAX_COINBASE_BPS),
    )
    await assert_executor_clean(e)


async def test_bad_params_and_paths_revert(e: Env) -> None:
    """Raw tuples bypass the Python validation: the contract refuses on its own, before any loan."""
    s = e.sym
    weth, lst, usdc = s("WETH"), s("wstETH"), s("USDC")
    lst_pool = pool_id(e, "wstETH/WETH")
    p = arb(e, weth_via_balancer(e), max_block=await head(e) + 1)
    base = list(p.abi_tuple())

    def raw(**changes: Any) -> bytes:
        t = list(base)
        for index, value in changes.items():
            t[int(index[1:])] = value
        return ARBITRAGE_SELECTOR + encode([ARB_PARAMS_TUPLE], [tuple(t)])

    def mixed(*legs: tuple[int, list[tuple[int, bytes]]]) -> bytes:
        return encode(["(uint16,(uint8,bytes)[])[]"], [list(legs)])

    v3_buy = (int(Venue.UNISWAP_V3), V3Route((weth, lst), (100,)).encode())
    bal_sell = (int(Venue.BALANCER_V2), BalancerRoute((lst, weth), (lst_pool,)).encode())
    v2_sell = (int(Venue.UNISWAP_V2), V2Route((lst, weth)).encode())
    mixed_venue = int(Venue.MIXED)
    balancer_cycle = BalancerRoute((weth, lst, weth), (lst_pool, lst_pool)).encode()
    bad_paths = [
        raw(i4=mixed((10_000, [v3_buy]))),  # ends at wstETH, not the borrowed WETH
        raw(i4=mixed((10_000, [bal_sell, v3_buy]))),  # starts at wstETH
        raw(i4=mixed((6_000, [v3_buy, bal_sell]), (3_000, [v3_buy, v2_sell]))),  # 9000 bps
        raw(i4=mixed((6_000, [v3_buy, bal_sell]), (6_000, [v3_buy, v2_sell]))),  # 12000 bps
        raw(i3=int(Venue.UNISWAP_V3), i4=V3Route((weth, lst), (100,)).encode()),  # not a cycle
        raw(i3=int(Venue.UNISWAP_V2), i4=V2Route((usdc, weth)).encode()),  # starts at USDC
        raw(i3=0),  # venue Invalid
        raw(i3=mixed_venue, i4=mixed((10_000, [v3_buy, (mixed_venue, b"")]))),  # a Mixed hop
        # The Vault is locked during its own flash loan: a Balancer hop cannot run on its loan.
        raw(i0=int(FlashSource.BALANCER_VAULT)),
        raw(i0=int(FlashSource.BALANCER_VAULT), i3=int(Venue.BALANCER_V2), i4=balancer_cycle),
    ]
    for data in bad_paths:
        assert await revert_error(e, e.owner, e.executor, data) == ("BadPath", ()), data.hex()[:10]
    # A USDC arbitrage with a builder share needs a USDC -> WETH route.
    usdc_route = MixedRoute(
        (
            RouteLeg(
                10_000,
                (
                    V3Route((usdc, s("USDT")), (100,)),
                    BalancerRoute((s("USDT"), usdc), (pool_id(e, "USDC/USDT/DAI"),)),
                ),
            ),
        )
    )
    q = arb(e, usdc_route, amount=USDC_AMOUNT, max_block=await head(e) + 1)
    assert await revert_error(e, e.owner, e.executor, encode_arbitrage(q)) == ("BadPath", ())
    wrong = replace(q, coinbase_route=V3Route((usdc, s("USDT")), (100,)))
    assert await revert_error(e, e.owner, e.executor, encode_arbitrage(wrong)) == ("BadPath", ())
    # Source Invalid, amount 0: BadParams; a source outside the enum fails the ABI decoding itself.
    assert await revert_error(e, e.owner, e.executor, raw(i0=0)) == ("BadParams", ())
    with pytest.raises(ExecutionReverted) as info:
        await e.rpc.eth_call(e.executor, raw(i0=3), sender=e.owner)
    assert decode_executor_error(info.value.revert_data) is None
    assert await revert_error(e, e.owner, e.executor, raw(i2=0)) == ("BadParams", ())
    # Python refuses what it can see: a route that is not a cycle of the token, a short tag.
    with pytest.raises(ValueError):
        arb(e, weth_via_balancer(e), max_block=1, amount=0)
    with pytest.raises(ValueError):
        replace(p, route=V3Route((weth, lst), (100,)))
    with pytest.raises(ValueError):
        replace(p, tag=b"\x01")
    await assert_executor_clean(e)


def _receive_flash_loan_call(token: str, amount: int, fee: int, data: bytes) -> bytes:
    return encode_call(
        RECEIVE_FLASH_LOAN_SIGNATURE,
        ["address[]", "uint256[]", "uint256[]", "bytes"],
        [[token], [amount], [fee], data],
    )


async def test_fake_callbacks_revert(e: Env) -> None:
    p = arb(e, weth_via_v2(e), source=FlashSource.BALANCER_VAULT, max_block=await head(e) + 1)
    inner = encode_arbitrage(p)[4:]  # abi.encode(ArbParams), what the contract passes to the lender
    weth, vault, pool = e.sym("WETH"), e.dep.balancer.vault, e.dep.aave_v3.pool
    spoof = _receive_flash_loan_call(weth, p.amount, 0, inner)
    # 1. receiveFlashLoan from anyone but the Vault: refused, even from the owner.
    for who in (e.attacker, e.owner):
        assert await revert_error(e, who, e.executor, spoof) == ("UnauthorizedCallback", ())
    # 2. From the Vault's address (impersonated) while no arbitrage is in flight.
    # 3. executeOperation from the Aave Pool (impersonated) with arbitrage data, initiator = the executor.
    aave_spoof = encode_call(
        EXECUTE_OPERATION_SIGNATURE,
        ["address", "uint256", "uint256", "address", "bytes"],
        [weth, p.amount, 0, e.executor, inner],
    )
    for who, data in ((vault, spoof), (pool, aave_spoof)):
        await e.rpc.call("anvil_impersonateAccount", [who])
        await e.rpc.call("anvil_setBalance", [who, hex(WAD)])
        try:
            assert await revert_error(e, who, e.executor, data) == ("UnauthorizedCallback", ())
        finally:
            await e.rpc.call("anvil_stopImpersonatingAccount", [who])
    # 4. Real loans taken by the attacker with the executor as the recipient: the Vault (no initiator to
    #    check: the executor is not waiting for a callback) and the Aave Pool (initiator = attacker).
    vault_loan = encode_call(
        "flashLoan(address,address[],uint256[],bytes)",
        ["address", "address[]", "uint256[]", "bytes"],
        [e.executor, [weth], [p.amount], inner],
    )
    aave_loan = encode_call(
        "flashLoanSimple(address,address,uint256,bytes,uint16)",
        ["address", "address", "uint256", "bytes", "uint16"],
        [e.executor, weth, p.amount, inner, 0],
    )
    for lender, data in ((vault, vault_loan), (pool, aave_loan)):
        with pytest.raises(ExecutionReverted) as info:
            await e.rpc.eth_call(lender, data, sender=e.attacker)
        assert decode_executor_error(info.value.revert_data) == ("UnauthorizedCallback", ())
        receipt = await send(e, e.attacker, lender, data)
        assert receipt["status"] == "0x0"
    await assert_executor_clean(e)


# --- batches mixing liquidations and arbitrages -----------------------------------------------------------


async def test_batch_with_a_liquidation_and_an_arbitrage(e: Env) -> None:
    """[liquidation, arbitrage] by an operator: both run; then each one failing alone leaves the other."""
    await make_operator(e)
    liq = await params_for(e, "v3-wbtc-weth")
    p = arb(e, weth_via_balancer(e), max_block=await head(e) + 1)
    receipt = await send(
        e, OPERATOR_EOA, e.executor, encode_batch([encode_liquidate(liq), encode_arbitrage(p)])
    )
    assert receipt["status"] == "0x1"
    results = decode_batch_result(await batch_output(e, receipt))
    assert [ok for ok, _ in results] == [True, True]
    (lev,) = liquidated_events(receipt, e.executor)
    (aev,) = arbitraged_events(receipt, e.executor)
    assert decode_liquidate_result(results[0][1]) == (lev.profit, lev.coinbase_paid)
    assert decode_arbitrage_result(results[1][1]) == (aev.profit, aev.coinbase_paid)
    assert aev.tag == TAG and aev.profit > 0 and lev.profit > 0
    await assert_executor_clean(e)


async def test_batch_where_the_arbitrage_fails_alone(e: Env) -> None:
    liq = await params_for(e, "v3-wbtc-weth")
    greedy = arb(e, weth_via_balancer(e), max_block=await head(e) + 1, min_profit=10**30)
    reason = await revert_data(e, e.owner, encode_arbitrage(greedy))
    assert (
        decode_executor_error(reason) is not None and decode_executor_error(reason)[0] == "InsufficientProfit"
    )
    receipt = await send(
        e, e.owner, e.executor, encode_batch([encode_liquidate(liq), encode_arbitrage(greedy)])
    )
    assert receipt["status"] == "0x1"
    assert [ok for ok, _ in decode_batch_result(await batch_output(e, receipt))] == [True, False]
    assert [(f.index, f.reason) for f in batch_item_failures(receipt, e.executor)] == [(1, reason)]
    assert len(liquidated_events(receipt, e.executor)) == 1 and arbitraged_events(receipt, e.executor) == []
    await assert_executor_clean(e)


async def test_batch_where_the_liquidation_fails_alone(e: Env) -> None:
    await repay_all(e, "v3-weth-usdc")
    gone = await params_for(e, "v3-weth-usdc")
    p = arb(e, weth_via_v2(e), source=FlashSource.BALANCER_VAULT, max_block=await head(e) + 1)
    receipt = await send(e, e.owner, e.executor, encode_batch([encode_liquidate(gone), encode_arbitrage(p)]))
    assert receipt["status"] == "0x1"
    assert [ok for ok, _ in decode_batch_result(await batch_output(e, receipt))] == [False, True]
    assert [f.index for f in batch_item_failures(receipt, e.executor)] == [0]
    assert liquidated_events(receipt, e.executor) == []
    (ev,) = arbitraged_events(receipt, e.executor)
    assert ev.profit > 0
    await assert_executor_clean(e)


async def test_batch_of_failing_arbitrages_reverts(e: Env) -> None:
    greedy = arb(e, weth_via_balancer(e), max_block=await head(e) + 1, min_profit=10**30)
    reason = await revert_data(e, e.owner, encode_arbitrage(greedy))
    data = encode_batch([encode_arbitrage(greedy), encode_arbitrage(greedy)])
    assert await revert_error(e, e.owner, e.executor, data) == ("AllItemsFailed", (reason,))
    assert await revert_error(e, e.attacker, e.executor, data) == ("NotOperator", ())
