"""Settings: environment variables (prefix `KEEPER_`), a `.env` file and an optional TOML file.

Precedence, highest first: environment variables, `.env` (current directory), the TOML file given with
`--config` (keys are the field names: `rpc_http_url = "http://..."`), then defaults.

Lists (`KEEPER_RELAY_URLS`, `KEEPER_STRATEGIES`) are comma-separated in the environment and arrays in TOML.

Decisions worth knowing:
- `rpc_ws_url` may be left unset: `Settings.ws_url` then derives it from the HTTP URL (http->ws,
  https->wss, same host, port and path). That is right for anvil, reth and most hosted providers, wrong
  for geth's separate WS port and for Infura (`/ws/v3/...`); `keeper check` tests the derived URL and says
  it was derived, so a wrong guess shows up before `keeper run`.
- `min_profit_wei` defaults to 0. A negative minimum means "accept a loss per opportunity" (protocol-keeper
  mode); it is refused unless `KEEPER_ALLOW_LOSS=true` is also set, so a stray minus sign cannot turn the
  bot into a money burner. Money is an integer number of wei: decimals and exponents are refused.
- `load_settings` never lets a pydantic `ValidationError` out: its default text carries `input_value=...`,
  which would echo private keys. Each problem becomes one line naming the variable, what is wrong and an
  example of a good value; secret values are never part of it.
- RPC and relay URLs often carry API keys in their path, so `repr(settings)` shows them via `redact_url`;
  `Settings.secrets()` lists the strings the log filter must scrub.
- `operator_keys` are extra funds keys (gas payers) the executor contract allows as senders: each must be
  a valid key, none may repeat, equal the funds key or equal the relay identity (which holds no funds).
- Addresses (executor, venues, WETH, flash pool, routers) are checked and normalised to their checksum
  form; a mixed-case address whose checksum is wrong is refused (it is almost always a typo).
- `devnet=true` takes every address, pool, the executor and the relay from `devnet_file`
  (`deployments/devnet.json`, written by `keeper devnet up`); the RPC URLs stay those of the settings and
  `keeper run` checks they serve that devnet (chain id, executor code).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from keeper.chain.redact import redact_url
from keeper.errors import ConfigError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from keeper.executors.builder_identity import BuilderEndpoint

ENV_PREFIX = "KEEPER_"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HEX64 = re.compile(r"(?i)^(0x)?[0-9a-f]{64}$")
_INT = re.compile(r"^[+-]?\d[\d_]*$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")

MAINNET_WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
MAINNET_AAVE_V3_POOL = "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2"
MAINNET_UNISWAP_V3_SWAP_ROUTER = "0xE592427A0AEce92De3Edee1F18E0157C05861564"
MAINNET_UNISWAP_V2_ROUTER02 = "0x7a250d5630B4cF539739dF2C5dAcb4c659F2488D"
MAINNET_BALANCER_VAULT = "0xBA12222222228d8Ba445958a75a0704d566BF2C8"
"""Balancer V2's Vault: the same address on every chain it is deployed on."""
DEFAULT_DEVNET_FILE = Path(__file__).resolve().parents[1] / "deployments" / "devnet.json"

