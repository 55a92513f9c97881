"""MEV-Share on the devnet relay: hints on the SSE stream, backruns by hash, the auction, refunds,
the keeper's hint collector against the real relay, and `crash --private` on the full devnet."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from eth_account import Account
from eth_utils import keccak

from keeper.chain.mevshare import MevShareHint, OracleHintMatcher
from keeper.chain.ocr2 import TRANSMIT_SELECTOR
from keeper.chain.rpc import RpcClient
from keeper.collectors.mevshare import MevShareCollector
from keeper.devnet.anvil import DEV_ACCOUNTS, Anvil, AnvilConfig
from keeper.devnet.builder import BUILDER_COINBASE
from keeper.devnet.relay import RelayServer
from keeper.devnet.scenarios.crash import run_crash
from keeper.devnet.stack import Devnet, DevnetMiner
from keeper.executors.builder_client import BundleClient
from keeper.executors.relay_types import MevBundle, MevHash, MevTx, RelayRejected
from tests.integration.test_relay import (
    A_ADDR,
    A_KEY,
    D_ADDR,
    D_KEY,
    E_KEY,
    GWEI,
    IDENTITY,
    OTHER_IDENTITY,
    REVERTER,
    SINK,
    deploy,
    nonce_of,
    sign_tx,
)

pytestmark = pytest.mark.integration

C_KEY = DEV_ACCOUNTS[5][1]
SWAP_V3 = keccak(b"Swap(address,address,int256,int256,uint160,uint128,int24)")
OTHER_TOPIC = keccak(b"Transfer(address,address,uint256)")


def emitter(topic: bytes) -> bytes:
    """Runtime: MSTORE 0x2a at 0, LOG1(0, 32, topic), STOP."""
    return bytes.fromhex("602a600052") + b"\x7f" + topic + bytes.fromhex("60206000a100")


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
    async with RelayServer(node.http_url, port=0, stream_ping_interval=0.2) as server:
        yield server


@pytest.fixture
async def searcher(relay: RelayServer) -> AsyncIterator[BundleClient]:
    async with BundleClient(relay.url, IDENTITY, name="relay", timeout=60.0) as client:
        yield client


@pytest.fixture
async def rival(relay: RelayServer) -> AsyncIterator[BundleClient]:
    async with BundleClient(relay.url, OTHER_IDENTITY, name="relay", timeout=60.0) as client:
        yield client


class Stream:
    """A MevShareCollector consumed by an owned task into a queue."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.collector = MevShareCollector(url, **kwargs)
        self.hints: asyncio.Queue[MevShareHint] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async for hint in self.collector.events():
            await self.hints.put(hint)

    async def __aenter__(self) -> Stream:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def connected(self, relay: RelayServer, connects: int = 1) -> None:
        while self.collector.connects < connects or relay.mevshare.subscribers < 1:
            await asyncio.sleep(0.01)

    async def next(self) -> MevShareHint:
        return await self.hints.get()


async def private(
    searcher: BundleClient, raw: str, hints: list[str] | None, max_block: int | None = None
) -> str:
    prefs = None if hints is None else {"privacy": {"hints": hints}}
    return await searcher.send_private_transaction(raw, max_block_number=max_block, preferences=prefs)


async def history(relay: RelayServer, **query: int) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{relay.url}/api/v1/history", params={k: str(v) for k, v in query.items()}) as resp,
    ):
        assert resp.status == 200
        data = orjson.loads(await resp.read())
    assert isinstance(data, list)
    return data


async def tx_of(rpc: RpcClient, h: str) -> dict[str, Any]:
    tx = await rpc.call("eth_getTransactionByHash", [h])
    assert isinstance(tx, dict)
    return tx


# ---------------------------------------------------------------------------------------------------
# Hints


