"""Pre-encoded contract calls: selector + ABI-encoded arguments, built once and reused on hot paths."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector


def encode_call(signature: str, types: Sequence[str] = (), args: Sequence[Any] = ()) -> bytes:
    """Calldata for `signature` (e.g. "transfer(address,uint256)") with `args` ABI-encoded as `types`."""
    selector = function_signature_to_4byte_selector(signature)
    return selector + encode(list(types), list(args)) if types else selector
