"""`keeper contracts ...`: our on-chain pieces. `deploy` puts a LiquidationExecutor on the configured chain.

`keeper contracts deploy [--config FILE] [--out PATH]`:
- the owner is the funds account (KEEPER_PRIVATE_KEY or KEEPER_KEYSTORE); it signs every transaction
  locally (TxSigner, type-2) and sends it with eth_sendRawTransaction: real networks have no unlocked
  accounts, so nothing here uses eth_sendTransaction;
- the constructor only stores addresses (owner, first operator, Aave V3 Pool for flash loans, Uniswap V3
  SwapRouter, Uniswap V2 Router02, WETH), so they need not have code yet; they come from the settings
  (KEEPER_FLASH_POOL, KEEPER_ROUTER_V3, KEEPER_ROUTER_V2, KEEPER_WETH_ADDRESS; mainnet defaults) or, with
  KEEPER_DEVNET=true, from the devnet file;
- the accounts of KEEPER_OPERATOR_KEYS become operators: the first through the constructor, the others
  with setOperator(account, true), one transaction each (nonces in sequence, sent together);
- fees: max priority fee from eth_maxPriorityFeePerGas (1 gwei if the node has none), max fee = twice the
  next base fee plus that tip; the balance must cover gas x max fee for all of it, or nothing is sent;
- after the receipts: code at the address, owner() and isOperator() are read back, the record is written
  to `deployments/executor-<chain id>.json` (in the current directory; `--out` to change) and the
  command prints the address and the KEEPER_EXECUTOR_ADDRESS line to set.
Keys are never printed: only addresses.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from eth_abi.abi import decode, encode

from keeper import __version__
from keeper.chain.redact import redact_url
from keeper.chain.rpc import RpcClient, hex_to_int
from keeper.chain.signer import Eip1559Tx, SignedTx, TxSigner
from keeper.config import Settings, env_name, funds_account, load_settings
from keeper.errors import ConfigError, ExecutionReverted, JsonRpcError, KeeperError, RpcError
from keeper.logs import register_secrets, scrub

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

app = typer.Typer(help="Our contracts: deploy the LiquidationExecutor.", no_args_is_help=True)

ZERO_ADDRESS = "0x" + "00" * 20
GWEI = 10**9
GAS_HEADROOM_BPS = 12_000
SET_OPERATOR_GAS = 60_000


@dataclass(frozen=True)
class ExecutorTargets:
    """The addresses the executor's constructor stores."""

    flash_pool: str
    router_v3: str
    router_v2: str
    weth: str
    source: str
    """Where they came from: "settings" or the devnet file's path."""


@dataclass(frozen=True)
class DeployRecord:
    chain_id: int
    address: str
    owner: str
    operators: list[str]
    flash_pool: str
    router_v3: str
    router_v2: str
    weth: str
    tx_hash: str
    block: int
    operator_txs: list[str]
    gas_cost_wei: int
    keeper_version: str


def targets_from(settings: Settings) -> ExecutorTargets:
    if settings.devnet:
        from keeper.runner import read_devnet_file

        info = read_devnet_file(settings.devnet_file)
        d = info.deployment
        try:
            return ExecutorTargets(
                flash_pool=str(d["aave_v3"]["pool"]),
                router_v3=str(d["uniswap_v3"]["swap_router"]),
                router_v2=str(d["uniswap_v2"]["router"]),
                weth=str(d["tokens"]["WETH"]["address"]),
                source=str(info.path),
            )
        except (KeyError, TypeError):
            raise ConfigError(
                [f"{env_name('devnet_file')}: {info.path} lacks the Aave V3 pool, a router or WETH"]
            ) from None
    return ExecutorTargets(
        settings.flash_pool, settings.router_v3, settings.router_v2, settings.weth_address, "settings"
    )


def creation_code(owner: str, operator: str | None, t: ExecutorTargets) -> bytes:
    from keeper.devnet.contracts import our_artifact
    from keeper.executors.executor_contract import CONTRACT_NAME

    artifact = our_artifact(CONTRACT_NAME)
    args = encode(
        ["address"] * 6, [owner, operator or ZERO_ADDRESS, t.flash_pool, t.router_v3, t.router_v2, t.weth]
    )
    return bytes.fromhex(artifact.bytecode[2:]) + args


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


