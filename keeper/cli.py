"""The `keeper` command line: version, check, run, demo, devnet.

Exit codes: 0 ok (also after Ctrl-C / SIGTERM in `run`), 1 runtime failure (node unreachable, crash),
2 bad configuration (one `error: ...` line per problem on stderr, never a secret, never a traceback).
"""

from __future__ import annotations

import asyncio
import errno
import importlib.metadata
import logging
import platform
import socket
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from keeper import __version__
from keeper.backtest.cli import backtest as backtest_command
from keeper.chain.redact import redact_url
from keeper.config import Settings, env_name, flashbots_account, funds_account, load_settings
from keeper.contracts_cli import app as contracts_app
from keeper.devnet.cli import app as devnet_app
from keeper.errors import ConfigError, RpcError, RpcTransportError
from keeper.logs import register_secrets, scrub, setup_logging

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from keeper.chain.rpc import RpcClient

log = logging.getLogger("keeper.cli")

app = typer.Typer(
    name="keeper",
    help="Liquidation keeper and peg-arbitrage bot for Ethereum and EVM chains.",
    no_args_is_help=True,
    add_completion=False,
    # A crash must never print local variables: they may hold keys.
    pretty_exceptions_show_locals=False,
)
app.add_typer(devnet_app, name="devnet")
app.add_typer(contracts_app, name="contracts")
app.command("backtest")(backtest_command)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML settings file (keys are field names, e.g. rpc_http_url). Env vars and .env override it.",
        dir_okay=False,
    ),
]


def _echo(text: str, *, err: bool = False, fg: str | None = None) -> None:
    """All output passes the same scrubbing as log lines (registered secrets, 64-hex strings)."""
    typer.secho(scrub(text), err=err, fg=fg)


def _fail_config(exc: ConfigError) -> NoReturn:
    for problem in exc.problems:
        _echo(f"error: {problem}", err=True, fg="red")
    raise typer.Exit(2)


def _load(config: Path | None) -> Settings:
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        _fail_config(exc)
    register_secrets(*settings.secrets())
    return settings


def describe_error(exc: BaseException, timeout: float) -> str:
    """A short human reason for a connection failure, from the exception and its cause/context chain."""
    import aiohttp

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, aiohttp.ClientConnectorDNSError | socket.gaierror):
            return "host name not found"
        if isinstance(seen, aiohttp.ClientConnectorCertificateError | ssl.SSLError):
            return "TLS/certificate error"
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, TimeoutError | aiohttp.ServerTimeoutError):
            return f"no answer within {timeout:g}s"
        if isinstance(seen, aiohttp.WSServerHandshakeError):
            return f"websocket handshake refused (HTTP {seen.status})"
        if isinstance(seen, OSError) and seen.errno is not None:
            if seen.errno == errno.ECONNREFUSED:
                return "connection refused"
            return (seen.strerror or str(seen)).lower()
        if isinstance(seen, aiohttp.ClientConnectorError):
            return str(seen.os_error.strerror or seen.os_error).lower()
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


# ---- version ------------------------------------------------------------------------------------------


@app.command()
def version() -> None:
    """Print the keeper, Python and web3 versions."""
    try:
        web3_version = importlib.metadata.version("web3")
    except importlib.metadata.PackageNotFoundError:
        web3_version = "not installed"
    typer.echo(f"keeper {__version__}")
    typer.echo(f"python {platform.python_version()}")
    typer.echo(f"web3 {web3_version}")


# ---- check --------------------------------------------------------------------------------------------


async def _check_ws(url: str, expected_chain_id: int, timeout: float) -> str:
    """Connects, asks eth_chainId, returns a status line; raises on failure."""
    import aiohttp
    import orjson

    async with (
        asyncio.timeout(timeout),
        aiohttp.ClientSession() as session,
        session.ws_connect(url, heartbeat=None) as ws,
    ):
        await ws.send_bytes(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}))
        msg = await ws.receive()
        if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            raise ConnectionError(f"websocket closed before answering ({msg.type.name})")
        reply = orjson.loads(msg.data)
    result = reply.get("result") if isinstance(reply, dict) else None
    if not isinstance(result, str):
        raise ConnectionError("websocket answered eth_chainId without a result")
    chain_id = int(result, 16)
    if chain_id != expected_chain_id:
        raise ConnectionError(f"websocket is on chain {chain_id}, HTTP on chain {expected_chain_id}")
    return f"chain id {chain_id}"


