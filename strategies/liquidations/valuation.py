"""Value opportunities at the block's exact pool state: what selling the seized collateral returns.

For each opportunity (most valuable first): the best route for `collateral_out` from collateral to debt
asset across the venues (direct or via a connector), the flash-loan premium on `debt_to_cover`, and the
gross profit = swap output - debt repaid - premium, in debt-asset units and in the protocol's base
currency. Opportunities are valued as if they land in the same block in that order: each route is
quoted on the pool state the previous ones' sales leave behind (`Venue.apply`), so two liquidations
dumping the same collateral into the same pool are not both valued at the untouched price.

The venues' state can be read ahead: `prefetch(block)` starts the read at the block's arrival (the
strategy does so when the block is likely to need it), concurrently with the protocols' refresh, and the
valuation of that same block uses it; a prefetch for another block is cancelled, never used.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from keeper.chain.rpc import RpcClient
from keeper.chain.units import percent_mul
from keeper.errors import KeeperError
from keeper.logs import kv
from strategies.liquidations.opportunity import Opportunity
from strategies.venues.base import Venue
from strategies.venues.router import best_route

log = logging.getLogger("strategies.liquidations")

AAVE_V3_FLASHLOAN_PREMIUM_BPS = 5


class VenueValuer:
    def __init__(
        self,
        rpc: RpcClient,
        venues: Sequence[Venue],
        *,
        connectors: Sequence[str] = (),
        flash_premium_bps: int = AAVE_V3_FLASHLOAN_PREMIUM_BPS,
    ) -> None:
        self.rpc = rpc
        self.venues = list(venues)
        self.connectors = tuple(connectors)
        self.flash_premium_bps = flash_premium_bps
        self._prefetch: tuple[int, asyncio.Task[None]] | None = None

    async def _refresh(self, block: int) -> None:
        await asyncio.gather(*(v.refresh(self.rpc, block) for v in self.venues))

    def prefetch(self, block: int | None) -> None:
        """Starts reading every venue's state at `block` now (None: nothing); `__call__` for `block`
        uses it. Whatever an earlier call started is cancelled: a read is only ever used by the block
        it was started for (the strategy calls this once per block, so a reorged block with the same
        number never gets the replaced block's read)."""
        if self._prefetch is not None:
            self._prefetch[1].cancel()  # a venue installs its state only at the end of its read
            self._prefetch = None
        if block is None:
            return
        task = asyncio.create_task(self._refresh(block), name=f"venues:prefetch:{block}")
        task.add_done_callback(_retrieve)
        self._prefetch = (block, task)

    async def refresh_venues(self, block: int) -> None:
        """Every venue's state at `block`: the prefetched read when there is one for `block`."""
        prefetched, self._prefetch = self._prefetch, None
        if prefetched is not None:
            started, task = prefetched
            if started == block:
                try:
                    await task
                    return
                except Exception as exc:  # read again below: an error that persists is raised from there
                    log.debug("venue prefetch failed; reading again", extra=kv(block=block, error=str(exc)))
            else:
                task.cancel()
        await self._refresh(block)

    async def __call__(self, opportunities: Sequence[Opportunity], block: int) -> list[Opportunity]:
        await self.refresh_venues(block)
        working = {v.name: v for v in self.venues}
        out: list[Opportunity] = []
        for opp in sorted(opportunities, key=lambda o: o.bonus_value_base, reverse=True):
            try:
                route = best_route(
                    list(working.values()),
                    opp.collateral_asset,
                    opp.debt_asset,
                    opp.collateral_out,
                    via=[c for c in self.connectors if c not in (opp.collateral_asset, opp.debt_asset)],
                    skip_errors=True,
                )
            except (KeeperError, ValueError) as exc:
                log.warning("cannot value opportunity", extra=kv(id=opp.id, error=str(exc)))
                out.append(opp)
                continue
            if route is None:
                out.append(opp)  # no venue trades this pair: left unvalued, the executor skips it
                continue
            premium = percent_mul(opp.debt_to_cover, self.flash_premium_bps)
            valued = opp.valued(swap_out=route.amount_out, route=route, flash_premium=premium)
            out.append(valued)
            if valued.gross_profit is not None and valued.gross_profit > 0:
                for hop in route.hops:
                    working[hop.venue] = working[hop.venue].apply(hop)
        out.sort(key=lambda o: (o.gross_profit_base is not None, o.gross_profit_base or 0), reverse=True)
        return out


def _retrieve(task: asyncio.Task[None]) -> None:
    """A prefetch nobody waited for must not log "exception was never retrieved"."""
    if not task.cancelled():
        task.exception()


async def read_flash_premium_bps(rpc: RpcClient, aave_v3_pool: str) -> int:
    """`FLASHLOAN_PREMIUM_TOTAL()` of an Aave V3 Pool, in basis points."""
    from eth_abi.abi import decode

    from keeper.chain.abi import encode_call

    raw = await rpc.eth_call(aave_v3_pool, encode_call("FLASHLOAN_PREMIUM_TOTAL()", [], []))
    return int(decode(["uint128"], raw)[0])


async def build_valuer(
    rpc: RpcClient,
    *,
    v3_pools: Sequence[str],
    v2_pairs: Sequence[str],
    connectors: Sequence[str],
    flash_pool: str | None,
) -> VenueValuer:
    """Venues from pool addresses (one batched read of their fixed parameters) and the flash premium."""
    from strategies.venues.uniswap_v2 import UniswapV2Venue, load_v2_pairs
    from strategies.venues.uniswap_v3 import UniswapV3Venue, load_v3_pools

    venues: list[Venue] = []
    if v3_pools:
        venues.append(UniswapV3Venue(await load_v3_pools(rpc, v3_pools)))
    if v2_pairs:
        venues.append(UniswapV2Venue(await load_v2_pairs(rpc, v2_pairs)))
    premium = await read_flash_premium_bps(rpc, flash_pool) if flash_pool else AAVE_V3_FLASHLOAN_PREMIUM_BPS
    return VenueValuer(rpc, venues, connectors=connectors, flash_premium_bps=premium)


async def devnet_valuer(rpc: RpcClient, deployment: dict[str, object]) -> VenueValuer:
    """The valuer for a devnet deployment record (`deployments/devnet.json`'s "deployment")."""
    d: dict[str, dict[str, object]] = deployment  # type: ignore[assignment]
    tokens: dict[str, dict[str, object]] = d["tokens"]  # type: ignore[assignment]
    v3_pools: dict[str, str] = d["uniswap_v3"]["pools"]  # type: ignore[assignment]
    v2_pairs: dict[str, str] = d["uniswap_v2"]["pairs"]  # type: ignore[assignment]
    return await build_valuer(
        rpc,
        v3_pools=list(v3_pools.values()),
        v2_pairs=list(v2_pairs.values()),
        connectors=[str(tokens["WETH"]["address"]), str(tokens["USDC"]["address"])],
        flash_pool=str(d["aave_v3"]["pool"]),
    )