async def test_stream_emits_hints_with_the_fields_each_preference_allows(
    relay: RelayServer, rpc: RpcClient, searcher: BundleClient
) -> None:
    swap_emitter = await deploy(rpc, relay, emitter(SWAP_V3))
    plain_emitter = await deploy(rpc, relay, emitter(OTHER_TOPIC), key=D_KEY)
    data = bytes.fromhex("deadbeef") + bytes(range(40))
    cases: list[tuple[list[str] | None, str, str]] = [
        (["contract_address", "function_selector"], A_KEY, swap_emitter),
        (["calldata"], C_KEY, swap_emitter),
        (["logs"], D_KEY, swap_emitter),
        (["default_logs", "contract_address"], E_KEY, swap_emitter),
        (["hash"], A_KEY, plain_emitter),
        (None, C_KEY, plain_emitter),  # no preferences: private, not shared
        (["default_logs", "tx_hash"], D_KEY, plain_emitter),
    ]
    async with Stream(relay.stream_url, idle_timeout=5.0) as stream:
        await stream.connected(relay)
        sent: list[tuple[list[str] | None, str, str]] = []
        nonces: dict[str, int] = {}
        for hints, key, to in cases:
            addr = Account.from_key(key).address
            nonces[addr] = nonces.get(addr, await nonce_of(rpc, addr))
            raw, h = sign_tx(key, nonces[addr], to, data=data)
            nonces[addr] += 1
            assert await private(searcher, raw, hints) == h
            sent.append((hints, h, to.lower()))
        shared = [(hints, h, to) for hints, h, to in sent if hints is not None]
        got = [await stream.next() for _ in shared]
        assert stream.collector.malformed == 0
    assert relay.mevshare.stats["hints"] == len(shared)
    assert [g.hash_hex for g in got] == [h for _, h, _ in shared]
    events = {e["hint"]["hash"]: e["hint"] for e in await history(relay)}
    assert len(events) == len(shared)
    log_data = "0x" + (0x2A).to_bytes(32, "big").hex()
    expected: dict[str, dict[str, Any]] = {
        shared[0][1]: {"logs": None, "txs": [{"to": swap_emitter.lower(), "functionSelector": "0xdeadbeef"}]},
        shared[1][1]: {"logs": None, "txs": [{"callData": "0x" + data.hex()}]},
        shared[2][1]: {
            "logs": [{"address": swap_emitter.lower(), "topics": ["0x" + SWAP_V3.hex()], "data": log_data}],
            "txs": None,
        },
        # default_logs: swap logs only, amounts (data) left out
        shared[3][1]: {
            "logs": [{"address": swap_emitter.lower(), "topics": ["0x" + SWAP_V3.hex()], "data": "0x"}],
            "txs": [{"to": swap_emitter.lower()}],
        },
        shared[4][1]: {"logs": None, "txs": None},
        shared[5][1]: {"logs": [], "txs": [{"hash": shared[5][1]}]},
    }
    for h, want in expected.items():
        assert events[h] == {"hash": h, **want}
    # the decoded hints carry the same
    by_hash = {g.hash_hex: g for g in got}
    assert by_hash[shared[0][1]].to == swap_emitter.lower()
    assert by_hash[shared[0][1]].selector == bytes.fromhex("deadbeef")
    assert by_hash[shared[0][1]].calldata is None
    assert by_hash[shared[1][1]].calldata == data
    assert by_hash[shared[1][1]].to is None
    assert by_hash[shared[2][1]].logs[0].topics == (SWAP_V3,)
    assert by_hash[shared[4][1]].txs == ()
    # every private tx lands in the next block, shared or not, and none was ever in anvil's pool
    assert (await rpc.call("txpool_status")) == {"pending": "0x0", "queued": "0x0"}
    built = await relay.builder.build_block()
    assert set(built.private_txs) == {h for _, h, _ in sent}


async def test_history_filters_by_block_and_pages(
    relay: RelayServer, rpc: RpcClient, searcher: BundleClient
) -> None:
    for i in range(3):
        raw, _ = sign_tx(A_KEY, i, SINK, value=1)
        await private(searcher, raw, ["hash"])
        await relay.builder.build_block()
    entries = await history(relay)
    assert [e["block"] for e in entries] == [0, 1, 2]
    assert [e["block"] for e in await history(relay, blockStart=1)] == [1, 2]
    assert [e["block"] for e in await history(relay, blockEnd=1, limit=1, offset=1)] == [1]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{relay.url}/api/v1/history?limit=x") as resp:
            assert resp.status == 400
        async with session.get(f"{relay.url}/api/v1/history/info") as resp:
            info = orjson.loads(await resp.read())
    assert info["count"] == 3
    assert (info["minBlock"], info["maxBlock"]) == (0, 2)


