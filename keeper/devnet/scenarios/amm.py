"""Move AMM pool prices to a target, as arbitrageurs do when the market moves.

On mainnet, DEX pools follow the market (CEX-DEX arbitrage) before and after oracle updates. Without
this a crash on the oracle alone would leave pools at the old price and liquidations would look absurdly
profitable. A whale account trades each pool towards the target price:
- Uniswap V3: `exactInputSingle` with `sqrtPriceLimitX96` = the target; the pool stops there and pulls
  only what it needs.
- Uniswap V2: the constant-product input that brings reserves to the target ratio (integer square root;
  the 0.3% fee leaves it a hair short, which is what a real arbitrageur leaves too).
Transactions are sent unsigned from an unlocked account and left pending; the caller decides when they
are mined.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import isqrt

from keeper.chain import uniswap_v3_math as v3
from keeper.chain.rpc import RpcClient
from keeper.devnet.deploy import DevnetDeployment
from keeper.devnet.model import TokenInfo
from keeper.devnet.scenarios.common import Tx, call_tx, eth_call_decode

UINT256_MAX = 2**256 - 1
ADDR_UINT = ["address", "uint256"]
FAR_DEADLINE = 2**40
SWAP_GAS = 1_500_000
EXACT_INPUT_SINGLE = "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
EXACT_INPUT_SINGLE_TYPES = ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"]


def target_sqrt_price_x96(token0: TokenInfo, token1: TokenInfo, usd: Mapping[str, int]) -> int:
    """sqrtPriceX96 at which token0 and token1 are worth what `usd` (8-decimal USD prices) says."""
    return v3.encode_sqrt_price_x96(
        usd[token0.symbol] * 10**token1.decimals, usd[token1.symbol] * 10**token0.decimals
    )


def _ordered(a: TokenInfo, b: TokenInfo) -> tuple[TokenInfo, TokenInfo]:
    return (a, b) if int(a.address, 16) < int(b.address, 16) else (b, a)


async def v3_move_tx(
    rpc: RpcClient, dep: DevnetDeployment, pool_name: str, usd: Mapping[str, int], trader: str
) -> Tx | None:
    """A swap moving the V3 pool `pool_name` ("WETH/USDC/500") to the `usd` prices; None if already there."""
    base, quote, fee = pool_name.split("/")
    token0, token1 = _ordered(dep.tokens[base], dep.tokens[quote])
    pool = dep.uniswap_v3.pools[pool_name]
    slot0 = await eth_call_decode(
        rpc, pool, "slot0()", [], [], ["uint160", "int24", "uint16", "uint16", "uint16", "uint8", "bool"]
    )
    current = int(slot0[0])
    target = max(
        v3.MIN_SQRT_RATIO + 1, min(v3.MAX_SQRT_RATIO - 1, target_sqrt_price_x96(token0, token1, usd))
    )
    if current == target:
        return None
    zero_for_one = target < current  # selling token0 lowers its price
    token_in, token_out = (token0, token1) if zero_for_one else (token1, token0)
    amount_in = 10 ** (token_in.decimals + 12)  # far more than needed: the price limit stops the swap
    return call_tx(
        trader,
        dep.uniswap_v3.swap_router,
        EXACT_INPUT_SINGLE,
        EXACT_INPUT_SINGLE_TYPES,
        [(token_in.address, token_out.address, int(fee), trader, FAR_DEADLINE, amount_in, 0, target)],
        SWAP_GAS,
    )


async def v2_move_tx(
    rpc: RpcClient, dep: DevnetDeployment, pair_name: str, usd: Mapping[str, int], trader: str
) -> Tx | None:
    """A swap moving the V2 pair `pair_name` ("WETH/USDC") to the `usd` prices; None if within 1 bp."""
    base, quote = pair_name.split("/")
    token0, token1 = _ordered(dep.tokens[base], dep.tokens[quote])
    pair = dep.uniswap_v2.pairs[pair_name]
    r0, r1, _ = await eth_call_decode(rpc, pair, "getReserves()", [], [], ["uint112", "uint112", "uint32"])
    reserve0, reserve1 = int(r0), int(r1)
    # Target ratio reserve1/reserve0 = num/den; with k constant: reserve0' = sqrt(k * den / num).
    num = usd[token0.symbol] * 10**token1.decimals
    den = usd[token1.symbol] * 10**token0.decimals
    k = reserve0 * reserve1
    new_reserve0 = isqrt(k * den // num)
    if abs(new_reserve0 - reserve0) * 10_000 <= reserve0:
        return None
    if new_reserve0 > reserve0:  # token0 too expensive: sell token0
        token_in, token_out, amount = token0, token1, (new_reserve0 - reserve0) * 1000 // 997
    else:
        new_reserve1 = k // new_reserve0
        token_in, token_out, amount = token1, token0, (new_reserve1 - reserve1) * 1000 // 997
    return call_tx(
        trader,
        dep.uniswap_v2.router,
        "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
        ["uint256", "uint256", "address[]", "address", "uint256"],
        [amount, 0, [token_in.address, token_out.address], trader, FAR_DEADLINE],
        SWAP_GAS,
    )


def fund_trader_txs(dep: DevnetDeployment, trader: str, symbols: set[str]) -> list[Tx]:
    """Mint plenty of each token to the trader (open mint on the devnet tokens) and approve both routers."""
    txs: list[Tx] = []
    for symbol in sorted(symbols):
        tok = dep.tokens[symbol]
        txs.append(
            call_tx(
                trader,
                tok.address,
                "mint(address,uint256)",
                ["address", "uint256"],
                [trader, 10 ** (tok.decimals + 13)],
                200_000,
            )
        )
        for spender in (dep.uniswap_v3.swap_router, dep.uniswap_v2.router):
            txs.append(
                call_tx(
                    trader,
                    tok.address,
                    "approve(address,uint256)",
                    ["address", "uint256"],
                    [spender, UINT256_MAX],
                    100_000,
                )
            )
    return txs


async def move_all_txs(
    rpc: RpcClient,
    dep: DevnetDeployment,
    usd: Mapping[str, int],
    trader: str,
    *,
    only_symbols: set[str] | None = None,
) -> list[Tx]:
    """Swaps that bring every V3 pool and V2 pair (touching `only_symbols`, if given) to `usd` prices."""
    txs: list[Tx] = []
    for name in dep.uniswap_v3.pools:
        base, quote, _ = name.split("/")
        if only_symbols is None or {base, quote} & only_symbols:
            tx = await v3_move_tx(rpc, dep, name, usd, trader)
            if tx is not None:
                txs.append(tx)
    for name in dep.uniswap_v2.pairs:
        base, quote = name.split("/")
        if only_symbols is None or {base, quote} & only_symbols:
            tx = await v2_move_tx(rpc, dep, name, usd, trader)
            if tx is not None:
                txs.append(tx)
    return txs
