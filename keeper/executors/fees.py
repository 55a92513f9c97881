"""EIP-1559 fee arithmetic: exact next base fee, worst-case caps for a target block, profit caps, bumps.

All values are integers (wei per gas, wei, gas units); nothing here raises on "too expensive": pricing
returns `Unprofitable` with the numbers, so the caller can skip and alert (failure mode 5, test 9).

- `next_base_fee`: the EIP-1559 formula exactly (elasticity 2, max change denominator 8, floor
  division, minimum +1 wei when the parent is above target).
- `max_base_fee_after`: the highest base fee `k` blocks later, every block full (+12.5% each, at least
  +1 wei), which a tx aimed at block N+k must be able to pay to stay valid until then.
- `profit_fee_cap`: the highest max fee per gas such that `gas_limit * fee <= profit * share`.
- `price_tx`: both together -> `FeeQuote` or `Unprofitable`.
- `bump_fees`: a same-nonce replacement that geth's pool accepts (each of maxFeePerGas and
  maxPriorityFeePerGas strictly higher and >= old * (100 + 10) / 100), clamped to a cap, or None when the
  cap leaves no room for a valid replacement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

ELASTICITY_MULTIPLIER: Final = 2
BASE_FEE_MAX_CHANGE_DENOMINATOR: Final = 8
BPS: Final = 10_000
MIN_REPLACEMENT_BUMP_BPS: Final = 1_000
"""geth's txpool.pricebump default (10%); anything lower is "replacement transaction underpriced"."""


