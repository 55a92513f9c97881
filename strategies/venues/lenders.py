"""What each flash-loan source can lend right now: the Balancer V2 Vault's balance of a token, and the
Aave V3 Pool's available liquidity (the underlying held by the reserve's aToken).

A loan larger than that reverts (the lender's token transfer fails), so an arbitrage (the peg strategy)
and a liquidation (the liquidation valuer) are sized within it. The aToken of each reserve is read once
(`getReserveData`, word 8 of Aave V3's ReserveData); the balances are read at each block in one batch,
alongside the venues."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import decode

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient
from strategies.venues.base import (
    BatchRpc,
    VenueError,
    addr_key,
    encode_int_arg,
    eth_call,
    result_word,
    selector,
    word_address,
)

_BALANCE_OF = selector("balanceOf(address)")
_GET_RESERVE_DATA = selector("getReserveData(address)")
A_TOKEN_WORD = 8
"""Aave V3 ReserveData: configuration, liquidityIndex, currentLiquidityRate, variableBorrowIndex,
currentVariableBorrowRate, currentStableBorrowRate, lastUpdateTimestamp, id, aTokenAddress, ..."""


def _balance_call(token: str, holder: str, tag: str) -> tuple[str, Any]:
    return eth_call(token, encode_int_arg(_BALANCE_OF, int(holder, 16)), tag)


@dataclass
class FlashLiquidity:
    tokens: Sequence[str]
    vault: str | None
    aave_pool: str | None
    a_tokens: dict[str, str] = field(default_factory=dict)
    """token (lowercase) -> its Aave V3 aToken (tokens the Pool does not list are absent)."""
    vault_balance: dict[str, int] = field(default_factory=dict)
    aave_available: dict[str, int] = field(default_factory=dict)

    async def load(self, rpc: BatchRpc) -> None:
        """Reads each token's aToken once (tokens that are not Aave reserves are left out)."""
        if self.aave_pool is None or not self.tokens:
            return
        replies = await rpc.batch(
            [
                eth_call(self.aave_pool, encode_int_arg(_GET_RESERVE_DATA, int(t, 16)), "latest")
                for t in self.tokens
            ],
            raise_errors=False,
        )
        for token, raw in zip(self.tokens, replies, strict=True):
            try:
                word = result_word(raw, A_TOKEN_WORD, f"getReserveData({token})")
            except VenueError:  # not a reserve (or not an Aave V3 pool): no Aave loans of it
                word = 0
            if word:
                self.a_tokens[addr_key(token)] = word_address(word)

    def calls(self, block: int) -> list[tuple[str, Any]]:
        tag = hex(block)
        out: list[tuple[str, Any]] = []
        if self.vault is not None:
            out += [_balance_call(t, self.vault, tag) for t in self.tokens]
        out += [
            _balance_call(t, self.a_tokens[addr_key(t)], tag)
            for t in self.tokens
            if addr_key(t) in self.a_tokens
        ]
        return out

    def decode(self, replies: Sequence[Any]) -> None:
        """Installs the balances from `calls`' replies; a failed read counts as nothing to lend."""
        it = iter(replies)

        def word(raw: Any) -> int:
            try:
                return result_word(raw, 0, "balanceOf")
            except VenueError:
                return 0

        self.vault_balance = {}
        if self.vault is not None:
            for t in self.tokens:
                self.vault_balance[addr_key(t)] = word(next(it, None))
        self.aave_available = {}
        for t in self.tokens:
            if addr_key(t) in self.a_tokens:
                self.aave_available[addr_key(t)] = word(next(it, None))

    async def refresh(self, rpc: BatchRpc, block: int) -> None:
        calls = self.calls(block)
        self.decode(await rpc.batch(calls, raise_errors=False) if calls else [])

    def aave_limit(self, token: str) -> int | None:
        """The most the Aave V3 Pool can lend of `token` now; None when it is not read (not a reserve)."""
        return self.aave_available.get(addr_key(token))

    def available(self) -> Mapping[str, tuple[int, int]]:
        """token (lowercase) -> (Balancer Vault balance, Aave V3 available liquidity)."""
        keys: Iterable[str] = {addr_key(t) for t in self.tokens}
        return {k: (self.vault_balance.get(k, 0), self.aave_available.get(k, 0)) for k in keys}


async def read_flash_premium_bps(rpc: RpcClient, aave_v3_pool: str) -> int:
    """`FLASHLOAN_PREMIUM_TOTAL()` of an Aave V3 Pool, in basis points."""
    raw = await rpc.eth_call(aave_v3_pool, encode_call("FLASHLOAN_PREMIUM_TOTAL()", [], []))
    return int(decode(["uint128"], raw)[0])
