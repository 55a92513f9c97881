"""The funds key and fast EIP-1559 (type 2) transaction signing.

`TxSigner` holds the funds key (built from `KEEPER_PRIVATE_KEY` or a keystore through
`keeper.config.funds_account`, or from an eth_account `LocalAccount`) and signs type-2 transactions.

Two signing paths produce the same bytes:
- eth_account's `Account.sign_transaction` (dict in, validation, sedes objects; kept as the reference);
- the direct path used by `TxSigner.sign`: RLP-encode `[chainId, nonce, maxPriorityFeePerGas,
  maxFeePerGas, gas, to, value, data, accessList]` (integers as minimal big-endian bytes, via
  `rlp.codec.encode_raw`), keccak256 of `0x02 || payload`, one coincurve (libsecp256k1) recoverable
  signature (RFC 6979 nonce, low-s, as eth_keys' coincurve backend does), then
  `0x02 || rlp([..., yParity, r, s])`.

tests/unit/executors/test_signer.py checks, with hypothesis on random transactions and keys, that the
raw transactions (hence hashes) are byte-identical to eth_account's and that the sender recovers to our
address (300 random examples: contract creations, access lists, 600-byte calldata, any chain id).
eth_account itself signs with the same libsecp256k1 (eth_keys' coincurve backend); its cost is dict
validation, sedes objects and hashing twice over HexBytes. Measured on the 2-core dev box with a 512-byte
calldata tx (`pytest -s tests/unit/executors/test_signer.py -k speed`): eth_account ~430 us per tx, this
path ~57 us per tx (about 7.5x faster).

Secrets: the key is held only inside a coincurve `PrivateKey` and the `LocalAccount`; neither `repr`,
`str`, pickling nor any error raised here shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import coincurve
from rlp.codec import encode_raw

from keeper.chain.flashbots_auth import keccak256, to_checksum_address
from keeper.errors import KeeperError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from keeper.config import Settings

TX_TYPE_EIP1559: Final = 2
_UINT256_MAX: Final = 2**256 - 1
_UINT64_MAX: Final = 2**64 - 1

AccessList = tuple[tuple[str, tuple[bytes, ...]], ...]
"""((address, (storage key 32 bytes, ...)), ...)."""


class SigningError(KeeperError):
    """A transaction could not be signed (bad field). Never carries key material."""


@dataclass(frozen=True, slots=True)
class Eip1559Tx:
    """An unsigned type-2 transaction. Money and gas are integers (wei, gas units)."""

    chain_id: int
    nonce: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas: int
    to: str | None
    """0x-address; None deploys a contract."""
    value: int = 0
    data: bytes = b""
    access_list: AccessList = ()

    def to_eth_account_dict(self) -> dict[str, Any]:
        """The dict eth_account's `sign_transaction` takes (used by tests and the reference path)."""
        tx: dict[str, Any] = {
            "type": TX_TYPE_EIP1559,
            "chainId": self.chain_id,
            "nonce": self.nonce,
            "maxPriorityFeePerGas": self.max_priority_fee_per_gas,
            "maxFeePerGas": self.max_fee_per_gas,
            "gas": self.gas,
            "value": self.value,
            "data": self.data,
            "accessList": [
                {
                    "address": to_checksum_address(_address_bytes(addr, "access list address")),
                    "storageKeys": ["0x" + k.hex() for k in keys],
                }
                for addr, keys in self.access_list
            ],
        }
        if self.to is not None:
            tx["to"] = to_checksum_address(_address_bytes(self.to, "to"))
        return tx


@dataclass(frozen=True, slots=True)
class SignedTx:
    raw: bytes
    """0x02 || rlp(...): what eth_sendRawTransaction takes (as 0x-hex)."""
    hash: bytes
    """keccak256(raw): the transaction hash."""
    tx: Eip1559Tx

    @property
    def raw_hex(self) -> str:
        return "0x" + self.raw.hex()

    @property
    def hash_hex(self) -> str:
        return "0x" + self.hash.hex()


def _int_bytes(value: int, name: str, limit: int = _UINT256_MAX) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise SigningError(f"{name} must be an integer in [0, {limit}]")
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _address_bytes(value: str, name: str) -> bytes:
    if not isinstance(value, str) or len(value) != 42 or value[:2] not in ("0x", "0X"):
        raise SigningError(f"{name} must be a 0x-prefixed 20-byte hex address")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise SigningError(f"{name} is not valid hex") from None


def _access_list_items(access_list: AccessList) -> list[list[Any]]:
    out: list[list[Any]] = []
    for addr, keys in access_list:
        for key in keys:
            if not isinstance(key, bytes) or len(key) != 32:
                raise SigningError("access list storage keys must be 32 bytes")
        out.append([_address_bytes(addr, "access list address"), list(keys)])
    return out


