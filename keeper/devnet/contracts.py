"""Our own compiled contracts for devnet code (contracts/src/*.sol -> keeper/contracts/artifacts/<Name>.json).

The artifacts live in the keeper package (keeper.contracts, shipped in the wheel); this module adapts them
to the devnet's `Artifact` (what `Deployer.deploy` takes) and keeps the source-tree paths the build
script and its test use.
"""

from __future__ import annotations

import functools

from keeper.contracts import ARTIFACTS_DIR, artifact_path, our_artifact_json
from keeper.devnet.anvil import PROJECT_ROOT
from keeper.devnet.artifacts import Artifact, artifact_from_json
from keeper.errors import DevnetError

__all__ = [
    "ARTIFACTS_DIR",
    "BUILD_SCRIPT",
    "CONTRACTS_DIR",
    "artifact_path",
    "deployed_bytecode",
    "our_artifact",
    "our_artifact_json",
]

CONTRACTS_DIR = PROJECT_ROOT / "contracts"
"""The Solidity sources (contracts/src) and the build script."""
BUILD_SCRIPT = CONTRACTS_DIR / "build.mjs"


@functools.cache
def our_artifact(name: str) -> Artifact:
    """Loads keeper/contracts/artifacts/<name>.json, e.g. `our_artifact("PriceFeed")`."""
    return artifact_from_json(name, our_artifact_json(name))


def deployed_bytecode(name: str) -> str:
    """0x-prefixed runtime bytecode (for `anvil_setCode`). Refuses contracts with immutables, whose
    runtime code is only complete after their constructor has run."""
    data = our_artifact_json(name)
    if data.get("immutableReferences"):
        raise DevnetError(f"{name} has immutables: its runtime code cannot be installed with setCode")
    code = data.get("deployedBytecode")
    if not isinstance(code, str) or not code.startswith("0x") or len(code) <= 2:
        raise DevnetError(f"artifact {name} has no deployedBytecode")
    return code
