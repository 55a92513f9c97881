"""LiquidationExecutor.liquidateSubsidized on the devnet: a sale that does not repay the loan, made up by
the owner (protocol-keeper mode).

The module's devnet is test_executor_contract's (50 borrowers, ETH -25%, WBTC -50% on the V3 feed). To
make a sale return less than the debt repaid plus the flash premium, the WETH/USDC 0.05% pool is pushed
below the oracle price (a thin market after a steep crash, nobody re-aligning it): the liquidator's
bonus no longer covers the price the sale gets, while the sale still clears the owner's oracle floor.
Every subsidized call is checked to the wei: the shortfall equals debt repaid + premium - sale output,
the owner pays exactly that (no more, whatever the cap), the builder gets nothing, the executor keeps
nothing and has no allowance left.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from eth_abi.abi import decode
from eth_utils.crypto import keccak

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.devnet.anvil import DEV_ACCOUNTS, Anvil, AnvilConfig
from keeper.devnet.contracts import our_artifact
from keeper.devnet.deploy import WHALE
from keeper.devnet.deployer import fn_signature
from keeper.devnet.scenarios.amm import v3_move_tx
from keeper.devnet.scenarios.crash import current_usd_prices
from keeper.devnet.stack import GAS_LIMIT, ensure_state
from keeper.errors import ExecutionReverted
from keeper.executors.executor_contract import (
    BATCHABLE_SELECTORS,
    LIQUIDATE_SUBSIDIZED_SELECTOR,
    LIQUIDATE_SUBSIDIZED_SIGNATURE,
    LIQUIDATED_TOPIC,
    SUBSIDIZED_TOPIC,
    LiquidationParams,
    batch_item_failures,
    decode_batch_result,
    decode_liquidate_subsidized,
    decode_liquidate_subsidized_result,
    encode_allowance,
    encode_approve,
    encode_batch,
    encode_liquidate,
    encode_liquidate_subsidized,
    liquidated_events,
    subsidized_events,
)
from tests.integration.test_executor_contract import (
    COINBASE,
    GAS_FIGURES,
    OPERATOR_EOA,
    Env,
    EvmMiner,
    assert_executor_clean,
    balance_of,
    batch_output,
    clean_env,
    coinbase_tips,
    e,
    env,
    head,
    make_env,
    make_operator,
    params_for,
    quote_swap,
    revert_error,
    send,
)

pytestmark = pytest.mark.integration

__all__ = ["e", "env"]  # the module's fixtures, shared with test_executor_contract

CASE = "v3-weth-usdc"
DEPRESS_BPS = 800
"""How far below the oracle the WETH/USDC 0.05% pool is pushed: beyond the liquidator's bonus (~4%), well
within the devnet executor's 10% oracle floor."""


async def depress_weth(env: Env, bps: int = DEPRESS_BPS) -> None:
    """The WETH/USDC 0.05% pool moved to `bps` below the oracle's WETH price (a whale's sale)."""
    usd = dict(await current_usd_prices(env.rpc, env.dep))
    usd["WETH"] = usd["WETH"] * (10_000 - bps) // 10_000
    tx = await v3_move_tx(env.rpc, env.dep, "WETH/USDC/500", usd, WHALE)
    assert tx is not None
    await env.rpc.call("anvil_impersonateAccount", [WHALE])
    receipt = await send(env, WHALE, tx.to, tx.data, gas=tx.gas)
    assert receipt["status"] == "0x1"


async def far_params(env: Env, case: str, **kwargs: int) -> LiquidationParams:
    """`params_for`, valid for the next 100 blocks (set-up transactions mine blocks in between)."""
    p = await params_for(env, case, **kwargs)
    return replace(p, max_block=await head(env) + 100)


async def approve_subsidy(env: Env, token: str, amount: int) -> None:
    """The owner's approval of the executor for `token`, with some of it to pay from (open mint)."""
    if await balance_of(env.rpc, token, env.owner) == 0:
        mint = encode_call("mint(address,uint256)", ["address", "uint256"], [env.owner, 10**24])
        assert (await send(env, env.attacker, token, mint))["status"] == "0x1"
    receipt = await send(env, env.owner, token, encode_approve(env.executor, amount))
    assert receipt["status"] == "0x1"


async def allowance(env: Env, token: str) -> int:
    raw = await env.rpc.eth_call(token, encode_allowance(env.owner, env.executor))
    return int(decode(["uint256"], raw)[0])


async def simulated_subsidy(env: Env, p: LiquidationParams, sender: str) -> tuple[int, int, int]:
    """(profit, coinbasePaid, subsidy) of liquidateSubsidized(p, max) at the latest state (eth_call)."""
    data = encode_liquidate_subsidized(p, 2**256 - 1)
    return decode_liquidate_subsidized_result(await env.rpc.eth_call(env.executor, data, sender=sender))


