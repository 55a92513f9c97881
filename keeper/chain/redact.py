"""Keep secrets out of logs, errors and repr."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_HEX_KEY = re.compile(r"(?i)(?<![0-9a-f])(0x)?[0-9a-f]{64}(?![0-9a-f])")


def redact_url(url: str) -> str:
    """scheme://host[:port] only; paths and queries often carry API keys (e.g. /v3/<key>)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    if not parts.scheme or not parts.hostname:
        return "<invalid url>"
    host = parts.hostname
    port = f":{parts.port}" if parts.port else ""
    tail = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{tail}"


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Removes 32-byte hex strings (private keys look like that) and any given secret substrings."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return _HEX_KEY.sub("<redacted-hex32>", text)
