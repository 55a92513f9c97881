"""Aave V3 (and forks sharing its code, e.g. Spark) as a LendingProtocol."""

from __future__ import annotations

from keeper.chain.rpc import RpcClient
from strategies.liquidations import math_v3
from strategies.liquidations.common import AccountData, Indexes, LiquidationOutcome
from strategies.liquidations.model import MarketState
from strategies.liquidations.protocols.aave_common import AaveAdapter, topic
from strategies.liquidations.reader import AaveV3Reader

USER_TOPICS: dict[str, tuple[int, ...]] = {
    topic("Supply(address,address,address,uint256,uint16)"): (2,),
    topic("Withdraw(address,address,address,uint256)"): (2,),
    topic("Borrow(address,address,address,uint256,uint8,uint256,uint16)"): (2,),
    topic("Repay(address,address,address,uint256,bool)"): (2,),
    topic("LiquidationCall(address,address,address,uint256,uint256,address,bool)"): (3,),
    topic("ReserveUsedAsCollateralEnabled(address,address)"): (2,),
    topic("ReserveUsedAsCollateralDisabled(address,address)"): (2,),
    topic("UserEModeSet(address,uint8)"): (1,),
    topic("SwapBorrowRateMode(address,address,uint8)"): (2,),
    topic("RebalanceStableBorrowRate(address,address)"): (2,),
    topic("MintUnbacked(address,address,address,uint256,uint16)"): (2,),
}


class AaveV3(AaveAdapter):
    name = "aave-v3"
    kind = "aave-v3"
    user_topics = USER_TOPICS

    def __init__(self, rpc: RpcClient, pool: str, oracle: str, *, start_block: int = 0) -> None:
        super().__init__(rpc, AaveV3Reader(rpc, pool, oracle), start_block=start_block)

    def indexes(self, market: MarketState | None = None) -> dict[str, tuple[int, int]]:
        m = self._market(market)
        return math_v3.normalized_indexes(m.reserves, m.timestamp)

    def account(
        self, user: str, market: MarketState | None = None, *, indexes: Indexes | None = None
    ) -> AccountData:
        m = self._market(market)
        return math_v3.user_account_data(
            self.positions[user], m.reserves, m.emode_categories, m.timestamp, indexes=indexes
        )

    def best_liquidation(
        self, user: str, market: MarketState | None = None, *, indexes: Indexes | None = None
    ) -> LiquidationOutcome | None:
        m = self._market(market)
        return math_v3.best_liquidation(
            self.positions[user], m.reserves, m.emode_categories, m.timestamp, indexes=indexes
        )