async def deploy_executor_signed(
    rpc: RpcClient,
    signer: TxSigner,
    operators: list[str],
    targets: ExecutorTargets,
    *,
    receipt_timeout: float = 600.0,
    echo: Any = print,
) -> DeployRecord:
    """Deploys with locally signed transactions and waits for the receipts; raises KeeperError."""
    from keeper.chain.abi import encode_call
    from keeper.executors.executor_contract import encode_set_operator

    chain_id = await rpc.chain_id()
    owner = signer.address
    first, rest = (operators[0], operators[1:]) if operators else (None, [])
    code = creation_code(owner, first, targets)
    try:
        estimate = hex_to_int(
            await rpc.call("eth_estimateGas", [{"from": owner, "data": "0x" + code.hex()}, "latest"])
        )
    except ExecutionReverted as exc:
        raise KeeperError(f"the deployment would revert: {exc.message} (a zero address?)") from None
    gas = estimate * GAS_HEADROOM_BPS // 10_000
    max_fee, tip = await _fees(rpc)
    total_gas = gas + SET_OPERATOR_GAS * len(rest)
    balance = await rpc.get_balance(owner)
    if balance < total_gas * max_fee:
        raise KeeperError(
            f"the owner {owner} has {balance} wei; deploying may cost up to {total_gas * max_fee} wei "
            f"({total_gas} gas at {max_fee} wei per gas): fund it first"
        )
    nonce = hex_to_int(await rpc.call("eth_getTransactionCount", [owner, "pending"]))
    deploy_tx = signer.sign(Eip1559Tx(chain_id, nonce, tip, max_fee, gas, None, 0, code))
    deploy_hash = await _send(rpc, deploy_tx)
    echo(f"deploy transaction {deploy_hash} sent from {owner} (nonce {nonce}); waiting for its receipt")
    receipt = await rpc.wait_for_receipt(deploy_hash, timeout=receipt_timeout, poll=0.5)
    if receipt.get("status") != "0x1" or not receipt.get("contractAddress"):
        raise KeeperError(f"the deploy transaction {deploy_hash} reverted")
    from eth_utils.address import to_checksum_address

    address = str(to_checksum_address(receipt["contractAddress"]))
    cost = hex_to_int(receipt["gasUsed"]) * hex_to_int(receipt["effectiveGasPrice"])
    # setOperator for the other operators (the first was set by the constructor).
    op_hashes: list[str] = []
    for i, operator in enumerate(rest):
        signed = signer.sign(
            Eip1559Tx(
                chain_id,
                nonce + 1 + i,
                tip,
                max_fee,
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
    # Read back what the chain now says.
    deployed = await rpc.call("eth_getCode", [address, "latest"])
    if not isinstance(deployed, str) or len(deployed) <= 2:
        raise KeeperError(f"no code at {address} after the deploy")
    (chain_owner,) = decode(["address"], await rpc.eth_call(address, encode_call("owner()", [], [])))
    if str(chain_owner).lower() != owner.lower():
        raise KeeperError(f"owner() of {address} is {chain_owner}, expected {owner}")
    for operator in operators:
        raw = await rpc.eth_call(address, encode_call("isOperator(address)", ["address"], [operator]))
        if not decode(["bool"], raw)[0]:
            raise KeeperError(f"{operator} is not an operator of {address} after setOperator")
    return DeployRecord(
        chain_id=chain_id,
        address=address,
        owner=owner,
        operators=list(operators),
        flash_pool=targets.flash_pool,
        router_v3=targets.router_v3,
        router_v2=targets.router_v2,
        weth=targets.weth,
        tx_hash=deploy_hash,
        block=hex_to_int(receipt["blockNumber"]),
        operator_txs=op_hashes,
        gas_cost_wei=cost,
        keeper_version=__version__,
    )


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


def _prepare(config: Path | None) -> tuple[Settings, LocalAccount, ExecutorTargets]:
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
    return settings, account, targets_from(settings)


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
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each receipt.")] = 600.0,
) -> None:
    """Deploy our LiquidationExecutor, owned by the funds key; add KEEPER_OPERATOR_KEYS as operators."""
    try:
        settings, account, targets = _prepare(config)
    except ConfigError as exc:
        raise _fail(exc.problems) from None
    signer = TxSigner(account)
    operators = [TxSigner.from_key(k.get_secret_value()).address for k in settings.operator_keys]

    async def main() -> DeployRecord:
        async with RpcClient(settings.rpc_http_url, timeout=30) as rpc:
            return await deploy_executor_signed(
                rpc, signer, operators, targets, receipt_timeout=timeout, echo=_echo
            )

    try:
        record = asyncio.run(main())
    except (KeeperError, OSError) as exc:
        where = redact_url(settings.rpc_http_url)
        reason = str(exc) if not isinstance(exc, RpcError) else f"{exc} (node {where})"
        raise _fail([f"deploy failed: {reason}"], 1) from None
    path = write_record(record, out)
    _echo(f"LiquidationExecutor deployed at {record.address} (chain {record.chain_id}, block {record.block})")
    _echo(f"owner {record.owner}; operators: {', '.join(record.operators) or 'none'}")
    _echo(
        f"flash pool {record.flash_pool}, router v3 {record.router_v3}, router v2 {record.router_v2}, "
        f"WETH {record.weth} (from {targets.source})"
    )
    _echo(f"gas paid: {record.gas_cost_wei} wei; record written to {path}")
    _echo(f"now set KEEPER_EXECUTOR_ADDRESS={record.address}")