# ---------------------------------------------------------------------------------------------------
# Backruns and the auction


async def test_backrun_by_hash_lands_right_after_the_hinted_tx_and_the_refund_is_paid(
    relay: RelayServer, rpc: RpcClient, searcher: BundleClient
) -> None:
    head = await rpc.block_number()
    raw, h = sign_tx(A_KEY, 0, SINK, value=5)
    await private(searcher, raw, ["contract_address"])
    pub, pub_h = sign_tx(C_KEY, 0, SINK, value=1, tip=50 * GWEI)  # a public tx paying a higher tip
    await rpc.call("eth_sendRawTransaction", [pub])
    back, back_h = sign_tx(D_KEY, 0, SINK, value=1, tip=3 * GWEI)
    bundle = MevBundle(block=head + 1, max_block=head + 3, body=(MevHash(h), MevTx(back)))
    bundle_hash = await searcher.send_mev_bundle(bundle)
    assert bundle_hash == "0x" + keccak(bytes.fromhex(h[2:] + back_h[2:])).hex()
    built = await relay.builder.build_block()
    assert built.tx_hashes == (h, back_h, pub_h)
    assert built.bundles == (bundle_hash,)
    [auction] = relay.mevshare.auctions[built.number]
    bid = 21_000 * 3 * GWEI
    assert auction.bids == {bundle_hash: bid}
    assert auction.winner == bundle_hash
    [refund] = relay.mevshare.refunds
    assert (refund.block, refund.recipient, refund.bid, refund.percent) == (built.number, A_ADDR, bid, 90)
    assert refund.amount == bid * 90 // 100
    assert refund.tx_hash is not None
    # paid by the builder's coinbase in the next block, the exact amount
    nxt = await relay.builder.build_block()
    assert refund.tx_hash in nxt.tx_hashes
    tx = await tx_of(rpc, refund.tx_hash)
    assert tx["from"].lower() == BUILDER_COINBASE.lower()
    assert tx["to"].lower() == A_ADDR.lower()
    assert int(tx["value"], 16) == refund.amount
    receipt = await rpc.call("eth_getTransactionReceipt", [refund.tx_hash])
    assert receipt["status"] == "0x1"
    # the item is settled: a late backrun for it is refused
    late, _ = sign_tx(D_KEY, 1, SINK, value=1)
    with pytest.raises(RelayRejected) as err:
        await searcher.send_mev_bundle(MevBundle(block=nxt.number + 1, body=(MevHash(h), MevTx(late))))
    assert err.value.code == -32602


async def test_the_higher_bid_wins_and_the_loser_pays_nothing(
    relay: RelayServer, rpc: RpcClient, searcher: BundleClient, rival: BundleClient
) -> None:
    head = await rpc.block_number()
    raw, h = sign_tx(A_KEY, 0, SINK, value=5)
    await private(searcher, raw, ["calldata", "contract_address"])
    d_balance = int(await rpc.call("eth_getBalance", [D_ADDR, "latest"]), 16)
    low, low_h = sign_tx(D_KEY, 0, SINK, value=1, tip=3 * GWEI)
    high, high_h = sign_tx(E_KEY, 0, SINK, value=1, tip=7 * GWEI)
    low_bundle = await searcher.send_mev_bundle(  # offers 50%: below the 90% default, raised to it
        MevBundle(block=head + 1, body=(MevHash(h), MevTx(low)), refund=((0, 50),))
    )
    high_bundle = await rival.send_mev_bundle(MevBundle(block=head + 1, body=(MevHash(h), MevTx(high))))
    built = await relay.builder.build_block()
    assert built.tx_hashes == (h, high_h)
    [auction] = relay.mevshare.auctions[built.number]
    assert auction.bids == {low_bundle: 21_000 * 3 * GWEI, high_bundle: 21_000 * 7 * GWEI}
    assert auction.winner == high_bundle
    assert auction.refunds == {low_bundle: 56_700 * GWEI, high_bundle: 132_300 * GWEI}
    assert low_h not in built.tx_hashes
    assert await rpc.call("eth_getTransactionReceipt", [low_h]) is None
    assert await nonce_of(rpc, D_ADDR) == 0
    assert int(await rpc.call("eth_getBalance", [D_ADDR, "latest"]), 16) == d_balance
    [refund] = relay.mevshare.refunds
    assert refund.backrun == high_bundle
    assert refund.amount == 21_000 * 7 * GWEI * 90 // 100


