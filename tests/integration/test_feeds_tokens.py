"""Tokens, OCR2-style price feeds, the LST and Multicall3 on a real anvil."""

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from eth_abi.abi import decode, encode
from eth_utils.abi import function_signature_to_4byte_selector as selector
from eth_utils.crypto import keccak

from keeper.chain import ocr2
from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient
from keeper.devnet.anvil import DEV_ACCOUNTS, Anvil
from keeper.devnet.deployer import Deployer
from keeper.devnet.model import DEFAULT_LST_RATE, DEFAULT_PRICES_USD, TokenInfo
from keeper.devnet.tokens import (
    MULTICALL3_ADDRESS,
    FeedSet,
    deploy_feeds,
    deploy_tokens,
    install_multicall3,
    make_observations,
    next_epoch_round,
    price_update_tx,
    send_price_update,
)
from keeper.errors import DevnetError, ExecutionReverted

pytestmark = pytest.mark.integration

OWNER = DEV_ACCOUNTS[0][0]
TRANSMITTER = DEV_ACCOUNTS[1][0]
STRANGER = DEV_ACCOUNTS[2][0]
ANSWER_UPDATED = "0x" + keccak(text="AnswerUpdated(int256,uint256,uint256)").hex()
NEW_ROUND = "0x" + keccak(text="NewRound(uint256,address,uint256)").hex()
ROUND_DATA = ["uint80", "int256", "uint256", "uint256", "uint80"]


@dataclass
class Devnet:
    rpc: RpcClient
    d: Deployer
    tokens: dict[str, TokenInfo]
    feeds: FeedSet


@pytest_asyncio.fixture(scope="module")
async def devnet_base() -> AsyncIterator[Devnet]:
    async with Anvil() as node, RpcClient(node.http_url) as rpc:
        d = Deployer(rpc, OWNER)
        tokens = await deploy_tokens(d)
        feeds = await deploy_feeds(d, transmitter=TRANSMITTER)
        yield Devnet(rpc, d, tokens, feeds)


@pytest_asyncio.fixture
async def net(devnet_base: Devnet) -> AsyncIterator[Devnet]:
    snap = await devnet_base.rpc.call("evm_snapshot")
    yield devnet_base
    await devnet_base.rpc.call("evm_revert", [snap])


async def block(rpc: RpcClient, number: str) -> dict[str, object]:
    b = await rpc.call("eth_getBlockByNumber", [number, False])
    assert isinstance(b, dict)
    return b


async def call_uint(
    d: Deployer, to: str, sig: str, types: list[str] | None = None, args: list[object] | None = None
) -> int:
    (v,) = await d.call(to, sig, types or [], args or [], ["uint256"])
    return int(v)


async def test_tokens_deployed_with_decimals_and_open_mint(net: Devnet) -> None:
    assert set(net.tokens) == {"WETH", "USDC", "USDT", "DAI", "WBTC", "wstETH"}
    expected = {"WETH": 18, "USDC": 6, "USDT": 6, "DAI": 18, "WBTC": 8, "wstETH": 18}
    stranger = Deployer(net.rpc, STRANGER)
    for symbol, info in net.tokens.items():
        assert info.decimals == expected[symbol]
        assert await call_uint(net.d, info.address, "decimals()") == expected[symbol]
        (sym,) = await net.d.call(info.address, "symbol()", [], [], ["string"])
        assert sym == symbol
        # mint is unrestricted on the devnet: a stranger mints to itself
        amount = 123 * 10**info.decimals
        await stranger.transact(
            info.address, "mint(address,uint256)", ["address", "uint256"], [STRANGER, amount]
        )
        assert await call_uint(net.d, info.address, "balanceOf(address)", ["address"], [STRANGER]) == amount


