"""The peg action builder: flash source and fee, sizing within the lenders, profit in wei, the minimum,
one round trip per pool, and the calldata written (decoded back)."""

from __future__ import annotations

from dataclasses import replace

from eth_utils.crypto import keccak

from keeper.chain.units import percent_mul
from keeper.core.actions import SubmitBundle, TxIntent
from keeper.core.events import NewBlock
from keeper.executors.executor_contract import FlashSource, MixedRoute, V2Route, decode_arbitrage
from keeper.executors.fees import next_base_fee
from strategies.peg.actions import PegActions, PegExecutionConfig, opportunity_id, resize
from strategies.peg.sizing import PegOpportunity, best_opportunities
from strategies.venues.base import Venue
from strategies.venues.lenders import FlashLiquidity
from tests.unit.peg.cases import address, make_peg, token_pair, v2_state, v2_venue

EXECUTOR = "0x" + "ee" * 20
GWEI = 10**9
A, B = token_pair()  # B plays WETH: profits are in wei already


def block(number: int = 100, base_fee: int = GWEI) -> NewBlock:
    return NewBlock(
        number=number,
        hash=b"\x01" * 32,
        parent_hash=b"",
        timestamp=1_700_000_000,
        base_fee_per_gas=base_fee,
        gas_limit=30_000_000,
        gas_used=15_000_000,
    )


def market(cheap: float = 0.97, depth: int = 10_000 * 10**18) -> tuple[list[Venue], list[PegOpportunity]]:
    """Two V2 pairs of the A/B peg (1:1) on two V2 venues (forks), A cheap on the first: one round trip
    worth closing."""
    peg = make_peg(A, B)
    venues: list[Venue] = [
        v2_venue([v2_state(address(1), A, B, cheap, depth)], name="uniswap_v2"),
        v2_venue([v2_state(address(2), A, B, 1.0, depth)], name="sushiswap"),
    ]
    found = best_opportunities([peg], {}, venues)
    assert found
    return venues, found


def config(**kw: object) -> PegExecutionConfig:
    values: dict[str, object] = {"executor": EXECUTOR, "weth": B, "builder_share_bps": 5_000}
    values.update(kw)
    return PegExecutionConfig(**values)  # type: ignore[arg-type]


async def test_a_spread_becomes_one_batchable_arbitrage_call_with_the_minimums_on_chain() -> None:
    venues, found = market()
    opp = found[0]
    cfg = config(balancer_lends=frozenset({B.lower()}), min_profit_wei=10**15)
    builder = PegActions(cfg)
    at = block()
    [action] = await builder(found, at, venues)
    assert isinstance(action, SubmitBundle)
    assert action.opportunity_id == opportunity_id(opp)
    assert action.target_block == 101 and action.strategy == "peg"
    [intent] = action.txs
    assert isinstance(intent, TxIntent) and intent.batchable and intent.to == EXECUTOR
    params = decode_arbitrage(intent.data)
    # Balancer lends B at no fee; the hops are on two venues: one Mixed leg of two V2 hops, B -> A -> B.
    assert params.source is FlashSource.BALANCER_VAULT
    assert params.amount == opp.amount_in
    assert isinstance(params.route, MixedRoute)
    [leg] = params.route.legs
    assert leg.bps == 10_000 and all(isinstance(h, V2Route) for h in leg.hops)
    assert params.route.token_in.lower() == params.route.token_out.lower() == B.lower()
    assert params.min_out == opp.amount_out * (10_000 - cfg.swap_tolerance_bps) // 10_000
    gross = opp.amount_out - opp.amount_in
    share = gross * 5_000 // 10_000
    gas = next_base_fee(at.base_fee_per_gas, at.gas_used, at.gas_limit) * cfg.gas_estimate
    assert params.min_profit == 10**15 + gas  # B is WETH: the minimum plus the gas, in wei
    assert params.coinbase_bps == 5_000 and params.coinbase_route is None  # paid by unwrapping
    assert params.max_block == 101
    assert params.tag == keccak(f"{action.opportunity_id}@101".encode())
    assert action.meta["tag"] == "0x" + params.tag.hex()
    assert action.expected_profit_wei == gross - share
    assert action.meta["net_profit_wei"] == gross - share - gas


async def test_aave_lends_what_balancer_cannot_and_its_premium_comes_off_the_profit() -> None:
    venues, found = market()
    opp = found[0]
    builder = PegActions(config(aave_premium_bps=5))  # B is not in a Balancer pool we track
    [action] = await builder(found, block(), venues)
    assert isinstance(action, SubmitBundle)
    params = decode_arbitrage(action.txs[0].data)  # type: ignore[union-attr]
    assert params.source is FlashSource.AAVE_V3
    fee = percent_mul(opp.amount_in, 5)
    assert action.meta["flash_fee"] == fee
    assert action.meta["gross_profit"] == opp.amount_out - opp.amount_in - fee


