"""Recordings: a chain's starting state and the blocks that followed, replayable on a fresh anvil.

The file is one gzip stream of newline-separated JSON objects (amounts as 0x-quantities, as the node
gave them):

    {"format": "keeper-recording", "version": 1, "chain_id": ..., "gas_limit": ..., "start_block": A-1,
     "deployment": {...} | null, "meta": {...}}
    {"state": <anvil_dumpState's JSON: the state after block A-1>}
    {"block": <ReplayBlock.to_json()>}          one line per block A, A+1, ...
    {"end": {"blocks": n}}

A file that stops before its `end` line (a crash while recording, a partial copy) is refused as
truncated; another `format` or `version` is refused by name. `keeper devnet record` writes them
(`keeper.devnet.recorder`), `keeper backtest --recording FILE` replays them.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from keeper.chain.rpc import hex_to_int
from keeper.errors import KeeperError

FORMAT = "keeper-recording"
VERSION = 1


class RecordingError(KeeperError):
    """A recording that cannot be used (missing, truncated, another format or version): one line."""


@dataclass(frozen=True, slots=True)
class ReplayTx:
    """One transaction of a block: its signed bytes (None for a sender anvil impersonated, which has no
    real signature) and the node's JSON object for it (from, to, input, nonce, fees, hash)."""

    raw: bytes | None
    obj: Mapping[str, Any]

    @property
    def hash(self) -> str:
        return str(self.obj["hash"]).lower()

    @property
    def sender(self) -> str:
        return str(self.obj["from"]).lower()

    def to_json(self) -> dict[str, Any]:
        return {"raw": None if self.raw is None else "0x" + self.raw.hex(), "tx": dict(self.obj)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReplayTx:
        raw = data.get("raw")
        return cls(None if raw is None else bytes.fromhex(str(raw)[2:]), dict(data["tx"]))


@dataclass(frozen=True, slots=True)
class ReplayBlock:
    """A block to replay: its header fields and its transactions in order."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int
    base_fee: int
    gas_limit: int
    gas_used: int
    coinbase: str
    txs: tuple[ReplayTx, ...] = field(default_factory=tuple)
    withdrawals: tuple[tuple[str, int], ...] = ()
    """Beacon-chain withdrawals credited at the end of the block: (address, amount in wei)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "hash": self.hash,
            "parent_hash": self.parent_hash,
            "timestamp": self.timestamp,
            "base_fee": hex(self.base_fee),
            "gas_limit": self.gas_limit,
            "gas_used": self.gas_used,
            "coinbase": self.coinbase,
            "txs": [t.to_json() for t in self.txs],
            "withdrawals": [[a, str(w)] for a, w in self.withdrawals],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReplayBlock:
        return cls(
            number=int(data["number"]),
            hash=str(data["hash"]),
            parent_hash=str(data["parent_hash"]),
            timestamp=int(data["timestamp"]),
            base_fee=hex_to_int(str(data["base_fee"])),
            gas_limit=int(data["gas_limit"]),
            gas_used=int(data["gas_used"]),
            coinbase=str(data["coinbase"]),
            txs=tuple(ReplayTx.from_json(t) for t in data["txs"]),
            withdrawals=tuple((str(a), int(w)) for a, w in data.get("withdrawals") or ()),
        )

    @classmethod
    def from_node(cls, block: Mapping[str, Any], raws: Sequence[str | None]) -> ReplayBlock:
        """From `eth_getBlockByNumber(n, true)` and each transaction's `eth_getRawTransactionByHash`."""
        txs = block.get("transactions") or []
        return cls(
            number=hex_to_int(block["number"]),
            hash=str(block["hash"]),
            parent_hash=str(block["parentHash"]),
            timestamp=hex_to_int(block["timestamp"]),
            base_fee=hex_to_int(block.get("baseFeePerGas") or "0x0"),
            gas_limit=hex_to_int(block["gasLimit"]),
            gas_used=hex_to_int(block["gasUsed"]),
            coinbase=str(block["miner"]),
            txs=tuple(
                ReplayTx(None if raw is None else bytes.fromhex(raw[2:]), dict(obj))
                for obj, raw in zip(txs, raws, strict=True)
            ),
            withdrawals=tuple(
                (str(w["address"]), hex_to_int(w["amount"]) * 10**9) for w in block.get("withdrawals") or ()
            ),
        )


def is_real_signature(obj: Mapping[str, Any]) -> bool:
    """False for transactions anvil sent for an impersonated account (r = s = 0)."""
    r, s = obj.get("r"), obj.get("s")
    return not (r is not None and s is not None and hex_to_int(str(r)) == 0 and hex_to_int(str(s)) == 0)


BLOB_TX_TYPE = 3


def replays_raw(tx: ReplayTx) -> bool:
    """Whether the signed bytes can be sent as they are. Not for a sender anvil impersonated (no real
    signature), nor for a blob transaction (its raw form lacks the blob sidecar a node needs to accept it:
    it is replayed as its sender's call, impersonated, with the same fields but no blobs)."""
    if tx.raw is None or not is_real_signature(tx.obj):
        return False
    return hex_to_int(str(tx.obj.get("type") or "0x0")) != BLOB_TX_TYPE


@dataclass
class Recording:
    path: Path
    chain_id: int
    gas_limit: int
    start_block: int
    """The block whose state the recording starts from (the first replayed block is start_block + 1)."""
    deployment: Mapping[str, Any] | None
    meta: Mapping[str, Any]
    state: bytes
    """anvil's state JSON (what `--load-state` takes)."""
    blocks: list[ReplayBlock]

    @property
    def first_block(self) -> int:
        return self.start_block + 1

    @property
    def last_block(self) -> int:
        return self.start_block + len(self.blocks)


def read_recording(path: Path) -> Recording:
    """Reads a whole recording; RecordingError (one line) when it is not a usable one."""
    try:
        with gzip.open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except FileNotFoundError:
        raise RecordingError(f"recording {path}: no such file") from None
    except IsADirectoryError:
        raise RecordingError(f"recording {path}: is a directory, not a recording file") from None
    except EOFError:
        raise RecordingError(f"recording {path} is truncated (the file ends mid-stream)") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise RecordingError(
            f"recording {path} is not a keeper recording (not gzip: {exc}); "
            "make one with `keeper devnet record`"
        ) from None
    rows: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise RecordingError(
                f"recording {path} is truncated or damaged (line {i + 1} is not JSON)"
            ) from None
        if not isinstance(row, dict):
            raise RecordingError(f"recording {path}: line {i + 1} is not a JSON object")
        rows.append(row)
    if not rows or rows[0].get("format") != FORMAT:
        raise RecordingError(f"recording {path} is not a keeper recording (no {FORMAT!r} header)")
    header = rows[0]
    version = header.get("version")
    if version != VERSION:
        raise RecordingError(
            f"recording {path} is format version {version}; this keeper reads version {VERSION} "
            "(record it again with this version's `keeper devnet record`)"
        )
    if len(rows) < 2 or "state" not in rows[1]:
        raise RecordingError(f"recording {path} is truncated (no starting state)")
    end = rows[-1].get("end")
    blocks_rows = rows[2:-1] if end is not None else rows[2:]
    try:
        blocks = [ReplayBlock.from_json(r["block"]) for r in blocks_rows]
    except (KeyError, TypeError, ValueError):
        raise RecordingError(f"recording {path} is damaged (a block line lacks fields)") from None
    if not isinstance(end, dict):
        last = blocks[-1].number if blocks else header.get("start_block")
        raise RecordingError(f"recording {path} is truncated (it ends after block {last}, with no end line)")
    if int(end.get("blocks", -1)) != len(blocks):
        raise RecordingError(
            f"recording {path} is damaged: its end line counts {end.get('blocks')} blocks, "
            f"it holds {len(blocks)}"
        )
    start = int(header["start_block"])
    for i, b in enumerate(blocks):
        if b.number != start + 1 + i:
            raise RecordingError(
                f"recording {path} is damaged: block {b.number} where {start + 1 + i} belongs"
            )
    return Recording(
        path=path,
        chain_id=int(header["chain_id"]),
        gas_limit=int(header["gas_limit"]),
        start_block=start,
        deployment=header.get("deployment"),
        meta=dict(header.get("meta") or {}),
        state=orjson.dumps(rows[1]["state"]),
        blocks=blocks,
    )


class RecordingWriter:
    """Writes a recording block by block (`add`), then `close()` writes the end line. A writer that is
    never closed leaves a file `read_recording` refuses as truncated."""

    def __init__(
        self,
        path: Path,
        *,
        chain_id: int,
        gas_limit: int,
        start_block: int,
        state: Mapping[str, Any] | bytes,
        deployment: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = path
        self.blocks = 0
        self._next = start_block + 1
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[bytes] = gzip.open(path, "wb", compresslevel=6)  # type: ignore[assignment]  # noqa: SIM115
        header = {
            "format": FORMAT,
            "version": VERSION,
            "chain_id": chain_id,
            "gas_limit": gas_limit,
            "start_block": start_block,
            "deployment": deployment,
            "meta": dict(meta or {}),
        }
        self._f.write(orjson.dumps(header) + b"\n")
        state_json = state if isinstance(state, bytes) else orjson.dumps(state)
        self._f.write(b'{"state":' + state_json + b"}\n")

    def add(self, block: ReplayBlock) -> None:
        if block.number != self._next:
            raise RecordingError(
                f"recording {self.path}: block {block.number} given where {self._next} belongs"
            )
        self._f.write(orjson.dumps({"block": block.to_json()}) + b"\n")
        self.blocks += 1
        self._next += 1

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.write(orjson.dumps({"end": {"blocks": self.blocks}}) + b"\n")
        self._f.close()

    def abandon(self) -> None:
        """Closes the file without its end line (it then reads as truncated)."""
        if not self._f.closed:
            self._f.close()
