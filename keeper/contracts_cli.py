"""`keeper contracts ...`: our on-chain pieces. `deploy` puts a LiquidationExecutor on the configured chain.

`keeper contracts deploy [--config FILE] [--out PATH] [--pool POOL=ORACLE ...] [--max-coinbase-bps N]
[--max-slippage-bps N] [--evm-version auto|cancun|...|legacy] [--balancer-vault ADDRESS] [--dry-run]`:
- the owner is the funds account (KEEPER_PRIVATE_KEY or KEEPER_KEYSTORE); it signs every transaction
  locally (TxSigner, type-2) and sends it with eth_sendRawTransaction: real networks have no unlocked
  accounts, so nothing here uses eth_sendTransaction;
- the constructor only stores addresses (owner, first operator, Aave V3 Pool for flash loans, Uniswap V3
  SwapRouter, Uniswap V2 Router02, WETH, the allowed lending pools and their oracles), so they need not
  have code yet; they come from the settings (KEEPER_FLASH_POOL, KEEPER_ROUTER_V3, KEEPER_ROUTER_V2,
  KEEPER_WETH_ADDRESS; mainnet defaults) or, with KEEPER_DEVNET=true, from the devnet file;
- the Balancer V2 Vault (Balancer routes and arbitrage flash loans): `--balancer-vault ADDRESS` (zero
  turns both off), else the devnet's Vault (KEEPER_DEVNET=true), else Balancer's canonical Vault
  0xBA12222222228d8Ba445958a75a0704d566BF2C8 when the chain has code there, else zero;
- the lending pools operators may liquidate on (each with its Aave price oracle): `--pool POOL=ORACLE`
  (repeatable), else the devnet's two Aave markets (KEEPER_DEVNET=true), else the KEEPER_MARKETS presets
  (all known presets when KEEPER_MARKETS is empty). The owner can change the list later (setPool);
- the owner's bounds on operators: the largest builder share (--max-coinbase-bps, default 9500) and the
  largest loss of a collateral sale against the pool's oracle (--max-slippage-bps, default 1000);
- the build: `auto` detects EIP-1153 (an eth_call of init code that executes TLOAD) and deploys
  LiquidationExecutor (Cancun) or LiquidationExecutorLegacy; an explicit --evm-version that needs
  transient storage on a chain without it is refused before anything is sent;
- the accounts of KEEPER_OPERATOR_KEYS become operators: the first through the constructor, the others
  with setOperator(account, true), one transaction each (nonces in sequence, sent together);
- fees: max priority fee from eth_maxPriorityFeePerGas (1 gwei if the node has none), max fee = twice the
  next base fee plus that tip; the balance must cover gas x max fee for all of it, or nothing is sent;
- `--dry-run` reads the chain (build detection, gas estimate, fees, balance) and prints what it would
  deploy, then stops without sending anything;
- after the receipts: code at the address, owner(), the bounds, the pools and isOperator() are read back,
  the record is written to `deployments/executor-<chain id>.json` (in the current directory; `--out` to
  change) and the command prints the address and the KEEPER_EXECUTOR_ADDRESS line to set.
Keys are never printed: only addresses.

`keeper contracts approve-subsidy --token T --amount A [--executor ADDRESS] [--dry-run]` (protocol mode):
the owner (the funds account, which must own the executor) approves the executor for `A` base units of
the debt token `T` (`max`: unlimited; 0 revokes): what loss-making liquidations (`liquidateSubsidized`)
may pull from the owner to repay their flash loans. The executor defaults to KEEPER_EXECUTOR_ADDRESS (or
the devnet's). `--dry-run` prints the approval (current allowance, gas, calldata) and sends nothing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from eth_abi.abi import decode
from eth_utils.address import is_address, to_checksum_address

from keeper import __version__
from keeper.chain.abi import encode_call
from keeper.chain.redact import redact_url
from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.chain.signer import Eip1559Tx, SignedTx, TxSigner
from keeper.config import Settings, env_name, funds_account, load_settings
from keeper.contracts import OurArtifact
from keeper.errors import ConfigError, ExecutionReverted, JsonRpcError, KeeperError, RpcError
from keeper.executors.executor_contract import (
    BPS,
    DEFAULT_MAX_COINBASE_BPS,
    DEFAULT_MAX_SLIPPAGE_BPS,
    MAINNET_BALANCER_VAULT,
    choose_executor_build,
    encode_set_operator,
    executor_build,
    executor_creation_code,
)
from keeper.logs import register_secrets, scrub

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

app = typer.Typer(
    help="Our contracts: deploy the LiquidationExecutor; approve it for subsidies.", no_args_is_help=True
)

ZERO_ADDRESS = "0x" + "00" * 20
GWEI = 10**9
GAS_HEADROOM_BPS = 12_000
SET_OPERATOR_GAS = 60_000

MARKET_POOLS: dict[str, tuple[str, str]] = {
    "aave-v3-ethereum": (
        "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2",
        "0x54586bE62E3c3580375aE3723C145253060Ca0C2",
    ),
    "spark-ethereum": (
        "0xC13e21B648A5Ee794902342038FF3aDAB66BE987",
        "0x8105f69D9C41644c6A0803fDA7D03Aa70996cFD9",
    ),
    "aave-v2-ethereum": (
        "0x7d2768dE32b0b80b7a3454c06BdAc94A69DDc7A9",
        "0xA50ba011c48153De246E5192C8f9258A2ba79Ca9",
    ),
}
"""(lending pool, Aave oracle) of each KEEPER_MARKETS preset. The presets themselves live in
strategies/liquidations/markets.py, which runtime code does not import; a test keeps the two equal."""


@dataclass(frozen=True)
class ExecutorTargets:
    """The addresses the executor's constructor stores."""

    flash_pool: str
    router_v3: str
    router_v2: str
    weth: str
    source: str
    """Where they came from: "settings" or the devnet file's path."""
    pools: dict[str, str] = field(default_factory=dict)
    """Allowed lending pool -> its Aave price oracle."""
    pools_source: str = ""
    balancer_vault: str | None = None
    """The Balancer V2 Vault (zero address: none); None: the canonical Vault if the chain has code there."""


