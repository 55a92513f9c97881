"""TxSigner: the coincurve path is byte-identical to eth_account; the key never shows."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from keeper.chain.signer import Eip1559Tx, SigningError, TxSigner, recover_sender
from keeper.config import Settings

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"

keys = st.integers(min_value=1, max_value=SECP256K1_N - 1).map(lambda k: "0x" + k.to_bytes(32, "big").hex())
u256 = st.integers(min_value=0, max_value=2**256 - 1)
small = st.integers(min_value=0, max_value=2**64 - 2)
addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
access_lists = st.lists(
    st.tuples(addresses, st.lists(st.binary(min_size=32, max_size=32), max_size=3).map(tuple)), max_size=3
).map(tuple)


@st.composite
def txs(draw: st.DrawFn) -> Eip1559Tx:
    max_fee = draw(u256)
    return Eip1559Tx(
        chain_id=draw(st.sampled_from([1, 5, 10, 137, 8453, 31337, 2**32 + 7])),
        nonce=draw(small),
        max_priority_fee_per_gas=draw(st.integers(min_value=0, max_value=max_fee)),
        max_fee_per_gas=max_fee,
        gas=draw(st.integers(min_value=21_000, max_value=2**63)),
        to=draw(st.one_of(st.none(), addresses)),
        value=draw(u256),
        data=draw(st.binary(max_size=600)),
        access_list=draw(access_lists),
    )


@settings(max_examples=300, deadline=None)
@given(key=keys, tx=txs())
def test_byte_identical_to_eth_account(key: str, tx: Eip1559Tx) -> None:
    signer = TxSigner.from_key(key)
    fast = signer.sign(tx)
    ref = signer.sign_eth_account(tx)
    assert fast.raw == ref.raw
    assert fast.hash == ref.hash
    assert recover_sender(fast.raw) == signer.address == Account.from_key(key).address
    assert fast.raw_hex == "0x" + fast.raw.hex() and fast.hash_hex == "0x" + fast.hash.hex()


def test_known_transaction_decodes_back() -> None:
    signer = TxSigner.from_key(KEY)
    tx = Eip1559Tx(1, 0, 2 * 10**9, 100 * 10**9, 21_000, "0x" + "11" * 20, 10**18)
    signed = signer.sign(tx)
    decoded = Account.recover_transaction(signed.raw)
    assert decoded == signer.address
    assert signed.raw[0] == 2


def test_invalid_fields_are_refused_without_the_key() -> None:
    signer = TxSigner.from_key(KEY)
    bad = [
        Eip1559Tx(1, -1, 0, 0, 21_000, None),
        Eip1559Tx(1, 0, 2, 1, 21_000, None),  # tip above max fee
        Eip1559Tx(1, 0, 0, 2**256, 21_000, None),
        Eip1559Tx(1, 0, 0, 0, 21_000, "0x1234"),
        Eip1559Tx(1, 0, 0, 0, 21_000, "0x" + "zz" * 20),
        Eip1559Tx(1, 0, 0, 0, 21_000, None, access_list=(("0x" + "11" * 20, (b"short",)),)),
    ]
    for tx in bad:
        with pytest.raises(SigningError) as info:
            signer.sign(tx)
        assert KEY[2:] not in str(info.value)
    with pytest.raises(SigningError) as info2:
        TxSigner.from_key("0x" + "00" * 32)
    assert "00" * 32 not in str(info2.value)


def test_key_never_in_repr_str_pickle_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    signer = TxSigner.from_key(KEY)
    for text in (repr(signer), str(signer), f"{signer}", f"{signer!r}"):
        assert KEY[2:] not in text.lower()
        assert signer.address in text
    with pytest.raises(TypeError):
        pickle.dumps(signer)
    assert not hasattr(signer, "__dict__")  # no accidental vars() dump
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("signer %s %r", signer, signer)
    assert KEY[2:] not in caplog.text


def test_from_settings_private_key_and_keystore(tmp_path: Path) -> None:
    s = Settings(rpc_http_url="http://127.0.0.1:8545", private_key=SecretStr(KEY))
    signer = TxSigner.from_settings(s)
    assert signer is not None and signer.address == Account.from_key(KEY).address

    keystore = Account.encrypt(bytes.fromhex(KEY[2:]), "correct horse", kdf="pbkdf2", iterations=2)
    ks = tmp_path / "ks.json"
    pw = tmp_path / "pw"
    import json

    ks.write_text(json.dumps(keystore))
    pw.write_text("correct horse\n")
    s2 = Settings(rpc_http_url="http://127.0.0.1:8545", keystore=ks, keystore_password_file=pw)
    signer2 = TxSigner.from_settings(s2)
    assert signer2 is not None and signer2.address == signer.address
    assert TxSigner.from_settings(Settings(rpc_http_url="http://127.0.0.1:8545")) is None