async def test_the_highest_refund_wins_and_offers_below_the_minimum_are_raised(
    relay: RelayServer, rpc: RpcClient, searcher: BundleClient, rival: BundleClient
) -> None:
    head = await rpc.block_number()
    t1, h1 = sign_tx(A_KEY, 0, SINK, value=5)
    # a shared bundle that requires a 10% refund (validity.refund: the minimum, per the spec)
    item = await searcher.send_mev_bundle(
        MevBundle(block=head + 1, body=(MevTx(t1),), hints=("hash",), refund=((0, 10),))
    )
    assert relay.mevshare.items[item].refund_percent == 10
    stingy, _ = sign_tx(D_KEY, 0, SINK, value=1, tip=10 * GWEI)
    lowball, _ = sign_tx(C_KEY, 0, SINK, value=1, tip=8 * GWEI)
    generous, generous_h = sign_tx(E_KEY, 0, SINK, value=1, tip=6 * GWEI)
    stingy_b = await searcher.send_mev_bundle(MevBundle(block=head + 1, body=(MevHash(item), MevTx(stingy))))
    lowball_b = await searcher.send_mev_bundle(
        MevBundle(block=head + 1, body=(MevHash(item), MevTx(lowball)), refund=((0, 5),))
    )
    generous_b = await rival.send_mev_bundle(
        MevBundle(block=head + 1, body=(MevHash(item), MevTx(generous)), refund=((0, 95),))
    )
    built = await relay.builder.build_block()
    [auction] = relay.mevshare.auctions[built.number]
    assert auction.bids == {stingy_b: 210_000 * GWEI, lowball_b: 168_000 * GWEI, generous_b: 126_000 * GWEI}
    # 10% of 210,000 gwei; 5% offered, raised to the 10% minimum, of 168,000; 95% of 126,000
    assert auction.refunds == {stingy_b: 21_000 * GWEI, lowball_b: 16_800 * GWEI, generous_b: 119_700 * GWEI}
    assert auction.winner == generous_b
    assert built.tx_hashes == (h1, generous_h)
    [refund] = relay.mevshare.refunds
    assert (refund.percent, refund.amount, refund.recipient) == (95, 119_700 * GWEI, A_ADDR)


async def test_a_reverting_backrun_is_dropped_and_the_hinted_tx_lands_alone(
    relay: RelayServer, rpc: RpcClient, searcher: BundleClient
) -> None:
    reverter = await deploy(rpc, relay, REVERTER)
    head = await rpc.block_number()
    raw, h = sign_tx(A_KEY, 0, SINK, value=5)
    await private(searcher, raw, ["hash"])
    d_nonce = await nonce_of(rpc, D_ADDR)
    back, back_h = sign_tx(D_KEY, d_nonce, reverter, tip=20 * GWEI)
    bundle_hash = await searcher.send_mev_bundle(
        MevBundle(block=head + 1, body=(MevHash(h), MevTx(back, can_revert=False)))
    )
    built = await relay.builder.build_block()
    assert built.tx_hashes == (h,)
    assert built.private_txs == (h,)
    assert built.bundles == ()
    [auction] = relay.mevshare.auctions[built.number]
    assert auction.winner is None
    assert "reverts" in auction.rejected[bundle_hash]
    assert await nonce_of(rpc, D_ADDR) == d_nonce
    assert await rpc.call("eth_getTransactionReceipt", [back_h]) is None
    assert relay.mevshare.refunds == []


