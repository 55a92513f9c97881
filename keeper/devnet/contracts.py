"""Our own compiled contracts (contracts/src/*.sol -> contracts/artifacts/<Name>.json).

The artifacts are produced by `node contracts/build.mjs` (pinned solc-js, fixed settings) and checked in;
`tests/integration/test_contracts_build.py` recompiles and compares them byte for byte.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import orjson

from keeper.devnet.anvil import PROJECT_ROOT
from keeper.devnet.artifacts import Artifact, artifact_from_json
from keeper.errors import DevnetError

CONTRACTS_DIR = PROJECT_ROOT / "contracts"
ARTIFACTS_DIR = CONTRACTS_DIR / "artifacts"
BUILD_SCRIPT = CONTRACTS_DIR / "build.mjs"


def artifact_path(name: str, directory: Path = ARTIFACTS_DIR) -> Path:
    return directory / f"{name}.json"


@functools.cache
def our_artifact_json(name: str) -> dict[str, Any]:
    """The raw artifact: contractName, abi, bytecode, deployedBytecode, solcVersion, settingsHash, ..."""
    path = artifact_path(name)
    if not path.is_file():
        raise DevnetError(f"artifact not found: {path} (run `node contracts/build.mjs`)")
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise DevnetError(f"artifact {path} is not a JSON object")
    return data


@functools.cache
def our_artifact(name: str) -> Artifact:
    """Loads contracts/artifacts/<name>.json, e.g. `our_artifact("PriceFeed")`."""
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
