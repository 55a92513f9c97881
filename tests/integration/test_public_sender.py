"""PublicSender + NonceManager against a real anvil (no automine: blocks only when the test mines).

Reliability tests 5 (stuck tx: bumps >= 10% per step, never above the cap, one tx per nonce mined) and
6 (nonce drift recovered, gaps filled), plus cancel-by-no-op and the private relay path.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from keeper.chain.flashbots_auth import HEADER, FlashbotsSigner, recover_signer
from keeper.chain.rpc import RpcClient
from keeper.chain.signer import Eip1559Tx, TxSigner
from keeper.core.actions import SendMode, TxIntent
from keeper.devnet.anvil import Anvil, AnvilConfig
from keeper.executors.fees import is_valid_replacement, next_base_fee_from_header
from keeper.executors.nonce import NonceManager
from keeper.executors.public import PrivateRelay, PublicSender, TrackedTx, TxState

pytestmark = pytest.mark.integration

GWEI = 10**9
SINK = "0x000000000000000000000000000000000000dEaD"


@pytest.fixture(scope="module")
async def node() -> AsyncIterator[Anvil]:
    async with Anvil(AnvilConfig(no_mining=True)) as anvil:
        yield anvil


@pytest.fixture
async def rpc(node: Anvil) -> AsyncIterator[RpcClient]:
    async with RpcClient(node.http_url) as client:
        # Each test starts from a 1 gwei base fee, whatever the previous one left.
        await client.call("anvil_setNextBlockBaseFeePerGas", [hex(GWEI)])
        await client.call("evm_mine")
        yield client


async def fresh_signer(rpc: RpcClient) -> TxSigner:
    signer = TxSigner.from_key("0x" + secrets.token_hex(32))
    await rpc.call("anvil_setBalance", [signer.address, hex(10**21)])
    return signer


async def make_sender(rpc: RpcClient, signer: TxSigner, **kw: Any) -> PublicSender:
    nonces = NonceManager(rpc, signer.address)
    sender = PublicSender(rpc, signer, nonces, chain_id=31337, **kw)
    await sender.start()
    return sender


async def mine(rpc: RpcClient, sender: PublicSender, *, next_base_fee: int | None = None) -> int:
    if next_base_fee is not None:
        await rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(next_base_fee)])
    await rpc.call("evm_mine")
    number = await rpc.block_number()
    await sender.on_new_block(number)
    return number


async def mined_hashes(rpc: RpcClient, hashes: tuple[str, ...]) -> list[str]:
    receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
    return [h for h, r in zip(hashes, receipts, strict=True) if r is not None]


async def tx_count(rpc: RpcClient, address: str) -> int:
    return int(await rpc.call("eth_getTransactionCount", [address, "latest"]), 16)


def state_of(t: TrackedTx) -> TxState:
    return t.state  # (a function call: mypy must not narrow t.state across awaits)


def assert_bump_ladder(attempts: list[Any], cap: int) -> None:
    for prev, new in zip(attempts, attempts[1:], strict=False):
        assert is_valid_replacement(prev.fees, new.fees)  # both fields > old and >= old * 1.10
        assert new.fees.max_fee_per_gas * 100 >= prev.fees.max_fee_per_gas * 110
        assert new.fees.max_priority_fee_per_gas * 100 >= prev.fees.max_priority_fee_per_gas * 110
    for a in attempts:
        assert a.fees.max_fee_per_gas <= cap
        assert a.fees.max_priority_fee_per_gas <= a.fees.max_fee_per_gas


async def test_stuck_tx_is_bumped_to_the_cap_then_mined_once(rpc: RpcClient) -> None:
    signer = await fresh_signer(rpc)
    sender = await make_sender(rpc, signer, chase_base_fee=False)  # pure +12.5% ladder
    cap = 10 * GWEI
    async with asyncio.timeout(60):
        t = await sender.send(TxIntent(to=SINK, data=b"", value=1, gas_limit=21_000), max_fee_cap=cap)
        assert t.current.fees.max_fee_per_gas < 5 * GWEI
        # Base fee 100 gwei every block: the tx cannot be included (anvil even evicts it).
        blocks = 0
        while not t.at_cap:
            await mine(rpc, sender, next_base_fee=100 * GWEI)
            blocks += 1
            assert blocks < 80, "never reached the cap"
            assert t.state is TxState.PENDING
        assert len(t.attempts) >= 5
        assert_bump_ladder(t.attempts, cap)
        # Bumps happen every stuck_blocks (3) blocks, not faster.
        sent_at = [a.block for a in t.attempts]
        assert all(b - a >= 3 for a, b in zip(sent_at, sent_at[1:], strict=False))
        # At the cap: more stuck blocks add no attempt above the cap.
        for _ in range(4):
            await mine(rpc, sender, next_base_fee=100 * GWEI)
        assert_bump_ladder(t.attempts, cap)
        n_attempts = len(t.attempts)
        # Fees allow again: the capped tx is re-broadcast and mined.
        await rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(GWEI)])
        for _ in range(8):
            await mine(rpc, sender)
            if t.state is TxState.MINED:
                break
        assert t.state is TxState.MINED
        assert await t.wait(1) is TxState.MINED
    assert len(t.attempts) == n_attempts
    assert await mined_hashes(rpc, t.hashes) == [t.mined_hash]
    assert await tx_count(rpc, signer.address) == t.nonce + 1
    assert t.succeeded and not t.cancelled


async def test_stuck_tx_chases_the_base_fee_within_the_cap(rpc: RpcClient) -> None:
    signer = await fresh_signer(rpc)
    sender = await make_sender(rpc, signer)
    cap = 300 * GWEI
    async with asyncio.timeout(30):
        t = await sender.send(TxIntent(to=SINK, data=b"", value=1, gas_limit=21_000), max_fee_cap=cap)
        for _ in range(10):
            await mine(rpc, sender, next_base_fee=100 * GWEI)
            if t.state is TxState.MINED:
                break
    assert t.state is TxState.MINED
    assert len(t.attempts) == 2  # one replacement, straight to what the base fee needs
    assert_bump_ladder(t.attempts, cap)
    assert t.attempts[1].block - t.attempts[0].block >= 3
    assert await mined_hashes(rpc, t.hashes) == [t.mined_hash]


async def test_nonce_drift_from_another_process_is_recovered(rpc: RpcClient) -> None:
    key = "0x" + secrets.token_hex(32)
    signer = TxSigner.from_key(key)
    await rpc.call("anvil_setBalance", [signer.address, hex(10**21)])
    sender = await make_sender(rpc, signer)
    assert sender.nonces.next_nonce == 0

    # Another process (same key, not through the manager) sends and gets mined: "nonce too low".
    outside = TxSigner.from_key(key)

    def external(nonce: int, fee: int) -> str:
        tx = Eip1559Tx(31337, nonce, 2 * GWEI, fee, 21_000, SINK, 7)
        return outside.sign(tx).raw_hex

    async with asyncio.timeout(30):
        await rpc.call("eth_sendRawTransaction", [external(0, 50 * GWEI)])
        await mine(rpc, sender)
        t = await sender.send(TxIntent(to=SINK, data=b"", value=1, gas_limit=21_000), max_fee_cap=200 * GWEI)
        assert t.nonce == 1
        await mine(rpc, sender)
        assert t.state is TxState.MINED and t.succeeded

        # Another process's tx is pending at our next nonce with a higher fee: "underpriced" -> re-sync.
        await rpc.call("eth_sendRawTransaction", [external(2, 90 * GWEI)])
        t2 = await sender.send(TxIntent(to=SINK, data=b"", value=2, gas_limit=21_000), max_fee_cap=50 * GWEI)
        assert t2.nonce == 3
        await mine(rpc, sender)
        assert t2.state is TxState.MINED
    assert await tx_count(rpc, signer.address) == 4


async def test_gap_from_an_unsent_reservation_is_filled_with_a_noop(rpc: RpcClient) -> None:
    signer = await fresh_signer(rpc)
    sender = await make_sender(rpc, signer)
    async with asyncio.timeout(30):
        gap = await sender.nonces.reserve()  # e.g. a strategy crashed between reserve and send
        t = await sender.send(TxIntent(to=SINK, data=b"", value=3, gas_limit=21_000), max_fee_cap=100 * GWEI)
        assert t.nonce == gap + 1
        sender.nonces.release(gap)  # not the top one: it becomes a gap, not a reusable nonce
        await mine(rpc, sender)  # nothing can be mined: nonce `gap` is missing; the sender fills it
        filler = sender.tracked(gap)
        assert filler is not None and filler.noop
        for _ in range(3):
            if t.state is TxState.MINED and filler.state is TxState.MINED:
                break
            await mine(rpc, sender)
    assert t.state is TxState.MINED and t.succeeded
    assert filler.state is TxState.MINED
    tx = await rpc.call("eth_getTransactionByHash", [filler.mined_hash])
    assert tx["to"].lower() == signer.address.lower() and int(tx["value"], 16) == 0
    assert int(tx["nonce"], 16) == gap
    assert await tx_count(rpc, signer.address) == gap + 2


async def test_stale_reservation_becomes_a_gap(rpc: RpcClient) -> None:
    signer = await fresh_signer(rpc)
    nonces = NonceManager(rpc, signer.address, stale_after=0.0)
    sender = PublicSender(rpc, signer, nonces, chain_id=31337)
    await sender.start()
    async with asyncio.timeout(30):
        gap = await nonces.reserve()  # never sent, never released
        t = await sender.send(TxIntent(to=SINK, data=b"", value=3, gas_limit=21_000), max_fee_cap=100 * GWEI)
        for _ in range(3):
            await mine(rpc, sender)
            if t.state is TxState.MINED:
                break
    assert t.state is TxState.MINED
    filler = sender.tracked(gap)
    assert filler is not None and filler.noop and filler.state is TxState.MINED


async def test_cancel_replaces_with_a_noop_at_the_same_nonce(rpc: RpcClient) -> None:
    signer = await fresh_signer(rpc)
    sender = await make_sender(rpc, signer)
    before = await rpc.get_balance(SINK)
    async with asyncio.timeout(30):
        t = await sender.send(
            TxIntent(to=SINK, data=b"", value=12345, gas_limit=21_000), max_fee_cap=100 * GWEI
        )
        await sender.cancel(t.nonce)
        assert t.cancel_requested and t.current.noop
        assert_bump_ladder(t.attempts, 100 * GWEI)
        await mine(rpc, sender)
    assert t.state is TxState.MINED and t.cancelled and not t.succeeded
    assert await mined_hashes(rpc, t.hashes) == [t.mined_hash] == [t.attempts[1].hash]
    assert await rpc.get_balance(SINK) == before
    assert await tx_count(rpc, signer.address) == t.nonce + 1


async def test_private_mode_goes_through_a_signed_relay(rpc: RpcClient, node: Anvil) -> None:
    """A stand-in relay checks X-Flashbots-Signature and forwards the raw tx to anvil."""
    identity = FlashbotsSigner("0x" + secrets.token_hex(32))
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        signer_address = recover_signer(request.headers.get(HEADER, ""), body)
        seen.append(signer_address)
        import orjson

        msg = orjson.loads(body)
        assert msg["method"] == "eth_sendPrivateTransaction"
        try:
            result = await rpc.call("eth_sendRawTransaction", [msg["params"][0]["tx"]])
        except Exception as exc:  # the relay reports node errors as JSON-RPC errors
            return web.json_response(
                {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32000, "message": str(exc)}}
            )
        return web.json_response({"jsonrpc": "2.0", "id": msg["id"], "result": result})

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    relay = PrivateRelay(f"http://127.0.0.1:{port}/", identity)
    try:
        signer = await fresh_signer(rpc)
        sender = await make_sender(rpc, signer, mode=SendMode.PRIVATE, relay=relay)
        async with asyncio.timeout(30):
            t = await sender.send(
                TxIntent(to=SINK, data=b"", value=5, gas_limit=21_000), max_fee_cap=300 * GWEI
            )
            for _ in range(6):
                await mine(rpc, sender, next_base_fee=100 * GWEI)
                if t.state is TxState.MINED:
                    break
        assert t.state is TxState.MINED
        assert len(t.attempts) == 2  # the replacement went through the relay too
        assert seen == [identity.address] * len(seen) and len(seen) >= 2
        assert await mined_hashes(rpc, t.hashes) == [t.mined_hash]
    finally:
        await relay.close()
        await runner.cleanup()


async def test_next_base_fee_matches_anvil(rpc: RpcClient) -> None:
    """The exact EIP-1559 formula against the node's own headers, above, at and below target."""
    signer = await fresh_signer(rpc)
    sender = await make_sender(rpc, signer)
    checked = 0
    async with asyncio.timeout(30):
        for n_txs in (0, 1, 2, 3, 0, 3):
            await rpc.call("evm_setBlockGasLimit", [hex(42_000)])  # target 21000: one transfer
            for _ in range(n_txs):
                await sender.send(
                    TxIntent(to=SINK, data=b"", value=1, gas_limit=21_000), max_fee_cap=500 * GWEI
                )
            parent = await rpc.call("eth_getBlockByNumber", ["latest", False])
            await rpc.call("evm_mine")
            child = await rpc.call("eth_getBlockByNumber", ["latest", False])
            await sender.on_new_block(int(child["number"], 16))
            assert next_base_fee_from_header(parent) == int(child["baseFeePerGas"], 16)
            checked += 1
        await rpc.call("evm_setBlockGasLimit", [hex(60_000_000)])
        for _ in range(4):
            await mine(rpc, sender)
    assert checked == 6


