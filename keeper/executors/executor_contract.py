"""Calldata, routes and events of our `LiquidationExecutor` contract (contracts/src/LiquidationExecutor.sol).

Pure encoders and decoders (no I/O), plus the choice of build for a chain and `deploy_executor` for set-up.
One `liquidate(Params)` call per opportunity: flash-borrow the debt asset from the Aave V3 Pool,
`liquidationCall` on the given (owner-allowlisted) pool, Aave V3 or V2, sell all the seized collateral on
`route` (at least `min_out`, and at least the oracle floor the owner set), repay, check the owner's
profit >= `min_profit`, then pay `coinbase_bps` (<= the owner's maximum) of the gross profit to
block.coinbase in ETH and the rest to the owner. One `arbitrage(ArbParams)` call per peg/spread
opportunity: flash-borrow `amount` of `token` from the Balancer V2 Vault or the Aave V3 Pool, sell it along
a cycle back into `token`, repay, same profit check and builder payment (`ArbitrageParams`,
`encode_arbitrage`, `Arbitraged` events). `batch(bytes[])` runs several `liquidate` / `arbitrage` calls in
one transaction; a failing item reverts only itself (`encode_batch`, `decode_batch_result`).

`liquidateSubsidized(Params, maxSubsidy)` (protocol-keeper mode): `liquidate`, except that a sale returning
less than the debt repaid plus the flash premium is made up by the owner: the shortfall (debt-asset units,
at most `maxSubsidy`, else `SubsidyTooHigh`) is pulled with `transferFrom(owner, executor, shortfall)`
(the owner approves the executor for the debt token beforehand: `encode_approve`); profit and builder
payment are then 0 and a `Subsidized` event follows the call's `Liquidated` (`SubsidizedEvent`,
`LiquidatedEvent.subsidy`). Returns (profit, coinbasePaid, subsidy): `decode_liquidate_subsidized_result`.

Two builds of the one source (keeper/contracts/artifacts): `LiquidationExecutor` for Cancun and later
(transient storage), `LiquidationExecutorLegacy` for chains without EIP-1153; same ABI.

Routes (`Route`), each run from the input token (the collateral; the borrowed token of an arbitrage; the
debt asset for the builder's conversion) to the output:
- Uniswap V3 (`V3Route`): `token (20 bytes) | fee (3 bytes, big-endian) | token | ...` (SwapRouter
  `exactInput`);
- Uniswap V2 (`V2Route`): `token (20 bytes) | token | ...` (the contract unpacks it into Router02's
  `address[]`);
- Balancer V2 (`BalancerRoute`): `token (20 bytes) | poolId (32 bytes) | token | ...` (the Vault's `swap`
  for one hop, `batchSwap` GIVEN_IN for several);
- Mixed (`MixedRoute`): `abi.encode(Leg[])`, `Leg = (uint16 bps, Hop[] hops)`, `Hop = (uint8 venue,
  bytes path)`: the input split over legs by bps (floor; the last leg takes the remainder; the bps sum to
  10000), each leg a chain of V3 / V2 / Balancer hops, the outputs summed and checked against min_out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any, Protocol

from eth_abi.abi import decode, encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient
from keeper.contracts import OurArtifact, our_artifact
from keeper.errors import DecodeError, JsonRpcError, KeeperError

CONTRACT_NAME = "LiquidationExecutor"
"""The Cancun build (transient storage, EIP-1153)."""
LEGACY_CONTRACT_NAME = "LiquidationExecutorLegacy"
"""The same source built for chains without EIP-1153 (transient slots as storage, reset per call)."""
BPS = 10_000
UINT64_MAX = 2**64 - 1
UINT256_MAX = 2**256 - 1
V3_FEE_MAX = 2**24 - 1
DEFAULT_MAX_COINBASE_BPS = 9_500
DEFAULT_MAX_SLIPPAGE_BPS = 1_000

PARAMS_TUPLE = (
    "(address,address,address,address,uint256,uint256,uint8,bytes,uint16,bytes,uint64,uint256,uint256)"
)
LIQUIDATE_SIGNATURE = f"liquidate({PARAMS_TUPLE})"
LIQUIDATE_SELECTOR = function_signature_to_4byte_selector(LIQUIDATE_SIGNATURE)
LIQUIDATE_SUBSIDIZED_SIGNATURE = f"liquidateSubsidized({PARAMS_TUPLE},uint256)"
LIQUIDATE_SUBSIDIZED_SELECTOR = function_signature_to_4byte_selector(LIQUIDATE_SUBSIDIZED_SIGNATURE)
ARB_PARAMS_TUPLE = "(uint8,address,uint256,uint8,bytes,uint256,uint256,uint16,bytes,uint256,uint64,bytes32)"
ARBITRAGE_SIGNATURE = f"arbitrage({ARB_PARAMS_TUPLE})"
ARBITRAGE_SELECTOR = function_signature_to_4byte_selector(ARBITRAGE_SIGNATURE)
BATCH_SIGNATURE = "batch(bytes[])"
BATCH_SELECTOR = function_signature_to_4byte_selector(BATCH_SIGNATURE)
BATCHABLE_SELECTORS = frozenset({LIQUIDATE_SELECTOR, LIQUIDATE_SUBSIDIZED_SELECTOR, ARBITRAGE_SELECTOR})
"""Entry points the contract accepts as batch items (its `_batchable`)."""
EXECUTE_OPERATION_SIGNATURE = "executeOperation(address,uint256,uint256,address,bytes)"
RECEIVE_FLASH_LOAN_SIGNATURE = "receiveFlashLoan(address[],uint256[],uint256[],bytes)"
MIXED_LEGS_TYPE = "(uint16,(uint8,bytes)[])[]"
"""ABI type of a Mixed route's path: `Leg[]`, Leg = (bps, Hop[]), Hop = (venue, path)."""
MAINNET_BALANCER_VAULT = "0xBA12222222228d8Ba445958a75a0704d566BF2C8"
"""Balancer V2's Vault (the same address on every chain Balancer V2 is deployed on)."""
CONSTRUCTOR_TYPES = (
    "address",  # owner
    "address",  # first operator (or zero)
    "address",  # flash pool (Aave V3 Pool)
    "address",  # Uniswap V3 SwapRouter
    "address",  # Uniswap V2 Router02
    "address",  # WETH
    "uint16",  # maxCoinbaseBps
    "uint16",  # maxSlippageBps
    "address[]",  # allowlisted lending pools
    "address[]",  # their price oracles
    "address",  # Balancer V2 Vault (or zero: no Balancer routes or flash loans)
)