# An example of a good value per field, shown in error lines (never real secrets).
EXAMPLES: dict[str, str] = {
    "rpc_http_url": "http://127.0.0.1:8545",
    "rpc_ws_url": "ws://127.0.0.1:8545",
    "private_key": "0x<64 hex digits>",
    "keystore": "/secure/keystore.json",
    "keystore_password_file": "/run/secrets/keystore-password",
    "flashbots_signer_key": "0x<64 hex digits of a key that holds no funds>",
    "relay_urls": "titan=https://rpc.titanbuilder.xyz,bnet=https://rpc.buildernet.org",
    "strategies": "noop",
    "markets": "aave-v3-ethereum,spark-ethereum",
    "allow_loss": "false",
    "min_profit_wei": "1000000000000000",
    "dry_run": "true",
    "log_format": "text",
    "log_level": "INFO",
    "metrics_port": "9108",
    "metrics_host": "127.0.0.1",
    "head_max_age_seconds": "60",
    "submit": "bundle",
    "ledger_path": "keeper.sqlite",
    "executor_address": "0x<our LiquidationExecutor, from `keeper contracts deploy`>",
    "operator_keys": "0x<64 hex digits>,0x<64 hex digits>",
    "builder_share_bps": "9000",
    "v3_pools": "0x88e6A0c2dDD26FEEb64F039a2c41296FcB3f5640,0x8ad599c3A0ff1De082011EFDDc58f1908eb6e6D8",
    "v2_pairs": "0xB4e16d0168e52d35CaCD2c6185b44281Ec28C9Dc",
    "connectors": "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2,0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
    "weth_address": MAINNET_WETH,
    "flash_pool": MAINNET_AAVE_V3_POOL,
    "router_v3": MAINNET_UNISWAP_V3_SWAP_ROUTER,
    "router_v2": MAINNET_UNISWAP_V2_ROUTER02,
    "devnet": "true",
    "devnet_file": "deployments/devnet.json",
    "block_gas_budget": "20000000",
    "swap_tolerance_bps": "50",
    "oracle_backruns": "true",
    "stuck_alert_blocks": "10",
    "mevshare_url": "https://mev-share.flashbots.net",
    "mevshare_builders": "flashbots",
    "mode": "protocol",
    "subsidy_budget_wei": "500000000000000000",
    "balancer_vault": MAINNET_BALANCER_VAULT,
    "balancer_pools": "0x93d199263632a4EF4Bb438F1feB99e57b4b5f0BD",
    "peg_presets": "wsteth-weth,usd-stables",
    "peg_backruns": "true",
}

_toml_data: ContextVar[dict[str, Any] | None] = ContextVar("keeper_toml_data", default=None)


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _check_url(value: str, schemes: tuple[str, ...]) -> str:
    """Returns `value` stripped, or raises ValueError with a message that never contains the URL."""
    value = value.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("not a valid URL (bad port or brackets)") from None
    if parts.scheme.lower() not in schemes:
        got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise ValueError(f"must start with {' or '.join(s + '://' for s in schemes)}, got {got}")
    if not parts.hostname:
        raise ValueError("URL has no host")
    return value


def _check_key(value: str) -> str:
    """Normalises a private key to 0x + 64 lowercase hex digits; the message never contains the key."""
    value = value.strip()
    if not _HEX64.match(value):
        raise ValueError(
            f"not a private key: expected 64 hex digits with optional 0x prefix (got {len(value)} characters)"
        )
    digits = value[2:] if value[:2].lower() == "0x" else value
    if not 0 < int(digits, 16) < SECP256K1_N:
        raise ValueError("not a valid secp256k1 private key (zero or above the curve order)")
    return "0x" + digits.lower()