@dataclass(frozen=True)
class DeployRecord:
    chain_id: int
    address: str
    contract: str
    """The build deployed: LiquidationExecutor or LiquidationExecutorLegacy."""
    evm_version: str
    owner: str
    operators: list[str]
    flash_pool: str
    router_v3: str
    router_v2: str
    weth: str
    pools: dict[str, str]
    max_coinbase_bps: int
    max_slippage_bps: int
    balancer_vault: str
    """The Balancer V2 Vault the executor uses (the zero address: none)."""
    tx_hash: str
    block: int
    operator_txs: list[str]
    gas_cost_wei: int
    keeper_version: str


@dataclass(frozen=True)
class DeployPlan:
    """What `deploy` would send (printed by --dry-run)."""

    chain_id: int
    owner: str
    operators: list[str]
    artifact: OurArtifact
    targets: ExecutorTargets
    max_coinbase_bps: int
    max_slippage_bps: int
    balancer_vault: str
    code: bytes
    gas: int
    max_fee: int
    tip: int
    balance: int

    @property
    def total_gas(self) -> int:
        return self.gas + SET_OPERATOR_GAS * max(0, len(self.operators) - 1)


def parse_pools(values: list[str]) -> dict[str, str]:
    """`POOL=ORACLE` strings -> {pool: oracle} (checksummed); ConfigError lists every bad one."""
    pools: dict[str, str] = {}
    problems = []
    for value in values:
        pool, sep, oracle = value.partition("=")
        pool, oracle = pool.strip(), oracle.strip()
        if not sep or not is_address(pool) or not is_address(oracle):
            problems.append(f"--pool {value!r}: expected POOL=ORACLE, two 0x addresses")
            continue
        pools[str(to_checksum_address(pool))] = str(to_checksum_address(oracle))
    if problems:
        raise ConfigError(problems)
    return pools


def parse_vault(value: str | None) -> str | None:
    """`--balancer-vault`: a checksummed address (zero allowed), or None when not given."""
    if value is None:
        return None
    if not is_address(value.strip()):
        raise ConfigError([f"--balancer-vault {value!r}: expected a 0x address (zero: no Balancer)"])
    return str(to_checksum_address(value.strip()))


