"""Liquidations of Aave V3 and V2 positions: the local model, the protocols' exact math, a batched reader.

- `model`: reserves, e-mode categories and positions (scaled balances) as frozen records.
- `math_v3`, `math_v2`: pure ports of GenericLogic.calculateUserAccountData and the liquidation amounts.
- `reader`: fills the model from chain state with Multicall3 / JSON-RPC batches.
"""
