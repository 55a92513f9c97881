"""The relay client (keeper.executors.builder_client, .builders) against the devnet relay
(keeper/devnet/relay.py) on a real anvil."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from keeper.chain.flashbots_auth import FlashbotsSigner
from keeper.chain.rpc import RpcClient
from keeper.devnet.anvil import DEV_ACCOUNTS, Anvil, AnvilConfig
from keeper.devnet.relay import RelayServer
from keeper.executors.builder_client import BundleClient
from keeper.executors.builders import MultiBuilderClient
from keeper.executors.relay_types import (
    Bundle,
    RelayRejected,
    RelayTransportError,
    block_replacement_uuid,
)

pytestmark = pytest.mark.integration

GWEI = 10**9
CHAIN_ID = 31337
A_ADDR, A_KEY = DEV_ACCOUNTS[0]
B_ADDR, B_KEY = DEV_ACCOUNTS[1]
E_ADDR, E_KEY = DEV_ACCOUNTS[4]
SINK = "0x000000000000000000000000000000000000dEaD"
IDENTITY_KEY = "0x" + keccak(b"keeper bundles integration identity").hex()
IDENTITY = FlashbotsSigner(IDENTITY_KEY)

REVERTER = bytes.fromhex("60006000fd")  # PUSH1 0 PUSH1 0 REVERT
PAYER = bytes.fromhex("600060006000600034415af100")  # forwards msg.value to block.coinbase


def init_code(runtime: bytes) -> bytes:
    n = len(runtime)
    return bytes([0x60, n, 0x60, 0x0C, 0x60, 0x00, 0x39, 0x60, n, 0x60, 0x00, 0xF3]) + runtime


def sign_tx(
    key: str,
    nonce: int,
    to: str | None,
    *,
    value: int = 0,
    data: bytes = b"",
    tip: int = GWEI,
    gas: int = 100_000,
) -> tuple[str, str]:
    tx: dict[str, Any] = {
        "chainId": CHAIN_ID,
        "type": 2,
        "nonce": nonce,
        "maxFeePerGas": 100 * GWEI,
        "maxPriorityFeePerGas": tip,
        "gas": gas,
        "value": value,
        "data": data,
    }
    if to is not None:
        tx["to"] = to
    signed = Account.sign_transaction(tx, key)
    return "0x" + bytes(signed.raw_transaction).hex(), "0x" + bytes(signed.hash).hex()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def node() -> AsyncIterator[Anvil]:
    async with Anvil(AnvilConfig(no_mining=True, extra_args=["--order", "fifo"])) as anvil:
        yield anvil


@pytest.fixture
async def rpc(node: Anvil) -> AsyncIterator[RpcClient]:
    async with RpcClient(node.http_url, retries=1) as client:
        yield client


@pytest.fixture
async def relay(node: Anvil) -> AsyncIterator[RelayServer]:
    async with RelayServer(node.http_url, port=0) as server:
        yield server


@pytest.fixture
async def client(relay: RelayServer) -> AsyncIterator[BundleClient]:
    async with BundleClient(relay.url, IDENTITY_KEY, timeout=10.0) as c:
        yield c


async def deploy(rpc: RpcClient, relay: RelayServer, runtime: bytes) -> str:
    nonce = int(await rpc.call("eth_getTransactionCount", [E_ADDR, "pending"]), 16)
    raw, h = sign_tx(E_KEY, nonce, None, data=init_code(runtime), gas=200_000)
    await rpc.call("eth_sendRawTransaction", [raw])
    await relay.builder.build_block()
    receipt = await rpc.call("eth_getTransactionReceipt", [h])
    assert receipt["status"] == "0x1"
    return to_checksum_address(receipt["contractAddress"])


async def test_send_bundle_is_authenticated_and_included(
    client: BundleClient, relay: RelayServer, rpc: RpcClient
) -> None:
    n = await rpc.block_number() + 1
    t1 = sign_tx(A_KEY, 0, SINK, value=1)
    t2 = sign_tx(B_KEY, 0, SINK, value=2)
    rid = uuid.uuid4()
    bh = await client.send_bundle(Bundle.build([t1[0], t2[0]], n, replacement_uuid=rid))
    assert bh == "0x" + keccak(bytes.fromhex(t1[1][2:] + t2[1][2:])).hex()
    rec = relay.received[-1]
    assert (rec.method, rec.signer, rec.error) == ("eth_sendBundle", IDENTITY.address, None)
    assert rec.params == [{"txs": [t1[0], t2[0]], "blockNumber": hex(n), "replacementUuid": str(rid)}]
    built = await relay.builder.build_block()
    assert built.number == n
    assert built.bundles == (bh,)
    assert list(built.tx_hashes[:2]) == [t1[1], t2[1]]


async def test_call_bundle_parses_the_relay_result(
    client: BundleClient, relay: RelayServer, rpc: RpcClient
) -> None:
    payer = await deploy(rpc, relay, PAYER)
    reverter = await deploy(rpc, relay, REVERTER)
    n = await rpc.block_number() + 1
    bribe = 12_345_678_901
    t1 = sign_tx(A_KEY, 0, payer, value=bribe, tip=2 * GWEI)
    t2 = sign_tx(A_KEY, 1, reverter)
    res = await client.call_bundle([t1[0], t2[0]], n)
    assert res.state_block_number == n - 1
    assert [r.tx_hash for r in res.results] == [t1[1], t2[1]]
    ok, bad = res.results
    assert ok.success and ok.value == b""
    assert ok.eth_sent_to_coinbase == bribe
    assert ok.from_address == A_ADDR
    assert ok.coinbase_diff == ok.gas_fees + bribe
    assert ok.gas_price == ok.coinbase_diff // ok.gas_used
    assert not bad.success
    assert bad.error == "execution reverted"
    assert bad.revert == b""
    assert res.total_gas_used == ok.gas_used + bad.gas_used
    assert res.coinbase_diff == ok.coinbase_diff + bad.coinbase_diff
    assert res.eth_sent_to_coinbase == bribe
    assert res.bundle_gas_price == res.coinbase_diff // res.total_gas_used


async def test_relay_errors_map_to_relay_rejected(client: BundleClient, rpc: RpcClient) -> None:
    n = await rpc.block_number() + 1
    with pytest.raises(RelayRejected) as info:
        await client.send_bundle(Bundle.build(["0x02c0"], n))
    assert (info.value.code, info.value.status) == (-32602, 400)
    assert "unable to decode txs" in str(info.value)
    # a tx that cannot be applied fails the whole eth_callBundle
    raw, h = sign_tx(A_KEY, 5, SINK)
    with pytest.raises(RelayRejected) as info:
        await client.call_bundle([raw], n)
    assert (info.value.code, info.value.status) == (-32000, 400)
    assert "nonce too high" in str(info.value)
    assert h in str(info.value)


async def test_private_transaction(client: BundleClient, relay: RelayServer, rpc: RpcClient) -> None:
    raw, h = sign_tx(A_KEY, 0, SINK, value=3)
    assert await client.send_private_transaction(raw) == h
    assert [p.tx.hash for p in relay.builder.private_txs] == [h]
    built = await relay.builder.build_block()
    assert h in built.tx_hashes


async def test_fan_out_n1_n2_and_cancel(relay: RelayServer, rpc: RpcClient) -> None:
    down = f"http://127.0.0.1:{free_port()}/api/SECRET"
    n = await rpc.block_number() + 1
    raw, h = sign_tx(A_KEY, 0, SINK, value=1)
    rid = uuid.uuid4()
    async with MultiBuilderClient([relay.url, down], IDENTITY_KEY, retries=1, timeout=10.0) as multi:
        out = await multi.send_bundle_for_blocks([raw], n, n_blocks=2, replacement_uuid=rid)
        for block in (n, n + 1):
            live, dead = out[block]
            assert live.ok, live.error
            assert live.bundle_hash == "0x" + keccak(bytes.fromhex(h[2:])).hex()
            assert not dead.ok
            assert isinstance(dead.error, RelayTransportError)
            assert "SECRET" not in str(dead.error)
            [stored] = relay.builder.pending_bundles(block)
            assert stored.replacement_uuid == block_replacement_uuid(rid, block)
            assert stored.signer == IDENTITY.address
        # both blocks' bundles coexist (distinct uuids); a resend for N+1 replaces only N+1's
        await multi.send_bundle_for_blocks([raw], n, n_blocks=1, replacement_uuid=rid)
        assert len(relay.builder.pending_bundles(n)) == 1
        assert len(relay.builder.pending_bundles(n + 1)) == 1
        cancelled = await multi.cancel_for_blocks(rid, n, n_blocks=2)
        assert all(cancelled[b][0].ok for b in (n, n + 1))
        assert relay.builder.pending_bundles() == []


async def test_simulate_falls_back_to_the_devnet_relay(relay: RelayServer, rpc: RpcClient) -> None:
    down = f"dead=http://127.0.0.1:{free_port()}/api/SECRET"
    n = await rpc.block_number() + 1
    raw, h = sign_tx(A_KEY, 0, SINK, value=1)
    async with MultiBuilderClient([down, f"devnet={relay.url}"], IDENTITY_KEY, retries=1) as multi:
        out = await multi.simulate([raw], n)
    assert out.builder == "devnet"
    assert [name for name, _ in out.failures] == ["dead"]
    assert isinstance(out.failures[0][1], RelayTransportError)
    assert "SECRET" not in str(out.failures[0][1])
    [tx] = out.result.results
    assert tx.tx_hash == h
    assert tx.success
    assert tx.gas_used == 21_000
