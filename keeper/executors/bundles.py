"""Temporary re-export of the relay client, split into (import from these instead):

- `keeper.executors.relay_types`: `Bundle`, `MevBundle`, `MevHash`, `MevTx`, `CallBundleResult`,
  `TxResult`, `SignedRequest`, the errors (`RelayTransportError`, `RelayRejected`, `RelayResponseError`,
  `SimulationUnavailable`) and helpers (`block_replacement_uuid`, `decode_revert_reason`, `parse_int`,
  `raw_tx_hex`, `MAX_BUNDLE_TXS`, `MAX_BUNDLE_BYTES`);
- `keeper.executors.builder_client`: `BundleClient` (one builder), `make_session`, the metrics;
- `keeper.executors.builders`: `MultiBuilderClient` (fan-out, simulation with fallback),
  `BuilderResult`, `SimulationOutcome`;
- `keeper.executors.builder_identity`: `BuilderEndpoint`, `parse_builders`, `check_identity`.

This module goes away once nothing imports it.
"""

from __future__ import annotations

from keeper.executors.builder_client import (
    BUILDER_REQUEST_SECONDS,
    BUILDER_REQUESTS,
    BundleClient,
    make_session,
)
from keeper.executors.builder_identity import BuilderEndpoint
from keeper.executors.builders import BuilderResult, MultiBuilderClient, SimulationOutcome
from keeper.executors.relay_types import (
    MAX_BUNDLE_BYTES,
    MAX_BUNDLE_TXS,
    Bundle,
    CallBundleResult,
    MevBundle,
    MevHash,
    MevTx,
    RelayRejected,
    RelayResponseError,
    RelayTransportError,
    SignedRequest,
    SimulationUnavailable,
    TxResult,
    block_replacement_uuid,
    decode_revert_reason,
    parse_int,
    raw_tx_hex,
)

__all__ = [
    "BUILDER_REQUESTS",
    "BUILDER_REQUEST_SECONDS",
    "MAX_BUNDLE_BYTES",
    "MAX_BUNDLE_TXS",
    "BuilderEndpoint",
    "BuilderResult",
    "Bundle",
    "BundleClient",
    "CallBundleResult",
    "MevBundle",
    "MevHash",
    "MevTx",
    "MultiBuilderClient",
    "RelayRejected",
    "RelayResponseError",
    "RelayTransportError",
    "SignedRequest",
    "SimulationOutcome",
    "SimulationUnavailable",
    "TxResult",
    "block_replacement_uuid",
    "decode_revert_reason",
    "make_session",
    "parse_int",
    "raw_tx_hex",
]
