"""Pegs as data: two tokens and what one is worth in the other, from the config file, the devnet or a preset.

A `Peg(name, token_a, token_b, target)` says what one base unit of token A is worth in base units of
token B. The target is either fixed (`FixedTarget`: USDC/USDT/DAI, a wrapped asset and its underlying;
"1:1" in the config, derived from the decimals: 1 base unit of USDC (6) = 10**12 base units of DAI (18))
or read on chain every block (`RateTarget`: an exchange rate such as wstETH's `stEthPerToken()` or a
Balancer rate provider's `getRate()`, one raw `eth_call` that the strategy puts in its per-block batch:
`target_call` builds it, `decode_target` turns its reply into a target or raises `PegTargetError`).

Config file: one `[[peg]]` table per peg (entries are numbered from 1 in error messages):

    [[peg]]
    name = "wstETH/WETH"                  # optional (default "A/B"); unique
    token_a = "wstETH"                    # a symbol of the known tokens, or a 0x address (among them, or
                                          # any token with decimals_a = N; likewise token_b / decimals_b)
    token_b = "WETH"                      # profits are counted in token B (the flash-borrowed token)
    target = { rate = "0x7f39C581F595B53c5cb19bD0b3f8dA6c935E2Ca0", method = "stEthPerToken()" }
    # (rate tables: scale = "1e18" by default; invert = true when the rate is A per B)
    min_profit_wei = 1000000000000000     # optional: this peg's floor (default: the keeper's)
    venues = ["uniswap_v3", "balancer_stable"]   # optional: only these venues (names) for this peg

    [[peg]]
    token_a = "USDC"
    token_b = "USDT"
    target = "1:1"

A rate target's reply r (a uint256) means: 1 whole token A = r / scale whole tokens B (`invert = true`:
1 whole token B = r / scale whole tokens A); the decimals of both tokens convert it to base units.

Bad input raises `PegConfigError` (a `keeper.errors.ConfigError`) with one line per problem, each naming
the entry (`[[peg]] #2 'name'`) and what is wrong: unknown keys or tokens, a bad target, a venue filter
naming a venue that is not configured or does not trade both tokens (`check_venues`), a rate source that
reverts or answers garbage (`TargetReader.check`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import is_hex_address, to_checksum_address

from keeper.errors import ConfigError, KeeperError
from strategies.venues.base import BatchRpc, Venue, eth_call, selector

__all__ = [
    "DEVNET_LST",
    "MAINNET_PEGS",
    "MAINNET_TOKENS",
    "FixedTarget",
    "Peg",
    "PegConfigError",
    "PegPreset",
    "PegTargetError",
    "RateTarget",
    "Target",
    "TargetReader",
    "check_venues",
    "decode_target",
    "devnet_pegs",
    "load_pegs",
    "one_to_one",
    "preset_pegs",
    "target_call",
]


class PegConfigError(ConfigError):
    """A peg declaration is invalid: `problems` holds one line per problem, each naming the entry."""


class PegTargetError(KeeperError):
    """A peg's on-chain target could not be read (the call reverted, or its reply is not a rate)."""


# ---------------------------------------------------------------------------------------------- targets


@dataclass(frozen=True, slots=True)
class FixedTarget:
    """1 base unit of token A is worth num / den base units of token B, always."""

    num: int
    den: int

    def __post_init__(self) -> None:
        if self.num <= 0 or self.den <= 0:
            raise ValueError(f"a fixed target needs num > 0 and den > 0, not {self.num}/{self.den}")


