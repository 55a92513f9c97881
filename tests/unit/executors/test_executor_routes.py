"""Executor contract encoders/decoders without a chain: every route kind, ArbitrageParams, the Arbitraged
event, and how the bundle executor matches included items to events (Liquidated by position, Arbitraged
by the item's tag)."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import decode, encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.crypto import keccak

from keeper.errors import DecodeError
from keeper.executors.bundle_executor import _matches
from keeper.executors.executor_contract import (
    ARBITRAGE_SELECTOR,
    ARBITRAGED_TOPIC,
    BATCH_SELECTOR,
    ERRORS,
    LIQUIDATED_TOPIC,
    MIXED_LEGS_TYPE,
    ArbitragedEvent,
    ArbitrageParams,
    BalancerRoute,
    FlashSource,
    LiquidatedEvent,
    LiquidationParams,
    MixedRoute,
    Route,
    RouteLeg,
    V2Route,
    V3Route,
    Venue,
    arbitraged_events,
    decode_arbitrage,
    decode_arbitrage_result,
    decode_arbitraged,
    decode_balancer_path,
    decode_executor_error,
    decode_liquidate,
    decode_mixed_path,
    decode_route,
    encode_arbitrage,
    encode_balancer_path,
    encode_batch,
    encode_liquidate,
    executor_events,
)
from strategies.venues.base import Quote, RouteKind
from strategies.venues.router import executor_route

# Checksummed (digits only, so the checksum is the identity).
A, B, C, D = ("0x" + h * 20 for h in ("11", "22", "33", "44"))
EXECUTOR = "0x" + "55" * 20
PID1 = "0x" + "ab" * 20 + "0000" + "00" * 9 + "01"
PID2 = "0x" + "cd" * 20 + "0000" + "00" * 9 + "02"
TAG = keccak(b"opportunity-1")


def every_route() -> list[Route]:
    v3 = V3Route((A, B, C), (500, 3000))
    v2 = V2Route((A, D, C))
    bal = BalancerRoute((A, B, C), (PID1, PID2))
    return [
        v3,
        v2,
        bal,
        BalancerRoute((A, C), (PID1,)),
        MixedRoute((RouteLeg(10_000, (v3,)),)),
        MixedRoute(
            (
                RouteLeg(3_333, (V3Route((A, B), (100,)), V2Route((B, C)))),
                RouteLeg(3_333, (bal,)),
                RouteLeg(3_334, (V2Route((A, D)), BalancerRoute((D, B), (PID2,)), V3Route((B, C), (500,)))),
            )
        ),
    ]


@pytest.mark.parametrize("route", every_route(), ids=lambda r: type(r).__name__)
def test_every_route_kind_round_trips(route: Route) -> None:
    assert decode_route(int(route.venue), route.encode()) == route
    p = LiquidationParams(
        lending_pool=D,
        collateral=route.token_in,
        debt=route.token_out,
        user=B,
        debt_to_cover=10**18,
        route=route,
        min_profit=5,
        coinbase_bps=1_000,
        coinbase_route=V3Route((C, D), (500,)),
        max_block=99,
        min_out=7,
        coinbase_min_out=8,
    )
    assert decode_liquidate(encode_liquidate(p)) == p


def test_balancer_path_layout() -> None:
    path = encode_balancer_path([A, B, C], [PID1, bytes.fromhex(PID2[2:])])
    assert path == (
        bytes.fromhex("11" * 20) + bytes.fromhex(PID1[2:]) + bytes.fromhex("22" * 20)
    ) + bytes.fromhex(PID2[2:]) + bytes.fromhex("33" * 20)
    assert len(path) == 20 + 2 * 52
    assert decode_balancer_path(path) == BalancerRoute((A, B, C), (PID1, PID2))
    # Pool ids are kept lowercase whatever the input's case.
    assert BalancerRoute((A, B), (PID1.upper().replace("0X", "0x"),)).pool_ids == (PID1,)
    for junk in (b"", path[:-1], path[:20], path + b"\x00"):
        with pytest.raises(DecodeError):
            decode_balancer_path(junk)
    with pytest.raises(ValueError):
        BalancerRoute((A, B), ("0x" + "00" * 31,))
    with pytest.raises(ValueError):
        BalancerRoute((A, B), ())


def test_mixed_path_is_abi_encoded_legs() -> None:
    v3, bal = V3Route((A, B), (500,)), BalancerRoute((B, C), (PID1,))
    route = MixedRoute((RouteLeg(2_500, (v3, bal)), RouteLeg(7_500, (V2Route((A, C)),))))
    raw = route.encode()
    (legs,) = decode([MIXED_LEGS_TYPE], raw)
    assert [(bps, [(v, bytes(p)) for v, p in hops]) for bps, hops in legs] == [
        (2_500, [(1, v3.encode()), (3, bal.encode())]),
        (7_500, [(2, V2Route((A, C)).encode())]),
    ]
    assert raw == encode(
        [MIXED_LEGS_TYPE],
        [[(2_500, [(1, v3.encode()), (3, bal.encode())]), (7_500, [(2, V2Route((A, C)).encode())])]],
    )
    assert (route.token_in, route.token_out, route.venue) == (A, C, Venue.MIXED)
    # The contract's split: floor per leg, the remainder to the last.
    assert route.split(10_001) == [2_500, 7_501]
    assert route.split(3) == [0, 3]
    three = MixedRoute(tuple(RouteLeg(b, (V2Route((A, C)),)) for b in (3_333, 3_333, 3_334)))
    assert three.split(100) == [33, 33, 34] and sum(three.split(10**18 + 7)) == 10**18 + 7


def test_mixed_route_validation() -> None:
    leg = RouteLeg(10_000, (V2Route((A, C)),))
    with pytest.raises(ValueError, match="sum to 10000"):
        MixedRoute((RouteLeg(5_000, (V2Route((A, C)),)),))
    with pytest.raises(ValueError, match="at least one leg"):
        MixedRoute(())
    with pytest.raises(ValueError, match="same input"):
        MixedRoute((RouteLeg(5_000, (V2Route((A, C)),)), RouteLeg(5_000, (V2Route((B, C)),))))
    with pytest.raises(ValueError, match="chain"):
        RouteLeg(10_000, (V2Route((A, B)), V2Route((C, D))))
    with pytest.raises(ValueError):
        RouteLeg(0, (V2Route((A, C)),))
    with pytest.raises(ValueError):
        RouteLeg(10_000, ())
    with pytest.raises(TypeError):
        RouteLeg(10_000, (MixedRoute((leg,)),))  # type: ignore[arg-type]
    # Encoded shapes the contract refuses are refused by the decoder too.
    for legs in ([], [(5_000, [(2, V2Route((A, C)).encode())])], [(10_000, [(4, b"")])], [(10_000, [])]):
        with pytest.raises(DecodeError):
            decode_mixed_path(encode([MIXED_LEGS_TYPE], [legs]))
    for junk in (b"", b"\x00" * 31, b"\xff" * 64):
        with pytest.raises(DecodeError):
            decode_mixed_path(junk)
    with pytest.raises(DecodeError):
        decode_route(0, V2Route((A, C)).encode())


def arb_params(route: Route, **changes: Any) -> ArbitrageParams:
    values: dict[str, Any] = {
        "source": FlashSource.BALANCER_VAULT,
        "token": A,
        "amount": 10**18,
        "route": route,
        "min_out": 10**18 + 1,
        "min_profit": 3,
        "coinbase_bps": 9_000,
        "max_block": 1234,
        "tag": TAG,
        "coinbase_route": V3Route((A, D), (500,)),
        "coinbase_min_out": 9,
    }
    values.update(changes)
    return ArbitrageParams(**values)


def test_arbitrage_params_round_trip_and_layout() -> None:
    cycle = MixedRoute((RouteLeg(10_000, (V3Route((A, B), (100,)), BalancerRoute((B, A), (PID1,)))),))
    for route in (cycle, V3Route((A, B, A), (100, 500)), BalancerRoute((A, B, A), (PID1, PID2))):
        for source in FlashSource:
            p = arb_params(route, source=source)
            data = encode_arbitrage(p)
            assert data[:4] == ARBITRAGE_SELECTOR
            assert decode_arbitrage(data) == p
    p = arb_params(cycle, coinbase_route=None, coinbase_bps=0)
    assert decode_arbitrage(encode_arbitrage(p)) == p
    sig = "arbitrage((uint8,address,uint256,uint8,bytes,uint256,uint256,uint16,bytes,uint256,uint64,bytes32))"
    assert function_signature_to_4byte_selector(sig) == ARBITRAGE_SELECTOR
    t = p.abi_tuple()
    assert (t[0], t[3], t[11]) == (1, 4, TAG) and t[4] == cycle.encode()
    assert p.tag_hex == "0x" + TAG.hex()
    # Batchable next to liquidate.
    batch = encode_batch([encode_arbitrage(p)])
    assert batch[:4] == BATCH_SELECTOR and decode(["bytes[]"], batch[4:]) == ((encode_arbitrage(p),),)


def test_arbitrage_params_validation() -> None:
    cycle = V3Route((A, B, A), (100, 500))
    for bad in (
        {"route": V3Route((A, B), (100,))},  # not a cycle
        {"route": V3Route((B, A, B), (100, 500))},  # a cycle of another token
        {"amount": 0},
        {"coinbase_bps": 10_001},
        {"max_block": 2**64},
        {"tag": b"\x00" * 31},
        {"coinbase_route": V3Route((B, D), (500,))},
        {"min_out": -1},
    ):
        with pytest.raises(ValueError):
            arb_params(bad.pop("route", cycle), **bad)
    with pytest.raises(ValueError):
        arb_params(cycle, source=0)
    for junk in (b"", ARBITRAGE_SELECTOR, ARBITRAGE_SELECTOR + b"\x00" * 64, encode_liquidate_junk()):
        with pytest.raises(DecodeError):
            decode_arbitrage(junk)


def encode_liquidate_junk() -> bytes:
    return function_signature_to_4byte_selector("liquidate(uint256)") + b"\x00" * 32


def arbitraged_log(
    tag: bytes, token: str, values: tuple[int, ...], address: str = EXECUTOR
) -> dict[str, Any]:
    return {
        "address": address,
        "topics": [ARBITRAGED_TOPIC, "0x" + tag.hex(), "0x" + "00" * 12 + token[2:]],
        "data": "0x" + encode(["uint256"] * 5, list(values)).hex(),
    }


def liquidated_log(pool: str, user: str, collateral: str, debt: str, profit: int) -> dict[str, Any]:
    def topic(a: str) -> str:
        return "0x" + "00" * 12 + a[2:]

    data = encode(["address"] + ["uint256"] * 6, [debt, 100, 200, 300, 4, profit, 6])
    return {
        "address": EXECUTOR,
        "topics": [LIQUIDATED_TOPIC, topic(pool), topic(user), topic(collateral)],
        "data": "0x" + data.hex(),
    }


def test_arbitraged_event_and_receipt_helpers() -> None:
    log = arbitraged_log(TAG, A, (10**18, 10**18 + 500, 7, 300, 200))
    ev = decode_arbitraged(log)
    assert ev == ArbitragedEvent(EXECUTOR, TAG, A, 10**18, 10**18 + 500, 7, 300, 200)
    assert ev.gross_profit == 493 and ev.tag_hex == "0x" + TAG.hex()
    liq = liquidated_log(D, B, C, A, 77)
    other = dict(log, address="0x" + "66" * 20)
    receipt = {"logs": [liq, {"topics": []}, log, other]}
    events = executor_events(receipt, EXECUTOR)
    assert [type(x) for x in events] == [LiquidatedEvent, ArbitragedEvent]
    assert len(executor_events(receipt)) == 3
    assert arbitraged_events(receipt, EXECUTOR) == [ev]
    for junk in (
        {"topics": [ARBITRAGED_TOPIC], "data": "0x", "address": EXECUTOR},
        dict(log, data="0x1234"),
        dict(log, topics=[ARBITRAGED_TOPIC, "0x12", log["topics"][2]]),
        dict(log, topics=[LIQUIDATED_TOPIC, *log["topics"][1:]]),
    ):
        with pytest.raises(DecodeError):
            decode_arbitraged(junk)
    ret = encode(["uint256", "uint256"], [5, 6])
    assert decode_arbitrage_result(ret) == (5, 6)
    with pytest.raises(DecodeError):
        decode_arbitrage_result(ret[:-1])


def test_new_errors_decode() -> None:
    data = function_signature_to_4byte_selector("InsufficientOutput(uint256,uint256)") + encode(
        ["uint256", "uint256"], [3, 4]
    )
    assert decode_executor_error(data) == ("InsufficientOutput", (3, 4))
    assert ("InsufficientOutput", ("uint256", "uint256")) in ERRORS.values()


def test_items_match_their_own_event() -> None:
    """A liquidation item matches its Liquidated event by position; an item with meta["tag"] matches only
    the Arbitraged event with that tag (any case, with or without 0x, or bytes)."""
    liq = decode_liquidated_helper()
    arb = decode_arbitraged(arbitraged_log(TAG, A, (1, 2, 0, 1, 0)))
    other = decode_arbitraged(arbitraged_log(keccak(b"other"), A, (1, 2, 0, 1, 0)))
    liq_meta = {"pool": D, "user": B, "collateral_asset": C, "debt_asset": A}
    assert _matches(liq, liq_meta) and not _matches(arb, liq_meta)
    for tag in ("0x" + TAG.hex(), "0x" + TAG.hex().upper(), TAG.hex(), TAG):
        meta = {"tag": tag}
        assert _matches(arb, meta) and not _matches(other, meta) and not _matches(liq, meta)
    # A tag wins over position fields.
    assert not _matches(liq, {**liq_meta, "tag": "0x" + TAG.hex()})


def decode_liquidated_helper() -> LiquidatedEvent:
    from keeper.executors.executor_contract import decode_liquidated

    return decode_liquidated(liquidated_log(D, B, C, A, 77))


def test_router_builds_balancer_routes_with_pool_ids() -> None:
    pool1, pool2 = "0x" + "ab" * 20, "0x" + "cd" * 20
    q1 = Quote("balancer_stable", RouteKind.BALANCER_V2, pool1, A, C, 10, 9, 100, 1)
    q2 = Quote("balancer_stable", RouteKind.BALANCER_V2, pool2, C, B, 9, 8, 100, 1)
    ids = {"0x" + "AB" * 20: PID1, pool2: PID2}  # any case
    assert executor_route([q1, q2], pool_ids=ids) == BalancerRoute((A, C, B), (PID1, PID2))
    assert executor_route([q1], pool_ids=lambda pool: PID1) == BalancerRoute((A, C), (PID1,))
    with pytest.raises(ValueError, match="pool id"):
        executor_route([q1])
    with pytest.raises(ValueError, match="pool id"):
        executor_route([q1], pool_ids={})
