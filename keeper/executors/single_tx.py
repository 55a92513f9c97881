"""Single transactions for protocol-keeper mode (`KEEPER_SUBMIT=public|private`).

`SingleTxExecutor` (protocol-keeper mode; simple on purpose). Limits, stated honestly:
- it sends a `SubmitBundle` of exactly one of our own transactions (`TxIntent`) or a `SendTx`, as a
  normal transaction through `PublicSender` (eth_sendRawTransaction, or eth_sendPrivateTransaction to the
  first relay); bundles with someone else's transaction (back-runs) cannot be expressed and are skipped;
- the profit check is a local `eth_call` at the head (not at the target block, not the relay's
  simulation): net = profit decoded from the call's return (profit, builderPaid) valued in wei, minus
  estimated gas x (next base fee + priority fee); below the minimum nothing is sent. The fee cap of the
  transaction and of every replacement is the price per gas at which the net profit would fall to the
  minimum, so fee bumps can never turn it into a loss beyond the gas of a revert;
- the liquidation's calldata expires after its target block (the contract's `maxBlock`), so a public
  transaction still pending after it is replaced with a no-op (`PublicSender.cancel`): that costs 21000
  gas; one that lands late reverts (Expired) and costs its gas. Both are recorded in the ledger;
- one opportunity is in flight at a time; senders are used round-robin, each with its own nonce manager.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.core.actions import Action, SendTx, SubmitBundle, TxIntent
from keeper.core.events import NewBlock
from keeper.errors import ExecutionReverted, KeeperError, RelayError, RpcError
from keeper.executors.bundle_executor import ledger_opportunity
from keeper.executors.episodes import Episodes
from keeper.executors.executor_contract import decode_item_result
from keeper.logs import kv

if TYPE_CHECKING:
    from keeper.executors.public import PublicSender, TrackedTx
    from keeper.ledger import Ledger

log = logging.getLogger("keeper.executors.single_tx")

BPS = 10_000


@dataclass
class InFlight:
    base_id: str
    """The strategy's opportunity id."""
    opportunity_id: str
    """The ledger's id for this episode (`base_id`, then `base_id#2`, ... after each settlement)."""
    target_block: int
    sender: PublicSender
    tracked: TrackedTx
    profit_token: str
    profit_to_wei: tuple[int, int]
    cancelled: bool = False


