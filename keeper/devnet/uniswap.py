"""Shared pieces of the devnet's AMM venues (Uniswap V2 in `uniswap_v2.py`, V3 in `uniswap_v3.py`).

Prices: a pair "A/B" is seeded so that one whole A is worth `price_usd[A] / price_usd[B]` whole B, exactly
(integer amounts chosen so the ratio holds with no remainder), except LST/WETH pairs, which use the LST's
exchange rate (`DEFAULT_LST_RATE`, ETH per LST with 18 decimals).

Funding: the default funder mints test tokens to the deployer: `deposit()` with ETH for WETH (so the WETH
stays fully backed and unwrapping works), `mint(address,uint256)` for every other token (Aave's
MintableERC20 and the devnet's LST expose it). Pass another `Funder` for tokens without a public mint.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from eth_utils.address import to_checksum_address

from keeper.devnet.deployer import Deployer
from keeper.devnet.model import DEFAULT_LST_RATE, DEFAULT_PRICES_USD, TokenInfo
from keeper.errors import DevnetError

WETH = "WETH"
LST = "wstETH"
MAX_UINT256 = 2**256 - 1
FAR_DEADLINE = 2**48
"""A deadline far in the future (router `deadline` arguments)."""

Funder = Callable[[Deployer, TokenInfo, int], Awaitable[None]]
"""Gives `amount` base units of `token` to `deployer.sender`."""


@dataclass(frozen=True)
class Ratio:
    """Exact price of one base unit of A in base units of B: `num / den`."""

    num: int
    den: int

    def __post_init__(self) -> None:
        if self.num <= 0 or self.den <= 0:
            raise DevnetError(f"bad price ratio {self.num}/{self.den}")

    def convert(self, amount_a: int) -> int:
        """B base units worth `amount_a` (floored)."""
        return amount_a * self.num // self.den

    def exact_unit(self) -> int:
        """The smallest amount of A whose value in B is a whole number of base units."""
        return self.den // math.gcd(self.num, self.den)


@dataclass(frozen=True)
class PriceBook:
    """USD prices with 8 decimals (as Chainlink) plus the LST rate; gives exact pair ratios."""

    usd: Mapping[str, int]
    lst_rate: int = DEFAULT_LST_RATE
    lst_symbol: str = LST
    weth_symbol: str = WETH

    @classmethod
    def default(cls) -> PriceBook:
        return cls(dict(DEFAULT_PRICES_USD))

    def ratio(self, a: TokenInfo, b: TokenInfo) -> Ratio:
        """Base units of b per base unit of a."""
        if (a.symbol, b.symbol) == (self.lst_symbol, self.weth_symbol):
            num, den = self.lst_rate, 10**18
        elif (a.symbol, b.symbol) == (self.weth_symbol, self.lst_symbol):
            num, den = 10**18, self.lst_rate
        else:
            try:
                num, den = self.usd[a.symbol], self.usd[b.symbol]
            except KeyError as exc:
                raise DevnetError(f"no USD price for {exc.args[0]}") from None
        # (num/den) whole B per whole A -> base units: * 10^dec_b / 10^dec_a
        num *= 10**b.decimals
        den *= 10**a.decimals
        g = math.gcd(num, den)
        return Ratio(num // g, den // g)

    def amount_for_usd(self, token: TokenInfo, usd: int) -> int:
        """Base units of `token` worth `usd` whole dollars (floored)."""
        try:
            price = self.usd[token.symbol]
        except KeyError:
            raise DevnetError(f"no USD price for {token.symbol}") from None
        scale: int = 10**token.decimals
        return usd * 10**8 * scale // price


def seed_amounts(prices: PriceBook, a: TokenInfo, b: TokenInfo, usd_per_side: int) -> tuple[int, int]:
    """Amounts (A, B) worth about `usd_per_side` each whose ratio is exactly the A/B price."""
    ratio = prices.ratio(a, b)
    amount_a = prices.amount_for_usd(a, usd_per_side)
    unit = ratio.exact_unit()
    amount_a -= amount_a % unit
    if amount_a <= 0:
        raise DevnetError(f"{a.symbol}/{b.symbol}: no exact amounts for ${usd_per_side}")
    amount_b = ratio.convert(amount_a)
    if amount_b * ratio.den != amount_a * ratio.num:
        raise AssertionError("seed amounts are not exact")  # pragma: no cover
    return amount_a, amount_b


def token(tokens: Mapping[str, TokenInfo], symbol: str) -> TokenInfo:
    try:
        return tokens[symbol]
    except KeyError:
        raise DevnetError(f"token {symbol} is not deployed (have: {', '.join(sorted(tokens))})") from None


async def default_funder(deployer: Deployer, tok: TokenInfo, amount: int) -> None:
    """WETH: wrap ETH (topping the deployer's ETH up on anvil if needed); others: mint(address,uint256)."""
    if amount <= 0:
        return
    if tok.symbol == WETH:
        balance = await deployer.rpc.get_balance(deployer.sender)
        reserve = 10_000 * 10**18  # leave ETH for gas
        if balance < amount + reserve:
            await deployer.rpc.call("anvil_setBalance", [deployer.sender, hex(balance + amount + reserve)])
        await deployer.transact(tok.address, "deposit()", [], [], value=amount)
    else:
        await deployer.transact(
            tok.address, "mint(address,uint256)", ["address", "uint256"], [deployer.sender, amount]
        )


async def fund_and_approve(
    deployer: Deployer,
    tokens: Mapping[str, TokenInfo],
    needs: Mapping[str, int],
    spender: str,
    funder: Funder = default_funder,
) -> None:
    """Gives the deployer `needs[symbol]` more of each token and approves `spender` for all of it."""
    for symbol, amount in needs.items():
        tok = token(tokens, symbol)
        await funder(deployer, tok, amount)
        await deployer.transact(
            tok.address, "approve(address,uint256)", ["address", "uint256"], [spender, amount]
        )


async def balance_of(deployer: Deployer, token_address: str, owner: str) -> int:
    (value,) = await deployer.call(token_address, "balanceOf(address)", ["address"], [owner], ["uint256"])
    return int(value)


def checksum(address: str) -> str:
    return str(to_checksum_address(address))


def sort_tokens(a: TokenInfo, b: TokenInfo) -> tuple[TokenInfo, TokenInfo]:
    """(token0, token1) as Uniswap orders them: by address."""
    if int(a.address, 16) == int(b.address, 16):
        raise DevnetError(f"identical token addresses for {a.symbol} and {b.symbol}")
    return (a, b) if int(a.address, 16) < int(b.address, 16) else (b, a)
