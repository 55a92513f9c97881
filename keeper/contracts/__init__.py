"""Our compiled contracts, shipped inside the package (keeper/contracts/artifacts/<Name>.json).

`node contracts/build.mjs` (pinned solc-js, fixed settings) compiles contracts/src/*.sol and writes them
here; tests/integration/test_contracts_build.py recompiles and compares them byte for byte, and checks
that a built wheel contains them. Runtime code (e.g. `keeper contracts deploy`) loads them from here, so
an installed keeper needs neither the source tree nor node; devnet code re-exports this module through
keeper.devnet.contracts.

Each artifact records the EVM version it was built for (`evmVersion`): LiquidationExecutor is the Cancun
build (transient storage, EIP-1153), LiquidationExecutorLegacy the same source built for chains without it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from keeper.errors import KeeperError

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"


class ArtifactError(KeeperError):
    """An artifact is missing or malformed."""


@dataclass(frozen=True, slots=True)
class OurArtifact:
    """One compiled contract: what a deployment needs."""

    name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: bytes
    """Creation code (constructor arguments are appended to it)."""
    evm_version: str

    def __repr__(self) -> str:
        return f"OurArtifact({self.name!r}, evm_version={self.evm_version!r}, {len(self.bytecode)} bytes)"


def artifact_path(name: str, directory: Path = ARTIFACTS_DIR) -> Path:
    return directory / f"{name}.json"


def artifact_names(directory: Path = ARTIFACTS_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.json"))


@functools.cache
def our_artifact_json(name: str) -> dict[str, Any]:
    """The raw artifact: contractName, abi, bytecode, deployedBytecode, evmVersion, solcVersion, ..."""
    path = artifact_path(name)
    if not path.is_file():
        raise ArtifactError(f"artifact not found: {path} (run `node contracts/build.mjs`)")
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise ArtifactError(f"artifact {path} is not a JSON object")
    return data


@functools.cache
def our_artifact(name: str) -> OurArtifact:
    """Loads keeper/contracts/artifacts/<name>.json, e.g. `our_artifact("LiquidationExecutor")`."""
    data = our_artifact_json(name)
    code = data.get("bytecode")
    evm_version = data.get("evmVersion")
    if not isinstance(code, str) or not code.startswith("0x") or len(code) <= 2:
        raise ArtifactError(f"artifact {name} has no bytecode")
    if not isinstance(evm_version, str):
        raise ArtifactError(f"artifact {name} does not record its evmVersion")
    try:
        bytecode = bytes.fromhex(code[2:])
    except ValueError:
        raise ArtifactError(f"artifact {name}: bytecode is not hex (unlinked library?)") from None
    return OurArtifact(str(data.get("contractName", name)), tuple(data.get("abi", [])), bytecode, evm_version)
