"""The devnet's background arbitrageur: pools follow the oracle, as mainnet's CEX-DEX arbitrage makes them.

Before every block is built (a `Builder.pre_build` hook, or `Devnet.mine` without the relay) it reads the
USD price feeds and every Uniswap V3 pool and V2 pair whose two tokens have a feed, and for each pool more
than `min_gap_bps` away from the oracle price it sends one swap that closes `speed_bps` of the gap
(10,000 = back on the oracle price in one block; the price moved is the pool's marginal price, token1 per
token0). The swaps are ordinary signed public transactions from its own funded account (dev account 10 of
anvil's mnemonic), with a priority fee: they compete in the public mempool, after the builder's bundles.

Amounts are exact integers from the pools' own math (`keeper.chain.uniswap_v3_math`, `uniswap_v2_math`):
- V3: the exact input that takes the pool to the partial target price (the swap loop run with the target
  as price limit); sent as `exactInputSingle` with that input, that price limit and the predicted output as
  `amountOutMinimum`, so a pool someone else moved first never makes it trade past the target or at a
  worse price (it reverts instead, as a real arbitrageur's trade would).
- V2: the exact input that brings the reserves' ratio to the partial target including the 0.3% fee (root
  of the constant-product quadratic), sent as `swapExactTokensForTokens` with the predicted output.

It only reads the latest block: an oracle update lands in block N and the pools follow from block N+1 on.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from math import isqrt
from typing import Final

from eth_abi.abi import decode

from keeper.chain import uniswap_v2_math as v2
from keeper.chain import uniswap_v3_math as v3
from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.chain.signer import Eip1559Tx, TxSigner
from keeper.devnet.builder.simulate import next_base_fee
from keeper.devnet.deployer import Deployer
from keeper.devnet.model import TokenInfo
from keeper.devnet.uniswap import FAR_DEADLINE, MAX_UINT256, sort_tokens
from keeper.devnet.uniswap_v2 import UniswapV2Deployment
from keeper.devnet.uniswap_v3 import UniswapV3Deployment, read_pool_state
from keeper.errors import DevnetError, JsonRpcError

log = logging.getLogger(__name__)

ARBITRAGEUR: Final = "0xBcd4042DE499D14e55001CcbB24a551F3b954096"
"""Dev account 10 of anvil's default mnemonic (m/44'/60'/0'/0/10; a public test key, checked by a unit
test). anvil funds only accounts 0-9, so the deploy funds this one."""
ARBITRAGEUR_KEY: Final = "0xf214f2b2cd398c806f84e317254e0f0b801d0643303237d97a22a48e01628897"

DEFAULT_SPEED_BPS: Final = 5_000
"""Half of the gap per block: pools are back within 1 bp of a 10% move in ~10 blocks."""
DEFAULT_MIN_GAP_BPS: Final = 1
DEFAULT_TIP_WEI: Final = 1_000_000_000
INVENTORY_USD: Final = 20_000_000_000
"""Of each token, minted (WETH: wrapped) to the arbitrageur at deploy: far more than any pool holds."""
V3_SWAP_GAS: Final = 1_200_000
V2_SWAP_GAS: Final = 250_000
WORDS_EACH_SIDE: Final = 16
"""Bitmap words read around the current tick (a larger move falls back to reading every word)."""

EXACT_INPUT_SINGLE: Final = (
    "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
)
EXACT_INPUT_SINGLE_TYPES: Final = ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"]
SWAP_EXACT_TOKENS: Final = "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
SWAP_EXACT_TOKENS_TYPES: Final = ["uint256", "uint256", "address[]", "address", "uint256"]
_SLOT0_TYPES: Final = ["uint160", "int24", "uint16", "uint16", "uint16", "uint8", "bool"]
BPS: Final = 10_000


# ------------------------------------------------------------------------------------------ exact math


def oracle_ratio(token0: TokenInfo, token1: TokenInfo, usd: dict[str, int]) -> tuple[int, int]:
    """The oracle price of one base unit of token0 in base units of token1, as (num, den)."""
    return usd[token0.symbol] * 10**token1.decimals, usd[token1.symbol] * 10**token0.decimals


def gap_bps_x(current_num: int, current_den: int, target_num: int, target_den: int) -> int:
    """|current - target| / target, in bps, floored (prices given as fractions)."""
    return abs(current_num * target_den - target_num * current_den) * BPS // (target_num * current_den)


def v3_partial_target(sqrt_price_x96: int, num: int, den: int, speed_bps: int) -> int:
    """sqrtPriceX96 of the price `speed_bps` of the way from the pool's price to num/den (floored)."""
    if not 0 < speed_bps <= BPS:
        raise DevnetError(f"speed_bps must be in 1..{BPS}, got {speed_bps}")
    x192 = (sqrt_price_x96 * sqrt_price_x96 * (BPS - speed_bps) * den + (num << 192) * speed_bps) // (
        BPS * den
    )
    return max(v3.MIN_SQRT_RATIO + 1, min(v3.MAX_SQRT_RATIO - 1, isqrt(x192)))