class RelayUnusable(Exception):
    """The relay answered, but not as a JSON-RPC server (HTTP 5xx, a body that is not JSON-RPC)."""


async def _check_relay(url: str, timeout: float) -> str:
    """Probes a relay with an unsigned JSON-RPC POST; returns what it answered, e.g. "HTTP 200" or
    "HTTP 403, JSON-RPC error -32600".

    Reachable: a JSON-RPC reply (a result, or an error object / bare `{"error": ...}`, such as "signature
    is required" to this unsigned probe: the relay is there and speaks JSON-RPC) with a status below 500.
    Unreachable: no connection or no answer in time (aiohttp/OS errors), HTTP 5xx, or a body that is not
    a JSON-RPC reply (an HTML error page, a proxy's text): `RelayUnusable` with the reason. The server's
    text is never echoed (it may repeat the URL's secret path).
    """
    import aiohttp
    import orjson

    body = b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}'
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url,
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp,
    ):
        raw = await resp.read()
        status = resp.status
        content_type = resp.content_type
    if status >= 500:
        raise RelayUnusable(f"HTTP {status} (server error)")
    try:
        reply = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        kind = f"{content_type}, " if content_type and content_type != "application/octet-stream" else ""
        raise RelayUnusable(f"HTTP {status} with a body that is not JSON ({kind}{len(raw)} bytes)") from None
    if not isinstance(reply, dict) or not ("result" in reply or "error" in reply):
        what = "an empty body" if reply is None else "JSON that is not a JSON-RPC reply"
        raise RelayUnusable(f"HTTP {status} with {what}")
    err = reply.get("error")
    if isinstance(err, dict) and isinstance(err.get("code"), int):
        return f"HTTP {status}, JSON-RPC error {err['code']}"
    return f"HTTP {status}, error reply" if err is not None else f"HTTP {status}"


async def _check_relays(settings: Settings, timeout: float) -> int:
    """One line per relay of KEEPER_RELAY_URLS; returns the number unreachable."""
    failures = 0
    for i, endpoint in enumerate(settings.relay_endpoints, 1):
        shown = endpoint.display_url if not endpoint.named else f"{endpoint.name} ({endpoint.display_url})"
        try:
            answer = await _check_relay(endpoint.url, timeout)
            _echo(f"relay {i}: {shown} reachable ({answer})")
        except Exception as exc:
            failures += 1
            _echo(
                f"error: relay {i} in {env_name('relay_urls')} ({shown}) unreachable: "
                + describe_error(exc, timeout),
                err=True,
            )
    if not settings.relay_urls:
        _echo(f"relays: none configured ({env_name('relay_urls')})")
    return failures


async def _check(settings: Settings, account: LocalAccount | None, timeout: float) -> int:
    from keeper.chain.rpc import RpcClient
    from keeper.chain.units import format_units

    failures = 0
    http_shown = redact_url(settings.rpc_http_url)
    async with RpcClient(settings.rpc_http_url, timeout=timeout, retries=1) as rpc:
        try:
            chain_id = await rpc.chain_id()
            head = await rpc.call("eth_getBlockByNumber", ["latest", False])
        except RpcTransportError as exc:
            reason = describe_error(exc, timeout)
            _echo(
                f"error: cannot reach {env_name('rpc_http_url')} ({http_shown}): {reason}", err=True, fg="red"
            )
            return 1
        except RpcError as exc:
            _echo(
                f"error: {env_name('rpc_http_url')} ({http_shown}) is not a working JSON-RPC node: {exc}",
                err=True,
            )
            return 1
        number = int(head["number"], 16)
        age = int(time.time()) - int(head["timestamp"], 16)
        base_fee = int(head.get("baseFeePerGas") or "0x0", 16)
        _echo(f"rpc http: {http_shown} ok")
        _echo(f"chain id: {chain_id}")
        _echo(f"head: block {number}, age {age}s, base fee {format_units(base_fee, 9)} gwei")

        ws_label = "rpc ws (derived from KEEPER_RPC_HTTP_URL)" if settings.ws_url_is_derived else "rpc ws"
        ws_shown = redact_url(settings.ws_url)
        try:
            _echo(f"{ws_label}: {ws_shown} ok, {await _check_ws(settings.ws_url, chain_id, timeout)}")
        except Exception as exc:
            failures += 1
            hint = f"; set {env_name('rpc_ws_url')}" if settings.ws_url_is_derived else ""
            _echo(f"error: {ws_label}: cannot use {ws_shown}: {describe_error(exc, timeout)}{hint}", err=True)

        failures += await _check_accounts(settings, account, rpc, format_units)

    failures += await _check_relays(settings, timeout)
    _echo(
        f"strategies: {', '.join(settings.strategies)}; "
        f"submit: {settings.submit}; dry run: {str(settings.dry_run).lower()}"
    )
    if failures:
        _echo(f"{failures} check(s) failed", err=True, fg="red")
        return 1
    _echo("all checks passed", fg="green")
    return 0


