"""Calldata, routes and events of our `LiquidationExecutor` contract (contracts/src/LiquidationExecutor.sol).

Pure encoders and decoders (no I/O) plus `deploy_executor` for set-up. One `liquidate(Params)` call per
opportunity: flash-borrow the debt asset from the Aave V3 Pool, `liquidationCall` on the given pool (Aave V3
or V2), sell all the seized collateral on `route`, repay, check the owner's profit >= `min_profit`, then pay
`coinbase_bps` of the gross profit to block.coinbase in ETH and the rest to the owner.

Routes are packed paths, as Uniswap encodes them:
- Uniswap V3: `token (20 bytes) | fee (3 bytes, big-endian) | token | ...` (SwapRouter `exactInput`);
- Uniswap V2: `token (20 bytes) | token | ...` (the contract unpacks it into Router02's `address[]`).
Both run from the input token (the collateral; the debt asset for the builder's conversion) to the output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from keeper.chain.abi import encode_call
from keeper.devnet.contracts import our_artifact
from keeper.devnet.deployer import Deployer
from keeper.errors import DecodeError

CONTRACT_NAME = "LiquidationExecutor"
BPS = 10_000
UINT64_MAX = 2**64 - 1
V3_FEE_MAX = 2**24 - 1

PARAMS_TUPLE = "(address,address,address,address,uint256,uint256,uint8,bytes,uint16,bytes,uint64)"
LIQUIDATE_SIGNATURE = f"liquidate({PARAMS_TUPLE})"
LIQUIDATE_SELECTOR = function_signature_to_4byte_selector(LIQUIDATE_SIGNATURE)
EXECUTE_OPERATION_SIGNATURE = "executeOperation(address,uint256,uint256,address,bytes)"

LIQUIDATED_EVENT_SIGNATURE = (
    "Liquidated(address,address,address,address,uint256,uint256,uint256,uint256,uint256,uint256)"
)
LIQUIDATED_TOPIC = "0x" + keccak(text=LIQUIDATED_EVENT_SIGNATURE).hex()
_LIQUIDATED_DATA_TYPES = ["address", "uint256", "uint256", "uint256", "uint256", "uint256", "uint256"]

ERROR_SIGNATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("NotOwner", ()),
    ("NotOperator", ()),
    ("Reentered", ()),
    ("Expired", ("uint256",)),
    ("BadParams", ()),
    ("BadPath", ()),
    ("UnauthorizedCallback", ()),
    ("InsufficientProfit", ("uint256", "uint256")),
    ("TokenCallFailed", ("address",)),
    ("EthTransferFailed", ("address",)),
    ("NotWeth", ()),
)
ERRORS: dict[bytes, tuple[str, tuple[str, ...]]] = {
    function_signature_to_4byte_selector(f"{name}({','.join(types)})"): (name, types)
    for name, types in ERROR_SIGNATURES
}


class Venue(IntEnum):
    """`LiquidationExecutor.Venue` (0 is Invalid on chain)."""

    UNISWAP_V3 = 1
    UNISWAP_V2 = 2


def _addr20(address: str) -> bytes:
    raw = bytes.fromhex(address[2:] if address.startswith(("0x", "0X")) else address)
    if len(raw) != 20:
        raise ValueError(f"not a 20-byte address: {address!r}")
    return raw


def _checksum(raw: bytes) -> str:
    return str(to_checksum_address(raw))


@dataclass(frozen=True, slots=True)
class V3Route:
    """Uniswap V3 multi-hop route: tokens[0] -fees[0]-> tokens[1] -> ... (fees in hundredths of a bp)."""

    tokens: tuple[str, ...]
    fees: tuple[int, ...]

    venue = Venue.UNISWAP_V3

    def __post_init__(self) -> None:
        if len(self.tokens) < 2 or len(self.fees) != len(self.tokens) - 1:
            raise ValueError("a V3 route needs n >= 2 tokens and n - 1 fees")
        for fee in self.fees:
            if not 0 <= fee <= V3_FEE_MAX:
                raise ValueError(f"V3 fee out of range: {fee}")

    @property
    def token_in(self) -> str:
        return self.tokens[0]

    @property
    def token_out(self) -> str:
        return self.tokens[-1]

    def encode(self) -> bytes:
        return encode_v3_path(self.tokens, self.fees)


@dataclass(frozen=True, slots=True)
class V2Route:
    """Uniswap V2 route through Router02: tokens[0] -> tokens[1] -> ..."""

    tokens: tuple[str, ...]

    venue = Venue.UNISWAP_V2

    def __post_init__(self) -> None:
        if len(self.tokens) < 2:
            raise ValueError("a V2 route needs at least 2 tokens")

    @property
    def token_in(self) -> str:
        return self.tokens[0]

    @property
    def token_out(self) -> str:
        return self.tokens[-1]

    def encode(self) -> bytes:
        return encode_v2_path(self.tokens)


Route = V3Route | V2Route


def encode_v3_path(tokens: Sequence[str], fees: Sequence[int]) -> bytes:
    """Uniswap V3 packed path: token | fee (uint24) | token | ... (20 + 23 * hops bytes)."""
    if len(tokens) < 2 or len(fees) != len(tokens) - 1:
        raise ValueError("a V3 path needs n >= 2 tokens and n - 1 fees")
    out = bytearray(_addr20(tokens[0]))
    for fee, token in zip(fees, tokens[1:], strict=True):
        if not 0 <= fee <= V3_FEE_MAX:
            raise ValueError(f"V3 fee out of range: {fee}")
        out += fee.to_bytes(3, "big") + _addr20(token)
    return bytes(out)


def decode_v3_path(path: bytes) -> V3Route:
    if len(path) < 43 or (len(path) - 20) % 23:
        raise DecodeError(f"bad V3 path length {len(path)}")
    tokens = [_checksum(path[:20])]
    fees = []
    for i in range(20, len(path), 23):
        fees.append(int.from_bytes(path[i : i + 3], "big"))
        tokens.append(_checksum(path[i + 3 : i + 23]))
    return V3Route(tuple(tokens), tuple(fees))


def encode_v2_path(tokens: Sequence[str]) -> bytes:
    """Packed V2 path: token | token | ... (20 bytes each)."""
    if len(tokens) < 2:
        raise ValueError("a V2 path needs at least 2 tokens")
    return b"".join(_addr20(t) for t in tokens)


def decode_v2_path(path: bytes) -> V2Route:
    if len(path) < 40 or len(path) % 20:
        raise DecodeError(f"bad V2 path length {len(path)}")
    return V2Route(tuple(_checksum(path[i : i + 20]) for i in range(0, len(path), 20)))


@dataclass(frozen=True, slots=True)
class LiquidationParams:
    """One `liquidate` call. Amounts are integers in the token's base units.

    min_profit: the owner's profit after the flash premium and the builder's share, in debt-asset units.
    coinbase_bps: the builder's share of the gross profit; paid in ETH, after the profit check.
    coinbase_route: V3 route debt -> WETH for that payment; None when the debt is WETH or bps is 0.
    max_block: the call reverts in any later block (a bundle's target block).
    """

    lending_pool: str
    collateral: str
    debt: str
    user: str
    debt_to_cover: int
    route: Route
    min_profit: int
    coinbase_bps: int
    max_block: int
    coinbase_route: V3Route | None = None

    def __post_init__(self) -> None:
        if not 0 < self.debt_to_cover < 2**256:
            raise ValueError("debt_to_cover must be in (0, 2**256)")
        if not 0 <= self.min_profit < 2**256:
            raise ValueError("min_profit out of range")
        if not 0 <= self.coinbase_bps <= BPS:
            raise ValueError("coinbase_bps must be within 0..10000")
        if not 0 <= self.max_block <= UINT64_MAX:
            raise ValueError("max_block out of uint64 range")
        if self.collateral.lower() == self.debt.lower():
            raise ValueError("collateral and debt must differ")
        if self.route.token_in.lower() != self.collateral.lower():
            raise ValueError("route must start at the collateral")
        if self.route.token_out.lower() != self.debt.lower():
            raise ValueError("route must end at the debt asset")
        if self.coinbase_route is not None and self.coinbase_route.token_in.lower() != self.debt.lower():
            raise ValueError("coinbase route must start at the debt asset")

    def abi_tuple(self) -> tuple[Any, ...]:
        return (
            self.lending_pool,
            self.collateral,
            self.debt,
            self.user,
            self.debt_to_cover,
            self.min_profit,
            int(self.route.venue),
            self.route.encode(),
            self.coinbase_bps,
            self.coinbase_route.encode() if self.coinbase_route is not None else b"",
            self.max_block,
        )


def encode_liquidate(params: LiquidationParams) -> bytes:
    """Calldata for `LiquidationExecutor.liquidate(params)`."""
    return LIQUIDATE_SELECTOR + encode([PARAMS_TUPLE], [params.abi_tuple()])


def decode_liquidate(calldata: bytes) -> LiquidationParams:
    """Inverse of `encode_liquidate` (for logs, ledgers and tests). Raises DecodeError on bad input."""
    if calldata[:4] != LIQUIDATE_SELECTOR:
        raise DecodeError("not a liquidate() call")
    try:
        (t,) = decode([PARAMS_TUPLE], calldata[4:])
        venue = Venue(t[6])
        route: Route = decode_v3_path(t[7]) if venue is Venue.UNISWAP_V3 else decode_v2_path(t[7])
        return LiquidationParams(
            lending_pool=_checksum(bytes.fromhex(t[0][2:])),
            collateral=_checksum(bytes.fromhex(t[1][2:])),
            debt=_checksum(bytes.fromhex(t[2][2:])),
            user=_checksum(bytes.fromhex(t[3][2:])),
            debt_to_cover=int(t[4]),
            min_profit=int(t[5]),
            route=route,
            coinbase_bps=int(t[8]),
            coinbase_route=decode_v3_path(t[9]) if t[9] else None,
            max_block=int(t[10]),
        )
    except DecodeError:
        raise
    except Exception as exc:  # eth_abi and our own validation raise many types on bad input
        raise DecodeError(f"bad liquidate() calldata: {exc}") from exc


def encode_set_operator(operator: str, enabled: bool) -> bytes:
    return encode_call("setOperator(address,bool)", ["address", "bool"], [operator, enabled])


def encode_sweep(token: str) -> bytes:
    return encode_call("sweep(address)", ["address"], [token])


def encode_sweep_eth() -> bytes:
    return encode_call("sweepETH()")


@dataclass(frozen=True, slots=True)
class LiquidatedEvent:
    """`Liquidated`: what one liquidate() call did. profit: paid to the owner (debt asset);
    coinbase_paid: wei paid to block.coinbase; swap_out: debt asset received for the seized collateral."""

    executor: str
    lending_pool: str
    user: str
    collateral: str
    debt: str
    debt_repaid: int
    collateral_seized: int
    swap_out: int
    flash_premium: int
    profit: int
    coinbase_paid: int

    @property
    def gross_profit(self) -> int:
        """Debt asset left after repaying the loan, before the builder's share."""
        return self.swap_out - self.debt_repaid - self.flash_premium


def _topic_address(topic: str) -> str:
    raw = bytes.fromhex(topic[2:])
    if len(raw) != 32 or any(raw[:12]):
        raise DecodeError(f"bad address topic {topic[:80]!r}")
    return _checksum(raw[12:])


def decode_liquidated(log: Mapping[str, Any]) -> LiquidatedEvent:
    """Decodes one `Liquidated` log (a JSON-RPC log object). Raises DecodeError if it is not one."""
    topics = list(log.get("topics") or [])
    if len(topics) != 4 or str(topics[0]).lower() != LIQUIDATED_TOPIC:
        raise DecodeError("not a Liquidated log")
    try:
        data = bytes.fromhex(str(log["data"])[2:])
        debt, repaid, seized, out, premium, profit, paid = decode(_LIQUIDATED_DATA_TYPES, data)
        return LiquidatedEvent(
            executor=_checksum(bytes.fromhex(str(log["address"])[2:])),
            lending_pool=_topic_address(topics[1]),
            user=_topic_address(topics[2]),
            collateral=_topic_address(topics[3]),
            debt=str(to_checksum_address(debt)),
            debt_repaid=int(repaid),
            collateral_seized=int(seized),
            swap_out=int(out),
            flash_premium=int(premium),
            profit=int(profit),
            coinbase_paid=int(paid),
        )
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"bad Liquidated log: {exc}") from exc