LIQUIDATED_EVENT_SIGNATURE = (
    "Liquidated(address,address,address,address,uint256,uint256,uint256,uint256,uint256,uint256)"
)
LIQUIDATED_TOPIC = "0x" + keccak(text=LIQUIDATED_EVENT_SIGNATURE).hex()
_LIQUIDATED_DATA_TYPES = ["address", "uint256", "uint256", "uint256", "uint256", "uint256", "uint256"]
ARBITRAGED_EVENT_SIGNATURE = "Arbitraged(bytes32,address,uint256,uint256,uint256,uint256,uint256)"
ARBITRAGED_TOPIC = "0x" + keccak(text=ARBITRAGED_EVENT_SIGNATURE).hex()
SUBSIDIZED_EVENT_SIGNATURE = "Subsidized(address,address,address,uint256)"
SUBSIDIZED_TOPIC = "0x" + keccak(text=SUBSIDIZED_EVENT_SIGNATURE).hex()
BATCH_ITEM_FAILED_EVENT_SIGNATURE = "BatchItemFailed(uint256,bytes)"
BATCH_ITEM_FAILED_TOPIC = "0x" + keccak(text=BATCH_ITEM_FAILED_EVENT_SIGNATURE).hex()

ERROR_SIGNATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("NotOwner", ()),
    ("NotOperator", ()),
    ("Reentered", ()),
    ("Expired", ("uint256",)),
    ("BadParams", ()),
    ("BadPath", ()),
    ("UnauthorizedCallback", ()),
    ("InsufficientProfit", ("uint256", "uint256")),
    ("InsufficientOutput", ("uint256", "uint256")),
    ("TokenCallFailed", ("address",)),
    ("EthTransferFailed", ("address",)),
    ("NotWeth", ()),
    ("NotPendingOwner", ()),
    ("CoinbaseShareTooHigh", ("uint256", "uint256")),
    ("PoolNotAllowed", ("address",)),
    ("BadOraclePrice", ("address",)),
    ("SlippageTooHigh", ("uint256", "uint256")),
    ("NotBatchable", ("uint256",)),
    ("AllItemsFailed", ("bytes",)),
    ("SubsidyTooHigh", ("uint256", "uint256")),
)
ERRORS: dict[bytes, tuple[str, tuple[str, ...]]] = {
    function_signature_to_4byte_selector(f"{name}({','.join(types)})"): (name, types)
    for name, types in ERROR_SIGNATURES
}


class Venue(IntEnum):
    """`LiquidationExecutor.Venue` (0 is Invalid on chain): the route kinds."""

    UNISWAP_V3 = 1
    UNISWAP_V2 = 2
    BALANCER_V2 = 3
    MIXED = 4


class FlashSource(IntEnum):
    """`LiquidationExecutor.FlashSource` (0 is Invalid on chain): where an arbitrage borrows."""

    BALANCER_VAULT = 1
    """The Balancer V2 Vault's `flashLoan` (fee: the Vault's flash-loan fee, zero on mainnet today). The
    Vault is locked during its flash loan: the route must not swap on Balancer."""
    AAVE_V3 = 2
    """The Aave V3 Pool's `flashLoanSimple` (its FLASHLOAN_PREMIUM_TOTAL)."""


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


def _pool_id32(pool_id: str | bytes) -> bytes:
    raw = pool_id if isinstance(pool_id, bytes) else bytes.fromhex(pool_id.removeprefix("0x"))
    if len(raw) != 32:
        raise ValueError(f"not a 32-byte Balancer pool id: {pool_id!r}")
    return raw


@dataclass(frozen=True, slots=True)
class BalancerRoute:
    """Balancer V2 route through the Vault: tokens[0] -pool_ids[0]-> tokens[1] -> ... (pool ids 0x-prefixed
    32-byte hex, stored lowercase)."""

    tokens: tuple[str, ...]
    pool_ids: tuple[str, ...]

    venue = Venue.BALANCER_V2

    def __post_init__(self) -> None:
        if len(self.tokens) < 2 or len(self.pool_ids) != len(self.tokens) - 1:
            raise ValueError("a Balancer route needs n >= 2 tokens and n - 1 pool ids")
        object.__setattr__(self, "pool_ids", tuple("0x" + _pool_id32(p).hex() for p in self.pool_ids))

    @property
    def token_in(self) -> str:
        return self.tokens[0]

    @property
    def token_out(self) -> str:
        return self.tokens[-1]

    def encode(self) -> bytes:
        return encode_balancer_path(self.tokens, self.pool_ids)


HopRoute = V3Route | V2Route | BalancerRoute
"""A route on one venue: what a leg of a Mixed route chains."""


