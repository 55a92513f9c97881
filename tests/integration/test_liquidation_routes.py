"""Liquidation sales on the routes the keeper finds: after a crash on the devnet (its Uniswap V3, V2 and
Balancer stable pools), some included liquidations sell on a Mixed route (a split over two paths, or a
path across venues), and every included sale's `Liquidated.swapOut` equals the swap_out the valuer
predicted for it, to the wei."""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from keeper.chain.rpc import hex_to_int
from keeper.core.actions import SubmitBundle
from keeper.devnet.scenarios.borrowers import create_borrowers
from keeper.devnet.scenarios.crash import run_crash
from keeper.devnet.stack import Devnet, DevnetMiner
from keeper.executors.executor_contract import MixedRoute, V3Route, decode_liquidate, liquidated_events
from strategies.liquidations.opportunity import Opportunity
from strategies.liquidations.sizing import Sizer
from strategies.liquidations.valuation import devnet_valuer
from strategies.venues.base import Venue
from strategies.venues.router import MIXED, candidate_routes, requote
from tests.integration.keeper_harness import devnet_keeper, run_until_quiet

pytestmark = pytest.mark.integration


@pytest.fixture
async def fresh(devnet: Devnet) -> AsyncIterator[Devnet]:
    rpc, _ = devnet.require()
    snap = await rpc.call("evm_snapshot")
    yield devnet
    await rpc.call("evm_revert", [snap])


