"""The exception tree. Catch the narrowest class that you can handle.

KeeperError
 +-- ConfigError                 bad configuration (names the field, never echoes secrets)
 +-- RpcError                    anything from talking to a node
 |    +-- RpcTransportError      connection refused/reset, timeout, HTTP 5xx/429: transient, retried
 |    +-- RpcResponseError       the reply is not valid JSON-RPC (malformed, wrong id, missing result)
 |    +-- JsonRpcError           the node answered with a JSON-RPC error object (code, message, data)
 |         +-- ExecutionReverted eth_call / estimateGas reverted (carries the revert data)
 +-- RelayError                  anything from a bundle relay / block builder
 +-- DecodeError                 malformed input (mempool tx, log, calldata): log and skip
 +-- DevnetError                 the local devnet could not be started, deployed or driven
 +-- LedgerError                 (keeper/ledger/rows.py) the ledger could not store or read something
      +-- LedgerWriteErrors      fire-and-forget writes failed; raised on close
"""

from __future__ import annotations

from typing import Any


class KeeperError(Exception):
    """Base of every error raised on purpose by keeper."""


class ConfigError(KeeperError):
    """Configuration is invalid. `problems` holds one human-readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class RpcError(KeeperError):
    """Base of node communication errors."""


class RpcTransportError(RpcError):
    """The request did not get a usable answer (network, timeout, HTTP status). Transient."""


class RpcResponseError(RpcError):
    """The node's reply is not valid JSON-RPC."""


class JsonRpcError(RpcError):
    """The node returned a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None, method: str = "") -> None:
        self.code = code
        self.message = message
        self.data = data
        self.method = method
        where = f"{method}: " if method else ""
        super().__init__(f"{where}JSON-RPC error {code}: {message}")


class ExecutionReverted(JsonRpcError):
    """A call or gas estimate reverted; `revert_data` is the raw revert payload (may be empty)."""

    @property
    def revert_data(self) -> bytes:
        data = self.data
        if isinstance(data, dict):
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x"):
            try:
                return bytes.fromhex(data[2:])
            except ValueError:
                return b""
        return b""


class RelayError(KeeperError):
    """A bundle relay or builder rejected a request or answered badly."""

    def __init__(self, message: str, *, code: int | None = None, status: int | None = None) -> None:
        self.code = code
        self.status = status
        super().__init__(message)


class DecodeError(KeeperError):
    """Input could not be decoded (mempool tx, log, calldata, relay reply)."""


class DevnetError(KeeperError):
    """The local devnet failed to start, deploy or run a scenario."""