@dataclass
class SingleTxStats:
    actions: int = 0
    simulated: int = 0
    simulation_failed: int = 0
    below_minimum: int = 0
    skipped: int = 0
    sent: int = 0
    included: int = 0
    reverted: int = 0
    cancelled: int = 0
    dropped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def count(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


class SingleTxExecutor:
    """`SubmitBundle` of one `TxIntent` (or `SendTx`) -> one transaction through a PublicSender.

    See the module docstring for what it checks and its limits.
    """

    name = "single-tx"
    handles: tuple[type, ...] = (SubmitBundle, SendTx)

    def __init__(
        self,
        rpc: RpcClient,
        senders: Sequence[PublicSender],
        *,
        min_profit_wei: int,
        ledger: Ledger | None = None,
        dry_run: bool = False,
        channel: str = "mempool",
    ) -> None:
        if not senders:
            raise ValueError("the single-tx executor needs at least one sender")
        self.rpc = rpc
        self.senders = list(senders)
        self.min_profit_wei = min_profit_wei
        self.ledger = ledger
        self.dry_run = dry_run
        self.channel = channel
        """Recorded as the submission's "builder" in the ledger (mempool / private)."""
        self.stats = SingleTxStats()
        self.in_flight: dict[str, InFlight] = {}
        self._recorded: set[str] = set()
        self._episodes = Episodes()
        self._next = itertools.cycle(range(len(self.senders)))

    async def execute(self, action: Action) -> None:
        self.stats.actions += 1
        if isinstance(action, SendTx):
            intent, target, minimum = action.tx, 0, action.min_profit_wei
            token, to_wei = "", (1, 1)
        elif len(action.txs) == 1 and isinstance(action.txs[0], TxIntent):
            intent, target, minimum = action.txs[0], action.target_block, action.min_profit_wei
            token, to_wei = action.profit_token, action.profit_to_wei
        else:
            self._skip(action.opportunity_id, "bundle with foreign or several txs needs KEEPER_SUBMIT=bundle")
            return
        base_id = action.opportunity_id
        if base_id in self.in_flight:
            self.stats.skipped += 1  # one transaction per opportunity at a time
            return
        opp_id = self._episodes.current(base_id)
        minimum = self.min_profit_wei if minimum is None else minimum
        await self._record_opportunity(action, opp_id)
        sender = self.senders[next(self._next)]
        # 1. local simulation: revert -> nothing sent; else (profit, builderPaid) from our executor.
        call = {
            "from": sender.address,
            "to": intent.to,
            "data": "0x" + intent.data.hex(),
            "value": hex(intent.value),
        }
        try:
            raw = await self.rpc.call("eth_call", [call, "latest"])
            gas = intent.gas_limit if intent.gas_limit is not None else await sender.estimate_gas(intent)
        except ExecutionReverted as exc:
            await self._sim_failed(opp_id, target, self._revert_reason(exc))
            return
        self.stats.simulated += 1
        if isinstance(action, SendTx):
            profit_wei, builder_paid = action.expected_profit_wei, 0
        else:
            try:
                # (profit, builderPaid), or a subsidized liquidation's (0, 0, subsidy): profit -subsidy.
                profit, builder_paid = decode_item_result(bytes.fromhex(raw[2:]))
            except Exception:
                await self._sim_failed(opp_id, target, "call did not return (profit, builderPaid)")
                return
            profit_wei = profit * to_wei[0] // to_wei[1]
        base_fee = sender.next_base_fee or 0
        price = base_fee + sender.priority_fee
        net = profit_wei - gas * price
        await self._ledger_sim(opp_id, target, True, profit_wei + builder_paid, gas, builder_paid, net, None)
        if net < minimum:
            self.stats.below_minimum += 1
            self.stats.count("below minimum after simulation")
            return
        if self.dry_run:
            log.info("dry run: would send", extra=kv(id=opp_id, net_wei=net, channel=self.channel))
            return
        target = max(target, sender.head + 1)
        if self.ledger is not None and not await self.ledger.claim_send(opp_id, target):
            self.stats.skipped += 1
            return
        # The most per gas we may ever pay (bumps included) and still clear the minimum.
        cap = max((profit_wei - minimum) // gas, 1)
        try:
            tracked = await sender.send(TxIntent(intent.to, intent.data, intent.value, gas), max_fee_cap=cap)
        except (KeeperError, RelayError) as exc:
            await self._record_submission(opp_id, target, ok=False, error=str(exc)[:500])
            self.stats.count(f"send failed: {type(exc).__name__}")
            log.warning("send failed", extra=kv(id=opp_id, error=str(exc)[:200]))
            return
        self.stats.sent += 1
        self.in_flight[base_id] = InFlight(base_id, opp_id, target, sender, tracked, token, to_wei)
        await self._record_submission(opp_id, target, ok=True, tx_hash=tracked.current.hash)
        log.info(
            "transaction sent",
            extra=kv(id=opp_id, hash=tracked.current.hash, net_wei=net, cap=cap, channel=self.channel),
        )

    def _skip(self, opp_id: str, reason: str) -> None:
        self.stats.skipped += 1
        self.stats.count(reason)
        log.warning("action skipped", extra=kv(id=opp_id, reason=reason))

    @staticmethod
    def _revert_reason(exc: ExecutionReverted) -> str:
        from keeper.executors.executor_contract import decode_executor_error

        decoded = decode_executor_error(exc.revert_data)
        if decoded is not None:
            name, args = decoded
            return f"{name}{args}" if args else name
        return exc.message or "execution reverted"

    async def on_block(self, block: NewBlock) -> None:
        """Drives every sender (inclusion, bumps, gaps), then settles or cancels what we sent."""
        from keeper.executors.public import SendError, TxState

        for sender in self.senders:
            try:
                await sender.on_new_block(block.number)
            except (RpcError, KeeperError) as exc:
                log.warning("sender update failed", extra=kv(sender=sender.address, error=str(exc)[:200]))
        for opp_id, f in list(self.in_flight.items()):
            t = f.tracked
            if t.state is TxState.MINED and t.receipt is not None:
                await self._settled(f, t.receipt, block, noop=t.cancelled)
                del self.in_flight[opp_id]
            elif t.state is TxState.DROPPED:
                self.stats.dropped += 1
                del self.in_flight[opp_id]
                self._episodes.advance(f.base_id)
                await self._set_status(
                    f.opportunity_id, "gone", "nonce used by another transaction of this key"
                )
            elif f.target_block and block.number >= f.target_block and not f.cancelled:
                # Calldata expires after its target block: landing later would only revert.
                f.cancelled = True
                try:
                    await f.sender.cancel(t.nonce)
                except (SendError, KeyError, KeeperError) as exc:
                    log.info("cancel not possible", extra=kv(id=opp_id, error=str(exc)[:200]))

    async def _settled(self, f: InFlight, receipt: dict[str, Any], block: NewBlock, *, noop: bool) -> None:
        from keeper.executors.executor_contract import LiquidatedEvent, executor_events
        from keeper.ledger import Inclusion

        success = receipt.get("status") == "0x1" and not noop
        gas_used = hex_to_int(receipt["gasUsed"])
        price = hex_to_int(receipt["effectiveGasPrice"])
        # One action per transaction: its `Liquidated` or `Arbitraged` event(s).
        events = executor_events(receipt) if success else []
        profit = sum(e.realized_profit if isinstance(e, LiquidatedEvent) else e.profit for e in events)
        if noop:
            self.stats.cancelled += 1
        elif success:
            self.stats.included += 1
        else:
            self.stats.reverted += 1
        log.info(
            "transaction settled",
            extra=kv(
                id=f.opportunity_id, hash=receipt.get("transactionHash"), success=success, cancelled=noop
            ),
        )
        if self.ledger is not None:
            await self.ledger.record_inclusion(
                Inclusion(
                    opportunity_id=f.opportunity_id,
                    block_number=hex_to_int(receipt["blockNumber"]),
                    tx_hash=str(receipt["transactionHash"]),
                    gas_used=gas_used,
                    effective_gas_price=price,
                    gas_cost_wei=gas_used * price,
                    builder_payment_wei=sum(e.coinbase_paid for e in events),
                    realized_profit=profit,
                    realized_profit_asset=f.profit_token or "ETH",
                    included_at=block.timestamp,
                    success=success,
                    builder=self.channel,
                    realized_profit_wei=profit * f.profit_to_wei[0] // f.profit_to_wei[1],
                )
            )
        # A later detection of the same position (partial liquidation, or after a cancel) is a new episode.
        self._episodes.advance(f.base_id)

    # -- ledger ------------------------------------------------------------------------------------------

    async def _record_opportunity(self, action: SubmitBundle | SendTx, opp_id: str) -> None:
        if self.ledger is None or opp_id in self._recorded:
            return
        self._recorded.add(opp_id)
        await self.ledger.record_opportunity(ledger_opportunity(opp_id, action))

    async def _ledger_sim(
        self,
        opp_id: str,
        target: int,
        ok: bool,
        profit_wei: int | None,
        gas: int | None,
        builder_paid: int | None,
        net: int | None,
        error: str | None,
    ) -> None:
        from keeper.ledger import Simulation

        if self.ledger is None:
            return
        await self.ledger.record_simulation(
            Simulation(
                opportunity_id=opp_id,
                target_block=target,
                ok=ok,
                simulated_profit_wei=None if profit_wei is None else max(profit_wei, 0),
                gas_used=gas,
                builder_payment_wei=builder_paid,
                net_profit_wei=net,
                error=error,
            )
        )

    async def _sim_failed(self, opp_id: str, target: int, reason: str) -> None:
        self.stats.simulation_failed += 1
        self.stats.count(f"simulation failed: {reason}")
        await self._ledger_sim(opp_id, target, False, None, None, None, None, reason[:500])

    async def _record_submission(
        self, opp_id: str, target: int, *, ok: bool, tx_hash: str | None = None, error: str | None = None
    ) -> None:
        from keeper.ledger import Submission

        if self.ledger is None:
            return
        await self.ledger.record_submission(
            Submission(
                opportunity_id=opp_id,
                target_block=target,
                builder=self.channel,
                ok=ok,
                bundle_hash=tx_hash,
                error=error,
            )
        )

    async def _set_status(self, opp_id: str, status: str, reason: str) -> None:
        from keeper.ledger import Status

        if self.ledger is not None:
            await self.ledger.set_status(opp_id, Status(status), reason)
