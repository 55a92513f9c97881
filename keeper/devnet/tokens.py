"""Devnet tokens, Chainlink-compatible price feeds and Multicall3.

- Tokens: WETH (Aave's WETH9Mocked), USDC/USDT (6), DAI (18), WBTC (8) (Aave's MintableERC20, whose
  `mint(address,uint256)` is open to anyone) and wstETH (our LiquidStakingToken).
- Feeds (our PriceFeed): one USD feed (8 decimals) per symbol, for Aave V3; one ETH feed (18 decimals) per
  non-WETH symbol, for Aave V2 (which prices in ETH and treats WETH as exactly 1 ether).
- Price updates are real transactions calling the feed's OCR2 `transmit`, so with mining off they sit in
  the mempool where a strategy can see (and decode with `keeper.chain.ocr2`) them before they land.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import decode
from eth_utils.address import to_checksum_address

from keeper.chain import ocr2
from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.devnet.artifacts import load_artifact
from keeper.devnet.contracts import deployed_bytecode, our_artifact
from keeper.devnet.deployer import Deployer
from keeper.devnet.model import DEFAULT_LST_RATE, DEFAULT_PRICES_USD, TokenInfo
from keeper.errors import DevnetError

_AAVE_MOCKS = "@aave/core-v3/artifacts/contracts/mocks/tokens"
WETH9_ARTIFACT = f"{_AAVE_MOCKS}/WETH9Mocked.sol/WETH9Mocked.json"
MINTABLE_ERC20_ARTIFACT = f"{_AAVE_MOCKS}/MintableERC20.sol/MintableERC20.json"

MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"

USD_DECIMALS = 8
ETH_DECIMALS = 18
ONE_ETH = 10**18

# (symbol, name, decimals) of the MintableERC20 tokens.
MINTABLE_TOKENS: tuple[tuple[str, str, int], ...] = (
    ("USDC", "USD Coin", 6),
    ("USDT", "Tether USD", 6),
    ("DAI", "Dai Stablecoin", 18),
    ("WBTC", "Wrapped BTC", 8),
)
LST_SYMBOL = "wstETH"
LST_NAME = "Wrapped liquid staked Ether (devnet)"

TRANSMIT_GAS = 250_000
DEFAULT_OBSERVATIONS = 5
SECONDS_PER_YEAR = 365 * 24 * 3600


def lst_growth_per_second(rate: int, apr_bps: int) -> int:
    """Per-second linear rate growth giving `apr_bps` (basis points) a year at `rate`; rounds down."""
    return rate * apr_bps // (10_000 * SECONDS_PER_YEAR)


async def deploy_tokens(
    d: Deployer, *, lst_rate: int = DEFAULT_LST_RATE, lst_growth: int = 0
) -> dict[str, TokenInfo]:
    """Deploys WETH, USDC, USDT, DAI, WBTC and wstETH; returns them by symbol.

    `lst_growth` is the wstETH rate's increase per second (1e18 units; 0 = constant rate, which keeps
    tests deterministic; see `lst_growth_per_second`).
    """
    tokens: dict[str, TokenInfo] = {}
    weth = await d.deploy(load_artifact(WETH9_ARTIFACT))
    tokens["WETH"] = TokenInfo("WETH", weth.address, 18)
    mintable = load_artifact(MINTABLE_ERC20_ARTIFACT)
    for symbol, name, decimals in MINTABLE_TOKENS:
        dep = await d.deploy(mintable, name, symbol, decimals)
        tokens[symbol] = TokenInfo(symbol, dep.address, decimals)
    lst = await d.deploy(our_artifact("LiquidStakingToken"), LST_NAME, LST_SYMBOL, lst_rate, lst_growth)
    tokens[LST_SYMBOL] = TokenInfo(LST_SYMBOL, lst.address, 18)
    return tokens


# ---------------------------------------------------------------------------------------- feeds


def price_in_eth(price_usd: int, eth_usd: int) -> int:
    """ETH-denominated price (18 decimals) from two 8-decimal USD prices; rounds down."""
    if eth_usd <= 0:
        raise ValueError("ETH/USD price must be positive")
    return price_usd * ONE_ETH // eth_usd


def prices_in_eth(prices_usd: Mapping[str, int]) -> dict[str, int]:
    """ETH prices (18 decimals) of every non-WETH symbol; needs prices_usd["WETH"]."""
    if "WETH" not in prices_usd:
        raise DevnetError("prices_usd needs a WETH price to derive ETH-denominated prices")
    eth_usd = prices_usd["WETH"]
    return {s: price_in_eth(p, eth_usd) for s, p in prices_usd.items() if s != "WETH"}


@dataclass
class FeedSet:
    """Addresses of the deployed PriceFeeds, by symbol."""

    usd: dict[str, str]
    """symbol -> "<SYMBOL> / USD" feed (8 decimals), for Aave V3."""
    eth: dict[str, str]
    """symbol -> "<SYMBOL> / ETH" feed (18 decimals), for Aave V2; no entry for WETH."""
    transmitter: str
    owner: str
    decimals: dict[str, int] = field(default_factory=lambda: {"USD": USD_DECIMALS, "ETH": ETH_DECIMALS})

    def to_json(self) -> dict[str, Any]:
        return {
            "usd": dict(self.usd),
            "eth": dict(self.eth),
            "transmitter": self.transmitter,
            "owner": self.owner,
            "decimals": dict(self.decimals),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeedSet:
        try:
            return cls(
                usd={str(k): to_checksum_address(v) for k, v in data["usd"].items()},
                eth={str(k): to_checksum_address(v) for k, v in data["eth"].items()},
                transmitter=to_checksum_address(data["transmitter"]),
                owner=to_checksum_address(data["owner"]),
                decimals={str(k): int(v) for k, v in data.get("decimals", {"USD": 8, "ETH": 18}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DevnetError(f"bad FeedSet JSON: {exc!r}") from None

    def answers(self, prices_usd: Mapping[str, int]) -> dict[str, int]:
        """feed address -> answer for a full set of USD prices: every USD feed and every ETH feed (an ETH
        price move changes every ETH-denominated feed). Symbols without a feed are ignored."""
        out = {self.usd[s]: p for s, p in prices_usd.items() if s in self.usd}
        for s, p in prices_in_eth(prices_usd).items():
            if s in self.eth:
                out[self.eth[s]] = p
        return out


async def deploy_feeds(
    d: Deployer,
    prices_usd: Mapping[str, int] = DEFAULT_PRICES_USD,
    *,
    transmitter: str | None = None,
) -> FeedSet:
    """Deploys a USD feed per symbol and an ETH feed per non-WETH symbol, each starting at its price
    (round 1), with `transmitter` (default: the deployer's sender) allowed to transmit updates."""
    artifact = our_artifact("PriceFeed")
    sender = to_checksum_address(transmitter or d.sender)
    usd: dict[str, str] = {}
    eth: dict[str, str] = {}
    for symbol, price in prices_usd.items():
        if price <= 0:
            raise DevnetError(f"price of {symbol} must be positive, got {price}")
        dep = await d.deploy(artifact, USD_DECIMALS, f"{symbol} / USD", sender, price)
        usd[symbol] = dep.address
    for symbol, price in prices_in_eth(prices_usd).items():
        dep = await d.deploy(artifact, ETH_DECIMALS, f"{symbol} / ETH", sender, price)
        eth[symbol] = dep.address
    return FeedSet(usd=usd, eth=eth, transmitter=sender, owner=d.sender)


# ---------------------------------------------------------------------------------------- Multicall3


async def install_multicall3(rpc: RpcClient, address: str = MULTICALL3_ADDRESS) -> str:
    """Puts our Multicall3 runtime code at the canonical address (anvil_setCode) and checks it."""
    code = deployed_bytecode("Multicall3")
    await rpc.call("anvil_setCode", [address, code])
    installed = await rpc.call("eth_getCode", [address, "latest"])
    if not isinstance(installed, str) or installed.lower() != code.lower():
        raise DevnetError(f"Multicall3 code was not installed at {address}")
    return to_checksum_address(address)


# ---------------------------------------------------------------------------------------- price updates


def make_observations(answer: int, n: int = DEFAULT_OBSERVATIONS, spread: int | None = None) -> list[int]:
    """`n` sorted observations around `answer` whose OCR2 median (observations[n // 2]) is exactly
    `answer`: answer + k * spread for k = -(n // 2) .. (n - 1) // 2. Default spread: 1 bp of answer."""
    if not 1 <= n <= ocr2.MAX_OBSERVATIONS:
        raise ValueError(f"need 1..{ocr2.MAX_OBSERVATIONS} observations, got {n}")
    step = abs(answer) // 10_000 if spread is None else spread
    if step < 0:
        raise ValueError("spread must be >= 0")
    return [answer + k * step for k in range(-(n // 2), (n - 1) // 2 + 1)]


async def next_epoch_round(rpc: RpcClient, feed: str, block: str = "latest") -> int:
    """The smallest epoch_round the feed accepts next (its latest + 1), as of `block`. If you queue
    several updates for one feed before they are mined, give each its own increasing value."""
    raw = await rpc.eth_call(feed, encode_call("latestTransmissionDetails()", [], []), block)
    _digest, epoch, round_, _answer, _ts = decode(["bytes32", "uint32", "uint8", "int192", "uint64"], raw)
    return ((int(epoch) << 8) | int(round_)) + 1


async def latest_block_timestamp(rpc: RpcClient) -> int:
    block = await rpc.call("eth_getBlockByNumber", ["latest", False])
    if not isinstance(block, dict):
        raise DevnetError("no latest block")
    return hex_to_int(block["timestamp"])


def price_update_tx(
    feed: str,
    answer: int,
    *,
    transmitter: str,
    epoch_round: int,
    observations_timestamp: int,
    observations: Sequence[int] | None = None,
    gas: int = TRANSMIT_GAS,
) -> dict[str, Any]:
    """An unsigned `transmit` transaction (eth_sendTransaction shape) setting `feed` to `answer`."""
    obs = make_observations(answer) if observations is None else list(observations)
    data = ocr2.encode_transmit(obs, epoch_round=epoch_round, observations_timestamp=observations_timestamp)
    return {
        "from": to_checksum_address(transmitter),
        "to": to_checksum_address(feed),
        "data": "0x" + data.hex(),
        "gas": hex(gas),
    }


async def send_price_update(
    rpc: RpcClient,
    feed: str,
    answer: int,
    *,
    transmitter: str,
    epoch_round: int | None = None,
    observations: Sequence[int] | None = None,
    gas: int = TRANSMIT_GAS,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Sends a price update from the (unlocked) transmitter and returns its hash without waiting:
    with mining off it stays pending. `extra` adds tx fields (e.g. maxFeePerGas, nonce)."""
    if epoch_round is None:
        epoch_round = await next_epoch_round(rpc, feed)
    tx = price_update_tx(
        feed,
        answer,
        transmitter=transmitter,
        epoch_round=epoch_round,
        observations_timestamp=await latest_block_timestamp(rpc),
        observations=observations,
        gas=gas,
    )
    tx.update(extra or {})
    tx_hash = await rpc.call("eth_sendTransaction", [tx])
    if not isinstance(tx_hash, str):
        raise DevnetError(f"eth_sendTransaction returned {tx_hash!r}")
    return tx_hash