async def _check_accounts(settings: Settings, account: LocalAccount | None, rpc: RpcClient, fmt: Any) -> int:
    if account is None:
        _echo(f"account: none configured ({env_name('private_key')} or {env_name('keystore')})")
    else:
        try:
            balance = await rpc.get_balance(account.address)
        except RpcError as exc:
            _echo(f"error: cannot read the balance of {account.address}: {exc}", err=True)
            return 1
        _echo(f"account: {account.address} balance {fmt(balance)} ETH")
    identity = flashbots_account(settings)
    if identity is not None:
        _echo(f"relay identity: {identity.address}")
    elif settings.submit == "bundle":
        _echo(f"relay identity: none ({env_name('flashbots_signer_key')}); bundles cannot be signed")
    return 0


@app.command()
def check(
    config: ConfigOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each endpoint.")] = 5.0,
) -> None:
    """Validate settings and test the node (HTTP, websocket), the account balance and each relay."""
    import uvloop

    settings = _load(config)
    setup_logging(settings.log_format, "WARNING", threaded=False)
    try:
        account = funds_account(settings)  # may take a second (keystore scrypt); the loop is not running
    except ConfigError as exc:
        _fail_config(exc)
    raise typer.Exit(uvloop.run(_check(settings, account, timeout)))


# ---- run ----------------------------------------------------------------------------------------------


@app.command()
def run(config: ConfigOption = None) -> None:
    """Run the keeper: block collector -> strategies -> executors, with /metrics and /health.

    KEEPER_STRATEGIES=liquidations runs the liquidation keeper (KEEPER_SUBMIT=bundle|public|private;
    KEEPER_DEVNET=true takes its addresses from deployments/devnet.json). Ctrl-C stops it (exit 0).
    """
    from keeper.runner import run_command

    raise typer.Exit(run_command(_load(config)))


