"""Ground truth from the replayed blocks, and what each opportunity was for us.

From each replayed block's logs: every Aave `LiquidationCall` (V2 and V3 share the event: who liquidated
which position, in which transaction) and every Chainlink-style `AnswerUpdated` (an oracle update; a
liquidation later in the same block backran it).

Classification (`classify`), per position (lending pool, user), walking its liquidations in block order:
- **captured**: we would have done it first: our replayed keeper had a bundle for that position that
  simulated successfully at or before that block (since the position's previous liquidation), and the
  liquidation is our own (a recording of our keeper: the replayed one sent the same) or its liquidator
  paid the builder no more than we would have. A liquidation our recorded keeper made that the replayed
  configuration would not have sent is missed, with the replayed configuration's reason;
- **missed**, with the reason: `outbid` (we had a bundle, the liquidator paid the block's builder more),
  `too slow` (the position was not liquidatable at the parent block: it became so inside the block,
  after an oracle update there, so only a backrun could take it; or it was liquidated again in the same
  block right after our own liquidation), `unprofitable for us` (our strategy saw it and declined: below
  the minimum profit, not worth it after costs), `not sent` (seen, but the simulation failed or the
  block's gas budget was full), `not detected` (liquidatable at the parent block, and we never saw it);
- **ours alone**: an opportunity whose bundle simulated successfully and that nobody took.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import decode

from keeper.chain.flashbots_auth import keccak256
from keeper.chain.rpc import hex_to_int

LIQUIDATION_CALL = (
    "0x" + keccak256(b"LiquidationCall(address,address,address,uint256,uint256,address,bool)").hex()
)
ANSWER_UPDATED = "0x" + keccak256(b"AnswerUpdated(int256,uint256,uint256)").hex()

CAPTURED = "captured"
MISSED = "missed"
OURS_ALONE = "ours_alone"

OUTBID = "outbid"
TOO_SLOW = "too slow"
UNPROFITABLE = "unprofitable for us"
NOT_SENT = "not sent"
NOT_DETECTED = "not detected"


def _addr(topic: str) -> str:
    return "0x" + topic[-40:].lower()


@dataclass(frozen=True, slots=True)
class Liquidation:
    block: int
    tx_hash: str
    tx_index: int
    log_index: int
    pool: str
    user: str
    collateral: str
    debt: str
    debt_covered: int
    collateral_seized: int
    liquidator: str
    sender: str
    builder_tip_wei: int
    """What the liquidating transaction paid the block's builder in priority fees."""
    ours: bool
    liquidatable_before: bool | None = None
    """Health factor below 1 at the parent block (None when unknown)."""


@dataclass(frozen=True, slots=True)
class OracleUpdate:
    block: int
    tx_hash: str
    tx_index: int
    feed: str
    answer: int


def decode_liquidation(log: Mapping[str, Any]) -> tuple[str, str, str, int, int, str]:
    """(collateral, debt, user, debt covered, collateral seized, liquidator) of a LiquidationCall log."""
    topics = log["topics"]
    data = bytes.fromhex(str(log["data"])[2:])
    covered, seized, liquidator, _ = decode(["uint256", "uint256", "address", "bool"], data)
    return (
        _addr(topics[1]),
        _addr(topics[2]),
        _addr(topics[3]),
        int(covered),
        int(seized),
        str(liquidator).lower(),
    )


def decode_answer(log: Mapping[str, Any]) -> int:
    raw = int(log["topics"][1], 16)
    return raw - 2**256 if raw >= 2**255 else raw


@dataclass(frozen=True, slots=True)
class Attempt:
    """One item of a bundle our replayed keeper would have sent (simulated successfully)."""

    block: int
    """The target block."""
    opportunity_id: str
    strategy: str
    protocol: str
    pool: str
    user: str
    profit_wei: int
    """Our profit (after the builder's share), valued in wei."""
    builder_paid_wei: int
    gas_wei: int
    net_wei: int
    tx_hash: str
    position: int = 0
    """Where in the block it would have gone (0: the top; else right after the tx it backruns)."""