async def test_a_shared_bundle_is_hinted_with_its_txs_and_backrun_by_bundle_hash(
    relay: RelayServer, rpc: RpcClient, searcher: BundleClient, rival: BundleClient
) -> None:
    head = await rpc.block_number()
    t1, h1 = sign_tx(A_KEY, 0, SINK, value=1, data=b"\x01\x02\x03\x04\x05")
    t2, h2 = sign_tx(C_KEY, 0, SINK, value=2)
    async with Stream(relay.stream_url, idle_timeout=5.0) as stream:
        await stream.connected(relay)
        user_hash = await searcher.send_mev_bundle(
            MevBundle(
                block=head + 1,
                max_block=head + 2,
                body=(MevTx(t1), MevTx(t2)),
                hints=("tx_hash", "function_selector"),
            )
        )
        hint = await stream.next()
    assert user_hash == "0x" + keccak(bytes.fromhex(h1[2:] + h2[2:])).hex()
    assert hint.hash_hex == user_hash
    assert [t.hash for t in hint.txs] == [bytes.fromhex(h1[2:]), bytes.fromhex(h2[2:])]
    assert hint.txs[0].selector == b"\x01\x02\x03\x04"
    assert hint.txs[1].selector is None  # a plain transfer has no selector
    back, back_h = sign_tx(D_KEY, 0, SINK, value=1, tip=2 * GWEI)
    await rival.send_mev_bundle(MevBundle(block=head + 1, body=(MevHash(user_hash), MevTx(back))))
    built = await relay.builder.build_block()
    assert built.tx_hashes == (h1, h2, back_h)
    [refund] = relay.mevshare.refunds
    assert refund.recipient == A_ADDR


async def test_a_shared_bundle_without_backrun_lands_and_a_plain_mev_bundle_too(
    relay: RelayServer, rpc: RpcClient, searcher: BundleClient
) -> None:
    head = await rpc.block_number()
    t1, h1 = sign_tx(A_KEY, 0, SINK, value=1)
    t2, h2 = sign_tx(C_KEY, 0, SINK, value=1)
    await searcher.send_mev_bundle(MevBundle(block=head + 1, body=(MevTx(t1),), hints=("hash",)))
    await searcher.send_mev_bundle(MevBundle(block=head + 1, body=(MevTx(t2),)))
    built = await relay.builder.build_block()
    assert set(built.tx_hashes) == {h1, h2}
    assert relay.mevshare.items == {}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.update(body=[{"bundle": {}}]), "nested bundles"),
        (lambda p: p.update(body=[{"hash": "0x" + "11" * 32}, {"tx": p["body"][1]["tx"]}]), "unknown"),
        (lambda p: p.update(privacy={"hints": ["everything"]}), "unknown hints"),
        (lambda p: p.update(inclusion={"block": "0x5", "maxBlock": "0x4"}), "maxBlock"),
        (lambda p: p.update(validity={"refund": [{"bodyIdx": 0, "percent": 101}]}), "percent"),
        (lambda p: p.update(version="v0.2"), "version"),
        (lambda p: p.update(body=[]), "non-empty"),
    ],
)
async def test_bad_mev_send_bundle_params_give_32602(
    relay: RelayServer, searcher: BundleClient, mutate: Any, message: str
) -> None:
    raw, h = sign_tx(A_KEY, 0, SINK)
    await private(searcher, raw, ["hash"])
    back, _ = sign_tx(D_KEY, 0, SINK)
    params: dict[str, Any] = {
        "version": "v0.1",
        "inclusion": {"block": "0x1"},
        "body": [{"hash": h}, {"tx": back, "canRevert": False}],
    }
    mutate(params)
    with pytest.raises(RelayRejected) as err:
        await searcher.request("mev_sendBundle", [params])
    assert err.value.code == -32602
    assert message in str(err.value)


async def test_bad_private_tx_hints_give_32602(relay: RelayServer, searcher: BundleClient) -> None:
    raw, _ = sign_tx(A_KEY, 0, SINK)
    for prefs in ({"privacy": {"hints": ["nope"]}}, {"privacy": "all"}, {"privacy": {"hints": "hash"}}):
        with pytest.raises(RelayRejected) as err:
            await searcher.send_private_transaction(raw, preferences=prefs)
        assert err.value.code == -32602
    assert relay.builder.private_txs == []


