"""Turn valued opportunities into bundles: one `liquidate` call on our executor contract each.

The calldata is final here: the contract re-checks profit on chain (`min_profit`, in debt-asset units,
set so that the owner's profit covers the configured minimum plus the estimated gas), the sale carries
amountOutMinimum = the exact quote minus `swap_tolerance_bps`, the builder is paid its share only after
the profit check, and the call reverts in any block after the target (`max_block`). The executor then
packs a block's calls into batches, simulates at the relay (the authority) and sends only what clears
the minimum there too.

Protocol mode (`ExecutionConfig.subsidy`): a liquidation whose net profit after gas is negative is sent
when the day's subsidy budget covers the loss; one whose sale does not even repay the loan plus the flash
premium (gross profit <= 0) is sent as `liquidateSubsidized`: the owner makes up the shortfall (at most
`max_subsidy` = the predicted shortfall plus the sale's tolerance, in debt-asset units), and the whole
loss (shortfall in wei plus gas) comes out of the budget. Searcher mode never sends either.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from keeper.core.actions import Action, SubmitBundle, TxIntent
from keeper.core.events import NewBlock
from keeper.errors import KeeperError
from keeper.executors.executor_contract import (
    LiquidationParams,
    V3Route,
    encode_liquidate,
    encode_liquidate_subsidized,
)
from keeper.executors.fees import next_base_fee
from keeper.executors.packing import BATCH_OVERHEAD_GAS, MAX_TX_GAS
from keeper.logs import kv
from strategies.liquidations.opportunity import Opportunity
from strategies.liquidations.strategy import LiquidationStrategy
from strategies.liquidations.subsidy import SubsidyBudget
from strategies.liquidations.valuation import ValuationCosts
from strategies.venues.base import RouteKind, Venue
from strategies.venues.router import best_route

log = logging.getLogger("strategies.liquidations")

BPS = 10_000

OwnerFunds = Callable[[str], Awaitable[int]]
"""Debt token -> what the executor may pull from its owner of it now."""


@dataclass(frozen=True)
class ExecutionConfig:
    executor: str
    """Our LiquidationExecutor contract."""
    weth: str
    builder_share_bps: int = 5_000
    """Share of the gross profit paid to the block builder (from inside the contract, after the check)."""
    min_profit_wei: int = 0
    """Owner's minimum profit after gas and the builder's share (wei); negative allowed, contract floor 0."""
    gas_estimate: int = 1_000_000
    """Gas assumed per liquidation when pricing before simulation and packing a block (measured: 664k-954k
    with the executor's checks; the transaction's limit is 125% of the estimates, so the most expensive
    route still fits)."""
    max_per_block: int = 500
    connectors: tuple[str, ...] = ()
    """Tokens a builder-payment route may pass through to reach WETH (e.g. USDC)."""
    gas_budget: int = 10_000_000
    """Gas our transactions may use per block: opportunities beyond it wait for the next block."""
    swap_tolerance_bps: int = 50
    """The sale's amountOutMinimum is the exact quote minus this share."""
    subsidy: SubsidyBudget | None = None
    owner_funds: OwnerFunds | None = None
    """Protocol mode: what the owner lets `liquidateSubsidized` pull of a debt token (allowance and
    balance, read when a block has a subsidized liquidation); None: not checked (the call then fails in
    simulation when the owner has not approved enough)."""
    """Protocol mode (KEEPER_MODE=protocol): liquidate at a loss too, within this daily budget; None:
    searcher mode (only what clears `min_profit_wei`)."""

    def __post_init__(self) -> None:
        if not 0 <= self.builder_share_bps < BPS:
            raise ValueError("builder_share_bps must be within 0..9999")