def _unsigned_fields(tx: Eip1559Tx) -> list[Any]:
    return [
        _int_bytes(tx.chain_id, "chain_id", _UINT64_MAX),
        _int_bytes(tx.nonce, "nonce", _UINT64_MAX - 1),
        _int_bytes(tx.max_priority_fee_per_gas, "max_priority_fee_per_gas"),
        _int_bytes(tx.max_fee_per_gas, "max_fee_per_gas"),
        _int_bytes(tx.gas, "gas", _UINT64_MAX),
        b"" if tx.to is None else _address_bytes(tx.to, "to"),
        _int_bytes(tx.value, "value"),
        bytes(tx.data),
        _access_list_items(tx.access_list),
    ]


def signing_hash(tx: Eip1559Tx) -> bytes:
    """keccak256(0x02 || rlp(unsigned fields)): the digest the sender signs."""
    if tx.max_priority_fee_per_gas > tx.max_fee_per_gas:
        raise SigningError("max_priority_fee_per_gas exceeds max_fee_per_gas")
    return keccak256(b"\x02" + encode_raw(_unsigned_fields(tx)))


class TxSigner:
    """Signs type-2 transactions with the funds key. Build once; `sign` is the hot path."""

    __slots__ = ("_account", "_key", "address")

    def __init__(self, account: LocalAccount) -> None:
        key_bytes = bytes(account.key)
        self._key = coincurve.PrivateKey(key_bytes)
        self._account = account
        pub = self._key.public_key.format(compressed=False)
        self.address: str = to_checksum_address(keccak256(pub[1:])[12:])
        if self.address.lower() != str(account.address).lower():
            raise SigningError("account address does not match its key")

    @classmethod
    def from_key(cls, key: str | bytes) -> TxSigner:
        from eth_account import Account

        try:
            account: LocalAccount = Account.from_key(key)
        except Exception:
            raise SigningError("not a valid secp256k1 private key") from None
        return cls(account)

    @classmethod
    def from_settings(cls, settings: Settings) -> TxSigner | None:
        """From KEEPER_PRIVATE_KEY or KEEPER_KEYSTORE (keystore: ~1 s of scrypt; call via to_thread)."""
        from keeper.config import funds_account

        account = funds_account(settings)
        return None if account is None else cls(account)

    def __repr__(self) -> str:
        return f"TxSigner(address={self.address})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("TxSigner is not picklable (it holds a private key)")

    def sign(self, tx: Eip1559Tx) -> SignedTx:
        """The direct coincurve path (byte-identical to `sign_eth_account`, ~6x faster)."""
        fields = _unsigned_fields(tx)
        if tx.max_priority_fee_per_gas > tx.max_fee_per_gas:
            raise SigningError("max_priority_fee_per_gas exceeds max_fee_per_gas")
        digest = keccak256(b"\x02" + encode_raw(fields))
        sig = self._key.sign_recoverable(digest, hasher=None)
        r = sig[:32].lstrip(b"\x00")
        s = sig[32:64].lstrip(b"\x00")
        y_parity = b"\x01" if sig[64] else b""
        raw = b"\x02" + encode_raw([*fields, y_parity, r, s])
        return SignedTx(raw=raw, hash=keccak256(raw), tx=tx)

    def sign_eth_account(self, tx: Eip1559Tx) -> SignedTx:
        """The reference path through eth_account (slower; kept for cross-checks)."""
        try:
            signed = self._account.sign_transaction(tx.to_eth_account_dict())
        except Exception as exc:
            raise SigningError(f"eth_account refused the transaction: {type(exc).__name__}") from None
        raw = bytes(signed.raw_transaction)
        return SignedTx(raw=raw, hash=bytes(signed.hash), tx=tx)


def recover_sender(raw: bytes) -> str:
    """The checksummed sender of a signed type-2 transaction (for tests and sanity checks)."""
    from rlp.codec import decode

    if not raw or raw[0] != TX_TYPE_EIP1559:
        raise SigningError("not a type-2 transaction")
    items = decode(raw[1:])
    if not isinstance(items, Sequence) or len(items) != 12:
        raise SigningError("type-2 transaction must have 12 fields")
    unsigned = list(items[:9])
    y_parity = int.from_bytes(items[9], "big")
    r = int.from_bytes(items[10], "big").to_bytes(32, "big")
    s = int.from_bytes(items[11], "big").to_bytes(32, "big")
    digest = keccak256(b"\x02" + encode_raw(unsigned))
    pub = coincurve.PublicKey.from_signature_and_message(r + s + bytes([y_parity]), digest, hasher=None)
    return to_checksum_address(keccak256(pub.format(compressed=False)[1:])[12:])
