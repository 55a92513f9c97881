"""What the Aave V3 and V2 adapters share: user discovery from logs, the per-block batched refresh.

Positions are discovered from logs and kept as scaled balances (what the tokens store). When a block's
logs touch a user, that user's balances are re-read at that block in one batch, instead of replaying each
event's amount through the index math: the re-read is exact by construction (no rounding to mirror, aToken
transfers included) and a reorg is handled the same way (re-read the users the replaced blocks touched).
Interest and prices need no per-user work: indexes and prices are read once per block for all reserves.
A block costs one round trip (its logs and the market in one JSON-RPC batch), plus one more only when
its logs touched tracked users.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from keeper.chain.rpc import RpcClient, hex_to_bytes
from keeper.errors import DecodeError, JsonRpcError, KeeperError
from keeper.logs import kv
from strategies.liquidations.common import AccountData, Indexes, LiquidationOutcome
from strategies.liquidations.model import MarketState, UserPosition, reserve_ids_in
from strategies.liquidations.reader import AaveV2Reader, AaveV3Reader

log = logging.getLogger("strategies.liquidations")


def topic(signature: str) -> str:
    return "0x" + keccak(signature.encode()).hex()


ATOKEN_TRANSFER = topic("Transfer(address,address,uint256)")
ATOKEN_BALANCE_TRANSFER = topic("BalanceTransfer(address,address,uint256,uint256)")


def has_debt(position: UserPosition) -> bool:
    """Any borrowing bit set in the user configuration (even bits of each pair)."""
    return any((position.config >> (rid * 2)) & 1 for rid in reserve_ids_in(position.config))


def _topic_address(topics: list[str], index: int) -> str | None:
    if len(topics) <= index:
        return None
    try:
        raw = hex_to_bytes(topics[index])
    except KeeperError:
        return None
    if len(raw) != 32 or any(raw[:12]):
        return None
    return str(to_checksum_address(raw[12:]))


class AaveAdapter:
    """Tracks one Aave market. Subclasses set `name`, the reader class, the math module and `user_topics`."""

    name = "aave"
    kind = "aave"
    """The code family ("aave-v3", "aave-v2"); `name` may be a market's own name ("spark-ethereum")."""
    user_topics: Mapping[str, tuple[int, ...]] = {}
    """event topic0 -> indexes of the topics that hold affected users."""

    def __init__(
        self,
        rpc: RpcClient,
        reader: AaveV3Reader | AaveV2Reader,
        *,
        start_block: int = 0,
    ) -> None:
        self.rpc = rpc
        self.reader = reader
        self.pool = reader.pool
        self.start_block = start_block
        self.market: MarketState | None = None
        self.positions: dict[str, UserPosition] = {}
        self.last_block: int | None = None
        """The last block whose logs were applied (initial sync head, then each refresh)."""
        self._a_tokens: set[str] = set()
        self.stats = {"rereads": 0, "bad_logs": 0}

    # -- logs ----------------------------------------------------------------------------------------

    def log_addresses(self) -> list[str]:
        return [self.pool, *sorted(self._a_tokens)]

    def touched_users(self, logs: Iterable[Mapping[str, Any]]) -> set[str]:
        users: set[str] = set()
        pool = self.pool.lower()
        a_tokens = {a.lower() for a in self._a_tokens}
        for entry in logs:
            try:
                address = str(entry["address"]).lower()
                topics = list(entry["topics"])
                topic0 = str(topics[0]).lower() if topics else ""
            except (KeyError, TypeError, IndexError):
                self.stats["bad_logs"] += 1
                continue
            if address == pool:
                indexes = self.user_topics.get(topic0, ())
            elif address in a_tokens and topic0 in (ATOKEN_TRANSFER, ATOKEN_BALANCE_TRANSFER):
                indexes = (1, 2)
            else:
                continue
            for i in indexes:
                user = _topic_address(topics, i)
                if user is not None and int(user, 16) != 0:
                    users.add(user)
        return users

    # -- state ---------------------------------------------------------------------------------------

    async def _read_market(self, block: int) -> MarketState:
        return await self.reader.read_market(block)

    def _set_market(self, market: MarketState) -> None:
        self.market = market
        self._a_tokens = {r.a_token for r in market.reserves.values()}

    async def initial_sync(self, head: int, *, chunk_blocks: int = 5_000) -> None:
        self._set_market(await self._read_market(head))
        users: set[str] = set()
        addresses = self.log_addresses()
        ranges = [
            (s, min(s + chunk_blocks - 1, head)) for s in range(self.start_block, head + 1, chunk_blocks)
        ]
        for i in range(0, len(ranges), 20):
            calls = [
                ("eth_getLogs", [{"address": addresses, "fromBlock": hex(a), "toBlock": hex(b)}])
                for a, b in ranges[i : i + 20]
            ]
            for logs in await self.rpc.batch(calls):
                users |= self.touched_users(logs)
        await self._reread(users, head)
        self.last_block = head
        log.info(
            "initial sync done",
            extra=kv(protocol=self.name, block=head, users_seen=len(users), borrowers=len(self.positions)),
        )

    async def _reread(self, users: Iterable[str], block: int) -> set[str]:
        assert self.market is not None
        wanted = sorted(set(users))
        if not wanted:
            return set()
        fresh = await self.reader.read_positions(wanted, self.market, block)
        self.stats["rereads"] += len(wanted)
        for user in wanted:
            position = fresh.get(user)
            if position is not None and has_debt(position):
                self.positions[user] = position
            else:
                self.positions.pop(user, None)
        return set(wanted)

    async def refresh(
        self,
        block_number: int,
        block_hash: str,
        *,
        reorged_users: Iterable[str] = (),
        timestamp: int | None = None,
    ) -> set[str]:
        """One new block in one round trip: the block's logs and the whole market (reserves list, reserve
        data, prices, e-mode categories; `reader.prepare_market`) in one JSON-RPC batch, plus the header
        when `timestamp` (the block's, from its NewBlock) is not given. Then, only when the logs touched
        tracked users (or a reorg did), their positions. Returns the users that were re-read."""
        log_filter: dict[str, Any] = {"address": self.log_addresses(), "blockHash": block_hash}
        if self.last_block is not None and block_number > self.last_block + 1:
            # Blocks were skipped (a coalesced queue, a restart, a caller that jumps): the logs of every
            # block since the last one we processed, or positions changed there would stay stale.
            log_filter = {
                "address": self.log_addresses(),
                "fromBlock": hex(self.last_block + 1),
                "toBlock": hex(block_number),
            }
        calls: list[tuple[str, Any]] = [("eth_getLogs", [log_filter])]
        if timestamp is None:
            calls.append(("eth_getBlockByNumber", [hex(block_number), False]))
        prepared = self.reader.prepare_market(block_number)
        replies = await self.rpc.batch([*calls, *prepared.requests], raise_errors=False)
        logs = replies[0]
        if isinstance(logs, JsonRpcError):
            raise logs
        if not isinstance(logs, list):
            raise DecodeError("eth_getLogs did not return a list")
        if timestamp is None:
            head = replies[1]
            if isinstance(head, JsonRpcError):
                raise head
            if not isinstance(head, dict):
                raise DecodeError(f"no block {block_number!r}")
            timestamp = int(head["timestamp"], 16)
        self._set_market(await prepared.finish(replies[len(calls) :], timestamp))
        touched = await self._reread(self.touched_users(logs) | set(reorged_users), block_number)
        self.last_block = block_number
        return touched

    # -- exact math ----------------------------------------------------------------------------------

    def _market(self, market: MarketState | None) -> MarketState:
        market = market or self.market
        if market is None:
            raise KeeperError(f"{self.name}: market not synced")
        return market

    def indexes(self, market: MarketState | None = None) -> dict[str, tuple[int, int]]:
        raise NotImplementedError

    def account(
        self, user: str, market: MarketState | None = None, *, indexes: Indexes | None = None
    ) -> AccountData:
        raise NotImplementedError

    def best_liquidation(
        self, user: str, market: MarketState | None = None, *, indexes: Indexes | None = None
    ) -> LiquidationOutcome | None:
        raise NotImplementedError
