"""rebuild_raw: a JSON-RPC tx object -> the exact signed bytes (checked against the hash)."""

from __future__ import annotations

from typing import Any

import rlp
from eth_account import Account
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.chain.rawtx import rebuild_raw
from keeper.chain.signer import Eip1559Tx, TxSigner

KEY = "0x" + "42" * 32
TO = "0x" + "ab" * 20
TO_CHECKSUM = "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"


def _hex(n: int) -> str:
    return hex(n)


def json_of_typed(raw: bytes) -> dict[str, Any]:
    """What a node returns for a typed (1 or 2) tx: the fields decoded from the raw bytes."""
    items = rlp.decode(raw[1:])
    tx_type = raw[0]
    ints = [int.from_bytes(x, "big") if isinstance(x, bytes) else x for x in items]
    obj: dict[str, Any] = {"type": _hex(tx_type), "hash": "0x" + keccak(raw).hex(), "chainId": _hex(ints[0])}
    if tx_type == 2:
        obj |= {
            "nonce": _hex(ints[1]),
            "maxPriorityFeePerGas": _hex(ints[2]),
            "maxFeePerGas": _hex(ints[3]),
            "gas": _hex(ints[4]),
            "to": "0x" + items[5].hex(),
            "value": _hex(ints[6]),
            "input": "0x" + items[7].hex(),
            "accessList": [],
            "yParity": _hex(ints[9]),
            "v": _hex(ints[9]),
            "r": _hex(ints[10]),
            "s": _hex(ints[11]),
        }
    return obj


@settings(max_examples=50, deadline=None)
@given(
    nonce=st.integers(0, 2**32),
    fee=st.integers(1, 10**12),
    data=st.binary(max_size=200),
    value=st.integers(0, 10**24),
)
def test_eip1559_rebuilds_exactly(nonce: int, fee: int, data: bytes, value: int) -> None:
    signed = TxSigner.from_key(KEY).sign(
        Eip1559Tx(
            chain_id=31337,
            nonce=nonce,
            max_priority_fee_per_gas=fee // 2,
            max_fee_per_gas=fee,
            gas=100_000,
            to=TO,
            value=value,
            data=data,
        )
    )
    obj = json_of_typed(signed.raw)
    assert rebuild_raw(obj) == signed.raw
    # A field the node got wrong (or an edited one) never yields bytes with another hash.
    assert rebuild_raw(obj | {"nonce": hex(nonce + 1)}) is None
    assert rebuild_raw({k: v for k, v in obj.items() if k != "r"}) is None


def test_legacy_rebuilds_exactly() -> None:
    signed = Account.sign_transaction(
        {
            "nonce": 7,
            "gasPrice": 10**9,
            "gas": 21_000,
            "to": TO_CHECKSUM,
            "value": 5,
            "data": b"",
            "chainId": 1,
        },
        KEY,
    )
    raw = bytes(signed.raw_transaction)
    nonce, gas_price, gas, to, value, data, v, r, s = rlp.decode(raw)
    obj = {
        "type": "0x0",
        "hash": "0x" + keccak(raw).hex(),
        "nonce": hex(int.from_bytes(nonce, "big")),
        "gasPrice": hex(int.from_bytes(gas_price, "big")),
        "gas": hex(int.from_bytes(gas, "big")),
        "to": "0x" + to.hex(),
        "value": hex(int.from_bytes(value, "big")),
        "input": "0x" + data.hex(),
        "v": hex(int.from_bytes(v, "big")),
        "r": hex(int.from_bytes(r, "big")),
        "s": hex(int.from_bytes(s, "big")),
    }
    assert rebuild_raw(obj) == raw


def test_garbage_is_none_never_an_exception() -> None:
    for obj in ({}, {"type": "0x7", "hash": "0x00"}, {"type": 2}, {"hash": 5, "r": "x"}):
        assert rebuild_raw(obj) is None
