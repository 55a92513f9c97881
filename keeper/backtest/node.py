"""The replay node: a private anvil on 127.0.0.1, loaded from a recording's state or forked from an archive
node at the block before the replay, mining only when the replay says so (`--no-mining`, FIFO order so
a block's transactions keep the order they are sent in).

The binary is found as the devnet finds it: `KEEPER_ANVIL_BIN`, the project's pinned npm package, then
`anvil` on PATH (this module does not import `keeper.devnet`: backtests are runtime code).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from keeper.chain.node_ready import wait_until_answering
from keeper.errors import KeeperError

NPM_ANVIL = (
    Path(__file__).resolve().parents[2]
    / "node_modules"
    / "@foundry-rs"
    / "anvil-linux-amd64"
    / "bin"
    / "anvil"
)


class NodeError(KeeperError):
    """The replay node could not start."""


def find_anvil() -> str:
    env = os.environ.get("KEEPER_ANVIL_BIN")
    if env:
        if not Path(env).is_file():
            raise NodeError(f"KEEPER_ANVIL_BIN points to {env}, which does not exist")
        return env
    if NPM_ANVIL.is_file():
        return str(NPM_ANVIL)
    found = shutil.which("anvil")
    if found:
        return found
    raise NodeError(
        "anvil not found: run `npm ci` in the project root, put anvil on PATH, or set KEEPER_ANVIL_BIN"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ReplayNode:
    """`async with ReplayNode(args) as node:`; `args` are the source's anvil arguments (state or fork)."""

    def __init__(self, args: list[str], *, chain_id: int | None = None, gas_limit: int | None = None) -> None:
        self.args = list(args)
        self.chain_id = chain_id
        self.gas_limit = gas_limit
        self.port = _free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [find_anvil(), "--host", "127.0.0.1", "--port", str(self.port), "--silent", "--no-mining"]
        cmd += ["--order", "fifo", "--accounts", "10"]
        if self.chain_id is not None:
            cmd += ["--chain-id", str(self.chain_id)]
        if self.gas_limit is not None:
            cmd += ["--gas-limit", str(self.gas_limit)]
        return cmd + self.args

    async def start(self, timeout: float = 60.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        proc = self.proc
        try:
            answering = await wait_until_answering(
                self.http_url, timeout, lambda: proc.returncode is not None
            )
        except TimeoutError:
            await self.stop()
            raise NodeError(f"anvil did not answer on {self.http_url} within {timeout:g} s") from None
        if not answering:
            err = await proc.stderr.read() if proc.stderr is not None else b""
            raise NodeError(f"anvil exited with {proc.returncode}: {err.decode(errors='replace')[-300:]}")

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            with contextlib.suppress(Exception):
                await proc.wait()

    async def __aenter__(self) -> ReplayNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