@dataclass(frozen=True, slots=True)
class Decline:
    """Our strategy or executor saw a position at a block and did not send it, with why."""

    block: int
    """The target block the decision was for."""
    user: str
    reason: str
    """UNPROFITABLE or NOT_SENT"""
    detail: str


@dataclass
class Opportunity:
    kind: str
    strategy: str
    protocol: str
    pool: str
    user: str
    block: int
    reason: str | None = None
    detail: str | None = None
    liquidation: Liquidation | None = None
    attempt: Attempt | None = None

    def to_json(self) -> dict[str, Any]:
        liq, att = self.liquidation, self.attempt
        return {
            "kind": self.kind,
            "strategy": self.strategy,
            "protocol": self.protocol,
            "pool": self.pool,
            "user": self.user,
            "block": self.block,
            "reason": self.reason,
            "detail": self.detail,
            "liquidation": None
            if liq is None
            else {
                "tx": liq.tx_hash,
                "tx_index": liq.tx_index,
                "liquidator": liq.liquidator,
                "sender": liq.sender,
                "ours": liq.ours,
                "collateral": liq.collateral,
                "debt": liq.debt,
                "debt_covered": str(liq.debt_covered),
                "collateral_seized": str(liq.collateral_seized),
                "builder_tip_wei": str(liq.builder_tip_wei),
            },
            "ours": None
            if att is None
            else {
                "target_block": att.block,
                "opportunity_id": att.opportunity_id,
                "position": att.position,
                "profit_wei": str(att.profit_wei),
                "builder_paid_wei": str(att.builder_paid_wei),
                "gas_wei": str(att.gas_wei),
                "net_wei": str(att.net_wei),
                "tx": att.tx_hash,
            },
        }


@dataclass
class Classification:
    opportunities: list[Opportunity] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for o in self.opportunities if o.kind == kind)


def classify(
    liquidations: Sequence[Liquidation],
    attempts: Sequence[Attempt],
    declines: Sequence[Decline],
    protocols: Mapping[str, str],
    default_strategy: str = "liquidations",
) -> Classification:
    """See the module docstring. `protocols`: lending pool address -> protocol name."""
    out = Classification()
    by_pos: dict[tuple[str, str], list[Attempt]] = {}
    for a in sorted(attempts, key=lambda a: (a.block, a.opportunity_id)):
        by_pos.setdefault((a.pool.lower(), a.user.lower()), []).append(a)
    declined: dict[tuple[str, int], Decline] = {}
    for dec in declines:
        declined.setdefault((dec.user.lower(), dec.block), dec)
    used: set[int] = set()
    last_block: dict[tuple[str, str], int] = {}
    ours_in_block: set[tuple[str, str, int]] = set()
    for liq in sorted(liquidations, key=lambda x: (x.block, x.tx_index, x.log_index)):
        key = (liq.pool.lower(), liq.user.lower())
        since = last_block.get(key, -1)
        last_block[key] = liq.block
        candidates = [a for a in by_pos.get(key, []) if id(a) not in used and since < a.block <= liq.block]
        attempt = candidates[0] if candidates else None
        protocol = protocols.get(key[0], attempt.protocol if attempt is not None else "")
        strategy = attempt.strategy if attempt is not None else default_strategy
        opp = Opportunity(MISSED, strategy, protocol, liq.pool, liq.user, liq.block, liquidation=liq)
        if liq.ours:
            ours_in_block.add((*key, liq.block))
        if attempt is not None:
            used.add(id(attempt))
            opp.attempt = attempt
            if liq.ours or liq.builder_tip_wei <= attempt.builder_paid_wei:
                opp.kind = CAPTURED
            else:
                opp.reason = OUTBID
                opp.detail = (
                    f"the liquidator paid the builder {liq.builder_tip_wei} wei, we would have paid "
                    f"{attempt.builder_paid_wei}"
                )
        elif liq.ours:
            # Our recorded keeper took it on chain; the replayed configuration would not have.
            d = declined.get((liq.user.lower(), liq.block))
            opp.reason = d.reason if d is not None else NOT_DETECTED
            opp.detail = (
                "taken on chain by our recorded keeper; this configuration would not have sent it"
                + (f" ({d.detail})" if d is not None else "")
            )
        elif (*key, liq.block) in ours_in_block:
            opp.reason = TOO_SLOW
            opp.detail = "liquidated again in the same block, right after our liquidation of it"
        elif (d := declined.get((liq.user.lower(), liq.block))) is not None:
            opp.reason = d.reason
            opp.detail = d.detail
        elif liq.liquidatable_before is False:
            opp.reason = TOO_SLOW
            opp.detail = (
                "not liquidatable at the parent block: it became so inside this block, after an oracle "
                "update there (only a backrun of that update could take it)"
            )
        else:
            opp.reason = NOT_DETECTED
            opp.detail = "liquidatable at the parent block; our strategy did not report it"
        out.opportunities.append(opp)
    # Opportunities we would have taken that nobody did: one per opportunity id (its first attempt).
    taken_ids = {a.opportunity_id for pos in by_pos.values() for a in pos if id(a) in used}
    alone: dict[str, Attempt] = {}
    for pos in by_pos.values():
        for a in pos:
            if id(a) in used or a.opportunity_id in taken_ids:
                continue
            later = last_block.get((a.pool.lower(), a.user.lower()), -1)
            if later >= a.block:
                continue  # liquidated later by someone: classified with that liquidation
            alone.setdefault(a.opportunity_id, a)
    for a in sorted(alone.values(), key=lambda a: (a.block, a.opportunity_id)):
        out.opportunities.append(
            Opportunity(OURS_ALONE, a.strategy, a.protocol, a.pool, a.user, a.block, attempt=a)
        )
    return out


