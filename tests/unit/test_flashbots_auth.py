"""X-Flashbots-Signature: signing, verification, and agreement with eth_account's EIP-191 signing."""

from __future__ import annotations

import pickle

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak

from keeper.chain.flashbots_auth import (
    INVALID_SIGNATURE_CODE,
    SIGNATURE_REQUIRED_CODE,
    FlashbotsAuthError,
    FlashbotsSigner,
    body_message_hash,
    recover_signer,
    sign_request_body,
)

# anvil's first dev account (public test key)
KEY0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ADDR0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
KEY1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ADDR1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

BODY = b'{"jsonrpc":"2.0","id":1,"method":"eth_sendBundle","params":[{"txs":["0x02"],"blockNumber":"0x10"}]}'
# Computed once with this module and independently equal to eth_account's
# Account.sign_message(encode_defunct(text="0x" + keccak(BODY).hex()), KEY0) (RFC 6979 is deterministic).
KNOWN_HEADER = (
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266:0xa93dabaa998ad2534208626e8d124c322b9bb2012208"
    "89f5998042c330578c49196edad1d875a20762765439514d10cd85625777b094b10e4dd72f92d899e73c1c"
)


def test_known_vector() -> None:
    assert sign_request_body(BODY, KEY0) == KNOWN_HEADER
    assert recover_signer(KNOWN_HEADER, BODY) == ADDR0


def test_matches_eth_account_personal_sign() -> None:
    for body in (b"", b"{}", BODY, bytes(range(256)) * 40):
        text = "0x" + keccak(body).hex()
        assert len(text) == 66
        ref = Account.sign_message(encode_defunct(text=text), KEY1)
        header = sign_request_body(body, KEY1)
        addr, sig = header.split(":")
        assert addr == ADDR1
        assert sig == "0x" + ref.signature.hex()
        assert body_message_hash(body) == bytes(ref.message_hash)


def test_round_trip_with_signer_object_and_bytes_key() -> None:
    signer = FlashbotsSigner(bytes.fromhex(KEY1[2:]))
    assert signer.address == ADDR1
    header = signer.sign(BODY)
    assert recover_signer(header, BODY) == ADDR1
    assert sign_request_body(BODY, signer) == header
    # key given without 0x works too
    assert sign_request_body(BODY, KEY1[2:]) == header


def test_eth_account_signature_is_accepted() -> None:
    """A client that signs with eth_account (v = 27/28) and lowercase address verifies."""
    ref = Account.sign_message(encode_defunct(text="0x" + keccak(BODY).hex()), KEY0)
    header = f"{ADDR0.lower()}:0x{ref.signature.hex()}"
    assert recover_signer(header, BODY) == ADDR0


def test_v_0_1_accepted() -> None:
    addr, sig = KNOWN_HEADER.split(":")
    raw = bytearray(bytes.fromhex(sig[2:]))
    assert raw[64] in (27, 28)
    raw[64] -= 27
    assert recover_signer(f"{addr}:0x{raw.hex()}", BODY) == ADDR0


def test_body_change_is_rejected() -> None:
    with pytest.raises(FlashbotsAuthError) as info:
        recover_signer(KNOWN_HEADER, BODY + b" ")
    assert info.value.code == INVALID_SIGNATURE_CODE
    assert info.value.status == 403
    assert "invalid flashbots signature" in str(info.value)


def test_other_claimed_address_is_rejected() -> None:
    _, sig = KNOWN_HEADER.split(":")
    with pytest.raises(FlashbotsAuthError, match="does not match"):
        recover_signer(f"{ADDR1}:{sig}", BODY)


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        ADDR0,
        f"{ADDR0}:",
        f"{ADDR0}:{KNOWN_HEADER.split(':')[1][2:]}",  # signature without 0x (the hexbytes>=1 bug)
        f"{ADDR0}:0x1234",
        f"0x1234:{KNOWN_HEADER.split(':')[1]}",
        f"{ADDR0}:{KNOWN_HEADER.split(':')[1]}:extra",
        f"{ADDR0}:0x" + "zz" * 65,
        f"{ADDR0}:0x" + "00" * 64 + "1d",  # v = 29
        f"{ADDR0}:0x" + "00" * 64 + "1b",  # r = s = 0
        f"{ADDR0}:0x" + "ff" * 64 + "1b",  # r, s >= n
    ],
)
def test_malformed_headers_raise_clear_error(header: str) -> None:
    with pytest.raises(FlashbotsAuthError) as info:
        recover_signer(header, BODY)
    assert info.value.code == INVALID_SIGNATURE_CODE
    assert str(info.value).startswith("invalid flashbots signature")


def test_missing_header() -> None:
    with pytest.raises(FlashbotsAuthError, match="signature is required") as info:
        recover_signer("", BODY)
    assert info.value.code == SIGNATURE_REQUIRED_CODE


@pytest.mark.parametrize("bad", ["0x1234", "zz" * 32, "0x" + "00" * 32, b"\x01" * 31, 12345])
def test_bad_keys_rejected_without_echo(bad: object) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        FlashbotsSigner(bad)  # type: ignore[arg-type]
    if isinstance(bad, str) and len(bad) > 4:
        assert bad not in str(info.value)


def test_key_never_in_repr_or_pickle() -> None:
    signer = FlashbotsSigner(KEY0)
    for text in (repr(signer), str(signer), f"{signer}", repr([signer])):
        assert KEY0[2:] not in text
        assert ADDR0 in text
    with pytest.raises(TypeError):
        pickle.dumps(signer)
