"""The final send of a replay: a builders client that simulates instead of sending.

`ReplayBuilders` has the interface of `MultiBuilderClient` (it is one, with a single builder named
"replay" that is never contacted over HTTP), so the bundle executor runs unchanged:

- `simulate` (eth_callBundle semantics, the Flashbots result shape) runs the bundle on the replay node at
  the position it would have taken in the block being replayed: right after the transactions that come
  before the one it backruns (its first transaction is one of the block's own), or at the top of the
  block; in that block's context (number, timestamp, base fee, coinbase, gas limit), on the state of
  the block before. anvil's `eth_simulateV1` executes it; probe calls around each bundle transaction read
  the coinbase balance, so `coinbaseDiff` is measured, not inferred.
- `stream_bundle_for_blocks` (the send) accepts the bundle and records it (`sent`): the counterfactual.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rlp.codec import decode as rlp_decode

from keeper.backtest.recording import ReplayBlock
from keeper.chain.flashbots_auth import keccak256
from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.chain.signer import recover_sender
from keeper.errors import JsonRpcError
from keeper.executors.builder_client import BundleClient
from keeper.executors.builders import BuilderResult, MultiBuilderClient, SimulationOutcome
from keeper.executors.relay_types import CallBundleResult, RawTx, RelayRejected, SignedRequest

REPLAY_BUILDER: Final = "replay"
PROBE_CONTRACT: Final = "0x94E65AFB8e11c110C98eFeaF2617448918A8aD61"
PROBE_CALLER: Final = "0x6B0A12641BdCDf830E90c9C66a745368a61756De"
PROBE_CODE: Final = "0x413160005260206000f3"
"""COINBASE BALANCE PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN: returns the coinbase's balance."""
_PROBE_GAS: Final = 30_000


@dataclass(frozen=True, slots=True)
class SentBundle:
    """A bundle the replayed keeper would have sent (the counterfactual)."""

    target_block: int
    tx_hashes: tuple[str, ...]
    position: int
    """Index in the replayed block where it would have gone (0: top of the block)."""


def _raw_bytes(tx: RawTx) -> bytes:
    if isinstance(tx, bytes | bytearray):
        return bytes(tx)
    text = str(tx)
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def _call_of_obj(obj: Mapping[str, Any]) -> dict[str, Any]:
    call: dict[str, Any] = {
        "from": obj["from"],
        "gas": obj["gas"],
        "value": obj.get("value", "0x0"),
        "nonce": obj["nonce"],
        "input": obj.get("input") or obj.get("data") or "0x",
    }
    if obj.get("to") is not None:
        call["to"] = obj["to"]
    if obj.get("maxFeePerGas") is not None:
        call["maxFeePerGas"] = obj["maxFeePerGas"]
        call["maxPriorityFeePerGas"] = obj.get("maxPriorityFeePerGas", "0x0")
    elif obj.get("gasPrice") is not None:
        call["gasPrice"] = obj["gasPrice"]
    return call


def _decode_type2(raw: bytes) -> tuple[dict[str, Any], int, int]:
    """(eth_call object, max fee, max priority fee) of a signed type-2 transaction."""
    if not raw or raw[0] != 2:
        raise RelayRejected("replay: only type-2 transactions of our own can be simulated", code=-32602)
    items = rlp_decode(raw[1:])
    nonce, tip, fee, gas = (int.from_bytes(items[i], "big") for i in (1, 2, 3, 4))
    to = "0x" + bytes(items[5]).hex() if items[5] else None
    value = int.from_bytes(items[6], "big")
    call: dict[str, Any] = {
        "from": recover_sender(raw),
        "gas": hex(gas),
        "value": hex(value),
        "nonce": hex(nonce),
        "input": "0x" + bytes(items[7]).hex(),
        "maxFeePerGas": hex(fee),
        "maxPriorityFeePerGas": hex(tip),
    }
    if to is not None:
        call["to"] = to
    return call, fee, tip


