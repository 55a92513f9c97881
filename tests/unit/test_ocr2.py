"""keeper.chain.ocr2: transmit calldata encode/decode, OCR2's median rule, robustness on junk input."""

import pytest
from eth_abi.abi import decode, encode
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.chain import ocr2
from keeper.errors import DecodeError

int192 = st.integers(min_value=ocr2.INT192_MIN, max_value=ocr2.INT192_MAX)
observation_lists = st.lists(int192, min_size=1, max_size=ocr2.MAX_OBSERVATIONS)
bytes32 = st.binary(min_size=32, max_size=32)


def test_selector_is_ocr2_transmit() -> None:
    # OCR2Aggregator.transmit's well-known selector
    assert ocr2.TRANSMIT_SELECTOR.hex() == "b1dc65a4"


def test_known_layout() -> None:
    data = ocr2.encode_transmit([300, 100, 200], epoch_round=0x0102, observations_timestamp=1_700_000_000)
    assert data[:4] == ocr2.TRANSMIT_SELECTOR
    context, report, rs, ss, raw_vs = decode(list(ocr2.TRANSMIT_TYPES), data[4:])
    assert context[0] == bytes(32) and context[2] == bytes(32)
    assert context[1] == (0x0102).to_bytes(32, "big")  # 27 zero bytes, epoch 1, round 2
    assert rs == () and ss == () and raw_vs == bytes(32)
    ts, observers, observations, juels = decode(list(ocr2.REPORT_TYPES), report)
    assert ts == 1_700_000_000
    assert observations == (100, 200, 300)  # sorted, as OCR2 requires
    assert observers == bytes([0, 1, 2]) + bytes(29)
    assert juels == 0


def test_median_rule() -> None:
    # OCR2: observations[len // 2]; for an even count the upper middle value, no averaging.
    assert ocr2.median([1, 2, 3, 4, 5]) == 3
    assert ocr2.median([1, 2, 3, 4]) == 3
    assert ocr2.median([7]) == 7
    with pytest.raises(ValueError):
        ocr2.median([])
    r = ocr2.decode_transmit(ocr2.encode_transmit([10, 40, 20, 30], epoch_round=1, observations_timestamp=0))
    assert r.median == 30


