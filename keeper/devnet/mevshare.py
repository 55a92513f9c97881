"""MEV-Share mode of the devnet relay: hints on an SSE stream, backruns by hash, a per-block auction.

A local stand-in for the MEV-Share matchmaker (Flashbots `mev-share-node`) plus the builder's side of
it, NOT the real thing. It follows the public MEV-Share spec as summarised in
/work/shared/facts/flashbots.md (Flashbots "mev-share" docs: `mev_sendBundle` v0.1, the event stream,
the history API, Protect's `eth_sendPrivateTransaction` preferences):

- **Shared order flow.** A private transaction sent with `preferences.privacy.hints`, or a
  `mev_sendBundle` of transactions with `privacy.hints`, is *shared*: a hint is published at once on the
  stream. Hints allowed: `calldata`, `contract_address`, `function_selector`, `logs`, `default_logs`,
  `hash`, `tx_hash`. The hash is always in the hint (a backrun needs it). `logs`: every log of the
  transaction(s) simulated on top of the latest block; `default_logs` (this devnet's reading of the
  spec): only swap logs of Uniswap V2/V3, Balancer V2 and Curve pools, with their data (amounts) left
  out; `tx_hash` adds each transaction's `hash` to its `txs` entry (useful for bundles, whose event
  `hash` is the bundle hash). Fields not allowed are `null` (`logs`, `txs`) or absent (txs entries).
- **Stream.** HTTP GET on the relay's root (as on mainnet): `text/event-stream`, a `:ping` comment at
  connection and every `ping_interval` seconds, one `data: {json}` event per hint. A subscriber that
  falls `max_backlog` events behind, or does not read for max(5 s, 4 pings), is disconnected (it
  reconnects and reads the history).
- **History.** GET `/api/v1/history` (`blockStart`, `blockEnd`, `timestampStart`, `timestampEnd`,
  `limit` <= 500, `offset`) -> `[{block, timestamp, hint}]`, oldest first; `/api/v1/history/info`.
  `block` is the chain head when the hint was published, `timestamp` the Unix time (seconds).
- **Backruns.** `mev_sendBundle` with body `[{hash: <shared hash>}, {tx, canRevert}, ...]` and
  `inclusion {block, maxBlock}` (at most 30 blocks) is a backrun; the relay answers
  `{bundleHash: keccak256(hash ++ tx hashes)}`, which for a single private transaction is also the hash
  of the merged bundle that lands.

**The auction (exact rule).** Before each block N is built (a `Builder.pre_build` hook, under the
builder's lock), for every shared item includable in N that has backruns valid for N:
1. each backrun is simulated right after the item's transaction(s), on the state the block starts from;
   a backrun is rejected when it cannot be applied (nonce, funds, fee cap), when one of its transactions
   reverts without `canRevert`, or when it pays the coinbase nothing;
2. its **bid** = the coinbase balance increase caused by its own transactions (priority fees plus direct
   payments: the simulation's `coinbaseDiff` of those transactions);
3. its **refund percent** p = max(r, o): r is the item's required minimum, from the shared bundle's
   own `validity.refund` (its entry for `bodyIdx` 0: "minimum refund percentage required for this bundle
   to be used by another searcher", as the spec defines it), else `default_refund_percent` (90, the
   default of Flashbots Protect / MEV-Share; private transactions always use it); o is what the backrun
   offers in its `validity.refund` entry for `bodyIdx` 0 (its `{hash}` item), 0 when absent. An offer
   below the minimum is raised to it. The **refund** = bid * p // 100 (integer wei), paid to the sender
   of the item's first transaction (`refundConfig` is checked and ignored);
4. the winner has the highest refund (what the hinted transaction's sender gets back: the Chainlink SVR
   view, where the protocol recaptures the backrun's value); ties go to the higher bid, then to the
   earlier backrun. Losers are not included and pay nothing.
The winner and the item become one ordinary bundle for block N, `[item txs..., backrun txs...]` (the
item's transactions may revert, as a private transaction may; the backrun's only with `canRevert`),
ranked with every other bundle by the builder (`keeper.devnet.builder.assemble`). Should it not land
(outbid by a conflicting bundle, rejected by the pool), the item still lands as before: a private
transaction from the private pool, a shared bundle as its own bundle for N. An item without a valid
backrun lands the same way.

**Nonce order.** One sender's private transactions execute in nonce order, as on mainnet, where the
matchmaker hands merged bundles and private transactions to builders that order them by the sender
nonces they need (a Chainlink transmitter's several SVR updates: each may be backrun). A shared item
whose sender has earlier private transactions still pending is auctioned on the state after them
(its backruns simulated after [those, the item]), and the builder places them right before the merged
bundle, in nonce order (`Builder.nonce_prerequisites`); when one of them is itself merged with its own
winning backrun, that bundle goes first. So [update n, its backrun, update n+1, its backrun] lands
whichever backrun bids more. (The real MEV-Share node and builders are not reproduced line by line:
this is the behaviour the spec and the builders' nonce rules imply, modelled for the devnet.)

**Refunds.** After the block that includes a merged bundle (a `Builder.post_build` hook), the builder
pays the refund from its coinbase to the recipient with a plain transfer (value = the refund exactly;
the gas is the builder's) sent to the pool, so it lands in the next block. Real builders pay at the end
of the same block; anvil's pool checks balances against the latest block, so here the coinbase can
spend the bid only once it is in a block. `refunds` records every payment.

Not modelled: nested bundles in `mev_sendBundle` bodies (rejected with -32602), `refundConfig` (accepted,
checked, ignored: the searcher's own refund split), `privacy.builders` (ignored: one builder), hints on
backruns (backruns are not re-shared), `mevGasPrice`/`gasUsed` in hints.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson
from aiohttp import web

from keeper.chain.flashbots_auth import keccak256
from keeper.devnet.builder import (
    BlockContext,
    Builder,
    BuiltBlock,
    Bundle,
    SignedTx,
    SimulationError,
    bundle_hash,
    fetch_nonces,
    simulate,
    to_hex,
)
from keeper.errors import JsonRpcError, KeeperError

log = logging.getLogger(__name__)

HINTS: Final = frozenset(
    {"calldata", "contract_address", "function_selector", "logs", "default_logs", "hash", "tx_hash"}
)
DEFAULT_REFUND_PERCENT: Final = 90
MAX_INCLUSION_BLOCKS: Final = 30
HISTORY_MAX_LIMIT: Final = 500
REFUND_GAS: Final = 50_000
"""Gas of a refund to a contract (a plain transfer to an account: 21,000)."""
PING: Final = b":ping\n\n"

SWAP_TOPICS: Final = frozenset(
    keccak256(sig.encode())
    for sig in (
        "Swap(address,uint256,uint256,uint256,uint256,address)",  # Uniswap V2 pair
        "Swap(address,address,int256,int256,uint160,uint128,int24)",  # Uniswap V3 pool
        "Swap(bytes32,address,address,uint256,uint256)",  # Balancer V2 vault
        "TokenExchange(address,int128,uint256,int128,uint256)",  # Curve pool
    )
)


@dataclass(slots=True)
class SharedItem:
    """A private transaction or bundle whose hint was published: what backruns name by `hash`."""

    hash: str
    kind: Literal["tx", "bundle"]
    txs: tuple[SignedTx, ...]
    first_block: int
    max_block: int
    can_revert: frozenset[str]
    hints: frozenset[str]
    hint: dict[str, Any]
    signer: str | None
    received_at: float
    refund_percent: int = DEFAULT_REFUND_PERCENT
    """The minimum refund (percent of a backrun's bid) the item requires."""

    @property
    def refund_recipient(self) -> str:
        return self.txs[0].sender


@dataclass(slots=True)
class Backrun:
    bundle_hash: str
    target: str
    """The shared item's hash (body[0].hash)."""
    txs: tuple[SignedTx, ...]
    can_revert: frozenset[str]
    block: int
    max_block: int
    refund_percent: int | None
    """The refund the backrun offers (percent of its bid); None: the item's minimum."""
    signer: str | None
    received_at: float
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Auction:
    """One item's auction for one block."""

    block: int
    target: str
    bids: dict[str, int]
    """Backrun bundle hash -> bid (wei to the coinbase), for the valid backruns."""
    refunds: dict[str, int]
    """Backrun bundle hash -> refund it would pay, for the valid backruns."""
    rejected: dict[str, str]
    """Backrun bundle hash -> why it could not take part."""
    winner: str | None
    merged_bundle: str | None
    """Hash of the bundle `[item txs, winner txs]` handed to the builder."""


@dataclass(frozen=True, slots=True)
class Refund:
    block: int
    """The block that included the backrun."""
    target: str
    backrun: str
    recipient: str
    bid: int
    percent: int
    amount: int
    tx_hash: str | None
    """The refund transfer (lands in the next block); None if it could not be sent (`error`)."""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    block: int
    timestamp: int
    hint: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"block": self.block, "timestamp": self.timestamp, "hint": self.hint}


