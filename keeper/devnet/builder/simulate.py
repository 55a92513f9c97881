"""Simulation for the devnet builder: real EVM execution by anvil's `eth_simulateV1`.

The signed transactions' contents run in one simulated block whose context (number, timestamp, base fee,
coinbase, gas limit) equals the block that will be mined. anvil's simulate does not check nonces or fee
caps, so those are checked here (`_precheck`); it does check balances and intrinsic gas. Coinbase
accounting is measured, not inferred: a probe call placed before and after every transaction reads
`BALANCE(COINBASE)`, so `coinbaseDiff` is the real balance change, `gasFees = gasUsed * effective tip`, and
`ethSentToCoinbase = coinbaseDiff - gasFees`. The probes are ordinary transactions from an otherwise unused
address paying no tip.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.devnet.builder.decode import SignedTx, bundle_hash, to_hex
from keeper.errors import JsonRpcError, RelayError

# Addresses derived from keccak256 of a label, so they collide with nothing deployed on the devnet.
PROBE_CONTRACT: Final = "0x94E65AFB8e11c110C98eFeaF2617448918A8aD61"  # "keeper devnet probe"
PROBE_CALLER: Final = "0x6B0A12641BdCDf830E90c9C66a745368a61756De"  # "keeper devnet probe caller"
# COINBASE BALANCE PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN: returns the coinbase's balance.
PROBE_CODE: Final = "0x413160005260206000f3"
_PROBE_GAS: Final = 30_000


class SimulationError(RelayError):
    """A transaction of a bundle cannot be applied at all (bad nonce, fee cap, funds, gas)."""

    def __init__(self, reason: str, tx_hash: str | None = None) -> None:
        self.reason = reason
        self.tx_hash = tx_hash
        message = f"err: {reason}; txhash {tx_hash}" if tx_hash else f"err: {reason}"
        super().__init__(message, code=-32000, status=400)


@dataclass(frozen=True, slots=True)
class BlockContext:
    state_block: int
    """Simulate on the state after this block."""
    number: int
    timestamp: int
    base_fee: int
    gas_limit: int
    coinbase: str
    chain_id: int


@dataclass(frozen=True, slots=True)
class TxResult:
    tx: SignedTx
    success: bool
    gas_used: int
    return_data: bytes
    coinbase_diff: int
    gas_fees: int
    error: str | None = None

    @property
    def eth_sent_to_coinbase(self) -> int:
        return self.coinbase_diff - self.gas_fees

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "txHash": self.tx.hash,
            "gasUsed": self.gas_used,
            "fromAddress": self.tx.sender,
        }
        if self.tx.to is not None:
            out["toAddress"] = self.tx.to
        out |= {
            "coinbaseDiff": str(self.coinbase_diff),
            "ethSentToCoinbase": str(self.eth_sent_to_coinbase),
            "gasFees": str(self.gas_fees),
            "gasPrice": str(self.coinbase_diff // self.gas_used if self.gas_used else 0),
        }
        if self.success:
            out["value"] = to_hex(self.return_data)
        else:
            out["error"] = self.error or "execution reverted"
            out["revert"] = to_hex(self.return_data)
        return out


@dataclass(frozen=True, slots=True)
class SimResult:
    context: BlockContext
    results: tuple[TxResult, ...]

    @property
    def total_gas_used(self) -> int:
        return sum(r.gas_used for r in self.results)

    @property
    def coinbase_diff(self) -> int:
        return sum(r.coinbase_diff for r in self.results)

    @property
    def gas_fees(self) -> int:
        return sum(r.gas_fees for r in self.results)

    @property
    def eth_sent_to_coinbase(self) -> int:
        return self.coinbase_diff - self.gas_fees

    @property
    def bundle_gas_price(self) -> int:
        gas = self.total_gas_used
        return self.coinbase_diff // gas if gas else 0

    def tail(self, start: int) -> SimResult:
        """The results from index `start` on (a bundle simulated after others)."""
        return SimResult(self.context, self.results[start:])

    def to_json(self) -> dict[str, Any]:
        """The eth_callBundle `result` object, as in the Flashbots spec."""
        return {
            "bundleGasPrice": str(self.bundle_gas_price),
            "bundleHash": bundle_hash(r.tx for r in self.results),
            "coinbaseDiff": str(self.coinbase_diff),
            "ethSentToCoinbase": str(self.eth_sent_to_coinbase),
            "gasFees": str(self.gas_fees),
            "results": [r.to_json() for r in self.results],
            "stateBlockNumber": self.context.state_block,
            "totalGasUsed": self.total_gas_used,
        }


def next_base_fee(parent_base_fee: int, gas_used: int, gas_limit: int) -> int:
    """EIP-1559 base fee of the child block."""
    target = gas_limit // 2
    if target in (0, gas_used):
        return parent_base_fee
    if gas_used > target:
        return parent_base_fee + max(parent_base_fee * (gas_used - target) // target // 8, 1)
    return parent_base_fee - parent_base_fee * (target - gas_used) // target // 8


def _precheck(txs: Sequence[SignedTx], ctx: BlockContext, nonces: dict[str, int]) -> None:
    """The checks anvil's eth_simulateV1 skips: chain id, nonce order, fee caps, block gas limit."""
    expected = dict(nonces)
    for tx in txs:
        if tx.chain_id is not None and tx.chain_id != ctx.chain_id:
            raise SimulationError(f"invalid chain id {tx.chain_id}, expected {ctx.chain_id}", tx.hash)
        want = expected[tx.sender]
        if tx.nonce < want:
            raise SimulationError(
                f"nonce too low: address {tx.sender}, tx: {tx.nonce} state: {want}", tx.hash
            )
        if tx.nonce > want:
            raise SimulationError(
                f"nonce too high: address {tx.sender}, tx: {tx.nonce} state: {want}", tx.hash
            )
        expected[tx.sender] = want + 1
        if tx.max_priority_fee > tx.max_fee:
            raise SimulationError("max priority fee per gas higher than max fee per gas", tx.hash)
        if tx.max_fee < ctx.base_fee:
            raise SimulationError(
                f"max fee per gas less than block base fee: address {tx.sender}, "
                f"maxFeePerGas: {tx.max_fee}, baseFee: {ctx.base_fee}",
                tx.hash,
            )
        if tx.gas > ctx.gas_limit:
            raise SimulationError(f"gas limit {tx.gas} exceeds the block gas limit {ctx.gas_limit}", tx.hash)


