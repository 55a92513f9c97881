"""Chainlink OCR2 `transmit` calldata: encode (devnet price updates) and decode (pending oracle updates).

OCR2Aggregator.transmit(bytes32[3] reportContext, bytes report, bytes32[] rs, bytes32[] ss, bytes32 rawVs):
- reportContext[0] = config digest; reportContext[1] = 27 zero bytes + 4-byte epoch + 1-byte round
  (the low 40 bits, "epochAndRound"); reportContext[2] = extra hash.
- report = abi.encode(uint32 observationsTimestamp, bytes32 rawObservers, int192[] observations,
  int192 juelsPerFeeCoin), observations sorted ascending; rawObservers byte i = oracle index of
  observation i.
- The new answer is the median `observations[len(observations) // 2]`.

Pure functions: no I/O, no clock. Decoding never raises anything but `DecodeError` on bad input, so a
mempool strategy can feed it arbitrary pending-transaction input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_utils.abi import function_signature_to_4byte_selector

from keeper.errors import DecodeError

TRANSMIT_SIGNATURE = "transmit(bytes32[3],bytes,bytes32[],bytes32[],bytes32)"
TRANSMIT_SELECTOR: bytes = function_signature_to_4byte_selector(TRANSMIT_SIGNATURE)
TRANSMIT_TYPES = ("bytes32[3]", "bytes", "bytes32[]", "bytes32[]", "bytes32")
REPORT_TYPES = ("uint32", "bytes32", "int192[]", "int192")

MAX_OBSERVATIONS = 31
"""OCR2's maxNumOracles: rawObservers has one byte per observation in a bytes32."""
INT192_MIN = -(2**191)
INT192_MAX = 2**191 - 1
EPOCH_ROUND_MAX = 2**40 - 1
ZERO32 = bytes(32)


@dataclass(frozen=True, slots=True)
class TransmitReport:
    """A decoded `transmit` call."""

    observations: tuple[int, ...]
    """Sorted ascending (a report that is not would revert on chain and fails to decode)."""
    median: int
    """The answer the feed will record: observations[len // 2]."""
    observations_timestamp: int
    epoch_round: int
    """uint40: epoch << 8 | round. A feed accepts only a value above its latest one."""
    config_digest: bytes
    extra_hash: bytes
    raw_observers: bytes
    juels_per_fee_coin: int
    rs: tuple[bytes, ...]
    ss: tuple[bytes, ...]
    raw_vs: bytes

    @property
    def epoch(self) -> int:
        return self.epoch_round >> 8

    @property
    def round(self) -> int:
        return self.epoch_round & 0xFF


def median(observations: Sequence[int]) -> int:
    """OCR2's median of sorted observations: the upper one of the two middle values for even counts."""
    if not observations:
        raise ValueError("no observations")
    return observations[len(observations) // 2]


def pack_epoch_round(epoch: int, round_: int) -> int:
    if not 0 <= epoch < 2**32 or not 0 <= round_ < 2**8:
        raise ValueError(f"epoch {epoch} / round {round_} out of range")
    return (epoch << 8) | round_


def _check_bytes32(name: str, value: bytes) -> None:
    if len(value) != 32:
        raise ValueError(f"{name} must be 32 bytes, got {len(value)}")


def encode_report(
    observations: Sequence[int],
    *,
    observations_timestamp: int,
    raw_observers: bytes | None = None,
    juels_per_fee_coin: int = 0,
) -> bytes:
    """The OCR2 `report` bytes. Observations are sorted here, as the oracle network does."""
    obs = sorted(observations)
    if not 1 <= len(obs) <= MAX_OBSERVATIONS:
        raise ValueError(f"need 1..{MAX_OBSERVATIONS} observations, got {len(obs)}")
    if obs[0] < INT192_MIN or obs[-1] > INT192_MAX:
        raise ValueError("observation out of int192 range")
    if not INT192_MIN <= juels_per_fee_coin <= INT192_MAX:
        raise ValueError("juels_per_fee_coin out of int192 range")
    if not 0 <= observations_timestamp < 2**32:
        raise ValueError(f"observations_timestamp {observations_timestamp} out of uint32 range")
    if raw_observers is None:
        raw_observers = bytes(range(len(obs))).ljust(32, b"\0")
    _check_bytes32("raw_observers", raw_observers)
    return encode(list(REPORT_TYPES), [observations_timestamp, raw_observers, obs, juels_per_fee_coin])


def encode_transmit(
    observations: Sequence[int],
    *,
    epoch_round: int,
    observations_timestamp: int,
    config_digest: bytes = ZERO32,
    extra_hash: bytes = ZERO32,
    raw_observers: bytes | None = None,
    juels_per_fee_coin: int = 0,
    rs: Sequence[bytes] = (),
    ss: Sequence[bytes] = (),
    raw_vs: bytes = ZERO32,
) -> bytes:
    """Full calldata (selector included) of `transmit` carrying `observations` (sorted here).

    `epoch_round` must exceed the feed's latest one (see `pack_epoch_round`). Signatures default to none:
    our devnet PriceFeed does not check them (a real OCR2 aggregator needs f+1 valid ones).
    Raises ValueError on out-of-range input.
    """
    if not 0 < epoch_round <= EPOCH_ROUND_MAX:
        raise ValueError(f"epoch_round {epoch_round} out of uint40 range (and must be > 0)")
    _check_bytes32("config_digest", config_digest)
    _check_bytes32("extra_hash", extra_hash)
    _check_bytes32("raw_vs", raw_vs)
    if len(rs) != len(ss):
        raise ValueError(f"rs and ss differ in length ({len(rs)} != {len(ss)})")
    for sig in (*rs, *ss):
        _check_bytes32("signature part", sig)
    report = encode_report(
        observations,
        observations_timestamp=observations_timestamp,
        raw_observers=raw_observers,
        juels_per_fee_coin=juels_per_fee_coin,
    )
    context = [config_digest, epoch_round.to_bytes(32, "big"), extra_hash]
    args = [context, report, list(rs), list(ss), raw_vs]
    return TRANSMIT_SELECTOR + encode(list(TRANSMIT_TYPES), args)


def is_transmit(calldata: bytes) -> bool:
    """Cheap pre-filter for mempool transactions."""
    return calldata[:4] == TRANSMIT_SELECTOR


def decode_transmit(calldata: bytes) -> TransmitReport:
    """Decodes `transmit` calldata. Raises DecodeError (and nothing else) if it is malformed, is not a
    `transmit` call, or carries a report the aggregator would reject (no observations, not sorted)."""
    if len(calldata) < 4 or calldata[:4] != TRANSMIT_SELECTOR:
        raise DecodeError("not a transmit call (selector mismatch)")
    try:
        context, report, rs, ss, raw_vs = decode(list(TRANSMIT_TYPES), calldata[4:])
        ts, raw_observers, observations, juels = decode(list(REPORT_TYPES), report)
    except (DecodingError, ValueError, OverflowError) as exc:
        raise DecodeError(f"malformed transmit calldata: {exc}") from None
    obs = tuple(observations)
    if not obs:
        raise DecodeError("transmit report has no observations")
    if any(a > b for a, b in pairwise(obs)):
        raise DecodeError("transmit report observations are not sorted")
    return TransmitReport(
        observations=obs,
        median=obs[len(obs) // 2],
        observations_timestamp=ts,
        epoch_round=int.from_bytes(context[1][-5:], "big"),
        config_digest=context[0],
        extra_hash=context[2],
        raw_observers=raw_observers,
        juels_per_fee_coin=juels,
        rs=tuple(rs),
        ss=tuple(ss),
        raw_vs=raw_vs,
    )
