"""Integration fixtures: the real devnet (anvil + real protocol bytecode + local bundle relay).

The first test that needs the devnet deploys everything from scratch once per session (and refreshes
the state cache); every devnet started afterwards loads that cached state in a fraction of a second.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from keeper.devnet.cache import CachedState
from keeper.devnet.stack import Devnet, DevnetMiner, ensure_state


@pytest.fixture(scope="session")
async def devnet_state() -> CachedState:
    cache, deployment, cold = await ensure_state(fresh=True)
    assert cold is not None
    assert deployment.tx_count > 100
    print(f"\ncold devnet deploy: {cold:.2f} s, {deployment.tx_count} transactions")
    return cache


@pytest.fixture(scope="module")
async def devnet(devnet_state: CachedState) -> AsyncIterator[Devnet]:
    """A devnet for one test module: blocks on demand (`await devnet.mine()`), relay on."""
    async with Devnet(block_time=None) as net:
        yield net


@pytest.fixture
def miner(devnet: Devnet) -> DevnetMiner:
    return DevnetMiner(devnet)
