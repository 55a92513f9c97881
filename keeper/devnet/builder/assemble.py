"""Selection and block building for the devnet builder (`Builder`): bundles, private txs, the mempool.

Building block N: the public pool is read (`txpool_content` + `eth_getRawTransactionByHash`) and emptied
(`anvil_dropTransaction`), bundles for N are simulated (`keeper.devnet.builder.simulate`) and chosen
(highest bundle gas price first, skipping conflicts), the timestamp and base fee are pinned to the
simulated ones, the chosen bundle transactions are sent to anvil's pool first, then private transactions,
then the public ones (minus those made invalid by the bundles; highest tip first, each sender in nonce
order, as their arrival order is unknown), and `evm_mine` mines them; with FIFO ordering anvil keeps that
order (checked at start-up: `anvil_nodeInfo.transactionOrder`). The mined block is checked afterwards
(`BuiltBlock.order_ok`). The known limits are listed in `keeper.devnet.builder`'s docstring.

Nonce order (as real builders treat orders, e.g. rbuilder, which parks an order until the sender nonces
it needs are reached by what the block already holds): a bundle whose transaction from sender S has a
nonce above S's next one is not dropped when the private pool holds S's missing transactions; those
are placed right before the bundle, in nonce order (`nonce_prerequisites`). When one of them is the
first transaction of another candidate bundle (a backrun merged with it by the MEV-Share matchmaker),
that bundle is tried first, so S's updates land in nonce order, each followed by its own backrun.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.devnet.builder.decode import SignedTx, TxDecodeError, decode_raw_tx, to_hex
from keeper.devnet.builder.simulate import (
    BlockContext,
    SimResult,
    SimulationError,
    TxResult,
    fetch_nonces,
    next_base_fee,
    simulate,
)
from keeper.errors import DevnetError, JsonRpcError, RelayError

log = logging.getLogger(__name__)

PreBuildHook = Callable[[], Awaitable[object]]
"""Runs before each block is built, under the builder's lock: sends public transactions that should
compete for that block (the devnet's background arbitrageur). A failing hook is logged; the block is
built anyway."""
PostBuildHook = Callable[["BuiltBlock"], Awaitable[object]]
"""Runs after each block is mined, under the builder's lock, with that block (the devnet's MEV-Share
matchmaker settles its auctions). A failing hook is logged."""

# keccak256 of a label, so it collides with nothing deployed on the devnet.
BUILDER_COINBASE: Final = "0x02e3D45EB271b46817fBCf94e1C2174a212F8b76"  # "keeper devnet builder coinbase"

MAX_BUNDLE_TXS: Final = 100
MAX_BUNDLE_BYTES: Final = 300_000
PRIVATE_TX_BLOCKS: Final = 25
MAX_BLOCK_RECORDS: Final = 10_000


@dataclass(slots=True)
class Bundle:
    txs: tuple[SignedTx, ...]
    block_number: int
    bundle_hash: str
    reverting_tx_hashes: frozenset[str] = frozenset()
    min_timestamp: int | None = None
    max_timestamp: int | None = None
    replacement_uuid: str | None = None
    signer: str | None = None
    received_at: float = 0.0
    seq: int = 0

    def disallowed_revert(self, results: Iterable[TxResult]) -> TxResult | None:
        for r in results:
            if not r.success and r.tx.hash not in self.reverting_tx_hashes:
                return r
        return None


@dataclass(slots=True)
class PrivateTx:
    tx: SignedTx
    max_block_number: int
    signer: str | None = None
    received_at: float = 0.0


@dataclass(frozen=True, slots=True)
class BuiltBlock:
    number: int
    hash: str
    timestamp: int
    base_fee: int
    tx_hashes: tuple[str, ...]
    bundles: tuple[str, ...]
    """Hashes of the bundles included, in block order."""
    skipped: dict[str, str]
    """Bundle hash -> why it was not included (for bundles that targeted this block)."""
    private_txs: tuple[str, ...]
    public_txs: tuple[str, ...]
    dropped_public: tuple[str, ...]
    """Public transactions made invalid by bundle/private transactions (same sender nonce)."""
    order_ok: bool
    """The block starts with exactly the bundle transactions, in order."""
    elapsed_s: float
    exposure_s: float
    """Time the bundle and private txs spent in anvil's pool (visible to subscribers) before mining."""


