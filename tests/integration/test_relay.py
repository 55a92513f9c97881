"""The devnet bundle relay and block builder against a real anvil (automine off, FIFO ordering)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from keeper.chain.flashbots_auth import HEADER, FlashbotsSigner
from keeper.chain.rpc import RpcClient
from keeper.devnet.anvil import DEV_ACCOUNTS, Anvil, AnvilConfig
from keeper.devnet.builder import BUILDER_COINBASE
from keeper.devnet.miner import PlainMiner, mine_forever
from keeper.devnet.relay import RelayServer, run_relay

pytestmark = pytest.mark.integration

GWEI = 10**9
CHAIN_ID = 31337
# DEV_ACCOUNTS[2]'s key in keeper/devnet/anvil.py does not match its address; use 0, 1, 3, 4.
A_ADDR, A_KEY = DEV_ACCOUNTS[0]
B_ADDR, B_KEY = DEV_ACCOUNTS[1]
D_ADDR, D_KEY = DEV_ACCOUNTS[3]
E_ADDR, E_KEY = DEV_ACCOUNTS[4]
SINK = "0x000000000000000000000000000000000000dEaD"
# The searcher's Flashbots identity: holds no funds.
IDENTITY = FlashbotsSigner("0x" + keccak(b"keeper test searcher identity").hex())
OTHER_IDENTITY = FlashbotsSigner("0x" + keccak(b"someone else").hex())

# Hand-assembled runtime bytecode.
REVERTER = bytes.fromhex("60006000fd")  # PUSH1 0 PUSH1 0 REVERT
# PUSH1 0 x4 (retSize, retOffset, argsSize, argsOffset) CALLVALUE COINBASE GAS CALL STOP:
# forwards msg.value to block.coinbase, like `block.coinbase.transfer(msg.value)`.
PAYER = bytes.fromhex("600060006000600034415af100")
# A one-shot "liquidation": if slot 0 is set, REVERT; else set it and pay msg.value to the coinbase.
ONESHOT = bytes.fromhex("60005415600c5760006000fd5b600160005560006000600060003441" + "5af100")


def init_code(runtime: bytes) -> bytes:
    """CODECOPY the runtime that follows this 12-byte prefix to memory 0 and RETURN it."""
    n = len(runtime)
    assert n < 256
    return bytes([0x60, n, 0x60, 0x0C, 0x60, 0x00, 0x39, 0x60, n, 0x60, 0x00, 0xF3]) + runtime


def sign_tx(
    key: str,
    nonce: int,
    to: str | None,
    *,
    value: int = 0,
    data: bytes = b"",
    tip: int = 1 * GWEI,
    max_fee: int = 100 * GWEI,
    gas: int = 100_000,
) -> tuple[str, str]:
    tx: dict[str, Any] = {
        "chainId": CHAIN_ID,
        "type": 2,
        "nonce": nonce,
        "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": tip,
        "gas": gas,
        "value": value,
        "data": data,
    }
    if to is not None:
        tx["to"] = to
    signed = Account.sign_transaction(tx, key)
    return "0x" + bytes(signed.raw_transaction).hex(), "0x" + bytes(signed.hash).hex()


def bundle_hash_of(*tx_hashes: str) -> str:
    return "0x" + keccak(b"".join(bytes.fromhex(h[2:]) for h in tx_hashes)).hex()


class Client:
    """A minimal signed JSON-RPC client for the relay (the real one lives in keeper/executors)."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session

    async def post(
        self, body: bytes, *, signer: FlashbotsSigner | None = IDENTITY, header: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if header is not None:
            headers[HEADER] = header
        elif signer is not None:
            headers[HEADER] = signer.sign(body)
        async with self.session.post(self.url, data=body, headers=headers) as resp:
            return resp.status, orjson.loads(await resp.read())

    async def call(
        self, method: str, params: Any, *, signer: FlashbotsSigner | None = IDENTITY
    ) -> tuple[int, dict[str, Any]]:
        body = orjson.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
        return await self.post(body, signer=signer)

    async def result(self, method: str, params: Any) -> Any:
        status, reply = await self.call(method, params)
        assert status == 200, reply
        assert "error" not in reply, reply
        return reply["result"]


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
async def client(relay: RelayServer) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(relay.url, session)


async def deploy(rpc: RpcClient, relay: RelayServer, runtime: bytes, key: str = E_KEY) -> str:
    sender = Account.from_key(key).address
    nonce = int(await rpc.call("eth_getTransactionCount", [sender, "pending"]), 16)
    raw, h = sign_tx(key, nonce, None, data=init_code(runtime), gas=200_000)
    await rpc.call("eth_sendRawTransaction", [raw])
    await relay.builder.build_block()
    receipt = await rpc.call("eth_getTransactionReceipt", [h])
    assert receipt["status"] == "0x1"
    address = to_checksum_address(receipt["contractAddress"])
    assert await rpc.call("eth_getCode", [address, "latest"]) == "0x" + runtime.hex()
    return address


async def nonce_of(rpc: RpcClient, addr: str) -> int:
    return int(await rpc.call("eth_getTransactionCount", [addr, "latest"]), 16)


async def block_txs(rpc: RpcClient, number: int) -> list[str]:
    block = await rpc.call("eth_getBlockByNumber", [hex(number), False])
    return [str(h).lower() for h in block["transactions"]]


# ---------------------------------------------------------------------------------------------------
# Authentication and validation


async def test_signed_bundle_accepted_and_recorded(
    client: Client, relay: RelayServer, rpc: RpcClient
) -> None:
    n = await rpc.block_number() + 1
    raw, h = sign_tx(A_KEY, 0, SINK, value=1)
    t0 = time.time()
    result = await client.result("eth_sendBundle", [{"txs": [raw], "blockNumber": hex(n)}])
    assert result == {"bundleHash": bundle_hash_of(h)}
    rec = relay.received[-1]
    assert rec.method == "eth_sendBundle"
    assert rec.signer == IDENTITY.address
    assert rec.error is None
    assert rec.params == [{"txs": [raw], "blockNumber": hex(n)}]
    assert t0 <= rec.at <= time.time()
    [stored] = relay.builder.pending_bundles(n)
    assert stored.signer == IDENTITY.address
    assert [t.hash for t in stored.txs] == [h]
    assert stored.txs[0].sender == A_ADDR


async def test_wrong_signature_is_rejected_with_403(client: Client, relay: RelayServer) -> None:
    raw, _ = sign_tx(A_KEY, 0, SINK)
    body = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_sendBundle",
            "params": [{"txs": [raw], "blockNumber": "0x5"}],
        }
    )
    # signed by one key, claiming another address
    _, sig = OTHER_IDENTITY.sign(body).split(":")
    status, reply = await client.post(body, header=f"{IDENTITY.address}:{sig}")
    assert status == 403
    assert reply["error"]["code"] == -32025
    assert "invalid flashbots signature" in reply["error"]["message"]
    # a valid signature over other bytes (the body re-serialized with a space)
    status, reply = await client.post(body, header=IDENTITY.sign(body + b" "))
    assert (status, reply["error"]["code"]) == (403, -32025)
    # the signature without its 0x prefix (the hexbytes >= 1 bug)
    addr, sig = IDENTITY.sign(body).split(":")
    status, reply = await client.post(body, header=f"{addr}:{sig[2:]}")
    assert (status, reply["error"]["code"]) == (403, -32025)
    assert relay.builder.pending_bundles() == []
    assert all(r.signer is None and r.error for r in relay.received)


