"""contracts/artifacts are exactly what `node contracts/build.mjs` produces from contracts/src."""

import subprocess
from pathlib import Path

import orjson
import pytest

from keeper.devnet.contracts import ARTIFACTS_DIR, BUILD_SCRIPT, CONTRACTS_DIR, our_artifact

# Node is part of the project's set-up (`make` runs `npm ci`): without it this test must fail, not skip.
pytestmark = pytest.mark.integration


def test_recompile_is_byte_identical(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    proc = subprocess.run(
        ["node", str(BUILD_SCRIPT), "--out", str(out)], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    built = sorted(p.name for p in out.glob("*.json"))
    committed = sorted(p.name for p in ARTIFACTS_DIR.glob("*.json"))
    assert (
        built
        == committed
        == [
            "LiquidStakingToken.json",
            "LiquidationExecutor.json",
            "Multicall3.json",
            "PriceFeed.json",
        ]
    )
    for name in built:
        assert (out / name).read_bytes() == (ARTIFACTS_DIR / name).read_bytes(), f"{name} is stale"


def test_artifacts_match_sources_and_settings() -> None:
    for path in sorted(ARTIFACTS_DIR.glob("*.json")):
        data = orjson.loads(path.read_bytes())
        assert data["contractName"] == path.stem
        assert data["solcVersion"].startswith("0.8.37+")
        assert data["settings"]["evmVersion"] == "cancun"
        assert data["settings"]["optimizer"] == {"enabled": True, "runs": 200}
        assert (CONTRACTS_DIR / data["sourceName"]).is_file()
        for field in ("bytecode", "deployedBytecode"):
            code = data[field]
            assert code.startswith("0x")
            assert len(code) > 2
            bytes.fromhex(code[2:])  # valid hex, fully linked
        assert our_artifact(path.stem).abi == data["abi"]
    # Multicall3 is installed with anvil_setCode: its runtime code must be complete on its own.
    multicall = orjson.loads((ARTIFACTS_DIR / "Multicall3.json").read_bytes())
    assert multicall["immutableReferences"] == {}


def test_check_mode_passes() -> None:
    proc = subprocess.run(["node", str(BUILD_SCRIPT), "--check"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
