"""The liquidation model and math against the real Aave V3 and V2 bytecode, to the wei.

One anvil holds both markets. Hundreds of random positions are opened on each (several collaterals of
6/8/18 decimals, variable and stable debt, e-mode with and without a category price source, supplies
not used as collateral, V2's LTV-0 collateral); time passes so indexes and stable debt accrue, and
prices move through real feed `transmit` transactions. Then for every position:
- the reader's batched state + `user_account_data` == `getUserAccountData` (all six values);
- for liquidatable positions, inside evm_snapshot/evm_revert, `liquidationCall` at a later block
  timestamp moves exactly what `liquidation_outcome` predicted for that timestamp: the event amounts,
  the liquidator's underlying (or scaled aToken) deltas, the treasury's scaled aToken fee (V3), the
  user's collateral/borrowing bits; and a predicted revert reverts.

Seed and sizes: KEEPER_LIQ_SEED, KEEPER_LIQ_USERS_V3, KEEPER_LIQ_USERS_V2, KEEPER_LIQ_MAX_LIQUIDATIONS.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from eth_abi.abi import decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from keeper.chain.abi import encode_call
from keeper.chain.multicall import MULTICALL3_ADDRESS
from keeper.chain.rpc import RpcClient
from keeper.chain.units import UINT256_MAX, ray_div
from keeper.devnet.aave_params import ETH_CORRELATED, V2_RESERVES, V3_RESERVES
from keeper.devnet.aave_params import EModeCategory as EModeParams
from keeper.devnet.aave_v2 import AaveV2Market, deploy_aave_v2
from keeper.devnet.aave_v3 import AaveV3Market, deploy_aave_v3
from keeper.devnet.anvil import DEV_ACCOUNTS, Anvil, AnvilConfig
from keeper.devnet.deployer import Deployer
from keeper.devnet.model import DEFAULT_PRICES_USD, TokenInfo
from keeper.devnet.tokens import FeedSet, deploy_feeds, deploy_tokens, install_multicall3, send_price_update
from strategies.liquidations import math_v2, math_v3
from strategies.liquidations.common import AccountData, LiquidationOutcome, NotLiquidatable
from strategies.liquidations.model import MarketState, UserPosition
from strategies.liquidations.reader import AaveV2Reader, AaveV3Reader, BatchCaller, calldata

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("KEEPER_LIQ_SEED", "7"))
USERS_V3 = int(os.environ.get("KEEPER_LIQ_USERS_V3", "240"))
USERS_V2 = int(os.environ.get("KEEPER_LIQ_USERS_V2", "160"))
MAX_LIQUIDATIONS = int(os.environ.get("KEEPER_LIQ_MAX_LIQUIDATIONS", "60"))

ADMIN = DEV_ACCOUNTS[0][0]
SUPPLIER = to_checksum_address("0x" + keccak(b"supplier").hex()[:40])
LIQUIDATOR = to_checksum_address("0x" + keccak(b"liquidator").hex()[:40])
GAS = 2_000_000
GAS_PRICE = 1_000 * 10**9
LIQUIDATION_TOPIC = (
    "0x" + keccak(text="LiquidationCall(address,address,address,uint256,uint256,address,bool)").hex()
)
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()

STABLES_CATEGORY = 2
"""An extra V3 e-mode category for the stables with a category price source (USDC's price)."""
V3_STABLE_BORROWING = ("WETH", "USDC", "DAI")
"""The V3 deploy leaves stable-rate borrowing off everywhere; the test turns it on for these."""
V3_BORROWABLE = ("WETH", "WBTC", "USDC", "USDT", "DAI")
V3_COLLATERAL = ("WETH", "wstETH", "WBTC", "USDC", "USDT", "DAI")
V2_BORROWABLE = ("WETH", "WBTC", "USDC", "USDT", "DAI")
V2_SUPPLY = ("WETH", "wstETH", "WBTC", "USDC", "USDT", "DAI")
"""V2 USDT has LTV and threshold 0: supplying it sets the collateral bit, but it counts for nothing."""
LIQUIDITY_USD = {
    "WETH": 20_000_000,
    "WBTC": 10_000_000,
    "USDC": 20_000_000,
    "USDT": 20_000_000,
    "DAI": 20_000_000,
}


def user_address(market: str, i: int) -> str:
    return to_checksum_address("0x" + keccak(f"{market}-user-{i}".encode()).hex()[:40])


def amount_for_usd(usd: float, price_8: int, decimals: int) -> int:
    return int(usd * 10**8 / price_8 * 10**decimals)


# ---------------------------------------------------------------------------------------- tx batches


class TxBatch:
    """Many set-up transactions mined together: explicit nonces, one JSON-RPC batch, automine off."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc
        self.txs: list[dict[str, Any]] = []
        self.labels: list[str] = []
        self.nonces: dict[str, int] = {}

    async def _nonce(self, sender: str) -> int:
        if sender not in self.nonces:
            self.nonces[sender] = int(await self.rpc.call("eth_getTransactionCount", [sender, "latest"]), 16)
        n = self.nonces[sender]
        self.nonces[sender] = n + 1
        return n

    async def add(self, sender: str, to: str, data: bytes, label: str = "") -> None:
        tx = {
            "from": sender,
            "to": to,
            "data": "0x" + data.hex(),
            "gas": hex(GAS),
            "gasPrice": hex(GAS_PRICE),
            "nonce": hex(await self._nonce(sender)),
        }
        self.txs.append(tx)
        self.labels.append(label)

    async def call(self, sender: str, to: str, sig: str, types: Sequence[str], args: Sequence[Any]) -> None:
        await self.add(sender, to, encode_call(sig, types, args), sig.split("(")[0])

    async def run(self) -> list[str]:
        """Sends and mines everything; returns the labels of the transactions that reverted."""
        rpc = self.rpc
        await rpc.call("evm_setAutomine", [False])
        try:
            hashes: list[str] = []
            for i in range(0, len(self.txs), 400):
                hashes += await rpc.batch([("eth_sendTransaction", [tx]) for tx in self.txs[i : i + 400]])
            for _ in range(200):
                status = await rpc.call("txpool_status")
                if int(status["pending"], 16) == 0 and int(status["queued"], 16) == 0:
                    break
                await rpc.call("evm_mine")
            else:
                raise AssertionError("transactions stuck in the pool")
        finally:
            await rpc.call("evm_setAutomine", [True])
        failed: list[str] = []
        for i in range(0, len(hashes), 400):
            receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes[i : i + 400]])
            failed += [
                self.labels[i + j] for j, r in enumerate(receipts) if r is None or r["status"] != "0x1"
            ]
        self.txs.clear()
        self.labels.clear()
        return failed


# ---------------------------------------------------------------------------------------- the devnet


@dataclass
class Net:
    rpc: RpcClient
    d: Deployer
    tokens: dict[str, TokenInfo]
    feeds: FeedSet
    v3: AaveV3Market
    v2: AaveV2Market
    prices: dict[str, int]
    """Current USD prices (8 decimals)."""
    users_v3: list[str] = field(default_factory=list)
    users_v2: list[str] = field(default_factory=list)
    caller: BatchCaller = field(init=False)

    def __post_init__(self) -> None:
        self.caller = BatchCaller(self.rpc, multicall_address=MULTICALL3_ADDRESS, chunk_size=400)

    def sym(self, asset: str) -> str:
        return next(s for s, t in self.tokens.items() if t.address == asset)

    def v2_price(self, sym: str) -> int:
        """V2 prices in ETH (18 decimals), as the ETH feeds answer them."""
        return 10**18 if sym == "WETH" else self.prices[sym] * 10**18 // self.prices["WETH"]


async def set_prices(net: Net, new_prices: Mapping[str, int]) -> None:
    """Real `transmit` transactions on every feed whose answer changes (USD feeds and ETH feeds)."""
    old = net.feeds.answers(net.prices)
    new = net.feeds.answers({**net.prices, **new_prices})
    for feed, answer in new.items():
        if old.get(feed) != answer:
            tx_hash = await send_price_update(net.rpc, feed, answer, transmitter=net.feeds.transmitter)
            receipt = await net.rpc.wait_for_receipt(tx_hash, timeout=30)
            assert receipt["status"] == "0x1"
    net.prices.update(new_prices)


async def advance(net: Net, seconds: int) -> None:
    await net.rpc.call("evm_increaseTime", [seconds])
    await net.rpc.call("evm_mine")


async def setup_v3_extras(net: Net) -> None:
    """Stable-rate borrowing on some reserves; the stables join e-mode category 2 (priced by USDC's price)."""
    d, conf, t = net.d, net.v3.pool_configurator, net.tokens
    for sym in V3_STABLE_BORROWING:
        await d.transact(
            conf, "setReserveStableRateBorrowing(address,bool)", ["address", "bool"], [t[sym].address, True]
        )
    for sym in ("USDC", "USDT", "DAI"):
        await d.transact(
            conf,
            "setAssetEModeCategory(address,uint8)",
            ["address", "uint8"],
            [t[sym].address, STABLES_CATEGORY],
        )


async def fund_actors(net: Net) -> None:
    """The supplier brings liquidity to both markets; the liquidator gets every token and approves."""
    b = TxBatch(net.rpc)
    for who in (SUPPLIER, LIQUIDATOR):
        await net.rpc.call("anvil_setBalance", [who, hex(10**30)])
    for sym, tok in net.tokens.items():
        await b.call(
            LIQUIDATOR, tok.address, "mint(address,uint256)", ["address", "uint256"], [LIQUIDATOR, 10**40]
        )
        for pool in (net.v3.pool, net.v2.lending_pool):
            await b.call(
                LIQUIDATOR,
                tok.address,
                "approve(address,uint256)",
                ["address", "uint256"],
                [pool, UINT256_MAX],
            )
        if sym not in LIQUIDITY_USD:
            continue
        amount = amount_for_usd(LIQUIDITY_USD[sym], net.prices[sym], tok.decimals)
        await b.call(
            SUPPLIER, tok.address, "mint(address,uint256)", ["address", "uint256"], [SUPPLIER, 2 * amount]
        )
        for pool, fn in ((net.v3.pool, "supply"), (net.v2.lending_pool, "deposit")):
            await b.call(
                SUPPLIER, tok.address, "approve(address,uint256)", ["address", "uint256"], [pool, UINT256_MAX]
            )
            await b.call(
                SUPPLIER,
                pool,
                f"{fn}(address,uint256,address,uint16)",
                ["address", "uint256", "address", "uint16"],
                [tok.address, amount, SUPPLIER, 0],
            )
    assert await b.run() == []


@dataclass
class Plan:
    supplies: list[tuple[str, float]]
    """(symbol, USD value)"""
    not_collateral: list[str]
    emode: int
    borrows: list[tuple[str, int]]
    """(symbol, rate mode 1 stable / 2 variable)"""
    utilisation: float


def plan_v3(rng: random.Random) -> Plan:
    emode = rng.choices([0, 1, STABLES_CATEGORY], weights=[55, 25, 20])[0]
    collaterals = rng.sample(V3_COLLATERAL, rng.randint(1, 3))
    supplies = [(s, rng.uniform(300, 150_000)) for s in collaterals]
    not_collateral: list[str] = []
    if rng.random() < 0.15:
        extra = rng.choice([s for s in V3_COLLATERAL if s not in collaterals])
        supplies.append((extra, rng.uniform(300, 50_000)))
        not_collateral.append(extra)
    allowed = {0: V3_BORROWABLE, 1: ("WETH",), STABLES_CATEGORY: ("USDC", "USDT", "DAI")}[emode]
    borrows: list[tuple[str, int]] = []
    if rng.random() > 0.08:
        for sym in rng.sample(allowed, min(len(allowed), rng.randint(1, 2))):
            stable_ok = sym in V3_STABLE_BORROWING and sym not in collaterals
            borrows.append((sym, 1 if stable_ok and rng.random() < 0.5 else 2))
    return Plan(supplies, not_collateral, emode, borrows, rng.uniform(0.6, 0.985))


def plan_v2(rng: random.Random) -> Plan:
    collaterals = rng.sample(V2_SUPPLY, rng.randint(1, 3))
    if collaterals == ["USDT"]:
        collaterals.append("WETH")
    supplies = [(s, rng.uniform(300, 150_000)) for s in collaterals]
    not_collateral: list[str] = []
    if rng.random() < 0.15:
        extra = rng.choice([s for s in V2_SUPPLY if s not in collaterals])
        supplies.append((extra, rng.uniform(300, 50_000)))
        not_collateral.append(extra)
    borrows: list[tuple[str, int]] = []
    if rng.random() > 0.08:
        for sym in rng.sample(V2_BORROWABLE, rng.randint(1, 2)):
            stable_ok = V2_RESERVES[sym].stable_borrowing_enabled and sym not in collaterals
            borrows.append((sym, 1 if stable_ok and rng.random() < 0.5 else 2))
    return Plan(supplies, not_collateral, 0, borrows, rng.uniform(0.6, 0.985))


def borrowing_power_usd(plan: Plan, v3: bool) -> float:
    total = 0.0
    for sym, usd in plan.supplies:
        if sym in plan.not_collateral:
            continue
        if v3:
            ltv = V3_RESERVES[sym].ltv
            if plan.emode == 1 and V3_RESERVES[sym].emode_category == 1:
                ltv = ETH_CORRELATED.ltv
            if plan.emode == STABLES_CATEGORY and sym in ("USDC", "USDT", "DAI"):
                ltv = 9300
        else:
            ltv = V2_RESERVES[sym].ltv
        total += usd * ltv / 10_000
    return total


async def open_positions(net: Net, market: str, n: int, rng: random.Random) -> list[str]:
    v3 = market == "v3"
    pool = net.v3.pool if v3 else net.v2.lending_pool
    supply_fn = "supply" if v3 else "deposit"
    users = [user_address(market, i) for i in range(n)]
    b = TxBatch(net.rpc)
    for u in users:
        await net.rpc.call("anvil_setBalance", [u, hex(10**24)])
    for u in users:
        plan = plan_v3(rng) if v3 else plan_v2(rng)
        for sym, usd in plan.supplies:
            tok = net.tokens[sym]
            amount = amount_for_usd(usd, net.prices[sym], tok.decimals)
            await b.call(u, tok.address, "mint(address,uint256)", ["address", "uint256"], [u, amount])
            await b.call(u, tok.address, "approve(address,uint256)", ["address", "uint256"], [pool, amount])
            await b.call(
                u,
                pool,
                f"{supply_fn}(address,uint256,address,uint16)",
                ["address", "uint256", "address", "uint16"],
                [tok.address, amount, u, 0],
            )
        for sym in plan.not_collateral:
            await b.call(
                u,
                pool,
                "setUserUseReserveAsCollateral(address,bool)",
                ["address", "bool"],
                [net.tokens[sym].address, False],
            )
        if plan.emode:
            await b.call(u, pool, "setUserEMode(uint8)", ["uint8"], [plan.emode])
        budget = borrowing_power_usd(plan, v3) * plan.utilisation
        for k, (sym, mode) in enumerate(plan.borrows):
            share = (
                budget / len(plan.borrows)
                if k < len(plan.borrows) - 1
                else budget - budget * k / len(plan.borrows)
            )
            tok = net.tokens[sym]
            amount = amount_for_usd(share, net.prices[sym], tok.decimals)
            if amount == 0:
                continue
            await b.call(
                u,
                pool,
                "borrow(address,uint256,uint256,uint16,address)",
                ["address", "uint256", "uint256", "uint16", "address"],
                [tok.address, amount, mode, 0, u],
            )
    sent = len(b.txs)
    failed = await b.run()
    print(f"\n{market}: {n} users, {sent} txs, {len(failed)} reverted {sorted(set(failed))}")
    assert len(failed) <= sent // 50, f"too many set-up transactions reverted: {failed[:20]}"
    return users


@pytest.fixture(scope="module")
async def net() -> AsyncIterator[Net]:
    cfg = AnvilConfig(gas_limit=400_000_000, accounts=2)
    async with Anvil(cfg) as node, RpcClient(node.http_url, timeout=120) as rpc:
        t0 = time.perf_counter()
        d = Deployer(rpc, ADMIN)
        await install_multicall3(rpc)
        await rpc.call("anvil_autoImpersonateAccount", [True])
        tokens = await deploy_tokens(d)
        feeds = await deploy_feeds(d, DEFAULT_PRICES_USD, transmitter=ADMIN)
        stables = EModeParams(STABLES_CATEGORY, 9300, 9500, 10100, "Stablecoins", tokens["USDC"].address)
        v3 = await deploy_aave_v3(d, tokens, feeds.usd, emode_categories=(ETH_CORRELATED, stables))
        v2 = await deploy_aave_v2(d, tokens, feeds.eth)
        n = Net(rpc, d, tokens, feeds, v3, v2, dict(DEFAULT_PRICES_USD))
        await setup_v3_extras(n)
        await fund_actors(n)
        rng = random.Random(SEED)
        n.users_v3 = await open_positions(n, "v3", USERS_V3, rng)
        n.users_v2 = await open_positions(n, "v2", USERS_V2, rng)
        print(f"devnet with {USERS_V3 + USERS_V2} positions ready in {time.perf_counter() - t0:.1f} s")
        yield n


# ---------------------------------------------------------------------------------------- checks


async def onchain_account_data(
    net: Net, pool: str, users: Sequence[str], block: int
) -> dict[str, AccountData]:
    call = [(pool, calldata("getUserAccountData(address)", ["address"], [u])) for u in users]
    out: dict[str, AccountData] = {}
    for u, raw in zip(users, await net.caller(call, block), strict=True):
        assert raw is not None, f"getUserAccountData({u}) failed"
        out[u] = AccountData(*(int(x) for x in decode(["uint256"] * 6, raw)))
    return out


def compare_account_data(
    local: Mapping[str, AccountData], chain: Mapping[str, AccountData]
) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    return [
        (u, local[u].as_tuple(), chain[u].as_tuple())
        for u in chain
        if local[u].as_tuple() != chain[u].as_tuple()
    ]


@dataclass
class LiquidationStats:
    executed: int = 0
    predicted_reverts: int = 0
    full_close_factor: int = 0
    with_fee: int = 0
    with_stable: int = 0
    capped_by_collateral: int = 0
    receive_a_token: int = 0
    emode: int = 0
    seize_all: int = 0
    """Requests from `LiquidationTerms.seize_all_cover` (all of them seized the whole balance)."""
    seize_all_over_repaid: int = 0
    """... of which the request exceeded the debt the Pool took (the capped branch's own amount)."""
    dust: int = 0
    small_decimals: int = 0
    """Collateral or debt with 6 or 8 decimals."""
    revert_reasons: dict[str, int] = field(default_factory=dict)


async def settle_and_revert(net: Net, snap: str, block_hash: str) -> None:
    """evm_revert to `snap` (taken at `block_hash`), working around an anvil race: a transaction mined
    by automine can still sit in the pool for a moment; reverted then, it becomes pending again and is
    mined with the next transaction (seen with anvil 1.7.1). So: wait for an empty pool, revert, drop
    whatever is pending, and wait until the head is the snapshot's block."""
    for _ in range(200):
        status = await net.rpc.call("txpool_status")
        if int(status["pending"], 16) == 0 and int(status["queued"], 16) == 0:
            break
        await asyncio.sleep(0.005)
    assert await net.rpc.call("evm_revert", [snap]) is True
    await net.rpc.call("anvil_dropAllTransactions")
    for _ in range(200):
        head = await net.rpc.call("eth_getBlockByNumber", ["latest", False])
        if head["hash"] == block_hash:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"the chain did not go back to {block_hash}")


async def balances_at(net: Net, reads: Sequence[tuple[str, bytes]], block: int | str) -> list[int]:
    out = []
    for raw in await net.caller(reads, block):
        assert raw is not None
        out.append(int.from_bytes(raw[:32], "big"))
    return out


async def check_liquidation(
    net: Net,
    *,
    v3: bool,
    market: MarketState,
    position: UserPosition,
    collateral: str,
    debt: str,
    debt_to_cover: int,
    receive_a_token: bool,
    dt: int,
    stats: LiquidationStats,
    kind: str = "random",
) -> None:
    """Predicts at timestamp T + dt, runs liquidationCall in a block with that timestamp, compares.

    kind "seize-all": `debt_to_cover` is ignored; the request is `seize_all_cover()` of the pair's terms
    at T + dt (or the close-factor maximum when the whole collateral cannot be reached), and the whole
    balance must go. kind "dust": a tiny request (given)."""
    pool = net.v3.pool if v3 else net.v2.lending_pool
    treasury = net.v3.treasury
    ts = market.timestamp + dt
    reserve_c = market.reserves[collateral]
    seize_all: int | None = None
    if kind == "seize-all":
        try:
            terms = (
                math_v3.liquidation_terms(
                    position, market.reserves, market.emode_categories, collateral, debt, ts
                )
                if v3
                else math_v2.liquidation_terms(position, market.reserves, collateral, debt, ts)
            )
            seize_all = terms.seize_all_cover()
            debt_to_cover = terms.max_cover()
        except NotLiquidatable:
            debt_to_cover = UINT256_MAX
    try:
        if v3:
            expected: LiquidationOutcome | None = math_v3.liquidation_outcome(
                position,
                market.reserves,
                market.emode_categories,
                collateral,
                debt,
                debt_to_cover,
                ts,
                receive_a_token=receive_a_token,
            )
            income = math_v3.normalized_income(reserve_c, ts)
        else:
            expected = math_v2.liquidation_outcome(
                position,
                market.reserves,
                collateral,
                debt,
                debt_to_cover,
                ts,
                receive_a_token=receive_a_token,
            )
            income = math_v2.normalized_income(reserve_c, ts)
    except NotLiquidatable as exc:
        expected = None
        income = 0
        stats.revert_reasons[exc.reason] = stats.revert_reasons.get(exc.reason, 0) + 1

    user = position.user
    reads = [
        (collateral, calldata("balanceOf(address)", ["address"], [LIQUIDATOR])),
        (debt, calldata("balanceOf(address)", ["address"], [LIQUIDATOR])),
        (reserve_c.a_token, calldata("scaledBalanceOf(address)", ["address"], [LIQUIDATOR])),
        (reserve_c.a_token, calldata("scaledBalanceOf(address)", ["address"], [treasury])),
        (pool, calldata("getUserConfiguration(address)", ["address"], [user])),
    ]
    before = await balances_at(net, reads, market.block_number)
    head = await net.rpc.call("eth_getBlockByNumber", ["latest", False])
    assert int(head["number"], 16) == market.block_number
    snap = await net.rpc.call("evm_snapshot")
    try:
        await net.rpc.call("evm_setNextBlockTimestamp", [ts])
        tx = {
            "from": LIQUIDATOR,
            "to": pool,
            "gas": hex(GAS),
            "data": "0x"
            + encode_call(
                "liquidationCall(address,address,address,uint256,bool)",
                ["address", "address", "address", "uint256", "bool"],
                [collateral, debt, user, debt_to_cover, receive_a_token],
            ).hex(),
        }
        tx_hash = await net.rpc.call("eth_sendTransaction", [tx])
        receipt = await net.rpc.wait_for_receipt(tx_hash, timeout=30)
        what = f"{'v3' if v3 else 'v2'} {user} {net.sym(collateral)}/{net.sym(debt)} cover={debt_to_cover}"
        if expected is None:
            assert receipt["status"] == "0x0", f"{what}: predicted a revert, the call succeeded"
            stats.predicted_reverts += 1
            return
        assert receipt["status"] == "0x1", f"{what}: reverted, predicted {expected}"
        # Read "latest", not the block number: after an evm_revert anvil may answer a number that was
        # used by a reverted block with that block's state.
        latest = await net.rpc.call("eth_getBlockByNumber", ["latest", False])
        assert latest["hash"] == receipt["blockHash"]
        assert latest["transactions"] == [tx_hash], "the liquidation block holds other transactions"
        after = await balances_at(net, reads, "latest")
    finally:
        await settle_and_revert(net, snap, head["hash"])

    logs = [lg for lg in receipt["logs"] if lg["topics"][0] == LIQUIDATION_TOPIC]
    assert len(logs) == 1
    ev_debt, ev_coll, _liq, _recv = decode(
        ["uint256", "uint256", "address", "bool"], bytes.fromhex(logs[0]["data"][2:])
    )
    assert (ev_debt, ev_coll) == (expected.actual_debt_to_cover, expected.collateral_to_liquidator), (
        f"{what}: {expected}"
    )

    d_coll, d_debt, d_liq_scaled, d_treasury_scaled = (
        a - b for a, b in zip(after[:4], before[:4], strict=True)
    )
    expected_coll = 0 if receive_a_token else expected.collateral_to_liquidator
    if collateral == debt:
        assert d_coll == d_debt == expected_coll - expected.actual_debt_to_cover, what
    else:
        assert d_coll == expected_coll, what
        assert d_debt == -expected.actual_debt_to_cover, what
    if receive_a_token:
        assert d_liq_scaled == ray_div(expected.collateral_to_liquidator, income), what
    else:
        assert d_liq_scaled == 0, what
    if v3:
        assert d_treasury_scaled == expected.protocol_fee_scaled, what
        fee_transfers = [
            int(lg["data"], 16)
            for lg in receipt["logs"]
            if lg["address"].lower() == reserve_c.a_token.lower()
            and lg["topics"][0] == TRANSFER_TOPIC
            and int(lg["topics"][1], 16) == int(user, 16)
            and int(lg["topics"][2], 16) == int(treasury, 16)
        ]
        assert fee_transfers == ([expected.protocol_fee] if expected.protocol_fee else []), what
    # The user's bits: collateral cleared iff the balance was exhausted, borrowing iff fully repaid.
    cfg_before, cfg_after = before[4], after[4]
    c_bit = 1 << (reserve_c.id * 2 + 1)
    d_bit = 1 << (market.reserves[debt].id * 2)
    assert bool(cfg_after & c_bit) == (bool(cfg_before & c_bit) and not expected.collateral_exhausted), what
    assert bool(cfg_after & d_bit) == (not expected.debt_fully_repaid), what

    if seize_all is not None:
        assert expected.collateral_exhausted, f"{what}: the whole-collateral request left collateral"
        # (the Pool cleared the user's collateral bit: checked above, from the bitmap after the call)
        assert expected.actual_debt_to_cover <= debt_to_cover, f"{what}: the flash loan would not cover it"
        stats.seize_all += 1
        stats.seize_all_over_repaid += expected.actual_debt_to_cover < debt_to_cover
    stats.dust += kind == "dust"
    small = {6, 8}
    stats.small_decimals += bool({reserve_c.decimals, market.reserves[debt].decimals} & small)
    stats.executed += 1
    stats.full_close_factor += expected.close_factor == 10_000
    stats.with_fee += expected.protocol_fee > 0
    stats.with_stable += expected.stable_debt_burned > 0
    stats.capped_by_collateral += expected.collateral_exhausted
    stats.receive_a_token += receive_a_token
    stats.emode += position.emode_category != 0


def liquidation_cases(
    rng: random.Random,
    positions: Mapping[str, UserPosition],
    liquidatable: Sequence[str],
    market: MarketState,
    v3: bool,
) -> list[tuple[UserPosition, str, str, int, bool, str]]:
    cases = []
    for u in rng.sample(list(liquidatable), min(len(liquidatable), MAX_LIQUIDATIONS)):
        p = positions[u]
        if v3:
            best = math_v3.best_liquidation(p, market.reserves, market.emode_categories, market.timestamp)
        else:
            best = math_v2.best_liquidation(p, market.reserves, market.timestamp)
        coll_assets = [a for a in p.reserves if p.is_using_as_collateral(market.reserves[a].id)]
        debt_assets = [a for a in p.reserves if p.is_borrowing(market.reserves[a].id)]
        if best is not None and rng.random() < 0.5:
            coll, debt = best.collateral_asset, best.debt_asset
        elif coll_assets and debt_assets:
            coll, debt = rng.choice(coll_assets), rng.choice(debt_assets)
        else:
            continue
        r = rng.random()
        kind = "random"
        if r < 0.35:
            cover = UINT256_MAX
        elif r < 0.7:
            cover, kind = UINT256_MAX, "seize-all"
        elif r < 0.8:
            cover, kind = rng.choice((1, 2, 3, rng.randint(4, 10**6))), "dust"
        else:
            owed = p.balances(debt).scaled_variable_debt + p.balances(debt).stable_debt_principal
            cover = max(1, int(owed * rng.uniform(0.01, 0.7)))
        recv = kind != "seize-all" and rng.random() < 0.25
        cases.append((p, coll, debt, cover, recv, kind))
    return cases


async def check_round(
    net: Net,
    *,
    v3: bool,
    market: MarketState,
    positions: Mapping[str, UserPosition],
    rng: random.Random,
    label: str,
) -> tuple[int, int, LiquidationStats]:
    pool = net.v3.pool if v3 else net.v2.lending_pool
    users = net.users_v3 if v3 else net.users_v2
    assert set(positions) == set(users), "the reader skipped users"
    chain = await onchain_account_data(net, pool, users, market.block_number)
    t0 = time.perf_counter()
    if v3:
        idx = math_v3.normalized_indexes(market.reserves, market.timestamp)
        local = {
            u: math_v3.user_account_data(
                positions[u], market.reserves, market.emode_categories, market.timestamp, indexes=idx
            )
            for u in users
        }
    else:
        idx = math_v2.normalized_indexes(market.reserves, market.timestamp)
        local = {
            u: math_v2.user_account_data(positions[u], market.reserves, market.timestamp, indexes=idx)
            for u in users
        }
    took = time.perf_counter() - t0
    mismatches = compare_account_data(local, chain)
    assert mismatches == [], f"{label}: {len(mismatches)} mismatches, first: {mismatches[:3]}"
    liquidatable = [u for u in users if chain[u].health_factor < 10**18]
    # A few healthy borrowers too: the model must predict the Pool's refusal.
    healthy = [u for u in users if 10**18 <= chain[u].health_factor < UINT256_MAX]
    cases = liquidation_cases(rng, positions, liquidatable, market, v3)
    for u in rng.sample(healthy, min(3, len(healthy))):
        p = positions[u]
        coll = next(a for a in p.reserves if p.is_using_as_collateral(market.reserves[a].id))
        debt = next(a for a in p.reserves if p.is_borrowing(market.reserves[a].id))
        cases.append((p, coll, debt, UINT256_MAX, False, "random"))
    stats = LiquidationStats()
    for p, coll, debt, cover, recv, kind in cases:
        await check_liquidation(
            net,
            v3=v3,
            market=market,
            position=p,
            collateral=coll,
            debt=debt,
            debt_to_cover=cover,
            receive_a_token=recv,
            dt=rng.randint(1, 7200),
            stats=stats,
            kind=kind,
        )
    # The reverted liquidations left no trace.
    assert await onchain_account_data(net, pool, users, "latest") == chain, f"{label}: state leaked"
    hfs = sorted(a.health_factor for a in chain.values())
    print(
        f"{label}: {len(users)} positions equal to the wei (local math {took * 1000:.1f} ms); "
        f"{len(liquidatable)} liquidatable, min HF {hfs[0] / 1e18:.3f}; {stats}"
    )
    return len(users), len(liquidatable), stats


async def test_account_data_and_liquidations_match_the_pools(net: Net) -> None:
    rng = random.Random(SEED + 1)
    v3r = AaveV3Reader(net.rpc, net.v3.pool, net.v3.oracle, caller=net.caller)
    v2r = AaveV2Reader(net.rpc, net.v2.lending_pool, net.v2.oracle, caller=net.caller)
    checked = liquidations = 0
    totals = LiquidationStats()

    # Round 0: right after opening (no accrual yet beyond the set-up blocks).
    # Round 1: 45 days later, volatile assets down a little, stables wobble (USDT/DAI apart from USDC).
    # Round 2: 200 more days, a crash: many positions below 0.95 (full close factor).
    # Round 3: 3 years later (long compounding), a deeper crash: collateral-capped liquidations.
    shocks: list[tuple[int, dict[str, float]]] = [
        (0, {}),
        (45 * 86400, {"WETH": 0.9, "wstETH": 0.88, "WBTC": 0.93, "USDT": 1.01, "DAI": 0.995, "USDC": 1.0}),
        (200 * 86400, {"WETH": 0.8, "wstETH": 0.78, "WBTC": 0.85, "USDT": 1.02, "DAI": 0.99, "USDC": 0.999}),
        (
            3 * 365 * 86400,
            {"WETH": 0.62, "wstETH": 0.55, "WBTC": 0.7, "USDT": 1.06, "DAI": 0.97, "USDC": 0.985},
        ),
    ]
    market3 = market2 = None
    positions3: dict[str, UserPosition] = {}
    positions2: dict[str, UserPosition] = {}
    for rnd, (seconds, moves) in enumerate(shocks):
        if seconds:
            await advance(net, seconds)
        if moves:
            await set_prices(net, {s: int(DEFAULT_PRICES_USD[s] * f) for s, f in moves.items()})
        t0 = time.perf_counter()
        if market3 is None or market2 is None:
            market3 = await v3r.read_market()
            positions3 = await v3r.read_positions(net.users_v3, market3)
            market2 = await v2r.read_market(market3.block_number)
            positions2 = await v2r.read_positions(net.users_v2, market2)
        else:
            # The per-block path: nothing touched the reserves or positions (liquidations were reverted,
            # price updates do not touch the pools), so fresh prices on the old state must be enough.
            market3 = await v3r.read_prices(market3)
            fresh = await v3r.read_market(market3.block_number)
            assert fresh == market3
            market2 = await v2r.read_prices(market2, market3.block_number)
            assert await v3r.read_positions(net.users_v3, market3) == positions3
        took = time.perf_counter() - t0
        print(f"\nround {rnd}: state read in {took * 1000:.0f} ms at block {market3.block_number}")
        for v3, market, positions in ((True, market3, positions3), (False, market2, positions2)):
            n, _, stats = await check_round(
                net,
                v3=v3,
                market=market,
                positions=positions,
                rng=rng,
                label=f"round {rnd} {'V3' if v3 else 'V2'}",
            )
            checked += n
            liquidations += stats.executed + stats.predicted_reverts
            for name in ("seize_all", "seize_all_over_repaid", "dust", "emode", "small_decimals"):
                setattr(totals, name, getattr(totals, name) + getattr(stats, name))
    print(f"\n{checked} account-data checks and {liquidations} liquidations equal to the wei")
    assert liquidations > 0
    assert totals.seize_all > 0, "no whole-collateral request was executed"
    assert totals.seize_all_over_repaid > 0, "no whole-collateral request above the debt repaid"
    assert totals.dust > 0 and totals.emode > 0 and totals.small_decimals > 0, totals


async def test_reader_modes_and_failures(net: Net) -> None:
    """The raw JSON-RPC batch mode reads what Multicall3 reads; broken sources are skipped, not raised."""
    multi = AaveV3Reader(net.rpc, net.v3.pool, net.v3.oracle, caller=net.caller)
    raw = AaveV3Reader(
        net.rpc, net.v3.pool, net.v3.oracle, caller=BatchCaller(net.rpc, multicall_address=None)
    )
    m1 = await multi.read_market()
    m2 = await raw.read_market(m1.block_number)
    assert m1 == m2
    assert await multi.read_indexes(m1, m1.block_number) == m1
    assert await multi.read_prices(m1, m1.block_number) == m1
    users = net.users_v3[:50]
    assert await multi.read_positions(users, m1) == await raw.read_positions(users, m2)
    v2_multi = AaveV2Reader(net.rpc, net.v2.lending_pool, net.v2.oracle, caller=net.caller)
    v2_raw = AaveV2Reader(
        net.rpc, net.v2.lending_pool, net.v2.oracle, caller=BatchCaller(net.rpc, multicall_address=None)
    )
    assert await v2_multi.read_market(m1.block_number) == await v2_raw.read_market(m1.block_number)

    # A stranger has an empty position (config 0) and the maximal health factor.
    stranger = to_checksum_address("0x" + "77" * 20)
    empty = (await multi.read_positions([stranger], m1))[stranger]
    assert empty.config == 0
    assert (
        math_v3.user_account_data(empty, m1.reserves, m1.emode_categories, m1.timestamp).health_factor
        == UINT256_MAX
    )

    # An oracle address without code: every price read fails, every reserve is skipped (and logged);
    # then every user who uses a reserve is skipped too. Nothing raises.
    broken = AaveV3Reader(net.rpc, net.v3.pool, net.tokens["WETH"].address, caller=net.caller)
    bm = await broken.read_market(m1.block_number)
    assert bm.reserves == {}
    assert (await broken.read_prices(m1, m1.block_number)).reserves == {}  # no stale prices kept
    positions = await broken.read_positions(users, replace(m1, reserves={}))
    assert all(p.config == 0 for p in positions.values())
    # A reserve missing locally (here: WBTC dropped) skips exactly the users who use it.
    wbtc = net.tokens["WBTC"].address
    partial = replace(m1, reserves={a: r for a, r in m1.reserves.items() if a != wbtc})
    got = await multi.read_positions(users, partial)
    full = await multi.read_positions(users, m1)
    wbtc_id = m1.reserves[wbtc].id
    assert set(got) == {u for u, p in full.items() if not p.is_using_as_collateral_or_borrowing(wbtc_id)}