class ReplayBuilders(MultiBuilderClient):
    def __init__(self, rpc: RpcClient, signer_key: str) -> None:
        super().__init__([f"{REPLAY_BUILDER}=http://replay.invalid"], signer_key, retries=1)
        self.rpc = rpc
        self.block: ReplayBlock | None = None
        self._index: dict[str, int] = {}
        self.sent: list[SentBundle] = []
        self.simulations = 0
        self.sim_seconds = 0.0

    def at_block(self, block: ReplayBlock) -> None:
        """The next block to replay: bundles target it and are simulated in its context."""
        self.block = block
        self._index = {t.hash: i for i, t in enumerate(block.txs)}

    # -- no HTTP: every request is answered locally ------------------------------------------------

    async def _one(self, client: BundleClient, req: SignedRequest) -> BuilderResult:
        return BuilderResult(client.name, client.display_url, True, None, None, 0.0)

    def stream_bundle_for_blocks(
        self,
        txs: Sequence[RawTx],
        first_block: int,
        n_blocks: int = 1,
        replacement_uuid: Any = None,
        **extras: Any,
    ) -> AsyncGenerator[tuple[int, BuilderResult]]:
        raws = [_raw_bytes(t) for t in txs]
        hashes = tuple("0x" + keccak256(r).hex() for r in raws)
        position = self._index.get(hashes[0], 0) if hashes else 0
        bundle_hash = "0x" + keccak256(b"".join(bytes.fromhex(h[2:]) for h in hashes)).hex()
        for n in range(first_block, first_block + n_blocks):
            self.sent.append(SentBundle(n, hashes, position))
        return self._accepted(first_block, n_blocks, bundle_hash)

    async def _accepted(
        self, first_block: int, n_blocks: int, bundle_hash: str
    ) -> AsyncGenerator[tuple[int, BuilderResult]]:
        for n in range(first_block, first_block + n_blocks):
            result = {"bundleHash": bundle_hash}
            yield n, BuilderResult(REPLAY_BUILDER, "replay", True, result, None, 0.0, bundle_hash)

    # -- simulation --------------------------------------------------------------------------------

    async def simulate(
        self,
        raw_txs: Sequence[RawTx],
        block_number: int,
        *,
        state_block: int | str = "latest",
        timestamp: int | None = None,
        coinbase: str | None = None,
        timeout_ms: int | None = None,
        gas_limit: int | None = None,
        base_fee: int | None = None,
    ) -> SimulationOutcome:
        started = time.perf_counter()
        block = self.block
        if block is None or block_number != block.number:
            raise RelayRejected(
                f"replay: a bundle for block {block_number} while block "
                f"{None if block is None else block.number} is replayed",
                code=-32602,
            )
        raws = [_raw_bytes(t) for t in raw_txs]
        hashes = ["0x" + keccak256(r).hex() for r in raws]
        position = self._index.get(hashes[0], 0) if hashes else 0
        calls: list[dict[str, Any]] = [_call_of_obj(t.obj) for t in block.txs[:position]]
        base = block.base_fee if base_fee is None else base_fee
        tips: list[int] = []
        bundle_calls: list[dict[str, Any]] = []
        for raw, h in zip(raws, hashes, strict=True):
            i = self._index.get(h)
            if i is not None:
                obj = block.txs[i].obj
                bundle_calls.append(_call_of_obj(obj))
                fee = hex_to_int(str(obj.get("maxFeePerGas") or obj.get("gasPrice") or "0x0"))
                tip = hex_to_int(str(obj.get("maxPriorityFeePerGas") or obj.get("gasPrice") or "0x0"))
            else:
                call, fee, tip = _decode_type2(raw)
                bundle_calls.append(call)
            if fee < base:
                raise RelayRejected(
                    f"err: max fee per gas less than block base fee: maxFeePerGas: {fee}, baseFee: {base}; "
                    f"txhash {h}",
                    code=-32000,
                )
            tips.append(min(tip, fee - base))
        probe_nonce = 0

        def probe() -> dict[str, Any]:
            nonlocal probe_nonce
            probe_nonce += 1
            return {
                "from": PROBE_CALLER,
                "to": PROBE_CONTRACT,
                "gas": hex(_PROBE_GAS),
                "maxFeePerGas": hex(base),
                "maxPriorityFeePerGas": "0x0",
                "nonce": hex(probe_nonce - 1),
                "input": "0x",
            }

        calls.append(probe())
        for c in bundle_calls:
            calls += [c, probe()]
        limit = block.gas_limit if gas_limit is None else gas_limit
        request = {
            "blockStateCalls": [
                {
                    "blockOverrides": {
                        "number": hex(block.number),
                        "time": hex(block.timestamp if timestamp is None else timestamp),
                        "gasLimit": hex(limit + _PROBE_GAS * (len(bundle_calls) + 1)),
                        "feeRecipient": coinbase or block.coinbase,
                        "baseFeePerGas": hex(base),
                    },
                    "stateOverrides": {
                        PROBE_CONTRACT: {"code": PROBE_CODE},
                        PROBE_CALLER: {"balance": hex(10**30), "nonce": "0x0", "code": "0x"},
                    },
                    "calls": calls,
                }
            ],
            "validation": True,
            "traceTransfers": False,
        }
        try:
            reply = await self.rpc.call("eth_simulateV1", [request, hex(block.number - 1)])
        except JsonRpcError as exc:
            raise RelayRejected(f"err: {exc.message.lower()}; txhash {hashes[-1]}", code=-32000) from None
        results_raw = reply[0]["calls"][position:]
        balances = [int(results_raw[i]["returnData"], 16) for i in range(0, len(results_raw), 2)]
        results: list[dict[str, Any]] = []
        for k, (h, call, tip) in enumerate(zip(hashes, bundle_calls, tips, strict=True)):
            r = results_raw[2 * k + 1]
            gas_used = hex_to_int(r["gasUsed"])
            diff = balances[k + 1] - balances[k]
            fees = gas_used * tip
            out: dict[str, Any] = {
                "txHash": h,
                "gasUsed": gas_used,
                "fromAddress": call["from"],
                "coinbaseDiff": str(diff),
                "ethSentToCoinbase": str(diff - fees),
                "gasFees": str(fees),
                "gasPrice": str(diff // gas_used if gas_used else 0),
            }
            if call.get("to") is not None:
                out["toAddress"] = call["to"]
            if r.get("status") == "0x1":
                out["value"] = r.get("returnData", "0x")
            else:
                out["error"] = "execution reverted"
                out["revert"] = r.get("returnData", "0x")
            results.append(out)
        total_gas = sum(int(r["gasUsed"]) for r in results)
        diff_total = sum(int(r["coinbaseDiff"]) for r in results)
        fees_total = sum(int(r["gasFees"]) for r in results)
        result = CallBundleResult.from_json(
            {
                "bundleGasPrice": str(diff_total // total_gas if total_gas else 0),
                "bundleHash": "0x" + keccak256(b"".join(bytes.fromhex(h[2:]) for h in hashes)).hex(),
                "coinbaseDiff": str(diff_total),
                "ethSentToCoinbase": str(diff_total - fees_total),
                "gasFees": str(fees_total),
                "results": results,
                "stateBlockNumber": block.number - 1,
                "totalGasUsed": total_gas,
            }
        )
        self.simulations += 1
        elapsed = time.perf_counter() - started
        self.sim_seconds += elapsed
        return SimulationOutcome(REPLAY_BUILDER, result, elapsed)