@dataclass(slots=True)
class _Match:
    item: SharedItem
    backrun: Backrun
    block: int
    bid: int
    percent: int
    refund: int


@dataclass(slots=True, eq=False)
class _Subscriber:
    queue: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    def close(self) -> None:
        self.closed = True
        self.wake.set()


def _log_json(entry: Mapping[str, Any], *, with_data: bool = True) -> dict[str, Any]:
    return {
        "address": str(entry.get("address", "")).lower(),
        "topics": [str(t).lower() for t in entry.get("topics") or []],
        "data": str(entry.get("data") or "0x") if with_data else "0x",
    }


def build_hint(
    item_hash: str, txs: Sequence[SignedTx], hints: Iterable[str], logs: Sequence[Mapping[str, Any]] | None
) -> dict[str, Any]:
    """The stream event for a shared item, with exactly the fields its `hints` allow (see module doc).
    `logs`: the logs of `txs` in order (None when they could not be simulated)."""
    allowed = frozenset(hints)
    hint: dict[str, Any] = {"hash": item_hash, "logs": None, "txs": None}
    if logs is not None:
        if "logs" in allowed:
            hint["logs"] = [_log_json(lg) for lg in logs]
        elif "default_logs" in allowed:
            hint["logs"] = [
                _log_json(lg, with_data=False)
                for lg in logs
                if (lg.get("topics") or [None])[0] is not None
                and bytes.fromhex(str(lg["topics"][0])[2:]) in SWAP_TOPICS
            ]
    entries: list[dict[str, Any]] = []
    for tx in txs:
        entry: dict[str, Any] = {}
        if "contract_address" in allowed and tx.to is not None:
            entry["to"] = tx.to.lower()
        if "function_selector" in allowed and len(tx.data) >= 4:
            entry["functionSelector"] = to_hex(tx.data[:4])
        if "calldata" in allowed:
            entry["callData"] = to_hex(tx.data)
        if "tx_hash" in allowed:
            entry["hash"] = tx.hash
        entries.append(entry)
    if any(entries):
        hint["txs"] = entries
    return hint


