"""liquidateSubsidized without a chain: calldata and result round trips, the Subsidized event paired with
its call's Liquidated, the error, and the bundle executor settling a subsidized item at -shortfall after a
restart (`reconcile`, a fake node and a real ledger)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector

from keeper.chain.signer import TxSigner
from keeper.errors import DecodeError
from keeper.executors.bundle_executor import BundleExecutor
from keeper.executors.executor_contract import (
    ARBITRAGED_TOPIC,
    BATCHABLE_SELECTORS,
    LIQUIDATE_SUBSIDIZED_SELECTOR,
    LIQUIDATED_TOPIC,
    SUBSIDIZED_TOPIC,
    LiquidatedEvent,
    LiquidationParams,
    SubsidizedEvent,
    V3Route,
    decode_executor_error,
    decode_item_result,
    decode_liquidate_subsidized,
    decode_liquidate_subsidized_result,
    decode_subsidized,
    encode_batch,
    encode_liquidate,
    encode_liquidate_subsidized,
    executor_events,
    liquidated_events,
    subsidized_events,
)
from keeper.ledger import Ledger
from keeper.ledger import Opportunity as LedgerOpportunity

A, B, C, D = ("0x" + h * 20 for h in ("11", "22", "33", "44"))
EXECUTOR = "0x" + "55" * 20
TX = "0x" + "ab" * 32


def topic(a: str) -> str:
    return "0x" + "00" * 12 + a[2:]


def liquidated_log(pool: str, user: str, collateral: str, debt: str, profit: int) -> dict[str, Any]:
    data = encode(["address"] + ["uint256"] * 6, [debt, 100, 200, 90, 1, profit, 0])
    return {
        "address": EXECUTOR,
        "topics": [LIQUIDATED_TOPIC, topic(pool), topic(user), topic(collateral)],
        "data": "0x" + data.hex(),
        "blockNumber": "0x65",
        "transactionHash": TX,
    }


def subsidized_log(pool: str, user: str, debt: str, shortfall: int) -> dict[str, Any]:
    return {
        "address": EXECUTOR,
        "topics": [SUBSIDIZED_TOPIC, topic(pool), topic(user)],
        "data": "0x" + encode(["address", "uint256"], [debt, shortfall]).hex(),
        "blockNumber": "0x65",
        "transactionHash": TX,
    }


def params() -> LiquidationParams:
    return LiquidationParams(
        lending_pool=D,
        collateral=C,
        debt=A,
        user=B,
        debt_to_cover=10**9,
        route=V3Route((C, A), (500,)),
        min_profit=0,
        coinbase_bps=0,
        max_block=101,
        min_out=5,
    )


def test_calldata_result_and_error() -> None:
    p = params()
    data = encode_liquidate_subsidized(p, 12_345)
    assert data[:4] == LIQUIDATE_SUBSIDIZED_SELECTOR in BATCHABLE_SELECTORS
    assert decode_liquidate_subsidized(data) == (p, 12_345)
    encode_batch([data, encode_liquidate(p)])  # batchable
    with pytest.raises(DecodeError):
        decode_liquidate_subsidized(encode_liquidate(p))
    with pytest.raises(ValueError):
        encode_liquidate_subsidized(p, -1)
    # (profit, coinbasePaid, subsidy): the item's signed profit is minus the subsidy.
    ret = encode(["uint256"] * 3, [0, 0, 777])
    assert decode_liquidate_subsidized_result(ret) == (0, 0, 777)
    assert decode_item_result(ret) == (-777, 0)
    assert decode_item_result(encode(["uint256"] * 2, [5, 6])) == (5, 6)
    with pytest.raises(DecodeError):
        decode_item_result(b"\x00" * 65)
    err = function_signature_to_4byte_selector("SubsidyTooHigh(uint256,uint256)") + encode(
        ["uint256", "uint256"], [10, 9]
    )
    assert decode_executor_error(err) == ("SubsidyTooHigh", (10, 9))


def test_subsidized_event_pairs_with_its_liquidation() -> None:
    sub = subsidized_log(D, B, A, 42)
    assert decode_subsidized(sub) == SubsidizedEvent(EXECUTOR, D, B, A, 42)
    with pytest.raises(DecodeError):
        decode_subsidized(liquidated_log(D, B, C, A, 0))
    # [a profitable liquidation of user C, a subsidized one of user B, its Subsidized; another executor's
    # Subsidized for B is not ours]
    other = dict(subsidized_log(D, B, A, 99), address="0x" + "66" * 20)
    receipt = {
        "logs": [liquidated_log(D, C, B, A, 7), liquidated_log(D, B, C, A, 0), sub, other],
    }
    events = liquidated_events(receipt, EXECUTOR)
    assert [(e.user, e.subsidy, e.realized_profit) for e in events] == [(C, 0, 7), (B, 42, -42)]
    mixed = executor_events(receipt, EXECUTOR)
    assert [e.subsidy for e in mixed if isinstance(e, LiquidatedEvent)] == [0, 42]
    assert subsidized_events(receipt, EXECUTOR) == [SubsidizedEvent(EXECUTOR, D, B, A, 42)]
    # The same position liquidated twice in one batch: each Subsidized goes to the call just before it.
    twice = {
        "logs": [
            liquidated_log(D, B, C, A, 0),
            subsidized_log(D, B, A, 1),
            liquidated_log(D, B, C, A, 0),
            subsidized_log(D, B, A, 2),
        ]
    }
    assert [e.subsidy for e in liquidated_events(twice, EXECUTOR)] == [1, 2]


class FakeNode:
    """What `reconcile` reads: the head, our executor's logs, the receipt and the block header."""

    def __init__(self, logs: list[dict[str, Any]]) -> None:
        self.logs = logs
        self.filters: list[Any] = []

    async def block_number(self) -> int:
        return 110

    async def call(self, method: str, params: list[Any]) -> Any:
        if method == "eth_getLogs":
            self.filters.append(params[0])
            return self.logs
        if method == "eth_getBlockByNumber":
            return {"timestamp": "0x10"}
        raise AssertionError(method)

    async def batch(self, calls: list[Any], *, raise_errors: bool = True) -> list[Any]:
        assert all(m == "eth_getTransactionReceipt" for m, _ in calls)
        receipt = {
            "transactionHash": TX,
            "blockNumber": "0x65",
            "gasUsed": hex(500_000),
            "effectiveGasPrice": hex(10**9),
            "status": "0x1",
            "logs": self.logs,
        }
        return [receipt for _ in calls]


async def test_reconcile_settles_a_subsidized_item_at_minus_the_shortfall(tmp_path: Path) -> None:
    async with Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        opp_id = f"aave-v3:{B}:{C}:{A}"
        await ledger.record_opportunity(
            LedgerOpportunity(
                id=opp_id,
                strategy="liquidations",
                protocol="aave-v3",
                detected_block=100,
                detected_block_timestamp=1,
                expected_profit=0,
                user=B,
                collateral_asset=C,
                debt_asset=A,
            ),
            wait=True,
        )
        assert await ledger.claim_send(opp_id, 101)
        node = FakeNode([liquidated_log(D, B, C, A, 0), subsidized_log(D, B, A, 4_000)])

        async def to_wei(token: str) -> tuple[int, int]:
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
        assert await executor.reconcile() == 1
        assert node.filters[0]["topics"] == [[LIQUIDATED_TOPIC, SUBSIDIZED_TOPIC, ARBITRAGED_TOPIC]]
        await ledger.flush()
        (inc,) = await ledger.inclusions(opp_id)
        assert inc.realized_profit == -4_000 and inc.realized_profit_asset == A
        assert inc.realized_profit_wei == -4_000 * 10**12
        assert inc.gas_cost_wei == 500_000 * 10**9 and inc.success
