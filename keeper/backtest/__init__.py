"""Backtesting by replaying past blocks through the live strategies and executors.

    keeper devnet record --demo --out demo.rec.gz           # a recording of a demo-like run, in seconds
    keeper backtest --recording demo.rec.gz                  # what the strategies would have done
    keeper backtest --fork-url URL --from-block A --to-block B
    keeper backtest --recording demo.rec.gz --set builder_share_bps=5000,7000,9000   # a sweep

Modules (runtime code: none imports `keeper.devnet` or `strategies`; strategies are built through
`keeper.strategies_registry`, as `keeper run` builds them):
- `recording`: the recording format (`Recording`, `ReplayBlock`, `read_recording`, `RecordingWriter`);
- `sources`: `RecordingSource`, `ForkSource` (an archive node, checked first) -- where blocks come from;
- `node`: `ReplayNode`, the private anvil a run replays on;
- `builders`: `ReplayBuilders`, the final send: eth_callBundle at the bundle's position in the block;
- `replay`: `Replayer`, the driver (`run()`, `run_on(node)`) -> `ReplayResult`;
- `truth`: ground truth from the replayed logs and the classification (captured / missed with a reason /
  ours alone);
- `report`: `build_report` (deterministic JSON), `print_summary`, `render_html` (plotly, offline);
- `sweep`: the `--set` grid, `run_local` (worker processes), `run_ray` (the optional extra `keeper[ray]`);
- `cli`: `keeper backtest`.

The package imports nothing itself (the `keeper` command stays quick to start): import the modules.
"""
