"""Who a block builder is: its identity (a name the user gives it, or its redacted URL).

`KEEPER_RELAY_URLS` items are `url` or `name=url`:

    titan=https://rpc.titanbuilder.xyz,bnet=https://rpc.buildernet.org,https://relay.flashbots.net

- With a name, the identity is the name: letters, digits, `.`, `_`, `-` (at most 64 characters, starting
  with a letter or digit), e.g. `titan`, `titan-eu`, `rpc.beaverbuild.org`.
- Without one, the identity is the URL through `keeper.chain.redact.redact_url`: scheme, host and port
  (`https://rpc.titanbuilder.xyz`, `http://127.0.0.1:8546`), with `/…` standing for a path or query
  (which often carries an API key, so it never appears). Two URLs that differ only in their path or query
  therefore have the same identity: name them.

Identities must be unique within a list (two URLs on one host with different ports or paths are different
builders). The identity is what the ledger stores per submission, what metrics are labelled with and what
`BundleClient.name` / `BuilderResult.name` hold; it never contains a secret.

Stdlib only (plus `redact_url`): imported by the settings and the ledger as well as the relay client.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from keeper.chain.redact import redact_url

_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX64: Final = re.compile(r"(?i)^(0x)?[0-9a-f]{64}$")
_SCHEMES: Final = ("http", "https")


@dataclass(frozen=True, slots=True)
class BuilderEndpoint:
    """One builder: its `name` (identity, safe to show and store) and its `url` (may hold an API key:
    never shown; not part of repr)."""

    name: str
    url: str = field(repr=False)

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    @property
    def named(self) -> bool:
        """True when the user gave the name (`name=url`), False when it is the redacted URL."""
        return "://" not in self.name

    def __str__(self) -> str:
        return self.name if not self.named else f"{self.name}={self.display_url}"


def check_name(name: str) -> str:
    """A user-given builder name; ValueError (never echoing the value) if it is not one."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            "a builder name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if _HEX64.match(name):
        raise ValueError("a builder name must not look like a private key")
    return name


def _check_url(url: str) -> str:
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("not a valid URL (bad port or brackets)") from None
    if parts.scheme.lower() not in _SCHEMES:
        got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise ValueError(f"must start with http:// or https://, got {got}")
    if not parts.hostname:
        raise ValueError("URL has no host")
    return url


def url_identity(url: str) -> str:
    """The identity of an unnamed builder URL: the URL redacted (scheme://host[:port], `/…` for a path)."""
    return redact_url(_check_url(url))


def _is_named(item: str) -> bool:
    eq, scheme = item.find("="), item.find("://")
    return eq > 0 and (scheme == -1 or eq < scheme)


def parse_builder(item: str | BuilderEndpoint) -> BuilderEndpoint:
    """`url` or `name=url` -> BuilderEndpoint. ValueError (never echoing a URL) when malformed."""
    if isinstance(item, BuilderEndpoint):
        return BuilderEndpoint(check_name(item.name) if item.named else url_identity(item.url), item.url)
    if not isinstance(item, str):
        raise ValueError("a builder is a URL or name=url")  # noqa: TRY004 - reported as a config error
    text = item.strip()
    if not text:
        raise ValueError("empty builder item")
    if _is_named(text):
        name, url = text.split("=", 1)
        name = name.strip()
        try:
            check_name(name)
        except ValueError as exc:
            raise ValueError(f"in name=url: {exc}") from None
        return BuilderEndpoint(name, _check_url(url))
    return BuilderEndpoint(url_identity(text), text)


def _shown_bad(item: str | BuilderEndpoint) -> str:
    """How a malformed item is named in an error: its name when it has a valid one, never its URL."""
    name = item.name if isinstance(item, BuilderEndpoint) else None
    if isinstance(item, str) and _is_named(item.strip()):
        name = item.strip().split("=", 1)[0].strip()
    return f" ({name}=…)" if name is not None and _NAME.match(name) and not _HEX64.match(name) else ""


def parse_builders(items: Iterable[str | BuilderEndpoint]) -> tuple[BuilderEndpoint, ...]:
    """Every item parsed, identities unique. ValueError("item <i> (<shown>): ...") on the first problem."""
    out: list[BuilderEndpoint] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items, 1):
        try:
            endpoint = parse_builder(item)
        except ValueError as exc:
            raise ValueError(f"item {i}{_shown_bad(item)}: {exc}") from None
        if endpoint.name in seen:
            first = seen[endpoint.name]
            hint = (
                "names must be unique"
                if endpoint.named
                else "give each a name, e.g. titan=https://rpc.titanbuilder.xyz"
            )
            raise ValueError(
                f"item {i} ({endpoint}): same builder identity {endpoint.name!r} as item {first}; {hint}"
            )
        seen[endpoint.name] = i
        out.append(endpoint)
    return tuple(out)


def check_identity(identity: str) -> str:
    """An identity as the ledger stores it: a name, or a redacted URL (never a URL with a path, query or
    user info, which may hold an API key). Returns it unchanged; ValueError (not echoing it) otherwise."""
    if not isinstance(identity, str) or not identity:
        raise ValueError("builder identity is empty")
    if "://" in identity:
        if redact_url(identity) != identity:
            raise ValueError(
                "builder identity is a URL that may carry a secret (path, query or user info); "
                "store its redacted form (keeper.chain.redact.redact_url) or a name"
            )
        return identity
    try:
        return check_name(identity)
    except ValueError:
        raise ValueError(
            "builder identity must be a name (letters, digits, '.', '_', '-') or a redacted URL"
        ) from None


__all__ = [
    "BuilderEndpoint",
    "check_identity",
    "check_name",
    "parse_builder",
    "parse_builders",
    "url_identity",
]