# ---------------------------------------------------------------------------------------------------
# The collector against the real relay


async def test_collector_reconnects_after_the_relay_drops_the_stream(
    relay: RelayServer, rpc: RpcClient, searcher: BundleClient
) -> None:
    async with Stream(relay.stream_url, idle_timeout=5.0, initial_backoff=0.05) as stream:
        await stream.connected(relay)
        raw, h = sign_tx(A_KEY, 0, SINK, value=1)
        await private(searcher, raw, ["hash"])
        assert (await stream.next()).hash_hex == h
        assert relay.mevshare.close_streams() == 1
        await stream.connected(relay, connects=2)
        raw2, h2 = sign_tx(A_KEY, 1, SINK, value=1)
        await private(searcher, raw2, ["hash"])
        assert (await stream.next()).hash_hex == h2
        assert stream.collector.reconnects >= 1
        assert stream.collector.pings >= 2  # one at each connection
        assert stream.collector.malformed == 0


# ---------------------------------------------------------------------------------------------------
# crash --private on the full devnet


class PoolWatchingMiner:
    """Before each block, records every pool tx sent to a price feed (what the public mempool shows)."""

    def __init__(self, net: Devnet, rpc: RpcClient, feeds: set[str]) -> None:
        self.inner = DevnetMiner(net)
        self.rpc = rpc
        self.feeds = feeds
        self.seen: list[str] = []
        self.blocks = 0

    async def mine(self) -> int:
        content = await self.rpc.call("txpool_content")
        for section in ("pending", "queued"):
            for by_nonce in (content.get(section) or {}).values():
                for tx in by_nonce.values():
                    if str(tx.get("to") or "").lower() in self.feeds:
                        self.seen.append(str(tx["hash"]).lower())
        self.blocks += 1
        return await self.inner.mine()


async def test_crash_private_sends_oracle_updates_privately_and_they_land(devnet: Devnet) -> None:
    rpc, dep = devnet.require()
    assert devnet.relay is not None
    feeds = {a.lower() for a in (*dep.feeds.usd.values(), *dep.feeds.eth.values())}
    snap = await rpc.call("evm_snapshot")
    try:
        # control: the public path shows the updates in the txpool before the block
        public = PoolWatchingMiner(devnet, rpc, feeds)
        res_pub = await run_crash(rpc, dep, drop_bps=100, blocks=1, mine=True, move_amms=False, miner=public)
        assert set(public.seen) == set(res_pub.steps[0].oracle_txs)

        watcher = PoolWatchingMiner(devnet, rpc, feeds)
        matcher = OracleHintMatcher(feeds, TRANSMIT_SELECTOR)
        async with Stream(devnet.relay.stream_url, idle_timeout=30.0) as stream:
            await stream.connected(devnet.relay)
            res = await run_crash(
                rpc,
                dep,
                drop_bps=200,
                blocks=2,
                mine=True,
                move_amms=False,
                miner=watcher,
                private=True,
                relay_url=devnet.relay_url,
            )
            sent = [h for step in res.steps for h in step.oracle_txs]
            hints = [await stream.next() for _ in sent]
        assert sent
        assert watcher.seen == []  # never in anvil's pool: not public
        assert [hint.hash_hex for hint in hints] == sent
        for step in res.steps:
            block = await rpc.call("eth_getBlockByNumber", [hex(step.block), False])
            assert set(step.oracle_txs) <= {str(t).lower() for t in block["transactions"]}
            assert set(step.oracle_txs) <= set(devnet.relay.builder.blocks[step.block].private_txs)
        # each hint carries the full transmit calldata: the decoded answer is what the feed now reports
        updates = [u for hint in hints for u in matcher.match(hint)]
        assert len(updates) == len(sent)
        latest: dict[str, int] = {}
        for u in updates:
            latest[u.aggregator] = u.answer
        for feed, answer in latest.items():
            raw = await rpc.eth_call(feed, bytes.fromhex("50d25bcd"))  # latestAnswer()
            assert int.from_bytes(raw, "big", signed=True) == answer
        assert {hint.selector for hint in hints} == {TRANSMIT_SELECTOR}
        assert all(hint.to in feeds for hint in hints)
    finally:
        await rpc.call("evm_revert", [snap])


