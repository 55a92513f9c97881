"""Wait for a freshly started node to answer JSON-RPC (shared by the devnet's and the backtest's anvil)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

_PROBE = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'


async def wait_until_answering(url: str, timeout: float, exited: Callable[[], bool]) -> bool:
    """Polls `url` with eth_chainId until it answers HTTP 200 (True), the process `exited()` (False), or
    `timeout` seconds pass (TimeoutError). The caller reports its own error with the process's output."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if exited():
                return False
            try:
                async with session.post(
                    url,
                    data=_PROBE,
                    headers={"Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=1),
                ) as resp:
                    if resp.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            if loop.time() > deadline:
                raise TimeoutError(url)
            await asyncio.sleep(0.02)