@dataclass(frozen=True, slots=True)
class RouteLeg:
    """One leg of a `MixedRoute`: `bps` of the route's input sold along `hops` in order (each hop sells the
    previous one's whole output)."""

    bps: int
    hops: tuple[HopRoute, ...]

    def __post_init__(self) -> None:
        if not 0 < self.bps <= BPS:
            raise ValueError(f"a leg's bps must be within 1..10000, not {self.bps}")
        if not self.hops:
            raise ValueError("a leg needs at least one hop")
        for hop in self.hops:
            if not isinstance(hop, (V3Route, V2Route, BalancerRoute)):
                raise TypeError(f"a leg's hop must be a V3, V2 or Balancer route, not {type(hop).__name__}")
        for prev, nxt in zip(self.hops, self.hops[1:], strict=False):
            if prev.token_out.lower() != nxt.token_in.lower():
                raise ValueError("a leg's hops do not chain")

    @property
    def token_in(self) -> str:
        return self.hops[0].token_in

    @property
    def token_out(self) -> str:
        return self.hops[-1].token_out


@dataclass(frozen=True, slots=True)
class MixedRoute:
    """A split route: the input divided over `legs` by bps (floor(amount * bps / 10000) each, the last leg
    takes the remainder), every leg from the same input token to the same output token; the legs' outputs
    are summed and the total checked against min_out (each hop inside runs with minimum 0)."""

    legs: tuple[RouteLeg, ...]

    venue = Venue.MIXED

    def __post_init__(self) -> None:
        if not self.legs:
            raise ValueError("a mixed route needs at least one leg")
        if sum(leg.bps for leg in self.legs) != BPS:
            raise ValueError("the legs' bps must sum to 10000")
        first = self.legs[0]
        for leg in self.legs[1:]:
            if (
                leg.token_in.lower() != first.token_in.lower()
                or leg.token_out.lower() != first.token_out.lower()
            ):
                raise ValueError("every leg must run from the same input to the same output token")

    @property
    def token_in(self) -> str:
        return self.legs[0].token_in

    @property
    def token_out(self) -> str:
        return self.legs[0].token_out

    def split(self, amount_in: int) -> list[int]:
        """Each leg's input for `amount_in`, exactly as the contract splits it."""
        parts = [amount_in * leg.bps // BPS for leg in self.legs[:-1]]
        return [*parts, amount_in - sum(parts)]

    def encode(self) -> bytes:
        legs = [(leg.bps, [(int(h.venue), h.encode()) for h in leg.hops]) for leg in self.legs]
        return encode([MIXED_LEGS_TYPE], [legs])


Route = V3Route | V2Route | BalancerRoute | MixedRoute


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


def encode_balancer_path(tokens: Sequence[str], pool_ids: Sequence[str | bytes]) -> bytes:
    """Packed Balancer V2 path: token | poolId (32 bytes) | token | ... (20 + 52 * hops bytes)."""
    if len(tokens) < 2 or len(pool_ids) != len(tokens) - 1:
        raise ValueError("a Balancer path needs n >= 2 tokens and n - 1 pool ids")
    out = bytearray(_addr20(tokens[0]))
    for pool_id, token in zip(pool_ids, tokens[1:], strict=True):
        out += _pool_id32(pool_id) + _addr20(token)
    return bytes(out)


def decode_balancer_path(path: bytes) -> BalancerRoute:
    if len(path) < 72 or (len(path) - 20) % 52:
        raise DecodeError(f"bad Balancer path length {len(path)}")
    tokens = [_checksum(path[:20])]
    pool_ids = []
    for i in range(20, len(path), 52):
        pool_ids.append("0x" + path[i : i + 32].hex())
        tokens.append(_checksum(path[i + 32 : i + 52]))
    return BalancerRoute(tuple(tokens), tuple(pool_ids))


def _decode_hop(venue: int, path: bytes) -> HopRoute:
    if venue == Venue.UNISWAP_V3:
        return decode_v3_path(path)
    if venue == Venue.UNISWAP_V2:
        return decode_v2_path(path)
    if venue == Venue.BALANCER_V2:
        return decode_balancer_path(path)
    raise DecodeError(f"route kind {venue} cannot be a hop")


def decode_mixed_path(path: bytes) -> MixedRoute:
    try:
        (legs,) = decode([MIXED_LEGS_TYPE], path)
        return MixedRoute(
            tuple(
                RouteLeg(int(bps), tuple(_decode_hop(int(v), bytes(p)) for v, p in hops))
                for bps, hops in legs
            )
        )
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"bad mixed route: {exc}") from exc


def decode_route(venue: int, path: bytes) -> Route:
    """The route of a (venue, path) pair as the contract takes it. Raises DecodeError on bad input."""
    if venue == Venue.MIXED:
        return decode_mixed_path(path)
    if venue in (Venue.UNISWAP_V3, Venue.UNISWAP_V2, Venue.BALANCER_V2):
        return _decode_hop(venue, path)
    raise DecodeError(f"unknown route kind {venue}")