def liquidated_events(receipt: Mapping[str, Any], executor: str | None = None) -> list[LiquidatedEvent]:
    """Every `Liquidated` log in a receipt (optionally only those emitted by `executor`)."""
    out = []
    for log in receipt.get("logs", []):
        topics = log.get("topics") or []
        if not topics or str(topics[0]).lower() != LIQUIDATED_TOPIC:
            continue
        if executor is not None and str(log.get("address", "")).lower() != executor.lower():
            continue
        out.append(decode_liquidated(log))
    return out


def decode_executor_error(revert_data: bytes) -> tuple[str, tuple[Any, ...]] | None:
    """(error name, args) for one of the executor's custom errors; None for anything else."""
    known = ERRORS.get(revert_data[:4])
    if known is None:
        return None
    name, types = known
    try:
        return name, tuple(decode(list(types), revert_data[4:]))
    except Exception:
        return None


async def deploy_executor(
    d: Deployer,
    owner: str,
    operator: str | None,
    *,
    flash_pool: str,
    router_v3: str,
    router_v2: str,
    weth: str,
) -> str:
    """Deploys a LiquidationExecutor from `d.sender`; returns its address. `flash_pool` is the Aave V3 Pool
    (flash loans), `operator` may be None. The chain must mine the deploy (automine, or a block producer)."""
    zero = "0x" + "00" * 20
    deployed = await d.deploy(
        our_artifact(CONTRACT_NAME), owner, operator or zero, flash_pool, router_v3, router_v2, weth
    )
    return deployed.address