async def test_crash_sales_on_mixed_routes_execute_as_predicted(
    fresh: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = fresh
    rpc, dep = net.require()
    miner = DevnetMiner(net)
    await create_borrowers(rpc, dep, 250, seed=5, miner=miner)
    predicted: dict[tuple[str, int], Opportunity] = {}
    # For every Mixed sale the sizer picks: what the best route on one venue (as before mixed and split
    # routes) would have paid for the same collateral on the same state.
    one_venue: dict[tuple[str, str, int, int], int] = {}
    best_for_pair = Sizer.best_for_pair

    def sized(self: Sizer, terms: Any, **kw: Any) -> Any:
        ex = best_for_pair(self, terms, **kw)
        if ex is not None and ex.route.venue == MIXED:
            outs = [
                r.amount_out
                for r in candidate_routes(
                    list(self.venues.values()),
                    terms.collateral_asset,
                    terms.debt_asset,
                    ex.route.amount_in,
                    via=[
                        c
                        for c in self.connectors
                        if c.lower() not in (terms.collateral_asset.lower(), terms.debt_asset.lower())
                    ],
                )
                if r.venue != MIXED
            ]
            one_venue[
                (terms.collateral_asset.lower(), terms.debt_asset.lower(), ex.route.amount_in, ex.swap_out)
            ] = max(outs, default=0)
        return ex

    monkeypatch.setattr(Sizer, "best_for_pair", sized)
    actions: list[SubmitBundle] = []
    async with devnet_keeper(net, tmp_path, builder_share_bps=5_000) as keeper:
        build = keeper.actions._action

        def record(opp: Opportunity, *args: Any) -> Any:
            out = build(opp, *args)
            if isinstance(out, SubmitBundle):
                predicted[(out.opportunity_id, out.target_block)] = opp
            return out

        keeper.actions._action = record  # type: ignore[method-assign]
        # The venues include the devnet's Balancer stable pools.
        names = {v.name for v in keeper.actions.venues}
        assert "balancer_stable" in names, names
        start = hex_to_int(await rpc.call("eth_blockNumber"))
        await run_crash(rpc, dep, drop_bps=2_500, blocks=5, mine=True, miner=miner)
        await run_until_quiet(net, keeper, max_blocks=40, log=actions)
        executor = keeper.setup.executor
    head = hex_to_int(await rpc.call("eth_blockNumber"))
    events = []
    for number in range(start + 1, head + 1):
        block = await rpc.call("eth_getBlockByNumber", [hex(number), True])
        for tx in block["transactions"]:
            if (tx.get("to") or "").lower() != executor.lower():
                continue
            receipt = await rpc.call("eth_getTransactionReceipt", [tx["hash"]])
            if receipt["status"] == "0x1":
                events.extend((number, ev) for ev in liquidated_events(receipt, executor))
    assert len(events) > 10
    by_key: dict[tuple[int, str, str, str], SubmitBundle] = {}
    for action in actions:
        m = action.meta
        key = (
            action.target_block,
            str(m["user"]).lower(),
            str(m["collateral_asset"]).lower(),
            str(m["debt_asset"]).lower(),
        )
        by_key[key] = action
    # Every included sale, replayed on the Python venues at the state before its block with the sales
    # executed before it in the block applied (the builder orders the bundles of one block by their bids,
    # not in the order they were valued): what the route returns for the collateral seized is what the
    # contract received, to the wei, whatever the route (one venue, across venues, split).
    valuer = await devnet_valuer(rpc, dep.to_json())
    mixed = splits = predicted_exact = 0
    gains_bps: list[float] = []
    gain_wei = 0
    working: dict[str, Venue] = {}
    current = -1
    for number, ev in events:
        if number != current:
            await valuer.refresh_venues(number - 1)
            working = {v.name: v for v in valuer.venues}
            current = number
        action = by_key[(number, ev.user.lower(), ev.collateral.lower(), ev.debt.lower())]
        opp = predicted[(action.opportunity_id, action.target_block)]
        params = decode_liquidate(action.txs[0].data)
        assert params.route == opp.route.executor_route
        again = requote(working, opp.route, ev.collateral_seized)
        assert again is not None and again.executor_route == params.route
        assert again.amount_out == ev.swap_out, (number, opp.id, opp.route.venue, opp.route.is_split)
        for hop in again.hops:
            working[hop.venue] = working[hop.venue].apply(hop)
        # The builder's share, converted to ETH on its V3 route, moves those pools too.
        if params.coinbase_route is not None and ev.gross_profit > ev.profit:
            assert (
                pay_builder(working, params.coinbase_route, ev.gross_profit - ev.profit) == ev.coinbase_paid
            )
        predicted_exact += (ev.collateral_seized, ev.swap_out) == (opp.collateral_out, opp.swap_out)
        if isinstance(params.route, MixedRoute):
            mixed += 1
            splits += len(params.route.legs) > 1
            single = one_venue.get(
                (opp.collateral_asset.lower(), opp.debt_asset.lower(), opp.collateral_out, opp.swap_out)
            )
            if single is None:
                continue
            assert opp.swap_out > single
            gains_bps.append((opp.swap_out - single) * 10_000 / max(1, single))
            assert opp.to_wei is not None
            gain_wei += (opp.swap_out - single) * opp.to_wei[0] // opp.to_wei[1]
    print(
        f"\n{len(events)} included liquidations: {mixed} on Mixed routes ({splits} split); "
        f"{predicted_exact} returned exactly the valuer's prediction (the others follow, in their block, "
        "a builder payment the valuer does not apply, or ran in another order, or seized a few wei more)"
    )
    gains_bps.sort()
    print(
        "Mixed routes vs the best one-venue route, as valued: "
        f"median +{gains_bps[len(gains_bps) // 2]:.2f} bps, max +{gains_bps[-1]:.2f} bps, "
        f"min {gains_bps[0]:+.2f} bps of the sale; {gain_wei / 1e18:.4f} ETH more in all"
    )
    assert mixed >= 1 and splits >= 1


def pay_builder(working: dict[str, Venue], route: V3Route, amount: int) -> int:
    """What the executor's builder payment (`route`, Uniswap V3) returns for `amount`; its swaps applied."""
    v3 = working["uniswap_v3"]
    for (t_in, t_out), fee in zip(pairwise(route.tokens), route.fees, strict=True):
        pool = next(p for p in v3.pools(t_in, t_out) if v3.pool_info(p).fee == fee)  # type: ignore[attr-defined]
        q = v3.quote_exact_in(t_in, t_out, amount, pool=pool)
        assert q is not None
        v3 = v3.apply(q)
        amount = q.amount_out
    working["uniswap_v3"] = v3
    return amount