def targets_from(
    settings: Settings, pool_options: list[str] | None = None, balancer_vault: str | None = None
) -> ExecutorTargets:
    explicit = parse_pools(pool_options or [])
    vault = parse_vault(balancer_vault)
    if settings.devnet:
        from keeper.runner import read_devnet_file

        info = read_devnet_file(settings.devnet_file)
        d = info.deployment
        try:
            pools = explicit or {
                str(d["aave_v3"]["pool"]): str(d["aave_v3"]["oracle"]),
                str(d["aave_v2"]["lending_pool"]): str(d["aave_v2"]["oracle"]),
            }
            return ExecutorTargets(
                flash_pool=str(d["aave_v3"]["pool"]),
                router_v3=str(d["uniswap_v3"]["swap_router"]),
                router_v2=str(d["uniswap_v2"]["router"]),
                weth=str(d["tokens"]["WETH"]["address"]),
                source=str(info.path),
                pools=pools,
                pools_source="--pool" if explicit else str(info.path),
                balancer_vault=vault if vault is not None else _devnet_vault(d),
            )
        except (KeyError, TypeError):
            raise ConfigError(
                [f"{env_name('devnet_file')}: {info.path} lacks the Aave pools or oracles, a router or WETH"]
            ) from None
    if explicit:
        pools, pools_source = explicit, "--pool"
    else:
        names = settings.markets or list(MARKET_POOLS)
        unknown = [n for n in names if n not in MARKET_POOLS]
        if unknown:
            raise ConfigError([f"{env_name('markets')}: no pool preset for {', '.join(unknown)}; use --pool"])
        pools = dict(MARKET_POOLS[n] for n in names)
        pools_source = f"{env_name('markets')} presets ({', '.join(names)})"
    return ExecutorTargets(
        settings.flash_pool,
        settings.router_v3,
        settings.router_v2,
        settings.weth_address,
        "settings",
        pools,
        pools_source,
        vault,
    )


def _devnet_vault(d: Any) -> str:
    balancer = d.get("balancer") if isinstance(d, dict) else None
    vault = balancer.get("vault") if isinstance(balancer, dict) else None
    return str(to_checksum_address(vault)) if isinstance(vault, str) and is_address(vault) else ZERO_ADDRESS


async def resolve_balancer_vault(rpc: RpcClient, targets: ExecutorTargets) -> str:
    """The Vault to deploy with: the one given, else the canonical Vault where the chain has code there,
    else the zero address (no Balancer routes, no Balancer flash loans)."""
    if targets.balancer_vault is not None:
        return targets.balancer_vault
    code = await rpc.call("eth_getCode", [MAINNET_BALANCER_VAULT, "latest"])
    return MAINNET_BALANCER_VAULT if isinstance(code, str) and len(code) > 2 else ZERO_ADDRESS


async def _fees(rpc: RpcClient) -> tuple[int, int]:
    """(max fee, max priority fee) per gas for a set-up transaction that should land within a few blocks."""
    from keeper.executors.fees import next_base_fee_from_header

    header = await rpc.call("eth_getBlockByNumber", ["latest", False])
    base = next_base_fee_from_header(header)
    try:
        tip = hex_to_int(await rpc.call("eth_maxPriorityFeePerGas"))
    except JsonRpcError:
        tip = GWEI
    return 2 * base + tip, tip


async def _send(rpc: RpcClient, signed: SignedTx) -> str:
    result = await rpc.call("eth_sendRawTransaction", [signed.raw_hex])
    return str(result)