def check_address(value: str) -> str:
    """The checksummed address; ValueError (naming no secret) if it is not a valid 0x address."""
    from eth_utils.address import to_checksum_address

    value = value.strip()
    if not _ADDRESS.match(value):
        raise ValueError(f"not an address: expected 0x and 40 hex digits (got {len(value)} characters)")
    checksummed = str(to_checksum_address(value))
    lower, upper = value[2:].lower(), value[2:].upper()
    if value[2:] not in (lower, upper) and value != checksummed:
        raise ValueError(f"bad checksum in {value} (a typo?): the checksummed form is {checksummed}")
    return checksummed


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        validate_default=False,
    )

    rpc_http_url: str
    """Node HTTP JSON-RPC endpoint (required)."""
    rpc_ws_url: str | None = None
    """Node websocket endpoint for subscriptions; derived from rpc_http_url when unset (see `ws_url`)."""
    private_key: SecretStr | None = None
    """Funds key as hex (devnet convenience); production should use `keystore`."""
    keystore: Path | None = None
    keystore_password_file: Path | None = Field(default=None, validate_default=True)
    flashbots_signer_key: SecretStr | None = None
    """Identity key for signing bundles to relays; must hold no funds and differ from the funds key."""
    relay_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Block builders: `url` or `name=url` items; identities unique (see `relay_endpoints`)."""
    strategies: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["noop"])
    markets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Lending markets to track (presets in strategies/liquidations/markets.py)."""
    allow_loss: bool = False
    """Must be true for a negative min_profit_wei."""
    min_profit_wei: int = 0
    dry_run: bool = False
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    """0 disables the /metrics and /health server."""
    metrics_host: str = "127.0.0.1"
    head_max_age_seconds: float = Field(default=60.0, gt=0)
    submit: Literal["bundle", "public", "private"] = "bundle"
    ledger_path: Path = Path("keeper.sqlite")
    executor_address: str | None = None
    """Our LiquidationExecutor (`keeper contracts deploy` prints it); required by the liquidations
    strategy unless `devnet` is true."""
    operator_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    """Extra sender keys the executor allows (setOperator): one nonce each, so several liquidations can
    land in one block as independent bundles. They pay gas: keep them funded."""
    builder_share_bps: int = Field(default=9_000, ge=0, le=9_999)
    """Share of a liquidation's gross profit paid to the block builder from inside the contract (basis
    points). Competitive markets need ~90%; a protocol keeper may set 0."""
    v3_pools: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Uniswap V3 pools where seized collateral may be sold (mainnet; the devnet brings its own)."""
    v2_pairs: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Uniswap V2 pairs where seized collateral may be sold."""
    connectors: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Tokens a two-hop route may pass through (empty: WETH only)."""
    weth_address: str = MAINNET_WETH
    flash_pool: str = MAINNET_AAVE_V3_POOL
    """Aave V3 Pool the executor flash-borrows from."""
    router_v3: str = MAINNET_UNISWAP_V3_SWAP_ROUTER
    router_v2: str = MAINNET_UNISWAP_V2_ROUTER02
    devnet: bool = False
    """True: addresses, pools, the executor and the relay come from `devnet_file`."""
    devnet_file: Path = Field(default=DEFAULT_DEVNET_FILE, validate_default=True)
    block_gas_budget: int | None = Field(default=None, gt=0)
    """Gas our transactions may use per block (all liquidations of a block are packed up to it); unset:
    a third of the block gas limit."""
    swap_tolerance_bps: int = Field(default=50, ge=0, le=5_000)
    """amountOutMinimum of each sale = the exact quote minus this tolerance (basis points)."""
    mevshare_url: str | None = None
    """MEV-Share hint stream (Server-Sent Events), e.g. https://mev-share.flashbots.net: private price
    updates (Chainlink SVR) seen there are backrun by hash. Under KEEPER_DEVNET, the devnet relay's."""
    mevshare_builders: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Builders (names or URLs from KEEPER_RELAY_URLS) that take `mev_sendBundle`: where backruns by hash
    go. Under KEEPER_DEVNET, the devnet relay."""
    stuck_alert_blocks: int = Field(default=10, ge=1)
    """A position liquidatable for this many blocks raises `keeper_liquidatable_stuck_positions` and a
    WARNING line saying why (no route at a profit, gas budget, reverts)."""
    oracle_backruns: bool = True
    """Watch the mempool for price updates of the tracked markets and backrun them in the same block
    (needs a node that streams full pending transactions; bundle mode only)."""
    mode: Literal["searcher", "protocol"] = "searcher"
    """searcher: send only what clears min_profit_wei. protocol (a protocol's official keeper): liquidate
    every liquidatable position the executor can, at a loss too, within subsidy_budget_wei per day."""
    subsidy_budget_wei: int = Field(default=0, ge=0)
    """Protocol mode: what loss-making liquidations may cost per UTC day of block time (gas beyond the
    profit), from the ledger's inclusions; beyond it, the keeper waits for the next day."""
    balancer_vault: str = MAINNET_BALANCER_VAULT
    """Balancer V2 Vault (its pools' swaps and zero-fee flash loans)."""
    balancer_pools: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Balancer V2 ComposableStablePools the peg strategy trades on (mainnet; the devnet brings its own)."""
    peg_presets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Peg presets (strategies/peg/pegs.py) the peg strategy watches, besides the [[peg]] tables."""
    peg_backruns: bool = True
    """Watch the mempool for swaps through the Uniswap routers and the Balancer Vault that move a pegged
    pool, and backrun them in the same block (bundle mode only)."""
    peg: list[dict[str, Any]] = Field(default_factory=list)
    """`[[peg]]` tables of the TOML config file: one per peg (token_a, token_b, target; see README)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = InitSettingsSource(settings_cls, init_kwargs=_toml_data.get() or {})
        return (init_settings, env_settings, dotenv_settings, toml)

    # ---- validators (messages never include the value when it may be secret) ----------------------

    @field_validator("rpc_http_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        return _check_url(v, ("http", "https"))

    @field_validator("rpc_ws_url")
    @classmethod
    def _ws_url(cls, v: str | None) -> str | None:
        return None if v is None else _check_url(v, ("ws", "wss"))

    @field_validator("private_key", "flashbots_signer_key", mode="before")
    @classmethod
    def _key(cls, v: Any) -> Any:
        if isinstance(v, SecretStr):
            v = v.get_secret_value()
        if not isinstance(v, str):
            raise ValueError("must be a string of 64 hex digits")  # noqa: TRY004 - pydantic wants ValueError
        return SecretStr(_check_key(v))

    @field_validator("flashbots_signer_key")
    @classmethod
    def _distinct_keys(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        funds = info.data.get("private_key")
        if v is not None and funds is not None and v.get_secret_value() == funds.get_secret_value():
            raise ValueError("must differ from KEEPER_PRIVATE_KEY (the relay identity must hold no funds)")
        return v

    @field_validator("keystore")
    @classmethod
    def _keystore(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is None:
            return None
        if info.data.get("private_key") is not None:
            raise ValueError("set either KEEPER_PRIVATE_KEY or KEEPER_KEYSTORE, not both")
        if not v.is_file():
            raise ValueError(f"file not found: {v}")
        return v

    @field_validator("keystore_password_file")
    @classmethod
    def _password_file(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is None:
            if info.data.get("keystore") is not None:
                raise ValueError("required when KEEPER_KEYSTORE is set")
            return None
        if not v.is_file():
            raise ValueError(f"file not found: {v}")
        return v

    @field_validator("operator_keys", mode="before")
    @classmethod
    def _operator_keys(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, SecretStr):
            v = v.get_secret_value()
        items = _split_csv(v)
        if not isinstance(items, list):
            raise ValueError("must be a comma-separated list of private keys")  # noqa: TRY004
        funds, identity = info.data.get("private_key"), info.data.get("flashbots_signer_key")
        seen: set[str] = set()
        out: list[SecretStr] = []
        for i, item in enumerate(items, 1):
            raw = item.get_secret_value() if isinstance(item, SecretStr) else item
            if not isinstance(raw, str):
                raise ValueError(f"item {i}: must be a string of 64 hex digits")  # noqa: TRY004
            try:
                key = _check_key(raw)
            except ValueError as exc:
                raise ValueError(f"item {i}: {exc}") from None
            if funds is not None and key == funds.get_secret_value():
                raise ValueError(
                    f"item {i}: is the funds key (KEEPER_PRIVATE_KEY) itself; list only extra keys"
                )
            if identity is not None and key == identity.get_secret_value():
                raise ValueError(
                    f"item {i}: is the relay identity (KEEPER_FLASHBOTS_SIGNER_KEY), which must hold no funds"
                )
            if key in seen:
                raise ValueError(f"item {i}: listed twice")
            seen.add(key)
            out.append(SecretStr(key))
        return out

    @field_validator(
        "executor_address", "weth_address", "flash_pool", "router_v3", "router_v2", "balancer_vault"
    )
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        return None if v is None else check_address(v)

    @field_validator("v3_pools", "v2_pairs", "connectors", "balancer_pools", mode="before")
    @classmethod
    def _addresses_split(cls, v: Any) -> Any:
        return _split_csv(v)

    @field_validator("v3_pools", "v2_pairs", "connectors", "balancer_pools")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        out = []
        for i, item in enumerate(v, 1):
            try:
                out.append(check_address(item))
            except ValueError as exc:
                raise ValueError(f"item {i}: {exc}") from None
        if len({a.lower() for a in out}) != len(out):
            raise ValueError("an address is listed twice")
        return out

    @field_validator("devnet_file")
    @classmethod
    def _devnet_file(cls, v: Path, info: ValidationInfo) -> Path:
        if info.data.get("devnet") and not v.is_file():
            raise ValueError(f"file not found: {v} (start the devnet with `keeper devnet up`)")
        return v

    @field_validator("relay_urls", mode="before")
    @classmethod
    def _relays_split(cls, v: Any) -> Any:
        return _split_csv(v)

    @field_validator("mevshare_builders", mode="before")
    @classmethod
    def _mevshare_builders_split(cls, v: Any) -> Any:
        return _split_csv(v)

    @field_validator("mevshare_url")
    @classmethod
    def _mevshare_url(cls, v: str | None) -> str | None:
        return None if v is None else _check_url(v, ("http", "https"))

    @field_validator("relay_urls")
    @classmethod
    def _relays(cls, v: list[str]) -> list[str]:
        """Items are `url` or `name=url`; identities (the name, else the redacted URL) must be unique.
        Kept as written (stripped); `relay_endpoints` gives (name, url) pairs."""
        from keeper.executors.builder_identity import parse_builders

        items = [item.strip() for item in v]
        parse_builders(items)  # ValueError "item <i> (...): ..." naming no secret
        return items

    @property
    def relay_endpoints(self) -> tuple[BuilderEndpoint, ...]:
        """The builders of `relay_urls`: `.name` is the identity (given name or redacted URL), `.url` the
        URL to POST to (may carry an API key: never log it)."""
        from keeper.executors.builder_identity import parse_builders

        return parse_builders(self.relay_urls)

    @field_validator("strategies", mode="before")
    @classmethod
    def _strategies_split(cls, v: Any) -> Any:
        return _split_csv(v)

    @field_validator("peg_presets", mode="before")
    @classmethod
    def _peg_presets_split(cls, v: Any) -> Any:
        return _split_csv(v)

    @field_validator("markets", mode="before")
    @classmethod
    def _markets_split(cls, v: Any) -> Any:
        return _split_csv(v)

    @field_validator("markets")
    @classmethod
    def _markets(cls, v: list[str]) -> list[str]:
        from strategies.liquidations.markets import MAINNET_PRESETS

        unknown = [name for name in v if name not in MAINNET_PRESETS]
        if unknown:
            raise ValueError(
                f"unknown market {', '.join(unknown)} (known: {', '.join(sorted(MAINNET_PRESETS))})"
            )
        return v

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, v: list[str]) -> list[str]:
        from keeper.strategies_registry import available

        if not v:
            raise ValueError("at least one strategy is needed")
        known = available()
        unknown = [name for name in v if name not in known]
        if unknown:
            raise ValueError(f"unknown strategy {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        if len(set(v)) != len(v):
            raise ValueError("a strategy is listed twice")
        return v

    @field_validator("min_profit_wei", "subsidy_budget_wei", mode="before")
    @classmethod
    def _wei(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | str) or (isinstance(v, str) and not _INT.match(v)):
            raise ValueError("must be a whole number of wei (no decimals, exponents or units)")
        return int(v)

    @field_validator("min_profit_wei")
    @classmethod
    def _loss(cls, v: int, info: ValidationInfo) -> int:
        if v < 0 and not info.data.get("allow_loss", False):
            raise ValueError("negative (accepts a loss per opportunity): also set KEEPER_ALLOW_LOSS=true")
        return v

    @field_validator("log_format", "submit", "mode", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip().upper()
            return "WARNING" if v == "WARN" else v
        return v

    # ---- derived values -----------------------------------------------------------------------------

    @property
    def ws_url_is_derived(self) -> bool:
        return self.rpc_ws_url is None

    @property
    def ws_url(self) -> str:
        """The websocket URL: rpc_ws_url, or derived from rpc_http_url (http->ws, https->wss)."""
        if self.rpc_ws_url is not None:
            return self.rpc_ws_url
        scheme, rest = self.rpc_http_url.split(":", 1)
        return ("wss" if scheme.lower() == "https" else "ws") + ":" + rest

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never reach a log line: keys, keystore password, URLs with paths/queries."""
        out: list[str] = []
        for key in (self.private_key, self.flashbots_signer_key, *self.operator_keys):
            if key is not None:
                hexkey = key.get_secret_value()
                out += [hexkey, hexkey[2:]]
        if self.keystore_password_file is not None:
            try:
                password = _read_password(self.keystore_password_file)
            except OSError:
                password = ""
            if len(password) >= 4:  # a 1-3 character "secret" would scrub half of every line
                out.append(password)
        for url in (self.rpc_http_url, self.rpc_ws_url, *(e.url for e in self.relay_endpoints)):
            if url and redact_url(url) != url.rstrip("/"):
                parts = urlsplit(url)
                out.append(url)
                tail = parts.path + ("?" + parts.query if parts.query else "")
                if len(tail) >= 8:
                    out.append(tail)
        return tuple(sorted(set(out), key=len, reverse=True))

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name in ("rpc_http_url", "rpc_ws_url") and isinstance(value, str):
                yield name, redact_url(value)
            elif name == "relay_urls":
                yield name, [str(e) for e in self.relay_endpoints]
            else:
                yield name, value


# ---- loading ----------------------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError([f"--config: file not found: {path}"]) from None
    except OSError as exc:
        raise ConfigError([f"--config: cannot read {path}: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"--config: {path} is not valid TOML: {exc}"]) from None
    known = set(Settings.model_fields)
    unknown = sorted(k for k in data if k not in known)
    if unknown:
        raise ConfigError(
            [f"{path}: unknown setting {k!r}; known settings: {', '.join(sorted(known))}" for k in unknown]
        )
    return data


def _problem_text(err: ErrorDetails) -> str:
    kind = err.get("type", "")
    if kind == "missing":
        return "missing (required)"
    msg = str(err.get("msg", "invalid"))
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be a whole number"
    if kind in ("float_parsing", "float_type"):
        return "must be a number"
    return "must be" + msg.removeprefix("Input should be") if msg.startswith("Input should be") else msg


def _format_problems(
    exc: ValidationError, toml_path: Path | None, toml: dict[str, Any], dotenv: dict[str, Any]
) -> list[str]:
    problems: list[str] = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = err.get("loc", ())
        field = str(loc[0]) if loc else ""
        var = env_name(field) if field else "configuration"
        example = EXAMPLES.get(field, "")
        from_env = var in os.environ or var in dotenv or var.lower() in {k.lower() for k in dotenv}
        if field in toml and not from_env and toml_path is not None:
            where = f"{field} (in {toml_path})"
            hint = f"e.g. {field} = {example!r}" if example else ""
        else:
            where = var
            hint = f"e.g. {var}={example}" if example else ""
        line = f"{where}: {_problem_text(err)}"
        problems.append(f"{line}; {hint}" if hint else line)
    return problems


def load_settings(config_file: Path | None = None, *, env_file: Path | None = Path(".env")) -> Settings:
    """Loads and validates settings; raises ConfigError with one line per problem (never a secret)."""
    toml = _read_toml(config_file) if config_file is not None else {}
    dotenv: dict[str, Any] = {}
    if env_file is not None and env_file.is_file():
        dotenv = {k.upper(): v for k, v in dotenv_values(env_file).items()}
    token = _toml_data.set(toml)
    try:
        return Settings(_env_file=env_file)
    except ValidationError as exc:
        raise ConfigError(_format_problems(exc, config_file, toml, dotenv)) from None
    finally:
        _toml_data.reset(token)


# ---- accounts -----------------------------------------------------------------------------------------


def _read_password(path: Path) -> str:
    """The keystore password: file content without its trailing newline (spaces inside are kept)."""
    return path.read_text(encoding="utf-8").rstrip("\r\n")


def funds_account(settings: Settings) -> LocalAccount | None:
    """The funds account (eth_account LocalAccount) from the private key or keystore, or None.

    Keystore decryption (scrypt) takes around a second of CPU: call it before the event loop starts or
    through `asyncio.to_thread`. Never log the returned object's key.
    """
    from eth_account import Account

    if settings.private_key is not None:
        account: LocalAccount = Account.from_key(settings.private_key.get_secret_value())
        return account
    if settings.keystore is None or settings.keystore_password_file is None:
        return None
    try:
        keyfile = json.loads(settings.keystore.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError(
            [f"{env_name('keystore')}: {settings.keystore} is not a readable JSON keystore file"]
        ) from None
    try:
        password = _read_password(settings.keystore_password_file)
    except OSError as exc:
        raise ConfigError([f"{env_name('keystore_password_file')}: cannot read: {exc.strerror}"]) from None
    try:
        key = Account.decrypt(keyfile, password)
    except Exception:
        raise ConfigError(
            [
                f"{env_name('keystore')}: cannot decrypt {settings.keystore} "
                f"(wrong password in {env_name('keystore_password_file')}, or not a v3 keystore)"
            ]
        ) from None
    decrypted: LocalAccount = Account.from_key(key)
    return decrypted


def flashbots_account(settings: Settings) -> LocalAccount | None:
    """The relay identity account (LocalAccount) or None. Holds no funds; still never logged."""
    from eth_account import Account

    if settings.flashbots_signer_key is None:
        return None
    identity: LocalAccount = Account.from_key(settings.flashbots_signer_key.get_secret_value())
    return identity