async def test_feeds_start_at_prices(net: Devnet) -> None:
    f = net.feeds
    assert set(f.usd) == set(DEFAULT_PRICES_USD)
    assert set(f.eth) == set(DEFAULT_PRICES_USD) - {"WETH"}
    for symbol, price in DEFAULT_PRICES_USD.items():
        assert await call_uint(net.d, f.usd[symbol], "decimals()") == 8
        assert await call_uint(net.d, f.usd[symbol], "latestAnswer()") == price
        (desc,) = await net.d.call(f.usd[symbol], "description()", [], [], ["string"])
        assert desc == f"{symbol} / USD"
    assert await call_uint(net.d, f.eth["USDC"], "decimals()") == 18
    assert await call_uint(net.d, f.eth["USDC"], "latestAnswer()") == 5 * 10**14  # $1 / $2000
    assert await call_uint(net.d, f.eth["WBTC"], "latestAnswer()") == 30 * 10**18
    assert await call_uint(net.d, f.eth["wstETH"], "latestAnswer()") == 1_180_000_000_000_000_000
    assert FeedSet.from_json(f.to_json()) == f


async def test_transmit_sets_median_and_emits_events(net: Devnet) -> None:
    feed = net.feeds.usd["WETH"]
    transmitter = Deployer(net.rpc, TRANSMITTER)
    observations = [1_805_00000000, 1_790_00000000, 1_800_00000000, 1_830_00000000, 1_700_00000000]
    data = ocr2.encode_transmit(
        observations, epoch_round=await next_epoch_round(net.rpc, feed), observations_timestamp=1_234_567
    )
    receipt = await transmitter.send_raw({"to": feed, "data": "0x" + data.hex()})
    median = 1_800_00000000
    mined = await block(net.rpc, receipt["blockNumber"])
    block_ts = int(str(mined["timestamp"]), 16)

    logs = {log["topics"][0]: log for log in receipt["logs"]}
    updated = logs[ANSWER_UPDATED]
    assert updated["address"].lower() == feed.lower()
    assert int(updated["topics"][1], 16) == median
    assert int(updated["topics"][2], 16) == 2  # round 1 was the initial price
    assert int(updated["data"], 16) == block_ts
    new_round = logs[NEW_ROUND]
    assert int(new_round["topics"][1], 16) == 2
    assert int(new_round["topics"][2], 16) == 0  # OCR2 uses address(0) as startedBy
    assert int(new_round["data"], 16) == 1_234_567

    round_data = await net.d.call(feed, "latestRoundData()", [], [], ROUND_DATA)
    assert round_data == (2, median, 1_234_567, block_ts, 2)
    assert await call_uint(net.d, feed, "latestAnswer()") == median
    assert await call_uint(net.d, feed, "latestTimestamp()") == block_ts
    assert await call_uint(net.d, feed, "latestRound()") == 2
    assert await call_uint(net.d, feed, "getAnswer(uint256)", ["uint256"], [2]) == median
    assert await call_uint(net.d, feed, "getTimestamp(uint256)", ["uint256"], [2]) == block_ts
    assert await call_uint(net.d, feed, "getAnswer(uint256)", ["uint256"], [1]) == 2_000_00000000
    old = await net.d.call(feed, "getRoundData(uint80)", ["uint80"], [1], ROUND_DATA)
    assert old[:2] == (1, 2_000_00000000)
    assert await net.d.call(feed, "getRoundData(uint80)", ["uint80"], [99], ROUND_DATA) == (99, 0, 0, 0, 99)


