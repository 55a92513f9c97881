from keeper.core.actions import ForeignTx, SubmitBundle, TxIntent
from keeper.executors.bundle_executor import bundle_jobs
from keeper.executors.packing import (
    BATCH_OVERHEAD_GAS,
    NO_SENDER,
    OVER_BUDGET,
    BlockSlots,
    gas_limit_for,
    pack,
)

EXECUTOR = "0x" + "11" * 20
OTHER = "0x" + "22" * 20


def item(opp: str, gas: int = 1_000_000, *, target: int = 10, to: str = EXECUTOR, batchable: bool = True):
    return SubmitBundle(
        opportunity_id=opp,
        strategy="t",
        target_block=target,
        txs=(TxIntent(to=to, data=opp.encode(), gas_estimate=gas, batchable=batchable),),
        expected_profit_wei=1,
    )


def ids(plan) -> list[str]:
    return [a.opportunity_id for a in plan.items]


def test_a_blocks_items_share_one_transaction_in_ranked_order() -> None:
    slots = BlockSlots(senders=3, gas_budget=20_000_000)
    plans, skipped = pack([item("a"), item("b"), item("c")], slots, max_tx_gas=16_000_000)
    assert skipped == []
    assert len(plans) == 1
    assert ids(plans[0]) == ["a", "b", "c"]
    assert plans[0].batched
    assert plans[0].gas_estimate == 3_000_000 + BATCH_OVERHEAD_GAS
    assert plans[0].gas_limit == gas_limit_for(plans[0].gas_estimate, 16_000_000)
    assert slots.used_gas[10] == plans[0].gas_estimate
    assert slots.used_senders[10] == 1


def test_the_per_transaction_cap_splits_across_senders() -> None:
    slots = BlockSlots(senders=5, gas_budget=100_000_000)
    plans, skipped = pack([item(str(i)) for i in range(30)], slots, max_tx_gas=16_000_000)
    assert skipped == []
    assert [p.sender_index for p in plans] == list(range(len(plans)))
    assert [a for p in plans for a in ids(p)] == [str(i) for i in range(30)]
    assert all(p.gas_limit <= 16_000_000 for p in plans)
    assert len(plans) == 3  # 12 items of 1M (+ overhead, x1.25) fit under 16M


def test_the_gas_budget_stops_the_block_and_later_groups_share_it() -> None:
    slots = BlockSlots(senders=5, gas_budget=5_000_000)
    plans, skipped = pack([item(str(i)) for i in range(8)], slots, max_tx_gas=16_000_000)
    assert [a for p in plans for a in ids(p)] == ["0", "1", "2", "3"]
    assert [s.reason for s in skipped] == [OVER_BUDGET] * 4
    # A second group for the same block has only what is left of the budget (and of the senders).
    plans2, skipped2 = pack([item("x", 500_000)], slots, max_tx_gas=16_000_000)
    assert skipped2 == []
    assert plans2[0].sender_index == 1
    # Another block starts afresh.
    plans3, _ = pack([item("y", target=11)], slots, max_tx_gas=16_000_000)
    assert plans3[0].sender_index == 0


def test_a_smaller_item_after_one_over_budget_still_fits() -> None:
    slots = BlockSlots(senders=2, gas_budget=2_500_000)
    plans, skipped = pack([item("a"), item("big", 3_000_000), item("b")], slots, max_tx_gas=16_000_000)
    assert [a for p in plans for a in ids(p)] == ["a", "b"]
    assert [s.action.opportunity_id for s in skipped] == ["big"]


def test_unbatchable_bundles_get_their_own_transaction_and_sender() -> None:
    foreign = SubmitBundle(
        opportunity_id="backrun",
        strategy="t",
        target_block=10,
        txs=(
            ForeignTx(raw=b"\x02", hash=b"\x00" * 32),
            TxIntent(to=EXECUTOR, data=b"", gas_estimate=700_000),
        ),
        expected_profit_wei=1,
    )
    slots = BlockSlots(senders=2, gas_budget=30_000_000)
    plans, skipped = pack([item("a"), foreign, item("b"), item("c", to=OTHER)], slots, max_tx_gas=16_000_000)
    assert [ids(p) for p in plans] == [["a"], ["backrun"]]
    assert not plans[0].batched
    assert [(s.action.opportunity_id, s.reason) for s in skipped] == [("b", NO_SENDER), ("c", NO_SENDER)]


def test_items_for_another_contract_start_a_new_transaction() -> None:
    slots = BlockSlots(senders=3, gas_budget=30_000_000)
    plans, _ = pack([item("a"), item("b", to=OTHER), item("c")], slots, max_tx_gas=16_000_000)
    assert [ids(p) for p in plans] == [["a"], ["b"], ["c"]]


def backrun(opp: str, oracle: ForeignTx, gas: int = 1_000_000) -> SubmitBundle:
    return SubmitBundle(
        opportunity_id=opp,
        strategy="t",
        target_block=10,
        txs=(oracle, TxIntent(to=EXECUTOR, data=opp.encode(), gas_estimate=gas, batchable=True)),
        expected_profit_wei=1,
    )


def test_backruns_of_one_update_share_one_transaction_right_after_it() -> None:
    oracle = ForeignTx(raw=b"\x02oracle", hash=b"\x01" * 32)
    other = ForeignTx(raw=b"\x02other", hash=b"\x02" * 32)
    slots = BlockSlots(senders=4, gas_budget=60_000_000)
    actions = [item("plain"), backrun("b1", oracle), backrun("b2", oracle), backrun("c1", other)]
    plans, skipped = pack(actions, slots, max_tx_gas=16_000_000)
    assert skipped == []
    by_items = {tuple(ids(p)): p for p in plans}
    assert set(by_items) == {("plain",), ("b1", "b2"), ("c1",)}
    assert by_items[("b1", "b2")].prefix == (oracle,)
    assert by_items[("b1", "b2")].batched
    assert by_items[("c1",)].prefix == (other,)
    assert by_items[("plain",)].prefix == ()
    assert len({p.sender_index for p in plans}) == 3


def test_a_backrun_bigger_than_one_transaction_spreads_over_senders_behind_the_same_update() -> None:
    oracle = ForeignTx(raw=b"\x02oracle", hash=b"\x01" * 32)
    slots = BlockSlots(senders=4, gas_budget=100_000_000)
    plans, skipped = pack([backrun(str(i), oracle) for i in range(15)], slots, max_tx_gas=16_000_000)
    assert skipped == []
    assert [len(p.items) for p in plans] == [12, 3]
    assert all(p.prefix == (oracle,) for p in plans)
    assert [p.sender_index for p in plans] == [0, 1]
    assert [[len(p.items) for p in job] for job in bundle_jobs(plans)] == [[12, 3]]


def test_gas_splits_exactly_over_a_batchs_items() -> None:
    from keeper.executors.bundle_executor import split_gas

    for total, weights in [
        (1_000_003, [1, 1, 1]),
        (7, [0, 10]),
        (123_456_789, [700_000, 950_000, 1]),
        (0, [5]),
    ]:
        parts = split_gas(total, weights)
        assert sum(parts) == total
        assert all(p >= 0 for p in parts)
    assert split_gas(10, []) == []
    assert split_gas(900, [1, 2]) == [300, 600]