async def plan_deploy(
    rpc: RpcClient,
    owner: str,
    operators: list[str],
    targets: ExecutorTargets,
    *,
    max_coinbase_bps: int = DEFAULT_MAX_COINBASE_BPS,
    max_slippage_bps: int = DEFAULT_MAX_SLIPPAGE_BPS,
    evm_version: str = "auto",
) -> DeployPlan:
    """Chooses the build for the chain, estimates gas and fees; sends nothing. Raises KeeperError."""
    if not targets.pools:
        raise KeeperError("no lending pool to allow: give at least one --pool POOL=ORACLE")
    chain_id = await rpc.chain_id()
    artifact = await choose_executor_build(rpc, evm_version)
    vault = await resolve_balancer_vault(rpc, targets)
    code = executor_creation_code(
        artifact,
        owner,
        operators[0] if operators else None,
        flash_pool=targets.flash_pool,
        router_v3=targets.router_v3,
        router_v2=targets.router_v2,
        weth=targets.weth,
        pools=targets.pools,
        max_coinbase_bps=max_coinbase_bps,
        max_slippage_bps=max_slippage_bps,
        balancer_vault=vault,
    )
    try:
        estimate = hex_to_int(
            await rpc.call("eth_estimateGas", [{"from": owner, "data": "0x" + code.hex()}, "latest"])
        )
    except ExecutionReverted as exc:
        raise KeeperError(f"the deployment would revert: {exc.message} (a zero address?)") from None
    max_fee, tip = await _fees(rpc)
    return DeployPlan(
        chain_id=chain_id,
        owner=owner,
        operators=list(operators),
        artifact=artifact,
        targets=targets,
        max_coinbase_bps=max_coinbase_bps,
        max_slippage_bps=max_slippage_bps,
        balancer_vault=vault,
        code=code,
        gas=estimate * GAS_HEADROOM_BPS // 10_000,
        max_fee=max_fee,
        tip=tip,
        balance=await rpc.get_balance(owner),
    )


async def deploy_executor_signed(
    rpc: RpcClient,
    signer: TxSigner,
    operators: list[str],
    targets: ExecutorTargets,
    *,
    max_coinbase_bps: int = DEFAULT_MAX_COINBASE_BPS,
    max_slippage_bps: int = DEFAULT_MAX_SLIPPAGE_BPS,
    evm_version: str = "auto",
    receipt_timeout: float = 600.0,
    echo: Any = print,
) -> DeployRecord:
    """Deploys with locally signed transactions and waits for the receipts; raises KeeperError."""
    plan = await plan_deploy(
        rpc,
        signer.address,
        operators,
        targets,
        max_coinbase_bps=max_coinbase_bps,
        max_slippage_bps=max_slippage_bps,
        evm_version=evm_version,
    )
    owner, chain_id, rest = plan.owner, plan.chain_id, operators[1:]
    if plan.balance < plan.total_gas * plan.max_fee:
        raise KeeperError(
            f"the owner {owner} has {plan.balance} wei; deploying may cost up to "
            f"{plan.total_gas * plan.max_fee} wei ({plan.total_gas} gas at {plan.max_fee} wei per gas): "
            "fund it first"
        )
    nonce = hex_to_int(await rpc.call("eth_getTransactionCount", [owner, "pending"]))
    deploy_tx = signer.sign(Eip1559Tx(chain_id, nonce, plan.tip, plan.max_fee, plan.gas, None, 0, plan.code))
    deploy_hash = await _send(rpc, deploy_tx)
    echo(
        f"deploy transaction {deploy_hash} ({plan.artifact.name}, EVM {plan.artifact.evm_version}) sent "
        f"from {owner} (nonce {nonce}); waiting for its receipt"
    )
    receipt = await rpc.wait_for_receipt(deploy_hash, timeout=receipt_timeout, poll=0.5)
    if receipt.get("status") != "0x1" or not receipt.get("contractAddress"):
        raise KeeperError(f"the deploy transaction {deploy_hash} reverted")
    address = str(to_checksum_address(receipt["contractAddress"]))
    cost = hex_to_int(receipt["gasUsed"]) * hex_to_int(receipt["effectiveGasPrice"])
    # setOperator for the other operators (the first was set by the constructor).
    op_hashes: list[str] = []
    for i, operator in enumerate(rest):
        signed = signer.sign(
            Eip1559Tx(
                chain_id,
                nonce + 1 + i,
                plan.tip,
                plan.max_fee,
                SET_OPERATOR_GAS,
                address,
                0,
                encode_set_operator(operator, True),
            )
        )
        op_hashes.append(await _send(rpc, signed))
    for h in op_hashes:
        r = await rpc.wait_for_receipt(h, timeout=receipt_timeout, poll=0.5)
        if r.get("status") != "0x1":
            raise KeeperError(f"setOperator transaction {h} reverted")
        cost += hex_to_int(r["gasUsed"]) * hex_to_int(r["effectiveGasPrice"])
    await _read_back(rpc, address, plan)
    return DeployRecord(
        chain_id=chain_id,
        address=address,
        contract=plan.artifact.name,
        evm_version=plan.artifact.evm_version,
        owner=owner,
        operators=list(operators),
        flash_pool=targets.flash_pool,
        router_v3=targets.router_v3,
        router_v2=targets.router_v2,
        weth=targets.weth,
        pools=dict(targets.pools),
        max_coinbase_bps=max_coinbase_bps,
        max_slippage_bps=max_slippage_bps,
        balancer_vault=plan.balancer_vault,
        tx_hash=deploy_hash,
        block=hex_to_int(receipt["blockNumber"]),
        operator_txs=op_hashes,
        gas_cost_wei=cost,
        keeper_version=__version__,
    )