@dataclass(frozen=True, slots=True)
class LiquidationParams:
    """One `liquidate` call. Amounts are integers in the token's base units.

    min_profit: the owner's profit after the flash premium and the builder's share, in debt-asset units.
    coinbase_bps: the builder's share of the gross profit; paid in ETH, after the profit check.
    coinbase_route: V3 route debt -> WETH for that payment; None when the debt is WETH or bps is 0.
    max_block: the call reverts in any later block (a bundle's target block).
    min_out: amountOutMinimum of the collateral sale (the exact quote minus a tolerance); the contract
        also enforces the owner's oracle floor (`slippage_floor`), so the effective minimum is the higher.
    coinbase_min_out: amountOutMinimum (WETH) of the builder-payment conversion swap.
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
    min_out: int = 0
    coinbase_min_out: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.debt_to_cover < 2**256:
            raise ValueError("debt_to_cover must be in (0, 2**256)")
        if not 0 <= self.min_profit < 2**256:
            raise ValueError("min_profit out of range")
        if not 0 <= self.coinbase_bps <= BPS:
            raise ValueError("coinbase_bps must be within 0..10000")
        if not 0 <= self.max_block <= UINT64_MAX:
            raise ValueError("max_block out of uint64 range")
        if not (0 <= self.min_out <= UINT256_MAX and 0 <= self.coinbase_min_out <= UINT256_MAX):
            raise ValueError("min_out and coinbase_min_out must be uint256")
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
            self.min_out,
            self.coinbase_min_out,
        )


def encode_liquidate(params: LiquidationParams) -> bytes:
    """Calldata for `LiquidationExecutor.liquidate(params)`."""
    return LIQUIDATE_SELECTOR + encode([PARAMS_TUPLE], [params.abi_tuple()])


def encode_liquidate_subsidized(params: LiquidationParams, max_subsidy: int) -> bytes:
    """Calldata for `LiquidationExecutor.liquidateSubsidized(params, maxSubsidy)`: `max_subsidy` is the
    most the owner may pay (debt-asset units) when the sale does not repay the loan plus premium."""
    if not 0 <= max_subsidy <= UINT256_MAX:
        raise ValueError("max_subsidy must be uint256")
    args = encode([PARAMS_TUPLE, "uint256"], [params.abi_tuple(), max_subsidy])
    return LIQUIDATE_SUBSIDIZED_SELECTOR + args


def decode_liquidate_subsidized(calldata: bytes) -> tuple[LiquidationParams, int]:
    """Inverse of `encode_liquidate_subsidized`: (params, max_subsidy). Raises DecodeError on bad input."""
    if calldata[:4] != LIQUIDATE_SUBSIDIZED_SELECTOR:
        raise DecodeError("not a liquidateSubsidized() call")
    try:
        t, max_subsidy = decode([PARAMS_TUPLE, "uint256"], calldata[4:])
    except Exception as exc:
        raise DecodeError(f"bad liquidateSubsidized() calldata: {exc}") from exc
    return _params_of(t), int(max_subsidy)


def decode_liquidate(calldata: bytes) -> LiquidationParams:
    """Inverse of `encode_liquidate` (for logs, ledgers and tests). Raises DecodeError on bad input."""
    if calldata[:4] != LIQUIDATE_SELECTOR:
        raise DecodeError("not a liquidate() call")
    try:
        (t,) = decode([PARAMS_TUPLE], calldata[4:])
    except Exception as exc:
        raise DecodeError(f"bad liquidate() calldata: {exc}") from exc
    return _params_of(t)


def _params_of(t: Sequence[Any]) -> LiquidationParams:
    try:
        route = decode_route(int(t[6]), bytes(t[7]))
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
            min_out=int(t[11]),
            coinbase_min_out=int(t[12]),
        )
    except DecodeError:
        raise
    except Exception as exc:  # eth_abi and our own validation raise many types on bad input
        raise DecodeError(f"bad liquidation params: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ArbitrageParams:
    """One `arbitrage` call. Amounts are integers in `token`'s base units.

    source: where `amount` of `token` is flash-borrowed (the Balancer Vault cannot be used when the route
        swaps on Balancer: the Vault is locked during its flash loan).
    route: the cycle `token` -> ... -> `token` (any route kind).
    min_out: the route's total output minimum (passed to the router for a single-venue route, checked on
        the summed legs for a Mixed one).
    min_profit: the owner's profit after the flash fee and the builder's share.
    coinbase_bps: the builder's share of the gross profit; paid in ETH, after the profit check.
    max_block: the call reverts in any later block.
    tag: 32 bytes, the keeper's opportunity tag, emitted in `Arbitraged`.
    coinbase_route: V3 route token -> WETH for the builder's payment; None when token is WETH or bps is 0.
    """

    source: FlashSource
    token: str
    amount: int
    route: Route
    min_out: int
    min_profit: int
    coinbase_bps: int
    max_block: int
    tag: bytes
    coinbase_route: V3Route | None = None
    coinbase_min_out: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.amount <= UINT256_MAX:
            raise ValueError("amount must be in (0, 2**256)")
        if not (0 <= self.min_out <= UINT256_MAX and 0 <= self.min_profit <= UINT256_MAX):
            raise ValueError("min_out and min_profit must be uint256")
        if not 0 <= self.coinbase_min_out <= UINT256_MAX:
            raise ValueError("coinbase_min_out must be uint256")
        if not 0 <= self.coinbase_bps <= BPS:
            raise ValueError("coinbase_bps must be within 0..10000")
        if not 0 <= self.max_block <= UINT64_MAX:
            raise ValueError("max_block out of uint64 range")
        if not isinstance(self.tag, bytes) or len(self.tag) != 32:
            raise ValueError("tag must be 32 bytes")
        object.__setattr__(self, "source", FlashSource(self.source))
        if (
            self.route.token_in.lower() != self.token.lower()
            or self.route.token_out.lower() != self.token.lower()
        ):
            raise ValueError("an arbitrage route must start and end at the borrowed token")
        if self.coinbase_route is not None and self.coinbase_route.token_in.lower() != self.token.lower():
            raise ValueError("coinbase route must start at the borrowed token")

    @property
    def tag_hex(self) -> str:
        """The tag as 0x-prefixed hex (what a SubmitBundle's meta["tag"] holds)."""
        return "0x" + self.tag.hex()

    def abi_tuple(self) -> tuple[Any, ...]:
        return (
            int(self.source),
            self.token,
            self.amount,
            int(self.route.venue),
            self.route.encode(),
            self.min_out,
            self.min_profit,
            self.coinbase_bps,
            self.coinbase_route.encode() if self.coinbase_route is not None else b"",
            self.coinbase_min_out,
            self.max_block,
            self.tag,
        )


def encode_arbitrage(params: ArbitrageParams) -> bytes:
    """Calldata for `LiquidationExecutor.arbitrage(params)`."""
    return ARBITRAGE_SELECTOR + encode([ARB_PARAMS_TUPLE], [params.abi_tuple()])


def decode_arbitrage(calldata: bytes) -> ArbitrageParams:
    """Inverse of `encode_arbitrage`. Raises DecodeError on bad input."""
    if calldata[:4] != ARBITRAGE_SELECTOR:
        raise DecodeError("not an arbitrage() call")
    try:
        (t,) = decode([ARB_PARAMS_TUPLE], calldata[4:])
        return ArbitrageParams(
            source=FlashSource(t[0]),
            token=_checksum(bytes.fromhex(t[1][2:])),
            amount=int(t[2]),
            route=decode_route(int(t[3]), bytes(t[4])),
            min_out=int(t[5]),
            min_profit=int(t[6]),
            coinbase_bps=int(t[7]),
            coinbase_route=decode_v3_path(t[8]) if t[8] else None,
            coinbase_min_out=int(t[9]),
            max_block=int(t[10]),
            tag=bytes(t[11]),
        )
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"bad arbitrage() calldata: {exc}") from exc


