"""Start and stop a local anvil (Foundry's node) bound to 127.0.0.1.

The binary is found, in order: `KEEPER_ANVIL_BIN`, the pinned npm package in this project's
`node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil`, then `anvil` on PATH.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from keeper.chain.dev_accounts import DEFAULT_MNEMONIC, DEV_ACCOUNTS
from keeper.chain.node_ready import wait_until_answering
from keeper.errors import DevnetError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NPM_ANVIL = PROJECT_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"


def find_anvil() -> str:
    env = os.environ.get("KEEPER_ANVIL_BIN")
    if env:
        if not Path(env).is_file():
            raise DevnetError(f"KEEPER_ANVIL_BIN points to {env}, which does not exist")
        return env
    if NPM_ANVIL.is_file():
        return str(NPM_ANVIL)
    found = shutil.which("anvil")
    if found:
        return found
    raise DevnetError(
        "anvil not found: run `npm ci` in the project root (it installs the pinned "
        "@foundry-rs/anvil-linux-amd64), put anvil on PATH, or set KEEPER_ANVIL_BIN"
    )


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AnvilConfig:
    port: int = 0
    """0 picks a free port."""
    chain_id: int = 31337
    block_time: float | None = None
    """Seconds between blocks; None = automine (a block per transaction)."""
    no_mining: bool = False
    """Neither automine nor interval: blocks only on `evm_mine` (mempool visible)."""
    load_state: Path | None = None
    dump_state: Path | None = None
    accounts: int = 10
    balance_eth: int = 1_000_000
    gas_limit: int = 60_000_000
    code_size_limit: int | None = None
    base_fee: int | None = None
    extra_args: list[str] = field(default_factory=list)


class Anvil:
    """A running anvil process. Use `async with Anvil(cfg) as node:` or start()/stop()."""

    def __init__(self, config: AnvilConfig | None = None) -> None:
        self.config = config or AnvilConfig()
        self.port = self.config.port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        c = self.config
        cmd = [
            find_anvil(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--chain-id",
            str(c.chain_id),
            "--accounts",
            str(c.accounts),
            "--balance",
            str(c.balance_eth),
            "--gas-limit",
            str(c.gas_limit),
            "--silent",
        ]
        if c.block_time is not None:
            cmd += ["--block-time", str(c.block_time)]
        if c.no_mining:
            cmd += ["--no-mining"]
        if c.load_state is not None:
            cmd += ["--load-state", str(c.load_state)]
        if c.dump_state is not None:
            cmd += ["--dump-state", str(c.dump_state)]
        if c.code_size_limit is not None:
            cmd += ["--code-size-limit", str(c.code_size_limit)]
        if c.base_fee is not None:
            cmd += ["--block-base-fee-per-gas", str(c.base_fee)]
        return cmd + c.extra_args

    async def start(self, timeout: float = 15.0) -> None:
        if not port_is_free(self.port):
            raise DevnetError(
                f"port {self.port} on 127.0.0.1 is already in use (another anvil or devnet?): "
                "stop it or choose another port"
            )
        cmd = self.command()
        kwargs: dict[str, object] = {}
        if sys.platform.startswith("linux"):
            kwargs["preexec_fn"] = _die_with_parent
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - a quick fork; we do not wait on it here
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            **kwargs,  # type: ignore[call-overload]
        )
        await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float = 15.0) -> None:
        proc = self.proc
        try:
            answering = await wait_until_answering(
                self.http_url, timeout, lambda: proc is not None and proc.poll() is not None
            )
        except TimeoutError:
            await self.stop()
            raise DevnetError(f"anvil did not answer on {self.http_url} within {timeout}s") from None
        if not answering:
            assert proc is not None
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise DevnetError(f"anvil exited with {proc.returncode}: {err[-500:]}")

    async def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            for _ in range(250):
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.02)
            else:
                proc.kill()
                with contextlib.suppress(Exception):
                    proc.wait(timeout=2)
        if proc.stderr is not None:
            proc.stderr.close()

    async def __aenter__(self) -> Anvil:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM the child when the parent dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)
    except OSError:
        pass


__all__ = [
    "DEFAULT_MNEMONIC",
    "DEV_ACCOUNTS",
    "NPM_ANVIL",
    "PROJECT_ROOT",
    "Anvil",
    "AnvilConfig",
    "find_anvil",
    "free_port",
    "port_is_free",
]
