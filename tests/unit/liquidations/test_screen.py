"""The float screen must never miss a position the exact math finds liquidatable."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.chain.units import RAY
from strategies.liquidations import math_v3
from strategies.liquidations.common import LiquidationMathError
from strategies.liquidations.model import EModeCategory, MarketState, UserPosition, UserReserve
from strategies.liquidations.screen import Screen
from strategies.liquidations.strategy import with_prices
from tests.unit.liquidations.helpers import DAI, T0, USDC, WBTC, WETH, bits, make_reserve

WAD = 10**18


def market(eth_price: int, btc_price: int, dt: int) -> MarketState:
    reserves = {
        WETH: make_reserve(
            WETH,
            0,
            price=eth_price,
            lt=8300,
            ltv=8050,
            emode=1,
            variable_rate=RAY // 20,
            liquidity_rate=RAY // 50,
            variable_index=RAY + RAY // 7,
        ),
        USDC: make_reserve(
            USDC,
            1,
            price=100_000_000,
            decimals=6,
            lt=7900,
            ltv=7700,
            variable_rate=RAY // 10,
            liquidity_rate=RAY // 30,
            liquidity_index=RAY + RAY // 13,
        ),
        WBTC: make_reserve(WBTC, 2, price=btc_price, decimals=8, lt=7800, ltv=7300, variable_rate=RAY // 25),
        DAI: make_reserve(DAI, 3, price=99_970_000, lt=8000, ltv=7500, emode=1, variable_rate=RAY // 9),
    }
    return MarketState(reserves, {1: EModeCategory(1, 9000, 9300, 10100)}, block_number=1, timestamp=T0 + dt)


amount = st.integers(min_value=0, max_value=10**24)


@st.composite
def positions(draw: st.DrawFn, n: int) -> list[UserPosition]:
    out = []
    for i in range(n):
        coll = draw(st.lists(st.sampled_from([0, 1, 2, 3]), min_size=1, max_size=3, unique=True))
        debt = draw(st.lists(st.sampled_from([0, 1, 2, 3]), min_size=1, max_size=2, unique=True))
        assets = [WETH, USDC, WBTC, DAI]
        reserves: dict[str, UserReserve] = {}
        for rid in set(coll) | set(debt):
            reserves[assets[rid]] = UserReserve(
                scaled_a_token_balance=draw(amount) if rid in coll else 0,
                scaled_variable_debt=draw(amount) if rid in debt else 0,
            )
        out.append(
            UserPosition(
                user=f"0x{i:040x}",
                config=bits(collateral=tuple(coll), borrowing=tuple(debt)),
                emode_category=draw(st.sampled_from([0, 0, 1])),
                reserves=reserves,
            )
        )
    return out


@settings(max_examples=60, deadline=None)
@given(
    positions(40),
    st.integers(min_value=100_000_000, max_value=10**12),
    st.integers(min_value=100_000_000, max_value=10**13),
    st.integers(min_value=0, max_value=3 * 365 * 86400),
)
def test_screen_never_misses(book: list[UserPosition], eth: int, btc: int, dt: int) -> None:
    m = market(eth, btc, dt)
    by_user = {p.user: p for p in book}
    screen = Screen()
    screen.rebuild(by_user, m)
    indexes = math_v3.normalized_indexes(m.reserves, m.timestamp)
    candidates = set(screen.candidates(m, indexes))
    for p in book:
        exact = math_v3.user_account_data(p, m.reserves, m.emode_categories, m.timestamp, indexes=indexes)
        if exact.health_factor < WAD:
            assert p.user in candidates, (p, exact)


def test_screen_updates_rows_and_drops_users() -> None:
    m = market(2000 * 10**8, 60000 * 10**8, 0)
    healthy = UserPosition(
        user="0x" + "01" * 20,
        config=bits(collateral=(0,), borrowing=(1,)),
        emode_category=0,
        reserves={
            WETH: UserReserve(scaled_a_token_balance=10 * WAD),
            USDC: UserReserve(scaled_variable_debt=1_000 * 10**6),
        },
    )
    book = {healthy.user: healthy}
    screen = Screen()
    screen.rebuild(book, m)
    indexes = math_v3.normalized_indexes(m.reserves, m.timestamp)
    assert screen.candidates(m, indexes) == []
    # The user borrows much more: the row is rewritten and it becomes a candidate.
    book[healthy.user] = replace(
        healthy, reserves={**healthy.reserves, USDC: UserReserve(scaled_variable_debt=30_000 * 10**6)}
    )
    screen.update([healthy.user], book, m)
    assert screen.candidates(m, indexes) == [healthy.user]
    del book[healthy.user]
    screen.update([healthy.user], book, m)
    assert screen.candidates(m, indexes) == []
    assert len(screen) == 0


def test_screen_grows_past_its_initial_size() -> None:
    m = market(2000 * 10**8, 60000 * 10**8, 0)
    screen = Screen()
    screen.rebuild({}, m)
    book = {}
    for i in range(100):
        p = UserPosition(
            user=f"0x{i:040x}",
            config=bits(collateral=(0,), borrowing=(1,)),
            emode_category=0,
            reserves={
                WETH: UserReserve(scaled_a_token_balance=WAD),
                USDC: UserReserve(scaled_variable_debt=(1700 + i) * 10**6),
            },
        )
        book[p.user] = p
    screen.update(book.keys(), book, m)
    assert len(screen) == 100
    indexes = math_v3.normalized_indexes(m.reserves, m.timestamp)
    # 1 ETH at $2000 * 0.83 = $1660 of borrowing power: every one of them is liquidatable.
    assert len(screen.candidates(m, indexes)) == 100


@settings(max_examples=40, deadline=None)
@given(
    positions(1),
    st.integers(min_value=100_000_000, max_value=10**12),
    st.integers(min_value=0, max_value=10**8),
)
def test_screen_catches_positions_just_below_one(book: list[UserPosition], eth: int, dt: int) -> None:
    """The debt is set to the smallest scaled amount that makes the exact HF < 1: the boundary case."""
    m = market(eth, 60_000 * 10**8, dt)
    p = book[0]
    debt_assets = [a for a, b in p.reserves.items() if b.scaled_variable_debt]
    if not debt_assets or not any(b.scaled_a_token_balance for b in p.reserves.values()):
        return
    asset = debt_assets[0]

    def with_debt(d: int) -> UserPosition:
        return replace(p, reserves={**p.reserves, asset: replace(p.reserves[asset], scaled_variable_debt=d)})

    def hf(d: int) -> int:
        return math_v3.user_account_data(
            with_debt(d), m.reserves, m.emode_categories, m.timestamp
        ).health_factor

    lo, hi = 1, 10**40
    if hf(hi) >= WAD or hf(lo) < WAD:
        return  # no boundary between 1 wei and 1e40 of debt
    while hi - lo > 1:  # smallest debt with HF < 1
        mid = (lo + hi) // 2
        if hf(mid) < WAD:
            hi = mid
        else:
            lo = mid
    boundary = with_debt(hi)
    assert hf(hi) < WAD <= hf(lo)
    screen = Screen()
    screen.rebuild({p.user: boundary}, m)
    indexes = math_v3.normalized_indexes(m.reserves, m.timestamp)
    assert screen.candidates(m, indexes) == [p.user]


@settings(max_examples=60, deadline=None)
@given(
    positions(40),
    st.integers(min_value=100_000_000, max_value=10**12),
    st.integers(min_value=100_000_000, max_value=10**13),
    st.integers(min_value=0, max_value=3 * 365 * 86400),
    st.sets(st.sampled_from([WETH, USDC, WBTC, DAI]), min_size=1, max_size=2),
    st.floats(min_value=0.3, max_value=1.7),
)
def test_repriced_candidates_hold_every_position_the_new_prices_make_liquidatable(
    book: list[UserPosition], eth: int, btc: int, dt: int, assets: set[str], factor: float
) -> None:
    """A pending price update: the candidates among the holders of the repriced assets contain every
    position liquidatable at the new prices and not at the block's; the block's terms, reused, give the
    same candidates as a screen computing everything afresh."""
    m = market(eth, btc, dt)
    by_user = {p.user: p for p in book}
    screen = Screen()
    screen.rebuild(by_user, m)
    indexes = math_v3.normalized_indexes(m.reserves, m.timestamp)
    at_block = screen.candidates(m, indexes)
    repriced = with_prices(m, {a: max(1, int(m.reserves[a].price * factor)) for a in assets})

    def liquidatable(mk: MarketState) -> set[str]:
        out = set()
        for p in book:
            try:
                if math_v3.best_liquidation(
                    p, mk.reserves, mk.emode_categories, mk.timestamp, indexes=indexes
                ):
                    out.add(p.user)
            except LiquidationMathError:
                out.add(p.user)  # the strategy skips these; count them as wanted, to be strict
        return out

    new = liquidatable(repriced) - liquidatable(m)
    assert new <= set(screen.candidates(repriced, indexes, repriced=assets))
    fresh = Screen()
    fresh.rebuild(by_user, m)
    assert screen.candidates(repriced, indexes) == fresh.candidates(repriced, indexes)
    assert screen.candidates(m, indexes) == at_block