def encode_approve(spender: str, amount: int) -> bytes:
    """ERC-20 `approve(spender, amount)`: the owner's approval of the executor for a debt token caps what
    `liquidateSubsidized` calls may pull from the owner."""
    if not 0 <= amount <= UINT256_MAX:
        raise ValueError("amount must be uint256")
    return encode_call("approve(address,uint256)", ["address", "uint256"], [spender, amount])


def encode_allowance(owner: str, spender: str) -> bytes:
    """ERC-20 `allowance(owner, spender)`."""
    return encode_call("allowance(address,address)", ["address", "address"], [owner, spender])


def encode_set_operator(operator: str, enabled: bool) -> bytes:
    return encode_call("setOperator(address,bool)", ["address", "bool"], [operator, enabled])


def encode_sweep(token: str) -> bytes:
    return encode_call("sweep(address)", ["address"], [token])


def encode_sweep_eth() -> bytes:
    return encode_call("sweepETH()")


def encode_set_pool(pool: str, oracle: str) -> bytes:
    """Owner: allow `pool` as a liquidationCall target priced by its Aave `oracle` (zero oracle removes)."""
    return encode_call("setPool(address,address)", ["address", "address"], [pool, oracle])


def encode_set_max_coinbase_bps(bps: int) -> bytes:
    return encode_call("setMaxCoinbaseBps(uint16)", ["uint16"], [bps])


def encode_set_max_slippage_bps(bps: int) -> bytes:
    return encode_call("setMaxSlippageBps(uint16)", ["uint16"], [bps])


def encode_transfer_ownership(new_owner: str) -> bytes:
    """Owner: step one of the rotation (the current owner keeps control until `acceptOwnership`)."""
    return encode_call("transferOwnership(address)", ["address"], [new_owner])


def encode_accept_ownership() -> bytes:
    return encode_call("acceptOwnership()")


# --- batch ----------------------------------------------------------------------------------------------


def encode_batch(calls: Sequence[bytes]) -> bytes:
    """Calldata for `batch(calls)`: each item the full calldata of a batchable entry point (`liquidate`
    or `arbitrage`, from `encode_liquidate` / `encode_arbitrage`). The contract runs each as a self-call;
    a failing item reverts only itself, and the whole call reverts (AllItemsFailed) only when every item
    fails."""
    if not calls:
        raise ValueError("a batch needs at least one call")
    for i, call in enumerate(calls):
        if bytes(call[:4]) not in BATCHABLE_SELECTORS:
            raise ValueError(f"batch item {i} is not a batchable call (selector {bytes(call[:4]).hex()})")
    return BATCH_SELECTOR + encode(["bytes[]"], [[bytes(c) for c in calls]])


def decode_batch_result(data: bytes) -> list[tuple[bool, bytes]]:
    """The return data of `batch`: per item (ok, its return data if ok else its revert data)."""
    try:
        ok, results = decode(["bool[]", "bytes[]"], data)
    except Exception as exc:
        raise DecodeError(f"bad batch() return data: {exc}") from exc
    if len(ok) != len(results):
        raise DecodeError(f"bad batch() return data: {len(ok)} flags for {len(results)} results")
    return [(bool(flag), bytes(result)) for flag, result in zip(ok, results, strict=True)]


def decode_liquidate_result(data: bytes) -> tuple[int, int]:
    """The return data of `liquidate` (or of a successful batch item): (profit in debt-asset units,
    wei paid to block.coinbase)."""
    if len(data) != 64:
        raise DecodeError(f"bad liquidate() return data: {len(data)} bytes, expected 64")
    profit, paid = decode(["uint256", "uint256"], data)
    return int(profit), int(paid)


def decode_liquidate_subsidized_result(data: bytes) -> tuple[int, int, int]:
    """The return data of `liquidateSubsidized` (or of such a successful batch item): (profit in debt-asset
    units, wei paid to block.coinbase, subsidy pulled from the owner in debt-asset units)."""
    if len(data) != 96:
        raise DecodeError(f"bad liquidateSubsidized() return data: {len(data)} bytes, expected 96")
    profit, paid, subsidy = decode(["uint256", "uint256", "uint256"], data)
    return int(profit), int(paid), int(subsidy)


def decode_item_result(data: bytes) -> tuple[int, int]:
    """A successful `liquidate`, `liquidateSubsidized` or `arbitrage` call's (or batch item's) return data
    as (signed profit in the profit token's units, wei paid to block.coinbase): a subsidized liquidation's
    profit is minus the subsidy the owner paid."""
    if len(data) == 96:
        profit, paid, subsidy = decode_liquidate_subsidized_result(data)
        return profit - subsidy, paid
    if len(data) != 64:
        raise DecodeError(f"bad executor return data: {len(data)} bytes, expected 64 or 96")
    profit, paid = decode(["uint256", "uint256"], data)
    return int(profit), int(paid)