async def test_unsigned_request_is_rejected(client: Client, relay: RelayServer) -> None:
    status, reply = await client.call("eth_sendBundle", [{"txs": [], "blockNumber": "0x1"}], signer=None)
    assert status == 403
    assert reply["error"] == {"code": -32600, "message": "signature is required"}
    assert relay.builder.pending_bundles() == []


def _bad_bundles() -> list[tuple[Any, str]]:
    raw, _ = sign_tx(A_KEY, 0, SINK)
    big = "0x" + "00" * 3001
    return [
        ([{"blockNumber": "0x5"}], "missing txs"),
        ([{"txs": [], "blockNumber": "0x5"}], "missing txs"),
        ([{"txs": raw, "blockNumber": "0x5"}], "txs must be a list"),
        ([{"txs": ["0xzz"], "blockNumber": "0x5"}], "txs[0] is not valid hex"),
        ([{"txs": ["abcd"], "blockNumber": "0x5"}], "txs[0] must be a 0x-prefixed hex string"),
        ([{"txs": [raw, "0x02c0"], "blockNumber": "0x5"}], "unable to decode txs: txs[1]"),
        ([{"txs": ["0x03" + raw[4:]], "blockNumber": "0x5"}], "blob transactions"),
        ([{"txs": [raw], "blockNumber": 5}], "blockNumber must be a hex quantity"),
        ([{"txs": [raw], "blockNumber": "5"}], "blockNumber must be a hex quantity"),
        ([{"txs": [raw], "blockNumber": "0xgg"}], "blockNumber must be a hex quantity"),
        ([{"txs": [raw]}], "blockNumber must be a hex quantity"),
        ([{"txs": [raw] * 101, "blockNumber": "0x5"}], "too many txs: 101 > 100"),
        ([{"txs": [big] * 100, "blockNumber": "0x5"}], "bundle too large"),
        ([{"txs": [raw], "blockNumber": "0x5", "revertingTxHashes": ["0x12"]}], "revertingTxHashes[0]"),
        ([{"txs": [raw], "blockNumber": "0x5", "replacementUuid": "nope"}], "replacementUuid"),
        ([{"txs": [raw], "blockNumber": "0x5", "minTimestamp": "soon"}], "minTimestamp"),
        ({"txs": [raw], "blockNumber": "0x5"}, "params must be a list"),
        ([], "params must be a list"),
    ]


