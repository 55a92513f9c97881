"""The deployed devnet state, cached on disk and keyed by a hash of everything that shapes it.

A cold deploy (tokens, feeds, Aave V3/V2, Uniswap V2/V3, ...) takes seconds; a cached start is anvil
`--load-state` of the dumped state (~0.1 s). The key hashes the deploy code, our compiled contract
artifacts, the npm lock file (protocol bytecode versions) and the anvil binary's version, so any change
to what would be deployed invalidates the cache.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from keeper.devnet.anvil import PROJECT_ROOT, find_anvil

CACHE_DIR = PROJECT_ROOT / ".cache" / "devnet"
DEPLOY_SOURCES = (
    "keeper/devnet/deploy.py",
    "keeper/devnet/tokens.py",
    "keeper/devnet/aave_v3.py",
    "keeper/devnet/aave_v2.py",
    "keeper/devnet/aave_params.py",
    "keeper/devnet/uniswap.py",
    "keeper/devnet/uniswap_v2.py",
    "keeper/devnet/uniswap_v3.py",
    "keeper/devnet/balancer.py",
    "keeper/devnet/arbitrageur.py",
    "keeper/devnet/stack.py",
    "keeper/devnet/model.py",
    "keeper/devnet/deployer.py",
    "keeper/devnet/artifacts.py",
    "keeper/devnet/contracts.py",
    "keeper/executors/executor_contract.py",
    "package-lock.json",
)


def anvil_version() -> str:
    out = subprocess.run([find_anvil(), "--version"], capture_output=True, check=False, timeout=30)
    return out.stdout.decode(errors="replace").splitlines()[0] if out.stdout else "unknown"


def deploy_inputs_hash(root: Path = PROJECT_ROOT) -> str:
    h = hashlib.sha256()
    for rel in DEPLOY_SOURCES:
        path = root / rel
        h.update(rel.encode())
        h.update(path.read_bytes() if path.is_file() else b"<absent>")
    artifacts = root / "keeper" / "contracts" / "artifacts"
    if artifacts.is_dir():
        for path in sorted(artifacts.glob("*.json")):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    h.update(anvil_version().encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class CachedState:
    key: str
    state_file: Path
    deployments_file: Path

    @property
    def complete(self) -> bool:
        return self.state_file.is_file() and self.deployments_file.is_file()


def cached_state(key: str | None = None, cache_dir: Path = CACHE_DIR) -> CachedState:
    key = key or deploy_inputs_hash()
    return CachedState(
        key=key,
        state_file=cache_dir / f"state-{key}.json",
        deployments_file=cache_dir / f"deployments-{key}.json",
    )