def decode_arbitrage_result(data: bytes) -> tuple[int, int]:
    """The return data of `arbitrage` (or of a successful batch item): (profit in the borrowed token's
    units, wei paid to block.coinbase)."""
    if len(data) != 64:
        raise DecodeError(f"bad arbitrage() return data: {len(data)} bytes, expected 64")
    profit, paid = decode(["uint256", "uint256"], data)
    return int(profit), int(paid)


@dataclass(frozen=True, slots=True)
class BatchItemFailure:
    """`BatchItemFailed`: item `index` of a batch reverted with `reason` (raw revert data)."""

    executor: str
    index: int
    reason: bytes

    @property
    def error(self) -> tuple[str, tuple[Any, ...]] | None:
        """The executor's custom error in `reason`, if it is one."""
        return decode_executor_error(self.reason)


def decode_batch_item_failed(log: Mapping[str, Any]) -> BatchItemFailure:
    topics = list(log.get("topics") or [])
    if len(topics) != 2 or str(topics[0]).lower() != BATCH_ITEM_FAILED_TOPIC:
        raise DecodeError("not a BatchItemFailed log")
    try:
        index = int(str(topics[1]), 16)
        (reason,) = decode(["bytes"], bytes.fromhex(str(log["data"])[2:]))
        return BatchItemFailure(_checksum(bytes.fromhex(str(log["address"])[2:])), index, bytes(reason))
    except Exception as exc:
        raise DecodeError(f"bad BatchItemFailed log: {exc}") from exc


def _receipt_logs(receipt: Mapping[str, Any], topic: str, executor: str | None) -> list[Mapping[str, Any]]:
    """The receipt's logs with `topic` as topic0 (optionally only those emitted by `executor`)."""
    out = []
    for log in receipt.get("logs", []):
        topics = log.get("topics") or []
        if not topics or str(topics[0]).lower() != topic:
            continue
        if executor is not None and str(log.get("address", "")).lower() != executor.lower():
            continue
        out.append(log)
    return out


def batch_item_failures(receipt: Mapping[str, Any], executor: str | None = None) -> list[BatchItemFailure]:
    """Every `BatchItemFailed` log in a receipt (optionally only those emitted by `executor`)."""
    return [
        decode_batch_item_failed(log) for log in _receipt_logs(receipt, BATCH_ITEM_FAILED_TOPIC, executor)
    ]


def slippage_floor(
    amount: int,
    price_collateral: int,
    price_debt: int,
    collateral_decimals: int,
    debt_decimals: int,
    max_slippage_bps: int,
) -> int:
    """The contract's `slippageFloor`: the least the sale of `amount` collateral may return, in debt-asset
    units, from the pool's Aave oracle prices (same base currency). Both roundings go up, as on chain."""
    if price_collateral <= 0 or price_debt <= 0:
        raise ValueError("oracle prices must be positive")
    if not 0 <= max_slippage_bps <= BPS:
        raise ValueError("max_slippage_bps must be within 0..10000")
    if min(amount, collateral_decimals, debt_decimals) < 0:
        raise ValueError("amount and decimals must be non-negative")
    scale_debt, scale_collateral = int(10**debt_decimals), int(10**collateral_decimals)
    value = _div_up(amount * price_collateral * scale_debt, price_debt * scale_collateral)
    return _div_up(value * (BPS - max_slippage_bps), BPS)


def _div_up(a: int, b: int) -> int:
    """Solidity's `a == 0 ? 0 : (a - 1) / b + 1` for a >= 0, b > 0."""
    return 0 if a == 0 else (a - 1) // b + 1


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
    subsidy: int = 0
    """What the owner paid to repay the loan (a `liquidateSubsidized` call's `Subsidized` event that follows
    this one, paired by `liquidated_events` / `executor_events`); 0 otherwise."""

    @property
    def gross_profit(self) -> int:
        """Debt asset left after repaying the loan, before the builder's share (negative: subsidized)."""
        return self.swap_out - self.debt_repaid - self.flash_premium

    @property
    def realized_profit(self) -> int:
        """The owner's result in the debt asset: the profit, or minus the subsidy paid."""
        return self.profit - self.subsidy


def _topic_word(topic: str) -> bytes:
    try:
        raw = bytes.fromhex(str(topic)[2:])
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise DecodeError(f"bad topic {str(topic)[:80]!r}")
    return raw


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
    """Every `Liquidated` log in a receipt (optionally only those emitted by `executor`), each with the
    subsidy of the `Subsidized` log that follows it (`subsidy`, 0 when none)."""
    return [e for e in executor_events(receipt, executor) if isinstance(e, LiquidatedEvent)]


@dataclass(frozen=True, slots=True)
class SubsidizedEvent:
    """`Subsidized`: a `liquidateSubsidized` call whose sale did not repay the loan; the owner paid
    `shortfall` (debt-asset units). Emitted right after the same call's `Liquidated`."""

    executor: str
    lending_pool: str
    user: str
    debt: str
    shortfall: int


def decode_subsidized(log: Mapping[str, Any]) -> SubsidizedEvent:
    """Decodes one `Subsidized` log (a JSON-RPC log object). Raises DecodeError if it is not one."""
    topics = list(log.get("topics") or [])
    if len(topics) != 3 or str(topics[0]).lower() != SUBSIDIZED_TOPIC:
        raise DecodeError("not a Subsidized log")
    try:
        debt, shortfall = decode(["address", "uint256"], bytes.fromhex(str(log["data"])[2:]))
        return SubsidizedEvent(
            executor=_checksum(bytes.fromhex(str(log["address"])[2:])),
            lending_pool=_topic_address(topics[1]),
            user=_topic_address(topics[2]),
            debt=str(to_checksum_address(debt)),
            shortfall=int(shortfall),
        )
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"bad Subsidized log: {exc}") from exc


