"""The day that matters: a crash that makes a hundred positions liquidatable at once.

Every profitable liquidation goes for the first block after it became liquidatable, packed into batch
transactions (one per sender) up to the block's gas budget; what the budget leaves out goes for the next
block. A position a competitor takes first inside the same block fails alone in its batch, without sinking
the others. The ledger equals the chain to the wei. Builders listed next to the devnet's each receive
every bundle and are recorded apart; one that hangs, listed first, delays nobody.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from eth_abi.abi import decode
from eth_account.messages import encode_defunct

from keeper.chain.abi import encode_call
from keeper.chain.flashbots_auth import keccak256
from keeper.chain.rpc import RpcClient
from keeper.chain.signer import Eip1559Tx, TxSigner
from keeper.core.actions import SubmitBundle, TxIntent
from keeper.devnet.anvil import DEV_ACCOUNTS
from keeper.devnet.cache import CachedState
from keeper.devnet.deploy import COMPETITOR, DevnetDeployment
from keeper.devnet.scenarios.borrowers import create_borrowers
from keeper.devnet.scenarios.crash import run_crash
from keeper.devnet.scenarios.positions import discover, read_health_factors
from keeper.devnet.stack import Devnet, DevnetMiner
from keeper.executors.builders import MultiBuilderClient
from keeper.executors.executor_contract import decode_liquidate
from keeper.ledger.store import LedgerReader
from tests.integration.keeper_harness import (
    KEEPER_ACCOUNTS,
    bundle_executor,
    collateral_base,
    devnet_keeper,
    latest_block,
    on_block,
    run_until_quiet,
    step,
)

pytestmark = pytest.mark.integration

WAD = 10**18


@pytest.fixture
async def fresh(devnet: Devnet) -> AsyncIterator[Devnet]:
    rpc, _ = devnet.require()
    snap = await rpc.call("evm_snapshot")
    yield devnet
    await rpc.call("evm_revert", [snap])


async def _token_balances(rpc: RpcClient, dep: DevnetDeployment, owner: str) -> dict[str, int]:
    out = {}
    for token in dep.tokens.values():
        raw = await rpc.eth_call(token.address, encode_call("balanceOf(address)", ["address"], [owner]))
        out[token.address] = int(decode(["uint256"], raw)[0])
    return out


async def _liquidatable(rpc: RpcClient, dep: DevnetDeployment) -> set[tuple[str, str]]:
    truth = list((await discover(rpc, dep)).values())
    await read_health_factors(rpc, dep, truth)
    return {(b.market, b.user) for b in truth if b.health_factor is not None and b.health_factor < WAD}


def _base(opportunity_id: str) -> str:
    return opportunity_id.split("#", 1)[0]


async def test_a_hundred_positions_at_once_each_lands_in_its_first_block(
    devnet_state: CachedState, tmp_path: Path
) -> None:
    # Its own devnet, with the background arbitrageur re-aligning the pools with the oracle every block,
    # as CEX-DEX arbitrage does on mainnet (without it, the keeper's own sales leave the pools below the
    # oracle and most positions unprofitable after the first block).
    async with Devnet(block_time=None, arbitrageur=True) as net:
        await _hundred_at_once(net, tmp_path)


async def _hundred_at_once(net: Devnet, tmp_path: Path) -> None:
    rpc, dep = net.require()
    miner = DevnetMiner(net)
    await create_borrowers(rpc, dep, 700, seed=11, miner=miner)
    owner = dep.accounts["keeper"]
    before = await _token_balances(rpc, dep, owner)
    senders = [a for a, _ in KEEPER_ACCOUNTS]
    eth_before = sum([await rpc.get_balance(a) for a in senders])
    events: list[tuple[str, dict[str, Any]]] = []
    async with devnet_keeper(net, tmp_path, event_sink=lambda k, d: events.append((k, d))) as keeper:
        executor = bundle_executor(keeper)
        budget = executor.slots.gas_budget
        # One block: ETH -30%.
        await run_crash(rpc, dep, drop_bps=3_000, blocks=1, mine=True, miner=miner)
        at_once = await _liquidatable(rpc, dep)
        assert len(at_once) >= 100
        actions: list[SubmitBundle] = []
        quiet = await run_until_quiet(net, keeper, max_blocks=60, log=actions)
        stats = executor.stats
        remaining = list(keeper.strategy.liquidatable)
        dropped = dict(keeper.strategy.dropped)
        skipped = dict(keeper.actions.skipped)
    assert quiet, "still sending after 60 blocks"
    assert stats.included >= 100
    assert stats.simulation_failed == 0, stats.reasons

    # Each opportunity landed in the first block it was sent for; what waited, waited for the budget.
    first_sent: dict[str, int] = {}
    for kind, data in events:
        if kind == "sent":
            first_sent.setdefault(str(data["id"]), int(data["block"]))
    landed = [(str(d["id"]), int(d["block"])) for k, d in events if k == "included" and d["success"]]
    assert len(landed) == stats.included
    assert all(first_sent[opp] == block for opp, block in landed)
    assert Counter(opp for opp, _ in landed).most_common(1)[0][1] == 1  # none twice
    not_packed = [str(d["reason"]) for k, d in events if k == "not_packed"]
    assert all("gas budget" in r for r in not_packed), Counter(not_packed)
    # Detected together, sent in as few blocks as the budget allows: the first block carried many.
    per_block = Counter(block for _, block in landed)
    first_block = min(per_block)
    assert per_block[first_block] >= 10

    reader = LedgerReader(tmp_path / "ledger.sqlite")
    try:
        data = reader.report_data()
    finally:
        reader.close()
    # Several liquidations per transaction, each block's transactions within the gas budget.
    by_tx: dict[str, list[int]] = {}
    for inc in data.inclusions:
        by_tx.setdefault(inc.tx_hash, []).append(inc.gas_used)
    assert max(len(v) for v in by_tx.values()) >= 5
    gas_by_block: Counter[int] = Counter()
    for inc in data.inclusions:
        gas_by_block[inc.block_number] += inc.gas_used
    assert all(gas <= budget for gas in gas_by_block.values())
    # The ledger equals the chain: token profit per token, and gas (split over a batch's items) per wei.
    after = await _token_balances(rpc, dep, owner)
    realized: Counter[str] = Counter()
    for inc in data.inclusions:
        realized[inc.realized_profit_asset] += inc.realized_profit
    for token, amount in before.items():
        assert after[token] - amount == realized[token], token
    assert eth_before - sum([await rpc.get_balance(a) for a in senders]) == sum(
        inc.gas_cost_wei for inc in data.inclusions
    )
    # What is still liquidatable the keeper no longer finds profitable (or it is waiting out a failure).
    still = await _liquidatable(rpc, dep)
    tracked = {(o.protocol, o.user) for o in remaining}
    assert tracked <= still
    for market, user in still - tracked:  # whole collateral seized: bad debt, nothing left to liquidate
        assert await collateral_base(rpc, dep, market, user) == 0
    # Each one left has a reason (valuer or action builder; the valuer may have chosen another pair).
    explained = {":".join(k.split(":")[:2]) for k in (*dropped, *skipped)}
    for opp in remaining:
        assert f"{opp.protocol}:{opp.user}" in explained, opp


async def _prepare_competitor(rpc: RpcClient, pool: str, debt: str) -> None:
    """The competitor holds the debt asset and has approved the pool (sent now, mined with the next block)."""
    await rpc.call("anvil_setBalance", [COMPETITOR, hex(10_000 * 10**18)])
    await rpc.call("anvil_impersonateAccount", [COMPETITOR])
    for data in (
        encode_call("mint(address,uint256)", ["address", "uint256"], [COMPETITOR, 10**40]),
        encode_call("approve(address,uint256)", ["address", "uint256"], [pool, 2**256 - 1]),
    ):
        await rpc.call(
            "eth_sendTransaction",
            [{"from": COMPETITOR, "to": debt, "data": "0x" + data.hex(), "gas": hex(300_000)}],
        )
    await rpc.call("anvil_stopImpersonatingAccount", [COMPETITOR])


async def _competitor_liquidation(rpc: RpcClient, calldata: bytes, chain_id: int) -> bytes:
    """The competitor's own raw liquidationCall of the same position, with a priority fee so high that its
    bundle (bundle gas price = coinbase gain / gas) goes before ours in the block."""
    p = decode_liquidate(calldata)
    competitor_key = next(k for a, k in DEV_ACCOUNTS if a == COMPETITOR)
    nonce = int(await rpc.call("eth_getTransactionCount", [COMPETITOR, "latest"]), 16)
    header = await rpc.call("eth_getBlockByNumber", ["latest", False])
    base_fee = int(header["baseFeePerGas"], 16)
    tip = 50_000 * 10**9
    liquidation = encode_call(
        "liquidationCall(address,address,address,uint256,bool)",
        ["address", "address", "address", "uint256", "bool"],
        [p.collateral, p.debt, p.user, 2**256 - 1, False],
    )
    signed = TxSigner.from_key(competitor_key).sign(
        Eip1559Tx(
            chain_id=chain_id,
            nonce=nonce,
            max_priority_fee_per_gas=tip,
            max_fee_per_gas=base_fee * 4 + tip,
            gas=1_500_000,
            to=p.lending_pool,
            value=0,
            data=liquidation,
        )
    )
    return signed.raw


async def test_a_position_taken_first_inside_the_block_fails_alone_in_its_batch(
    fresh: Devnet, tmp_path: Path
) -> None:
    net = fresh
    rpc, dep = net.require()
    miner = DevnetMiner(net)
    await create_borrowers(rpc, dep, 300, seed=12, miner=miner)
    async with devnet_keeper(net, tmp_path) as keeper:
        executor = bundle_executor(keeper)
        await run_crash(rpc, dep, drop_bps=3_000, blocks=1, mine=True, miner=miner)
        # What the keeper would do now; the competitor picks one of those positions and gets ready.
        block = await latest_block(net)
        await executor.on_block(block)
        planned = [a for a in await keeper.strategy.process_event(block) if isinstance(a, SubmitBundle)]
        assert len(planned) >= 3
        victim = planned[1]
        victim_tx = victim.txs[0]
        assert isinstance(victim_tx, TxIntent)
        victim_params = decode_liquidate(victim_tx.data)
        await _prepare_competitor(rpc, victim_params.lending_pool, victim_params.debt)
        await net.mine()
        # The keeper's batch for the next block goes to the relay...
        block = await latest_block(net)
        sent_before = executor.stats.sent
        actions = await on_block(keeper, block)
        assert executor.stats.sent - sent_before >= 3
        assert any(a.opportunity_id == victim.opportunity_id for a in actions)
        # ...and the competitor's better-paying bundle takes the victim first in that block.
        raw = await _competitor_liquidation(rpc, victim_tx.data, dep.chain_id)
        assert net.relay_url is not None
        async with MultiBuilderClient([net.relay_url], "0x" + "ab" * 32) as competitor:
            (r,) = (await competitor.send_bundle_for_blocks([raw], block.number + 1))[block.number + 1]
            assert r.ok, r.error
        eth_before = sum([await rpc.get_balance(a) for a, _ in KEEPER_ACCOUNTS])
        await step(net, keeper)
        stats = executor.stats
    # The competitor's liquidation came first; ours failed alone inside the batch, the others landed.
    assert stats.failed_in_batch == 1
    assert stats.included >= 2
    reader = LedgerReader(tmp_path / "ledger.sqlite")
    try:
        data = reader.report_data()
    finally:
        reader.close()
    assert all(inc.opportunity_id != victim.opportunity_id for inc in data.inclusions)
    # Our gas is what the included transactions used (split over the items that succeeded), to the wei.
    spent = eth_before - sum([await rpc.get_balance(a) for a, _ in KEEPER_ACCOUNTS])
    assert spent == sum(inc.gas_cost_wei for inc in data.inclusions)


# ---- extra builders next to the devnet's ------------------------------------------------------------


class RecordingBuilder:
    """A builder endpoint that checks each request's X-Flashbots-Signature (recovering the signer from
    keccak256 of the exact body, EIP-191) and records the bundles it accepts; `hang` never answers."""

    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang
        self.bundles: list[dict[str, Any]] = []
        self.signers: set[str] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hang:
            await asyncio.Event().wait()
        from eth_account import Account

        address, signature = request.headers["X-Flashbots-Signature"].split(":")
        message = encode_defunct(text="0x" + keccak256(body).hex())
        recovered = Account.recover_message(message, signature=signature)
        assert recovered.lower() == address.lower()
        self.signers.add(recovered)
        req = orjson.loads(body)
        if req["method"] == "eth_sendBundle":
            self.bundles.append(req["params"][0])
            return web.json_response(
                {"jsonrpc": "2.0", "id": req["id"], "result": {"bundleHash": "0x" + "00" * 32}}
            )
        return web.json_response(
            {"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32601, "message": "no"}}
        )

    async def __aenter__(self) -> RecordingBuilder:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


async def test_builders_listed_next_to_the_devnets_each_get_every_bundle_and_a_hung_one_delays_nobody(
    fresh: Devnet, tmp_path: Path
) -> None:
    net = fresh
    rpc, dep = net.require()
    miner = DevnetMiner(net)
    await create_borrowers(rpc, dep, 200, seed=13, miner=miner)
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    async with RecordingBuilder(hang=True) as hung, RecordingBuilder() as other:
        relays = f"dead={dead},hung={hung.url},other={other.url}"
        async with devnet_keeper(net, tmp_path, relay_urls=relays) as keeper:
            executor = bundle_executor(keeper)
            assert executor.builders.names == ("dead", "hung", "other", "devnet")
            await run_crash(rpc, dep, drop_bps=2_500, blocks=2, mine=True, miner=miner)
            for _ in range(4):
                await step(net, keeper)
            stats = executor.stats
    assert stats.included >= 3
    assert stats.simulation_failed == 0
    # The other builder got every bundle, signed by the keeper's relay identity.
    assert len(other.bundles) == stats.transactions_sent
    assert len(other.signers) == 1
    reader = LedgerReader(tmp_path / "ledger.sqlite")
    try:
        data = reader.report_data()
    finally:
        reader.close()
    by_builder = Counter((s.builder, s.ok) for s in data.submissions)
    assert by_builder[("other", True)] == stats.sent
    assert by_builder[("devnet", True)] == stats.sent
    assert by_builder[("hung", False)] == stats.sent
    assert by_builder[("dead", False)] == stats.sent
    # Simulation fell back past the dead and the hung builder (the recording one cannot simulate).
    assert executor.simulated_by == "devnet"
    assert executor.send_watch.healthy()
