"""Deploy contracts and send set-up transactions on anvil, fast.

Set-up only (never on a hot path). Transactions go through `eth_sendTransaction` from an account anvil
has unlocked (its default accounts, or any impersonated one), so nothing is signed locally. With
automine on, the receipt exists as soon as the send returns; with mining off we mine explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient, hex_to_bytes
from keeper.devnet.artifacts import Artifact
from keeper.errors import DevnetError, JsonRpcError


def _abi_type(param: dict[str, Any]) -> str:
    t = str(param["type"])
    if t.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){t[5:]}"
    return t


def fn_signature(item: dict[str, Any]) -> str:
    return f"{item['name']}({','.join(_abi_type(p) for p in item.get('inputs', []))})"


@dataclass
class Deployed:
    address: str
    artifact: Artifact
    tx_hash: str
    gas_used: int


class Deployer:
    """Sends set-up transactions from `sender` (an unlocked/impersonated anvil account)."""

    def __init__(self, rpc: RpcClient, sender: str, *, gas: int = 29_000_000) -> None:
        self.rpc = rpc
        self.sender = to_checksum_address(sender)
        self.gas = gas
        self.txs_sent = 0
        self._sync_send = True

    async def _send(self, tx: dict[str, Any]) -> dict[str, Any]:
        tx = {"from": self.sender, "gas": hex(self.gas), **tx}
        receipt: dict[str, Any] | None = None
        if self._sync_send:
            # anvil's eth_sendTransactionSync returns the receipt at once (automine); no polling.
            try:
                receipt = dict(await self.rpc.call("eth_sendTransactionSync", [tx]))
            except JsonRpcError as exc:
                if exc.code != -32601:  # anything but "method not found" is a real failure
                    raise
                self._sync_send = False
        if receipt is None:
            tx_hash = await self.rpc.call("eth_sendTransaction", [tx])
            receipt = await self.rpc.wait_for_receipt(tx_hash, timeout=60, poll=0.002)
        self.txs_sent += 1
        if receipt.get("status") != "0x1":
            raise DevnetError(f"transaction {receipt.get('transactionHash')} reverted (to={tx.get('to')})")
        return receipt

    async def deploy(
        self,
        artifact: Artifact,
        *args: Any,
        libraries: dict[str, str] | None = None,
        value: int = 0,
    ) -> Deployed:
        code = artifact.linked(libraries or {}) if artifact.link_references else artifact.bytecode
        ctor = artifact.constructor()
        types = [_abi_type(p) for p in ctor.get("inputs", [])] if ctor else []
        if len(types) != len(args):
            raise DevnetError(f"{artifact.name} constructor takes {len(types)} args, got {len(args)}")
        data = code + encode(types, list(args)).hex() if types else code
        tx: dict[str, Any] = {"data": data}
        if value:
            tx["value"] = hex(value)
        receipt = await self._send(tx)
        address = receipt.get("contractAddress")
        if not address:
            raise DevnetError(f"{artifact.name}: no contract address in receipt")
        return Deployed(
            to_checksum_address(address), artifact, receipt["transactionHash"], int(receipt["gasUsed"], 16)
        )

    async def transact(
        self, to: str, signature: str, types: Sequence[str], args: Sequence[Any], *, value: int = 0
    ) -> dict[str, Any]:
        tx: dict[str, Any] = {"to": to, "data": "0x" + encode_call(signature, types, args).hex()}
        if value:
            tx["value"] = hex(value)
        return await self._send(tx)

    async def call(
        self,
        to: str,
        signature: str,
        types: Sequence[str],
        args: Sequence[Any],
        out_types: Sequence[str],
        block: str | int = "latest",
    ) -> tuple[Any, ...]:
        data = encode_call(signature, types, args)
        raw = await self.rpc.eth_call(to, data, block, sender=self.sender)
        return tuple(decode(list(out_types), raw))

    async def send_raw(self, tx: dict[str, Any]) -> dict[str, Any]:
        return await self._send(tx)


def decode_hex(value: str) -> bytes:
    return hex_to_bytes(value)
