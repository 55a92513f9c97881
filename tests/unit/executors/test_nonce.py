"""NonceManager against a fake chain: reservations, cap, resync/drift, gaps, stale reservations."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from keeper.errors import JsonRpcError
from keeper.executors.nonce import (
    ChainNonces,
    NonceError,
    NonceManager,
    SlotState,
    TooManyInFlight,
    is_nonce_too_low,
)

ADDR = "0x" + "aa" * 20


class FakeChain:
    """eth_getTransactionCount only; `latest`/`pending` are set by the test."""

    def __init__(self, latest: int = 0, pending: int | None = None) -> None:
        self.latest = latest
        self.pending = latest if pending is None else pending
        self.calls = 0

    async def call(self, method: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        assert method == "eth_getTransactionCount"
        assert isinstance(params, list) and params[0] == ADDR
        self.calls += 1
        await asyncio.sleep(0)
        return hex(self.latest if params[1] == "latest" else self.pending)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def started(chain: FakeChain, **kw: Any) -> NonceManager:
    nm = NonceManager(chain, ADDR, **kw)
    await nm.start()
    return nm


async def test_start_syncs_from_pending_and_reserves_in_order() -> None:
    nm = await started(FakeChain(latest=5, pending=7))
    assert nm.next_nonce == 7
    assert [await nm.reserve() for _ in range(3)] == [7, 8, 9]
    assert nm.in_flight == (7, 8, 9)


async def test_not_started_is_an_error_but_reserve_self_starts() -> None:
    nm = NonceManager(FakeChain(latest=3), ADDR)
    with pytest.raises(NonceError):
        _ = nm.next_nonce
    assert await nm.reserve() == 3


async def test_concurrent_reserves_are_unique() -> None:
    nm = await started(FakeChain(latest=0))
    got = await asyncio.gather(*(nm.reserve() for _ in range(16)))
    assert sorted(got) == list(range(16))


async def test_cap_on_in_flight_and_release_by_confirmation() -> None:
    chain = FakeChain(latest=0)
    nm = await started(chain, max_in_flight=16)
    for _ in range(16):
        n = await nm.reserve()
        nm.mark_sent(n, f"0x{n:064x}")
    with pytest.raises(TooManyInFlight):
        await nm.reserve()
    confirmed = nm.observe(ChainNonces(latest=4, pending=16))
    assert confirmed == [0, 1, 2, 3]
    assert await nm.reserve() == 16
    assert len(nm.in_flight) == 13


async def test_release_of_the_top_reuses_the_nonce() -> None:
    nm = await started(FakeChain(latest=2))
    a = await nm.reserve()
    b = await nm.reserve()
    nm.release(b)
    assert nm.next_nonce == b
    nm.release(a)
    assert nm.next_nonce == a == 2
    assert nm.in_flight == ()


async def test_reservation_context_releases_unsent() -> None:
    nm = await started(FakeChain(latest=0))
    async with nm.reservation() as n:
        assert n == 0
    assert nm.next_nonce == 0
    async with nm.reservation() as n:
        nm.mark_sent(n, "0x01")
    assert nm.slot(0) is not None and nm.slot(0).state is SlotState.SENT  # type: ignore[union-attr]
    with pytest.raises(RuntimeError):
        async with nm.reservation():
            raise RuntimeError("signing failed")
    assert nm.next_nonce == 1


async def test_released_middle_nonce_is_a_gap_filled_by_a_noop() -> None:
    chain = FakeChain(latest=10)
    nm = await started(chain)
    gap = await nm.reserve()
    top = await nm.reserve()
    nm.mark_sent(top, "0xtop")
    nm.release(gap)
    assert nm.slot(gap).state is SlotState.RELEASED  # type: ignore[union-attr]
    # The node holds nothing contiguous: pending stays at 10 (the tx at 11 is queued behind the gap).
    report = nm.gaps(ChainNonces(latest=10, pending=10))
    assert report.fill == (gap,)
    assert report.resend == ()

    filled: list[int] = []

    async def filler(n: int) -> str:
        filled.append(n)
        return "0xnoop"

    assert await nm.fill_gaps(filler) == [gap]
    assert filled == [gap]
    assert nm.slot(gap).state is SlotState.SENT and nm.slot(gap).tx_hash == "0xnoop"  # type: ignore[union-attr]
    assert nm.gaps(ChainNonces(latest=10, pending=10)).fill == ()
    # Both mined.
    chain.latest = chain.pending = 12
    await nm.resync()
    assert nm.in_flight == () and nm.next_nonce == 12


async def test_stale_reservation_becomes_a_gap() -> None:
    clock = Clock()
    nm = await started(FakeChain(latest=0), stale_after=30.0, clock=clock)
    stuck = await nm.reserve()  # the caller died between reserve and send
    later = await nm.reserve()
    nm.mark_sent(later, "0x02")
    assert nm.gaps(ChainNonces(0, 0)).fill == ()  # may still be in progress
    clock.now += 31
    assert nm.gaps(ChainNonces(0, 0)).fill == (stuck,)


async def test_sent_but_missing_at_the_node_is_reported_for_resend() -> None:
    nm = await started(FakeChain(latest=0))
    for _ in range(3):
        n = await nm.reserve()
        nm.mark_sent(n, f"0x{n}")
    # The node evicted nonce 0 (fee below base fee): pending stops at 0.
    report = nm.gaps(ChainNonces(latest=0, pending=0))
    assert report.fill == ()
    assert report.resend == (0,)
    # Holding 0 and 1 but not 2 is fine: 2 is the top, nothing waits behind it.
    assert nm.gaps(ChainNonces(latest=0, pending=2)) == nm.gaps(ChainNonces(latest=0, pending=3))


async def test_drift_from_another_process_moves_next_up() -> None:
    chain = FakeChain(latest=0)
    nm = await started(chain)
    n = await nm.reserve()
    assert n == 0
    # Another process used nonces 0..4; our send of 0 got "nonce too low".
    chain.latest = chain.pending = 5
    nm.forget(n)
    await nm.resync()
    assert nm.next_nonce == 5 and not nm.in_flight
    assert await nm.reserve() == 5
    # Pending txs from another process (not yet mined) also move us up.
    chain.pending = 9
    await nm.resync()
    assert nm.next_nonce == 9
    assert nm.in_flight == (5,)


async def test_resync_after_reorg_with_nothing_in_flight_follows_the_chain() -> None:
    chain = FakeChain(latest=8)
    nm = await started(chain)
    assert nm.next_nonce == 8
    # A reorg un-mined two of our txs and the node did not keep them.
    chain.latest = chain.pending = 6
    await nm.resync()
    assert nm.next_nonce == 6
    # ... or kept them in its pool.
    chain.latest, chain.pending = 6, 8
    await nm.resync()
    assert nm.next_nonce == 8


async def test_resync_keeps_our_in_flight_nonces() -> None:
    chain = FakeChain(latest=0)
    nm = await started(chain)
    for _ in range(3):
        n = await nm.reserve()
        nm.mark_sent(n, f"0x{n}")
    chain.latest, chain.pending = 1, 1  # node lost 1 and 2
    await nm.resync()
    assert nm.next_nonce == 3  # never hands out 1 or 2 again while we track them
    assert nm.in_flight == (1, 2)
    assert nm.gaps().resend == (1,)


def test_nonce_too_low_messages() -> None:
    for msg in (
        "nonce too low",
        "Nonce too low: next nonce 5, tx nonce 3",
        "NonceTooLow",
        "OldNonce",
        "nonce has already been used",
        "Transaction nonce is too low. Try incrementing the nonce.",
    ):
        assert is_nonce_too_low(JsonRpcError(-32000, msg)), msg
        assert is_nonce_too_low(ValueError(msg)), msg
    for msg in ("replacement transaction underpriced", "insufficient funds", "nonce too high"):
        assert not is_nonce_too_low(JsonRpcError(-32000, msg)), msg


def test_bad_cap() -> None:
    with pytest.raises(ValueError):
        NonceManager(FakeChain(), ADDR, max_in_flight=0)