@dataclass(frozen=True, slots=True)
class RateTarget:
    """Read every block: `method` (no arguments, returns one uint256 r) called on `source`.

    1 whole token A = r / scale whole tokens B (invert: 1 whole B = r / scale whole A). `decimals_shift`
    is decimals(B) - decimals(A): the factor from whole-token to base-unit ratios."""

    source: str
    method: str = "getRate()"
    scale: int = 10**18
    decimals_shift: int = 0
    invert: bool = False

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError("scale must be > 0")
        if not _SIGNATURE.fullmatch(self.method):
            raise ValueError(
                f"method must be a call without arguments such as 'getRate()', not {self.method!r}"
            )

    @property
    def calldata(self) -> str:
        return "0x" + selector(self.method).hex()

    def ratio(self, rate: int) -> tuple[int, int]:
        """(num, den) base units of B per base unit of A for a reply `rate` (> 0)."""
        num, den = (self.scale, rate) if self.invert else (rate, self.scale)
        if self.decimals_shift >= 0:
            return num * 10**self.decimals_shift, den
        return num, den * 10**-self.decimals_shift


Target = FixedTarget | RateTarget

_SIGNATURE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*\(\)")


def one_to_one(decimals_a: int, decimals_b: int) -> FixedTarget:
    """1 whole A = 1 whole B, in base units: USDC (6) -> DAI (18) is 10**12 / 1."""
    shift = decimals_b - decimals_a
    return FixedTarget(10**shift, 1) if shift >= 0 else FixedTarget(1, 10**-shift)


def target_call(target: RateTarget, block: int | str = "latest") -> tuple[str, Any]:
    """The JSON-RPC call (method, params) reading `target` at `block`: a raw eth_call for a batch."""
    tag = hex(block) if isinstance(block, int) else block
    return eth_call(target.source, target.calldata, tag)


def decode_target(target: RateTarget, raw: Any, *, what: str = "") -> tuple[int, int]:
    """The (num, den) target from the reply of `target_call` (a hex string, or the error object a batch
    with raise_errors=False returns). Raises PegTargetError naming `what` (the peg) and the source when
    the call reverted, returned nothing (no contract there?), garbage, or a zero rate."""
    where = f"{what}: " if what else ""
    call = f"rate source {target.source} {target.method}"
    if isinstance(raw, BaseException):
        raise PegTargetError(f"{where}{call} failed: {raw}")
    if not isinstance(raw, str) or not raw.startswith("0x"):
        raise PegTargetError(f"{where}{call} returned {str(raw)[:80]!r}, not a uint256")
    body = raw[2:]
    if not body:
        raise PegTargetError(f"{where}{call} returned no data (is there a contract at {target.source}?)")
    if len(body) < 64:
        raise PegTargetError(f"{where}{call} returned {len(body) // 2} bytes, not a uint256")
    try:
        rate = int(body[:64], 16)
    except ValueError:
        raise PegTargetError(f"{where}{call} returned {raw[:80]!r}, not a uint256") from None
    if rate == 0:
        raise PegTargetError(f"{where}{call} returned 0")
    return target.ratio(rate)


# ------------------------------------------------------------------------------------------------ pegs


@dataclass(frozen=True, slots=True)
class Peg:
    """Token A is worth `target` in token B. Profits are counted in token B unless the sizing is asked
    to borrow token A. Addresses are checksummed."""

    name: str
    token_a: str
    token_b: str
    target: Target
    symbol_a: str = ""
    symbol_b: str = ""
    decimals_a: int = 18
    decimals_b: int = 18
    min_profit_wei: int | None = None
    """This peg's floor for net profit in wei (None: the keeper's KEEPER_MIN_PROFIT_WEI)."""
    venues: tuple[str, ...] | None = None
    """Names of the venues this peg may trade on (None: every venue holding both tokens)."""
    origin: str = field(default="", compare=False)
    """Where it was declared, for messages: "[[peg]] #2 'name'", "devnet", "preset wsteth-weth"."""

    @property
    def label(self) -> str:
        return self.origin or f"peg {self.name!r}"

    def fixed(self) -> tuple[int, int] | None:
        """The target as (num, den) if it does not need a read, else None."""
        if isinstance(self.target, FixedTarget):
            return (self.target.num, self.target.den)
        return None

    def allows(self, venue_name: str) -> bool:
        return self.venues is None or venue_name in self.venues