async def fetch_nonces(rpc: RpcClient, senders: Iterable[str], block: int) -> dict[str, int]:
    uniq = sorted(set(senders))
    if not uniq:
        return {}
    counts = await rpc.batch([("eth_getTransactionCount", [s, hex(block)]) for s in uniq])
    return {s: hex_to_int(c) for s, c in zip(uniq, counts, strict=True)}


def _sim_request(txs: Sequence[SignedTx], ctx: BlockContext, *, probes: bool) -> list[Any]:
    calls: list[dict[str, Any]] = []
    probe_nonce = 0

    def probe() -> None:
        nonlocal probe_nonce
        calls.append(
            {
                "from": PROBE_CALLER,
                "to": PROBE_CONTRACT,
                "gas": hex(_PROBE_GAS),
                "maxFeePerGas": hex(ctx.base_fee),
                "maxPriorityFeePerGas": "0x0",
                "nonce": hex(probe_nonce),
                "input": "0x",
            }
        )
        probe_nonce += 1

    if probes:
        probe()
    for tx in txs:
        calls.append(tx.to_call())
        if probes:
            probe()
    state: dict[str, Any] = {
        PROBE_CONTRACT: {"code": PROBE_CODE},
        PROBE_CALLER: {"balance": hex(10**30), "nonce": "0x0", "code": "0x"},
    }
    block = {
        "blockOverrides": {
            "number": hex(ctx.number),
            "time": hex(ctx.timestamp),
            "gasLimit": hex(ctx.gas_limit + (_PROBE_GAS * (len(txs) + 1) if probes else 0)),
            "feeRecipient": ctx.coinbase,
            "baseFeePerGas": hex(ctx.base_fee),
        },
        "stateOverrides": state,
        "calls": calls,
    }
    return [{"blockStateCalls": [block], "validation": True, "traceTransfers": False}, hex(ctx.state_block)]


async def _locate_failure(rpc: RpcClient, txs: Sequence[SignedTx], ctx: BlockContext) -> str:
    """Which transaction made the whole simulation fail: the shortest failing prefix's last tx."""
    for k in range(1, len(txs) + 1):
        try:
            await rpc.call("eth_simulateV1", _sim_request(txs[:k], ctx, probes=False))
        except JsonRpcError:
            return txs[k - 1].hash
    return txs[-1].hash


async def simulate(
    rpc: RpcClient, txs: Sequence[SignedTx], ctx: BlockContext, *, nonces: dict[str, int] | None = None
) -> SimResult:
    """Executes `txs` in order, in one block with context `ctx`, on the state after `ctx.state_block`.

    Raises SimulationError when a transaction cannot be applied at all. Reverts are results, not errors.
    """
    if not txs:
        return SimResult(ctx, ())
    if nonces is None:
        nonces = await fetch_nonces(rpc, (t.sender for t in txs), ctx.state_block)
    _precheck(txs, ctx, nonces)
    try:
        reply = await rpc.call("eth_simulateV1", _sim_request(txs, ctx, probes=True))
    except JsonRpcError as exc:
        culprit = await _locate_failure(rpc, txs, ctx)
        raise SimulationError(exc.message.lower(), culprit) from None
    try:
        calls = reply[0]["calls"]
        if len(calls) != 2 * len(txs) + 1:
            raise RelayError(f"eth_simulateV1 returned {len(calls)} call results for {2 * len(txs) + 1}")
        balances = [int(calls[i]["returnData"], 16) for i in range(0, len(calls), 2)]
        results: list[TxResult] = []
        used = 0
        for i, tx in enumerate(txs):
            call = calls[2 * i + 1]
            if tx.gas > ctx.gas_limit - used:
                raise SimulationError("gas limit reached", tx.hash)
            gas_used = hex_to_int(call["gasUsed"])
            used += gas_used
            ok = call.get("status") == "0x1"
            ret = bytes.fromhex(str(call.get("returnData", "0x"))[2:])
            err: str | None = None
            if not ok:
                msg = str((call.get("error") or {}).get("message", ""))
                # anvil says "execution failed" for REVERT; keep its text for other halts (out of gas...)
                err = "execution reverted" if (ret or "fail" in msg or "revert" in msg) else msg
            results.append(
                TxResult(
                    tx=tx,
                    success=ok,
                    gas_used=gas_used,
                    return_data=ret,
                    coinbase_diff=balances[i + 1] - balances[i],
                    gas_fees=gas_used * tx.effective_tip(ctx.base_fee),
                    error=err,
                )
            )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise RelayError(f"unexpected eth_simulateV1 reply: {type(exc).__name__}: {exc}") from None
    return SimResult(ctx, tuple(results))
