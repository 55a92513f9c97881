"""A signed transaction's raw bytes rebuilt from its JSON-RPC object (e.g. a pending tx from
`newPendingTransactions` with full objects), checked against its hash.

A backrun bundle carries someone else's signed transaction as raw bytes; a node announces pending
transactions as JSON objects. Rebuilding the RLP from the fields (type 0 legacy, 1 access list, 2
EIP-1559) and checking keccak256(raw) == hash saves a round trip (`eth_getRawTransactionByHash`) on the
hot path, and never trusts a mismatch: a field the node did not send, or sent wrongly, makes it None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import rlp
from eth_utils.crypto import keccak


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj[key]
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(key)
    return int(value, 16)


def _bytes(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError("not hex")
    return bytes.fromhex(value[2:])


def _access_list(obj: Mapping[str, Any]) -> list[list[Any]]:
    out = []
    for item in obj.get("accessList") or []:
        out.append([_bytes(item["address"]), [_bytes(k) for k in item.get("storageKeys") or []]])
    return out


def _y_parity(obj: Mapping[str, Any]) -> int:
    if "yParity" in obj:
        return _int(obj, "yParity")
    v = _int(obj, "v")
    return v if v in (0, 1) else (v - 27) % 2


def rebuild_raw(obj: Mapping[str, Any]) -> bytes | None:
    """The raw signed transaction of a JSON-RPC tx object, or None when it cannot be rebuilt exactly
    (unsupported type, missing or inconsistent fields: keccak256(raw) must equal the object's hash)."""
    try:
        tx_type = _int(obj, "type") if "type" in obj else 0
        to = _bytes(obj["to"]) if obj.get("to") else b""
        data = _bytes(obj.get("input", obj.get("data")))
        r, s = _int(obj, "r"), _int(obj, "s")
        if tx_type == 2:
            fields: list[Any] = [
                _int(obj, "chainId"),
                _int(obj, "nonce"),
                _int(obj, "maxPriorityFeePerGas"),
                _int(obj, "maxFeePerGas"),
                _int(obj, "gas"),
                to,
                _int(obj, "value"),
                data,
                _access_list(obj),
                _y_parity(obj),
                r,
                s,
            ]
            raw = b"\x02" + rlp.encode(fields)
        elif tx_type == 1:
            fields = [
                _int(obj, "chainId"),
                _int(obj, "nonce"),
                _int(obj, "gasPrice"),
                _int(obj, "gas"),
                to,
                _int(obj, "value"),
                data,
                _access_list(obj),
                _y_parity(obj),
                r,
                s,
            ]
            raw = b"\x01" + rlp.encode(fields)
        elif tx_type == 0:
            fields = [
                _int(obj, "nonce"),
                _int(obj, "gasPrice"),
                _int(obj, "gas"),
                to,
                _int(obj, "value"),
                data,
                _int(obj, "v"),
                r,
                s,
            ]
            raw = rlp.encode(fields)
        else:
            return None
        expected = _bytes(obj["hash"])
    except (KeyError, ValueError, TypeError):
        return None
    return raw if keccak(raw) == expected else None