async def _read_back(rpc: RpcClient, address: str, plan: DeployPlan) -> None:
    """What the chain now says must be what was meant; KeeperError otherwise."""

    async def read(signature: str, types: list[str], args: list[Any], out: str) -> Any:
        return decode([out], await rpc.eth_call(address, encode_call(signature, types, args)))[0]

    deployed = await rpc.call("eth_getCode", [address, "latest"])
    if not isinstance(deployed, str) or len(deployed) <= 2:
        raise KeeperError(f"no code at {address} after the deploy")
    chain_owner = await read("owner()", [], [], "address")
    if str(chain_owner).lower() != plan.owner.lower():
        raise KeeperError(f"owner() of {address} is {chain_owner}, expected {plan.owner}")
    bounds = (
        await read("maxCoinbaseBps()", [], [], "uint16"),
        await read("maxSlippageBps()", [], [], "uint16"),
    )
    if bounds != (plan.max_coinbase_bps, plan.max_slippage_bps):
        raise KeeperError(f"the bounds of {address} are {bounds}, expected the ones deployed")
    vault = await read("balancerVault()", [], [], "address")
    if str(vault).lower() != plan.balancer_vault.lower():
        raise KeeperError(f"balancerVault() of {address} is {vault}, expected {plan.balancer_vault}")
    for pool, oracle in plan.targets.pools.items():
        chain_oracle = await read("oracleOf(address)", ["address"], [pool], "address")
        if str(chain_oracle).lower() != oracle.lower():
            raise KeeperError(f"oracleOf({pool}) is {chain_oracle}, expected {oracle}")
    for operator in plan.operators:
        if not await read("isOperator(address)", ["address"], [operator], "bool"):
            raise KeeperError(f"{operator} is not an operator of {address} after setOperator")


def write_record(record: DeployRecord, out: Path | None) -> Path:
    path = out if out is not None else Path("deployments") / f"executor-{record.chain_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**asdict(record), "deployed_at": int(time.time())}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    tmp.replace(path)
    return path


def _echo(text: str, *, err: bool = False) -> None:
    typer.echo(scrub(text), err=err)


def _fail(problems: list[str], code: int = 2) -> typer.Exit:
    for p in problems:
        _echo(f"error: {p}", err=True)
    return typer.Exit(code)


def _prepare(
    config: Path | None, pools: list[str], balancer_vault: str | None = None
) -> tuple[Settings, LocalAccount, ExecutorTargets]:
    settings = load_settings(config)
    register_secrets(*settings.secrets())
    account = funds_account(settings)
    if account is None:
        raise ConfigError(
            [
                f"{env_name('private_key')}: missing (or {env_name('keystore')}): the owner's key "
                "signs the deployment; e.g. KEEPER_KEYSTORE=/secure/keystore.json"
            ]
        )
    return settings, account, targets_from(settings, pools, balancer_vault)


def _check_options(max_coinbase_bps: int, max_slippage_bps: int, evm_version: str) -> list[str]:
    problems = []
    for name, value in (("--max-coinbase-bps", max_coinbase_bps), ("--max-slippage-bps", max_slippage_bps)):
        if not 0 <= value <= BPS:
            problems.append(f"{name} {value}: must be within 0..{BPS} (basis points)")
    if evm_version != "auto":
        try:
            executor_build(evm_version)
        except ValueError as exc:
            problems.append(f"--evm-version: {exc}")
    return problems


