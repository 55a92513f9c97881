"""The liquidation keeper's wiring refuses, before anything runs, what would make every call revert."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeper.devnet.stack import Devnet
from keeper.errors import ConfigError
from tests.integration.keeper_harness import devnet_keeper

pytestmark = pytest.mark.integration


async def test_a_builder_share_above_the_executors_bound_is_a_config_error(
    devnet: Devnet, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        async with devnet_keeper(devnet, tmp_path, builder_share_bps=9_800):
            pass
    (line,) = info.value.problems
    assert line.startswith("KEEPER_BUILDER_SHARE_BPS: 9800 is above the executor's maxCoinbaseBps (9500")


async def test_a_sender_that_is_not_an_operator_is_a_config_error(devnet: Devnet, tmp_path: Path) -> None:
    stranger = "0x" + "5a" * 32
    with pytest.raises(ConfigError) as info:
        async with devnet_keeper(devnet, tmp_path, operator_keys=stranger):
            pass
    (line,) = info.value.problems
    assert line.startswith("KEEPER_OPERATOR_KEYS item 1: account 0x")
    assert "may not call the executor" in line
    assert stranger[2:] not in line


async def test_mevshare_builders_must_be_among_the_relays(devnet: Devnet, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        async with devnet_keeper(devnet, tmp_path, mevshare_builders="nobody"):
            pass
    (line,) = info.value.problems
    assert line.startswith("KEEPER_MEVSHARE_BUILDERS: nobody not among the builders of KEEPER_RELAY_URLS")