TokenBook = Mapping[str, Any]
"""Symbol -> a token: an object with `address` and `decimals` (keeper.devnet.model.TokenInfo), a mapping
with those keys (the devnet JSON), or an (address, decimals) tuple."""


def _token_fields(info: Any) -> tuple[str, int] | None:
    if isinstance(info, tuple) and len(info) == 2:
        return str(info[0]), int(info[1])
    if isinstance(info, Mapping):
        if "address" in info and "decimals" in info:
            return str(info["address"]), int(info["decimals"])
        return None
    address, decimals = getattr(info, "address", None), getattr(info, "decimals", None)
    if address is None or decimals is None:
        return None
    return str(address), int(decimals)


def _resolve(tokens: TokenBook, ref: str) -> tuple[str, str, int] | None:
    """(checksummed address, symbol, decimals) of a symbol or an address among `tokens`; None if unknown."""
    book: dict[str, tuple[str, int]] = {}
    for symbol, info in tokens.items():
        fields = _token_fields(info)
        if fields is not None:
            book[str(symbol)] = fields
    if ref in book:
        address, decimals = book[ref]
        return str(to_checksum_address(address)), ref, decimals
    by_lower = {s.lower(): s for s in book}
    if ref.lower() in by_lower:
        symbol = by_lower[ref.lower()]
        address, decimals = book[symbol]
        return str(to_checksum_address(address)), symbol, decimals
    if is_hex_address(ref):
        for symbol, (address, decimals) in book.items():
            if address.lower() == ref.lower():
                return str(to_checksum_address(address)), symbol, decimals
    return None


_KEYS = {"name", "token_a", "token_b", "decimals_a", "decimals_b", "target", "min_profit_wei", "venues"}
_RATE_KEYS = {"rate", "method", "scale", "invert"}
_SCALE = re.compile(r"\s*(\d+)\s*(?:[eE]\s*(\d+))?\s*")


def _parse_scale(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str):
        m = _SCALE.fullmatch(value)
        if m is None:
            return None
        n = int(m.group(1)) * 10 ** int(m.group(2) or 0)
        return n if n > 0 else None
    return None


def load_pegs(config: Mapping[str, Any] | Sequence[Mapping[str, Any]], tokens: TokenBook) -> list[Peg]:
    """The pegs of a config file's `[[peg]]` tables (`config`: the whole TOML document, whose "peg" key
    holds them, or the list of tables itself), tokens named by symbol or address among `tokens`.

    Raises PegConfigError with one line per problem over all entries (nothing is returned partially)."""
    tables: Any = config.get("peg", []) if isinstance(config, Mapping) else config
    if isinstance(tables, Mapping) or not isinstance(tables, Sequence) or isinstance(tables, str):
        raise PegConfigError(["[[peg]]: expected an array of tables ([[peg]] ... entries)"])
    problems: list[str] = []
    pegs: list[Peg] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables, start=1):
        peg, errors = _parse_entry(index, table, tokens)
        problems.extend(errors)
        if peg is None:
            continue
        if peg.name in seen:
            problems.append(f"{peg.origin}: name already used by [[peg]] #{seen[peg.name]}")
            continue
        seen[peg.name] = index
        pegs.append(peg)
    if problems:
        raise PegConfigError(problems)
    return pegs