async def test_pending_update_is_visible_and_decodable(net: Devnet) -> None:
    feed = net.feeds.usd["WETH"]
    await net.rpc.call("evm_setAutomine", [False])
    try:
        tx_hash = await send_price_update(net.rpc, feed, 1_500_00000000, transmitter=TRANSMITTER)
        pending = await net.rpc.call("eth_getTransactionByHash", [tx_hash])
        assert pending["blockNumber"] is None
        report = ocr2.decode_transmit(bytes.fromhex(pending["input"][2:]))
        assert report.median == 1_500_00000000
        assert len(report.observations) == 5
        assert await call_uint(net.d, feed, "latestAnswer()") == 2_000_00000000  # not yet mined
        await net.rpc.call("evm_mine")
    finally:
        await net.rpc.call("evm_setAutomine", [True])
    receipt = await net.rpc.wait_for_receipt(tx_hash)
    assert receipt["status"] == "0x1"
    assert await call_uint(net.d, feed, "latestAnswer()") == 1_500_00000000


async def test_transmit_access_and_report_checks(net: Devnet) -> None:
    feed = net.feeds.usd["DAI"]
    epoch_round = await next_epoch_round(net.rpc, feed)
    assert epoch_round == 1

    def tx(sender: str, epoch_round: int, observations: list[int] | None = None) -> dict[str, object]:
        return price_update_tx(
            feed,
            99_000000,
            transmitter=sender,
            epoch_round=epoch_round,
            observations_timestamp=1,
            observations=observations,
        )

    async def revert_selector(t: dict[str, object]) -> bytes:
        with pytest.raises(ExecutionReverted) as info:
            await net.rpc.call("eth_call", [t, "latest"])
        return info.value.revert_data[:4]

    # An unauthorized account: eth_call reverts with NotTransmitter(), and a real tx fails.
    assert await revert_selector(tx(STRANGER, epoch_round)) == selector("NotTransmitter()")
    with pytest.raises(DevnetError, match="reverted"):
        await Deployer(net.rpc, STRANGER).send_raw(tx(STRANGER, epoch_round))
    assert await call_uint(net.d, feed, "latestRound()") == 1

    # The authorized transmitter succeeds; replaying the same epoch/round is stale.
    await Deployer(net.rpc, TRANSMITTER).send_raw(tx(TRANSMITTER, epoch_round))
    assert await call_uint(net.d, feed, "latestAnswer()") == 99_000000
    stale = await revert_selector(tx(TRANSMITTER, epoch_round))
    assert stale == selector("StaleReport(uint40,uint40)")
    assert await next_epoch_round(net.rpc, feed) == epoch_round + 1

    # Unsorted observations revert (the encoder sorts, so build the report by hand).
    report = encode(["uint32", "bytes32", "int192[]", "int192"], [1, bytes(32), [3, 1, 2], 0])
    args = [[bytes(32), (epoch_round + 1).to_bytes(32, "big"), bytes(32)], report, [], [], bytes(32)]
    raw = encode_call("transmit(bytes32[3],bytes,bytes32[],bytes32[],bytes32)", ocr2.TRANSMIT_TYPES, args)
    unsorted = {"from": TRANSMITTER, "to": feed, "data": "0x" + raw.hex()}
    assert await revert_selector(unsorted) == selector("ObservationsNotSorted()")

    # Only the owner manages transmitters.
    with pytest.raises(DevnetError):
        await Deployer(net.rpc, STRANGER).transact(
            feed, "setTransmitter(address,bool)", ["address", "bool"], [STRANGER, True]
        )
    await net.d.transact(feed, "setTransmitter(address,bool)", ["address", "bool"], [STRANGER, True])
    await Deployer(net.rpc, STRANGER).send_raw(tx(STRANGER, epoch_round + 1, make_observations(98_000000, 3)))
    assert await call_uint(net.d, feed, "latestAnswer()") == 98_000000