@pytest.mark.parametrize(("params", "message"), _bad_bundles())
async def test_bad_params_give_32602(client: Client, relay: RelayServer, params: Any, message: str) -> None:
    status, reply = await client.call("eth_sendBundle", params)
    assert status == 400
    assert reply["id"] == 7
    assert reply["error"]["code"] == -32602
    assert message in reply["error"]["message"]
    assert relay.builder.pending_bundles() == []


async def test_malformed_requests_never_crash_the_server(client: Client, relay: RelayServer) -> None:
    cases: list[tuple[bytes, int, int]] = [
        (b"\xff\xfe not json", 400, -32700),
        (b"[]", 400, -32600),
        (b"42", 400, -32600),
        (b'{"jsonrpc":"2.0","id":1,"method":5}', 400, -32600),
        (b'{"jsonrpc":"2.0","id":1,"method":"eth_nope","params":[]}', 400, -32601),
        (b'{"jsonrpc":"2.0","id":1,"method":"eth_callBundle","params":null}', 400, -32602),
        (b'{"jsonrpc":"2.0","id":1,"method":"eth_callBundle","params":[{"txs":[1e400]}]}', 400, -32700),
        (b'{"jsonrpc":"2.0","id":1,"method":"eth_cancelBundle","params":[{}]}', 400, -32602),
        (b'{"jsonrpc":"2.0","id":1,"method":"eth_sendPrivateTransaction","params":[{"tx":7}]}', 400, -32602),
    ]
    for body, status, code in cases:
        got_status, reply = await client.post(body)
        assert (got_status, reply["error"]["code"]) == (status, code), body
    status, reply = await client.post(b"{" * 10 + b"x" * (3 * 1024 * 1024))
    assert status == 413
    assert reply["error"]["code"] == -32600
    # still serving
    raw, h = sign_tx(A_KEY, 0, SINK)
    assert await client.result("eth_sendBundle", [{"txs": [raw], "blockNumber": "0x9"}]) == {
        "bundleHash": bundle_hash_of(h)
    }


# ---------------------------------------------------------------------------------------------------
# Block building


async def test_bundle_is_atomic_at_the_top_and_public_txs_follow(
    client: Client, relay: RelayServer, rpc: RpcClient
) -> None:
    # public txs reach the pool first and pay a much higher tip than the bundle
    pub1, pub1_h = sign_tx(B_KEY, 0, SINK, value=5, tip=50 * GWEI)
    pub2, pub2_h = sign_tx(D_KEY, 0, SINK, value=6, tip=40 * GWEI)
    pub3, pub3_h = sign_tx(B_KEY, 1, SINK, value=7, tip=50 * GWEI)
    for raw in (pub1, pub2, pub3):
        await rpc.call("eth_sendRawTransaction", [raw])
    n = await rpc.block_number() + 1
    txs = [sign_tx(A_KEY, i, SINK, value=100 + i) for i in range(3)]
    txs.append(sign_tx(E_KEY, 0, SINK, value=200))
    bh = (await client.result("eth_sendBundle", [{"txs": [t[0] for t in txs], "blockNumber": hex(n)}]))[
        "bundleHash"
    ]
    built = await relay.builder.build_block()
    assert built.number == n
    assert built.order_ok
    mined = await block_txs(rpc, n)
    assert mined[:4] == [t[1] for t in txs]
    assert set(mined[4:]) == {pub1_h, pub2_h, pub3_h}
    assert mined.index(pub1_h) < mined.index(pub3_h)
    assert relay.included[n] == [bh]
    assert built.bundles == (bh,)
    block = await rpc.call("eth_getBlockByNumber", [hex(n), False])
    assert block["miner"].lower() == BUILDER_COINBASE.lower()
    assert (await rpc.call("txpool_status"))["pending"] == "0x0"