async def subsidized_and_check(
    env: Env, p: LiquidationParams, max_subsidy: int, sender: str
) -> tuple[int, int, dict[str, object]]:
    """Sends liquidateSubsidized(p, max_subsidy), which must be subsidized; checks every amount. Returns
    (shortfall, gas used, receipt)."""
    rpc = env.rpc
    start = await head(env)
    owner_before = await balance_of(rpc, p.debt, env.owner)
    allowance_before = await allowance(env, p.debt)
    coinbase_before = await rpc.get_balance(COINBASE)

    receipt = await send(env, sender, env.executor, encode_liquidate_subsidized(p, max_subsidy))
    assert receipt["status"] == "0x1", receipt
    (ev,) = liquidated_events(receipt, env.executor)
    (sub,) = subsidized_events(receipt, env.executor)
    # Subsidized follows its call's Liquidated, and is paired with it.
    topics = [str(log["topics"][0]).lower() for log in receipt["logs"]]
    assert topics.index(SUBSIDIZED_TOPIC) == topics.index(LIQUIDATED_TOPIC) + 1
    assert (sub.lending_pool, sub.user, sub.debt) == (ev.lending_pool, ev.user, ev.debt)
    shortfall = ev.debt_repaid + ev.flash_premium - ev.swap_out
    assert shortfall > 0
    assert sub.shortfall == ev.subsidy == shortfall <= max_subsidy
    assert ev.gross_profit == -shortfall and ev.realized_profit == -shortfall
    # No profit, nothing to the builder: no share of a loss.
    assert (ev.profit, ev.coinbase_paid) == (0, 0)
    assert await rpc.get_balance(COINBASE) - coinbase_before == await coinbase_tips(rpc, receipt)
    # All the seized collateral was sold, for exactly what the venue quoted at the pre-tx state.
    assert ev.swap_out == await quote_swap(env, p.route, ev.collateral_seized, start)
    # The owner paid exactly the shortfall, out of its allowance; the executor keeps nothing.
    assert owner_before - await balance_of(rpc, p.debt, env.owner) == shortfall
    assert allowance_before - await allowance(env, p.debt) == shortfall
    await assert_executor_clean(env)
    return shortfall, hex_to_int(str(receipt["gasUsed"])), receipt


# --- tests ----------------------------------------------------------------------------------------------


async def test_abi_and_calldata(env: Env) -> None:
    abi = our_artifact("LiquidationExecutor").abi
    sigs = {fn_signature(item) for item in abi if item["type"] == "function"}
    assert LIQUIDATE_SUBSIDIZED_SIGNATURE in sigs
    assert LIQUIDATE_SUBSIDIZED_SELECTOR in BATCHABLE_SELECTORS
    fn = next(item for item in abi if item.get("name") == "liquidateSubsidized")
    assert [o["type"] for o in fn["outputs"]] == ["uint256", "uint256", "uint256"]
    event = next(item for item in abi if item["type"] == "event" and item["name"] == "Subsidized")
    assert "0x" + keccak(text=fn_signature(event)).hex() == SUBSIDIZED_TOPIC
    p = await far_params(env, CASE, min_profit=0)
    back, cap = decode_liquidate_subsidized(encode_liquidate_subsidized(p, 12345))
    assert cap == 12345 and back.user.lower() == p.user.lower() and back.debt_to_cover == p.debt_to_cover


async def test_shortfall_is_pulled_from_the_owner_exactly(e: Env) -> None:
    await depress_weth(e)
    p = await far_params(e, CASE, min_profit=0)
    # No allowance: the owner has not agreed to pay anything.
    name, _ = await revert_error(e, e.owner, e.executor, encode_liquidate_subsidized(p, 10**30))
    assert name == "TokenCallFailed"
    # The plain entry point cannot take the loss: the pool's pull of the loan plus premium fails.
    with pytest.raises(ExecutionReverted):
        await e.rpc.eth_call(e.executor, encode_liquidate(p), sender=e.owner)
    await approve_subsidy(e, p.debt, 10**30)
    profit, paid, subsidy = await simulated_subsidy(e, p, e.owner)
    assert profit == paid == 0 and subsidy > 0
    # A cap one unit short: SubsidyTooHigh(shortfall, cap); zero cap too.
    assert await revert_error(e, e.owner, e.executor, encode_liquidate_subsidized(p, subsidy - 1)) == (
        "SubsidyTooHigh",
        (subsidy, subsidy - 1),
    )
    assert await revert_error(e, e.owner, e.executor, encode_liquidate_subsidized(p, 0)) == (
        "SubsidyTooHigh",
        (subsidy, 0),
    )
    # A minimum profit cannot be met by a subsidized sale.
    assert await revert_error(
        e, e.owner, e.executor, encode_liquidate_subsidized(replace(p, min_profit=1), 10**30)
    ) == ("InsufficientProfit", (0, 1))
    # A cap well above the shortfall: exactly the shortfall is pulled (the block's interest may move it
    # by a unit or so from the eth_call above).
    shortfall, gas, _ = await subsidized_and_check(e, p, 10**30, e.owner)
    assert abs(shortfall - subsidy) <= subsidy // 10**6 + 1
    GAS_FIGURES[f"{CASE} subsidized"] = gas


