"""The executor that sends every strategy's transactions, built once per `keeper run`.

All strategies send from the same keys through the same executor contract, so they share one executor
(`Services.shared`): one nonce tracker per account, one ledger writer, one packing of a block's calls
into batch transactions. Which one depends on `KEEPER_SUBMIT`: the `BundleExecutor` (bundles to the
builders, MEV-Share backruns by hash) or the `SingleTxExecutor` (public mempool or private relay).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from eth_abi.abi import decode

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.chain.signer import TxSigner
from keeper.config import env_name
from keeper.core.actions import SendMode
from keeper.errors import ConfigError
from keeper.executors.bundle_executor import BundleExecutor
from keeper.executors.single_tx import SingleTxExecutor
from keeper.strategies_registry import Services, StrategyContext

SHARED_KEY = "submit-executor"

GAS_BUDGET_SHARE = 3
"""Default gas budget per block: the block gas limit divided by this."""

TokenPricer = Callable[[str], Awaitable[tuple[int, int]]]

MISSING_EXECUTOR = (
    f"{env_name('executor_address')}: missing (deploy one with `keeper contracts deploy`); "
    "e.g. KEEPER_EXECUTOR_ADDRESS=0x<the printed address>"
)
"""The problem line when a strategy that sends through the executor contract has none configured."""


def devnet_executor(devnet: Mapping[str, Any]) -> str:
    """The executor contract of a devnet deployment record; ConfigError when it has none."""
    executor = str(devnet.get("executor") or "")
    if not executor:
        raise ConfigError(
            [
                f"{env_name('devnet_file')}: the deployment has no executor "
                "(restart the devnet with `keeper devnet up`)"
            ]
        )
    return executor


async def submit_executor(
    ctx: StrategyContext,
    *,
    executor_address: str,
    gas_budget: int,
    token_to_wei: TokenPricer | None = None,
) -> BundleExecutor | SingleTxExecutor:
    """The shared executor (built by the first strategy that asks: its `token_to_wei` values profits
    found on chain after a restart)."""
    services = ctx.services
    if services is None:
        raise ConfigError(["KEEPER_STRATEGIES: sending needs `keeper run`"])

    async def build() -> BundleExecutor | SingleTxExecutor:
        return await _build(ctx, services, executor_address, gas_budget, token_to_wei)

    executor = await services.shared(SHARED_KEY, build)
    if not isinstance(executor, BundleExecutor | SingleTxExecutor):  # pragma: no cover - wiring bug
        raise TypeError(f"shared {SHARED_KEY!r} is a {type(executor).__name__}")
    bound = executor.executor_address if isinstance(executor, BundleExecutor) else None
    if bound is not None and bound.lower() != executor_address.lower():
        raise ConfigError(
            [
                f"{env_name('executor_address')}: strategies disagree on the executor contract "
                f"({bound} and {executor_address})"
            ]
        )
    return executor


async def _build(
    ctx: StrategyContext,
    services: Services,
    executor_address: str,
    gas_budget: int,
    token_to_wei: TokenPricer | None,
) -> BundleExecutor | SingleTxExecutor:
    settings, rpc = ctx.settings, ctx.rpc
    ledger = await services.ledger()
    if settings.submit != "bundle":
        mode = SendMode.PUBLIC if settings.submit == "public" else SendMode.PRIVATE
        return SingleTxExecutor(
            rpc,
            await services.senders(mode),
            min_profit_wei=settings.min_profit_wei,
            ledger=ledger,
            dry_run=settings.dry_run,
            channel="mempool" if settings.submit == "public" else "private",
        )
    builders = await services.builders()
    stream, mevshare = services.mevshare
    if stream is not None and not mevshare:
        raise ConfigError(
            [
                f"{env_name('mevshare_builders')}: missing ({env_name('mevshare_url')} is set: backruns "
                "by hash need the builders that take mev_sendBundle); "
                "e.g. KEEPER_MEVSHARE_BUILDERS=flashbots"
            ]
        )
    unknown = [b for b in mevshare if b not in builders.names]
    if unknown:
        raise ConfigError(
            [
                f"{env_name('mevshare_builders')}: {', '.join(unknown)} not among the builders of "
                f"{env_name('relay_urls')} ({', '.join(builders.names)}); e.g. "
                "KEEPER_RELAY_URLS=flashbots=https://relay.flashbots.net "
                "KEEPER_MEVSHARE_BUILDERS=flashbots"
            ]
        )
    executor = BundleExecutor(
        rpc,
        services.signers(),
        builders,
        chain_id=services.chain_id,
        min_profit_wei=settings.min_profit_wei,
        ledger=ledger,
        dry_run=settings.dry_run,
        on_event=services.event_sink,
        gas_budget=gas_budget,
        executor_address=executor_address,
        token_to_wei=token_to_wei,
        send_watch=services.send_watch,
        mevshare_builders=mevshare,
    )
    await executor.reconcile()
    return executor


async def check_executor_access(
    rpc: RpcClient, executor: str, signers: Sequence[TxSigner], *, builder_share_bps: int = 0
) -> None:
    """ConfigError unless `executor` is our contract, every signer is its owner or an operator, and the
    builder share is within the bound its owner set (`maxCoinbaseBps`: above it every call reverts)."""
    code = await rpc.call("eth_getCode", [executor, "latest"])
    if not code or code == "0x":
        raise ConfigError(
            [
                f"{env_name('executor_address')}: no contract at {executor} on this chain "
                "(deploy one with `keeper contracts deploy`)"
            ]
        )
    calls: list[tuple[str, Any]] = [
        ("eth_call", [{"to": executor, "data": "0x" + encode_call("owner()", [], []).hex()}, "latest"]),
        (
            "eth_call",
            [{"to": executor, "data": "0x" + encode_call("maxCoinbaseBps()", [], []).hex()}, "latest"],
        ),
    ]
    for s in signers:
        data = encode_call("isOperator(address)", ["address"], [s.address])
        calls.append(("eth_call", [{"to": executor, "data": "0x" + data.hex()}, "latest"]))
    results = await rpc.batch(calls)
    try:
        owner = str(decode(["address"], bytes.fromhex(results[0][2:]))[0])
        max_share = int(decode(["uint16"], bytes.fromhex(results[1][2:]))[0])
        allowed = [bool(decode(["bool"], bytes.fromhex(r[2:]))[0]) for r in results[2:]]
    except Exception:
        raise ConfigError(
            [
                f"{env_name('executor_address')}: {executor} is not a current LiquidationExecutor "
                "(no owner() / maxCoinbaseBps() / isOperator()); deploy one with `keeper contracts deploy`"
            ]
        ) from None
    problems = []
    if builder_share_bps > max_share:
        problems.append(
            f"{env_name('builder_share_bps')}: {builder_share_bps} is above the executor's maxCoinbaseBps "
            f"({max_share}, set by its owner): every liquidation would revert; e.g. "
            f"KEEPER_BUILDER_SHARE_BPS={max_share}"
        )
    for i, (s, ok) in enumerate(zip(signers, allowed, strict=True)):
        if ok or s.address.lower() == owner.lower():
            continue
        var = env_name("private_key") if i == 0 else f"{env_name('operator_keys')} item {i}"
        problems.append(
            f"{var}: account {s.address} may not call the executor {executor} (owner {owner}); "
            "the owner must call setOperator(account, true), or redeploy with `keeper contracts deploy`"
        )
    if problems:
        raise ConfigError(problems)


async def block_gas_budget(rpc: RpcClient, configured: int | None) -> int:
    """The configured budget, or a third of the latest block's gas limit."""
    if configured is not None:
        return configured
    head = await rpc.call("eth_getBlockByNumber", ["latest", False])
    return hex_to_int(head["gasLimit"]) // GAS_BUDGET_SHARE