def _check_nonneg(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def next_base_fee(parent_base_fee: int, parent_gas_used: int, parent_gas_limit: int) -> int:
    """The base fee of the child of a block, per EIP-1559 (integer, exact)."""
    _check_nonneg(
        parent_base_fee=parent_base_fee, parent_gas_used=parent_gas_used, parent_gas_limit=parent_gas_limit
    )
    target = parent_gas_limit // ELASTICITY_MULTIPLIER
    if target == 0:
        raise ValueError("parent_gas_limit is too small to have a gas target")
    if parent_gas_used == target:
        return parent_base_fee
    if parent_gas_used > target:
        delta = parent_base_fee * (parent_gas_used - target) // target // BASE_FEE_MAX_CHANGE_DENOMINATOR
        return parent_base_fee + max(delta, 1)
    delta = parent_base_fee * (target - parent_gas_used) // target // BASE_FEE_MAX_CHANGE_DENOMINATOR
    return parent_base_fee - delta


def _quantity(header: Mapping[str, Any], key: str) -> int:
    value = header.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value[:2] in ("0x", "0X"):
        return int(value, 16)
    raise ValueError(f"header field {key!r} is missing or not a quantity")


def next_base_fee_from_header(header: Mapping[str, Any]) -> int:
    """Next block's base fee from a JSON-RPC block/header object (hex or int fields)."""
    return next_base_fee(
        _quantity(header, "baseFeePerGas"), _quantity(header, "gasUsed"), _quantity(header, "gasLimit")
    )


def max_base_fee_after(base_fee: int, blocks: int, gas_limit: int | None = None) -> int:
    """Upper bound of the base fee `blocks` blocks after a block whose base fee is `base_fee`.

    Worst case is every block full: +12.5% per block, exactly `b + max(b // 8, 1)` for an even gas limit
    (all real chains). Pass `gas_limit` to apply the formula to full blocks of that (possibly odd) limit.
    """
    _check_nonneg(base_fee=base_fee, blocks=blocks)
    b = base_fee
    for _ in range(blocks):
        if gas_limit is None:
            b += max(b // BASE_FEE_MAX_CHANGE_DENOMINATOR, 1)
        else:
            b = next_base_fee(b, gas_limit, gas_limit)
    return b


@dataclass(frozen=True, slots=True)
class FeeCaps:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


def fee_caps_for_target(next_fee: int, blocks_ahead: int, priority_fee: int) -> FeeCaps:
    """Caps for a tx that must stay valid through block N+`blocks_ahead` (`next_fee` is N+1's base fee).

    maxFeePerGas = worst-case base fee at N+blocks_ahead + tip; blocks_ahead=1 means the next block.
    """
    _check_nonneg(next_fee=next_fee, priority_fee=priority_fee)
    if blocks_ahead < 1:
        raise ValueError("blocks_ahead must be >= 1 (1 = the next block)")
    worst = max_base_fee_after(next_fee, blocks_ahead - 1)
    return FeeCaps(max_fee_per_gas=worst + priority_fee, max_priority_fee_per_gas=priority_fee)


def profit_fee_cap(expected_profit_wei: int, gas_limit: int, max_gas_share_bps: int) -> int:
    """Highest fee per gas with `gas_limit * fee <= expected_profit * share` (0 if profit <= 0)."""
    _check_nonneg(gas_limit=gas_limit, max_gas_share_bps=max_gas_share_bps)
    if gas_limit == 0:
        raise ValueError("gas_limit must be > 0")
    if max_gas_share_bps > BPS:
        raise ValueError("max_gas_share_bps must be <= 10000 (100%)")
    if expected_profit_wei <= 0:
        return 0
    return expected_profit_wei * max_gas_share_bps // BPS // gas_limit


@dataclass(frozen=True, slots=True)
class FeeQuote:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    gas_limit: int
    next_base_fee: int
    worst_base_fee: int
    """Worst-case base fee at the target block."""
    capped_by_profit: bool
    """True when the profit cap, not the worst case, set maxFeePerGas (alert-worthy under spikes)."""

    @property
    def max_cost_wei(self) -> int:
        return self.max_fee_per_gas * self.gas_limit

    @property
    def expected_cost_wei(self) -> int:
        """Cost if included in the next block at its base fee (tip included)."""
        return min(self.next_base_fee + self.max_priority_fee_per_gas, self.max_fee_per_gas) * self.gas_limit


@dataclass(frozen=True, slots=True)
class Unprofitable:
    """Gas at this base fee would take more than the allowed share of the expected profit."""

    next_base_fee: int
    priority_fee: int
    fee_cap: int
    """The profit-derived cap per gas."""
    gas_limit: int
    expected_profit_wei: int

    @property
    def reason(self) -> str:
        return (
            f"unprofitable at this base fee: needs {self.next_base_fee + self.priority_fee} wei/gas "
            f"(base {self.next_base_fee} + tip {self.priority_fee}), profit allows {self.fee_cap}"
        )


def price_tx(
    *,
    next_fee: int,
    priority_fee: int,
    gas_limit: int,
    expected_profit_wei: int,
    max_gas_share_bps: int,
    blocks_ahead: int = 1,
) -> FeeQuote | Unprofitable:
    """Fee caps for a tx aimed at N+`blocks_ahead`, never paying more than profit * share for gas.

    Unprofitable when the profit is not positive, or when even the next block's base fee plus the tip
    exceeds the profit cap.
    """
    caps = fee_caps_for_target(next_fee, blocks_ahead, priority_fee)
    cap = profit_fee_cap(expected_profit_wei, gas_limit, max_gas_share_bps)
    if expected_profit_wei <= 0 or cap < next_fee + priority_fee:
        return Unprofitable(
            next_base_fee=next_fee,
            priority_fee=priority_fee,
            fee_cap=cap,
            gas_limit=gas_limit,
            expected_profit_wei=expected_profit_wei,
        )
    max_fee = min(caps.max_fee_per_gas, cap)
    return FeeQuote(
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=priority_fee,
        gas_limit=gas_limit,
        next_base_fee=next_fee,
        worst_base_fee=caps.max_fee_per_gas - priority_fee,
        capped_by_profit=max_fee < caps.max_fee_per_gas,
    )


def min_replacement(old: int, bump_bps: int = MIN_REPLACEMENT_BUMP_BPS) -> int:
    """The lowest value a replacement may use: > old and >= ceil(old * (1 + bump)); geth floors its
    threshold, so ceil is always accepted."""
    _check_nonneg(old=old, bump_bps=bump_bps)
    return max(old + 1, -(-old * (BPS + bump_bps) // BPS))


def is_valid_replacement(old: FeeCaps, new: FeeCaps, bump_bps: int = MIN_REPLACEMENT_BUMP_BPS) -> bool:
    """geth's rule: both fields strictly higher and each >= old * (100 + bump%) / 100."""
    return (
        new.max_fee_per_gas > old.max_fee_per_gas
        and new.max_priority_fee_per_gas > old.max_priority_fee_per_gas
        and new.max_fee_per_gas * BPS >= old.max_fee_per_gas * (BPS + bump_bps)
        and new.max_priority_fee_per_gas * BPS >= old.max_priority_fee_per_gas * (BPS + bump_bps)
    )


def bump_fees(
    old: FeeCaps, *, cap: int, bump_bps: int = 1_250, min_bump_bps: int = MIN_REPLACEMENT_BUMP_BPS
) -> FeeCaps | None:
    """Fees for a same-nonce replacement: both fields up by `bump_bps` (>= 10%), clamped to `cap`.

    Returns None when the cap leaves no room for a replacement the pool would accept (`min_bump_bps`):
    the caller stops bumping and alerts. Never returns a maxFeePerGas above `cap`.
    """
    if bump_bps < min_bump_bps:
        raise ValueError(f"bump_bps must be >= {min_bump_bps} for a replacement to be accepted")
    _check_nonneg(cap=cap)
    fee = min(min_replacement(old.max_fee_per_gas, bump_bps), cap)
    tip = min(min_replacement(old.max_priority_fee_per_gas, bump_bps), fee)
    new = FeeCaps(max_fee_per_gas=fee, max_priority_fee_per_gas=tip)
    return new if is_valid_replacement(old, new, min_bump_bps) else None