async def test_reverting_bundle_is_dropped_unless_allowed(
    client: Client, relay: RelayServer, rpc: RpcClient
) -> None:
    reverter = await deploy(rpc, relay, REVERTER)
    n = await rpc.block_number() + 1
    ok_raw, ok_h = sign_tx(A_KEY, 0, SINK, value=1)
    bad_raw, bad_h = sign_tx(A_KEY, 1, reverter)
    bh = (await client.result("eth_sendBundle", [{"txs": [ok_raw, bad_raw], "blockNumber": hex(n)}]))[
        "bundleHash"
    ]
    built = await relay.builder.build_block()
    assert built.number == n
    assert relay.included[n] == []
    assert bh in built.skipped
    assert "reverts" in built.skipped[bh]
    assert await block_txs(rpc, n) == []  # atomic: the good tx did not land either
    assert await nonce_of(rpc, A_ADDR) == 0

    # the same txs, the revert allowed: included, the revert on chain
    bh2 = (
        await client.result(
            "eth_sendBundle",
            [{"txs": [ok_raw, bad_raw], "blockNumber": hex(n + 1), "revertingTxHashes": [bad_h]}],
        )
    )["bundleHash"]
    assert bh2 == bh
    built = await relay.builder.build_block()
    assert relay.included[n + 1] == [bh]
    assert await block_txs(rpc, n + 1) == [ok_h, bad_h]
    receipt = await rpc.call("eth_getTransactionReceipt", [bad_h])
    assert receipt["status"] == "0x0"


