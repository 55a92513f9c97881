"""Rows a CLI command read at one block, with that block in its JSON output (`keeper positions`,
`keeper pegs`): numbers as decimal strings, lossless in JSON parsers limited to 2^53."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, TypeVar


class JsonRow(Protocol):
    def to_json(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=JsonRow)


class RowsAtBlock(list[R]):
    key: ClassVar[str] = "rows"
    """The JSON key of the rows."""

    def __init__(self, rows: Sequence[R], *, block: int, timestamp: int) -> None:
        super().__init__(rows)
        self.block = block
        self.timestamp = timestamp

    def to_json(self) -> dict[str, Any]:
        return {
            "block": {"number": str(self.block), "timestamp": str(self.timestamp)},
            self.key: [r.to_json() for r in self],
        }
