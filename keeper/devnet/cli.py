"""`keeper devnet ...`: the local devnet (anvil + real protocol bytecode + bundle relay) and scenarios."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from keeper.chain.rpc import RpcClient
from keeper.chain.units import format_units
from keeper.devnet.arbitrageur import DEFAULT_SPEED_BPS
from keeper.devnet.deploy import DevnetDeployment
from keeper.devnet.scenarios.common import AnvilMiner, Miner, RelayMiner
from keeper.devnet.stack import (
    DEPLOYMENTS_FILE,
    RUN_FILE,
    Devnet,
    ensure_state,
    read_deployments_file,
    write_deployments_file,
)
from keeper.errors import DevnetError, KeeperError

app = typer.Typer(
    help="Local devnet: anvil with real Aave/Uniswap/Balancer bytecode, scenarios, bundle relay.",
    no_args_is_help=True,
)
scenario_app = typer.Typer(
    help="Drive the running devnet with a deterministic scenario.", no_args_is_help=True
)
app.add_typer(scenario_app, name="scenario")

DEFAULT_PORT = 8545
LOG_FILE = RUN_FILE.parent / "devnet.log"


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _read_run_file() -> dict[str, Any] | None:
    if not RUN_FILE.is_file():
        return None
    try:
        data = orjson.loads(RUN_FILE.read_bytes())
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


BlockTimeOption = Annotated[
    float,
    typer.Option(
        help="Seconds between blocks (anvil automine is off); 0: no block until asked (`keeper devnet mine`)."
    ),
]
ArbitrageurOption = Annotated[
    bool,
    typer.Option(
        "--arbitrageur/--no-arbitrageur",
        help="Background arbitrageur: public swaps before each block move the pools toward the oracle.",
    ),
]
ArbSpeedOption = Annotated[
    int,
    typer.Option(
        "--arb-speed-bps",
        min=1,
        max=10_000,
        help="Share of each pool's gap to the oracle price the arbitrageur closes per block (10000: all).",
    ),
]


@app.command()
def up(
    block_time: BlockTimeOption = 2.0,
    port: Annotated[int, typer.Option(help="anvil HTTP/WS port on 127.0.0.1.")] = DEFAULT_PORT,
    fresh: Annotated[bool, typer.Option(help="Ignore the cached state and deploy from scratch.")] = False,
    foreground: Annotated[bool, typer.Option(help="Stay attached; Ctrl-C stops the devnet.")] = False,
    arbitrageur: ArbitrageurOption = True,
    arb_speed_bps: ArbSpeedOption = DEFAULT_SPEED_BPS,
) -> None:
    """Start the devnet in the background, deploy (or load the cached state) and print its URLs."""
    if block_time < 0:
        _fail("--block-time must be >= 0 (0: blocks only on `keeper devnet mine`)")
    existing = _read_run_file()
    if existing and _alive(int(existing["pid"])):
        _fail(
            f"a devnet is already running (pid {existing['pid']}, {existing['rpc_http_url']}); "
            "run `keeper devnet down` first"
        )
    started = time.perf_counter()
    try:
        _, deployment, cold = asyncio.run(ensure_state(fresh=fresh))
    except KeeperError as exc:
        _fail(str(exc))
        return
    if cold is not None:
        typer.echo(
            f"deployed from scratch in {cold:.2f} s ({deployment.tx_count} transactions); state cached"
        )
    else:
        typer.echo("using cached deployed state")
    if foreground:
        _serve(block_time, port, arbitrageur, arb_speed_bps)
        return
    RUN_FILE.parent.mkdir(parents=True, exist_ok=True)
    RUN_FILE.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "keeper",
        "devnet",
        "serve",
        "--block-time",
        str(block_time),
        "--port",
        str(port),
        "--arbitrageur" if arbitrageur else "--no-arbitrageur",
        "--arb-speed-bps",
        str(arb_speed_bps),
    ]
    with LOG_FILE.open("ab") as log:
        proc = subprocess.Popen(  # detached on purpose: `keeper devnet down` stops it by pid
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = _read_run_file()
        if info and info.get("pid") == proc.pid:
            typer.echo(f"devnet up in {time.perf_counter() - started:.2f} s (pid {proc.pid})")
            typer.echo(f"  RPC HTTP   {info['rpc_http_url']}")
            typer.echo(f"  RPC WS     {info['rpc_ws_url']}")
            if info.get("relay_url"):
                typer.echo(f"  relay      {info['relay_url']}")
                typer.echo(f"  mev-share  {info['relay_url']}/ (hint stream, GET), /api/v1/history")
            if block_time > 0:
                typer.echo(f"  blocks     every {block_time} s")
            else:
                typer.echo("  blocks     on demand: `keeper devnet mine [N]`")
            if arbitrageur:
                typer.echo(f"  arbitrageur  on ({arb_speed_bps} bps of the gap per block)")
            else:
                typer.echo("  arbitrageur  off")
            typer.echo(f"  addresses  {DEPLOYMENTS_FILE}")
            return
        if proc.poll() is not None:
            _fail(f"the devnet did not start: {_last_error(LOG_FILE)} (log: {LOG_FILE})")
        time.sleep(0.05)
    proc.terminate()
    _fail(f"the devnet did not come up within 60 s; see {LOG_FILE}")


def _last_error(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "unknown error"
    for line in reversed(lines):
        if line.startswith("fatal error:"):
            return line.removeprefix("fatal error:").strip()
    return "unknown error"


@app.command(hidden=True)
def serve(
    block_time: Annotated[float, typer.Option()] = 2.0,
    port: Annotated[int, typer.Option()] = DEFAULT_PORT,
    arbitrageur: ArbitrageurOption = True,
    arb_speed_bps: ArbSpeedOption = DEFAULT_SPEED_BPS,
) -> None:
    """Run the devnet in this process until SIGTERM/SIGINT (what `up` starts in the background)."""
    _serve(block_time, port, arbitrageur, arb_speed_bps)


def _serve(block_time: float, port: int, arbitrageur: bool, arb_speed_bps: int) -> None:
    from keeper.core.runtime import run

    async def main() -> None:
        async with Devnet(
            block_time=block_time if block_time > 0 else None,
            port=port,
            arbitrageur=arbitrageur,
            arb_speed_bps=arb_speed_bps,
        ) as net:
            info = {"pid": os.getpid(), **net.describe()}
            info.pop("deployment")
            write_deployments_file({**info, "deployment": net.describe()["deployment"]})
            RUN_FILE.parent.mkdir(parents=True, exist_ok=True)
            RUN_FILE.write_bytes(orjson.dumps(info))
            try:
                await asyncio.Event().wait()
            finally:
                with contextlib.suppress(OSError):
                    current = _read_run_file()
                    if current and current.get("pid") == os.getpid():
                        RUN_FILE.unlink()

    raise typer.Exit(run(main))


@app.command()
def relay(
    anvil_url: Annotated[str, typer.Option(help="The anvil node the relay builds blocks on.")],
    port: Annotated[int, typer.Option(help="Relay port on 127.0.0.1 (0: any free port).")] = 0,
    block_time: Annotated[float, typer.Option(help="Seconds between blocks; 0: serve only.")] = 2.0,
) -> None:
    """Run the local bundle relay (a stand-in for real block builders) against a running anvil.

    `keeper devnet up` already starts one; this is for an anvil you started yourself (it must run with
    automine off and `--order fifo`).
    """
    from keeper.core.runtime import run
    from keeper.devnet.relay import run_relay

    async def main() -> None:
        started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run_relay(anvil_url, "127.0.0.1", port, block_time, started=started))
            typer.echo(f"relay listening on {await started} (builds on {anvil_url})")

    raise typer.Exit(run(main))


@app.command()
def down() -> None:
    """Stop the devnet that `up` started."""
    info = _read_run_file()
    if not info:
        typer.echo("no devnet is running")
        return
    pid = int(info["pid"])
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    RUN_FILE.unlink(missing_ok=True)
    typer.echo(f"devnet stopped (pid {pid})")


@app.command()
def mine(
    blocks: Annotated[int, typer.Argument(min=1, max=10_000, help="Number of blocks to build.")] = 1,
) -> None:
    """Build N blocks now on the running devnet, through its builder (bundles first, then the mempool).

    For a devnet started with `--block-time 0`, where no block is built until asked; with an interval
    the blocks come on top of the interval ones.
    """
    url, relay_url, _ = _target()

    async def go() -> int:
        if relay_url:
            return await RelayMiner(relay_url).mine_blocks(blocks)
        async with RpcClient(url) as rpc:
            miner = AnvilMiner(rpc)
            head = 0
            for _ in range(blocks):
                head = await miner.mine()
            return head

    try:
        head = asyncio.run(go())
    except (KeeperError, OSError) as exc:
        _fail(f"could not mine: {exc}")
        return
    typer.echo(f"mined {blocks} block{'s' if blocks != 1 else ''}; head {head}")


@app.command()
def status() -> None:
    """Show whether a devnet is running, its URLs and head block."""
    info = _read_run_file()
    if not info or not _alive(int(info["pid"])):
        typer.echo("no devnet is running")
        raise typer.Exit(1)

    async def head() -> int:
        async with RpcClient(info["rpc_http_url"]) as rpc:
            return await rpc.block_number()

    typer.echo(f"running (pid {info['pid']}): {info['rpc_http_url']}  head {asyncio.run(head())}")


# ------------------------------------------------------------------------------------------ scenarios


def _target() -> tuple[str, str | None, DevnetDeployment]:
    try:
        data = read_deployments_file()
        relay = data.get("relay_url")
        return str(data["rpc_http_url"]), relay, DevnetDeployment.from_json(data["deployment"])
    except (DevnetError, KeyError) as exc:
        _fail(f"no running devnet found ({exc}); start one with `keeper devnet up`")
        raise AssertionError from None  # unreachable


def _run_scenario(coro_factory: Any) -> Any:
    """Runs `coro_factory(rpc, deployment, miner)` against the devnet that `up` started."""
    url, relay_url, dep = _target()

    async def main() -> Any:
        async with RpcClient(url, timeout=120) as rpc:
            miner: Miner = RelayMiner(relay_url) if relay_url else AnvilMiner(rpc)
            return await coro_factory(rpc, dep, miner)

    try:
        return asyncio.run(main())
    except KeeperError as exc:
        _fail(str(exc))


MineOption = Annotated[
    bool, typer.Option(help="Mine blocks here instead of waiting for the devnet's block interval.")
]


@scenario_app.command("borrowers")
def scenario_borrowers(
    n: Annotated[int, typer.Option("--n", help="Number of borrowers.")] = 1_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same book).")] = 1,
    out: Annotated[Path | None, typer.Option(help="Write the borrowers as JSON here.")] = None,
) -> None:
    """N borrowers with realistic random positions on both Aave markets, some near liquidation."""
    from keeper.devnet.scenarios.borrowers import create_borrowers

    res = _run_scenario(lambda rpc, dep, miner: create_borrowers(rpc, dep, n, seed, miner=miner))
    typer.echo(
        f"{len(res.borrowers)} borrowers ({', '.join(f'{k}: {v}' for k, v in sorted(res.counts.items()))}) "
        f"in {res.seconds:.1f} s: {res.transactions} transactions in {res.blocks} blocks"
    )
    if out is not None:
        out.write_bytes(orjson.dumps(res.to_json(), option=orjson.OPT_INDENT_2))
        typer.echo(f"written to {out}")


@scenario_app.command("crash")
def scenario_crash(
    drop_bps: Annotated[int, typer.Option(help="Total ETH drop in basis points.")] = 2_500,
    blocks: Annotated[int, typer.Option(help="Blocks the drop is spread over.")] = 20,
    mine: MineOption = False,
    amms: Annotated[
        bool,
        typer.Option(
            help="Move the Uniswap pools with the oracle, in the same block (--no-amms: leave them to the "
            "devnet's arbitrageur, one block behind, or where they are without it)."
        ),
    ] = True,
    private: Annotated[
        bool,
        typer.Option(
            "--private/--public",
            help="Send the oracle updates privately to the devnet relay with MEV-Share hints (the Chainlink "
            "SVR path: searchers see hints on the relay's stream, not the txs in the mempool).",
        ),
    ] = False,
) -> None:
    """ETH price path down `drop_bps` over `blocks` blocks, sent as pending oracle transactions."""
    from keeper.devnet.scenarios.crash import CrashStep, run_crash
    from keeper.devnet.scenarios.positions import discover, read_health_factors

    async def go(rpc: RpcClient, dep: DevnetDeployment, miner: Miner) -> None:
        async def show(step: CrashStep) -> None:
            typer.echo(
                f"block {step.block}: ETH ${format_units(step.eth_usd, 8, 2)} "
                f"({len(step.oracle_txs)} oracle txs, {step.swap_txs} swaps)"
            )

        if private:
            if not isinstance(miner, RelayMiner):
                raise DevnetError("--private needs the devnet relay; this devnet runs without one")
            typer.echo(f"oracle updates go privately to {miner.relay_url}; hints on its stream (GET /)")
        res = await run_crash(
            rpc,
            dep,
            drop_bps=drop_bps,
            blocks=blocks,
            mine=mine,
            move_amms=amms,
            on_step=show,
            miner=miner,
            private=private,
        )
        borrowings = list((await discover(rpc, dep)).values())
        await read_health_factors(rpc, dep, borrowings)
        below: dict[str, int] = {}
        for b in borrowings:
            if b.health_factor is not None and b.health_factor < 10**18:
                below[b.market] = below.get(b.market, 0) + 1
        typer.echo(
            f"ETH ${format_units(res.start_eth_usd, 8, 2)} -> ${format_units(res.end_eth_usd, 8, 2)} "
            f"in {len(res.steps)} blocks; borrowers with HF < 1 (getUserAccountData): "
            + (", ".join(f"{k}: {v}" for k, v in sorted(below.items())) or "none")
            + f" of {len(borrowings)}"
        )

    _run_scenario(go)


@scenario_app.command("depeg")
def scenario_depeg(
    lst_bps: Annotated[int, typer.Option(help="wstETH discount on Uniswap V3, bps.")] = 300,
    stable_bps: Annotated[int, typer.Option(help="USDT discount on Uniswap V3, bps.")] = 150,
) -> None:
    """Large swaps push wstETH and USDT off peg on one venue (Uniswap V3); oracles unchanged."""
    from keeper.devnet.scenarios.depeg import run_depeg

    res = _run_scenario(
        lambda rpc, dep, miner: run_depeg(
            rpc, dep, lst_discount_bps=lst_bps, stable_discount_bps=stable_bps, miner=miner
        )
    )
    for pool, bps in res.pools.items():
        typer.echo(f"{pool}: pushed {bps} bps below peg")


@scenario_app.command("competitor")
def scenario_competitor(
    share: Annotated[int, typer.Option(help="Percent of liquidatable positions the competitor takes.")] = 50,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
) -> None:
    """A second liquidator takes some liquidatable positions first (public liquidationCall txs)."""
    from keeper.devnet.scenarios.competitor import run_competitor

    res = _run_scenario(
        lambda rpc, dep, miner: run_competitor(rpc, dep, share_pct=share, seed=seed, miner=miner)
    )
    typer.echo(f"competitor liquidated {len(res.taken)} of {res.liquidatable} liquidatable positions")


# ------------------------------------------------------------------------------------------ record


@app.command()
def record(
    out: Annotated[Path, typer.Option(help="The recording file to write (gzip).")],
    blocks: Annotated[
        int, typer.Option(help="Stop after this many blocks (0: until Ctrl-C). Ignored with --demo.")
    ] = 0,
    demo: Annotated[
        bool,
        typer.Option(
            help="Record a demo-like run in-process instead (borrowers, the live keeper, an ETH crash, a "
            "competitor that backruns the oracle updates); takes seconds."
        ),
    ] = False,
    borrowers: Annotated[int, typer.Option(help="Borrowers of the --demo run.")] = 150,
    seed: Annotated[int, typer.Option(help="Seed of the --demo run.")] = 1,
    ledger: Annotated[
        Path | None, typer.Option(help="Keep the --demo run's live ledger here (to compare a replay with).")
    ] = None,
) -> None:
    """Record the devnet's blocks (raw transactions, headers, the starting state) for `keeper backtest`."""
    import shutil
    import tempfile

    from keeper.devnet.recorder import Recorder, record_demo

    if demo:

        async def run_demo() -> None:
            with tempfile.TemporaryDirectory(prefix="keeper-record-") as tmp:
                rec = await record_demo(out, Path(tmp), borrowers=borrowers, seed=seed)
                if ledger is not None:
                    shutil.copyfile(rec.ledger_path, ledger)
                typer.echo(
                    f"recorded blocks {rec.first_block}-{rec.last_block} to {out} "
                    f"({len(rec.competitor_txs)} competitor liquidations sent)"
                )

        try:
            asyncio.run(run_demo())
        except KeeperError as exc:
            _fail(str(exc))
        return
    url, _, dep = _target()

    async def main() -> None:
        async with RpcClient(url, timeout=120) as rpc:
            recorder = await Recorder.start(rpc, out, deployment=dep.to_json(), meta={"scenario": "devnet"})
            typer.echo(f"recording from block {recorder.next_block} to {out} (Ctrl-C stops)")
            try:
                while blocks == 0 or recorder.writer.blocks < blocks:
                    await recorder.record_new()
                    await asyncio.sleep(0.1)
            finally:
                recorder.close()
                typer.echo(f"recorded {recorder.writer.blocks} blocks")

    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(main())
        except KeeperError as exc:
            _fail(str(exc))