async def test_cli_crash_private_flag(devnet: Devnet, monkeypatch: pytest.MonkeyPatch) -> None:
    """`keeper devnet scenario crash --private --mine` against this devnet (its description stands in
    for deployments/devnet.json); the CLI runs in a thread with its own event loop."""
    from typer.testing import CliRunner

    import keeper.devnet.cli as devnet_cli
    from keeper.cli import app

    rpc, _ = devnet.require()
    assert devnet.relay is not None
    info = devnet.describe()
    monkeypatch.setattr(devnet_cli, "read_deployments_file", lambda *a, **k: info)
    hints_before = devnet.relay.mevshare.stats["hints"]
    head = await rpc.block_number()
    snap = await rpc.call("evm_snapshot")
    try:
        result = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["devnet", "scenario", "crash", "--private", "--mine", "--blocks", "1", "--drop-bps", "100"],
        )
        assert result.exit_code == 0, result.output
        assert "oracle updates go privately to" in result.output
        sent = devnet.relay.mevshare.stats["hints"] - hints_before
        assert sent > 0
        assert f"({sent} oracle txs, " in result.output
        hinted = [e.hint["hash"] for e in list(devnet.relay.mevshare.history)[-sent:]]
        receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in hinted])
        assert [r["status"] for r in receipts] == ["0x1"] * sent
        [block] = {int(r["blockNumber"], 16) for r in receipts}
        assert block > head
        assert set(hinted) == set(devnet.relay.builder.blocks[block].private_txs)
    finally:
        await rpc.call("evm_revert", [snap])


# ---------------------------------------------------------------------------------------------------
# Bad input never crashes the relay (fuzzed)


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    choices: list[Any] = [
        None,
        True,
        0,
        -1,
        101,
        "0x",
        "0x1",
        "0x" + "11" * 32,
        "garbage",
        SINK,
        "v0.1",
        "hash",
        "calldata",
    ]
    if depth < 3:
        keys = ["version", "inclusion", "block", "maxBlock", "body", "hash", "tx", "canRevert", "bundle"]
        keys += ["validity", "refund", "bodyIdx", "percent", "refundConfig", "address", "privacy", "hints"]
        choices.append([_random_json(rng, depth + 1) for _ in range(rng.randrange(4))])
        choices.append({rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(5))})
    return rng.choice(choices)


async def test_fuzzed_mev_send_bundle_and_private_preferences_are_refused_cleanly(
    relay: RelayServer, rpc: RpcClient, searcher: BundleClient
) -> None:
    raw, h = sign_tx(A_KEY, 0, SINK, value=1)
    await private(searcher, raw, ["hash"])
    back, _ = sign_tx(D_KEY, 0, SINK, value=1)
    rng = random.Random(1234)
    valid = {
        "version": "v0.1",
        "inclusion": {"block": "0x1"},
        "body": [{"hash": h}, {"tx": back, "canRevert": False}],
    }
    outcomes: dict[str, int] = {}
    for i in range(300):
        params: Any
        if i % 2:
            params = _random_json(rng)
        else:  # a valid request with one field replaced by garbage
            params = orjson.loads(orjson.dumps(valid))
            target = params if rng.random() < 0.5 else rng.choice([params["inclusion"], params["body"][1]])
            target[rng.choice(["version", "inclusion", "body", "block", "tx", "canRevert", "validity"])] = (
                _random_json(rng)
            )
        method = "mev_sendBundle" if i % 3 else "eth_sendPrivateTransaction"
        if method == "eth_sendPrivateTransaction":
            params = {"tx": raw, "preferences": params}
        try:
            await searcher.request(method, [params])
            outcome = "ok"
        except RelayRejected as exc:
            outcome = f"HTTP {exc.status} {exc.code}"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    # every refusal is a clean "invalid params", never an internal error or a crash
    assert set(outcomes) <= {"ok", "HTTP 400 -32602"}, outcomes
    assert outcomes["HTTP 400 -32602"] > 100
    assert all(r.error is None or "internal" not in r.error for r in relay.received)
    # the relay still works: the backrun lands
    await searcher.send_mev_bundle(MevBundle(block=1, body=(MevHash(h), MevTx(back))))
    built = await relay.builder.build_block()
    assert built.tx_hashes[0] == h