def v2_partial_target(reserve0: int, reserve1: int, num: int, den: int, speed_bps: int) -> tuple[int, int]:
    """(num, den) of the price token1/token0 `speed_bps` of the way from the reserves' ratio to num/den."""
    if not 0 < speed_bps <= BPS:
        raise DevnetError(f"speed_bps must be in 1..{BPS}, got {speed_bps}")
    return reserve1 * den * (BPS - speed_bps) + num * reserve0 * speed_bps, reserve0 * den * BPS


def v2_amount_in_to_price(
    reserve_in: int, reserve_out: int, price_num: int, price_den: int, fee_bps: int = v2.DEFAULT_FEE_BPS
) -> int:
    """The largest input whose swap leaves reserve_out'/reserve_in' >= price_num/price_den.

    The input token gets cheaper as it is sold, so the target must be below reserve_out/reserve_in. With
    g = 1 - fee: x solves p (r_in + x)(r_in + g x) = r_in r_out, i.e. g p x^2 + p (1 + g) r_in x +
    r_in (p r_in - r_out) = 0 (the output's floor only makes the true price a hair higher); then adjusted
    by one unit against `getAmountOut` so the result holds exactly.
    """
    if price_num * reserve_in >= price_den * reserve_out:
        return 0
    g = BPS - fee_bps
    a = g * price_num
    b = (BPS + g) * price_num * reserve_in
    c = BPS * reserve_in * (price_num * reserve_in - price_den * reserve_out)  # < 0
    x = (isqrt(b * b - 4 * a * c) - b) // (2 * a)

    def above(amount: int) -> bool:
        if amount <= 0:
            return True
        out = v2.get_amount_out(amount, reserve_in, reserve_out, fee_bps)
        return (reserve_out - out) * price_den >= price_num * (reserve_in + amount)

    # The root is within a unit or two; the output's floor can allow more (many wei of an 18-decimal
    # input per unit of a 6-decimal output): bracket with doubling steps, then bisect.
    lo = max(x, 0)
    step = 1
    while not above(lo):
        lo = max(lo - step, 0)
        step *= 2
    hi = lo + 1
    step = 1
    while above(hi):
        lo = hi
        hi += step
        step *= 2
    while hi - lo > 1:  # above(lo) and not above(hi)
        mid = (lo + hi) // 2
        if above(mid):
            lo = mid
        else:
            hi = mid
    return lo


# ------------------------------------------------------------------------------------------ the bot


@dataclass(frozen=True, slots=True)
class ArbTrade:
    """One swap sent for one pool."""

    pool: str
    """"WETH/USDC/500" (V3) or "WETH/USDC" (V2 pair)."""
    tx_hash: str
    token_in: str
    amount_in: int
    amount_out: int
    """Predicted exactly from the pool state the swap was computed on (also its minimum output)."""
    gap_bps: int
    """Distance from the oracle price before the swap."""
    target_sqrt_price_x96: int | None = None
    """V3 only: where the swap leaves the pool."""


@dataclass
class ArbStats:
    steps: int = 0
    trades: int = 0
    skipped_pending: int = 0
    last: list[ArbTrade] = field(default_factory=list)


