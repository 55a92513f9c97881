"""Which pending transactions are price updates of the markets we track, and what prices they set.

The lending market's oracle names a source per asset (`getSourceOfAsset`, Aave V3 and V2 alike); the
source is either the Chainlink aggregator itself or a proxy in front of it (`aggregator()`). OCR2
aggregators take new prices with `transmit(...)`; the answer they record is the median of the report's
observations (`keeper.chain.ocr2`). The watch maps aggregator -> the (market, asset) pairs it prices, so a
pending `transmit` to one of them becomes price overrides for `LiquidationStrategy.detect`.

Sources are read at sync and again every `REFRESH_BLOCKS` blocks (a market can change an asset's source;
on mainnet that is rare and announced by the oracle's AssetSourceUpdated event).

Prices: Aave's oracle returns the source's `latestAnswer()`: USD with 8 decimals (V3) or ETH wei per
whole token (V2), the base currencies the markets compute in, so the median answer is the override as
it is (assets priced through an adapter that transforms the answer are not backrun: their source is not
an OCR2 aggregator, and a transmit never matches them).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keeper.chain.abi import encode_call
from keeper.chain.mevshare import OracleHintMatcher
from keeper.chain.ocr2 import TRANSMIT_SELECTOR, decode_transmit
from keeper.chain.rpc import RpcClient
from keeper.core.events import PendingTx
from keeper.errors import DecodeError, JsonRpcError

log = logging.getLogger("strategies.liquidations")

REFRESH_BLOCKS = 300


@dataclass(frozen=True, slots=True)
class PendingPrices:
    """What a pending transmit will do: new prices per market, and the transaction to backrun."""

    tx: PendingTx
    overrides: Mapping[str, Mapping[str, int]]
    """market (protocol adapter name) -> {asset: new oracle price in that market's base currency}"""


@dataclass(frozen=True, slots=True)
class MarketOracle:
    name: str
    oracle: str
    assets: Sequence[str]


class OracleWatch:
    def __init__(self) -> None:
        self.aggregators: dict[str, list[tuple[str, str]]] = {}
        """aggregator (lowercase) -> [(market, asset)] it prices"""
        self.hint_matcher = OracleHintMatcher(())
        """Recognises updates of these aggregators in MEV-Share hints (rebuilt on each refresh)."""
        self.read_at: int | None = None
        self.malformed = 0
        self.matched = 0

    def addresses(self) -> frozenset[str]:
        return frozenset(self.aggregators)

    def wants(self, tx: PendingTx) -> bool:
        """The mempool filter: a `transmit` to one of the aggregators (the set is read live, so a refresh
        applies at once)."""
        return tx.to is not None and tx.to in self.aggregators and tx.input[:4] == TRANSMIT_SELECTOR

    async def refresh(self, rpc: RpcClient, markets: Sequence[MarketOracle], block: int) -> None:
        """Reads every asset's source, then the aggregator behind each source, in two batched rounds."""
        calls: list[tuple[str, Any]] = []
        keys: list[tuple[str, str]] = []
        for m in markets:
            for asset in m.assets:
                data = encode_call("getSourceOfAsset(address)", ["address"], [asset])
                calls.append(("eth_call", [{"to": m.oracle, "data": "0x" + data.hex()}, hex(block)]))
                keys.append((m.name, asset))
        replies = await rpc.batch(calls, raise_errors=False) if calls else []
        sources: dict[tuple[str, str], str] = {}
        for key, reply in zip(keys, replies, strict=True):
            if isinstance(reply, str) and len(reply) >= 66:
                sources[key] = "0x" + reply[-40:].lower()
        unique = sorted(set(sources.values()))
        probe = "0x" + encode_call("aggregator()", [], []).hex()
        behind = await rpc.batch(
            [("eth_call", [{"to": s, "data": probe}, hex(block)]) for s in unique], raise_errors=False
        )
        aggregator_of: dict[str, str] = {}
        for source, reply in zip(unique, behind, strict=True):
            address = source
            if isinstance(reply, str) and not isinstance(reply, JsonRpcError) and len(reply) == 66:
                candidate = "0x" + reply[-40:].lower()
                if int(candidate, 16) != 0:
                    address = candidate
            aggregator_of[source] = address
        mapping: dict[str, list[tuple[str, str]]] = {}
        for key, source in sources.items():
            mapping.setdefault(aggregator_of[source], []).append(key)
        self.aggregators = mapping
        self.hint_matcher = OracleHintMatcher(mapping)
        self.read_at = block

    def due(self, block: int) -> bool:
        return self.read_at is None or block - self.read_at >= REFRESH_BLOCKS

    def prices(self, tx: PendingTx) -> PendingPrices | None:
        """The overrides a pending transmit sets; None for anything else or a report that does not
        decode (counted: `malformed`)."""
        if not self.wants(tx):
            return None
        assert tx.to is not None
        try:
            report = decode_transmit(tx.input)
        except DecodeError as exc:
            self.malformed += 1
            log.warning("undecodable transmit skipped tx=0x%s error=%s", tx.hash.hex(), str(exc)[:200])
            return None
        if report.median <= 0:
            self.malformed += 1
            return None
        overrides: dict[str, dict[str, int]] = {}
        for market, asset in self.aggregators[tx.to]:
            overrides.setdefault(market, {})[asset] = report.median
        self.matched += 1
        return PendingPrices(tx, overrides)
