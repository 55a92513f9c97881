"""The `X-Flashbots-Signature` request header: sign a request body, verify one.

Spec (see /work/shared/facts/flashbots.md, from the Flashbots docs and flashbots/go-utils
`signature/signature.go`):

- The header value is `<signer address>:<0x-prefixed 65-byte signature hex>`.
- What is signed is the ASCII text `"0x" + lowercase hex(keccak256(exact body bytes))` (66 chars) as an
  EIP-191 personal message (`"\\x19Ethereum Signed Message:\\n66" + text`, hashed with keccak256).
- The signature's `v` may be 27/28 or 0/1; the address is compared case-insensitively.

The signing key is the searcher's reputation identity and should hold no funds. It never appears in a
repr, an error message or a log line produced here.

Signing and recovery use coincurve (libsecp256k1) directly. Measured on the 2-core dev box: sign
~37 us with a reused FlashbotsSigner (~90 us when given a raw key, which is parsed every call) vs
~170 us with eth_account's `sign_message`; verify ~70 us vs ~115 us with `recover_message`.
tests/unit/test_flashbots_auth.py checks the signatures are byte-identical to eth_account's.
"""

from __future__ import annotations

import re
from typing import Final

import coincurve
from Crypto.Hash import keccak as _keccak_mod

from keeper.errors import RelayError

HEADER: Final = "X-Flashbots-Signature"
INVALID_SIGNATURE_CODE: Final = -32025
SIGNATURE_REQUIRED_CODE: Final = -32600

_EIP191_PREFIX: Final = b"\x19Ethereum Signed Message:\n66"
_SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_ADDRESS_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_SIG_RE: Final = re.compile(r"0x[0-9a-fA-F]{130}")


class FlashbotsAuthError(RelayError):
    """A missing or invalid `X-Flashbots-Signature` (HTTP 403, JSON-RPC -32025 or -32600)."""

    def __init__(self, message: str, *, code: int = INVALID_SIGNATURE_CODE) -> None:
        super().__init__(message, code=code, status=403)


def keccak256(data: bytes) -> bytes:
    return _keccak_mod.new(digest_bits=256, data=data).digest()


def to_checksum_address(raw: bytes) -> str:
    """EIP-55 checksum of a 20-byte address."""
    hex_addr = raw.hex()
    digest = keccak256(hex_addr.encode("ascii")).hex()
    return "0x" + "".join(
        c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(hex_addr)
    )


def body_message_hash(body: bytes) -> bytes:
    """keccak256 of the EIP-191 personal message over "0x" + hex(keccak256(body))."""
    text = b"0x" + keccak256(body).hex().encode("ascii")
    return keccak256(_EIP191_PREFIX + text)


def _parse_private_key(key: str | bytes) -> bytes:
    if isinstance(key, str):
        text = key[2:] if key[:2] in ("0x", "0X") else key
        if len(text) != 64:
            raise ValueError("signing key must be 32 bytes (64 hex characters)")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError("signing key is not valid hex") from None
    elif isinstance(key, bytes | bytearray):
        raw = bytes(key)
        if len(raw) != 32:
            raise ValueError("signing key must be 32 bytes")
    else:
        raise TypeError("signing key must be hex str or 32 bytes")
    scalar = int.from_bytes(raw, "big")
    if not 0 < scalar < _SECP256K1_N:
        raise ValueError("signing key is out of range for secp256k1")
    return raw


class FlashbotsSigner:
    """Holds a Flashbots identity key; signs request bodies. Build once, reuse (construction ~60 us)."""

    __slots__ = ("_key", "address")

    def __init__(self, key: str | bytes) -> None:
        self._key = coincurve.PrivateKey(_parse_private_key(key))
        pub = self._key.public_key.format(compressed=False)
        self.address: str = to_checksum_address(keccak256(pub[1:])[12:])

    def __repr__(self) -> str:
        return f"FlashbotsSigner(address={self.address})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("FlashbotsSigner is not picklable (it holds a private key)")

    def sign_hash(self, message_hash: bytes) -> bytes:
        """65 bytes r || s || v with v in {27, 28} (libsecp256k1 produces low-s signatures)."""
        sig = self._key.sign_recoverable(message_hash, hasher=None)
        return sig[:64] + bytes([sig[64] + 27])

    def sign(self, body: bytes) -> str:
        """The `X-Flashbots-Signature` header value for exactly these body bytes."""
        return f"{self.address}:0x{self.sign_hash(body_message_hash(body)).hex()}"


def sign_request_body(body: bytes, signer_key: FlashbotsSigner | str | bytes) -> str:
    """`<address>:0x<signature>` for `body`. Pass a FlashbotsSigner on hot paths (saves ~60 us)."""
    signer = signer_key if isinstance(signer_key, FlashbotsSigner) else FlashbotsSigner(signer_key)
    return signer.sign(body)


def recover_signer(header: str, body: bytes) -> str:
    """Verifies a header value against the body; returns the signer's checksummed address.

    Raises FlashbotsAuthError (never echoing more than a short prefix of the header) when the header is
    malformed, the signature is invalid, or it was made by another address than the one claimed.
    """
    if not isinstance(header, str) or not header:
        raise FlashbotsAuthError("signature is required", code=SIGNATURE_REQUIRED_CODE)
    parts = header.strip().split(":")
    if len(parts) != 2:
        raise FlashbotsAuthError("invalid flashbots signature: expected '<address>:<0x signature>'")
    claimed, sig_hex = parts
    if not _ADDRESS_RE.fullmatch(claimed):
        raise FlashbotsAuthError("invalid flashbots signature: address is not 0x + 40 hex characters")
    if not _SIG_RE.fullmatch(sig_hex):
        raise FlashbotsAuthError("invalid flashbots signature: signature is not 0x + 65 bytes of hex")
    sig = bytes.fromhex(sig_hex[2:])
    v = sig[64]
    if v in (27, 28):
        v -= 27
    elif v not in (0, 1):
        raise FlashbotsAuthError("invalid flashbots signature: v must be 27, 28, 0 or 1")
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:64], "big")
    if not (0 < r < _SECP256K1_N and 0 < s < _SECP256K1_N):
        raise FlashbotsAuthError("invalid flashbots signature: r or s out of range")
    try:
        pub = coincurve.PublicKey.from_signature_and_message(
            sig[:64] + bytes([v]), body_message_hash(body), hasher=None
        )
    except Exception:
        raise FlashbotsAuthError("invalid flashbots signature: public key recovery failed") from None
    recovered = keccak256(pub.format(compressed=False)[1:])[12:]
    if recovered.hex() != claimed[2:].lower():
        raise FlashbotsAuthError("invalid flashbots signature: signer does not match the address")
    return to_checksum_address(recovered)