class Arbitrageur:
    """Moves the devnet's pools toward the oracle price before each block (see the module docstring).

    `pools` limits it to some pools (V3 names "BASE/QUOTE/FEE", V2 names "BASE/QUOTE"); default all.
    """

    def __init__(
        self,
        rpc: RpcClient,
        tokens: dict[str, TokenInfo],
        usd_feeds: dict[str, str],
        uniswap_v3: UniswapV3Deployment,
        uniswap_v2: UniswapV2Deployment,
        *,
        speed_bps: int = DEFAULT_SPEED_BPS,
        min_gap_bps: int = DEFAULT_MIN_GAP_BPS,
        tip_wei: int = DEFAULT_TIP_WEI,
        pools: Collection[str] | None = None,
        key: str = ARBITRAGEUR_KEY,
    ) -> None:
        if not 0 < speed_bps <= BPS:
            raise DevnetError(f"arbitrageur speed_bps must be in 1..{BPS}, got {speed_bps}")
        if min_gap_bps < 0 or tip_wei < 0:
            raise DevnetError("arbitrageur min_gap_bps and tip_wei must not be negative")
        self.rpc = rpc
        self.tokens = tokens
        self.usd_feeds = usd_feeds
        self.v3 = uniswap_v3
        self.v2 = uniswap_v2
        self.speed_bps = speed_bps
        self.min_gap_bps = min_gap_bps
        self.tip_wei = tip_wei
        self.signer = TxSigner.from_key(key)
        self.address = self.signer.address
        self.stats = ArbStats()
        self._v3_pools = [n for n in uniswap_v3.pools if self._covered(n.split("/")[:2], pools, n)]
        self._v2_pairs = [n for n in uniswap_v2.pairs if self._covered(n.split("/"), pools, n)]
        self._chain_id: int | None = None

    def _covered(self, symbols: Sequence[str], only: Collection[str] | None, name: str) -> bool:
        return all(s in self.usd_feeds and s in self.tokens for s in symbols) and (
            only is None or name in only
        )

    def __repr__(self) -> str:
        return f"Arbitrageur({self.address}, speed_bps={self.speed_bps})"

    async def oracle_prices(self) -> dict[str, int]:
        """Latest answers of the USD feeds (8 decimals), by symbol, in one batch."""
        symbols = sorted(self.usd_feeds)
        replies = await self.rpc.batch(
            [
                (
                    "eth_call",
                    [
                        {"to": self.usd_feeds[s], "data": "0x" + encode_call("latestAnswer()", [], []).hex()},
                        "latest",
                    ],
                )
                for s in symbols
            ]
        )
        return {
            s: int(decode(["int256"], bytes.fromhex(r[2:]))[0]) for s, r in zip(symbols, replies, strict=True)
        }

    async def step(self) -> list[ArbTrade]:
        """Sends this block's swaps (none if every pool is within `min_gap_bps`); returns them."""
        self.stats.steps += 1
        latest_count, pending_count, latest = await self.rpc.batch(
            [
                ("eth_getTransactionCount", [self.address, "latest"]),
                ("eth_getTransactionCount", [self.address, "pending"]),
                ("eth_getBlockByNumber", ["latest", False]),
            ]
        )
        nonce = hex_to_int(latest_count)
        if hex_to_int(pending_count) > nonce:  # our swaps from before are still waiting: do not pile up
            self.stats.skipped_pending += 1
            self.stats.last = []
            return []
        if self._chain_id is None:
            self._chain_id = await self.rpc.chain_id()
        number = hex_to_int(latest["number"])
        base_fee = next_base_fee(
            hex_to_int(latest.get("baseFeePerGas") or "0x0"),
            hex_to_int(latest["gasUsed"]),
            hex_to_int(latest["gasLimit"]),
        )
        usd = await self.oracle_prices()
        plans: list[tuple[ArbTrade, str, bytes, int]] = []
        plans += await self._plan_v3(usd, number)
        plans += await self._plan_v2(usd, number)
        trades: list[ArbTrade] = []
        for trade, to, data, gas in plans:
            tx = Eip1559Tx(
                chain_id=self._chain_id,
                nonce=nonce,
                max_priority_fee_per_gas=self.tip_wei,
                max_fee_per_gas=2 * base_fee + self.tip_wei,
                gas=gas,
                to=to,
                data=data,
            )
            signed = self.signer.sign(tx)
            try:
                await self.rpc.call("eth_sendRawTransaction", [signed.raw_hex])
            except JsonRpcError as exc:
                log.warning("arbitrageur swap on %s refused by the node: %s", trade.pool, exc.message)
                break  # later nonces would be gapped
            nonce += 1
            trades.append(
                ArbTrade(
                    trade.pool,
                    signed.hash_hex,
                    trade.token_in,
                    trade.amount_in,
                    trade.amount_out,
                    trade.gap_bps,
                    trade.target_sqrt_price_x96,
                )
            )
        self.stats.trades += len(trades)
        self.stats.last = trades
        return trades

    async def _plan_v3(self, usd: dict[str, int], block: int) -> list[tuple[ArbTrade, str, bytes, int]]:
        names = self._v3_pools
        if not names:
            return []
        slot0s = await self.rpc.batch(
            [
                (
                    "eth_call",
                    [
                        {"to": self.v3.pools[n], "data": "0x" + encode_call("slot0()", [], []).hex()},
                        hex(block),
                    ],
                )
                for n in names
            ]
        )
        out: list[tuple[ArbTrade, str, bytes, int]] = []
        for name, raw in zip(names, slot0s, strict=True):
            base, quote, fee = name.split("/")
            t0, t1 = sort_tokens(self.tokens[base], self.tokens[quote])
            num, den = oracle_ratio(t0, t1, usd)
            sqrt_price = int(decode(_SLOT0_TYPES, bytes.fromhex(raw[2:]))[0])
            gap = gap_bps_x(sqrt_price * sqrt_price, 1 << 192, num, den)
            if gap < self.min_gap_bps:
                continue
            target = v3_partial_target(sqrt_price, num, den, self.speed_bps)
            if target == sqrt_price:
                continue
            zero_for_one = target < sqrt_price
            result = await self._v3_swap_to(self.v3.pools[name], block, zero_for_one, target)
            if result is None:
                continue
            amount_in = result.amount0 if zero_for_one else result.amount1
            amount_out = -(result.amount1 if zero_for_one else result.amount0)
            if amount_in <= 0 or amount_out <= 0:
                continue
            token_in, token_out = (t0, t1) if zero_for_one else (t1, t0)
            data = encode_call(
                EXACT_INPUT_SINGLE,
                EXACT_INPUT_SINGLE_TYPES,
                [
                    (
                        token_in.address,
                        token_out.address,
                        int(fee),
                        self.address,
                        FAR_DEADLINE,
                        amount_in,
                        amount_out,
                        target,
                    )
                ],
            )
            trade = ArbTrade(name, "", token_in.symbol, amount_in, amount_out, gap, target)
            out.append((trade, self.v3.swap_router, data, V3_SWAP_GAS))
        return out

    async def _v3_swap_to(
        self, pool: str, block: int, zero_for_one: bool, target: int
    ) -> v3.SwapResult | None:
        state = await read_pool_state(self.rpc, pool, block=block, words_each_side=WORDS_EACH_SIDE)
        try:
            result = v3.swap(state, zero_for_one, MAX_UINT256 >> 2, target)
        except v3.UniswapV3MathError:
            state = await read_pool_state(self.rpc, pool, block=block)
            try:
                result = v3.swap(state, zero_for_one, MAX_UINT256 >> 2, target)
            except v3.UniswapV3MathError as exc:
                log.warning("arbitrageur: no swap to the target on %s: %s", pool, exc)
                return None
        if result.sqrt_price_x96 != target:  # ran out of liquidity before the target
            log.warning("arbitrageur: %s cannot reach the oracle price (no liquidity there)", pool)
            return None
        return result

    async def _plan_v2(self, usd: dict[str, int], block: int) -> list[tuple[ArbTrade, str, bytes, int]]:
        names = self._v2_pairs
        if not names:
            return []
        replies = await self.rpc.batch(
            [
                (
                    "eth_call",
                    [
                        {"to": self.v2.pairs[n], "data": "0x" + encode_call("getReserves()", [], []).hex()},
                        hex(block),
                    ],
                )
                for n in names
            ]
        )
        out: list[tuple[ArbTrade, str, bytes, int]] = []
        for name, raw in zip(names, replies, strict=True):
            base, quote = name.split("/")
            t0, t1 = sort_tokens(self.tokens[base], self.tokens[quote])
            r0, r1, _ = decode(["uint112", "uint112", "uint32"], bytes.fromhex(raw[2:]))
            reserve0, reserve1 = int(r0), int(r1)
            if reserve0 == 0 or reserve1 == 0:
                continue
            num, den = oracle_ratio(t0, t1, usd)
            gap = gap_bps_x(reserve1, reserve0, num, den)
            if gap < self.min_gap_bps:
                continue
            p_num, p_den = v2_partial_target(reserve0, reserve1, num, den, self.speed_bps)
            if p_num * reserve0 < p_den * reserve1:  # token0 too dear: sell token0 until r1/r0 = p
                token_in, token_out = t0, t1
                amount_in = v2_amount_in_to_price(reserve0, reserve1, p_num, p_den)
                reserves = (reserve0, reserve1)
            else:  # sell token1 until r0/r1 = 1/p
                token_in, token_out = t1, t0
                amount_in = v2_amount_in_to_price(reserve1, reserve0, p_den, p_num)
                reserves = (reserve1, reserve0)
            if amount_in <= 0:
                continue
            amount_out = v2.get_amount_out(amount_in, *reserves)
            if amount_out <= 0:
                continue
            data = encode_call(
                SWAP_EXACT_TOKENS,
                SWAP_EXACT_TOKENS_TYPES,
                [amount_in, amount_out, [token_in.address, token_out.address], self.address, FAR_DEADLINE],
            )
            out.append(
                (
                    ArbTrade(name, "", token_in.symbol, amount_in, amount_out, gap),
                    self.v2.router,
                    data,
                    V2_SWAP_GAS,
                )
            )
        return out