def subsidized_events(receipt: Mapping[str, Any], executor: str | None = None) -> list[SubsidizedEvent]:
    """Every `Subsidized` log in a receipt (optionally only those emitted by `executor`)."""
    return [decode_subsidized(log) for log in _receipt_logs(receipt, SUBSIDIZED_TOPIC, executor)]


def with_subsidy(events: list[ExecutorEvent], sub: SubsidizedEvent) -> bool:
    """Attaches `sub` to the last `Liquidated` event of `events` (in log order) it belongs to: same
    executor, pool, user and debt, no subsidy yet. False when there is none."""
    for i in range(len(events) - 1, -1, -1):
        ev = events[i]
        if (
            isinstance(ev, LiquidatedEvent)
            and ev.subsidy == 0
            and ev.executor == sub.executor
            and (ev.lending_pool, ev.user, ev.debt) == (sub.lending_pool, sub.user, sub.debt)
        ):
            events[i] = replace(ev, subsidy=sub.shortfall)
            return True
    return False


@dataclass(frozen=True, slots=True)
class ArbitragedEvent:
    """`Arbitraged`: what one arbitrage() call did. amount_in: borrowed and sold; amount_out: what the
    route returned; profit: paid to the owner (in `token`); coinbase_paid: wei paid to block.coinbase."""

    executor: str
    tag: bytes
    token: str
    amount_in: int
    amount_out: int
    flash_fee: int
    profit: int
    coinbase_paid: int

    @property
    def tag_hex(self) -> str:
        return "0x" + self.tag.hex()

    @property
    def gross_profit(self) -> int:
        """`token` left after repaying the loan and its fee, before the builder's share."""
        return self.amount_out - self.amount_in - self.flash_fee


def arbitrage_tag(opportunity_id: str, target_block: int) -> bytes:
    """The tag an arbitrage sent for `target_block` carries (`ArbitrageParams.tag`, emitted in
    `Arbitraged`): keccak256 of "<opportunity id without its episode suffix>@<target block>". A rule, not
    a random value, so the executor finds its arbitrages' events on restart from the ledger's claims."""
    base = opportunity_id.partition("#")[0]
    return bytes(keccak(text=f"{base}@{target_block}"))


def decode_arbitraged(log: Mapping[str, Any]) -> ArbitragedEvent:
    """Decodes one `Arbitraged` log (a JSON-RPC log object). Raises DecodeError if it is not one."""
    topics = list(log.get("topics") or [])
    if len(topics) != 3 or str(topics[0]).lower() != ARBITRAGED_TOPIC:
        raise DecodeError("not an Arbitraged log")
    tag = _topic_word(topics[1])
    try:
        data = bytes.fromhex(str(log["data"])[2:])
        amount_in, amount_out, fee, profit, paid = decode(["uint256"] * 5, data)
        return ArbitragedEvent(
            executor=_checksum(bytes.fromhex(str(log["address"])[2:])),
            tag=tag,
            token=_topic_address(topics[2]),
            amount_in=int(amount_in),
            amount_out=int(amount_out),
            flash_fee=int(fee),
            profit=int(profit),
            coinbase_paid=int(paid),
        )
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"bad Arbitraged log: {exc}") from exc


def arbitraged_events(receipt: Mapping[str, Any], executor: str | None = None) -> list[ArbitragedEvent]:
    """Every `Arbitraged` log in a receipt (optionally only those emitted by `executor`)."""
    return [decode_arbitraged(log) for log in _receipt_logs(receipt, ARBITRAGED_TOPIC, executor)]


ExecutorEvent = LiquidatedEvent | ArbitragedEvent
"""What one successful `liquidate` or `arbitrage` emits: both carry `profit` and `coinbase_paid`."""


def executor_logs(
    logs: Iterable[Mapping[str, Any]], executor: str | None = None
) -> list[tuple[ExecutorEvent, Mapping[str, Any]]]:
    """Every `Liquidated` and `Arbitraged` log among `logs` (a receipt's, or an `eth_getLogs` answer), in
    log order, each with its log (optionally only those emitted by `executor`); a `Liquidated` event
    followed by its call's `Subsidized` carries the subsidy."""
    events: list[ExecutorEvent] = []
    entries: list[Mapping[str, Any]] = []
    for log in logs:
        topics = log.get("topics") or []
        if not topics:
            continue
        if executor is not None and str(log.get("address", "")).lower() != executor.lower():
            continue
        topic = str(topics[0]).lower()
        if topic == LIQUIDATED_TOPIC:
            events.append(decode_liquidated(log))
            entries.append(log)
        elif topic == ARBITRAGED_TOPIC:
            events.append(decode_arbitraged(log))
            entries.append(log)
        elif topic == SUBSIDIZED_TOPIC:
            with_subsidy(events, decode_subsidized(log))
    return list(zip(events, entries, strict=True))


def executor_events(receipt: Mapping[str, Any], executor: str | None = None) -> list[ExecutorEvent]:
    """Every `Liquidated` and `Arbitraged` log in a receipt, in log order (optionally only those emitted by
    `executor`); a `Liquidated` event followed by its call's `Subsidized` carries the subsidy."""
    return [event for event, _ in executor_logs(receipt.get("logs", []), executor)]


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


# --- builds and deployment -------------------------------------------------------------------------------

