from hypothesis import given
from hypothesis import strategies as st

from keeper.chain import units as u

uint128 = st.integers(min_value=0, max_value=2**128 - 1)


def test_constants() -> None:
    assert u.WAD == 10**18 and u.RAY == 10**27


@given(uint128, uint128)
def test_ray_mul_rounds_half_up(a: int, b: int) -> None:
    exact_num = a * b
    r = u.ray_mul(a, b)
    # r is the nearest integer to a*b/RAY, ties rounded up
    assert (r * u.RAY - exact_num) * 2 <= u.RAY
    assert (exact_num - r * u.RAY) * 2 < u.RAY


@given(uint128, st.integers(min_value=1, max_value=2**128 - 1))
def test_ray_div_rounds_half_up(a: int, b: int) -> None:
    r = u.ray_div(a, b)
    assert abs(r * b - a * u.RAY) * 2 <= b


def test_known_values() -> None:
    assert u.wad_mul(u.WAD // 2, 3) == 2  # 1.5 rounds half up
    assert u.ray_to_wad(1_499_999_999) == 1
    assert u.ray_to_wad(1_500_000_000) == 2
    assert u.percent_mul(10_000, 8250) == 8250
    assert u.percent_mul(1, 5000) == 1  # half up
    assert u.percent_div(8250, 8250) == 10_000
    assert u.percent_mul(0, 123) == 0


def test_to_wei_and_format_are_exact() -> None:
    assert u.to_wei("1.5") == 1_500_000_000_000_000_000
    assert u.to_wei("0.000001", 6) == 1
    assert u.format_units(4_374_999_999_999_999_999) == "4.374999999999999999"
    assert u.format_units(-1, 6) == "-0.000001"
    assert u.format_units(12_345_678, 6, places=2) == "12.34"


def test_to_wei_rejects_excess_precision() -> None:
    import pytest

    with pytest.raises(ValueError, match="decimals"):
        u.to_wei("0.0000001", 6)


def test_overflow_checked() -> None:
    import pytest

    with pytest.raises(OverflowError):
        u.ray_mul(2**255, 2**255)