@app.command()
def positions(
    protocol: Annotated[
        str | None, typer.Option(help="Only this market (aave-v3, aave-v2, or a preset name).")
    ] = None,
    below: Annotated[
        str | None, typer.Option(help="Only positions with a health factor below this (e.g. 1).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    config: ConfigOption = None,
) -> None:
    """Tracked borrowers with exact health factors and their best liquidation.

    Uses the running devnet (deployments/devnet.json) unless --config is given; with a config, the
    markets are the KEEPER_MARKETS presets (aave-v3-ethereum, spark-ethereum, aave-v2-ethereum).
    """
    from decimal import Decimal, InvalidOperation

    from keeper.chain.rpc import RpcClient
    from keeper.devnet.stack import DEPLOYMENTS_FILE, read_deployments_file
    from strategies.liquidations.cli import collect, render
    from strategies.liquidations.markets import devnet_markets, presets

    below_wad: int | None = None
    if below is not None:
        try:
            below_wad = int(Decimal(below) * 10**18)
        except InvalidOperation:
            _echo(f"error: --below must be a number such as 1 or 1.05, got {below!r}", err=True)
            raise typer.Exit(2) from None
    setup_logging("text", "WARNING")
    deployment: dict[str, Any] | None = None
    if config is None and DEPLOYMENTS_FILE.is_file():
        info = read_deployments_file()
        url = str(info["rpc_http_url"])
        deployment = info["deployment"]
        markets = devnet_markets(info["deployment"])
    else:
        settings = _load(config)
        url = settings.rpc_http_url
        try:
            markets = presets(settings.markets)
        except ConfigError as exc:
            _fail_config(exc)
    if protocol is not None and protocol not in {m.name for m in markets}:
        _echo(
            f"error: unknown --protocol {protocol!r}; tracked: {', '.join(m.name for m in markets)}", err=True
        )
        raise typer.Exit(2)

    async def main() -> None:
        from strategies.liquidations.valuation import devnet_valuer

        async with RpcClient(url, timeout=60) as rpc:
            # Valued at the devnet's real pools; mainnet venue presets are not configured yet.
            valuer = await devnet_valuer(rpc, deployment) if deployment is not None else None
            rows = await collect(rpc, markets, protocol=protocol, below=below_wad, valuer=valuer)
        render(rows, as_json=as_json)

    try:
        asyncio.run(main())
    except (RpcError, OSError) as exc:
        _echo(f"error: cannot read positions from {redact_url(url)}: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def pegs(
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON output (amounts as decimal strings).")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Every peg: each pool's price against its target (bps) and the best round trip now, with its size,
    flash source, and profit after the builder's share and gas (nothing is sent).

    Uses the running devnet (deployments/devnet.json) unless --config is given; with a config, the pegs
    are KEEPER_PEG_PRESETS and the [[peg]] tables, on the configured pools.
    """
    from keeper.chain.rpc import RpcClient
    from keeper.devnet.stack import DEPLOYMENTS_FILE, read_deployments_file
    from strategies.peg.cli import collect, render
    from strategies.peg.wiring import build_strategy, devnet_peg_setup, peg_setup

    setup_logging("text", "WARNING")
    builder_share_bps, min_profit_wei = 9_000, 0
    try:
        if config is None and DEPLOYMENTS_FILE.is_file():
            info = read_deployments_file()
            url = str(info["rpc_http_url"])
            setup = devnet_peg_setup(info["deployment"])
        else:
            settings = _load(config)
            url = settings.rpc_http_url
            builder_share_bps, min_profit_wei = settings.builder_share_bps, settings.min_profit_wei
            setup = peg_setup(settings, None)
    except ConfigError as exc:
        _fail_config(exc)

    async def main() -> None:
        async with RpcClient(url, timeout=60) as rpc:
            strategy, actions = await build_strategy(
                rpc, setup, builder_share_bps=builder_share_bps, min_profit_wei=min_profit_wei
            )
            rows = await collect(rpc, strategy, actions)
        render(rows, as_json=as_json)

    try:
        asyncio.run(main())
    except ConfigError as exc:
        _fail_config(exc)
    except (RpcError, OSError) as exc:
        _echo(f"error: cannot read pegs from {redact_url(url)}: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def report(
    ledger: Annotated[
        Path,
        typer.Option(
            "--ledger",
            envvar="KEEPER_LEDGER_PATH",
            dir_okay=False,
            help="SQLite ledger file (KEEPER_LEDGER_PATH; default keeper.sqlite).",
        ),
    ] = Path("keeper.sqlite"),
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON (amounts as decimal strings).")
    ] = False,
) -> None:
    """P&L by strategy, protocol and day; inclusion rate per builder; gas, builder payments, missed ones."""
    from keeper.ledger.cli import report_command

    report_command(ledger, json_out)


@app.command()
def demo(
    borrowers: Annotated[int, typer.Option(help="Borrowers to create on the two Aave markets.")] = 500,
    block_time: Annotated[float, typer.Option(help="Seconds between devnet blocks.")] = 1.0,
    drop_bps: Annotated[int, typer.Option(help="ETH crash size in basis points.")] = 2_500,
    blocks: Annotated[int, typer.Option(help="Blocks the crash is spread over.")] = 10,
    arbitrageur: Annotated[
        bool, typer.Option(help="The devnet's background arbitrageur re-aligns pools with the oracle.")
    ] = True,
) -> None:
    """The whole loop on the embedded devnet: borrowers, an ETH crash, what the keeper sees, a summary."""
    from keeper.core.runtime import run as run_main
    from keeper.demo import run_demo

    setup_logging("text", "WARNING")

    async def main() -> None:
        await run_demo(
            borrowers=borrowers,
            block_time=block_time,
            drop_bps=drop_bps,
            crash_blocks=blocks,
            arbitrageur=arbitrageur,
        )

    raise typer.Exit(run_main(main))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