# ------------------------------------------------------------------------------------------ deploy


async def fund_arbitrageur(
    rpc: RpcClient,
    tokens: dict[str, TokenInfo],
    usd_prices: dict[str, int],
    spenders: Sequence[str],
    *,
    address: str = ARBITRAGEUR,
    inventory_usd: int = INVENTORY_USD,
    weth_symbol: str = "WETH",
) -> int:
    """Gives the arbitrageur ETH, `inventory_usd` of every token (WETH wrapped from ETH, others minted with
    the devnet tokens' open `mint`) and unlimited approvals for `spenders` (the routers). Runs at deploy
    (automine on); returns the number of transactions sent."""
    d = Deployer(rpc, address)
    await rpc.call("anvil_impersonateAccount", [address])
    try:
        weth_amount = 0
        if weth_symbol in tokens:
            weth_amount = (
                inventory_usd * 10**8 * 10 ** tokens[weth_symbol].decimals // usd_prices[weth_symbol]
            )
        await rpc.call("anvil_setBalance", [address, hex(weth_amount + 1_000_000 * 10**18)])
        for symbol, tok in sorted(tokens.items()):
            if symbol not in usd_prices:
                continue
            if symbol == weth_symbol:
                await d.transact(tok.address, "deposit()", [], [], value=weth_amount)
            else:
                amount = inventory_usd * 10**8 * 10**tok.decimals // usd_prices[symbol]
                await d.transact(
                    tok.address, "mint(address,uint256)", ["address", "uint256"], [address, amount]
                )
            for spender in spenders:
                await d.transact(
                    tok.address, "approve(address,uint256)", ["address", "uint256"], [spender, MAX_UINT256]
                )
    finally:
        await rpc.call("anvil_stopImpersonatingAccount", [address])
    return d.txs_sent
