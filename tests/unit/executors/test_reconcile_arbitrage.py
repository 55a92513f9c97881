"""After a restart, an arbitrage the ledger left open is found on chain by its tag (which follows from its
opportunity id and claimed target block) and settled at the event's profit, valued in wei."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from eth_abi.abi import encode

from keeper.chain.signer import TxSigner
from keeper.executors.bundle_executor import BundleExecutor
from keeper.executors.executor_contract import ARBITRAGED_TOPIC, arbitrage_tag
from keeper.ledger import Ledger, Status
from keeper.ledger import Opportunity as LedgerOpportunity
from tests.unit.executors.test_subsidized import EXECUTOR, FakeNode, topic

USDC = "0x" + "66" * 20


def arbitraged_log(tag: bytes, token: str, amount_in: int, amount_out: int, profit: int) -> dict[str, Any]:
    data = encode(["uint256"] * 5, [amount_in, amount_out, 0, profit, 7])
    return {
        "address": EXECUTOR,
        "topics": [ARBITRAGED_TOPIC, "0x" + tag.hex(), topic(token)],
        "data": "0x" + data.hex(),
        "blockNumber": "0x65",
        "transactionHash": "0x" + "ab" * 32,
    }


def opportunity(oid: str) -> LedgerOpportunity:
    return LedgerOpportunity(
        id=oid,
        strategy="peg",
        protocol="peg",
        detected_block=100,
        detected_block_timestamp=1,
        expected_profit=5,
    )


async def test_an_open_arbitrage_is_settled_from_its_tagged_event(tmp_path: Path) -> None:
    async with Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        landed, missed = "peg:USDC/USDT:0xa>0xb:0xc#2", "peg:DAI/USDC:0xd>0xe:0xf"
        for oid in (landed, missed):
            await ledger.record_opportunity(opportunity(oid), wait=True)
        assert await ledger.claim_send(landed, 101)  # mined (0x65) with its event
        assert await ledger.claim_send(missed, 101)  # mined without one
        # The event of the landed one (tagged by its base id and target block) and one of another
        # arbitrage that is not ours to settle (another target block).
        node = FakeNode(
            [
                arbitraged_log(arbitrage_tag(landed, 101), USDC, 1_000, 1_300, 150),
                arbitraged_log(arbitrage_tag(missed, 102), USDC, 1_000, 1_300, 150),
            ]
        )

        async def to_wei(token: str) -> tuple[int, int]:
            assert token.lower() == USDC
            return (10**12, 1)

        executor = BundleExecutor(
            cast(Any, node),
            [TxSigner.from_key("0x" + "01" * 32)],
            cast(Any, None),
            chain_id=1,
            min_profit_wei=0,
            ledger=ledger,
            executor_address=EXECUTOR,
            token_to_wei=to_wei,
        )
        assert await executor.reconcile() == 2
        await ledger.flush()
        (inc,) = await ledger.inclusions(landed)
        assert inc.realized_profit == 150 and inc.realized_profit_asset.lower() == USDC
        assert inc.realized_profit_wei == 150 * 10**12 and inc.builder_payment_wei == 7
        assert await ledger.inclusions(missed) == []
        assert (await ledger.opportunity(missed)).status is Status.GONE  # type: ignore[union-attr]
