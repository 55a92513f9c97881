"""Prometheus metrics shared by the engine, collectors and executors (one registry per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter(
    "keeper_events_total", "Events published by collectors", ["collector", "kind"], registry=REGISTRY
)
EVENTS_DROPPED = Counter(
    "keeper_events_dropped_total",
    "Events dropped by a full or coalescing queue",
    ["consumer", "kind", "reason"],
    registry=REGISTRY,
)
STRATEGY_ERRORS = Counter(
    "keeper_strategy_errors_total", "Exceptions raised by process_event", ["strategy"], registry=REGISTRY
)
EXECUTOR_ERRORS = Counter(
    "keeper_executor_errors_total", "Exceptions raised by execute", ["executor"], registry=REGISTRY
)
ACTIONS = Counter(
    "keeper_actions_total", "Actions emitted by strategies", ["strategy", "kind"], registry=REGISTRY
)
HEAD_NUMBER = Gauge("keeper_head_block_number", "Latest block number seen", registry=REGISTRY)
HEAD_AGE = Gauge("keeper_head_age_seconds", "Seconds since the latest new head arrived", registry=REGISTRY)
COLLECTOR_RESTARTS = Counter(
    "keeper_collector_restarts_total", "Supervised collector restarts", ["collector"], registry=REGISTRY
)
PROCESS_SECONDS = Histogram(
    "keeper_strategy_process_seconds",
    "Time spent in process_event",
    ["strategy", "kind"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
ACTIONS_UNROUTED = Counter(
    "keeper_actions_unrouted_total",
    "Actions of a type no executor handles (dropped)",
    ["kind"],
    registry=REGISTRY,
)