def _print_plan(plan: DeployPlan) -> None:
    t = plan.targets
    _echo(f"dry run: nothing sent. Would deploy {plan.artifact.name} (EVM {plan.artifact.evm_version})")
    _echo(f"chain {plan.chain_id}; owner {plan.owner}; operators: {', '.join(plan.operators) or 'none'}")
    _echo(f"flash pool {t.flash_pool}, router v3 {t.router_v3}, router v2 {t.router_v2}, WETH {t.weth}")
    _echo(
        f"Balancer V2 Vault {plan.balancer_vault}" + (" (none)" if int(plan.balancer_vault, 16) == 0 else "")
    )
    _echo(f"allowed lending pools (from {t.pools_source}):")
    for pool, oracle in t.pools.items():
        _echo(f"  {pool} (oracle {oracle})")
    _echo(
        f"max builder share {plan.max_coinbase_bps} bps; max slippage vs oracle {plan.max_slippage_bps} bps"
    )
    _echo(
        f"creation code {len(plan.code)} bytes; gas up to {plan.total_gas} at {plan.max_fee} wei per gas "
        f"= {plan.total_gas * plan.max_fee} wei; owner balance {plan.balance} wei"
    )


@app.command()
def deploy(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="TOML settings file (env vars and .env override it).", dir_okay=False
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Where to write the record (default deployments/executor-<chain id>.json)."),
    ] = None,
    pool: Annotated[
        list[str] | None,
        typer.Option(
            "--pool",
            help="POOL=ORACLE: a lending pool operators may liquidate on, with its Aave price oracle "
            "(repeat; default: the devnet's markets, else the KEEPER_MARKETS presets).",
        ),
    ] = None,
    max_coinbase_bps: Annotated[
        int, typer.Option(help="Largest builder share of the profit an operator may pay (bps).")
    ] = DEFAULT_MAX_COINBASE_BPS,
    max_slippage_bps: Annotated[
        int, typer.Option(help="Largest loss of a collateral sale against the pool's oracle (bps).")
    ] = DEFAULT_MAX_SLIPPAGE_BPS,
    evm_version: Annotated[
        str,
        typer.Option(
            help="auto (detect EIP-1153), an EVM version (cancun, shanghai, paris, ...) or legacy: "
            "Cancun and later get the transient-storage build, older chains LiquidationExecutorLegacy."
        ),
    ] = "auto",
    balancer_vault: Annotated[
        str | None,
        typer.Option(
            "--balancer-vault",
            help="Balancer V2 Vault for Balancer routes and flash loans (zero address: none; default: the "
            "devnet's, else the canonical 0xBA12...2C8 when the chain has code there, else none).",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print what would be deployed; send nothing.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each receipt.")] = 600.0,
) -> None:
    """Deploy our LiquidationExecutor, owned by the funds key; add KEEPER_OPERATOR_KEYS as operators."""
    problems = _check_options(max_coinbase_bps, max_slippage_bps, evm_version)
    if problems:
        raise _fail(problems)
    try:
        settings, account, targets = _prepare(config, pool or [], balancer_vault)
    except ConfigError as exc:
        raise _fail(exc.problems) from None
    signer = TxSigner(account)
    operators = [TxSigner.from_key(k.get_secret_value()).address for k in settings.operator_keys]
    bounds = {"max_coinbase_bps": max_coinbase_bps, "max_slippage_bps": max_slippage_bps}

    async def main() -> DeployRecord | DeployPlan:
        async with RpcClient(settings.rpc_http_url, timeout=30) as rpc:
            if dry_run:
                return await plan_deploy(
                    rpc, signer.address, operators, targets, evm_version=evm_version, **bounds
                )
            return await deploy_executor_signed(
                rpc,
                signer,
                operators,
                targets,
                evm_version=evm_version,
                receipt_timeout=timeout,
                echo=_echo,
                **bounds,
            )

    try:
        result = asyncio.run(main())
    except (KeeperError, OSError) as exc:
        where = redact_url(settings.rpc_http_url)
        reason = str(exc) if not isinstance(exc, RpcError) else f"{exc} (node {where})"
        raise _fail([f"deploy failed: {reason}"], 1) from None
    if isinstance(result, DeployPlan):
        _print_plan(result)
        return
    record = result
    path = write_record(record, out)
    _echo(
        f"{record.contract} deployed at {record.address} (chain {record.chain_id}, block {record.block}, "
        f"EVM {record.evm_version} build)"
    )
    _echo(f"owner {record.owner}; operators: {', '.join(record.operators) or 'none'}")
    _echo(
        f"flash pool {record.flash_pool}, router v3 {record.router_v3}, router v2 {record.router_v2}, "
        f"WETH {record.weth} (from {targets.source})"
    )
    _echo(
        f"allowed lending pools (from {targets.pools_source}): "
        + ", ".join(f"{p} (oracle {o})" for p, o in record.pools.items())
    )
    _echo(f"max builder share {record.max_coinbase_bps} bps; max slippage {record.max_slippage_bps} bps")
    _echo(f"Balancer V2 Vault {record.balancer_vault}")
    _echo(f"gas paid: {record.gas_cost_wei} wei; record written to {path}")
    _echo(f"now set KEEPER_EXECUTOR_ADDRESS={record.address}")


# --- approve-subsidy ------------------------------------------------------------------------------------

APPROVE_GAS_FLOOR = 60_000


@dataclass
class ApprovalPlan:
    """The owner's `approve(executor, amount)` on a debt token (what `liquidateSubsidized` may pull)."""

    chain_id: int
    owner: str
    token: str
    executor: str
    amount: int
    current: int
    """The allowance before."""
    gas: int
    max_fee: int
    tip: int
    data: bytes


def parse_amount(text: str) -> int:
    """An allowance in base units: a non-negative integer, or "max" (2**256 - 1). ValueError otherwise."""
    t = text.strip().lower().replace("_", "")
    if t == "max":
        return 2**256 - 1
    value = int(t)
    if not 0 <= value < 2**256:
        raise ValueError("out of uint256 range")
    return value


async def _read_uint(rpc: RpcClient, to: str, data: bytes, block: str = "latest") -> int:
    return int(decode(["uint256"], await rpc.eth_call(to, data, block))[0])


async def plan_approval(rpc: RpcClient, owner: str, token: str, executor: str, amount: int) -> ApprovalPlan:
    """Reads what the approval needs (the executor's owner must be `owner`, the token must be a contract)
    and prices it; sends nothing. KeeperError when it cannot work."""
    from keeper.executors.executor_contract import encode_allowance, encode_approve

    chain_id = hex_to_int(await rpc.call("eth_chainId"))
    codes = await rpc.batch([("eth_getCode", [a, "latest"]) for a in (executor, token)])
    if codes[0] in (None, "0x"):
        raise KeeperError(f"no contract at the executor address {executor}")
    if codes[1] in (None, "0x"):
        raise KeeperError(f"no contract at the token address {token}")
    executor_owner = str(decode(["address"], await rpc.eth_call(executor, encode_call("owner()", [], [])))[0])
    if executor_owner.lower() != owner.lower():
        raise KeeperError(
            f"the executor {executor} is owned by {executor_owner}, not by the funds account {owner}: "
            "only its owner's allowance is pulled by liquidateSubsidized"
        )
    current = await _read_uint(rpc, token, encode_allowance(owner, executor))
    data = encode_approve(executor, amount)
    try:
        estimate = hex_to_int(
            await rpc.call("eth_estimateGas", [{"from": owner, "to": token, "data": "0x" + data.hex()}])
        )
    except JsonRpcError as exc:
        raise KeeperError(f"approve would revert: {exc}") from None
    max_fee, tip = await _fees(rpc)
    gas = max(APPROVE_GAS_FLOOR, estimate * 5 // 4)
    return ApprovalPlan(chain_id, owner, token, executor, amount, current, gas, max_fee, tip, data)


async def approve_subsidy_signed(
    rpc: RpcClient, signer: TxSigner, plan: ApprovalPlan, *, receipt_timeout: float = 600.0
) -> tuple[str, int]:
    """Signs and sends the plan's approve, waits for it; returns (tx hash, allowance read back)."""
    from keeper.executors.executor_contract import encode_allowance

    balance = hex_to_int(await rpc.call("eth_getBalance", [plan.owner, "latest"]))
    if balance < plan.gas * plan.max_fee:
        raise KeeperError(
            f"the owner {plan.owner} has {balance} wei; the approval may cost up to "
            f"{plan.gas * plan.max_fee} wei: fund it first"
        )
    nonce = hex_to_int(await rpc.call("eth_getTransactionCount", [plan.owner, "pending"]))
    signed = signer.sign(
        Eip1559Tx(plan.chain_id, nonce, plan.tip, plan.max_fee, plan.gas, plan.token, 0, plan.data)
    )
    tx_hash = await _send(rpc, signed)
    receipt = await rpc.wait_for_receipt(tx_hash, timeout=receipt_timeout, poll=0.5)
    if receipt.get("status") != "0x1":
        raise KeeperError(f"the approve transaction {tx_hash} reverted")
    after = await _read_uint(rpc, plan.token, encode_allowance(plan.owner, plan.executor))
    if after != plan.amount:
        raise KeeperError(f"the allowance reads {after} after the approval, not {plan.amount}")
    return tx_hash, after


def _executor_from(settings: Settings, option: str | None) -> str:
    if option:
        if not is_address(option):
            raise ConfigError([f"--executor: not an address: {option!r}"])
        return str(to_checksum_address(option))
    if settings.devnet:
        from keeper.runner import read_devnet_file

        executor = read_devnet_file(settings.devnet_file).deployment.get("executor")
        if executor:
            return str(to_checksum_address(str(executor)))
    if settings.executor_address:
        return str(to_checksum_address(settings.executor_address))
    raise ConfigError(
        [f"{env_name('executor_address')}: missing (or --executor): the executor the owner approves"]
    )


def _prepare_approval(config: Path | None, executor: str | None) -> tuple[Settings, LocalAccount, str]:
    settings = load_settings(config)
    register_secrets(*settings.secrets())
    account = funds_account(settings)
    if account is None:
        raise ConfigError(
            [
                f"{env_name('private_key')}: missing (or {env_name('keystore')}): the owner's key signs "
                "the approval"
            ]
        )
    return settings, account, _executor_from(settings, executor)


@app.command("approve-subsidy")
def approve_subsidy(
    token: Annotated[str, typer.Option("--token", help="The debt token (address) the owner approves.")],
    amount: Annotated[
        str,
        typer.Option(
            "--amount",
            help="The allowance in the token's base units (e.g. 1000000000 = 1000 USDC), or max; 0 revokes. "
            "It caps what loss-making liquidations (liquidateSubsidized) may pull from the owner.",
        ),
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="TOML settings file (env vars and .env override it).", dir_okay=False
        ),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(help="The executor (default KEEPER_EXECUTOR_ADDRESS, or the devnet's)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the approval; send nothing.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the receipt.")] = 600.0,
) -> None:
    """Protocol mode: the owner approves the executor for a debt token, so that a liquidation whose sale
    does not repay the loan can be subsidized by the owner (up to this allowance)."""
    problems = []
    if not is_address(token):
        problems.append(
            f"--token: not an address: {token!r} (e.g. 0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48)"
        )
    try:
        value = parse_amount(amount)
    except ValueError:
        problems.append(f"--amount: not a non-negative integer of base units or max: {amount!r}")
        value = 0
    if problems:
        raise _fail(problems)
    token_address = str(to_checksum_address(token))
    try:
        settings, account, executor_address = _prepare_approval(config, executor)
    except ConfigError as exc:
        raise _fail(exc.problems) from None
    signer = TxSigner(account)

    async def main() -> tuple[ApprovalPlan, str | None, int | None]:
        async with RpcClient(settings.rpc_http_url, timeout=30) as rpc:
            plan = await plan_approval(rpc, signer.address, token_address, executor_address, value)
            if dry_run:
                return plan, None, None
            tx_hash, after = await approve_subsidy_signed(rpc, signer, plan, receipt_timeout=timeout)
            return plan, tx_hash, after

    try:
        plan, tx_hash, after = asyncio.run(main())
    except (KeeperError, OSError) as exc:
        where = redact_url(settings.rpc_http_url)
        reason = str(exc) if not isinstance(exc, RpcError) else f"{exc} (node {where})"
        raise _fail([f"approve-subsidy failed: {reason}"], 1) from None
    what = (
        f"approve({plan.executor}, {plan.amount}) on {plan.token} from the owner {plan.owner} "
        f"(chain {plan.chain_id}; allowance now {plan.current}; gas {plan.gas}, max fee {plan.max_fee} "
        "wei/gas)"
    )
    if tx_hash is None:
        _echo(f"dry run: nothing sent. Would send {what}")
        _echo(f"calldata 0x{plan.data.hex()}")
        return
    _echo(f"sent {what}: transaction {tx_hash}")
    _echo(f"allowance of {plan.executor} for {plan.token} from {plan.owner}: {after}")
