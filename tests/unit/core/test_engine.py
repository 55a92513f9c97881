import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from keeper.core.actions import Action, SendTx, SubmitBundle, TxIntent
from keeper.core.engine import Engine, Supervised
from keeper.core.events import Event, NewBlock


def block(n: int) -> NewBlock:
    return NewBlock(number=n, hash=n.to_bytes(32, "big"), parent_hash=b"", timestamp=n, base_fee_per_gas=1)


class ListCollector:
    def __init__(self, events: list[Event], name: str = "list") -> None:
        self.name = name
        self._events = events

    async def events(self) -> AsyncIterator[Event]:
        for e in self._events:
            yield e
            await asyncio.sleep(0)


class EchoStrategy:
    """Emits one bundle per block; raises on block 2 to prove errors are contained."""

    name = "echo"

    def __init__(self) -> None:
        self.synced = False
        self.seen: list[int] = []

    async def sync_state(self) -> None:
        self.synced = True

    async def process_event(self, event: Event) -> Sequence[Action]:
        assert isinstance(event, NewBlock)
        if event.number == 2:
            raise RuntimeError("boom")
        self.seen.append(event.number)
        return [
            SubmitBundle(
                opportunity_id=f"op{event.number}",
                strategy=self.name,
                target_block=event.number + 1,
                txs=(TxIntent(to="0x" + "00" * 20, data=b""),),
                expected_profit_wei=event.number,
            )
        ]


class RecordingExecutor:
    handles: tuple[type, ...] = (SubmitBundle,)

    def __init__(self, name: str = "rec", fail_on: str | None = None) -> None:
        self.name = name
        self.fail_on = fail_on
        self.actions: list[Action] = []

    async def execute(self, action: Action) -> None:
        if action.opportunity_id == self.fail_on:
            raise RuntimeError("executor boom")
        self.actions.append(action)


def bundle(opp: str, target: int = 1) -> SubmitBundle:
    return SubmitBundle(
        opportunity_id=opp,
        strategy="t",
        target_block=target,
        txs=(TxIntent(to="0x" + "00" * 20, data=b""),),
        expected_profit_wei=1,
    )


def send_tx(opp: str) -> SendTx:
    return SendTx(opportunity_id=opp, strategy="t", tx=TxIntent(to="0x" + "00" * 20, data=b""))


async def test_engine_runs_pipeline_to_completion_and_contains_errors() -> None:
    strategy = EchoStrategy()
    ex = RecordingExecutor("a", fail_on="op3")
    engine = Engine([ListCollector([block(1), block(2), block(3)])], [strategy], [ex], coalesce_blocks=False)
    await asyncio.wait_for(engine.run(), 2)
    assert strategy.synced
    assert strategy.seen == [1, 3]
    assert [a.opportunity_id for a in ex.actions] == ["op1"]
    assert engine.stats["strategy_errors"] == 1
    assert engine.stats["executor_errors"] == 1
    assert engine.stats["events"] == 3


class ScriptedStrategy:
    """Emits the given actions for block 1, nothing afterwards."""

    name = "scripted"

    def __init__(self, actions: Sequence[Action]) -> None:
        self.actions = list(actions)

    async def sync_state(self) -> None:
        return None

    async def process_event(self, event: Event) -> Sequence[Action]:
        if isinstance(event, NewBlock) and event.number == 1:
            return self.actions
        return []


class SendTxExecutor(RecordingExecutor):
    handles = (SendTx,)


async def test_each_action_goes_to_the_executor_of_its_type_only() -> None:
    bundles, singles = RecordingExecutor("bundles"), SendTxExecutor("single")
    strategy = ScriptedStrategy([bundle("b1"), send_tx("s1"), bundle("b2")])
    engine = Engine([ListCollector([block(1)])], [strategy], [bundles, singles])
    await asyncio.wait_for(engine.run(), 2)
    assert [a.opportunity_id for a in bundles.actions] == ["b1", "b2"]
    assert [a.opportunity_id for a in singles.actions] == ["s1"]
    assert engine.stats["unrouted_actions"] == 0


async def test_an_action_no_executor_handles_is_counted_not_delivered() -> None:
    bundles = RecordingExecutor("bundles")
    engine = Engine([ListCollector([block(1)])], [ScriptedStrategy([send_tx("s1"), bundle("b1")])], [bundles])
    await asyncio.wait_for(engine.run(), 2)
    assert [a.opportunity_id for a in bundles.actions] == ["b1"]
    assert engine.stats["unrouted_actions"] == 1