def _parse_entry(index: int, table: Any, tokens: TokenBook) -> tuple[Peg | None, list[str]]:
    if not isinstance(table, Mapping):
        return None, [f"[[peg]] #{index}: expected a table, got {type(table).__name__}"]
    raw_name = table.get("name")
    name = raw_name if isinstance(raw_name, str) and raw_name.strip() else None
    where = f"[[peg]] #{index}" + (f" {name!r}" if name else "")
    problems: list[str] = []
    if raw_name is not None and name is None:
        problems.append(f"{where}: name must be a non-empty string")
    unknown = sorted(str(k) for k in table if k not in _KEYS)
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    known_symbols = ", ".join(sorted(str(s) for s in tokens)) or "none"
    resolved: list[tuple[str, str, int] | None] = []
    for key in ("token_a", "token_b"):
        ref = table.get(key)
        if ref is None:
            problems.append(f"{where}: {key} is missing (a token symbol or address)")
            resolved.append(None)
        elif not isinstance(ref, str):
            problems.append(f"{where}: {key} must be a string, not {ref!r}")
            resolved.append(None)
        else:
            token = _resolve(tokens, ref.strip())
            decimals = table.get(f"decimals_{key[-1]}")
            if token is None and is_hex_address(ref.strip()) and decimals is not None:
                if isinstance(decimals, int) and not isinstance(decimals, bool) and 0 <= decimals <= 36:
                    token = (str(to_checksum_address(ref.strip())), ref.strip()[:10], decimals)
                else:
                    problems.append(f"{where}: decimals_{key[-1]} must be an integer 0..36, not {decimals!r}")
                    resolved.append(None)
                    continue
            if token is None:
                hint = (
                    f"; give decimals_{key[-1]} to use a token by its address" if is_hex_address(ref) else ""
                )
                problems.append(f"{where}: {key} {ref!r} is not a known token (known: {known_symbols}){hint}")
            resolved.append(token)
    a, b = resolved
    if a is not None and b is not None and a[0] == b[0]:
        problems.append(f"{where}: token_a and token_b are the same token ({a[1]})")
    if name is None and a is not None and b is not None:
        name = f"{a[1]}/{b[1]}"
        where = f"[[peg]] #{index} {name!r}"
    target: Target | None = None
    if "target" not in table:
        problems.append(f'{where}: target is missing ("1:1" or {{rate = "0x...", method = "getRate()"}})')
    elif a is not None and b is not None:
        target, error = _parse_target(table["target"], a[2], b[2])
        if error:
            problems.append(f"{where}: target {error}")
    min_profit: int | None = None
    if "min_profit_wei" in table:
        value = table["min_profit_wei"]
        min_profit = _non_negative_int(value)
        if min_profit is None:
            problems.append(f"{where}: min_profit_wei must be an integer >= 0, not {value!r}")
    venues: tuple[str, ...] | None = None
    if "venues" in table:
        value = table["venues"]
        if (
            not isinstance(value, Sequence)
            or isinstance(value, str)
            or not value
            or not all(isinstance(v, str) and v for v in value)
        ):
            problems.append(f'{where}: venues must be a non-empty list of venue names, e.g. ["uniswap_v3"]')
        else:
            venues = tuple(value)
    if problems or a is None or b is None or target is None or name is None:
        return None, problems
    return (
        Peg(
            name=name,
            token_a=a[0],
            token_b=b[0],
            target=target,
            symbol_a=a[1],
            symbol_b=b[1],
            decimals_a=a[2],
            decimals_b=b[2],
            min_profit_wei=min_profit,
            venues=venues,
            origin=where,
        ),
        [],
    )


