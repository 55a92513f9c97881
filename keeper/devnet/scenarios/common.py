"""Bulk transaction plumbing for scenarios: batched sends from impersonated accounts, explicit mining.

Scenarios may create tens of thousands of transactions, so they do not go through web3 or one HTTP round
trip per transaction: `eth_sendTransaction` calls go out in JSON-RPC batches from accounts anvil
impersonates, with an explicit gas limit (no estimation), and the scenario mines the blocks itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson
from eth_abi.abi import decode
from eth_account import Account

from keeper.chain.abi import encode_call
from keeper.chain.flashbots_auth import sign_request_body
from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.errors import DevnetError, JsonRpcError


@dataclass(frozen=True)
class Tx:
    sender: str
    to: str
    data: bytes
    gas: int
    value: int = 0

    def to_rpc(self, nonce: int | None = None) -> dict[str, Any]:
        tx: dict[str, Any] = {
            "from": self.sender,
            "to": self.to,
            "data": "0x" + self.data.hex(),
            "gas": hex(self.gas),
        }
        if self.value:
            tx["value"] = hex(self.value)
        if nonce is not None:
            tx["nonce"] = hex(nonce)
        return tx


def call_tx(sender: str, to: str, signature: str, types: Sequence[str], args: Sequence[Any], gas: int) -> Tx:
    return Tx(sender, to, encode_call(signature, types, args), gas)


class Miner(Protocol):
    """Produces one block now and returns its number."""

    async def mine(self) -> int: ...


class AnvilMiner:
    """`evm_mine` straight on anvil: for devnets without a block builder."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    async def mine(self) -> int:
        await self.rpc.call("evm_mine")
        return await self.rpc.block_number()


class RelayMiner:
    """Asks the devnet relay's builder to build the next block (`devnet_buildBlock`), so scenario blocks
    never interleave with the builder's own interval blocks. Signs with a throwaway identity key."""

    def __init__(self, relay_url: str) -> None:
        self.relay_url = relay_url
        self._key = Account.create().key

    async def mine(self) -> int:
        return await self.mine_blocks(1)

    async def mine_blocks(self, n: int) -> int:
        """Builds `n` blocks now (bundles first, as every builder block); returns the new head."""
        body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "devnet_buildBlock", "params": [n]})
        headers = {
            "Content-Type": "application/json",
            "X-Flashbots-Signature": sign_request_body(body, self._key),
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                self.relay_url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=60 + 5 * n)
            ) as resp,
        ):
            reply = orjson.loads(await resp.read())
        if not isinstance(reply, dict) or "result" not in reply:
            raise DevnetError(f"relay could not build a block: {str(reply)[:200]}")
        return int(reply["result"]["number"])


class BulkSender:
    """Sends many transactions fast and mines them; checks that every one succeeded."""

    def __init__(self, rpc: RpcClient, *, miner: Miner | None = None, batch_size: int = 250) -> None:
        self.rpc = rpc
        self.miner = miner or AnvilMiner(rpc)
        self.batch_size = batch_size
        self.sent = 0
        self.blocks_mined = 0

    async def impersonate_all(self, enabled: bool) -> None:
        await self.rpc.call("anvil_autoImpersonateAccount", [enabled])

    async def set_balances(self, addresses: Sequence[str], wei: int) -> None:
        calls = [("anvil_setBalance", [a, hex(wei)]) for a in addresses]
        for i in range(0, len(calls), 1000):
            await self.rpc.batch(calls[i : i + 1000])

    async def run(self, txs: Sequence[Tx]) -> list[str]:
        """Sends `txs` in order, mines until the mempool is empty, and checks every receipt."""
        hashes: list[str] = []
        nonces = await self._nonces({t.sender for t in txs})
        for i in range(0, len(txs), self.batch_size):
            chunk = txs[i : i + self.batch_size]
            calls = []
            for t in chunk:
                calls.append(("eth_sendTransaction", [t.to_rpc(nonces[t.sender])]))
                nonces[t.sender] += 1
            results = await self.rpc.batch(calls, raise_errors=False)
            for tx, res in zip(chunk, results, strict=True):
                if isinstance(res, JsonRpcError):
                    raise DevnetError(f"send failed from {tx.sender} to {tx.to}: {res.message}")
                hashes.append(str(res))
            self.sent += len(chunk)
            await self.mine_until_empty()
        await self.check(hashes)
        return hashes

    async def _nonces(self, senders: set[str]) -> dict[str, int]:
        """Explicit nonces: a JSON-RPC batch is served concurrently, so anvil's own nonce filling races."""
        ordered = sorted(senders)
        out: dict[str, int] = {}
        for i in range(0, len(ordered), 1000):
            chunk = ordered[i : i + 1000]
            counts = await self.rpc.batch([("eth_getTransactionCount", [a, "pending"]) for a in chunk])
            out.update({a: hex_to_int(c) for a, c in zip(chunk, counts, strict=True)})
        return out

    async def mine_until_empty(self, max_blocks: int = 10_000) -> None:
        for _ in range(max_blocks):
            status = await self.rpc.call("txpool_status")
            if hex_to_int(status.get("pending", "0x0")) == 0 and hex_to_int(status.get("queued", "0x0")) == 0:
                return
            await self.miner.mine()
            self.blocks_mined += 1
        raise DevnetError("mempool did not drain")

    async def check(self, hashes: Sequence[str]) -> None:
        for i in range(0, len(hashes), 1000):
            chunk = hashes[i : i + 1000]
            receipts = await self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in chunk])
            for h, r in zip(chunk, receipts, strict=True):
                if r is None:
                    raise DevnetError(f"transaction {h} was not mined")
                if r.get("status") != "0x1":
                    raise DevnetError(f"transaction {h} reverted (to {r.get('to')})")


async def eth_call_decode(
    rpc: RpcClient, to: str, signature: str, types: Sequence[str], args: Sequence[Any], out: Sequence[str]
) -> tuple[Any, ...]:
    raw = await rpc.eth_call(to, encode_call(signature, types, args))
    return tuple(decode(list(out), raw))


async def wait_blocks(rpc: RpcClient, n: int, poll: float = 0.05) -> int:
    """Waits until `n` more blocks exist (someone else mines); returns the new head."""
    start = await rpc.block_number()
    while True:
        head = await rpc.block_number()
        if head >= start + n:
            return head
        await asyncio.sleep(poll)