async def test_a_loan_is_sized_within_what_the_lenders_hold() -> None:
    venues, found = market()
    opp = found[0]
    flash = FlashLiquidity([A, B], vault="0x" + "ba" * 20, aave_pool=None)
    cap = opp.amount_in // 3
    flash.vault_balance = {B.lower(): cap, A.lower(): 0}
    builder = PegActions(config(balancer_lends=frozenset({B.lower()})), flash=flash)
    [action] = await builder(found, block(), venues)
    params = decode_arbitrage(action.txs[0].data)  # type: ignore[union-attr]
    assert params.amount == cap
    again = resize(opp, cap, venues)
    assert again is not None and action.meta["amount_out"] == again.amount_out
    # The re-quote is the venue's own: hop 1 at the cap, hop 2 on the state hop 1 leaves.
    first, second = again.hops
    by_name = {v.name: v for v in venues}
    q1 = by_name[first.venue].quote_exact_in(first.token_in, first.token_out, cap, pool=first.pool)
    assert q1 == first
    v2 = by_name[second.venue]
    assert v2.quote_exact_in(second.token_in, second.token_out, q1.amount_out, pool=second.pool) == second
    # Nobody can lend: nothing is sent, and the reason says so.
    flash.vault_balance = {B.lower(): 0}
    assert await builder(found, block(), venues) == []
    assert "no flash-loan source can lend" in builder.skipped[opportunity_id(opp)]


async def test_below_the_minimum_or_sharing_a_pool_is_not_sent() -> None:
    venues, found = market()
    opp = found[0]
    builder = PegActions(config(balancer_lends=frozenset({B.lower()}), min_profit_wei=10**30))
    assert await builder(found, block(), venues) == []
    assert builder.skipped[opportunity_id(opp)].startswith("below minimum")
    # A peg's own minimum wins over the keeper's.
    lenient = replace(opp, peg=replace(opp.peg, min_profit_wei=0))
    assert len(await builder([lenient], block(), venues)) == 1
    # The same round trip twice in one block (same pools): only the first is sent.
    builder = PegActions(config(balancer_lends=frozenset({B.lower()})))
    twin = replace(opp, peg=replace(opp.peg, name="twin"))
    actions = await builder([opp, twin], block(), venues)
    assert len(actions) == 1
    assert builder.skipped[opportunity_id(twin)] == "shares a pool with a better opportunity of this block"


async def test_the_builder_payment_is_quoted_on_the_pools_the_round_trip_leaves() -> None:
    """USDT/USDC peg, USDC cheap on the V3 pool: the round trip borrows USDT and buys USDC there. The
    builder's share (USDT) reaches WETH through that same V3 pool (USDT -> USDC -> WETH), which the round
    trip has just moved: quoted before it, the conversion's minimum would not be met on chain."""
    from strategies.peg.actions import after_round_trip
    from strategies.venues.router import best_route
    from tests.unit.peg.cases import v3_state, v3_venue

    usdt, usdc, weth = "0x" + "b1" * 20, "0x" + "a1" * 20, "0x" + "c1" * 20
    peg = make_peg(usdc, usdt, 6, 6, name="USDC/USDT")
    v3 = v3_venue(
        [
            v3_state(address(1), usdc, usdt, 0.985, 50_000_000 * 10**6),
            v3_state(address(2), weth, usdc, 2_000 * 10**6 / 10**18, 20_000 * 10**18, fee=500),
        ]
    )
    v2 = v2_venue([v2_state(address(3), usdc, usdt, 1.0, 50_000_000 * 10**6)])
    venues: list[Venue] = [v3, v2]
    found = best_opportunities([peg], {}, venues)
    opp = next(o for o in found if o.token_in.lower() == usdt.lower())
    assert opp.hops[0].venue == "uniswap_v3"  # USDC bought on the V3 pool the conversion also uses
    builder = PegActions(config(weth=weth, balancer_lends=frozenset({usdt.lower()}), connectors=(usdc,)))
    priced = builder.price(opp, block(), venues)
    assert not isinstance(priced, str), priced
    after = [v for v in after_round_trip(venues, opp) if v.name == "uniswap_v3"]
    expected = best_route(after, usdt, weth, priced.builder_share, via=[usdc])
    stale = best_route([v3], usdt, weth, priced.builder_share, via=[usdc])
    assert expected is not None and stale is not None
    assert priced.coinbase_out == expected.amount_out < stale.amount_out