def _non_negative_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _parse_target(value: Any, decimals_a: int, decimals_b: int) -> tuple[Target | None, str]:
    """(target, "") or (None, what is wrong)."""
    if isinstance(value, str):
        if value.replace(" ", "") == "1:1":
            return one_to_one(decimals_a, decimals_b), ""
        return None, f'{value!r} is not "1:1" or a rate table {{rate = "0x...", method = "getRate()"}}'
    if not isinstance(value, Mapping):
        return None, f'must be "1:1" or a rate table {{rate = "0x...", method = "getRate()"}}, not {value!r}'
    unknown = sorted(str(k) for k in value if k not in _RATE_KEYS)
    if unknown:
        return None, f"has unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_RATE_KEYS))})"
    source = value.get("rate")
    if not isinstance(source, str) or not is_hex_address(source):
        return None, f"rate must be the 0x address of the rate source, not {source!r}"
    method = value.get("method", "getRate()")
    if not isinstance(method, str) or not _SIGNATURE.fullmatch(method.strip()):
        return None, f"method must be a call without arguments such as 'getRate()', not {method!r}"
    scale = _parse_scale(value.get("scale", 10**18))
    if scale is None:
        return None, f'scale must be a positive integer such as "1e18", not {value.get("scale")!r}'
    invert = value.get("invert", False)
    if not isinstance(invert, bool):
        return None, f"invert must be true or false, not {invert!r}"
    return (
        RateTarget(
            source=str(to_checksum_address(source)),
            method=method.strip(),
            scale=scale,
            decimals_shift=decimals_b - decimals_a,
            invert=invert,
        ),
        "",
    )


def check_venues(pegs: Iterable[Peg], venues: Sequence[Venue]) -> list[str]:
    """Checks the pegs against the venues loaded: raises PegConfigError when a peg's `venues` filter names
    a venue that is not configured or does not trade both of its tokens. Returns warnings (one line per
    peg with fewer than two pools among its venues: nothing to arbitrage there)."""
    by_name = {v.name: v for v in venues}
    problems: list[str] = []
    warnings: list[str] = []
    for peg in pegs:
        pair = f"{peg.symbol_a or peg.token_a}/{peg.symbol_b or peg.token_b}"
        for name in peg.venues or ():
            venue = by_name.get(name)
            if venue is None:
                known = ", ".join(sorted(by_name)) or "none"
                problems.append(f"{peg.label}: venue {name!r} is not configured (configured: {known})")
            elif not venue.pools(peg.token_a, peg.token_b):
                problems.append(f"{peg.label}: venue {name!r} has no pool holding both tokens of {pair}")
        pools = sum(len(v.pools(peg.token_a, peg.token_b)) for v in venues if peg.allows(v.name))
        if pools < 2:
            warnings.append(f"{peg.label}: {pools} pool(s) trade {pair}: no spread to close")
    if problems:
        raise PegConfigError(problems)
    return warnings


# ---------------------------------------------------------------------------------------- reading targets


class TargetReader:
    """Reads the targets of a set of pegs: fixed ones directly, rate ones with one eth_call each (calls to
    the same source and method are made once).

    `calls(block)` / `decode(replies)` let the strategy put the reads in its own batch; `read` makes the
    batch itself; `check` reads once at start-up and raises PegConfigError for every target that fails."""

    def __init__(self, pegs: Iterable[Peg]) -> None:
        self.pegs = list(pegs)
        self._sources: list[tuple[str, str]] = []
        index: dict[tuple[str, str], int] = {}
        for peg in self.pegs:
            if isinstance(peg.target, RateTarget):
                key = (peg.target.source.lower(), peg.target.method)
                if key not in index:
                    index[key] = len(self._sources)
                    self._sources.append((peg.target.source, peg.target.method))

    def calls(self, block: int | str) -> list[tuple[str, Any]]:
        """One eth_call per distinct rate source (possibly none)."""
        tag = hex(block) if isinstance(block, int) else block
        return [eth_call(source, "0x" + selector(method).hex(), tag) for source, method in self._sources]

    def decode(self, replies: Sequence[Any]) -> dict[str, tuple[int, int] | str]:
        """Peg name -> (num, den), or the reason its target could not be read (one line naming the peg).
        `replies`: the results of `calls`, in order (errors as exception objects)."""
        if len(replies) != len(self._sources):
            raise ValueError(f"expected {len(self._sources)} replies, got {len(replies)}")
        by_source = {
            (source.lower(), method): reply
            for (source, method), reply in zip(self._sources, replies, strict=True)
        }
        out: dict[str, tuple[int, int] | str] = {}
        for peg in self.pegs:
            target = peg.target
            if isinstance(target, FixedTarget):
                out[peg.name] = (target.num, target.den)
                continue
            try:
                out[peg.name] = decode_target(
                    target, by_source[(target.source.lower(), target.method)], what=peg.label
                )
            except PegTargetError as exc:
                out[peg.name] = str(exc)
        return out

    async def read(self, rpc: BatchRpc, block: int | str) -> dict[str, tuple[int, int] | str]:
        """Every peg's target at `block` (one batch; none when every target is fixed)."""
        calls = self.calls(block)
        replies = await rpc.batch(calls, raise_errors=False) if calls else []
        return self.decode(replies)

    async def check(self, rpc: BatchRpc, block: int | str = "latest") -> dict[str, tuple[int, int]]:
        """Every target read once; PegConfigError with one line per peg whose target cannot be read."""
        results = await self.read(rpc, block)
        problems = [v for v in results.values() if isinstance(v, str)]
        if problems:
            raise PegConfigError(problems)
        return {k: v for k, v in results.items() if not isinstance(v, str)}


