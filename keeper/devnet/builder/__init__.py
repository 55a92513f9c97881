"""A local block builder for the devnet: bundles first (atomic, best-paying first), then the mempool.

This is a stand-in for real Ethereum block builders (Titan, BuilderNet, ...), following the bundle
semantics in /work/shared/facts/flashbots.md: a bundle targets exactly one block; its transactions land
together, consecutively, in bundle order, or not at all; a bundle whose transaction reverts is dropped
unless that transaction's hash is in `revertingTxHashes`; bundles are ordered by bundle gas price
(`coinbaseDiff / totalGasUsed`); a bundle that conflicts with an already accepted one is skipped.

Three modules, along the seams of the work:
- `decode`: signed raw transactions (types 0, 1, 2, 4) -> `SignedTx`, sender recovery, bundle hashes.
- `simulate`: `eth_simulateV1` on anvil in the exact context of the next block, with coinbase-balance
  probes around every transaction (`simulate`, `SimResult`, `BlockContext`, the nonce and fee checks
  anvil's simulate skips).
- `assemble`: `Builder`, which holds bundles and private transactions, selects, and builds and mines
  anvil's blocks (anvil started with `no_mining=True` and `--order fifo`).

Known limits (anvil has no API to mine a given transaction list directly):
- Bundle and private transactions sit in anvil's pool for the few milliseconds between being sent and
  `evm_mine`; a `newPendingTransactions` subscriber can see them then (after they are committed to the
  block). Public transactions that were re-queued are announced a second time.
- anvil's pool checks each transaction's balance against the latest block, not against earlier
  transactions of the same block, so a bundle whose transaction spends ETH received earlier in the same
  block is rejected at insertion; it is then skipped (reason recorded) and the selection is redone.
- `prevrandao` of the simulated block is not the mined one (anvil draws it when mining).
- Nonces are tracked per sender here; EIP-7702 authorizations that bump an authority's nonce inside the
  same bundle are not modelled.

Every public name stays importable from `keeper.devnet.builder`.
"""

from __future__ import annotations

from keeper.devnet.builder.assemble import (
    BUILDER_COINBASE,
    MAX_BLOCK_RECORDS,
    MAX_BUNDLE_BYTES,
    MAX_BUNDLE_TXS,
    PRIVATE_TX_BLOCKS,
    Builder,
    BuiltBlock,
    Bundle,
    PostBuildHook,
    PreBuildHook,
    PrivateTx,
)
from keeper.devnet.builder.decode import SignedTx, TxDecodeError, bundle_hash, decode_raw_tx, to_hex
from keeper.devnet.builder.simulate import (
    PROBE_CALLER,
    PROBE_CODE,
    PROBE_CONTRACT,
    BlockContext,
    SimResult,
    SimulationError,
    TxResult,
    fetch_nonces,
    next_base_fee,
    simulate,
)

__all__ = [
    "BUILDER_COINBASE",
    "MAX_BLOCK_RECORDS",
    "MAX_BUNDLE_BYTES",
    "MAX_BUNDLE_TXS",
    "PRIVATE_TX_BLOCKS",
    "PROBE_CALLER",
    "PROBE_CODE",
    "PROBE_CONTRACT",
    "BlockContext",
    "Builder",
    "BuiltBlock",
    "Bundle",
    "PostBuildHook",
    "PreBuildHook",
    "PrivateTx",
    "SignedTx",
    "SimResult",
    "SimulationError",
    "TxDecodeError",
    "TxResult",
    "bundle_hash",
    "decode_raw_tx",
    "fetch_nonces",
    "next_base_fee",
    "simulate",
    "to_hex",
]