_FORKS = ("london", "paris", "shanghai", "cancun", "prague", "osaka")
"""EVM versions we can build for, oldest first; Cancun and later have EIP-1153."""
TLOAD_PROBE = bytes.fromhex("60005c00")
"""Init code `PUSH1 0; TLOAD; STOP`: an eth_call of it succeeds only where TLOAD exists (EIP-1153)."""


class UnsupportedChainError(KeeperError):
    """The chosen executor build cannot run on this chain."""


def executor_build(evm_version: str) -> str:
    """The artifact name for a chain of `evm_version`: Cancun or later -> LiquidationExecutor (transient
    storage), london..shanghai -> LiquidationExecutorLegacy. "legacy" names the latter directly."""
    v = evm_version.strip().lower()
    if v == "legacy":
        return LEGACY_CONTRACT_NAME
    if v not in _FORKS:
        raise ValueError(f"unknown EVM version {evm_version!r} (one of {', '.join(_FORKS)}, or legacy)")
    return CONTRACT_NAME if _FORKS.index(v) >= _FORKS.index("cancun") else LEGACY_CONTRACT_NAME


async def supports_transient_storage(rpc: RpcClient) -> bool:
    """Whether the chain executes TLOAD (EIP-1153): an eth_call of `TLOAD_PROBE` as init code. Transport
    errors propagate; an execution error (invalid opcode) means no."""
    try:
        await rpc.call("eth_call", [{"data": "0x" + TLOAD_PROBE.hex()}, "latest"])
    except JsonRpcError:
        return False
    return True


async def choose_executor_build(rpc: RpcClient, evm_version: str = "auto") -> OurArtifact:
    """The executor artifact to deploy: detected from the chain ("auto"), or the build for `evm_version`,
    refused (UnsupportedChainError) when it needs EIP-1153 and the chain does not execute TLOAD."""
    has_tload = await supports_transient_storage(rpc)
    if evm_version == "auto":
        return our_artifact(CONTRACT_NAME if has_tload else LEGACY_CONTRACT_NAME)
    name = executor_build(evm_version)
    artifact = our_artifact(name)
    if name == CONTRACT_NAME and not has_tload:
        raise UnsupportedChainError(
            f"{name} is built for {artifact.evm_version} and uses transient storage (EIP-1153), which this "
            f"chain does not execute (an eth_call of TLOAD fails): deploy {LEGACY_CONTRACT_NAME} "
            "(--evm-version legacy, or auto)"
        )
    return artifact


def executor_creation_code(
    artifact: OurArtifact,
    owner: str,
    operator: str | None,
    *,
    flash_pool: str,
    router_v3: str,
    router_v2: str,
    weth: str,
    pools: Mapping[str, str],
    max_coinbase_bps: int = DEFAULT_MAX_COINBASE_BPS,
    max_slippage_bps: int = DEFAULT_MAX_SLIPPAGE_BPS,
    balancer_vault: str | None = None,
) -> bytes:
    """Creation code plus constructor arguments. `pools` maps each allowed lending pool (liquidationCall
    target) to its Aave price oracle; `balancer_vault` None (zero on chain) refuses Balancer routes and
    Balancer flash loans."""
    if artifact.name not in (CONTRACT_NAME, LEGACY_CONTRACT_NAME):
        raise ValueError(f"{artifact.name} is not a LiquidationExecutor build")
    if not (0 <= max_coinbase_bps <= BPS and 0 <= max_slippage_bps <= BPS):
        raise ValueError("max_coinbase_bps and max_slippage_bps must be within 0..10000")
    zero = "0x" + "00" * 20
    args = encode(
        list(CONSTRUCTOR_TYPES),
        [
            owner,
            operator or zero,
            flash_pool,
            router_v3,
            router_v2,
            weth,
            max_coinbase_bps,
            max_slippage_bps,
            list(pools),
            list(pools.values()),
            balancer_vault or zero,
        ],
    )
    return artifact.bytecode + args


class SetupSender(Protocol):
    """What `deploy_executor` needs: an RPC client and a sender of set-up transactions that returns the
    mined receipt and raises if it reverted (keeper.devnet.deployer.Deployer on a devnet)."""

    rpc: RpcClient

    async def send_raw(self, tx: dict[str, Any]) -> dict[str, Any]: ...


async def deploy_executor(
    d: SetupSender,
    owner: str,
    operator: str | None,
    *,
    flash_pool: str,
    router_v3: str,
    router_v2: str,
    weth: str,
    pools: Mapping[str, str],
    max_coinbase_bps: int = DEFAULT_MAX_COINBASE_BPS,
    max_slippage_bps: int = DEFAULT_MAX_SLIPPAGE_BPS,
    evm_version: str = "auto",
    balancer_vault: str | None = None,
) -> str:
    """Deploys a LiquidationExecutor build suited to the chain (`choose_executor_build`) from the sender;
    returns its address. `flash_pool` is the Aave V3 Pool (flash loans), `operator` may be None, `pools`
    maps allowed lending pools to their oracles, `balancer_vault` the Balancer V2 Vault (None: no Balancer
    routes or flash loans). The chain must mine the deploy (automine, or a block producer)."""
    artifact = await choose_executor_build(d.rpc, evm_version)
    code = executor_creation_code(
        artifact,
        owner,
        operator,
        flash_pool=flash_pool,
        router_v3=router_v3,
        router_v2=router_v2,
        weth=weth,
        pools=pools,
        max_coinbase_bps=max_coinbase_bps,
        max_slippage_bps=max_slippage_bps,
        balancer_vault=balancer_vault,
    )
    receipt = await d.send_raw({"data": "0x" + code.hex()})
    address = receipt.get("contractAddress")
    if not address:
        raise KeeperError(f"{artifact.name}: no contract address in the deploy receipt")
    return _checksum(bytes.fromhex(str(address)[2:]))
