"""Load compiled contract artifacts from npm packages (Hardhat / Waffle JSON) and link libraries.

Library placeholders are `__$` + first 34 hex chars of keccak256("<sourcePath>:<LibName>") + `$__`;
Hardhat's `linkReferences[sourcePath][LibName]` gives their byte offsets. We replace by offset and then
assert no placeholder is left.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from keeper.devnet.anvil import PROJECT_ROOT
from keeper.errors import DevnetError

NODE_MODULES = PROJECT_ROOT / "node_modules"


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    """0x-prefixed creation code, possibly with unlinked library placeholders."""
    link_references: dict[str, dict[str, list[dict[str, int]]]] = field(default_factory=dict)

    def linked(self, libraries: dict[str, str]) -> str:
        """Creation code with every library placeholder replaced; `libraries` maps LibName -> address."""
        code = self.bytecode[2:]
        for _source, libs in self.link_references.items():
            for lib_name, refs in libs.items():
                if lib_name not in libraries:
                    raise DevnetError(f"{self.name} needs library {lib_name}, not given")
                addr = libraries[lib_name].lower().removeprefix("0x")
                if len(addr) != 40:
                    raise DevnetError(f"bad address for library {lib_name}")
                for ref in refs:
                    start = ref["start"] * 2
                    length = ref["length"] * 2
                    code = code[:start] + addr + code[start + length :]
        if "__$" in code:
            raise DevnetError(f"{self.name}: unlinked library placeholder left in bytecode")
        return "0x" + code

    def abi_item(self, name: str, kind: str = "function") -> dict[str, Any]:
        for item in self.abi:
            if item.get("type") == kind and item.get("name") == name:
                return item
        raise DevnetError(f"{self.name} has no {kind} {name}")

    def constructor(self) -> dict[str, Any] | None:
        for item in self.abi:
            if item.get("type") == "constructor":
                return item
        return None


@functools.cache
def load_artifact(relative_path: str) -> Artifact:
    """Loads `node_modules/<relative_path>` (Hardhat artifact or Waffle build JSON)."""
    path = NODE_MODULES / relative_path
    if not path.is_file():
        raise DevnetError(f"artifact not found: {path} (run `npm ci` in the project root)")
    return artifact_from_json(path.stem, orjson.loads(path.read_bytes()))


def load_artifact_file(path: Path) -> Artifact:
    return artifact_from_json(path.stem, orjson.loads(path.read_bytes()))


def artifact_from_json(name: str, data: dict[str, Any]) -> Artifact:
    bytecode = data.get("bytecode")
    if isinstance(bytecode, dict):  # solc standard-json style {"object": ...}
        bytecode = bytecode.get("object")
    if not isinstance(bytecode, str):
        evm = data.get("evm", {})
        bytecode = evm.get("bytecode", {}).get("object")
    if not isinstance(bytecode, str) or not bytecode:
        raise DevnetError(f"artifact {name} has no bytecode")
    if not bytecode.startswith("0x"):
        bytecode = "0x" + bytecode  # Waffle builds (Uniswap V2) have no 0x prefix
    return Artifact(
        name=str(data.get("contractName", name)),
        abi=list(data.get("abi", [])),
        bytecode=bytecode,
        link_references=dict(data.get("linkReferences", {})),
    )