# ------------------------------------------------------------------------------------ devnet and presets

DEVNET_LST = "wstETH"
"""The devnet's liquid staking token (contracts/src/LiquidStakingToken.sol: getRate() = ETH per token)."""


def devnet_pegs(deployment: Any) -> list[Peg]:
    """The devnet's pegs: wstETH/WETH at the LST contract's getRate(), USDC/USDT, DAI/USDC and USDT/DAI
    at 1:1. `deployment`: a keeper.devnet.deploy.DevnetDeployment, or its JSON record (a mapping with a
    "tokens" entry: symbol -> {address, decimals, ...})."""
    tokens = deployment["tokens"] if isinstance(deployment, Mapping) else deployment.tokens
    lst = _resolve(tokens, DEVNET_LST)
    if lst is None:
        raise PegConfigError([f"devnet: the deployment has no {DEVNET_LST} token"])
    table: list[dict[str, Any]] = [
        {
            "name": "wstETH/WETH",
            "token_a": DEVNET_LST,
            "token_b": "WETH",
            "target": {"rate": lst[0], "method": "getRate()", "scale": "1e18"},
        },
        {"name": "USDC/USDT", "token_a": "USDC", "token_b": "USDT", "target": "1:1"},
        {"name": "DAI/USDC", "token_a": "DAI", "token_b": "USDC", "target": "1:1"},
        {"name": "USDT/DAI", "token_a": "USDT", "token_b": "DAI", "target": "1:1"},
    ]
    try:
        pegs = load_pegs(table, tokens)
    except PegConfigError as exc:
        raise PegConfigError([p.replace("[[peg]]", "devnet peg", 1) for p in exc.problems]) from None
    return [_with_origin(p, f"devnet peg {p.name!r}") for p in pegs]


def _with_origin(peg: Peg, origin: str) -> Peg:
    return Peg(
        peg.name,
        peg.token_a,
        peg.token_b,
        peg.target,
        peg.symbol_a,
        peg.symbol_b,
        peg.decimals_a,
        peg.decimals_b,
        peg.min_profit_wei,
        peg.venues,
        origin,
    )


