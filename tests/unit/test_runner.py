"""`keeper run`'s new settings, devnet mode, the registry and the single-tx executor (fakes, no chain)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from eth_abi.abi import encode

from keeper.config import MAINNET_UNISWAP_V3_SWAP_ROUTER, load_settings
from keeper.core.actions import ForeignTx, SubmitBundle, TxIntent
from keeper.devnet.anvil import DEV_ACCOUNTS
from keeper.errors import ConfigError, ExecutionReverted
from keeper.executors.single_tx import SingleTxExecutor
from keeper.runner import plan_run
from keeper.strategies_registry import Components, StrategyContext, build_components, build_strategies
from strategies.liquidations.wiring import liquidation_setup

FUNDS_ADDR, FUNDS_KEY = DEV_ACCOUNTS[2]
OP_KEYS = [k for _, k in DEV_ACCOUNTS[5:7]]
IDENTITY_KEY = DEV_ACCOUNTS[1][1]
BAD_KEY = "0x" + "ab12" * 15 + "cd9"  # 63 hex digits: must never be echoed
RPC = "http://127.0.0.1:8545"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("KEEPER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KEEPER_RPC_HTTP_URL", RPC)


def problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    return info.value.problems


# ---- settings ------------------------------------------------------------------------------------------


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(None)
    assert s.builder_share_bps == 9_000
    assert s.operator_keys == []
    assert s.executor_address is None
    assert s.weth_address == "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
    assert s.router_v3 == "0xE592427A0AEce92De3Edee1F18E0157C05861564" == MAINNET_UNISWAP_V3_SWAP_ROUTER
    assert s.flash_pool == "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2"
    assert s.router_v2 == "0x7a250d5630B4cF539739dF2C5dAcb4c659F2488D"
    assert s.devnet is False


def test_operator_keys_parsed_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_PRIVATE_KEY", FUNDS_KEY)
    monkeypatch.setenv("KEEPER_OPERATOR_KEYS", f" {OP_KEYS[0][2:].upper()} , {OP_KEYS[1]} ")
    s = load_settings(None)
    assert [k.get_secret_value() for k in s.operator_keys] == OP_KEYS
    for key in OP_KEYS:
        assert key[2:] not in repr(s)
        assert key in s.secrets()


def test_bad_operator_key_is_one_line_without_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    (line,) = problems(monkeypatch, KEEPER_OPERATOR_KEYS=f"{OP_KEYS[0]},{BAD_KEY}")
    assert line.startswith("KEEPER_OPERATOR_KEYS: item 2: not a private key")
    assert BAD_KEY[2:20] not in line
    assert OP_KEYS[0][2:20] not in line


@pytest.mark.parametrize(
    ("env", "expect"),
    [
        ({"KEEPER_PRIVATE_KEY": FUNDS_KEY, "KEEPER_OPERATOR_KEYS": FUNDS_KEY}, "item 1: is the funds key"),
        (
            {"KEEPER_FLASHBOTS_SIGNER_KEY": IDENTITY_KEY, "KEEPER_OPERATOR_KEYS": IDENTITY_KEY},
            "item 1: is the relay identity",
        ),
        ({"KEEPER_OPERATOR_KEYS": f"{OP_KEYS[0]},{OP_KEYS[0]}"}, "item 2: listed twice"),
    ],
)
def test_operator_key_conflicts(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expect: str) -> None:
    (line,) = problems(monkeypatch, **env)
    assert line.startswith(f"KEEPER_OPERATOR_KEYS: {expect}")
    for key in (FUNDS_KEY, IDENTITY_KEY, *OP_KEYS):
        assert key[2:] not in line


@pytest.mark.parametrize("value", ["10000", "-1", "90%"])
def test_builder_share_out_of_range(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    (line,) = problems(monkeypatch, KEEPER_BUILDER_SHARE_BPS=value)
    assert line.startswith("KEEPER_BUILDER_SHARE_BPS: must be")
    assert "e.g. KEEPER_BUILDER_SHARE_BPS=9000" in line


def test_addresses_checked_and_checksummed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_V3_POOLS", "0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640")
    monkeypatch.setenv("KEEPER_EXECUTOR_ADDRESS", "0x88E6A0C2DDD26FEEB64F039A2C41296FCB3F5640")
    s = load_settings(None)
    assert s.v3_pools == ["0x88e6A0c2dDD26FEEb64F039a2c41296FcB3f5640"]
    assert s.executor_address == "0x88e6A0c2dDD26FEEb64F039a2c41296FcB3f5640"
    lines = problems(
        monkeypatch,
        KEEPER_ROUTER_V3="0xE592427A0AEce92De3Edu1F18E0157C05861564",  # a typo: not hex
        KEEPER_WETH_ADDRESS="0xc02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",  # wrong checksum
        KEEPER_V2_PAIRS="0xB4e16d0168e52d35CaCD2c6185b44281Ec28C9Dc,0xnope",
    )
    assert len(lines) == 3
    assert any(li.startswith("KEEPER_ROUTER_V3: not an address") for li in lines)
    assert any(li.startswith("KEEPER_WETH_ADDRESS: bad checksum") for li in lines)
    assert any(li.startswith("KEEPER_V2_PAIRS: item 2: not an address") for li in lines)


def _devnet_file(tmp_path: Path) -> Path:
    deployment = {
        "chain_id": 31337,
        "tokens": {
            "WETH": {"address": "0x5FbDB2315678afecb367f032d93F642f64180aa3"},
            "USDC": {"address": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"},
        },
        "aave_v3": {"pool": "0xf3eE3C4Ec25e8414838567818A30C90c7d62f834", "oracle": "0x" + "11" * 20},
        "aave_v2": {"lending_pool": "0x" + "22" * 20, "oracle": "0x" + "33" * 20},
        "uniswap_v3": {"pools": {"WETH/USDC/500": "0x" + "44" * 20}, "swap_router": "0x" + "55" * 20},
        "uniswap_v2": {"pairs": {"WETH/USDC": "0x" + "66" * 20}, "router": "0x" + "77" * 20},
        "executor": "0x" + "88" * 20,
        "accounts": {"keeper": FUNDS_ADDR, "operators": ",".join(a for a, _ in DEV_ACCOUNTS[5:10])},
    }
    path = tmp_path / "devnet.json"
    path.write_bytes(orjson.dumps({"relay_url": "http://127.0.0.1:9999", "deployment": deployment}))
    return path


def test_devnet_mode_takes_everything_from_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KEEPER_DEVNET", "true")
    monkeypatch.setenv("KEEPER_DEVNET_FILE", str(_devnet_file(tmp_path)))
    monkeypatch.setenv("KEEPER_PRIVATE_KEY", FUNDS_KEY)
    monkeypatch.setenv("KEEPER_RELAY_URLS", "https://relay.example.com")
    monkeypatch.setenv("KEEPER_EXECUTOR_ADDRESS", "0x" + "99" * 20)  # ignored in devnet mode
    s = load_settings(None)
    plan = plan_run(s)
    # The relays listed are honoured; the devnet's relay comes after them.
    assert plan.relay_urls == ["https://relay.example.com", "devnet=http://127.0.0.1:9999"]
    # The funds key first, then the devnet's operators (dev accounts 5-9).
    assert [x.address for x in plan.signers] == [FUNDS_ADDR, *(a for a, _ in DEV_ACCOUNTS[5:10])]
    assert plan.devnet is not None
    setup = liquidation_setup(s, plan.devnet.deployment)
    assert setup.executor == "0x" + "88" * 20
    assert setup.flash_pool == "0xf3eE3C4Ec25e8414838567818A30C90c7d62f834"
    assert setup.weth == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert [m.name for m in setup.markets] == ["aave-v3", "aave-v2"]
    assert setup.v3_pools == ["0x" + "44" * 20]
    assert setup.v2_pairs == ["0x" + "66" * 20]


def test_devnet_mode_with_explicit_operator_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KEEPER_DEVNET", "true")
    monkeypatch.setenv("KEEPER_DEVNET_FILE", str(_devnet_file(tmp_path)))
    monkeypatch.setenv("KEEPER_PRIVATE_KEY", FUNDS_KEY)
    monkeypatch.setenv("KEEPER_OPERATOR_KEYS", OP_KEYS[0])
    plan = plan_run(load_settings(None))
    assert [x.address for x in plan.signers] == [FUNDS_ADDR, DEV_ACCOUNTS[5][0]]
    assert plan.relay_urls == ["devnet=http://127.0.0.1:9999"]


def test_devnet_relay_listed_explicitly_is_not_added_twice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KEEPER_DEVNET", "true")
    monkeypatch.setenv("KEEPER_DEVNET_FILE", str(_devnet_file(tmp_path)))
    monkeypatch.setenv("KEEPER_PRIVATE_KEY", FUNDS_KEY)
    monkeypatch.setenv("KEEPER_RELAY_URLS", "local=http://127.0.0.1:9999,titan=https://rpc.titanbuilder.xyz")
    plan = plan_run(load_settings(None))
    assert plan.relay_urls == ["local=http://127.0.0.1:9999", "titan=https://rpc.titanbuilder.xyz"]


def test_devnet_mode_without_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (line,) = problems(monkeypatch, KEEPER_DEVNET="true", KEEPER_DEVNET_FILE=str(tmp_path / "missing.json"))
    assert line.startswith("KEEPER_DEVNET_FILE: file not found:")
    assert "keeper devnet up" in line


def test_mainnet_liquidations_need_markets_venues_and_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(None)
    with pytest.raises(ConfigError) as info:
        liquidation_setup(s, None)
    lines = info.value.problems
    assert [li.split(":")[0] for li in lines] == [
        "KEEPER_MARKETS",
        "KEEPER_V3_POOLS / KEEPER_V2_PAIRS",
        "KEEPER_EXECUTOR_ADDRESS",
    ]
    assert "keeper contracts deploy" in lines[2]
    monkeypatch.setenv("KEEPER_MARKETS", "aave-v3-ethereum")
    monkeypatch.setenv("KEEPER_V3_POOLS", "0x88e6A0c2dDD26FEEb64F039a2c41296FcB3f5640")
    monkeypatch.setenv("KEEPER_EXECUTOR_ADDRESS", "0x" + "88" * 20)
    setup = liquidation_setup(load_settings(None), None)
    assert setup.connectors == [setup.weth]
    assert setup.flash_pool == "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2"


# ---- registry ------------------------------------------------------------------------------------------


async def test_registry_builds_noop_and_refuses_liquidations_outside_run() -> None:
    s = load_settings(None)
    ctx = StrategyContext(settings=s, rpc=None)  # type: ignore[arg-type]
    comps = await build_components(["noop"], ctx)
    assert isinstance(comps, Components)
    assert [x.name for x in comps.strategies] == ["noop"]
    assert comps.executors == []
    assert [x.name for x in build_strategies(["noop"], ctx)] == ["noop"]
    with pytest.raises(ConfigError, match="needs `keeper run`"):
        build_strategies(["liquidations"], ctx)
    with pytest.raises(ConfigError, match="runs only under `keeper run`"):
        await build_components(["liquidations"], ctx)


# ---- single-tx executor ---------------------------------------------------------------------------------


@dataclass
class FakeTracked:
    nonce: int
    hash: str

    @property
    def current(self) -> FakeTracked:
        return self


@dataclass
class FakeSender:
    address: str = FUNDS_ADDR
    next_base_fee: int = 10 * 10**9
    priority_fee: int = 10**9
    head: int = 100
    gas: int = 500_000
    sent: list[tuple[TxIntent, int]] = field(default_factory=list)

    async def estimate_gas(self, intent: TxIntent) -> int:
        return self.gas

    async def send(self, intent: TxIntent, *, max_fee_cap: int) -> FakeTracked:
        self.sent.append((intent, max_fee_cap))
        return FakeTracked(len(self.sent) - 1, "0x" + "ab" * 32)


class FakeRpc:
    def __init__(self, profit: int, paid: int, revert: bytes | None = None) -> None:
        self.profit, self.paid, self.revert = profit, paid, revert

    async def call(self, method: str, params: Any = None) -> Any:
        assert method == "eth_call"
        if self.revert is not None:
            raise ExecutionReverted(3, "execution reverted", "0x" + self.revert.hex(), method)
        return "0x" + encode(["uint256", "uint256"], [self.profit, self.paid]).hex()


def _action(
    opp: str = "opp-1", *, to_wei: tuple[int, int] = (1, 1), min_profit: int | None = None
) -> SubmitBundle:
    return SubmitBundle(
        opportunity_id=opp,
        strategy="liquidations",
        target_block=101,
        txs=(TxIntent(to="0x" + "88" * 20, data=b"\x01\x02"),),
        expected_profit_wei=10**18,
        min_profit_wei=min_profit,
        profit_token="0x" + "99" * 20,
        profit_to_wei=to_wei,
    )


def _executor(rpc: FakeRpc, sender: FakeSender, **kw: Any) -> SingleTxExecutor:
    return SingleTxExecutor(rpc, [sender], min_profit_wei=kw.pop("min_profit_wei", 0), **kw)  # type: ignore[arg-type, list-item]


async def test_single_tx_sends_with_a_cap_that_keeps_the_minimum() -> None:
    sender = FakeSender()
    # 2000 profit-token units at 10**15 wei each = 2 ETH; gas 500k at 11 gwei = 0.0055 ETH.
    ex = _executor(FakeRpc(profit=2_000, paid=123), sender, min_profit_wei=10**17)
    await ex.execute(_action(to_wei=(10**15, 1)))
    assert ex.stats.sent == 1
    ((intent, cap),) = sender.sent
    assert intent.gas_limit == 500_000
    assert cap == (2 * 10**18 - 10**17) // 500_000
    assert "opp-1" in ex.in_flight
    await ex.execute(_action(to_wei=(10**15, 1)))  # already in flight: not sent twice
    assert len(sender.sent) == 1
    assert ex.stats.skipped == 1


async def test_single_tx_below_minimum_and_dry_run_send_nothing() -> None:
    sender = FakeSender()
    ex = _executor(FakeRpc(profit=10**15, paid=0), sender, min_profit_wei=10**16)
    await ex.execute(_action())
    assert ex.stats.below_minimum == 1
    ex = _executor(FakeRpc(profit=10**18, paid=0), sender, dry_run=True)
    await ex.execute(_action())
    assert ex.stats.simulated == 1
    assert sender.sent == []


async def test_single_tx_revert_and_foreign_txs_are_not_sent() -> None:
    from keeper.executors.executor_contract import ERRORS

    selector = next(sel for sel, (name, _) in ERRORS.items() if name == "NotOperator")
    sender = FakeSender()
    ex = _executor(FakeRpc(0, 0, revert=selector), sender)
    await ex.execute(_action())
    assert ex.stats.simulation_failed == 1
    assert "simulation failed: NotOperator" in ex.stats.reasons
    foreign = SubmitBundle("opp-2", "x", 101, (ForeignTx(b"\x02", b"\x00" * 32),), 0)
    await ex.execute(foreign)
    assert ex.stats.skipped == 1
    assert sender.sent == []
