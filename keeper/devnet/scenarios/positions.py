"""Find borrowers from the markets' logs and read their health factors (batched `getUserAccountData`).

Used by scenarios (competitor, reports) — the keeper's own strategy keeps its state from logs itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from eth_abi.abi import decode
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient, hex_to_bytes
from keeper.devnet.deploy import DevnetDeployment

AAVE_V3 = "aave-v3"
AAVE_V2 = "aave-v2"

TOPICS = {
    "v3_supply": keccak(b"Supply(address,address,address,uint256,uint16)"),
    "v3_borrow": keccak(b"Borrow(address,address,address,uint256,uint8,uint256,uint16)"),
    "v2_deposit": keccak(b"Deposit(address,address,address,uint256,uint16)"),
    "v2_borrow": keccak(b"Borrow(address,address,address,uint256,uint256,uint256,uint16)"),
}


@dataclass
class Borrowing:
    market: str
    user: str
    collateral: list[str] = field(default_factory=list)
    """reserve addresses supplied, in first-seen order"""
    debt: list[str] = field(default_factory=list)
    health_factor: int | None = None
    total_debt_base: int | None = None


def _addr(topic: str) -> str:
    return str(to_checksum_address(hex_to_bytes(topic)[12:]))


async def discover(rpc: RpcClient, dep: DevnetDeployment) -> dict[tuple[str, str], Borrowing]:
    """Every account with a borrow on either market, with the reserves it supplied and borrowed."""
    out: dict[tuple[str, str], Borrowing] = {}
    markets = (
        (AAVE_V3, dep.aave_v3.pool, TOPICS["v3_supply"], TOPICS["v3_borrow"], dep.aave_v3.start_block),
        (
            AAVE_V2,
            dep.aave_v2.lending_pool,
            TOPICS["v2_deposit"],
            TOPICS["v2_borrow"],
            dep.aave_v2.start_block,
        ),
    )
    for market, pool, supply_topic, borrow_topic, start in markets:
        logs = await rpc.call(
            "eth_getLogs",
            [
                {
                    "address": pool,
                    "fromBlock": hex(start),
                    "toBlock": "latest",
                    "topics": [["0x" + supply_topic.hex(), "0x" + borrow_topic.hex()]],
                }
            ],
        )
        supplied: dict[str, list[str]] = {}
        for log in logs:
            reserve, user = _addr(log["topics"][1]), _addr(log["topics"][2])
            if log["topics"][0] == "0x" + supply_topic.hex():
                lst = supplied.setdefault(user, [])
                if reserve not in lst:
                    lst.append(reserve)
            else:
                b = out.setdefault((market, user), Borrowing(market, user))
                if reserve not in b.debt:
                    b.debt.append(reserve)
        for (m, user), b in out.items():
            if m == market:
                b.collateral = supplied.get(user, [])
    return out


async def read_health_factors(
    rpc: RpcClient, dep: DevnetDeployment, borrowings: Sequence[Borrowing], *, chunk: int = 500
) -> None:
    """Fills `health_factor` (1e18-scaled) and `total_debt_base` from the protocol's getUserAccountData."""
    for i in range(0, len(borrowings), chunk):
        part = borrowings[i : i + chunk]
        calls = []
        for b in part:
            pool = dep.aave_v3.pool if b.market == AAVE_V3 else dep.aave_v2.lending_pool
            data = encode_call("getUserAccountData(address)", ["address"], [b.user])
            calls.append(("eth_call", [{"to": pool, "data": "0x" + data.hex()}, "latest"]))
        results = await rpc.batch(calls)
        for b, raw in zip(part, results, strict=True):
            fields = decode(["uint256"] * 6, hex_to_bytes(raw))
            b.total_debt_base = int(fields[1])
            b.health_factor = int(fields[5])