def _non_negative(value: int, key: str) -> int:
    if value < 0:
        raise ValueError(f"{key} must not be negative")
    return value


def backrun_hash(target: str, txs: Iterable[SignedTx]) -> str:
    """keccak256(target hash ++ tx hashes): the hash `mev_sendBundle` answers for a backrun."""
    return to_hex(keccak256(bytes.fromhex(target[2:]) + b"".join(bytes.fromhex(t.hash[2:]) for t in txs)))


class MevShare:
    """The matchmaker: shared items, backruns, the stream and history, auctions and refunds.

    Built by `RelayServer` (`relay.mevshare`); registers its hooks on `builder.pre_build` (auctions) and
    `builder.post_build` (settlement). Records for tests and the demo: `auctions` (block -> list),
    `refunds`, `history`, `stats`.
    """

    def __init__(
        self,
        builder: Builder,
        *,
        ping_interval: float = 5.0,
        max_history: int = 10_000,
        max_backlog: int = 10_000,
        default_refund_percent: int = DEFAULT_REFUND_PERCENT,
    ) -> None:
        if ping_interval <= 0:
            raise ValueError("ping_interval must be positive")
        if not 0 <= default_refund_percent <= 100:
            raise ValueError("default_refund_percent must be 0..100")
        self.builder = builder
        self.rpc = builder.rpc
        self.ping_interval = ping_interval
        self.max_backlog = max_backlog
        self.default_refund_percent = default_refund_percent
        self.items: dict[str, SharedItem] = {}
        self.backruns: dict[str, Backrun] = {}
        self.history: deque[HistoryEntry] = deque(maxlen=max_history)
        self.auctions: dict[int, list[Auction]] = {}
        self.refunds: list[Refund] = []
        self.stats: dict[str, int] = {
            "hints": 0,
            "backruns": 0,
            "merged_included": 0,
            "items_included_alone": 0,
            "items_expired": 0,
            "backruns_expired": 0,
            "subscribers_dropped_slow": 0,
        }
        self._pending: dict[str, _Match] = {}
        self._subscribers: set[_Subscriber] = set()
        self._seq = 0
        builder.pre_build.append(self.before_block)
        builder.post_build.append(self.after_block)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    # -- intake ----------------------------------------------------------------------------------

    async def share(
        self,
        kind: Literal["tx", "bundle"],
        txs: Sequence[SignedTx],
        *,
        hints: Iterable[str],
        first_block: int,
        max_block: int,
        can_revert: Iterable[str] = (),
        signer: str | None = None,
        refund_percent: int | None = None,
    ) -> SharedItem:
        """Registers a shared private tx (already in the builder's private pool) or bundle, and publishes
        its hint. The hash is the tx hash for a tx, the bundle hash (keccak of tx hashes) for a bundle."""
        hints = frozenset(hints) | {"hash"}
        unknown = hints - HINTS
        if unknown:
            raise ValueError(f"unknown hints: {sorted(unknown)}")
        item_hash = txs[0].hash if kind == "tx" else bundle_hash(txs)
        logs = await self._simulate_logs(txs) if hints & {"logs", "default_logs"} else None
        hint = build_hint(item_hash, txs, hints, logs)
        item = SharedItem(
            hash=item_hash,
            kind=kind,
            txs=tuple(txs),
            first_block=first_block,
            max_block=max_block,
            can_revert=frozenset(can_revert) | ({txs[0].hash} if kind == "tx" else frozenset()),
            hints=hints,
            hint=hint,
            signer=signer,
            received_at=time.time(),
            refund_percent=self.default_refund_percent if refund_percent is None else refund_percent,
        )
        self.items[item_hash] = item
        self.publish(hint, first_block - 1)
        return item

    def add_backrun(
        self,
        target: str,
        txs: Sequence[SignedTx],
        *,
        block: int,
        max_block: int,
        can_revert: Iterable[str] = (),
        refund_percent: int | None = None,
        signer: str | None = None,
    ) -> Backrun:
        """Stores a backrun of the shared item `target`. Raises KeyError if no such item is pending."""
        target = target.lower()
        if target not in self.items:
            raise KeyError(target)
        self._seq += 1
        b = Backrun(
            bundle_hash=backrun_hash(target, txs),
            target=target,
            txs=tuple(txs),
            can_revert=frozenset(can_revert),
            block=block,
            max_block=max_block,
            refund_percent=refund_percent,
            signer=signer,
            received_at=time.time(),
            seq=self._seq,
        )
        self.backruns[b.bundle_hash] = b
        self.stats["backruns"] += 1
        return b

    def cancel(self, item_hash: str) -> bool:
        """Forgets a shared item (its private tx was cancelled) and its backruns."""
        return self._forget(item_hash.lower())

    def _forget(self, item_hash: str) -> bool:
        found = self.items.pop(item_hash, None) is not None
        for h, b in list(self.backruns.items()):
            if b.target == item_hash:
                del self.backruns[h]
        return found

    async def _simulate_logs(self, txs: Sequence[SignedTx]) -> list[dict[str, Any]] | None:
        """The logs `txs` emit in order on top of the latest block (no validation: a nonce gap is fine).
        None when the node cannot simulate them."""
        try:
            _, ctx = await self.builder.next_context()
            reply = await self.rpc.call(
                "eth_simulateV1",
                [
                    {
                        "blockStateCalls": [
                            {
                                "blockOverrides": {
                                    "number": hex(ctx.number),
                                    "time": hex(ctx.timestamp),
                                    "feeRecipient": ctx.coinbase,
                                    "baseFeePerGas": hex(ctx.base_fee),
                                },
                                "calls": [t.to_call() for t in txs],
                            }
                        ],
                        "validation": False,
                    },
                    hex(ctx.state_block),
                ],
            )
            logs: list[dict[str, Any]] = []
            for call in reply[0]["calls"]:
                logs.extend(lg for lg in call.get("logs") or [] if isinstance(lg, dict))
            return logs
        except (KeeperError, KeyError, IndexError, TypeError) as exc:
            log.info("mev-share: could not simulate logs for a hint: %s", exc)
            return None

    # -- stream and history ----------------------------------------------------------------------

    def publish(self, hint: dict[str, Any], block: int) -> None:
        """Sends `hint` to every stream subscriber and records it in the history."""
        self.stats["hints"] += 1
        self.history.append(HistoryEntry(block, int(time.time()), hint))
        frame = b"data: " + orjson.dumps(hint) + b"\n\n"
        for sub in list(self._subscribers):
            if len(sub.queue) >= self.max_backlog:
                self.stats["subscribers_dropped_slow"] += 1
                self._subscribers.discard(sub)
                sub.close()
                continue
            sub.queue.append(frame)
            sub.wake.set()

    def close_streams(self) -> int:
        """Ends every open stream connection (clients see the stream end); returns how many."""
        subs = list(self._subscribers)
        self._subscribers.clear()
        for sub in subs:
            sub.close()
        return len(subs)

    async def handle_stream(self, request: web.Request) -> web.StreamResponse:
        """GET: the Server-Sent Events stream of hints."""
        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "Connection": "keep-alive",
            },
        )
        await resp.prepare(request)
        sub = _Subscriber()
        self._subscribers.add(sub)
        write_timeout = max(5.0, 4 * self.ping_interval)
        try:
            await asyncio.wait_for(resp.write(PING), write_timeout)
            while True:
                while sub.queue:
                    await asyncio.wait_for(resp.write(sub.queue.popleft()), write_timeout)
                if sub.closed:
                    break
                sub.wake.clear()
                if sub.queue or sub.closed:
                    continue
                try:
                    await asyncio.wait_for(sub.wake.wait(), self.ping_interval)
                except TimeoutError:
                    await asyncio.wait_for(resp.write(PING), write_timeout)
        except TimeoutError:
            self.stats["subscribers_dropped_slow"] += 1  # a client that does not read
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        finally:
            self._subscribers.discard(sub)
        return resp

    def history_entries(
        self,
        *,
        block_start: int | None = None,
        block_end: int | None = None,
        timestamp_start: int | None = None,
        timestamp_end: int | None = None,
        limit: int = HISTORY_MAX_LIMIT,
        offset: int = 0,
    ) -> list[HistoryEntry]:
        out = [
            e
            for e in self.history
            if (block_start is None or e.block >= block_start)
            and (block_end is None or e.block <= block_end)
            and (timestamp_start is None or e.timestamp >= timestamp_start)
            and (timestamp_end is None or e.timestamp <= timestamp_end)
        ]
        return out[offset : offset + limit]

    async def handle_history(self, request: web.Request) -> web.Response:
        """GET /api/v1/history: past hints, oldest first (MEV-Share history API)."""
        args: dict[str, int | None] = {}
        try:
            for key, name in (
                ("blockStart", "block_start"),
                ("blockEnd", "block_end"),
                ("timestampStart", "timestamp_start"),
                ("timestampEnd", "timestamp_end"),
                ("limit", "limit"),
                ("offset", "offset"),
            ):
                raw = request.query.get(key)
                value = None if raw is None else int(raw)
                args[name] = None if value is None else _non_negative(value, key)
        except ValueError as exc:
            return web.json_response({"error": f"bad query: {exc}"}, status=400)
        limit = min(args.pop("limit") or HISTORY_MAX_LIMIT, HISTORY_MAX_LIMIT)
        offset = args.pop("offset") or 0
        entries = self.history_entries(**args, limit=limit, offset=offset)
        return web.Response(
            body=orjson.dumps([e.to_json() for e in entries]), content_type="application/json"
        )

    async def handle_history_info(self, request: web.Request) -> web.Response:
        """GET /api/v1/history/info: size and range of the history."""
        h = self.history
        info = {
            "count": len(h),
            "minBlock": min((e.block for e in h), default=0),
            "maxBlock": max((e.block for e in h), default=0),
            "minTimestamp": min((e.timestamp for e in h), default=0),
            "maxTimestamp": max((e.timestamp for e in h), default=0),
            "maxLimit": HISTORY_MAX_LIMIT,
        }
        return web.Response(body=orjson.dumps(info), content_type="application/json")

    # -- auctions (pre-build) ----------------------------------------------------------------------

    async def before_block(self) -> None:
        """Runs the auctions for the next block and hands the winners (and shared bundles) to the builder."""
        if not self.items:
            return
        _, ctx = await self.builder.next_context()
        n = ctx.number
        self._expire(n)
        private = {p.tx.hash for p in self.builder.private_txs}
        for item in list(self.items.values()):
            if item.kind == "tx" and item.hash not in private:
                self._forget(item.hash)  # included or dropped by the builder
                continue
            if not item.first_block <= n <= item.max_block:
                continue
            if item.kind == "bundle":
                self.builder.add_bundle(
                    Bundle(
                        txs=item.txs,
                        block_number=n,
                        bundle_hash=item.hash,
                        reverting_tx_hashes=item.can_revert,
                        signer=item.signer,
                        received_at=item.received_at,
                    )
                )
            candidates = [
                b for b in self.backruns.values() if b.target == item.hash and b.block <= n <= b.max_block
            ]
            if candidates:
                await self._auction(item, candidates, ctx)

    def _expire(self, n: int) -> None:
        for h, item in list(self.items.items()):
            if item.max_block < n:
                self._forget(h)
                self.stats["items_expired"] += 1
        for h, b in list(self.backruns.items()):
            if b.max_block < n:
                del self.backruns[h]
                self.stats["backruns_expired"] += 1
        for h, m in list(self._pending.items()):
            if m.block < n:
                del self._pending[h]

    async def _auction(self, item: SharedItem, candidates: list[Backrun], ctx: BlockContext) -> None:
        n = ctx.number
        senders = [t.sender for t in item.txs] + [t.sender for b in candidates for t in b.txs]
        nonces = await fetch_nonces(self.rpc, senders, ctx.state_block)
        # The sender's earlier private transactions still pending come first (nonce order): an oracle's
        # transmitter sends several updates at once, and a backrun of a later one runs after them all.
        ahead = self.builder.nonce_prerequisites(item.txs, nonces)
        item_hashes = {t.hash for t in (*ahead, *item.txs)}
        k = len(ahead) + len(item.txs)
        bids: dict[str, int] = {}
        percents: dict[str, int] = {}
        refunds: dict[str, int] = {}
        rejected: dict[str, str] = {}
        for b in candidates:
            try:
                sim = await simulate(self.rpc, [*ahead, *item.txs, *b.txs], ctx, nonces=nonces)
            except SimulationError as exc:
                if exc.tx_hash in item_hashes:
                    log.info("mev-share: item %s not includable in block %d: %s", item.hash, n, exc)
                    return
                rejected[b.bundle_hash] = str(exc)
                continue
            head = sim.results[len(ahead) : k]
            if item.kind == "bundle" and any(
                not r.success and r.tx.hash not in item.can_revert for r in head
            ):
                log.info("mev-share: bundle %s reverts in block %d; no auction", item.hash, n)
                return
            tail = sim.results[k:]
            bad = next((r for r in tail if not r.success and r.tx.hash not in b.can_revert), None)
            if bad is not None:
                rejected[b.bundle_hash] = f"tx {bad.tx.hash} reverts and canRevert is false"
                continue
            bid = sum(r.coinbase_diff for r in tail)
            if bid <= 0:
                rejected[b.bundle_hash] = "the backrun pays the builder nothing"
                continue
            bids[b.bundle_hash] = bid
            percents[b.bundle_hash] = max(item.refund_percent, b.refund_percent or 0)
            refunds[b.bundle_hash] = bid * percents[b.bundle_hash] // 100
        winner: Backrun | None = None
        if bids:
            winner = max(
                (self.backruns[h] for h in bids),
                key=lambda b: (refunds[b.bundle_hash], bids[b.bundle_hash], -b.seq),
            )
        merged: Bundle | None = None
        if winner is not None:
            txs = (*item.txs, *winner.txs)
            merged = Bundle(
                txs=txs,
                block_number=n,
                bundle_hash=bundle_hash(txs),
                reverting_tx_hashes=item.can_revert | winner.can_revert,
                signer=winner.signer,
                received_at=winner.received_at,
            )
            self.builder.add_bundle(merged)
            self._pending[merged.bundle_hash] = _Match(
                item=item,
                backrun=winner,
                block=n,
                bid=bids[winner.bundle_hash],
                percent=percents[winner.bundle_hash],
                refund=refunds[winner.bundle_hash],
            )
        self.auctions.setdefault(n, []).append(
            Auction(
                block=n,
                target=item.hash,
                bids=bids,
                refunds=refunds,
                rejected=rejected,
                winner=None if winner is None else winner.bundle_hash,
                merged_bundle=None if merged is None else merged.bundle_hash,
            )
        )
        for h, why in rejected.items():
            log.info("mev-share: block %d: backrun %s of %s rejected: %s", n, h, item.hash, why)

    # -- settlement (post-build) -----------------------------------------------------------------

    async def after_block(self, built: BuiltBlock) -> None:
        """Forgets what landed in `built` and pays the refunds of the backruns it included."""
        included = set(built.bundles)
        in_block = set(built.tx_hashes)
        for h, m in list(self._pending.items()):
            if m.block != built.number:
                continue
            del self._pending[h]
            if h in included and m.item.hash in self.items:
                self.stats["merged_included"] += 1
                self._forget(m.item.hash)
                await self._pay(built, m)
        for h, item in list(self.items.items()):
            landed = h in included if item.kind == "bundle" else item.txs[0].hash in in_block
            if landed:
                self.stats["items_included_alone"] += 1
                self._forget(h)

    async def _pay(self, built: BuiltBlock, m: _Match) -> None:
        recipient = m.item.refund_recipient
        tx_hash: str | None = None
        error: str | None = None
        if m.refund > 0:
            try:
                code = await self.rpc.call("eth_getCode", [recipient, "latest"])
                tx = {
                    "from": self.builder.coinbase,
                    "to": recipient,
                    "value": hex(m.refund),
                    "gas": hex(REFUND_GAS if code not in (None, "0x") else 21_000),
                    # the next block's base fee rises by at most an eighth
                    "maxFeePerGas": hex(built.base_fee + built.base_fee // 8 + 1),
                    "maxPriorityFeePerGas": "0x0",
                }
                await self.rpc.call("anvil_impersonateAccount", [self.builder.coinbase])
                tx_hash = str(await self.rpc.call("eth_sendTransaction", [tx])).lower()
            except JsonRpcError as exc:
                error = exc.message
                log.warning("mev-share: refund of %d wei to %s not sent: %s", m.refund, recipient, error)
        self.refunds.append(
            Refund(
                block=built.number,
                target=m.item.hash,
                backrun=m.backrun.bundle_hash,
                recipient=recipient,
                bid=m.bid,
                percent=m.percent,
                amount=m.refund,
                tx_hash=tx_hash,
                error=error,
            )
        )


__all__ = [
    "DEFAULT_REFUND_PERCENT",
    "HINTS",
    "HISTORY_MAX_LIMIT",
    "MAX_INCLUSION_BLOCKS",
    "SWAP_TOPICS",
    "Auction",
    "Backrun",
    "HistoryEntry",
    "MevShare",
    "Refund",
    "SharedItem",
    "backrun_hash",
    "build_hint",
]
