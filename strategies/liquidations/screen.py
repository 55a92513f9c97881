"""The cheap pass over every position: a float health factor with a safety margin, then exact math.

Holding 100,000 positions, a block whose only change is a price must not cost 100,000 exact evaluations.
So each protocol keeps its positions as rows of float matrices (scaled collateral weighted by the
liquidation threshold that applies to that user, scaled variable debt, stable debt) and per block
computes every health factor at once from the block's indexes and prices (numpy, well under a millisecond
per 10,000 rows). Rows under `1 + margin` are candidates; the exact integer math decides.

Prices as they will be after a pending update (`candidates(..., repriced=assets)`): what depends only on
the rows, the indexes and the time (debt in token units, which cells hold anything) is kept from the
last call with the same rows, indexes and timestamp (the block's own), so a repriced call is a few
matrix-vector products; and only the rows holding a repriced asset (as collateral or debt) are returned,
since every other row's health factor, and exact result, is the one at the block's prices.

Never missing a liquidatable position: the float result differs from the protocol's integer math only by
rounding, which the screen bounds: each balance is rounded to whole token units and each value to whole
base units per asset (absolute terms, subtracted from collateral and added to debt), and the average
liquidation threshold is truncated to whole basis points (relative, up to ~1.4e-4: the margin is 5e-4).
Stable debt is over-estimated with exp(rate * dt) >= the protocol's compounding. Positions the float
model cannot represent faithfully (e-mode categories with their own price source, or dust below
`dust_base`) are always candidates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

from strategies.liquidations.model import MarketState, UserPosition, reserve_ids_in

SECONDS_PER_YEAR = 365 * 24 * 3600
RAY = 10**27
Floats = npt.NDArray[np.float64]


class Screen:
    def __init__(self, *, margin: float = 5e-4, dust_base: int = 10_000) -> None:
        self.margin = margin
        self.dust_base = dust_base
        self._assets: list[str] = []
        self._ids: dict[int, int] = {}
        """reserve id -> column"""
        self._rows: dict[str, int] = {}
        self._users: list[str | None] = []
        self._free: list[int] = []
        self._coll: Floats = np.zeros((0, 0))
        self._var: Floats = np.zeros((0, 0))
        self._stable: Floats = np.zeros((0, 0))
        self._stable_rate: Floats = np.zeros((0, 0))
        self._stable_since: Floats = np.zeros((0, 0))
        self._always: set[str] = set()
        self._stable_rows: set[int] = set()
        """Rows holding any stable debt: without any, the screen skips the exp() over the matrix."""
        self._layout: tuple[tuple[str, int, int, int], ...] = ()
        self._holds: npt.NDArray[np.bool_] = np.zeros((0, 0), dtype=bool)
        """Cells whose reserve the row's user uses (collateral or borrowing bit set)."""
        self._version = 0
        """Bumped whenever rows change: keys the per-block terms below."""
        self._terms: tuple[tuple[object, ...], Floats, Floats, Floats, Floats] | None = None
        """(key, income per column, debt in token units, collateral cells > 0, debt cells > 0) as floats."""
        self._last_debt: Floats = np.zeros(0)
        self.lowest_health_factor = math.inf
        """The lowest (pessimistic) float health factor of the last `candidates` call."""

    def __len__(self) -> int:
        return len(self._rows)

    @staticmethod
    def _layout_of(market: MarketState) -> tuple[tuple[str, int, int, int], ...]:
        return tuple(
            (a, r.id, r.config.liquidation_threshold, r.config.emode_category)
            for a, r in market.reserves.items()
        )

    def rebuild(self, positions: Mapping[str, UserPosition], market: MarketState) -> None:
        self._layout = self._layout_of(market)
        self._assets = list(market.reserves)
        self._ids = {r.id: i for i, r in enumerate(market.reserves.values())}
        n, k = max(len(positions), 16), len(self._assets)
        self._coll, self._var, self._stable = np.zeros((n, k)), np.zeros((n, k)), np.zeros((n, k))
        self._stable_rate, self._stable_since = np.zeros((n, k)), np.zeros((n, k))
        self._holds = np.zeros((n, k), dtype=bool)
        self._rows, self._users, self._free, self._always = {}, [None] * n, list(range(n - 1, -1, -1)), set()
        self._stable_rows = set()
        self.update(positions.keys(), positions, market)

    def _grow(self) -> None:
        n = len(self._users)
        extra = max(n, 16)
        for name in ("_coll", "_var", "_stable", "_stable_rate", "_stable_since"):
            old = getattr(self, name)
            setattr(self, name, np.vstack([old, np.zeros((extra, old.shape[1]))]))
        self._holds = np.vstack([self._holds, np.zeros((extra, self._holds.shape[1]), dtype=bool)])
        self._users.extend([None] * extra)
        self._free.extend(range(n + extra - 1, n - 1, -1))

    def update(
        self, users: Iterable[str], positions: Mapping[str, UserPosition], market: MarketState
    ) -> None:
        """Re-writes the rows of `users` from `positions` (a user no longer there is dropped)."""
        self._version += 1
        if self._layout_of(market) != self._layout:
            self.rebuild(positions, market)
            return
        for user in users:
            row = self._rows.get(user)
            position = positions.get(user)
            if position is None:
                if row is not None:
                    self._clear(row)
                    self._users[row] = None
                    self._free.append(row)
                    del self._rows[user]
                self._always.discard(user)
                continue
            if row is None:
                if not self._free:
                    self._grow()
                row = self._free.pop()
                self._rows[user] = row
                self._users[row] = user
            self._clear(row)
            self._fill(row, position, market)

    def _clear(self, row: int) -> None:
        self._stable_rows.discard(row)
        for m in (self._coll, self._var, self._stable, self._stable_rate, self._stable_since):
            m[row, :] = 0.0
        self._holds[row, :] = False

    def _fill(self, row: int, p: UserPosition, market: MarketState) -> None:
        category = market.emode_categories.get(p.emode_category) if p.emode_category else None
        if category is not None and category.has_price_source:
            self._always.add(p.user)
        else:
            self._always.discard(p.user)
        for rid in reserve_ids_in(p.config):
            col = self._ids.get(rid)
            if col is None:
                self._always.add(p.user)  # a reserve we do not know: let the exact math decide (and log)
                continue
            self._holds[row, col] = True
            r = market.reserves[self._assets[col]]
            b = p.reserves.get(r.asset)
            if b is None:
                continue
            if (p.config >> (rid * 2 + 1)) & 1 and b.scaled_a_token_balance:
                lt = r.config.liquidation_threshold
                if category is not None and r.config.emode_category == p.emode_category:
                    lt = category.liquidation_threshold
                self._coll[row, col] = b.scaled_a_token_balance * (lt / 10_000)
            if (p.config >> (rid * 2)) & 1:
                self._var[row, col] = float(b.scaled_variable_debt)
                if b.stable_debt_principal:
                    self._stable[row, col] = float(b.stable_debt_principal)
                    self._stable_rate[row, col] = b.stable_rate / RAY
                    self._stable_since[row, col] = float(b.stable_last_update)
                    self._stable_rows.add(row)

    def health_factors(
        self, market: MarketState, indexes: Mapping[str, tuple[int, int]], *, pessimistic: bool = False
    ) -> Floats:
        """Float health factor of every row (inf for rows without debt, including free rows).

        pessimistic=True lowers each collateral and raises each debt by the protocol's worst rounding:
        a balance is rounded to whole token units (one unit is worth price/unit in the base currency) and
        each value to a whole base unit, per asset. That matters for dust; for real positions it is noise.
        """
        k = len(self._assets)
        price_per_unit = np.empty(k)
        for i, asset in enumerate(self._assets):
            r = market.reserves[asset]
            price_per_unit[i] = r.price / r.unit
        income, debt_units, coll_cells, debt_cells = self._block_terms(market.timestamp, indexes)
        collateral = self._coll @ (income * price_per_unit)
        debt = debt_units @ price_per_unit
        self._last_debt = debt
        if pessimistic:
            rounding = price_per_unit + 1.0
            collateral = collateral - coll_cells @ rounding
            debt = debt + debt_cells @ (rounding + price_per_unit)  # stable + variable parts
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(debt > 0, collateral / np.where(debt > 0, debt, 1.0), math.inf)

    def _block_terms(
        self, timestamp: int, indexes: Mapping[str, tuple[int, int]]
    ) -> tuple[Floats, Floats, Floats, Floats]:
        """(income index per column, debt in token units, collateral cells > 0, debt cells > 0): the
        price-free terms, computed once per (rows, indexes, timestamp) and reused by repriced calls."""
        key = (self._version, timestamp, tuple(indexes[a] for a in self._assets))
        if self._terms is not None and self._terms[0] == key:
            return self._terms[1:]
        k = len(self._assets)
        income = np.empty(k)
        debt_index = np.empty(k)
        for i, asset in enumerate(self._assets):
            inc, dbt = indexes[asset]
            income[i] = inc / RAY
            debt_index[i] = dbt / RAY
        if self._stable_rows:
            dt = np.maximum(timestamp - self._stable_since, 0.0) / SECONDS_PER_YEAR
            stable_now = self._stable * np.exp(self._stable_rate * dt)
            debt_units = self._var * debt_index + stable_now
        else:  # no stable debt anywhere: the term is 0.0 in every cell, and x + 0.0 == x
            debt_units = self._var * debt_index
        coll_cells = (self._coll > 0).astype(np.float64)
        debt_cells = (debt_units > 0).astype(np.float64)
        self._terms = (key, income, debt_units, coll_cells, debt_cells)
        return income, debt_units, coll_cells, debt_cells

    def candidates(
        self,
        market: MarketState,
        indexes: Mapping[str, tuple[int, int]],
        *,
        repriced: Iterable[str] | None = None,
    ) -> list[str]:
        """Users whose health factor may be below 1: the exact math must look at these.

        `repriced`: `market` carries new prices for these assets (a pending update) and only the users
        holding one of them are wanted (the others' results are unchanged from the block's prices)."""
        hf = self.health_factors(market, indexes, pessimistic=True)
        self.lowest_health_factor = float(hf.min()) if len(hf) else math.inf
        wanted = (hf < 1.0 + self.margin) | ((self._last_debt > 0) & (self._last_debt < self.dust_base))
        holding: npt.NDArray[np.bool_] | None = None
        if repriced is not None:
            assets = set(repriced)
            cols = [i for i, a in enumerate(self._assets) if a in assets]
            holding = np.asarray(self._holds[:, cols].any(axis=1), dtype=bool)
            wanted = wanted & holding
        rows = np.nonzero(wanted)[0]
        out = {u for r in rows.tolist() if (u := self._users[r]) is not None}
        out.update(
            u
            for u in self._always
            if (row := self._rows.get(u)) is not None and (holding is None or holding[row])
        )
        return sorted(out)