def summarize(opps: Iterable[Opportunity]) -> dict[str, Any]:
    """Counts and P&L per (strategy, protocol) and missed reasons, for the report."""
    groups: dict[tuple[str, str], dict[str, int]] = {}
    reasons: dict[str, int] = {}
    for o in opps:
        g = groups.setdefault(
            (o.strategy, o.protocol),
            {CAPTURED: 0, MISSED: 0, OURS_ALONE: 0, "profit_wei": 0, "missed_value_wei": 0},
        )
        g[o.kind] += 1
        if o.kind in (CAPTURED, OURS_ALONE) and o.attempt is not None:
            g["profit_wei"] += o.attempt.net_wei
        if o.kind == MISSED:
            reasons[o.reason or ""] = reasons.get(o.reason or "", 0) + 1
            if o.attempt is not None:
                g["missed_value_wei"] += o.attempt.net_wei
    return {
        "by_strategy_protocol": [
            {"strategy": s, "protocol": p, **{k: (str(v) if k.endswith("_wei") else v) for k, v in g.items()}}
            for (s, p), g in sorted(groups.items())
        ],
        "missed_reasons": dict(sorted(reasons.items())),
    }


def block_logs_filter(block: int) -> dict[str, Any]:
    return {"fromBlock": hex(block), "toBlock": hex(block), "topics": [[LIQUIDATION_CALL, ANSWER_UPDATED]]}


def liquidation_from_log(
    log: Mapping[str, Any],
    tx: Mapping[str, Any] | None,
    receipt: Mapping[str, Any] | None,
    base_fee: int,
    ours: set[str],
) -> Liquidation:
    collateral, debt, user, covered, seized, liquidator = decode_liquidation(log)
    sender = str((tx or {}).get("from", "")).lower()
    tip = 0
    if receipt is not None:
        price = hex_to_int(str(receipt.get("effectiveGasPrice") or "0x0"))
        tip = max(price - base_fee, 0) * hex_to_int(str(receipt.get("gasUsed") or "0x0"))
    return Liquidation(
        block=hex_to_int(log["blockNumber"]),
        tx_hash=str(log["transactionHash"]).lower(),
        tx_index=hex_to_int(log["transactionIndex"]),
        log_index=hex_to_int(log["logIndex"]),
        pool=str(log["address"]).lower(),
        user=user,
        collateral=collateral,
        debt=debt,
        debt_covered=covered,
        collateral_seized=seized,
        liquidator=liquidator,
        sender=sender,
        builder_tip_wei=tip,
        ours=liquidator in ours or sender in ours,
    )