MAINNET_TOKENS: Mapping[str, tuple[str, int]] = {
    "wstETH": ("0x7f39C581F595B53c5cb19bD0b3f8dA6c935E2Ca0", 18),
    "WETH": ("0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", 18),
    "USDC": ("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6),
    "USDT": ("0xdAC17F958D2ee523a2206206994597C13D831ec7", 6),
    "DAI": ("0x6B175474E89094C44Da98b954EedeAC495271d0F", 18),
}
"""Ethereum mainnet tokens of the presets: symbol -> (address, decimals)."""


@dataclass(frozen=True, slots=True)
class PegPreset:
    """Pegs and the pools that trade them, ready to use on Ethereum mainnet."""

    name: str
    pegs: tuple[Peg, ...]
    v3_pools: tuple[str, ...] = ()
    v2_pairs: tuple[str, ...] = ()
    balancer_pools: tuple[str, ...] = ()
    """Balancer V2 ComposableStablePools (Vault 0xBA12222222228d8Ba445958a75a0704d566BF2C8)."""
    notes: str = ""


def _preset(name: str, entries: list[dict[str, Any]], notes: str, **pools: tuple[str, ...]) -> PegPreset:
    pegs = tuple(_with_origin(p, f"preset {name} peg {p.name!r}") for p in load_pegs(entries, MAINNET_TOKENS))
    return PegPreset(name, pegs, notes=notes, **pools)


MAINNET_PEGS: Mapping[str, PegPreset] = {
    "wsteth-weth": _preset(
        "wsteth-weth",
        [
            {
                "name": "wstETH/WETH",
                "token_a": "wstETH",
                "token_b": "WETH",
                "target": {"rate": MAINNET_TOKENS["wstETH"][0], "method": "stEthPerToken()", "scale": "1e18"},
            }
        ],
        "Target: wstETH.stEthPerToken() (stETH per wstETH), taken as WETH per wstETH (stETH = ETH). "
        "Pools: Uniswap V3 wstETH/WETH 0.01% and the Balancer wstETH/WETH ComposableStablePool "
        "(cross-checked against public sources, e.g. Lido's liquidity docs; not read on chain here). "
        "No Uniswap V2 pair: the V2 wstETH/WETH pair is too shallow to matter.",
        v3_pools=("0x109830a1AAaD605BbF02a9dFA7B0B92EC2FB7dAa",),
        balancer_pools=("0x93d199263632a4EF4Bb438F1feB99e57b4b5f0BD",),
    ),
    "usd-stables": _preset(
        "usd-stables",
        [
            {"name": "USDC/USDT", "token_a": "USDC", "token_b": "USDT", "target": "1:1"},
            {"name": "DAI/USDC", "token_a": "DAI", "token_b": "USDC", "target": "1:1"},
            {"name": "USDT/DAI", "token_a": "USDT", "token_b": "DAI", "target": "1:1"},
        ],
        "The USDC/USDT/DAI triangle at 1:1. Pools: Uniswap V3 USDC/USDT, DAI/USDC and DAI/USDT at 0.01%, "
        "the Uniswap V2 pairs of the same tokens, and the Balancer USDC/DAI/USDT ComposableStablePool "
        "(pool id 0x79c58f70...04e7) (cross-checked against several public sources; not read on chain here).",
        v3_pools=(
            "0x3416cF6C708Da44DB2624D63ea0AAef7113527C6",
            "0x5777d92f208679DB4b9778590Fa3CAB3aC9e2168",
            "0x48DA0965ab2d2cbf1C17C09cFB5Cbe67Ad5B1406",
        ),
        v2_pairs=(
            "0x3041CbD36888bECc7bbCBc0045E3B1f144466f5f",
            "0xAE461cA67B15dc8dc81CE7615e0320dA1A9aB8D5",
            "0xB20bd5D04BE54f870D5C0d3cA85d82b34B836405",
        ),
        balancer_pools=("0x79c58f70905F734641735BC61e45c19dD9Ad60bC",),
    ),
}
"""Mainnet presets by name (KEEPER_PEG_PRESETS)."""


def preset_pegs(names: Iterable[str]) -> list[PegPreset]:
    """The presets named (in order, each once); PegConfigError for an unknown name."""
    out: list[PegPreset] = []
    problems: list[str] = []
    for name in names:
        preset = MAINNET_PEGS.get(name.strip().lower())
        if preset is None:
            problems.append(f"peg preset {name!r} is unknown (known: {', '.join(sorted(MAINNET_PEGS))})")
        elif preset not in out:
            out.append(preset)
    if problems:
        raise PegConfigError(problems)
    return out