async def test_lst_rate(net: Devnet) -> None:
    lst = net.tokens["wstETH"].address
    assert await call_uint(net.d, lst, "stEthPerToken()") == DEFAULT_LST_RATE
    assert await call_uint(net.d, lst, "getRate()") == DEFAULT_LST_RATE
    assert await call_uint(net.d, lst, "getStETHByWstETH(uint256)", ["uint256"], [10**18]) == DEFAULT_LST_RATE
    assert await call_uint(net.d, lst, "getWstETHByStETH(uint256)", ["uint256"], [DEFAULT_LST_RATE]) == 10**18

    # The owner sets a rate and a per-second growth; the rate then follows block time exactly.
    growth = 1_000_000_000
    receipt = await net.d.transact(
        lst, "setRate(uint256,uint256)", ["uint256", "uint256"], [12 * 10**17, growth]
    )
    t0 = int(str((await block(net.rpc, receipt["blockNumber"]))["timestamp"]), 16)
    await net.rpc.call("evm_increaseTime", [3600])
    await net.rpc.call("evm_mine")
    t1 = int(str((await block(net.rpc, "latest"))["timestamp"]), 16)
    assert t1 - t0 >= 3600
    assert await call_uint(net.d, lst, "stEthPerToken()") == 12 * 10**17 + growth * (t1 - t0)

    # A slashing-style drop, set by the owner; strangers cannot.
    with pytest.raises(DevnetError):
        await Deployer(net.rpc, STRANGER).transact(
            lst, "setRate(uint256,uint256)", ["uint256", "uint256"], [1, 0]
        )
    await net.d.transact(lst, "setRate(uint256,uint256)", ["uint256", "uint256"], [9 * 10**17, 0])
    assert await call_uint(net.d, lst, "getRate()") == 9 * 10**17


async def test_multicall3_aggregate3_reads_balances(net: Devnet) -> None:
    address = await install_multicall3(net.rpc)
    assert address == MULTICALL3_ADDRESS
    holder = DEV_ACCOUNTS[3][0]
    amounts = {}
    for i, (symbol, info) in enumerate(sorted(net.tokens.items())):
        amounts[symbol] = (i + 1) * 10**info.decimals + i
        await net.d.transact(
            info.address, "mint(address,uint256)", ["address", "uint256"], [holder, amounts[symbol]]
        )

    symbols = sorted(net.tokens)
    calls = [
        (net.tokens[s].address, True, encode_call("balanceOf(address)", ["address"], [holder]))
        for s in symbols
    ]
    calls.append((MULTICALL3_ADDRESS, False, encode_call("getEthBalance(address)", ["address"], [holder])))
    calls.append(
        (
            net.feeds.usd["WETH"],
            True,
            encode_call("setTransmitter(address,bool)", ["address", "bool"], [holder, True]),
        )
    )  # reverts: not owner
    data = encode_call("aggregate3((address,bool,bytes)[])", ["(address,bool,bytes)[]"], [calls])
    raw = await net.rpc.eth_call(MULTICALL3_ADDRESS, data)
    (results,) = decode(["(bool,bytes)[]"], raw)
    assert len(results) == len(symbols) + 2
    for symbol, (ok, ret) in zip(symbols, results, strict=False):
        assert ok
        assert decode(["uint256"], ret)[0] == amounts[symbol]
    ok, ret = results[len(symbols)]
    assert ok and decode(["uint256"], ret)[0] == await net.rpc.get_balance(holder)
    ok, ret = results[-1]
    assert not ok and ret[:4] == selector("NotOwner()")

    # A failing call that is not allowed to fail reverts the whole batch with Multicall3's message.
    strict = [(c[0], False, c[2]) for c in calls]
    data = encode_call("aggregate3((address,bool,bytes)[])", ["(address,bool,bytes)[]"], [strict])
    with pytest.raises(ExecutionReverted) as info:
        await net.rpc.eth_call(MULTICALL3_ADDRESS, data)
    assert b"Multicall3: call failed" in info.value.revert_data

    (number,) = decode(["uint256"], await net.rpc.eth_call(MULTICALL3_ADDRESS, selector("getBlockNumber()")))
    assert number == await net.rpc.block_number()
    (chain_id,) = decode(["uint256"], await net.rpc.eth_call(MULTICALL3_ADDRESS, selector("getChainId()")))
    assert chain_id == 31337
