"""Single transactions through the public mempool or a private relay (protocol-keeper mode).

`PublicSender` turns a `TxIntent` into a signed type-2 transaction from our key, sends it with
`eth_sendRawTransaction` (`KEEPER_SUBMIT=public`) or `eth_sendPrivateTransaction` to a relay
(`KEEPER_SUBMIT=private`), and tracks it per nonce until it is buried `track_depth` blocks deep.

Driving: no background task. The caller's block loop calls `await sender.on_new_block(number)` once per
head; each call costs one batched JSON-RPC round trip (header, both nonce counts, a receipt per live
hash), then acts:
- mined: the attempt whose receipt exists is recorded; there is one per nonce by construction (all
  attempts share the nonce). A receipt that disappears (reorg) puts the tx back to pending and the mined
  raw tx is re-broadcast.
- stuck for `stuck_blocks` (default 3) blocks since the last send: replaced at the same nonce with both
  maxFeePerGas and maxPriorityFeePerGas raised by `bump_bps` (default 12.5%; at least 10%, geth's
  replacement rule), or straight to what the next block's base fee needs if that is higher, never
  above the tx's `max_fee_cap`. When the cap leaves no room for a valid replacement the sender stops
  bumping, logs an alert (once) and only re-broadcasts (nodes such as anvil evict txs whose fee cap is
  below the base fee).
- cancel (`cancel(nonce)`, for a tx that became pointless): the same nonce is replaced by a 0-value
  self-transfer (21000 gas) with bumped fees; later bumps keep the no-op.
- nonce gaps (a reserved nonce never sent): filled with a tracked no-op; "nonce too low" on send (another
  process used our key) re-syncs the NonceManager and retries with a fresh nonce (`nonce_retries`).

Integers only: wei, wei per gas, gas. Secrets: the funds key stays in the TxSigner; relay URLs appear only
redacted; the relay identity key stays in its FlashbotsSigner.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal, Protocol

import aiohttp
import orjson

from keeper.chain.flashbots_auth import HEADER, FlashbotsSigner
from keeper.chain.redact import redact_url
from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.chain.signer import Eip1559Tx, SignedTx, TxSigner
from keeper.core.actions import SendMode, TxIntent
from keeper.errors import JsonRpcError, KeeperError, RelayError, RpcError, RpcTransportError
from keeper.executors.fees import FeeCaps, bump_fees, fee_caps_for_target, next_base_fee_from_header
from keeper.executors.nonce import ChainNonces, NonceManager, is_nonce_too_low
from keeper.logs import kv

log = logging.getLogger(__name__)

GWEI: Final = 10**9
NOOP_GAS: Final = 21_000

ErrorKind = Literal["nonce_low", "known", "base_fee", "replacement", "underpriced", "other"]


class SendError(KeeperError):
    """The node or relay refused a transaction for a reason a retry will not fix."""


class PrivateTxSender(Protocol):
    """A relay client that can send one private tx (PrivateRelay here; bundles.BundleClient fits too)."""

    async def send_private_transaction(self, tx: bytes) -> str: ...


def classify_error(exc: BaseException) -> ErrorKind:
    text = (exc.message if isinstance(exc, JsonRpcError) else str(exc)).lower()
    if is_nonce_too_low(exc):
        return "nonce_low"
    if any(m in text for m in ("already known", "already imported", "known transaction", "alreadyknown")):
        return "known"
    if "base fee" in text or "basefee" in text or "fee cap less than" in text:
        return "base_fee"
    if "replacement" in text and "underpriced" in text:
        return "replacement"
    if "underpriced" in text:
        return "underpriced"
    return "other"


class TxState(StrEnum):
    PENDING = "pending"
    MINED = "mined"
    """One of our attempts is in a block (a cancel's no-op too: see `cancelled`)."""
    DROPPED = "dropped"
    """The nonce was consumed by a transaction that is none of our attempts (another process)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    signed: SignedTx
    fees: FeeCaps
    block: int
    """Head block number when sent."""
    noop: bool
    accepted: bool | None
    """True: the node/relay took it; False: refused (e.g. fee cap below base fee); None: unknown."""
    error: str | None = None

    @property
    def hash(self) -> str:
        return self.signed.hash_hex


@dataclass(eq=False, slots=True)
class TrackedTx:
    nonce: int
    intent: TxIntent
    gas_limit: int
    max_fee_cap: int
    noop: bool = False
    """True for gap fills (the intent is the no-op itself)."""
    attempts: list[Attempt] = field(default_factory=list)
    state: TxState = TxState.PENDING
    cancel_requested: bool = False
    at_cap: bool = False
    last_send_block: int = 0
    mined_hash: str | None = None
    mined_block: int | None = None
    receipt: dict[str, Any] | None = None
    _done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def current(self) -> Attempt:
        return self.attempts[-1]

    @property
    def hashes(self) -> tuple[str, ...]:
        return tuple(a.hash for a in self.attempts)

    @property
    def mined_attempt(self) -> Attempt | None:
        return next((a for a in self.attempts if a.hash == self.mined_hash), None)

    @property
    def cancelled(self) -> bool:
        """A no-op we sent in place of the intent was mined."""
        a = self.mined_attempt
        return a is not None and a.noop and not self.noop

    @property
    def succeeded(self) -> bool:
        """The intended call (not a no-op) was mined and did not revert."""
        a = self.mined_attempt
        return (
            a is not None
            and not a.noop
            and self.receipt is not None
            and hex_to_int(self.receipt.get("status", "0x0")) == 1
        )

    async def wait(self, timeout: float) -> TxState:
        """Until mined or dropped (not until final); raises TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            await self._done.wait()
        return self.state


class PrivateRelay:
    """Minimal `eth_sendPrivateTransaction` client (Flashbots Protect style), signed request bodies."""

    def __init__(
        self,
        url: str,
        identity: FlashbotsSigner,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 5.0,
        max_blocks: int | None = None,
        current_block: int | None = None,
    ) -> None:
        self._url = url
        self._identity = identity
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ids = itertools.count(1)
        self.max_blocks = max_blocks
        self.current_block = current_block
        """Set by the caller each block when max_blocks is used (maxBlockNumber = current + max)."""

    def __repr__(self) -> str:
        return f"PrivateRelay({redact_url(self._url)}, identity={self._identity.address})"

    async def close(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def send_private_transaction(self, tx: bytes) -> str:
        params: dict[str, Any] = {"tx": "0x" + tx.hex()}
        if self.max_blocks is not None and self.current_block is not None:
            params["maxBlockNumber"] = hex(self.current_block + self.max_blocks)
        body = orjson.dumps(
            {
                "jsonrpc": "2.0",
                "id": next(self._ids),
                "method": "eth_sendPrivateTransaction",
                "params": [params],
            }
        )
        headers = {"Content-Type": "application/json", HEADER: self._identity.sign(body)}
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        where = redact_url(self._url)
        try:
            async with self._session.post(
                self._url, data=body, headers=headers, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            raise RelayError(f"{type(exc).__name__} talking to {where}") from None
        try:
            reply = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise RelayError(f"non-JSON reply (HTTP {status}) from {where}", status=status) from None
        if isinstance(reply, dict) and reply.get("error") is not None:
            err = reply["error"]
            message = str(err.get("message", err) if isinstance(err, dict) else err)[:200]
            code = err.get("code") if isinstance(err, dict) else None
            raise RelayError(
                f"{where}: {message}", code=code if isinstance(code, int) else None, status=status
            )
        result = reply.get("result") if isinstance(reply, dict) else None
        if not isinstance(result, str):
            raise RelayError(f"{where}: reply has no tx hash (HTTP {status})", status=status)
        return result


class PublicSender:
    """Sends and shepherds single transactions for one key. See the module docstring."""

    def __init__(
        self,
        rpc: RpcClient,
        signer: TxSigner,
        nonces: NonceManager,
        *,
        chain_id: int,
        mode: SendMode = SendMode.PUBLIC,
        relay: PrivateTxSender | None = None,
        priority_fee: int = GWEI,
        stuck_blocks: int = 3,
        bump_bps: int = 1_250,
        blocks_ahead: int = 3,
        gas_margin_bps: int = 2_000,
        track_depth: int = 6,
        nonce_retries: int = 3,
        noop_fee_cap: int | None = None,
        chase_base_fee: bool = True,
    ) -> None:
        if mode is SendMode.PRIVATE and relay is None:
            raise ValueError("private mode needs a relay")
        if bump_bps < 1_000:
            raise ValueError("bump_bps must be >= 1000 (10%): nodes refuse smaller replacements")
        if nonces.address.lower() != signer.address.lower():
            raise ValueError("the NonceManager tracks another address than the signer's")
        self._rpc = rpc
        self._signer = signer
        self.nonces = nonces
        self.chain_id = chain_id
        self.mode = mode
        self._relay = relay
        self.priority_fee = priority_fee
        self.stuck_blocks = stuck_blocks
        self.bump_bps = bump_bps
        self.blocks_ahead = blocks_ahead
        self.gas_margin_bps = gas_margin_bps
        self.track_depth = track_depth
        self.nonce_retries = nonce_retries
        self.noop_fee_cap = noop_fee_cap
        self.chase_base_fee = chase_base_fee
        """Replacements jump to what the next blocks' base fee needs when that exceeds the bump."""
        self._tracked: dict[int, TrackedTx] = {}
        self._head = 0
        self._next_base_fee: int | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PublicSender(address={self._signer.address}, mode={self.mode}, tracked={len(self._tracked)})"

    @property
    def address(self) -> str:
        return self._signer.address

    @property
    def head(self) -> int:
        return self._head

    @property
    def next_base_fee(self) -> int | None:
        return self._next_base_fee

    def tracked(self, nonce: int) -> TrackedTx | None:
        return self._tracked.get(nonce)

    @property
    def live(self) -> tuple[TrackedTx, ...]:
        return tuple(self._tracked[n] for n in sorted(self._tracked))

    # ---- set-up -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Syncs nonces from the chain and reads the head's base fee."""
        if not self.nonces.started:
            await self.nonces.start()
        header = await self._rpc.call("eth_getBlockByNumber", ["latest", False])
        self._apply_header(header)

    def _apply_header(self, header: Any) -> None:
        if not isinstance(header, dict):
            raise RpcError("eth_getBlockByNumber returned no block")
        self._head = hex_to_int(header["number"])
        self._next_base_fee = next_base_fee_from_header(header)
        if isinstance(self._relay, PrivateRelay):
            self._relay.current_block = self._head

    # ---- sending ------------------------------------------------------------------------------

    async def _submit(self, raw: bytes) -> None:
        hex_raw = "0x" + raw.hex()
        if self.mode is SendMode.PRIVATE:
            assert self._relay is not None
            await self._relay.send_private_transaction(raw)
        else:
            await self._rpc.call("eth_sendRawTransaction", [hex_raw])

    async def _try_submit(self, raw: bytes) -> tuple[bool | None, ErrorKind | None, str | None]:
        """(accepted, error kind, error text); transport failures are "unknown" (None)."""
        try:
            await self._submit(raw)
        except RpcTransportError as exc:
            return None, None, str(exc)
        except (JsonRpcError, RelayError) as exc:
            kind = classify_error(exc)
            if kind == "known":
                return True, None, None
            return False, kind, str(exc)[:200]
        return True, None, None

    def _build(self, nonce: int, intent: TxIntent, gas: int, fees: FeeCaps) -> SignedTx:
        return self._signer.sign(
            Eip1559Tx(
                chain_id=self.chain_id,
                nonce=nonce,
                max_priority_fee_per_gas=fees.max_priority_fee_per_gas,
                max_fee_per_gas=fees.max_fee_per_gas,
                gas=gas,
                to=intent.to,
                value=intent.value,
                data=intent.data,
            )
        )

    def _noop_intent(self) -> TxIntent:
        return TxIntent(to=self._signer.address, data=b"", value=0, gas_limit=NOOP_GAS)

    async def _base_fee(self) -> int:
        if self._next_base_fee is None:
            await self.start()
        assert self._next_base_fee is not None
        return self._next_base_fee

    def _initial_fees(self, base_fee: int, cap: int) -> FeeCaps:
        caps = fee_caps_for_target(base_fee, self.blocks_ahead, self.priority_fee)
        fee = min(caps.max_fee_per_gas, cap)
        return FeeCaps(max_fee_per_gas=fee, max_priority_fee_per_gas=min(self.priority_fee, fee))

    async def estimate_gas(self, intent: TxIntent) -> int:
        call: dict[str, Any] = {
            "from": self._signer.address,
            "to": intent.to,
            "data": "0x" + intent.data.hex(),
            "value": hex(intent.value),
        }
        gas = hex_to_int(await self._rpc.call("eth_estimateGas", [call]))
        return gas + gas * self.gas_margin_bps // 10_000

    async def send(self, intent: TxIntent, *, max_fee_cap: int) -> TrackedTx:
        """Signs and sends `intent` at a fresh nonce; returns its tracker (driven by on_new_block).

        `max_fee_cap` (wei per gas) bounds maxFeePerGas for this tx and all its replacements.
        Raises SendError when the node refuses it for a reason other than price or nonce (the nonce is
        then released), and SendError after `nonce_retries` "nonce too low" answers in a row.
        """
        if max_fee_cap <= 0:
            raise ValueError("max_fee_cap must be > 0 wei per gas")
        gas = intent.gas_limit if intent.gas_limit is not None else await self.estimate_gas(intent)
        base_fee = await self._base_fee()
        fees = self._initial_fees(base_fee, max_fee_cap)
        if fees.max_fee_per_gas < base_fee + fees.max_priority_fee_per_gas:
            log.warning(
                "fee cap below the next base fee: the tx will wait for the base fee to fall",
                extra=kv(cap=max_fee_cap, next_base_fee=base_fee),
            )
        for _ in range(self.nonce_retries):
            nonce = await self.nonces.reserve()
            try:
                signed = self._build(nonce, intent, gas, fees)
            except Exception:
                self.nonces.release(nonce)
                raise
            accepted, kind, error = await self._try_submit(signed.raw)
            if kind in ("nonce_low", "replacement"):
                # Our nonce is taken: mined by another process ("too low"), or pending in the pool from
                # one ("replacement underpriced"). Re-sync and try the next free nonce.
                log.warning(
                    "nonce drift: re-syncing", extra=kv(address=self.address, nonce=nonce, error=error)
                )
                self.nonces.forget(nonce)
                await self.nonces.resync()
                continue
            if kind == "other":
                self.nonces.release(nonce)
                raise SendError(f"transaction refused: {error}")
            tracked = TrackedTx(
                nonce=nonce, intent=intent, gas_limit=gas, max_fee_cap=max_fee_cap, last_send_block=self._head
            )
            tracked.attempts.append(
                Attempt(signed, fees, self._head, noop=False, accepted=accepted, error=error)
            )
            self.nonces.mark_sent(nonce, signed.hash_hex)
            self._tracked[nonce] = tracked
            log.info(
                "tx sent",
                extra=kv(
                    nonce=nonce,
                    hash=signed.hash_hex,
                    max_fee=fees.max_fee_per_gas,
                    tip=fees.max_priority_fee_per_gas,
                    mode=str(self.mode),
                    accepted=accepted,
                ),
            )
            return tracked
        raise SendError(f"nonce kept being taken by another sender after {self.nonce_retries} re-syncs")

    async def _send_noop(self, nonce: int) -> str:
        """Gap filler: a tracked no-op at `nonce` (a nonce nobody else of ours will send)."""
        base_fee = await self._base_fee()
        caps = fee_caps_for_target(base_fee, self.blocks_ahead, self.priority_fee)
        cap = self.noop_fee_cap if self.noop_fee_cap is not None else caps.max_fee_per_gas
        fees = self._initial_fees(base_fee, cap)
        intent = self._noop_intent()
        signed = self._build(nonce, intent, NOOP_GAS, fees)
        accepted, _kind, error = await self._try_submit(signed.raw)
        tracked = TrackedTx(
            nonce=nonce,
            intent=intent,
            gas_limit=NOOP_GAS,
            max_fee_cap=cap,
            noop=True,
            last_send_block=self._head,
        )
        tracked.attempts.append(Attempt(signed, fees, self._head, noop=True, accepted=accepted, error=error))
        self._tracked[nonce] = tracked
        return signed.hash_hex

    # ---- replacement --------------------------------------------------------------------------

    async def _replace(self, t: TrackedTx, *, noop: bool) -> bool:
        """One same-nonce replacement (bumped fees, <= cap). False when at the cap (alerted once)."""
        old = t.current.fees
        new = bump_fees(old, cap=t.max_fee_cap, bump_bps=self.bump_bps)
        if new is not None and self.chase_base_fee and self._next_base_fee is not None:
            # Jump straight to what the next blocks need when that is more than the bump.
            need = fee_caps_for_target(self._next_base_fee, self.blocks_ahead, new.max_priority_fee_per_gas)
            if need.max_fee_per_gas > new.max_fee_per_gas:
                new = FeeCaps(min(need.max_fee_per_gas, t.max_fee_cap), new.max_priority_fee_per_gas)
        if new is None:
            if not t.at_cap:
                t.at_cap = True
                log.warning(
                    "ALERT fee cap reached: no further bumps",
                    extra=kv(nonce=t.nonce, cap=t.max_fee_cap, max_fee=old.max_fee_per_gas),
                )
            return False
        intent = self._noop_intent() if noop else t.intent
        gas = NOOP_GAS if noop else t.gas_limit
        signed = self._build(t.nonce, intent, gas, new)
        accepted, kind, error = await self._try_submit(signed.raw)
        t.attempts.append(Attempt(signed, new, self._head, noop=noop, accepted=accepted, error=error))
        t.last_send_block = self._head
        if accepted is not False:
            self.nonces.mark_sent(t.nonce, signed.hash_hex)
        log.info(
            "tx replaced" if not noop else "tx replaced by a no-op",
            extra=kv(
                nonce=t.nonce,
                hash=signed.hash_hex,
                max_fee=new.max_fee_per_gas,
                tip=new.max_priority_fee_per_gas,
                accepted=accepted,
                error=kind,
            ),
        )
        return True

    async def _rebroadcast(self, t: TrackedTx, attempt: Attempt | None = None) -> None:
        a = attempt or t.current
        accepted, _kind, _error = await self._try_submit(a.signed.raw)
        log.debug("tx re-broadcast", extra=kv(nonce=t.nonce, hash=a.hash, accepted=accepted))

    async def cancel(self, nonce: int) -> TrackedTx:
        """Replaces the pending tx at `nonce` with a 0-value self-transfer (bumped fees, <= its cap).

        Raises KeyError for an unknown nonce and SendError when it is no longer pending.
        """
        async with self._lock:
            t = self._tracked[nonce]
            if t.state is not TxState.PENDING:
                raise SendError(f"nonce {nonce} is {t.state}, not pending: nothing to cancel")
            t.cancel_requested = True
            if not await self._replace(t, noop=True):
                log.warning("ALERT cancel impossible under the fee cap", extra=kv(nonce=nonce))
            return t

    # ---- tracking -----------------------------------------------------------------------------

    async def on_new_block(self, number: int) -> None:
        """Tracks inclusion, bumps stuck txs, handles reorgs and gaps. Call once per new head."""
        async with self._lock:
            live = self.live
            calls: list[tuple[str, Sequence[Any] | None]] = [
                ("eth_getBlockByNumber", [hex(number), False]),
                ("eth_getTransactionCount", [self.address, "latest"]),
                ("eth_getTransactionCount", [self.address, "pending"]),
            ]
            index: list[tuple[TrackedTx, Attempt]] = []
            for t in live:
                for a in t.attempts:
                    calls.append(("eth_getTransactionReceipt", [a.hash]))
                    index.append((t, a))
            results = await self._rpc.batch(calls, raise_errors=False)
            header = results[0]
            if isinstance(header, dict):
                self._apply_header(header)  # the header's number: after a reorg it may go down
            else:
                self._head = number
            latest = hex_to_int(results[1])
            pending = max(hex_to_int(results[2]), latest)
            receipts: dict[int, tuple[Attempt, dict[str, Any]]] = {}
            for (t, a), r in zip(index, results[3:], strict=True):
                if isinstance(r, dict):
                    receipts[id(t)] = (a, r)
            for t in live:
                await self._track_one(t, receipts.get(id(t)), latest)
            self.nonces.observe(ChainNonces(latest=latest, pending=pending))
            report = self.nonces.gaps(ChainNonces(latest=latest, pending=pending))
            for n in report.resend:
                t2 = self._tracked.get(n)
                if t2 is not None and t2.state is TxState.PENDING:
                    await self._rebroadcast(t2)
            if report.fill:
                await self.nonces.fill_gaps(self._send_noop, ChainNonces(latest=latest, pending=pending))

    async def _track_one(
        self, t: TrackedTx, found: tuple[Attempt, dict[str, Any]] | None, latest: int
    ) -> None:
        head = self._head
        if found is not None:
            a, receipt = found
            block = hex_to_int(receipt.get("blockNumber", "0x0"))
            if t.state is not TxState.MINED or t.mined_hash != a.hash:
                t.state = TxState.MINED
                t.mined_hash = a.hash
                t.receipt = receipt
                t.mined_block = block
                t._done.set()
                log.info(
                    "tx mined",
                    extra=kv(
                        nonce=t.nonce,
                        hash=a.hash,
                        block=block,
                        noop=a.noop,
                        status=receipt.get("status"),
                        attempts=len(t.attempts),
                    ),
                )
            t.mined_block = block
            t.receipt = receipt
            if head - block + 1 >= self.track_depth:
                del self._tracked[t.nonce]
            return
        if t.state is TxState.MINED:
            # Our receipt vanished: a reorg took the block. Back to pending; put the tx back.
            log.warning(
                "reorg: mined tx is no longer in the chain", extra=kv(nonce=t.nonce, hash=t.mined_hash)
            )
            mined = t.mined_attempt
            t.state = TxState.PENDING
            t.mined_hash = None
            t.receipt = None
            t.mined_block = None
            t._done.clear()
            t.last_send_block = head
            if mined is not None:
                self.nonces.mark_sent(t.nonce, mined.hash)
                await self._rebroadcast(t, mined)
            return
        if t.state is TxState.DROPPED:
            if head - t.last_send_block >= self.track_depth:
                del self._tracked[t.nonce]
            return
        if latest > t.nonce:
            # The nonce is used and none of our attempts has a receipt: another sender took it.
            t.state = TxState.DROPPED
            t.last_send_block = head
            t._done.set()
            log.warning("nonce consumed by a tx that is not ours", extra=kv(nonce=t.nonce))
            return
        stuck = head - t.last_send_block >= self.stuck_blocks
        if stuck and not await self._replace(t, noop=t.cancel_requested or t.noop):
            t.last_send_block = head
            await self._rebroadcast(t)
