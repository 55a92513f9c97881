"""Pending transactions from `newPendingTransactions` with full tx objects (`eth_subscribe(..., true)`).

Txs that pass the filter carry their signed bytes (`raw`, rebuilt from the fields and checked against
the hash: `keeper.chain.rawtx`), so a backrun bundle can include them. Addresses in the decoded
`PendingTx` are lowercase 0x-hex (cheap to compare; checksumming costs ~70 us per address with eth_utils,
too much for a firehose). A malformed tx object is logged, counted (`malformed`, and the
`keeper_pending_tx_malformed_total` metric) and skipped: the collector never dies of bad input. Nodes
that ignore the `true` flag send bare hashes; those count as malformed too.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import replace
from typing import Any

from prometheus_client import Counter

from keeper.chain.rawtx import rebuild_raw
from keeper.chain.redact import redact_url
from keeper.chain.ws import Subscribed, subscribe_forever
from keeper.core.events import PendingTx
from keeper.core.metrics import REGISTRY
from keeper.errors import DecodeError

log = logging.getLogger("keeper.collectors.mempool")

PENDING_MALFORMED = Counter(
    "keeper_pending_tx_malformed_total", "Pending txs that failed to decode", ["collector"], registry=REGISTRY
)

_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")

TxFilter = Callable[[PendingTx], bool]


def _quantity(obj: dict[str, Any], key: str, *, required: bool = True) -> int | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise DecodeError(f"tx field {key!r} is missing")
        return None
    if isinstance(value, str) and _QUANTITY.fullmatch(value):
        return int(value, 16)
    raise DecodeError(f"tx field {key!r} is not a hex quantity: {str(value)[:80]!r}")


def _required(obj: dict[str, Any], key: str) -> int:
    value = _quantity(obj, key)
    if value is None:  # pragma: no cover - _quantity raises for a missing required field
        raise DecodeError(f"tx field {key!r} is missing")
    return value


def _address(value: Any, key: str) -> str:
    if isinstance(value, str) and _ADDRESS.fullmatch(value):
        return value.lower()
    raise DecodeError(f"tx field {key!r} is not an address: {str(value)[:80]!r}")


def decode_pending_tx(obj: Any, received_at_ns: int = 0) -> PendingTx:
    """A JSON-RPC transaction object -> PendingTx. Raises DecodeError (only) on any bad input.

    Types 0 (legacy, gasPrice), 1 (access list, gasPrice), 2 (EIP-1559 fee caps); 3 (blob) and 4 (set
    code) carry the 1559 fee fields too and decode the same way. Other types are rejected.
    """
    if not isinstance(obj, dict):
        raise DecodeError(f"tx is not an object: {type(obj).__name__}")
    raw_hash = obj.get("hash")
    if not (isinstance(raw_hash, str) and _HASH.fullmatch(raw_hash)):
        raise DecodeError(f"tx hash is not a 32-byte hash: {str(raw_hash)[:80]!r}")
    to = obj.get("to")
    data = obj.get("input", obj.get("data"))
    if not (isinstance(data, str) and _DATA.fullmatch(data)):
        raise DecodeError(f"tx input is not 0x-hex bytes: {str(data)[:80]!r}")
    tx_type = _quantity(obj, "type", required=False)
    tx_type = 0 if tx_type is None else tx_type
    if tx_type > 4:
        raise DecodeError(f"unsupported tx type {tx_type}")
    gas_price = _quantity(obj, "gasPrice", required=tx_type in (0, 1))
    max_fee = _quantity(obj, "maxFeePerGas", required=tx_type >= 2)
    max_priority = _quantity(obj, "maxPriorityFeePerGas", required=tx_type >= 2)
    return PendingTx(
        hash=bytes.fromhex(raw_hash[2:]),
        sender=_address(obj.get("from"), "from"),
        to=None if to is None else _address(to, "to"),
        input=bytes.fromhex(data[2:]),
        value=_required(obj, "value"),
        nonce=_required(obj, "nonce"),
        gas=_required(obj, "gas"),
        tx_type=tx_type,
        gas_price=gas_price,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=max_priority,
        chain_id=_quantity(obj, "chainId", required=False),
        received_at_ns=received_at_ns,
    )


def to_filter(addresses: Iterable[str], selectors: Iterable[bytes] | None = None) -> TxFilter:
    """A predicate keeping txs sent to one of `addresses` (and, if given, calling one of `selectors`)."""
    targets = frozenset(a.lower() for a in addresses)
    sels = None if selectors is None else frozenset(selectors)

    def keep(tx: PendingTx) -> bool:
        if tx.to is None or tx.to not in targets:
            return False
        return sels is None or tx.input[:4] in sels

    return keep


class PendingTxCollector:
    """Yields decoded pending txs (optionally filtered); reconnects forever, never dies of bad input."""

    def __init__(
        self,
        ws_url: str,
        *,
        name: str = "mempool",
        filter: TxFilter | None = None,
        heartbeat: float | None = 15.0,
    ) -> None:
        self.name = name
        self.ws_url = ws_url
        self.filter = filter
        self.heartbeat = heartbeat
        self.decoded = 0
        self.malformed = 0
        self.filtered = 0
        self.subscriptions = 0

    def __repr__(self) -> str:
        return f"PendingTxCollector({self.name}, {redact_url(self.ws_url)})"

    async def events(self) -> AsyncGenerator[PendingTx, None]:
        # No idle timeout: a quiet mempool is normal. Dead sockets are caught by the ping heartbeat.
        stream = subscribe_forever(self.ws_url, "newPendingTransactions", True, heartbeat=self.heartbeat)
        async with contextlib.aclosing(stream):  # close the socket as soon as we are closed
            async for item in stream:
                if isinstance(item, Subscribed):
                    self.subscriptions += 1
                    continue
                try:
                    tx = decode_pending_tx(item.result, item.received_at_ns)
                except DecodeError as exc:
                    self.malformed += 1
                    PENDING_MALFORMED.labels(self.name).inc()
                    if self.malformed <= 10 or self.malformed % 1000 == 0:  # no log floods
                        log.warning(
                            "skipping malformed pending tx collector=%s error=%s count=%d",
                            self.name,
                            str(exc)[:200],
                            self.malformed,
                        )
                    continue
                self.decoded += 1
                if self.filter is not None and not self.filter(tx):
                    self.filtered += 1
                    continue
                # Only for the txs we keep: the signed bytes a backrun bundle carries (None if the node's
                # fields do not rebuild to the tx's hash).
                raw = rebuild_raw(item.result) if isinstance(item.result, dict) else None
                yield tx if raw is None else replace(tx, raw=raw)
