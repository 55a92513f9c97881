"""`BorrowersResult.to_json` survives orjson with amounts far above 2^64 (issue 11: `--out` crashed)."""

from __future__ import annotations

import orjson

from keeper.devnet.scenarios.borrowers import Borrower, BorrowersResult


def test_big_amounts_are_written_as_exact_decimal_strings() -> None:
    whale = 2_000_000 * 10**18 + 123  # 2M WETH in wei: > 2^64
    debt = 3_456_789 * 10**18 + 1
    res = BorrowersResult(
        borrowers=[
            Borrower(
                market="aave-v3",
                address="0x00000000000000000000000000000000000000aa",
                collateral={"WETH": whale, "WBTC": 12 * 10**8},
                debt_symbol="DAI",
                debt_amount=debt,
                emode=0,
                target_hf_bps=10_300,
            )
        ],
        transactions=3,
        blocks=1,
        seconds=0.25,
        counts={"aave-v3": 1},
    )
    data = orjson.loads(orjson.dumps(res.to_json(), option=orjson.OPT_INDENT_2))
    (row,) = data["borrowers"]
    assert row["collateral"] == {"WETH": str(whale), "WBTC": "1200000000"}
    assert int(row["collateral"]["WETH"]) == whale
    assert int(row["debt_amount"]) == debt
    assert data["counts"] == {"aave-v3": 1}
