"""keeper/contracts/artifacts are exactly what `node contracts/build.mjs` produces from contracts/src, record
their EVM version, and ship inside the wheel."""

import subprocess
import sys
import zipfile
from pathlib import Path

import orjson
import pytest

from keeper.contracts import ARTIFACTS_DIR, artifact_names
from keeper.contracts import our_artifact as packaged_artifact
from keeper.devnet.anvil import PROJECT_ROOT
from keeper.devnet.contracts import BUILD_SCRIPT, CONTRACTS_DIR, our_artifact

# Node is part of the project's set-up (`make` runs `npm ci`): without it this test must fail, not skip.
pytestmark = pytest.mark.integration

EXPECTED = [
    "LiquidStakingToken.json",
    "LiquidationExecutor.json",
    "LiquidationExecutorLegacy.json",
    "Multicall3.json",
    "PriceFeed.json",
]


def opcodes(code: bytes) -> set[int]:
    """Every opcode in runtime `code` (PUSH data skipped), without solc's CBOR metadata trailer (whose
    last two bytes give its length)."""
    code = code[: -2 - int.from_bytes(code[-2:], "big")]
    out: set[int] = set()
    i = 0
    while i < len(code):
        op = code[i]
        out.add(op)
        i += 1 + (op - 0x5F if 0x60 <= op <= 0x7F else 0)
    return out


def strip_internal_types(value: object) -> object:
    """An ABI without solc's `internalType` (it names the contract, which differs between the builds)."""
    if isinstance(value, list):
        return [strip_internal_types(v) for v in value]
    if isinstance(value, dict):
        return {k: strip_internal_types(v) for k, v in value.items() if k != "internalType"}
    return value


def test_recompile_is_byte_identical(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    proc = subprocess.run(
        ["node", str(BUILD_SCRIPT), "--out", str(out)], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    built = sorted(p.name for p in out.glob("*.json"))
    committed = sorted(p.name for p in ARTIFACTS_DIR.glob("*.json"))
    assert built == committed == EXPECTED
    for name in built:
        assert (out / name).read_bytes() == (ARTIFACTS_DIR / name).read_bytes(), f"{name} is stale"
    # The old location is gone: nothing can load a stale copy from there.
    assert not (CONTRACTS_DIR / "artifacts").exists()


def test_artifacts_match_sources_and_settings() -> None:
    for path in sorted(ARTIFACTS_DIR.glob("*.json")):
        data = orjson.loads(path.read_bytes())
        assert data["contractName"] == path.stem
        assert data["solcVersion"].startswith("0.8.37+")
        expected_evm = "paris" if path.stem == "LiquidationExecutorLegacy" else "cancun"
        assert data["evmVersion"] == data["settings"]["evmVersion"] == expected_evm
        assert data["settings"]["optimizer"] == {"enabled": True, "runs": 200}
        assert (CONTRACTS_DIR / data["sourceName"]).is_file()
        for field in ("bytecode", "deployedBytecode"):
            code = data[field]
            assert code.startswith("0x")
            assert len(code) > 2
            bytes.fromhex(code[2:])  # valid hex, fully linked
        assert our_artifact(path.stem).abi == data["abi"]
        assert list(packaged_artifact(path.stem).abi) == data["abi"]
        assert packaged_artifact(path.stem).evm_version == expected_evm
    # Multicall3 is installed with anvil_setCode: its runtime code must be complete on its own.
    multicall = orjson.loads((ARTIFACTS_DIR / "Multicall3.json").read_bytes())
    assert multicall["immutableReferences"] == {}


def test_legacy_executor_is_the_same_contract_without_transient_storage() -> None:
    cancun = orjson.loads((ARTIFACTS_DIR / "LiquidationExecutor.json").read_bytes())
    legacy = orjson.loads((ARTIFACTS_DIR / "LiquidationExecutorLegacy.json").read_bytes())
    assert legacy["sourceName"] == cancun["sourceName"] == "src/LiquidationExecutor.sol"
    assert legacy["sourceSha256"] == cancun["sourceSha256"]
    assert strip_internal_types(legacy["abi"]) == strip_internal_types(cancun["abi"])
    tload, tstore, push0 = 0x5C, 0x5D, 0x5F
    cancun_ops = opcodes(bytes.fromhex(cancun["deployedBytecode"][2:]))
    legacy_ops = opcodes(bytes.fromhex(legacy["deployedBytecode"][2:]))
    assert {tload, tstore} <= cancun_ops
    assert not ({tload, tstore, push0} & legacy_ops)


def test_check_mode_passes() -> None:
    proc = subprocess.run(["node", str(BUILD_SCRIPT), "--check"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr


def test_wheel_ships_the_artifacts(tmp_path: Path) -> None:
    """A wheel built from the source tree (hatchling, offline) contains every artifact, byte for byte."""
    script = (
        "import sys, hatchling.builders.wheel as w;"
        "b = w.WheelBuilder(sys.argv[1]);"
        "print(next(b.build(directory=sys.argv[2], versions=['standard'])))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(PROJECT_ROOT), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    wheel = Path(proc.stdout.strip().splitlines()[-1])
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name in artifact_names():
            member = f"keeper/contracts/artifacts/{name}.json"
            assert member in names, f"{member} missing from {wheel.name}"
            assert zf.read(member) == (ARTIFACTS_DIR / f"{name}.json").read_bytes()
        assert "keeper/contracts/__init__.py" in names


def test_runtime_loads_artifacts_without_the_devnet() -> None:
    """The executor's Python side and `keeper contracts deploy` import neither keeper.devnet nor
    strategies/ (an installed keeper has the artifacts in the package)."""
    script = (
        "import sys, keeper.contracts_cli, keeper.executors.executor_contract as x;"
        "x.our_artifact(x.CONTRACT_NAME); x.our_artifact(x.LEGACY_CONTRACT_NAME);"
        "print(sorted(m for m in sys.modules if m.startswith(('keeper.devnet', 'strategies'))))"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