async def test_call_bundle_reports_real_coinbase_accounting(
    client: Client, relay: RelayServer, rpc: RpcClient
) -> None:
    payer = await deploy(rpc, relay, PAYER)
    reverter = await deploy(rpc, relay, REVERTER)
    n = await rpc.block_number() + 1
    bribe = 12_345_678_901
    t1 = sign_tx(A_KEY, 0, payer, value=bribe, tip=2 * GWEI)
    t2 = sign_tx(B_KEY, 0, SINK, value=10**18, tip=3 * GWEI, max_fee=3 * GWEI)  # tip capped by maxFee
    t3 = sign_tx(A_KEY, 1, reverter, tip=1 * GWEI)
    txs = [t1[0], t2[0], t3[0]]
    res = await client.result(
        "eth_callBundle", [{"txs": txs, "blockNumber": hex(n), "stateBlockNumber": "latest"}]
    )
    assert set(res) == {
        "bundleGasPrice",
        "bundleHash",
        "coinbaseDiff",
        "ethSentToCoinbase",
        "gasFees",
        "results",
        "stateBlockNumber",
        "totalGasUsed",
    }
    assert res["bundleHash"] == bundle_hash_of(t1[1], t2[1], t3[1])
    assert res["stateBlockNumber"] == n - 1
    r1, r2, r3 = res["results"]
    assert r1["txHash"] == t1[1]
    assert r1["fromAddress"] == A_ADDR
    assert r1["toAddress"].lower() == payer.lower()
    assert r1["value"] == "0x"
    assert r1["ethSentToCoinbase"] == str(bribe)
    assert r2["ethSentToCoinbase"] == "0"
    assert r3["error"] == "execution reverted"
    assert r3["revert"] == "0x"
    assert "value" not in r3
    assert r3["ethSentToCoinbase"] == "0"

    # Now land the same bundle and check every figure against the mined block.
    await client.result("eth_sendBundle", [{"txs": txs, "blockNumber": hex(n), "revertingTxHashes": [t3[1]]}])
    cb_before = await rpc.get_balance(BUILDER_COINBASE, n - 1)
    built = await relay.builder.build_block()
    assert built.bundles == (res["bundleHash"],)
    block = await rpc.call("eth_getBlockByNumber", [hex(n), False])
    base_fee = int(block["baseFeePerGas"], 16)
    total_fees = 0
    total_gas = 0
    for (_, h), r in zip((t1, t2, t3), (r1, r2, r3), strict=True):
        receipt = await rpc.call("eth_getTransactionReceipt", [h])
        gas_used = int(receipt["gasUsed"], 16)
        fees = gas_used * (int(receipt["effectiveGasPrice"], 16) - base_fee)
        assert r["gasUsed"] == gas_used
        assert r["gasFees"] == str(fees)
        assert int(r["coinbaseDiff"]) == fees + int(r["ethSentToCoinbase"])
        assert r["gasPrice"] == str(int(r["coinbaseDiff"]) // gas_used)
        total_fees += fees
        total_gas += gas_used
    # t2's tip is capped: maxFee 3 gwei - base fee
    assert int(r2["gasFees"]) == 21_000 * (3 * GWEI - base_fee)
    assert res["gasFees"] == str(total_fees)
    assert res["ethSentToCoinbase"] == str(bribe)
    assert res["coinbaseDiff"] == str(total_fees + bribe)
    assert res["totalGasUsed"] == total_gas
    assert res["bundleGasPrice"] == str((total_fees + bribe) // total_gas)
    cb_after = await rpc.get_balance(BUILDER_COINBASE, n)
    assert cb_after - cb_before == total_fees + bribe


async def test_call_bundle_unappliable_tx_is_an_error(
    client: Client, relay: RelayServer, rpc: RpcClient
) -> None:
    n = await rpc.block_number() + 1
    good, _ = sign_tx(A_KEY, 0, SINK)
    gap, gap_h = sign_tx(A_KEY, 5, SINK)
    status, reply = await client.call("eth_callBundle", [{"txs": [good, gap], "blockNumber": hex(n)}])
    assert status == 400
    assert reply["error"]["code"] == -32000
    msg = reply["error"]["message"]
    assert msg.startswith("err: nonce too high")
    assert msg.endswith(f"; txhash {gap_h}")

    pauper = Account.from_key("0x" + keccak(b"no funds").hex())
    poor, poor_h = sign_tx(pauper.key.hex(), 0, SINK, value=1)
    status, reply = await client.call("eth_callBundle", [{"txs": [good, poor], "blockNumber": hex(n)}])
    assert status == 400
    assert "insufficient funds" in reply["error"]["message"]
    assert reply["error"]["message"].endswith(f"; txhash {poor_h}")

    cheap, cheap_h = sign_tx(A_KEY, 0, SINK, max_fee=1, tip=1)
    status, reply = await client.call("eth_callBundle", [{"txs": [cheap], "blockNumber": hex(n)}])
    assert "max fee per gas less than block base fee" in reply["error"]["message"]
    assert cheap_h in reply["error"]["message"]


async def test_conflicting_bundles_only_the_higher_paying_lands(
    client: Client, relay: RelayServer, rpc: RpcClient
) -> None:
    payer = await deploy(rpc, relay, PAYER)
    n = await rpc.block_number() + 1
    # same sender and nonce: the low payer arrives first
    low = sign_tx(A_KEY, 0, payer, value=10**14)
    high = sign_tx(A_KEY, 0, payer, value=10**15)
    low_bh = (await client.result("eth_sendBundle", [{"txs": [low[0]], "blockNumber": hex(n)}]))["bundleHash"]
    high_bh = (await client.result("eth_sendBundle", [{"txs": [high[0]], "blockNumber": hex(n)}]))[
        "bundleHash"
    ]
    built = await relay.builder.build_block()
    assert relay.included[n] == [high_bh]
    assert await block_txs(rpc, n) == [high[1]]
    assert "nonce too low" in built.skipped[low_bh]


async def test_same_liquidation_from_two_searchers(
    client: Client, relay: RelayServer, rpc: RpcClient
) -> None:
    oneshot = await deploy(rpc, relay, ONESHOT)
    n = await rpc.block_number() + 1
    a = sign_tx(A_KEY, 0, oneshot, value=3 * 10**15)
    b = sign_tx(B_KEY, 0, oneshot, value=5 * 10**15)  # pays more
    a_bh = (await client.result("eth_sendBundle", [{"txs": [a[0]], "blockNumber": hex(n)}]))["bundleHash"]
    b_bh = (await client.result("eth_sendBundle", [{"txs": [b[0]], "blockNumber": hex(n)}]))["bundleHash"]
    # each alone would succeed
    for raw in (a[0], b[0]):
        sim = await client.result("eth_callBundle", [{"txs": [raw], "blockNumber": hex(n)}])
        assert "error" not in sim["results"][0]
    built = await relay.builder.build_block()
    assert relay.included[n] == [b_bh]
    assert await block_txs(rpc, n) == [b[1]]
    assert "reverts on top" in built.skipped[a_bh]
    assert await nonce_of(rpc, A_ADDR) == 0


async def test_bundles_only_land_in_their_target_block(
    client: Client, relay: RelayServer, rpc: RpcClient
) -> None:
    n = await rpc.block_number() + 1
    past = sign_tx(A_KEY, 0, SINK, value=1)
    future = sign_tx(B_KEY, 0, SINK, value=2)
    await client.result("eth_sendBundle", [{"txs": [past[0]], "blockNumber": hex(n - 1)}])
    fut_bh = (await client.result("eth_sendBundle", [{"txs": [future[0]], "blockNumber": hex(n + 1)}]))[
        "bundleHash"
    ]
    await relay.builder.build_block()
    assert await block_txs(rpc, n) == []
    assert relay.included[n] == []
    await relay.builder.build_block()
    assert await block_txs(rpc, n + 1) == [future[1]]
    assert relay.included[n + 1] == [fut_bh]
    await relay.builder.build_block()  # valid for one block only: not included again, past never
    assert await block_txs(rpc, n + 2) == []
    assert await nonce_of(rpc, A_ADDR) == 0
    assert relay.builder.pending_bundles() == []


async def test_min_max_timestamp(client: Client, relay: RelayServer, rpc: RpcClient) -> None:
    n = await rpc.block_number() + 1
    t = sign_tx(A_KEY, 0, SINK)
    far = int(time.time()) + 10**6
    bh = (
        await client.result("eth_sendBundle", [{"txs": [t[0]], "blockNumber": hex(n), "minTimestamp": far}])
    )["bundleHash"]
    built = await relay.builder.build_block()
    assert "minTimestamp" in built.skipped[bh]
    assert await block_txs(rpc, n) == []


async def test_replacement_uuid_replaces_and_cancels(
    client: Client, relay: RelayServer, rpc: RpcClient
) -> None:
    n = await rpc.block_number() + 1
    u = str(uuid.uuid4())
    first = sign_tx(A_KEY, 0, SINK, value=1)
    second = sign_tx(A_KEY, 0, SINK, value=2)
    await client.result("eth_sendBundle", [{"txs": [first[0]], "blockNumber": hex(n), "replacementUuid": u}])
    await client.result("eth_sendBundle", [{"txs": [second[0]], "blockNumber": hex(n), "replacementUuid": u}])
    assert len(relay.builder.pending_bundles(n)) == 1
    # another identity cannot cancel it
    status, _ = await client.call("eth_cancelBundle", [{"replacementUuid": u}], signer=OTHER_IDENTITY)
    assert status == 200
    assert len(relay.builder.pending_bundles(n)) == 1
    # a cancelled one is gone
    v = str(uuid.uuid4())
    third = sign_tx(B_KEY, 0, SINK, value=3)
    await client.result("eth_sendBundle", [{"txs": [third[0]], "blockNumber": hex(n), "replacementUuid": v}])
    assert await client.result("eth_cancelBundle", [{"replacementUuid": v}]) is None
    # BuilderNet style: same uuid and no txs cancels too
    w = str(uuid.uuid4())
    fourth = sign_tx(D_KEY, 0, SINK, value=4)
    await client.result("eth_sendBundle", [{"txs": [fourth[0]], "blockNumber": hex(n), "replacementUuid": w}])
    await client.result("eth_sendBundle", [{"txs": [], "blockNumber": hex(n), "replacementUuid": w}])
    await relay.builder.build_block()
    assert await block_txs(rpc, n) == [second[1]]


async def test_private_transaction_is_never_public_before_inclusion(
    client: Client, relay: RelayServer, rpc: RpcClient
) -> None:
    raw, h = sign_tx(A_KEY, 0, SINK, value=42)
    gapped, gapped_h = sign_tx(B_KEY, 1, SINK, value=43)  # nonce 1 while B is at 0: waits
    assert await client.result("eth_sendPrivateTransaction", [{"tx": raw}]) == h
    assert await client.result("eth_sendPrivateTransaction", [{"tx": gapped}]) == gapped_h
    assert (await rpc.call("txpool_status")) == {"pending": "0x0", "queued": "0x0"}
    assert await rpc.call("eth_getTransactionByHash", [h]) is None
    pub, pub_h = sign_tx(D_KEY, 0, SINK, value=1)
    await rpc.call("eth_sendRawTransaction", [pub])
    built = await relay.builder.build_block()
    assert built.private_txs == (h,)
    assert await block_txs(rpc, built.number) == [h, pub_h]
    # the gapped one stays private, out of anvil's pool
    assert (await rpc.call("txpool_status")) == {"pending": "0x0", "queued": "0x0"}
    assert [p.tx.hash for p in relay.builder.private_txs] == [gapped_h]
    # once B's nonce 0 is used publicly, it lands
    b0, b0_h = sign_tx(B_KEY, 0, SINK)
    await rpc.call("eth_sendRawTransaction", [b0])
    await relay.builder.build_block()
    built = await relay.builder.build_block()
    assert built.private_txs == (gapped_h,)
    assert relay.builder.private_txs == []
    assert await rpc.call("eth_getTransactionReceipt", [b0_h]) is not None
    # cancel
    c, c_h = sign_tx(D_KEY, 1, SINK)
    await client.result("eth_sendPrivateTransaction", [{"tx": c, "maxBlockNumber": hex(built.number + 5)}])
    assert await client.result("eth_cancelPrivateTransaction", [{"txHash": c_h}]) is True
    built = await relay.builder.build_block()
    assert built.tx_hashes == ()


async def test_bundle_funding_a_fresh_account_is_skipped_not_broken(
    client: Client, relay: RelayServer, rpc: RpcClient
) -> None:
    """anvil's pool checks balances against the latest block: a tx spending ETH received earlier in the
    same bundle is refused at insertion. The builder must skip that bundle cleanly (atomically) and still
    include the others."""
    fresh = Account.from_key("0x" + keccak(b"fresh account").hex())
    n = await rpc.block_number() + 1
    fund = sign_tx(A_KEY, 0, fresh.address, value=10**18)
    spend = sign_tx(fresh.key.hex(), 0, SINK, value=10**17)
    other = sign_tx(B_KEY, 0, SINK, value=1, tip=1)
    sim = await client.result("eth_callBundle", [{"txs": [fund[0], spend[0]], "blockNumber": hex(n)}])
    assert all("error" not in r for r in sim["results"])  # the simulation itself is fine
    bh = (await client.result("eth_sendBundle", [{"txs": [fund[0], spend[0]], "blockNumber": hex(n)}]))[
        "bundleHash"
    ]
    other_bh = (await client.result("eth_sendBundle", [{"txs": [other[0]], "blockNumber": hex(n)}]))[
        "bundleHash"
    ]
    built = await relay.builder.build_block()
    assert "rejected by the node's pool" in built.skipped[bh]
    assert relay.included[n] == [other_bh]
    assert await block_txs(rpc, n) == [other[1]]
    assert built.order_ok


# ---------------------------------------------------------------------------------------------------
# Block production loop and figures


async def test_mine_forever_produces_blocks(relay: RelayServer, rpc: RpcClient) -> None:
    start = await rpc.block_number()
    t0 = time.perf_counter()
    await mine_forever(relay.builder, 0.1, max_blocks=3)
    assert await rpc.block_number() == start + 3
    assert time.perf_counter() - t0 >= 0.29
    await mine_forever(PlainMiner(rpc), 0.05, max_blocks=2)
    assert await rpc.block_number() == start + 5


async def test_run_relay_serves_and_mines(node: Anvil, rpc: RpcClient) -> None:
    started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_relay(node.http_url, "127.0.0.1", 0, 0.1, started=started))
    try:
        url = await asyncio.wait_for(started, 10)
        start = await rpc.block_number()
        async with aiohttp.ClientSession() as session:
            c = Client(url, session)
            raw, h = sign_tx(A_KEY, 0, SINK, value=9)
            await c.result("eth_sendBundle", [{"txs": [raw], "blockNumber": hex(start + 2)}])
            await c.result("eth_sendBundle", [{"txs": [raw], "blockNumber": hex(start + 3)}])
        for _ in range(100):
            if await rpc.call("eth_getTransactionReceipt", [h]):
                break
            await asyncio.sleep(0.05)
        receipt = await rpc.call("eth_getTransactionReceipt", [h])
        assert int(receipt["blockNumber"], 16) in (start + 2, start + 3)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_call_bundle_repeated_gives_the_same_answer(
    client: Client, relay: RelayServer, rpc: RpcClient
) -> None:
    """Simulations leave no state behind: the same bundle simulated again gives the same answer. (The
    latency figure that used to be printed here is in benchmarks/bench_bundle_latency.py.)"""
    payer = await deploy(rpc, relay, PAYER)
    n = await rpc.block_number() + 1
    txs = [sign_tx(A_KEY, i, payer, value=1000 + i)[0] for i in range(5)]
    for size in (1, 5):
        replies = [
            await client.result("eth_callBundle", [{"txs": txs[:size], "blockNumber": hex(n)}])
            for _ in range(3)
        ]
        assert [len(r["results"]) for r in replies] == [size] * 3
        assert all("error" not in tx for tx in replies[0]["results"])
        assert len({(r["bundleHash"], r["totalGasUsed"], r["coinbaseDiff"]) for r in replies}) == 1


async def test_call_bundle_legacy_tx_and_historical_state(
    client: Client, relay: RelayServer, rpc: RpcClient
) -> None:
    # a legacy (type 0) tx: gasFees use gasPrice - baseFee
    legacy = Account.sign_transaction(
        {"chainId": CHAIN_ID, "nonce": 0, "gasPrice": 7 * GWEI, "gas": 21_000, "to": SINK, "value": 1}, D_KEY
    )
    legacy_raw = "0x" + bytes(legacy.raw_transaction).hex()
    n = await rpc.block_number() + 1
    res = await client.result("eth_callBundle", [{"txs": [legacy_raw], "blockNumber": hex(n)}])
    base_fee = int((await rpc.call("eth_getBlockByNumber", ["pending", False]))["baseFeePerGas"], 16)
    assert res["gasFees"] == str(21_000 * (7 * GWEI - base_fee))
    assert res["results"][0]["fromAddress"] == D_ADDR
    # land a tx from A, then simulate A's nonce-0 tx on the state before and after it
    t = sign_tx(A_KEY, 0, SINK, value=1)
    await rpc.call("eth_sendRawTransaction", [t[0]])
    await relay.builder.build_block()
    status, reply = await client.call("eth_callBundle", [{"txs": [t[0]], "blockNumber": hex(n + 1)}])
    assert status == 400
    assert "nonce too low" in reply["error"]["message"]
    res = await client.result(
        "eth_callBundle", [{"txs": [t[0]], "blockNumber": hex(n), "stateBlockNumber": hex(n - 1)}]
    )
    assert res["stateBlockNumber"] == n - 1
    assert res["results"][0]["txHash"] == t[1]
    # an explicit coinbase and base fee are honoured
    res = await client.result(
        "eth_callBundle",
        [{"txs": [legacy_raw], "blockNumber": hex(n + 1), "coinbase": SINK, "baseFee": GWEI}],
    )
    assert res["gasFees"] == str(21_000 * 6 * GWEI)
    assert res["coinbaseDiff"] == str(21_000 * 6 * GWEI + 1)  # the 1 wei goes to SINK = coinbase
    assert res["ethSentToCoinbase"] == "1"


async def test_concurrent_requests_and_builds_are_serialized(
    client: Client, relay: RelayServer, rpc: RpcClient
) -> None:
    payer = await deploy(rpc, relay, PAYER)
    start = await rpc.block_number()
    keys = [A_KEY, B_KEY, D_KEY]

    async def searcher(i: int) -> None:
        for k in range(4):
            n = await rpc.block_number() + 1
            nonce = int(
                await rpc.call("eth_getTransactionCount", [Account.from_key(keys[i]).address, "latest"]), 16
            )
            raw, _ = sign_tx(keys[i], nonce, payer, value=10**12 * (i + 1) + k)
            status, reply = await client.call("eth_callBundle", [{"txs": [raw], "blockNumber": hex(n)}])
            if status != 200:  # a block was mined between reading the nonce and simulating: fine
                assert reply["error"]["code"] == -32000
                assert "nonce too low" in reply["error"]["message"]
                continue
            assert "error" not in reply["result"]["results"][0]
            await client.result("eth_sendBundle", [{"txs": [raw], "blockNumber": hex(n)}])
            await client.result("eth_sendBundle", [{"txs": [raw], "blockNumber": hex(n + 1)}])

    async def miner() -> None:
        for _ in range(8):
            built = await relay.builder.build_block()
            assert built.order_ok
            await asyncio.sleep(0.01)

    await asyncio.gather(searcher(0), searcher(1), searcher(2), miner())
    landed = sum(len(relay.included.get(b, [])) for b in range(start + 1, start + 9))
    assert landed >= 3
    assert relay.builder.stats["order_violations"] == 0
    exposures = [b.exposure_s for b in relay.builder.blocks.values() if b.bundles]
    print(f"\nbundle txs visible in anvil's pool before mining: max {max(exposures) * 1e3:.1f} ms")


def test_decode_raw_tx_fields() -> None:
    from keeper.devnet.builder import TxDecodeError, decode_raw_tx

    raw, h = sign_tx(B_KEY, 3, SINK, value=5, data=b"\x01\x02", tip=2, max_fee=9, gas=50_000)
    tx = decode_raw_tx(bytes.fromhex(raw[2:]))
    assert (tx.hash, tx.sender, tx.nonce, tx.to, tx.value, tx.gas) == (h, B_ADDR, 3, SINK, 5, 50_000)
    assert (tx.tx_type, tx.chain_id, tx.max_fee, tx.max_priority_fee, tx.data) == (
        2,
        CHAIN_ID,
        9,
        2,
        b"\x01\x02",
    )
    assert tx.effective_tip(8) == 1
    assert tx.effective_tip(5) == 2
    create = decode_raw_tx(bytes.fromhex(sign_tx(B_KEY, 0, None, data=b"\x00")[0][2:]))
    assert create.to is None
    for bad in (
        b"",
        b"\x02",
        b"\x02\xc0",
        b"\x05\xc0",
        b"\xc0",
        b"\x03" + bytes(40),
        bytes.fromhex(raw[2:])[:-3],
    ):
        with pytest.raises(TxDecodeError):
            decode_raw_tx(bad)


async def test_builder_refuses_anvil_without_fifo_or_with_automine() -> None:
    from keeper.errors import DevnetError

    async with Anvil(AnvilConfig(no_mining=True)) as fees_node:
        with pytest.raises(DevnetError, match="--order fifo"):
            async with RelayServer(fees_node.http_url):
                pass
    async with Anvil(AnvilConfig(extra_args=["--order", "fifo"])) as automine_node:
        with pytest.raises(DevnetError, match="automine off"):
            async with RelayServer(automine_node.http_url):
                pass


async def test_public_tx_with_a_nonce_taken_by_a_bundle_is_dropped(
    client: Client, relay: RelayServer, rpc: RpcClient
) -> None:
    public, public_h = sign_tx(A_KEY, 0, SINK, value=1, tip=90 * GWEI)
    await rpc.call("eth_sendRawTransaction", [public])
    n = await rpc.block_number() + 1
    bundled = sign_tx(A_KEY, 0, SINK, value=2, tip=1)
    follow = sign_tx(A_KEY, 1, SINK, value=3)
    await client.result("eth_sendBundle", [{"txs": [bundled[0]], "blockNumber": hex(n)}])
    await rpc.call("eth_sendRawTransaction", [follow[0]])  # public, next nonce: still valid
    built = await relay.builder.build_block()
    assert await block_txs(rpc, n) == [bundled[1], follow[1]]
    assert built.dropped_public == (public_h,)
    assert await rpc.call("eth_getTransactionByHash", [public_h]) is None
