"""Units and the exact integer math the protocols use.

Money is integers. `Wei` and token base units are plain ints with a NewType for the reader and mypy;
`Ray` (1e27) and `Wad` (1e18) fixed-point math rounds half up, exactly as Aave's WadRayMath does;
`percent_mul`/`percent_div` follow Aave's PercentageMath (basis points, 1e4 = 100%).
"""

from __future__ import annotations

from typing import NewType

Wei = NewType("Wei", int)
Ray = NewType("Ray", int)
Wad = NewType("Wad", int)
BaseUnits = NewType("BaseUnits", int)
Bps = NewType("Bps", int)

WAD = 10**18
RAY = 10**27
HALF_WAD = WAD // 2
HALF_RAY = RAY // 2
WAD_RAY_RATIO = 10**9
PERCENTAGE_FACTOR = 10**4
HALF_PERCENTAGE_FACTOR = PERCENTAGE_FACTOR // 2
UINT256_MAX = 2**256 - 1


def _check_uint(x: int) -> None:
    if x < 0 or x > UINT256_MAX:
        raise OverflowError(f"value out of uint256 range: {x}")


def wad_mul(a: int, b: int) -> int:
    """(a * b + HALF_WAD) / WAD, as WadRayMath.wadMul."""
    r = (a * b + HALF_WAD) // WAD
    _check_uint(a * b + HALF_WAD)
    return r


def wad_div(a: int, b: int) -> int:
    """(a * WAD + b / 2) / b, as WadRayMath.wadDiv."""
    if b == 0:
        raise ZeroDivisionError("wad_div by zero")
    _check_uint(a * WAD + b // 2)
    return (a * WAD + b // 2) // b


def ray_mul(a: int, b: int) -> int:
    """(a * b + HALF_RAY) / RAY, as WadRayMath.rayMul."""
    _check_uint(a * b + HALF_RAY)
    return (a * b + HALF_RAY) // RAY


def ray_div(a: int, b: int) -> int:
    """(a * RAY + b / 2) / b, as WadRayMath.rayDiv."""
    if b == 0:
        raise ZeroDivisionError("ray_div by zero")
    _check_uint(a * RAY + b // 2)
    return (a * RAY + b // 2) // b


def ray_to_wad(a: int) -> int:
    """Rounds half up, as WadRayMath.rayToWad."""
    quotient, remainder = divmod(a, WAD_RAY_RATIO)
    return quotient + (1 if remainder >= WAD_RAY_RATIO // 2 else 0)


def wad_to_ray(a: int) -> int:
    return a * WAD_RAY_RATIO


def percent_mul(value: int, percentage: int) -> int:
    """(value * percentage + HALF_PERCENTAGE_FACTOR) / 1e4, as PercentageMath.percentMul."""
    if value == 0 or percentage == 0:
        return 0
    return (value * percentage + HALF_PERCENTAGE_FACTOR) // PERCENTAGE_FACTOR


def percent_div(value: int, percentage: int) -> int:
    """(value * 1e4 + percentage / 2) / percentage, as PercentageMath.percentDiv."""
    if percentage == 0:
        raise ZeroDivisionError("percent_div by zero")
    return (value * PERCENTAGE_FACTOR + percentage // 2) // percentage


def to_wei(amount: int | str, decimals: int = 18) -> int:
    """Exact conversion of a decimal string ("1.5") or int to base units; no floats involved."""
    from decimal import Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = 80
        scaled = Decimal(str(amount)) * (Decimal(10) ** decimals)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more than {decimals} decimals")
    return int(scaled)


def format_units(amount: int, decimals: int = 18, places: int | None = None) -> str:
    """Display helper: exact decimal string of `amount` base units (optionally truncated)."""
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**decimals)
    frac_s = str(frac).rjust(decimals, "0") if decimals else ""
    if places is not None:
        frac_s = frac_s[:places]
    frac_s = frac_s.rstrip("0") if places is None else frac_s
    return f"{sign}{whole}" + (f".{frac_s}" if frac_s else "")