def test_two_executors_for_one_action_type_is_a_wiring_error() -> None:
    with pytest.raises(ValueError, match="SubmitBundle"):
        Engine([ListCollector([])], [], [RecordingExecutor("a"), RecordingExecutor("b")])


class GroupRecorder(RecordingExecutor):
    def __init__(self) -> None:
        super().__init__("group")
        self.groups: list[list[str]] = []

    async def execute_group(self, actions: Sequence[Action]) -> None:
        self.groups.append([a.opportunity_id for a in actions])


async def test_a_group_executor_gets_one_events_actions_together() -> None:
    ex = GroupRecorder()
    engine = Engine([ListCollector([block(1)])], [ScriptedStrategy([bundle("a"), bundle("b")])], [ex])
    await asyncio.wait_for(engine.run(), 2)
    assert ex.groups == [["a", "b"]]
    assert ex.actions == []


class GatedExecutor(RecordingExecutor):
    """Action "slow" waits until action "fast" has been executed: only concurrent execution finishes."""

    def __init__(self) -> None:
        super().__init__("gated")
        self.fast_done = asyncio.Event()
        self.order: list[str] = []

    async def execute(self, action: Action) -> None:
        if action.opportunity_id == "slow":
            await self.fast_done.wait()
        else:
            self.fast_done.set()
        self.order.append(action.opportunity_id)


class TwoBlockStrategy:
    name = "two"

    async def sync_state(self) -> None:
        return None

    async def process_event(self, event: Event) -> Sequence[Action]:
        assert isinstance(event, NewBlock)
        return [bundle("slow" if event.number == 1 else "fast", event.number + 1)]


async def test_actions_of_the_next_block_do_not_wait_for_a_slow_one() -> None:
    ex = GatedExecutor()
    engine = Engine([ListCollector([block(1), block(2)])], [TwoBlockStrategy()], [ex], coalesce_blocks=False)
    await asyncio.wait_for(engine.run(), 5)
    assert ex.order == ["fast", "slow"]


class BlockAwareRecorder(RecordingExecutor):
    def __init__(self) -> None:
        super().__init__("tracker")
        self.blocks: list[int] = []

    async def on_block(self, block: NewBlock) -> None:
        self.blocks.append(block.number)


class SlowStrategy:
    name = "slow"

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def sync_state(self) -> None:
        return None

    async def process_event(self, event: Event) -> Sequence[Action]:
        assert isinstance(event, NewBlock)
        self.seen.append(event.number)
        await asyncio.sleep(0.01)
        return []


async def test_block_aware_executors_see_every_block_even_when_strategies_coalesce() -> None:
    ex = BlockAwareRecorder()
    strategy = SlowStrategy()
    blocks = [block(n) for n in range(1, 21)]
    engine = Engine([ListCollector(blocks)], [strategy], [ex], coalesce_blocks=True)
    await asyncio.wait_for(engine.run(), 5)
    assert ex.blocks == list(range(1, 21))
    assert strategy.seen[-1] == 20


class CrashingCollector:
    name = "crashy"

    async def events(self) -> AsyncIterator[Event]:
        yield block(1)
        raise ConnectionError("socket died")


async def test_unsupervised_collector_crash_stops_the_engine_loudly() -> None:
    engine = Engine([CrashingCollector()], [EchoStrategy()], [RecordingExecutor()])
    with pytest.raises(ExceptionGroup) as info:
        await asyncio.wait_for(engine.run(), 2)
    assert info.group_contains(ConnectionError)


class FlakyCollector:
    """Fails twice, then yields blocks 1..3 and finishes."""

    name = "flaky"

    def __init__(self) -> None:
        self.attempts = 0

    async def events(self) -> AsyncIterator[Event]:
        self.attempts += 1
        if self.attempts <= 2:
            raise ConnectionError("not yet")
        for n in (1, 2, 3):
            yield block(n)


async def test_supervised_collector_restarts() -> None:
    inner = FlakyCollector()
    sup = Supervised(inner, initial_backoff=0.001)
    got = [e async for e in sup.events()]
    assert [e.number for e in got if isinstance(e, NewBlock)] == [1, 2, 3]
    assert sup.restarts == 2


async def test_supervised_gives_up_after_max_restarts() -> None:
    sup = Supervised(FlakyCollector(), max_restarts=1, initial_backoff=0.001)
    with pytest.raises(ConnectionError):
        _ = [e async for e in sup.events()]


def test_engine_requires_a_collector() -> None:
    with pytest.raises(ValueError, match="collector"):
        Engine([], [], [])