async def test_a_subscriber_that_falls_behind_is_disconnected(relay: RelayServer) -> None:
    relay.mevshare.max_backlog = 3
    async with aiohttp.ClientSession() as session, session.get(relay.stream_url) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert await resp.content.readline() == b":ping\n"
        while relay.mevshare.subscribers < 1:
            await asyncio.sleep(0.01)
        for i in range(10):  # published back to back: the handler cannot drain in between
            relay.mevshare.publish({"hash": "0x" + f"{i:064x}", "logs": None, "txs": None}, 0)
        assert relay.mevshare.subscribers == 0
        assert relay.mevshare.stats["subscribers_dropped_slow"] == 1
        rest = await resp.content.read()  # the stream ends after what was queued
    events = [line for line in rest.split(b"\n") if line.startswith(b"data: ")]
    assert len(events) == 3
    assert len(relay.mevshare.history) == 10


async def test_a_backrun_of_a_senders_later_private_tx_lands_after_its_earlier_ones(
    relay: RelayServer, rpc: RpcClient, searcher: BundleClient
) -> None:
    """Three private txs of one sender (nonces 0, 1, 2), only the last one backrun: the builder places
    the earlier two right before the merged bundle, in nonce order, and the backrun wins its auction."""
    head = await rpc.block_number()
    hashes = []
    for nonce in range(3):
        raw, h = sign_tx(A_KEY, nonce, SINK, value=5 + nonce)
        await private(searcher, raw, ["contract_address"])
        hashes.append(h)
    back, back_h = sign_tx(D_KEY, 0, SINK, value=1, tip=3 * GWEI)
    bundle = await searcher.send_mev_bundle(MevBundle(block=head + 1, body=(MevHash(hashes[2]), MevTx(back))))
    built = await relay.builder.build_block()
    assert built.tx_hashes == (*hashes, back_h)
    assert built.bundles == (bundle,)
    assert set(built.private_txs) == set(hashes[:2])
    [auction] = relay.mevshare.auctions[built.number]
    assert auction.winner == bundle
    assert relay.builder.private_txs == []
    [refund] = relay.mevshare.refunds
    assert (refund.recipient, refund.bid) == (A_ADDR, 21_000 * 3 * GWEI)


async def test_each_of_a_senders_private_txs_keeps_its_own_backrun_in_nonce_order(
    relay: RelayServer, rpc: RpcClient, searcher: BundleClient, rival: BundleClient
) -> None:
    """Two private txs of one sender, each backrun, the later one's backrun paying more (its merged
    bundle ranks first): the block is [tx 0, its backrun, tx 1, its backrun], and both are refunded."""
    head = await rpc.block_number()
    raw0, h0 = sign_tx(A_KEY, 0, SINK, value=5)
    raw1, h1 = sign_tx(A_KEY, 1, SINK, value=6)
    for raw in (raw0, raw1):
        await private(searcher, raw, ["contract_address"])
    back0, back0_h = sign_tx(D_KEY, 0, SINK, value=1, tip=3 * GWEI)
    back1, back1_h = sign_tx(E_KEY, 0, SINK, value=1, tip=7 * GWEI)
    b0 = await searcher.send_mev_bundle(MevBundle(block=head + 1, body=(MevHash(h0), MevTx(back0))))
    b1 = await rival.send_mev_bundle(MevBundle(block=head + 1, body=(MevHash(h1), MevTx(back1))))
    built = await relay.builder.build_block()
    assert built.tx_hashes == (h0, back0_h, h1, back1_h)
    winners = {a.target: a.winner for a in relay.mevshare.auctions[built.number]}
    assert winners == {h0: b0, h1: b1}
    assert len(built.bundles) == 2
    assert sorted(r.bid for r in relay.mevshare.refunds) == [21_000 * 3 * GWEI, 21_000 * 7 * GWEI]