@dataclass(slots=True)
class _Selection:
    bundles: list[Bundle] = field(default_factory=list)
    txs: list[SignedTx] = field(default_factory=list)
    sims: dict[str, SimResult] = field(default_factory=dict)
    ahead: dict[str, list[SignedTx]] = field(default_factory=dict)
    """Bundle hash -> private transactions placed right before it (its senders' missing nonces)."""

    def pulled(self) -> list[SignedTx]:
        return [t for b in self.bundles for t in self.ahead.get(b.bundle_hash, ())]


def _bundle_key(b: Bundle) -> tuple[str, str, str]:
    if b.replacement_uuid is not None:
        return ("uuid", (b.signer or "").lower(), b.replacement_uuid)
    return ("hash", b.bundle_hash, str(b.block_number))


class ReadWriteLock:
    """Many readers at once, or one writer (asyncio; writers are not starved: a waiting writer holds off
    new readers)."""

    def __init__(self) -> None:
        self._gate = asyncio.Lock()
        self._readers = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[None]:
        async with self._gate:
            self._readers += 1
            self._idle.clear()
        try:
            yield
        finally:
            self._readers -= 1
            if self._readers == 0:
                self._idle.set()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[None]:
        async with self._gate:
            await self._idle.wait()
            yield


class Builder:
    """Holds bundles and private transactions; simulates; builds and mines anvil blocks.

    A read-write lock orders simulations and block builds: simulations (eth_simulateV1 on a fixed state
    block, which changes no state) run concurrently with each other, as a real builder's do; a build
    waits for the running simulations and holds off new ones while it changes anvil's state.
    """

    def __init__(self, rpc: RpcClient, *, coinbase: str = BUILDER_COINBASE) -> None:
        self.rpc = rpc
        self.coinbase = coinbase
        self.lock = ReadWriteLock()
        self._unsigned: dict[str, dict[str, Any]] = {}
        """Impersonated senders' pool txs taken out during a build, re-queued unsigned (see _take_pool)."""
        self.chain_id = 0
        self.pre_build: list[PreBuildHook] = []
        """Called in order before every block build (see `PreBuildHook`)."""
        self.post_build: list[PostBuildHook] = []
        """Called in order after every block build (see `PostBuildHook`)."""
        self._bundles: dict[tuple[str, str, str], Bundle] = {}
        self._private: dict[str, PrivateTx] = {}
        self._seq = 0
        self.included: dict[int, list[str]] = {}
        self.blocks: dict[int, BuiltBlock] = {}
        self.stats: dict[str, int] = {
            "blocks": 0,
            "bundles_included": 0,
            "bundles_skipped": 0,
            "bundles_expired": 0,
            "private_included": 0,
            "private_expired": 0,
            "public_requeued": 0,
            "public_dropped": 0,
            "order_violations": 0,
        }

    async def setup(self) -> None:
        """Checks anvil's mode, reads the chain id, makes our coinbase the fee recipient of next blocks.

        Raises DevnetError unless anvil runs with automine off and FIFO ordering: with automine each
        transaction sent would be mined alone, and with fee ordering anvil would reorder the bundles.
        """
        info, automine = await self.rpc.batch([("anvil_nodeInfo", []), ("anvil_getAutomine", [])])
        order = info.get("transactionOrder") if isinstance(info, dict) else None
        if order != "fifo":
            raise DevnetError(
                f"the devnet builder needs anvil started with `--order fifo` (it runs with {order!r}): "
                "AnvilConfig(no_mining=True, extra_args=['--order', 'fifo'])"
            )
        if automine:
            raise DevnetError("the devnet builder needs anvil with automine off: AnvilConfig(no_mining=True)")
        self.chain_id = await self.rpc.chain_id()
        await self.rpc.call("anvil_setCoinbase", [self.coinbase])

    # -- intake ----------------------------------------------------------------------------------

    def add_bundle(self, bundle: Bundle) -> None:
        """Stores a bundle; the same (signer, replacementUuid) replaces the previous one."""
        self._seq += 1
        bundle.seq = self._seq
        self._bundles[_bundle_key(bundle)] = bundle

    def cancel_bundle(self, replacement_uuid: str, signer: str | None) -> bool:
        key = ("uuid", (signer or "").lower(), replacement_uuid)
        return self._bundles.pop(key, None) is not None

    def add_private_tx(self, ptx: PrivateTx) -> None:
        self._private[ptx.tx.hash] = ptx

    def cancel_private_tx(self, tx_hash: str) -> bool:
        return self._private.pop(tx_hash.lower(), None) is not None

    def pending_bundles(self, block_number: int | None = None) -> list[Bundle]:
        return sorted(
            (b for b in self._bundles.values() if block_number is None or b.block_number == block_number),
            key=lambda b: b.seq,
        )

    @property
    def private_txs(self) -> list[PrivateTx]:
        return list(self._private.values())

    def nonce_prerequisites(self, txs: Sequence[SignedTx], expected: dict[str, int]) -> list[SignedTx]:
        """The private transactions that must come right before `txs`: for each sender whose first
        transaction in `txs` has a nonce above `expected` (its next nonce where `txs` would start), that
        sender's private transactions with the nonces in between, in nonce order. A sender with a gap
        the private pool cannot fill gets none (the simulation then refuses the nonce, as before)."""
        first: dict[str, int] = {}
        for tx in txs:
            first.setdefault(tx.sender, tx.nonce)
        out: list[SignedTx] = []
        for sender, nonce in first.items():
            want = expected.get(sender)
            if want is None or nonce <= want:
                continue
            by_nonce = {p.tx.nonce: p.tx for p in self._private.values() if p.tx.sender == sender}
            gap = [by_nonce.get(k) for k in range(want, nonce)]
            if all(t is not None for t in gap):
                out += [t for t in gap if t is not None]
        return out

    # -- context ---------------------------------------------------------------------------------

    async def next_context(self, coinbase: str | None = None) -> tuple[dict[str, Any], BlockContext]:
        """The context of the block anvil mines next: timestamp and base fee from its pending block."""
        latest, pending = await self.rpc.batch(
            [("eth_getBlockByNumber", ["latest", False]), ("eth_getBlockByNumber", ["pending", False])]
        )
        number = hex_to_int(latest["number"])
        ts = max(hex_to_int(pending["timestamp"]), hex_to_int(latest["timestamp"]) + 1)
        base_fee = hex_to_int(pending.get("baseFeePerGas") or "0x0")
        ctx = BlockContext(
            state_block=number,
            number=number + 1,
            timestamp=ts,
            base_fee=base_fee,
            gas_limit=hex_to_int(latest["gasLimit"]),
            coinbase=coinbase or self.coinbase,
            chain_id=self.chain_id,
        )
        return latest, ctx

    async def call_bundle(
        self,
        txs: Sequence[SignedTx],
        *,
        block_number: int,
        state_block: int | None = None,
        timestamp: int | None = None,
        coinbase: str | None = None,
        base_fee: int | None = None,
        gas_limit: int | None = None,
    ) -> SimResult:
        """eth_callBundle: simulate `txs` as block `block_number` on the state after `state_block`."""
        async with self.lock.read():
            _, ctx = await self.next_context(coinbase)
            if state_block is not None and state_block != ctx.state_block:
                parent = await self.rpc.call("eth_getBlockByNumber", [hex(state_block), False])
                if parent is None:
                    raise SimulationError(f"unknown stateBlockNumber {state_block}")
                ctx = BlockContext(
                    state_block=state_block,
                    number=block_number,
                    timestamp=hex_to_int(parent["timestamp"]) + 1,
                    base_fee=next_base_fee(
                        hex_to_int(parent.get("baseFeePerGas") or "0x0"),
                        hex_to_int(parent["gasUsed"]),
                        hex_to_int(parent["gasLimit"]),
                    ),
                    gas_limit=hex_to_int(parent["gasLimit"]),
                    coinbase=ctx.coinbase,
                    chain_id=self.chain_id,
                )
            ctx = BlockContext(
                state_block=ctx.state_block,
                number=block_number,
                timestamp=ctx.timestamp if timestamp is None else timestamp,
                base_fee=ctx.base_fee if base_fee is None else base_fee,
                gas_limit=ctx.gas_limit if gas_limit is None else gas_limit,
                coinbase=ctx.coinbase,
                chain_id=self.chain_id,
            )
            return await simulate(self.rpc, txs, ctx)

    # -- the public pool -------------------------------------------------------------------------

    async def _take_pool(self) -> list[SignedTx]:
        """Reads every transaction in anvil's pool (pending and queued) and removes them from it.

        Transactions sent from accounts anvil impersonates carry no real signature (r = s = 0): they
        cannot be re-sent raw, so they are kept as JSON (`_unsigned`) and re-queued with
        `eth_sendTransaction` after the bundles (`_requeue_unsigned`), same fields and nonce.
        """
        taken: dict[str, SignedTx] = {}
        for _ in range(5):
            content = await self.rpc.call("txpool_content")
            entries: list[tuple[str, str, dict[str, Any]]] = []
            for section in ("pending", "queued"):
                for sender, by_nonce in (content.get(section) or {}).items():
                    for tx in by_nonce.values():
                        if tx["hash"] not in taken and tx["hash"] not in self._unsigned:
                            entries.append((sender, tx["hash"], tx))
            if not entries:
                break
            raws = await self.rpc.batch(
                [("eth_getRawTransactionByHash", [h]) for _, h, _ in entries], raise_errors=False
            )
            await self.rpc.batch([("anvil_dropTransaction", [h]) for _, h, _ in entries], raise_errors=False)
            for (sender, h, obj), raw in zip(entries, raws, strict=True):
                if not isinstance(raw, str):
                    log.warning("pool tx %s vanished before it could be read", h)
                    continue
                try:
                    taken[h] = decode_raw_tx(bytes.fromhex(raw[2:]), sender=sender)
                except (TxDecodeError, ValueError, TypeError):
                    self._unsigned[h] = obj  # an impersonated sender's tx: re-queued unsigned
        return _order_public(list(taken.values()))

    async def _requeue_unsigned(self) -> None:
        """Puts impersonated senders' transactions back into the pool (see `_take_pool`)."""
        unsigned, self._unsigned = self._unsigned, {}
        for h, obj in sorted(
            unsigned.items(), key=lambda kv: (kv[1].get("from", ""), kv[1].get("nonce", ""))
        ):
            tx: dict[str, Any] = {
                k: obj[k]
                for k in ("from", "to", "value", "gas", "nonce", "maxFeePerGas", "maxPriorityFeePerGas")
                if obj.get(k) is not None
            }
            if "maxFeePerGas" not in tx and obj.get("gasPrice") is not None:
                tx["gasPrice"] = obj["gasPrice"]
            tx["data"] = obj.get("input") or obj.get("data") or "0x"
            try:
                await self.rpc.call("anvil_impersonateAccount", [tx["from"]])
                await self.rpc.call("eth_sendTransaction", [tx])
            except JsonRpcError as exc:
                log.warning("impersonated pool tx %s could not be re-queued (%s); dropped", h, exc.message)

    async def _send(self, tx: SignedTx) -> str | None:
        """Sends one raw tx to anvil's pool; returns the error message, or None when accepted."""
        try:
            await self.rpc.call("eth_sendRawTransaction", [to_hex(tx.raw)])
        except JsonRpcError as exc:
            return exc.message
        return None

    async def _drop(self, hashes: Sequence[str]) -> None:
        if hashes:
            await self.rpc.batch([("anvil_dropTransaction", [h]) for h in hashes], raise_errors=False)

    # -- selection -------------------------------------------------------------------------------

    async def _select(
        self, ctx: BlockContext, candidates: list[Bundle], skipped: dict[str, str]
    ) -> _Selection:
        senders = {t.sender for b in candidates for t in b.txs} | {
            p.tx.sender for p in self._private.values()
        }
        nonces = await fetch_nonces(self.rpc, senders, ctx.state_block)
        scored: list[tuple[int, int, Bundle]] = []
        for b in candidates:
            ahead = self.nonce_prerequisites(b.txs, nonces)
            try:
                sim = await simulate(self.rpc, [*ahead, *b.txs], ctx, nonces=nonces)
            except SimulationError as exc:
                skipped[b.bundle_hash] = str(exc)
                continue
            own = sim.tail(len(ahead))
            bad = b.disallowed_revert(own.results)
            if bad is not None:
                skipped[b.bundle_hash] = f"tx {bad.tx.hash} reverts and is not in revertingTxHashes"
                continue
            scored.append((-own.bundle_gas_price, b.seq, b))
        scored.sort(key=lambda s: (s[0], s[1]))
        order = [b for _, _, b in scored]
        sel = _Selection()
        expected = dict(nonces)
        tried: set[str] = set()

        async def attempt(b: Bundle, depth: int) -> None:
            tried.add(b.bundle_hash)
            ahead = self.nonce_prerequisites(b.txs, expected)
            if ahead and depth < len(order):
                # A missing nonce that another candidate bundle starts with (a merged backrun of it):
                # that bundle goes first, with its own backrun, rather than the bare transaction.
                wanted = {t.hash for t in ahead}
                for c in order:
                    if c.bundle_hash not in tried and any(t.hash in wanted for t in c.txs):
                        await attempt(c, depth + 1)
                ahead = self.nonce_prerequisites(b.txs, expected)
            try:
                sim = await simulate(self.rpc, [*sel.txs, *ahead, *b.txs], ctx, nonces=nonces)
            except SimulationError as exc:
                skipped[b.bundle_hash] = f"conflicts with a better-paying bundle: {exc}"
                return
            mine = sim.tail(len(sel.txs) + len(ahead))
            bad = b.disallowed_revert(mine.results)
            if bad is not None:
                skipped[b.bundle_hash] = (
                    f"conflicts with a better-paying bundle: tx {bad.tx.hash} reverts on top of it"
                )
                return
            sel.bundles.append(b)
            if ahead:
                sel.ahead[b.bundle_hash] = ahead
            sel.txs.extend([*ahead, *b.txs])
            sel.sims[b.bundle_hash] = mine
            for tx in (*ahead, *b.txs):
                expected[tx.sender] = tx.nonce + 1

        for b in order:
            if b.bundle_hash not in tried:
                await attempt(b, 0)
        return sel

    # -- building --------------------------------------------------------------------------------

    async def build_block(self) -> BuiltBlock:
        """Builds and mines the next block: chosen bundles, then private, then public transactions."""
        async with self.lock.write():
            for hook in self.pre_build:
                try:
                    await hook()
                except Exception as exc:  # an arbitrageur's failure must not stop block production
                    log.warning("pre-build hook %r failed: %s", hook, exc)
            built = await self._build_block()
            for post in self.post_build:
                try:
                    await post(built)
                except Exception as exc:  # settlement must not stop block production
                    log.warning("post-build hook %r failed: %s", post, exc)
            return built

    async def _build_block(self) -> BuiltBlock:
        t0 = time.perf_counter()
        _, ctx = await self.next_context()
        n = ctx.number
        skipped: dict[str, str] = {}
        for key, b in list(self._bundles.items()):
            if b.block_number < n:
                del self._bundles[key]
                self.stats["bundles_expired"] += 1
        for h, p in list(self._private.items()):
            if p.max_block_number < n:
                del self._private[h]
                self.stats["private_expired"] += 1

        public: list[SignedTx] = []
        sel = _Selection()
        private_sent: list[SignedTx] = []
        dropped_public: list[str] = []
        exposed_at: float | None = None
        if self.pending_bundles(n) or self._private:
            try:
                # Empty the pool first: with FIFO ordering, whatever is sent first is mined first.
                public = await self._take_pool()
                _, ctx = await self.next_context()  # with an empty pool the pending block is cheap
                candidates: list[Bundle] = []
                for b in self.pending_bundles(n):
                    if b.min_timestamp and ctx.timestamp < b.min_timestamp:
                        skipped[b.bundle_hash] = f"timestamp {ctx.timestamp} < minTimestamp {b.min_timestamp}"
                    elif b.max_timestamp and ctx.timestamp > b.max_timestamp:
                        skipped[b.bundle_hash] = f"timestamp {ctx.timestamp} > maxTimestamp {b.max_timestamp}"
                    else:
                        candidates.append(b)
                await self._pin(ctx)
                excluded: set[str] = set()
                while True:
                    sel = await self._select(
                        ctx, [b for b in candidates if b.bundle_hash not in excluded], skipped
                    )
                    public += await self._take_pool()  # anything that arrived while simulating
                    exposed_at = time.perf_counter()
                    failed = await self._send_bundles(sel, skipped)
                    if failed is None:
                        break
                    excluded.add(failed.bundle_hash)
                    sel = _Selection()
                private_sent, dropped_public = await self._queue_rest(ctx, sel, public)
                await self._requeue_unsigned()
            except BaseException:
                await self._recover(sel, private_sent, public)
                raise
        else:
            await self._pin(ctx)
        await self.rpc.call("evm_mine")
        exposure = 0.0 if exposed_at is None else time.perf_counter() - exposed_at
        return await self._after_mine(ctx, sel, skipped, private_sent, public, dropped_public, t0, exposure)

    async def _recover(self, sel: _Selection, private_sent: list[SignedTx], public: list[SignedTx]) -> None:
        """A build failed before mining: take bundle/private txs back out of the pool and put the
        public ones back in (best effort; errors such as "already known" are expected and ignored)."""
        try:
            await self._drop([t.hash for t in sel.txs] + [t.hash for t in private_sent])
            for tx in public:
                await self._send(tx)
            await self._requeue_unsigned()
        except Exception as exc:
            log.error("could not restore anvil's pool after a failed build: %s", exc)

    async def _pin(self, ctx: BlockContext) -> None:
        """Makes anvil mine the next block with exactly the simulated timestamp and base fee."""
        await self.rpc.call("evm_setNextBlockTimestamp", [ctx.timestamp])
        await self.rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(ctx.base_fee)])

    async def _send_bundles(self, sel: _Selection, skipped: dict[str, str]) -> Bundle | None:
        """Sends the selected bundles' txs in order. If the pool refuses one, removes everything sent
        and returns that bundle (the selection is then redone without it)."""
        sent: list[str] = []
        for b in sel.bundles:
            for tx in (*sel.ahead.get(b.bundle_hash, ()), *b.txs):
                err = await self._send(tx)
                if err is not None:
                    skipped[b.bundle_hash] = f"rejected by the node's pool: {err}; txhash {tx.hash}"
                    await self._drop(sent)
                    return b
                sent.append(tx.hash)
        return None

    async def _queue_rest(
        self, ctx: BlockContext, sel: _Selection, public: list[SignedTx]
    ) -> tuple[list[SignedTx], list[str]]:
        """Sends private then public transactions after the bundles; returns (private sent, dropped)."""
        senders = {t.sender for t in sel.txs} | {p.tx.sender for p in self._private.values()}
        senders |= {t.sender for t in public}
        expected = await fetch_nonces(self.rpc, senders, ctx.state_block)
        for tx in sel.txs:
            expected[tx.sender] = tx.nonce + 1
        private_sent: list[SignedTx] = sel.pulled()  # sent already, right before their bundles
        pulled = {t.hash for t in private_sent}
        for p in sorted(self._private.values(), key=lambda p: (p.received_at, p.tx.nonce)):
            tx = p.tx
            if tx.hash in pulled:
                continue
            want = expected[tx.sender]
            if tx.nonce < want:
                log.info("private tx %s is stale (nonce %d < %d); dropped", tx.hash, tx.nonce, want)
                del self._private[tx.hash]
                continue
            if tx.nonce > want or tx.max_fee < ctx.base_fee:
                continue  # not yet includable; stays private
            err = await self._send(tx)
            if err is None:
                private_sent.append(tx)
                expected[tx.sender] = want + 1
            else:
                log.info("private tx %s not includable in block %d: %s", tx.hash, ctx.number, err)
        dropped: list[str] = []
        for tx in public:
            if tx.nonce < expected.get(tx.sender, 0):
                dropped.append(tx.hash)
                continue
            err = await self._send(tx)
            if err is not None:
                log.info("public tx %s not re-queued: %s", tx.hash, err)
                dropped.append(tx.hash)
        self.stats["public_requeued"] += len(public) - len(dropped)
        self.stats["public_dropped"] += len(dropped)
        return private_sent, dropped

    async def _after_mine(
        self,
        ctx: BlockContext,
        sel: _Selection,
        skipped: dict[str, str],
        private_sent: list[SignedTx],
        public: list[SignedTx],
        dropped_public: list[str],
        t0: float,
        exposure: float,
    ) -> BuiltBlock:
        block = await self.rpc.call("eth_getBlockByNumber", [hex(ctx.number), False])
        if block is None:
            raise RelayError(f"block {ctx.number} missing after evm_mine (mined elsewhere?)")
        tx_hashes = tuple(str(h).lower() for h in block["transactions"])
        expected = [t.hash for t in sel.txs]
        order_ok = list(tx_hashes[: len(expected)]) == expected
        if not order_ok:
            self.stats["order_violations"] += 1
            log.error(
                "block %d does not start with the bundle txs in order: expected %s, got %s",
                ctx.number,
                expected,
                list(tx_hashes[: len(expected)]),
            )
        if expected:
            receipts = await self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in expected])
            by_hash = {r["transactionHash"].lower(): r for r in receipts if r}
            for b in sel.bundles:
                for r in sel.sims[b.bundle_hash].results:
                    rec = by_hash.get(r.tx.hash)
                    if rec is None or (rec["status"] == "0x1") != r.success:
                        log.error(
                            "bundle %s tx %s: mined status differs from simulation", b.bundle_hash, r.tx.hash
                        )
        in_block = set(tx_hashes)
        private_included = [t.hash for t in private_sent if t.hash in in_block]
        leftover = [t.hash for t in private_sent if t.hash not in in_block]
        await self._drop(leftover)  # never leave a private tx in the public pool
        for h in private_included:
            self._private.pop(h, None)
        for key, b in list(self._bundles.items()):
            if b.block_number <= ctx.number:
                del self._bundles[key]
        bundles = tuple(b.bundle_hash for b in sel.bundles)
        for h, why in skipped.items():
            log.info("block %d: bundle %s skipped: %s", ctx.number, h, why)
        self.included[ctx.number] = list(bundles)
        self.stats["blocks"] += 1
        self.stats["bundles_included"] += len(bundles)
        self.stats["bundles_skipped"] += len(skipped)
        self.stats["private_included"] += len(private_included)
        built = BuiltBlock(
            number=ctx.number,
            hash=str(block["hash"]),
            timestamp=hex_to_int(block["timestamp"]),
            base_fee=hex_to_int(block.get("baseFeePerGas") or "0x0"),
            tx_hashes=tx_hashes,
            bundles=bundles,
            skipped=skipped,
            private_txs=tuple(private_included),
            public_txs=tuple(t.hash for t in public if t.hash in in_block),
            dropped_public=tuple(dropped_public),
            order_ok=order_ok,
            elapsed_s=time.perf_counter() - t0,
            exposure_s=exposure,
        )
        self.blocks[ctx.number] = built
        while len(self.blocks) > MAX_BLOCK_RECORDS:
            del self.blocks[next(iter(self.blocks))]
        return built


def _order_public(txs: list[SignedTx]) -> list[SignedTx]:
    """Highest tip first, each sender's transactions in nonce order (what a fee-ordering miner does)."""
    by_sender: dict[str, list[SignedTx]] = {}
    for tx in txs:
        by_sender.setdefault(tx.sender, []).append(tx)
    heap: list[tuple[int, int, str, int]] = []
    for i, (sender, lst) in enumerate(by_sender.items()):
        lst.sort(key=lambda t: t.nonce)
        heap.append((-lst[0].max_priority_fee, i, sender, 0))
    heapq.heapify(heap)
    out: list[SignedTx] = []
    while heap:
        _, i, sender, k = heapq.heappop(heap)
        lst = by_sender[sender]
        out.append(lst[k])
        if k + 1 < len(lst):
            heapq.heappush(heap, (-lst[k + 1].max_priority_fee, i, sender, k + 1))
    return out
