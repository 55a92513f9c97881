"""Multicall3 aggregate3 encoding, decoding and chunked batching (fake RPC; one real-anvil check)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import pytest
from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.chain.multicall import (
    AGGREGATE3_SELECTOR,
    MULTICALL3_ADDRESS,
    decode_aggregate3_calls,
    decode_aggregate3_result,
    encode_aggregate3,
    encode_aggregate3_result,
    multicall,
)
from keeper.errors import DecodeError

addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
calls_st = st.lists(st.tuples(addresses, st.binary(max_size=100)), max_size=20)


def test_selector_is_keccak_of_signature() -> None:
    assert keccak(text="aggregate3((address,bool,bytes)[])")[:4] == AGGREGATE3_SELECTOR


def test_encoding_matches_eth_abi_layout() -> None:
    calls = [("0x" + "11" * 20, b"\x01\x02"), ("0x" + "22" * 20, b"")]
    data = encode_aggregate3(calls, allow_failure=False)
    assert data[:4] == bytes.fromhex("82ad56cb")
    (decoded,) = decode(["(address,bool,bytes)[]"], data[4:])
    assert [(a.lower(), f, bytes(d)) for a, f, d in decoded] == [
        ("0x" + "11" * 20, False, b"\x01\x02"),
        ("0x" + "22" * 20, False, b""),
    ]


@given(calls=calls_st, allow=st.booleans())
@settings(max_examples=200, deadline=None)
def test_hand_rolled_encoding_equals_eth_abi(calls: list[tuple[str, bytes]], allow: bool) -> None:
    expected = AGGREGATE3_SELECTOR + encode(["(address,bool,bytes)[]"], [[(t, allow, d) for t, d in calls]])
    assert encode_aggregate3(calls, allow_failure=allow) == expected


def test_encoding_rejects_bad_address() -> None:
    with pytest.raises(ValueError, match="20-byte"):
        encode_aggregate3([("0x1234", b"")])


@given(calls=calls_st, allow=st.booleans())
@settings(max_examples=100, deadline=None)
def test_calls_round_trip(calls: list[tuple[str, bytes]], allow: bool) -> None:
    assert decode_aggregate3_calls(encode_aggregate3(calls, allow_failure=allow)) == [
        (t, allow, d) for t, d in calls
    ]


@given(results=st.lists(st.tuples(st.booleans(), st.binary(max_size=100)), max_size=20))
@settings(max_examples=100, deadline=None)
def test_results_round_trip(results: list[tuple[bool, bytes]]) -> None:
    data = encode_aggregate3_result(results)
    assert data == encode(["(bool,bytes)[]"], [results])
    assert decode_aggregate3_result(data, len(results)) == results


def test_result_count_mismatch_and_garbage() -> None:
    data = encode_aggregate3_result([(True, b"")])
    with pytest.raises(DecodeError, match="1 results for 2"):
        decode_aggregate3_result(data, 2)
    with pytest.raises(DecodeError):
        decode_aggregate3_result(b"\x00" * 7)


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_decode_result_fuzz_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_aggregate3_result(data)


class FakeMulticallRpc:
    """Executes aggregate3 in Python: a target's answer is its calldata reversed; target 0x00.. fails."""

    FAILING = "0x" + "00" * 20

    def __init__(self, reply: str | None = None) -> None:
        self.batches: list[list[tuple[str, Any]]] = []
        self.reply = reply

    async def batch(self, calls: Sequence[tuple[str, Any]], *, raise_errors: bool = True) -> list[Any]:
        self.batches.append(list(calls))
        out = []
        for method, params in calls:
            assert method == "eth_call"
            tx, _block = params
            if self.reply is not None:
                out.append(self.reply)
                continue
            inner = decode_aggregate3_calls(bytes.fromhex(tx["data"][2:]))
            results = [(t != self.FAILING, b"" if t == self.FAILING else d[::-1]) for t, _f, d in inner]
            out.append("0x" + encode_aggregate3_result(results).hex())
        return out


async def test_multicall_chunks_into_one_batch_in_order() -> None:
    rpc = FakeMulticallRpc()
    calls = [("0x" + f"{i + 1:040x}", i.to_bytes(4, "big")) for i in range(7)]
    calls[3] = (FakeMulticallRpc.FAILING, b"\x01")
    out = await multicall(rpc, MULTICALL3_ADDRESS, calls, block=123, chunk_size=3)
    assert len(rpc.batches) == 1  # one HTTP round trip
    assert [len(decode_aggregate3_calls(bytes.fromhex(p[0]["data"][2:]))) for _, p in rpc.batches[0]] == [
        3,
        3,
        1,
    ]
    assert all(p[1] == "0x7b" and p[0]["to"] == MULTICALL3_ADDRESS for _, p in rpc.batches[0])
    assert out[3] == (False, b"")
    assert [r for i, r in enumerate(out) if i != 3] == [
        (True, i.to_bytes(4, "big")[::-1]) for i in range(7) if i != 3
    ]


async def test_multicall_empty_and_bad_args() -> None:
    rpc = FakeMulticallRpc()
    assert await multicall(rpc, MULTICALL3_ADDRESS, []) == []
    assert rpc.batches == []
    with pytest.raises(ValueError, match="chunk_size"):
        await multicall(rpc, MULTICALL3_ADDRESS, [("0x" + "11" * 20, b"")], chunk_size=0)


async def test_multicall_without_contract_says_so() -> None:
    rpc = FakeMulticallRpc(reply="0x")
    with pytest.raises(DecodeError, match="is Multicall3 deployed"):
        await multicall(rpc, MULTICALL3_ADDRESS, [("0x" + "11" * 20, b"")])


async def test_multicall_allow_failure_flag_is_encoded() -> None:
    rpc = FakeMulticallRpc()
    await multicall(rpc, MULTICALL3_ADDRESS, [("0x" + "11" * 20, b"\x01")], allow_failure=False)
    (_, params) = rpc.batches[0][0]
    assert decode_aggregate3_calls(bytes.fromhex(params[0]["data"][2:]))[0][1] is False


@pytest.mark.integration
async def test_multicall_against_anvil() -> None:
    from keeper.chain.rpc import RpcClient
    from keeper.devnet.anvil import DEV_ACCOUNTS, Anvil
    from keeper.devnet.tokens import install_multicall3
    from keeper.errors import ExecutionReverted

    get_eth_balance = keccak(text="getEthBalance(address)")[:4]
    async with Anvil() as node, RpcClient(node.http_url) as rpc:
        await install_multicall3(rpc)
        calls = [(MULTICALL3_ADDRESS, get_eth_balance + encode(["address"], [a])) for a, _ in DEV_ACCOUNTS]
        calls.insert(2, (MULTICALL3_ADDRESS, b"\xde\xad\xbe\xef"))  # no such function: fails
        out = await multicall(rpc, MULTICALL3_ADDRESS, calls, chunk_size=2)
        assert out[2][0] is False
        balances = [int.from_bytes(r, "big") for ok, r in out if ok]
        expected = [await rpc.get_balance(a) for a, _ in DEV_ACCOUNTS]
        assert balances == expected
        with pytest.raises(ExecutionReverted):
            await multicall(rpc, MULTICALL3_ADDRESS, calls, allow_failure=False)