@given(
    observations=observation_lists,
    epoch=st.integers(min_value=0, max_value=2**32 - 1),
    round_=st.integers(min_value=1, max_value=255),
    ts=st.integers(min_value=0, max_value=2**32 - 1),
    juels=int192,
    digest=bytes32,
    extra=bytes32,
    raw_vs=bytes32,
    sigs=st.lists(st.tuples(bytes32, bytes32), max_size=11),
)
def test_round_trip(
    observations: list[int],
    epoch: int,
    round_: int,
    ts: int,
    juels: int,
    digest: bytes,
    extra: bytes,
    raw_vs: bytes,
    sigs: list[tuple[bytes, bytes]],
) -> None:
    epoch_round = ocr2.pack_epoch_round(epoch, round_)
    data = ocr2.encode_transmit(
        observations,
        epoch_round=epoch_round,
        observations_timestamp=ts,
        config_digest=digest,
        extra_hash=extra,
        juels_per_fee_coin=juels,
        rs=[r for r, _ in sigs],
        ss=[s for _, s in sigs],
        raw_vs=raw_vs,
    )
    assert ocr2.is_transmit(data)
    r = ocr2.decode_transmit(data)
    expected = tuple(sorted(observations))
    assert r.observations == expected
    assert r.median == expected[len(expected) // 2]
    assert r.observations_timestamp == ts
    assert r.epoch_round == epoch_round and r.epoch == epoch and r.round == round_
    assert r.config_digest == digest and r.extra_hash == extra and r.raw_vs == raw_vs
    assert r.juels_per_fee_coin == juels
    assert r.rs == tuple(s for s, _ in sigs) and r.ss == tuple(s for _, s in sigs)
    assert r.raw_observers[: len(observations)] == bytes(range(len(observations)))


def test_epoch_round_ignores_context_padding() -> None:
    # The aggregator reads uint40(uint256(reportContext[1])): high bytes do not count.
    data = bytearray(ocr2.encode_transmit([5], epoch_round=0x0203, observations_timestamp=0))
    data[4 + 32] = 0xFF  # first byte of reportContext[1]
    assert ocr2.decode_transmit(bytes(data)).epoch_round == 0x0203


def _raw_transmit(observations: list[int]) -> bytes:
    """Calldata with the observations in the given order (no sorting), as a buggy sender might send."""
    report = encode(list(ocr2.REPORT_TYPES), [0, bytes(32), observations, 0])
    args = [[bytes(32), (1).to_bytes(32, "big"), bytes(32)], report, [], [], bytes(32)]
    return ocr2.TRANSMIT_SELECTOR + encode(list(ocr2.TRANSMIT_TYPES), args)


def test_decode_rejects_what_the_aggregator_rejects() -> None:
    with pytest.raises(DecodeError, match="not sorted"):
        ocr2.decode_transmit(_raw_transmit([3, 1, 2]))
    with pytest.raises(DecodeError, match="no observations"):
        ocr2.decode_transmit(_raw_transmit([]))
    assert ocr2.decode_transmit(_raw_transmit([1, 2, 2])).median == 2


def test_decode_rejects_other_calls_and_truncation() -> None:
    good = ocr2.encode_transmit([1, 2, 3], epoch_round=1, observations_timestamp=0)
    with pytest.raises(DecodeError, match="selector"):
        ocr2.decode_transmit(b"\xa9\x05\x9c\xbb" + good[4:])  # transfer(address,uint256)
    with pytest.raises(DecodeError, match="selector"):
        ocr2.decode_transmit(b"")
    for cut in (5, 100, len(good) - 1):
        with pytest.raises(DecodeError):
            ocr2.decode_transmit(good[:cut])


def test_encode_validates_input() -> None:
    with pytest.raises(ValueError):
        ocr2.encode_transmit([], epoch_round=1, observations_timestamp=0)
    with pytest.raises(ValueError):
        ocr2.encode_transmit([1] * 32, epoch_round=1, observations_timestamp=0)
    with pytest.raises(ValueError):
        ocr2.encode_transmit([ocr2.INT192_MAX + 1], epoch_round=1, observations_timestamp=0)
    with pytest.raises(ValueError):
        ocr2.encode_transmit([1], epoch_round=0, observations_timestamp=0)
    with pytest.raises(ValueError):
        ocr2.encode_transmit([1], epoch_round=2**40, observations_timestamp=0)
    with pytest.raises(ValueError):
        ocr2.encode_transmit([1], epoch_round=1, observations_timestamp=2**32)
    with pytest.raises(ValueError):
        ocr2.encode_transmit([1], epoch_round=1, observations_timestamp=0, rs=[bytes(32)], ss=[])
    with pytest.raises(ValueError):
        ocr2.encode_transmit([1], epoch_round=1, observations_timestamp=0, config_digest=b"x")


def _decode_or_decode_error(data: bytes) -> None:
    try:
        r = ocr2.decode_transmit(data)
    except DecodeError:
        return
    # if it decodes, it is a well-formed report
    assert r.observations and list(r.observations) == sorted(r.observations)
    assert r.median == r.observations[len(r.observations) // 2]


@settings(max_examples=500)
@given(st.binary(max_size=1200))
def test_decode_random_bytes_only_raises_decode_error(data: bytes) -> None:
    _decode_or_decode_error(data)


@settings(max_examples=500)
@given(st.binary(max_size=1200))
def test_decode_random_body_with_selector_only_raises_decode_error(body: bytes) -> None:
    _decode_or_decode_error(ocr2.TRANSMIT_SELECTOR + body)


@settings(max_examples=500)
@given(
    observations=observation_lists,
    mutations=st.lists(
        st.tuples(st.integers(min_value=4, max_value=2000), st.integers(0, 255)), min_size=1, max_size=8
    ),
    cut=st.integers(min_value=0, max_value=64),
)
def test_decode_mutated_calldata_only_raises_decode_error(
    observations: list[int], mutations: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(ocr2.encode_transmit(observations, epoch_round=1, observations_timestamp=0))
    for pos, value in mutations:
        data[pos % len(data)] = value  # mutates offsets, lengths, padding and values
    _decode_or_decode_error(bytes(data[: len(data) - cut]))
