"""Parameter sweeps: `--set key=v1,v2 --set other=x` is the grid of every combination, each a replay run,
run side by side in local worker processes (`ProcessPoolExecutor`, spawned), or on a Ray cluster with
`--ray-address` (Ray is the optional extra `keeper[ray]`, imported only then).

A run is described by a picklable `RunSpec` (the source by path or URL, never an open object), so the
same function (`run_spec`) runs in a local worker or a Ray task.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeper.backtest.replay import Replayer, replay_settings
from keeper.backtest.report import build_report, timing_of
from keeper.backtest.sources import BlockSource, ForkSource, RecordingSource
from keeper.config import Settings, load_settings
from keeper.errors import ConfigError, KeeperError


@dataclass(frozen=True, slots=True)
class SourceSpec:
    kind: str
    """"recording" or "fork"."""
    path: str | None = None
    url: str | None = None
    first: int | None = None
    last: int | None = None
    config: str | None = None
    """The keeper's settings file for a fork replay (KEEPER_* variables apply too)."""


@dataclass(frozen=True, slots=True)
class RunSpec:
    source: SourceSpec
    strategies: tuple[str, ...] = ("liquidations",)
    overrides: tuple[tuple[str, str], ...] = ()
    mempool: bool = True


@dataclass(frozen=True, slots=True)
class RunOutcome:
    report: dict[str, Any] | None
    timing: dict[str, Any] | None
    error: str | None = None
    config_error: bool = False


def parse_sets(items: Sequence[str]) -> list[dict[str, str]]:
    """`key=value` items (a value may list several, comma-separated) -> the grid, in order."""
    axes: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise ConfigError([f"--set {item!r}: expected key=value, e.g. --set builder_share_bps=5000,7000"])
        if any(k == key for k, _ in axes):
            raise ConfigError([f"--set {key}: given twice (list the values once: --set {key}=a,b)"])
        values = [v.strip() for v in value.split(",")]
        if any(not v for v in values):
            raise ConfigError([f"--set {item!r}: an empty value in the list"])
        axes.append((key, values))
    if not axes:
        return [{}]
    keys = [k for k, _ in axes]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(v for _, v in axes))]


def base_settings(spec: SourceSpec) -> Settings | None:
    if spec.kind != "fork":
        return None
    return load_settings(Path(spec.config) if spec.config else None)


async def open_source(spec: SourceSpec) -> BlockSource:
    if spec.kind == "recording":
        if spec.path is None:
            raise ConfigError(["--recording: missing the file"])
        return RecordingSource.open(Path(spec.path), spec.first, spec.last)
    if spec.url is None or spec.first is None or spec.last is None:
        raise ConfigError(["--fork-url needs --from-block and --to-block"])
    fork = ForkSource(spec.url, spec.first, spec.last)
    await fork.check()
    return fork


async def check_specs(specs: Sequence[RunSpec]) -> BlockSource:
    """Everything that can be checked before a worker starts (ConfigError / SourceError / RecordingError,
    one line each): the source, and each run's settings."""
    source = await open_source(specs[0].source)
    base = base_settings(specs[0].source)
    with tempfile.TemporaryDirectory(prefix="keeper-backtest-check-") as tmp:
        for spec in specs:
            replay_settings(
                source,
                Path(tmp),
                ("http://127.0.0.1:1", "ws://127.0.0.1:1"),
                spec.strategies,
                dict(spec.overrides),
                base,
            )
    return source


async def run_spec_async(spec: RunSpec, on_block: Callable[[int], None] | None = None) -> RunOutcome:
    try:
        source = await open_source(spec.source)
        replayer = Replayer(
            source,
            strategies=spec.strategies,
            overrides=dict(spec.overrides),
            base_settings=base_settings(spec.source),
            on_block=on_block,
            mempool=spec.mempool,
        )
        result = await replayer.run()
    except ConfigError as exc:
        return RunOutcome(None, None, "; ".join(exc.problems), config_error=True)
    except KeeperError as exc:
        return RunOutcome(None, None, str(exc))
    return RunOutcome(build_report(result), timing_of(result).to_json())


def run_spec(spec: RunSpec) -> RunOutcome:
    """One run, in this process (a worker's or a Ray task's entry point)."""
    return asyncio.run(run_spec_async(spec))


def run_local(
    specs: Sequence[RunSpec], workers: int, on_done: Callable[[int], None] | None = None
) -> list[RunOutcome]:
    """Runs in `workers` spawned processes; results in the order of `specs`."""
    out: dict[int, RunOutcome] = {}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx) as pool:
        futures = {pool.submit(run_spec, s): i for i, s in enumerate(specs)}
        for fut in as_completed(futures):
            out[futures[fut]] = fut.result()
            if on_done is not None:
                on_done(len(out))
    return [out[i] for i in range(len(specs))]


class RayMissing(ConfigError):
    pass


def run_ray(specs: Sequence[RunSpec], address: str) -> list[RunOutcome]:
    """The same runs as Ray tasks on the cluster at `address` (the optional extra `keeper[ray]`)."""
    try:
        import ray  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise RayMissing(
            ["--ray-address needs Ray, an optional extra: pip install 'keeper[ray]' (or run without it)"]
        ) from None
    ray.init(address=address, ignore_reinit_error=True)
    task = ray.remote(run_spec)
    return list(ray.get([task.remote(s) for s in specs]))