async def test_operator_cannot_pull_more_than_the_cap_or_the_allowance(e: Env) -> None:
    await depress_weth(e)
    await make_operator(e)
    p = await far_params(e, CASE, min_profit=0)
    _, _, subsidy = await simulated_subsidy_after_approval(e, p)
    # The allowance is the owner's own cap: an operator's call beyond it fails.
    await approve_subsidy(e, p.debt, subsidy - 1)
    name, (token,) = await revert_error(e, OPERATOR_EOA, e.executor, encode_liquidate_subsidized(p, 10**30))
    assert name == "TokenCallFailed" and token.lower() == p.debt.lower()
    await approve_subsidy(e, p.debt, 10**30)
    assert (await revert_error(e, OPERATOR_EOA, e.executor, encode_liquidate_subsidized(p, subsidy - 1)))[
        0
    ] == "SubsidyTooHigh"
    # A stranger cannot call it at all.
    assert await revert_error(e, e.attacker, e.executor, encode_liquidate_subsidized(p, 10**30)) == (
        "NotOperator",
        (),
    )
    # The operator's call within the cap: the owner pays the shortfall and nothing more.
    shortfall, _, _ = await subsidized_and_check(e, p, subsidy + subsidy // 1000 + 10, OPERATOR_EOA)
    assert await allowance(e, p.debt) == 10**30 - shortfall


async def simulated_subsidy_after_approval(e: Env, p: LiquidationParams) -> tuple[int, int, int]:
    """The simulated subsidy with an allowance given, then the allowance taken back to zero."""
    await approve_subsidy(e, p.debt, 10**30)
    out = await simulated_subsidy(e, p, e.owner)
    await approve_subsidy(e, p.debt, 0)
    return out


async def test_floor_still_applies_to_a_subsidized_sale(e: Env) -> None:
    """A pool pushed beyond the owner's oracle floor (10%): no subsidy pays for that sale."""
    await depress_weth(e, 1_500)
    p = await far_params(e, CASE, min_profit=0)
    await approve_subsidy(e, p.debt, 10**30)
    name, (received, floor) = await revert_error(
        e, e.owner, e.executor, encode_liquidate_subsidized(p, 10**30)
    )
    assert name == "SlippageTooHigh" and received < floor


async def test_a_sale_that_repays_the_loan_is_a_plain_liquidation(e: Env) -> None:
    """Without a shortfall: the profit check and the builder's share as in liquidate, no subsidy, no
    Subsidized event, nothing pulled from the owner."""
    p = await far_params(e, "v3-wbtc-weth", coinbase_bps=3_000)
    await approve_subsidy(e, p.debt, 10**30)
    owner_before = await balance_of(e.rpc, p.debt, e.owner)
    receipt = await send(e, e.owner, e.executor, encode_liquidate_subsidized(p, 10**30))
    assert receipt["status"] == "0x1"
    (ev,) = liquidated_events(receipt, e.executor)
    assert subsidized_events(receipt, e.executor) == []
    assert ev.subsidy == 0 and ev.profit > 0 and ev.coinbase_paid > 0
    assert await balance_of(e.rpc, p.debt, e.owner) - owner_before == ev.profit
    assert await allowance(e, p.debt) == 10**30
    await assert_executor_clean(e)


async def test_batch_with_a_subsidized_item_failing_alone(e: Env) -> None:
    """[subsidized over its cap, a profitable WBTC->WETH liquidation, the subsidized one within its cap]:
    the first fails alone (SubsidyTooHigh), the others run; the owner pays exactly the one shortfall."""
    await depress_weth(e)
    p = await far_params(e, CASE, min_profit=0)
    _, _, subsidy = await simulated_subsidy_after_approval(e, p)
    await approve_subsidy(e, p.debt, 10**30)
    good = await far_params(e, "v3-wbtc-weth", coinbase_bps=3_000)
    calls = [
        encode_liquidate_subsidized(p, subsidy // 2),
        encode_liquidate(good),
        encode_liquidate_subsidized(p, 10**30),
    ]
    usdc_before = await balance_of(e.rpc, p.debt, e.owner)
    receipt = await send(e, e.owner, e.executor, encode_batch(calls))
    assert receipt["status"] == "0x1"
    outcomes = decode_batch_result(await batch_output(e, receipt))
    assert [ok for ok, _ in outcomes] == [False, True, True]
    assert [f.index for f in batch_item_failures(receipt, e.executor)] == [0]
    failure = batch_item_failures(receipt, e.executor)[0]
    assert failure.error is not None and failure.error[0] == "SubsidyTooHigh"
    events = liquidated_events(receipt, e.executor)
    assert [ev.subsidy > 0 for ev in events] == [False, True]
    (sub,) = subsidized_events(receipt, e.executor)
    assert decode_liquidate_subsidized_result(outcomes[2][1]) == (0, 0, sub.shortfall)
    assert usdc_before - await balance_of(e.rpc, p.debt, e.owner) == sub.shortfall
    await assert_executor_clean(e)


async def test_legacy_build_subsidized_resets_its_slots(tmp_path: Path) -> None:
    """The pre-Cancun build (transient slots as storage): a subsidized liquidation leaves every
    per-call slot (4-10) at zero."""
    cache, dep, _ = await ensure_state()
    config = AnvilConfig(
        load_state=cache.state_file,
        no_mining=True,
        gas_limit=GAS_LIMIT,
        extra_args=["--hardfork", "shanghai", "--order", "fifo"],
    )
    async with Anvil(config) as node, RpcClient(node.http_url) as rpc:
        env = await make_env(EvmMiner(rpc), rpc, dep)
        await rpc.call("anvil_setCoinbase", [COINBASE])
        await depress_weth(env)
        p = await far_params(env, CASE, min_profit=0)
        await approve_subsidy(env, p.debt, 10**30)
        _, gas, _ = await subsidized_and_check(env, p, 10**30, env.owner)
        GAS_FIGURES[f"{CASE} subsidized (legacy build)"] = gas
        for slot in range(4, 11):
            value = await rpc.call("eth_getStorageAt", [env.executor, hex(slot), "latest"])
            assert hex_to_int(value) == 0, slot
        # A plain liquidation still works after it.
        b = await far_params(env, "v3-wbtc-weth")
        assert (await send(env, env.owner, env.executor, encode_liquidate(b)))["status"] == "0x1"


async def approve_cli(env: Env, cwd: Path, key: str, *args: str) -> tuple[int, str]:
    """`python -m keeper contracts approve-subsidy ARGS` against the module's devnet, signed with `key`;
    blocks are mined while it waits for its receipt."""
    net = env.net
    url = getattr(net, "http_url")  # noqa: B009 (the Devnet of this module's env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keeper",
        "contracts",
        "approve-subsidy",
        *args,
        cwd=cwd,
        env=clean_env(KEEPER_RPC_HTTP_URL=str(url), KEEPER_PRIVATE_KEY=key),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )

    async def mine() -> None:
        while True:
            await asyncio.sleep(0.3)
            await net.mine()

    miner = asyncio.create_task(mine())
    try:
        raw, _ = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        miner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await miner
    out = raw.decode()
    assert key[2:] not in out and "Traceback" not in out, out
    assert proc.returncode is not None
    return proc.returncode, out


async def test_approve_subsidy_cli(e: Env, tmp_path: Path) -> None:
    """`keeper contracts approve-subsidy`: the dry run prints the approval and sends nothing; the real one
    sets the owner's allowance (read back); a key that does not own the executor, a bad amount or token
    are refused."""
    owner_key = next(k for a, k in DEV_ACCOUNTS if a.lower() == e.owner.lower())
    usdc = e.sym("USDC")
    before = await allowance(e, usdc)
    ex = ("--executor", e.executor)
    code, out = await approve_cli(
        e,
        tmp_path,
        owner_key,
        "--token",
        usdc,
        "--amount",
        "1000000000",
        "--executor",
        e.executor,
        "--dry-run",
    )
    assert code == 0, out
    assert "dry run: nothing sent" in out and f"approve({e.executor}, 1000000000) on {usdc}" in out
    assert f"allowance now {before}" in out
    assert await allowance(e, usdc) == before
    code, out = await approve_cli(e, tmp_path, owner_key, "--token", usdc, "--amount", "1000000000", *ex)
    assert code == 0, out
    assert await allowance(e, usdc) == 1_000_000_000
    assert f"allowance of {e.executor} for {usdc} from {e.owner}: 1000000000" in out
    # Not the executor's owner: refused before anything is sent.
    stranger = next(k for a, k in DEV_ACCOUNTS if a.lower() != e.owner.lower())
    code, out = await approve_cli(e, tmp_path, stranger, "--token", usdc, "--amount", "max", *ex)
    assert code == 1 and "is owned by" in out, out
    code, out = await approve_cli(e, tmp_path, owner_key, "--token", usdc, "--amount", "-1", *ex)
    assert code == 2 and "--amount" in out, out
    code, out = await approve_cli(e, tmp_path, owner_key, "--token", "nope", "--amount", "1", *ex)
    assert code == 2 and "--token" in out, out
