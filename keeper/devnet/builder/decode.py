"""Signed raw transactions for the devnet builder: decoding, sender recovery, bundle hashes.

`decode_raw_tx` turns the bytes a searcher sends (types 0, 1, 2 and 4; blob transactions are refused)
into a `SignedTx` with integer amounts, and `SignedTx.to_call` gives the eth_simulateV1 call object that
executes it (see `keeper.devnet.builder.simulate`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account._utils.legacy_transactions import Transaction as LegacyTransaction
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from hexbytes import HexBytes

from keeper.chain.flashbots_auth import keccak256, to_checksum_address
from keeper.errors import DecodeError


class TxDecodeError(DecodeError):
    """A signed raw transaction could not be decoded (answered as "unable to decode txs")."""


def to_hex(value: bytes) -> str:
    """0x-prefixed lowercase hex."""
    return "0x" + bytes(value).hex()


@dataclass(frozen=True, slots=True)
class SignedTx:
    """A decoded signed transaction (types 0, 1, 2, 4). Amounts in wei, integers."""

    raw: bytes
    hash: str
    sender: str
    nonce: int
    to: str | None
    value: int
    gas: int
    tx_type: int
    chain_id: int | None
    max_fee: int
    """maxFeePerGas, or gasPrice for types 0 and 1."""
    max_priority_fee: int
    """maxPriorityFeePerGas, or gasPrice for types 0 and 1."""
    data: bytes
    access_list: tuple[tuple[str, tuple[str, ...]], ...] = ()
    authorization_list: tuple[dict[str, Any], ...] = ()

    def effective_gas_price(self, base_fee: int) -> int:
        return min(self.max_fee, base_fee + self.max_priority_fee)

    def effective_tip(self, base_fee: int) -> int:
        return self.effective_gas_price(base_fee) - base_fee

    def to_call(self) -> dict[str, Any]:
        """The eth_simulateV1 call object executing this transaction."""
        call: dict[str, Any] = {
            "from": self.sender,
            "nonce": hex(self.nonce),
            "gas": hex(self.gas),
            "value": hex(self.value),
            "input": to_hex(self.data),
        }
        if self.to is not None:
            call["to"] = self.to
        if self.tx_type in (0, 1):
            call["gasPrice"] = hex(self.max_fee)
        else:
            call["maxFeePerGas"] = hex(self.max_fee)
            call["maxPriorityFeePerGas"] = hex(self.max_priority_fee)
        if self.tx_type != 0:
            call["accessList"] = [
                {"address": addr, "storageKeys": list(keys)} for addr, keys in self.access_list
            ]
        if self.authorization_list:
            call["authorizationList"] = list(self.authorization_list)
        return call


def _as_address(value: Any) -> str | None:
    raw = bytes(value) if value is not None else b""
    if not raw:
        return None
    if len(raw) != 20:
        raise TxDecodeError("address is not 20 bytes")
    return to_checksum_address(raw)


def _jsonable_auth(item: Any) -> dict[str, Any]:
    return {
        "chainId": hex(int(item["chainId"])),
        "address": _as_address(item["address"]),
        "nonce": hex(int(item["nonce"])),
        "yParity": hex(int(item["yParity"])),
        "r": hex(int(item["r"])),
        "s": hex(int(item["s"])),
    }


def _decode_fields(raw: bytes) -> tuple[dict[str, Any], int, int | None, int, int]:
    """(fields, type, chain id, max fee, max priority fee) of a signed tx; raises TxDecodeError."""
    first = raw[0]
    if first == 3:
        raise TxDecodeError("blob transactions (type 3) are not supported")
    if first not in (1, 2, 4) and first < 0xC0:
        raise TxDecodeError(f"unknown transaction type {first}")
    try:
        if first >= 0xC0:
            d = dict(LegacyTransaction.from_bytes(raw).as_dict())
            v = int(d["v"])
            return d, 0, ((v - 35) // 2 if v >= 35 else None), int(d["gasPrice"]), int(d["gasPrice"])
        d = dict(TypedTransaction.from_bytes(HexBytes(raw)).as_dict())
        if first == 1:
            return d, 1, int(d["chainId"]), int(d["gasPrice"]), int(d["gasPrice"])
        return d, first, int(d["chainId"]), int(d["maxFeePerGas"]), int(d["maxPriorityFeePerGas"])
    except Exception as exc:
        raise TxDecodeError(f"{type(exc).__name__}: {str(exc)[:120]}") from None


def decode_raw_tx(raw: bytes, *, sender: str | None = None) -> SignedTx:
    """Decodes and (unless `sender` is given, e.g. by a node that already checked it) recovers the signer.

    Raises TxDecodeError on anything malformed or unsupported (blob transactions).
    """
    if not raw:
        raise TxDecodeError("empty transaction")
    d, tx_type, chain_id, max_fee, prio = _decode_fields(raw)
    try:
        access = tuple(
            (
                str(_as_address(item["address"])),
                tuple(to_hex(k) for k in item.get("storageKeys", ())),
            )
            for item in d.get("accessList", ())
        )
        auths = tuple(_jsonable_auth(a) for a in d.get("authorizationList", ()))
        who = sender if sender is not None else Account.recover_transaction(raw)
        tx = SignedTx(
            raw=bytes(raw),
            hash=to_hex(keccak256(raw)),
            sender=to_checksum_address(bytes.fromhex(who[2:])),
            nonce=int(d["nonce"]),
            to=_as_address(d.get("to")),
            value=int(d["value"]),
            gas=int(d["gas"]),
            tx_type=tx_type,
            chain_id=chain_id,
            max_fee=max_fee,
            max_priority_fee=prio,
            data=bytes(d.get("data", b"")),
            access_list=access,
            authorization_list=auths,
        )
    except TxDecodeError:
        raise
    except Exception as exc:
        raise TxDecodeError(f"{type(exc).__name__}: {str(exc)[:120]}") from None
    if tx_type == 4 and not auths:
        raise TxDecodeError("type 4 transaction without authorizations")
    return tx


def bundle_hash(txs: Iterable[SignedTx]) -> str:
    """keccak256 of the concatenated transaction hashes."""
    return to_hex(keccak256(b"".join(bytes.fromhex(t.hash[2:]) for t in txs)))