async def test_reorg_that_drops_our_mined_tx_is_retracked(rpc: RpcClient) -> None:
    signer = await fresh_signer(rpc)
    sender = await make_sender(rpc, signer)
    async with asyncio.timeout(30):
        t = await sender.send(TxIntent(to=SINK, data=b"", value=9, gas_limit=21_000), max_fee_cap=100 * GWEI)
        await mine(rpc, sender)
        assert t.state is TxState.MINED
        first_block = t.mined_block
        await mine(rpc, sender)
        # Depth-2 reorg: the last two blocks are replaced by empty ones; our tx is gone from the chain.
        await rpc.call("anvil_reorg", [2, []])
        assert await mined_hashes(rpc, t.hashes) == []
        await sender.on_new_block(await rpc.block_number())
        assert state_of(t) is TxState.PENDING  # re-tracked and re-broadcast
        for _ in range(3):
            await mine(rpc, sender)
            if t.state is TxState.MINED:
                break
    assert t.state is TxState.MINED and t.succeeded
    assert t.mined_block is not None and first_block is not None and t.mined_block > first_block
    assert await mined_hashes(rpc, t.hashes) == [t.mined_hash]
    assert await tx_count(rpc, signer.address) == t.nonce + 1


def test_error_classification() -> None:
    from keeper.errors import JsonRpcError, RelayError
    from keeper.executors.public import classify_error

    cases = {
        "nonce too low": "nonce_low",
        "already known": "known",
        "transaction already imported": "known",
        "max fee per gas less than block base fee": "base_fee",
        "replacement transaction underpriced": "replacement",
        "transaction underpriced": "underpriced",
        "insufficient funds for gas * price + value": "other",
    }
    for message, kind in cases.items():
        assert classify_error(JsonRpcError(-32003, message)) == kind, message
        assert classify_error(RelayError(f"relay: {message}")) == kind, message
