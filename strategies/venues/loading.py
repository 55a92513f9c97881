"""Venues from pool addresses, for the peg strategy and the liquidation valuer: Uniswap V3 pools, Uniswap
V2 pairs and Balancer V2 ComposableStablePools, loaded once (their fixed parameters in a few batched
reads)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from keeper.chain.rpc import RpcClient
from strategies.venues.balancer_stable import BalancerStableVenue, load_stable_pools
from strategies.venues.base import Venue
from strategies.venues.uniswap_v2 import UniswapV2Venue, load_v2_pairs
from strategies.venues.uniswap_v3 import UniswapV3Venue, load_v3_pools


@dataclass(frozen=True)
class VenueAddresses:
    v3_pools: Sequence[str] = ()
    v2_pairs: Sequence[str] = ()
    balancer_vault: str | None = None
    balancer_pools: Sequence[str] = ()
    tokens: Mapping[str, str] = field(default_factory=dict)
    """Symbol -> address, for the pegs' config (devnet: every devnet token)."""


def devnet_venue_addresses(deployment: Mapping[str, Any]) -> VenueAddresses:
    """Every pool of a devnet deployment record (`deployments/devnet.json`'s "deployment")."""
    balancer = deployment.get("balancer") or {}
    return VenueAddresses(
        v3_pools=[str(a) for a in deployment["uniswap_v3"]["pools"].values()],
        v2_pairs=[str(a) for a in deployment["uniswap_v2"]["pairs"].values()],
        balancer_vault=str(balancer["vault"]) if balancer.get("vault") else None,
        balancer_pools=[str(p["address"]) for p in dict(balancer.get("pools", {})).values()],
        tokens={str(k): str(v["address"]) for k, v in deployment["tokens"].items()},
    )


async def load_venues(rpc: RpcClient, addresses: VenueAddresses) -> list[Venue]:
    venues: list[Venue] = []
    if addresses.v3_pools:
        venues.append(UniswapV3Venue(await load_v3_pools(rpc, addresses.v3_pools)))
    if addresses.v2_pairs:
        venues.append(UniswapV2Venue(await load_v2_pairs(rpc, addresses.v2_pairs)))
    if addresses.balancer_pools:
        if addresses.balancer_vault is None:
            raise ValueError("Balancer pools need the Balancer Vault's address")
        pools = await load_stable_pools(rpc, addresses.balancer_vault, addresses.balancer_pools)
        venues.append(BalancerStableVenue(pools))
    return venues