class LiquidationActions:
    """The strategy's action builder: a block's valued opportunities (ranked by net profit in wei, sized,
    within the gas budget: see `VenueValuer.value`) -> SubmitBundle actions, one `liquidate` call each,
    batchable by the executor."""

    def __init__(
        self, strategy: LiquidationStrategy, venues: Sequence[Venue], config: ExecutionConfig
    ) -> None:
        self.strategy = strategy
        self.venues = list(venues)
        self.config = config
        self.skipped: dict[str, str] = {}
        self._budget_block: int | None = None
        self._owner_funds: dict[str, int] = {}
        """This call's debt token (lowercase) -> what the owner still lets the executor pull of it."""

    def costs(self, block: NewBlock) -> ValuationCosts:
        """What one liquidation costs for the block after `block`: gas at its exact base fee, the builder's
        share, the minimum, and the gas budget (less the batch transactions' own overhead)."""
        cfg = self.config
        base_fee = next_base_fee(block.base_fee_per_gas, block.gas_used, block.gas_limit)
        transactions = cfg.gas_budget // MAX_TX_GAS + 1
        # Protocol mode: a loss is acceptable up to what the day's budget has left (as of the last block
        # the action builder saw; the builder checks the budget again before sending).
        minimum = -cfg.subsidy.remaining_wei if cfg.subsidy is not None else cfg.min_profit_wei
        return ValuationCosts(
            below_minimum=(
                "below minimum" if cfg.subsidy is None else "loss beyond the subsidy budget left today"
            ),
            base_fee=base_fee,
            gas_per_liquidation=cfg.gas_estimate,
            builder_share_bps=cfg.builder_share_bps,
            min_profit_wei=minimum,
            gas_budget=max(cfg.gas_budget - transactions * BATCH_OVERHEAD_GAS, 0),
            loss_making_sales=cfg.subsidy is not None,
        )

    async def __call__(self, opportunities: Sequence[Opportunity], block: NewBlock) -> list[Action]:
        cfg = self.config
        if cfg.subsidy is not None and self._budget_block != block.number:
            await cfg.subsidy.update(block.number, block.timestamp)
            self._budget_block = block.number
        costs = self.costs(block)
        self.skipped = {}
        self._owner_funds = {}
        if cfg.subsidy is not None and cfg.owner_funds is not None:
            for token in {
                o.debt_asset for o in opportunities if o.gross_profit is not None and o.gross_profit <= 0
            }:
                try:
                    self._owner_funds[token.lower()] = await cfg.owner_funds(token)
                except (KeeperError, OSError, ValueError) as exc:
                    log.warning(
                        "cannot read the owner's subsidy funds", extra=kv(token=token, error=str(exc)[:200])
                    )
        actions: list[Action] = []
        for opp in opportunities:
            if len(actions) >= cfg.max_per_block:
                self.skipped[opp.id] = "over the per-block action limit"
                continue
            try:
                action = self._action(opp, block, costs)
            except (KeeperError, ValueError) as exc:
                self.skipped[opp.id] = f"cannot build: {exc}"
                continue
            if isinstance(action, str):
                self.skipped[opp.id] = action
            else:
                actions.append(action)
        if self.skipped:
            log.info("opportunities skipped", extra=kv(block=block.number, count=len(self.skipped)))
        return actions

    def _action(self, opp: Opportunity, block: NewBlock, costs: ValuationCosts) -> SubmitBundle | str:
        cfg = self.config
        if opp.route is None or opp.gross_profit is None or opp.swap_out is None:
            return "no route to sell the collateral"
        # A sale that does not repay the loan plus premium: only protocol mode sends it, subsidized by the
        # owner (liquidateSubsidized).
        subsidized = opp.gross_profit <= 0
        if subsidized and cfg.subsidy is None:
            return (
                "unprofitable before gas: the swap returns less than the debt plus the flash premium (only "
                "protocol mode liquidates it, subsidized by the owner)"
            )
        if opp.to_wei is None or opp.profit_wei is None or opp.net_profit_wei is None:
            return "no ETH price in this market"
        num, den = opp.to_wei
        keep = BPS - cfg.swap_tolerance_bps
        min_out = opp.swap_out * keep // BPS
        max_subsidy = -opp.gross_profit + (opp.swap_out - min_out) if subsidized else 0
        debt_key = opp.debt_asset.lower()
        if subsidized and cfg.owner_funds is not None:
            left = self._owner_funds.get(debt_key)
            if left is None or left < max_subsidy:
                return (
                    f"subsidy cannot be pulled: the owner lets the executor take {left} of {opp.debt_asset}, "
                    f"this sale may need {max_subsidy} (keeper contracts approve-subsidy)"
                )
        if cfg.subsidy is not None:
            # Protocol mode: the loss (gas beyond the profit, plus the sale's shortfall when subsidized) comes
            # out of the day's budget; the owner's minimum on chain is 0 (a subsidized call's profit is 0).
            loss = max(-opp.net_profit_wei, 0)
            if not cfg.subsidy.take(loss, block.number + 1):
                return (
                    f"subsidy budget for today spent: needs {loss} wei, "
                    f"{cfg.subsidy.remaining_wei} wei left of {cfg.subsidy.per_day_wei}"
                )
            min_profit_wei = -loss
            min_profit_debt = 0
            if subsidized and debt_key in self._owner_funds:
                self._owner_funds[debt_key] -= max_subsidy  # what later items of the block may still pull
        else:
            if opp.net_profit_wei < cfg.min_profit_wei:
                return (
                    f"below minimum: net {opp.net_profit_wei} wei (gas ~{opp.gas_cost_wei} wei, builder "
                    f"{opp.builder_share_wei} wei) < {cfg.min_profit_wei}"
                )
            min_profit_wei = cfg.min_profit_wei
            # The contract's minProfit (debt units, owner's share) covers the minimum plus the gas, rounded
            # up: the contract must never accept less than what made us send it.
            floor_wei = max(cfg.min_profit_wei + costs.gas_cost_wei, 0)
            min_profit_debt = -(-floor_wei * den // num)
        coinbase_route: V3Route | None = None
        coinbase_min_out = 0
        # No share of a loss: a subsidized call pays the builder nothing (it would only if the sale turned
        # out to repay the loan after all; then the owner keeps it all).
        coinbase_bps = 0 if subsidized else cfg.builder_share_bps
        if coinbase_bps and opp.debt_asset.lower() != cfg.weth.lower():
            share = opp.gross_profit * cfg.builder_share_bps // BPS
            v3 = [v for v in self.venues if v.kind is RouteKind.UNISWAP_V3]
            route = best_route(
                v3, opp.debt_asset, cfg.weth, max(share, 1), via=list(cfg.connectors), skip_errors=True
            )
            if route is None or not isinstance(route.executor_route, V3Route):
                return "no Uniswap V3 route to pay the builder in ETH"
            coinbase_route = route.executor_route
            coinbase_min_out = route.amount_out * keep // BPS
        params = LiquidationParams(
            lending_pool=opp.pool,
            collateral=opp.collateral_asset,
            debt=opp.debt_asset,
            user=opp.user,
            debt_to_cover=opp.debt_to_cover,
            route=opp.route.executor_route,
            min_profit=min_profit_debt,
            coinbase_bps=coinbase_bps,
            max_block=block.number + 1,
            coinbase_route=coinbase_route,
            min_out=min_out,
            coinbase_min_out=coinbase_min_out,
        )
        meta_subsidy: dict[str, int] = {}
        if subsidized:
            # The most the owner may pay: the predicted shortfall, plus what the sale may return less than
            # quoted (down to min_out). Debt-asset units.
            shortfall = -opp.gross_profit
            data = encode_liquidate_subsidized(params, max_subsidy)
            meta_subsidy = {"subsidy": shortfall, "max_subsidy": max_subsidy}
        else:
            data = encode_liquidate(params)
        return SubmitBundle(
            opportunity_id=opp.id,
            strategy=self.strategy.name,
            target_block=block.number + 1,
            txs=(
                TxIntent(
                    to=cfg.executor,
                    data=data,
                    gas_estimate=cfg.gas_estimate,
                    batchable=True,
                ),
            ),
            expected_profit_wei=opp.profit_wei,
            min_profit_wei=min_profit_wei,
            profit_token=opp.debt_asset,
            profit_to_wei=(num, den),
            meta={
                "protocol": opp.protocol,
                "pool": opp.pool,
                "user": opp.user,
                "collateral_asset": opp.collateral_asset,
                "debt_asset": opp.debt_asset,
                "debt_to_cover": opp.debt_to_cover,
                "collateral_out": opp.collateral_out,
                "gross_profit": opp.gross_profit,
                "net_profit_wei": opp.net_profit_wei,
                "detected_block": opp.block_number,
                "block_timestamp": opp.timestamp,
                **meta_subsidy,
            },
        )
