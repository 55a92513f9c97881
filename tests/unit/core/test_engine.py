import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from keeper.core.actions import Action, SubmitBundle, TxIntent
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
    def __init__(self, name: str = "rec", fail_on: str | None = None) -> None:
        self.name = name
        self.fail_on = fail_on
        self.actions: list[Action] = []

    async def execute(self, action: Action) -> None:
        if action.opportunity_id == self.fail_on:
            raise RuntimeError("executor boom")
        self.actions.append(action)


async def test_engine_runs_pipeline_to_completion_and_contains_errors() -> None:
    strategy = EchoStrategy()
    ex1, ex2 = RecordingExecutor("a"), RecordingExecutor("b", fail_on="op3")
    engine = Engine(
        [ListCollector([block(1), block(2), block(3)])], [strategy], [ex1, ex2], coalesce_blocks=False
    )
    await asyncio.wait_for(engine.run(), 2)
    assert strategy.synced
    assert strategy.seen == [1, 3]
    assert [a.opportunity_id for a in ex1.actions] == ["op1", "op3"]
    assert [a.opportunity_id for a in ex2.actions] == ["op1"]
    assert engine.stats["strategy_errors"] == 1
    assert engine.stats["executor_errors"] == 1
    assert engine.stats["events"] == 3


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
