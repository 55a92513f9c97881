"""Settings: sources and precedence, one error line per bad field, secrets never echoed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keeper.config import Settings, flashbots_account, funds_account, load_settings
from keeper.devnet.anvil import DEV_ACCOUNTS
from keeper.errors import ConfigError

ADDR0, KEY0 = DEV_ACCOUNTS[0]
ADDR1, KEY1 = DEV_ACCOUNTS[1]
# A syntactically plausible but wrong key (63 hex digits): must never be echoed either.
BAD_KEY = "0x" + "ab12" * 15 + "cd9"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No KEEPER_* variables from the outer environment, and no stray .env in the working directory."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("KEEPER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def problems(**env: str) -> list[str]:
    import os

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with pytest.raises(ConfigError) as info:
            load_settings(None)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return info.value.problems


def test_minimal_config_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_RPC_HTTP_URL", "http://127.0.0.1:8545")
    s = load_settings(None)
    assert s.rpc_http_url == "http://127.0.0.1:8545"
    assert s.rpc_ws_url is None
    assert s.ws_url == "ws://127.0.0.1:8545"
    assert s.ws_url_is_derived
    assert s.strategies == ["noop"]
    assert s.relay_urls == []
    assert s.min_profit_wei == 0
    assert s.dry_run is False
    assert (s.log_format, s.log_level) == ("text", "INFO")
    assert (s.metrics_host, s.metrics_port) == ("127.0.0.1", 9108)
    assert s.head_max_age_seconds == 60
    assert s.submit == "bundle"
    assert s.ledger_path == Path("keeper.sqlite")
    assert s.private_key is None
    assert funds_account(s) is None


def test_full_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "KEEPER_RPC_HTTP_URL": "https://eth.example.com/v2/apikey",
        "KEEPER_RPC_WS_URL": "wss://eth.example.com/ws/v2/apikey",
        "KEEPER_PRIVATE_KEY": KEY0[2:].upper(),  # no 0x, upper case: normalised
        "KEEPER_FLASHBOTS_SIGNER_KEY": KEY1,
        "KEEPER_RELAY_URLS": " https://relay.flashbots.net , https://rpc.titanbuilder.xyz/ ",
        "KEEPER_STRATEGIES": "noop",
        "KEEPER_MIN_PROFIT_WEI": "1_000_000_000_000_000",
        "KEEPER_DRY_RUN": "true",
        "KEEPER_LOG_FORMAT": "JSON",
        "KEEPER_LOG_LEVEL": "debug",
        "KEEPER_METRICS_PORT": "0",
        "KEEPER_HEAD_MAX_AGE_SECONDS": "12",
        "KEEPER_SUBMIT": "private",
        "KEEPER_LEDGER_PATH": "/tmp/l.sqlite",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings(None)
    assert s.ws_url == "wss://eth.example.com/ws/v2/apikey"
    assert not s.ws_url_is_derived
    assert s.private_key is not None
    assert s.private_key.get_secret_value() == KEY0
    assert s.relay_urls == ["https://relay.flashbots.net", "https://rpc.titanbuilder.xyz/"]
    assert s.min_profit_wei == 10**15
    assert s.dry_run is True
    assert (s.log_format, s.log_level, s.submit) == ("json", "DEBUG", "private")
    assert s.metrics_port == 0
    account = funds_account(s)
    assert account is not None
    assert account.address == ADDR0
    identity = flashbots_account(s)
    assert identity is not None
    assert identity.address == ADDR1


def test_derived_ws_url_keeps_tls_and_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_RPC_HTTP_URL", "https://eth-mainnet.example.com/v2/key")
    assert load_settings(None).ws_url == "wss://eth-mainnet.example.com/v2/key"


def test_missing_rpc_url_names_the_variable() -> None:
    (line,) = problems()
    assert line.startswith("KEEPER_RPC_HTTP_URL: missing")
    assert "e.g. KEEPER_RPC_HTTP_URL=http://127.0.0.1:8545" in line


@pytest.mark.parametrize(
    ("var", "value", "expect"),
    [
        ("KEEPER_RPC_HTTP_URL", "127.0.0.1:8545", "http://"),
        ("KEEPER_RPC_HTTP_URL", "ws://127.0.0.1:8545", "got scheme 'ws'"),
        ("KEEPER_RPC_WS_URL", "http://127.0.0.1:8545", "ws://"),
        ("KEEPER_RELAY_URLS", "https://relay.flashbots.net,relay2", "item 2"),
        ("KEEPER_STRATEGIES", "noop,nope", "unknown strategy nope"),
        ("KEEPER_MIN_PROFIT_WEI", "0.5", "whole number of wei"),
        ("KEEPER_MIN_PROFIT_WEI", "1e18", "whole number of wei"),
        ("KEEPER_MIN_PROFIT_WEI", "-1", "KEEPER_ALLOW_LOSS=true"),
        ("KEEPER_DRY_RUN", "perhaps", "true or false"),
        ("KEEPER_LOG_FORMAT", "xml", "'text' or 'json'"),
        ("KEEPER_LOG_LEVEL", "loud", "must be"),
        ("KEEPER_METRICS_PORT", "70000", "65535"),
        ("KEEPER_METRICS_PORT", "x", "whole number"),
        ("KEEPER_HEAD_MAX_AGE_SECONDS", "0", "greater than 0"),
        ("KEEPER_SUBMIT", "carrier-pigeon", "'bundle', 'public' or 'private'"),
        ("KEEPER_KEYSTORE", "/nonexistent/keystore.json", "file not found"),
    ],
)
def test_each_bad_field_gives_one_named_line(var: str, value: str, expect: str) -> None:
    lines = problems(**{"KEEPER_RPC_HTTP_URL": "http://127.0.0.1:8545", var: value})
    mine = [line for line in lines if line.startswith(var + ":")]
    assert len(mine) == 1, lines
    assert expect in mine[0]
    assert "e.g. " + var + "=" in mine[0]
    assert "input_value" not in mine[0]


def test_all_problems_reported_at_once() -> None:
    lines = problems(
        KEEPER_PRIVATE_KEY=BAD_KEY,
        KEEPER_RELAY_URLS="nope",
        KEEPER_METRICS_PORT="-1",
        KEEPER_SUBMIT="x",
    )
    assert [line.split(":", 1)[0] for line in lines] == [
        "KEEPER_RPC_HTTP_URL",
        "KEEPER_PRIVATE_KEY",
        "KEEPER_RELAY_URLS",
        "KEEPER_METRICS_PORT",
        "KEEPER_SUBMIT",
    ]


def test_negative_min_profit_allowed_when_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_RPC_HTTP_URL", "http://127.0.0.1:8545")
    monkeypatch.setenv("KEEPER_MIN_PROFIT_WEI", "-1000")
    monkeypatch.setenv("KEEPER_ALLOW_LOSS", "true")
    assert load_settings(None).min_profit_wei == -1000


@pytest.mark.parametrize(
    "bad_key",
    [
        BAD_KEY,
        KEY0 + "00",  # 33 bytes
        "0x" + "zz" * 32,  # 64 chars, not hex
        "0x" + "00" * 32,  # zero
        "0x" + "ff" * 32,  # above the curve order
        KEY0[2:] + " trailing words",
    ],
)
def test_bad_private_key_never_echoed(bad_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import traceback

    monkeypatch.setenv("KEEPER_RPC_HTTP_URL", "http://127.0.0.1:8545")
    monkeypatch.setenv("KEEPER_PRIVATE_KEY", bad_key)
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    (line,) = info.value.problems
    assert line.startswith("KEEPER_PRIVATE_KEY: ")
    # Neither the message nor a full traceback (with its chained exceptions) shows the key.
    text = "".join(traceback.format_exception(info.value)) + repr(info.value)
    assert bad_key not in text
    assert bad_key.removeprefix("0x")[:16] not in text
    assert info.value.__cause__ is None


def test_flashbots_key_must_differ_from_funds_key() -> None:
    lines = problems(
        KEEPER_RPC_HTTP_URL="http://127.0.0.1:8545",
        KEEPER_PRIVATE_KEY=KEY0,
        KEEPER_FLASHBOTS_SIGNER_KEY=KEY0[2:],
    )
    (line,) = lines
    assert line.startswith("KEEPER_FLASHBOTS_SIGNER_KEY: must differ")
    assert KEY0[2:] not in line


def test_secrets_not_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_RPC_HTTP_URL", "https://eth.example.com/v2/sekritapikey")
    monkeypatch.setenv("KEEPER_RPC_WS_URL", "wss://eth.example.com/ws/v2/sekritapikey")
    monkeypatch.setenv("KEEPER_RELAY_URLS", "https://builder.example.com/?token=sekrittoken")
    monkeypatch.setenv("KEEPER_PRIVATE_KEY", KEY0)
    monkeypatch.setenv("KEEPER_FLASHBOTS_SIGNER_KEY", KEY1)
    s = load_settings(None)
    for text in (repr(s), str(s), f"{s!r}"):
        assert "sekrit" not in text
        assert KEY0[2:] not in text
        assert KEY1[2:] not in text
        assert "https://eth.example.com/…" in text
    secrets = s.secrets()
    assert KEY0 in secrets
    assert KEY0[2:] in secrets
    assert KEY1 in secrets
    assert "https://eth.example.com/v2/sekritapikey" in secrets
    assert "/v2/sekritapikey" in secrets
    assert any("sekrittoken" in x for x in secrets)


def test_plain_urls_are_not_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_RPC_HTTP_URL", "http://127.0.0.1:8545")
    assert load_settings(None).secrets() == ()


def test_toml_file_and_env_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "keeper.toml"
    cfg.write_text(
        'rpc_http_url = "http://toml-host:8545"\n'
        'strategies = ["noop"]\n'
        'relay_urls = ["https://relay.flashbots.net"]\n'
        "min_profit_wei = 5000\n"
        "metrics_port = 9200\n"
        'log_format = "json"\n'
    )
    s = load_settings(cfg)
    assert s.rpc_http_url == "http://toml-host:8545"
    assert s.relay_urls == ["https://relay.flashbots.net"]
    assert (s.min_profit_wei, s.metrics_port, s.log_format) == (5000, 9200, "json")

    monkeypatch.setenv("KEEPER_METRICS_PORT", "9300")
    (tmp_path / ".env").write_text("KEEPER_RPC_HTTP_URL=http://dotenv-host:8545\nKEEPER_LOG_FORMAT=text\n")
    s = load_settings(cfg)
    assert s.metrics_port == 9300  # env beats TOML
    assert s.rpc_http_url == "http://dotenv-host:8545"  # .env beats TOML
    assert s.log_format == "text"
    assert s.min_profit_wei == 5000  # TOML beats defaults

    monkeypatch.setenv("KEEPER_RPC_HTTP_URL", "http://env-host:8545")
    assert load_settings(cfg).rpc_http_url == "http://env-host:8545"  # env beats .env


def test_toml_errors_name_the_file_key(tmp_path: Path) -> None:
    cfg = tmp_path / "keeper.toml"
    cfg.write_text('rpc_http_url = "http://127.0.0.1:8545"\nmin_profit_wei = 0.5\n')
    (line,) = pytest.raises(ConfigError, load_settings, cfg).value.problems
    assert line.startswith(f"min_profit_wei (in {cfg}): must be a whole number of wei")

    cfg.write_text('rpc_http_url = "http://127.0.0.1:8545"\nrpc_url = "x"\n')
    (line,) = pytest.raises(ConfigError, load_settings, cfg).value.problems
    assert "unknown setting 'rpc_url'" in line

    cfg.write_text("rpc_http_url = \n")
    (line,) = pytest.raises(ConfigError, load_settings, cfg).value.problems
    assert "not valid TOML" in line

    (line,) = pytest.raises(ConfigError, load_settings, tmp_path / "missing.toml").value.problems
    assert "file not found" in line


def test_keystore(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from eth_account import Account

    password = "correct horse battery"
    keystore = tmp_path / "ks.json"
    # Light scrypt parameters: the default takes about a second.
    keystore.write_text(json.dumps(Account.encrypt(KEY0, password, kdf="scrypt", iterations=2)))
    pw_file = tmp_path / "pw"
    pw_file.write_text(password + "\n")
    monkeypatch.setenv("KEEPER_RPC_HTTP_URL", "http://127.0.0.1:8545")
    monkeypatch.setenv("KEEPER_KEYSTORE", str(keystore))

    (line,) = pytest.raises(ConfigError, load_settings, None).value.problems
    assert line.startswith("KEEPER_KEYSTORE_PASSWORD_FILE: required when KEEPER_KEYSTORE is set")

    monkeypatch.setenv("KEEPER_KEYSTORE_PASSWORD_FILE", str(pw_file))
    s = load_settings(None)
    account = funds_account(s)
    assert account is not None
    assert account.address == ADDR0
    assert password in s.secrets()

    pw_file.write_text("wrong password\n")
    (line,) = pytest.raises(ConfigError, funds_account, s).value.problems
    assert line.startswith("KEEPER_KEYSTORE: cannot decrypt")
    assert "wrong password\n" not in line

    monkeypatch.setenv("KEEPER_PRIVATE_KEY", KEY1)
    (line,) = pytest.raises(ConfigError, load_settings, None).value.problems
    assert line.startswith("KEEPER_KEYSTORE: set either")
    assert KEY1[2:] not in line


def test_settings_direct_construction_is_typed() -> None:
    s = Settings(rpc_http_url="http://127.0.0.1:8545", strategies=["noop"])  # type: ignore[call-arg]
    assert s.strategies == ["noop"]


def test_env_example_is_a_valid_config(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / ".env.example"
    s = load_settings(None, env_file=example)
    assert s.rpc_http_url == "http://127.0.0.1:8545"
    account = funds_account(s)
    assert account is not None
    assert account.address == ADDR0
    documented = {
        line.lstrip("# ").split("=", 1)[0]
        for line in example.read_text().splitlines()
        if line.lstrip("# ").startswith("KEEPER_") and "=" in line
    }
    assert documented == {f"KEEPER_{name.upper()}" for name in Settings.model_fields}


# ---- KEEPER_RELAY_URLS: builders by name or redacted URL --------------------------------------------


def test_relay_items_may_be_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_RPC_HTTP_URL", "http://127.0.0.1:8545")
    monkeypatch.setenv(
        "KEEPER_RELAY_URLS",
        " titan = https://rpc.titanbuilder.xyz , bnet=https://rpc.buildernet.org/v1/sekritkey,"
        "http://10.0.0.5:8545,http://10.0.0.5:8546/x?token=sekrittoken",
    )
    s = load_settings(None)
    assert [(e.name, e.url) for e in s.relay_endpoints] == [
        ("titan", "https://rpc.titanbuilder.xyz"),
        ("bnet", "https://rpc.buildernet.org/v1/sekritkey"),
        ("http://10.0.0.5:8545", "http://10.0.0.5:8545"),
        ("http://10.0.0.5:8546/…", "http://10.0.0.5:8546/x?token=sekrittoken"),
    ]
    assert "sekrit" not in repr(s)
    assert "titan=https://rpc.titanbuilder.xyz" in repr(s)
    assert "bnet=https://rpc.buildernet.org/…" in repr(s)
    secrets = s.secrets()
    assert "https://rpc.buildernet.org/v1/sekritkey" in secrets  # the URL itself, not "bnet=..."
    assert "http://10.0.0.5:8546/x?token=sekrittoken" in secrets
    assert all(not x.startswith("bnet=") for x in secrets)


@pytest.mark.parametrize(
    ("value", "expect"),
    [
        # two URLs that differ only by a (secret) path redact to one identity: they need names
        (
            "https://rpc.example.org/v1/sekritkey1,https://rpc.example.org/v1/sekritkey2",
            "item 2 (https://rpc.example.org/…): same builder identity 'https://rpc.example.org/…' as item 1",
        ),
        (
            "a=https://rpc.example.org/sekrit1,a=https://rpc2.example.org",
            "item 2 (a=https://rpc2.example.org)",
        ),
        ("https://relay.flashbots.net,https://relay.flashbots.net/", "item 2"),
        ("bad name=https://rpc.example.org/sekrit", "item 1: in name=url: a builder name must be"),
        ("titan=ftp://rpc.example.org/sekrit", "item 1 (titan=…): must start with http:// or https://"),
        ("titan=", "item 1 (titan=…): must start with http://"),
    ],
)
def test_relay_item_problems_are_one_named_line_without_secrets(value: str, expect: str) -> None:
    lines = problems(KEEPER_RPC_HTTP_URL="http://127.0.0.1:8545", KEEPER_RELAY_URLS=value)
    (line,) = lines
    assert line.startswith("KEEPER_RELAY_URLS: ")
    assert expect in line
    assert "sekrit" not in line
    assert "e.g. KEEPER_RELAY_URLS=titan=https://rpc.titanbuilder.xyz" in line


def test_two_ports_of_one_host_are_two_builders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_RPC_HTTP_URL", "http://127.0.0.1:8545")
    monkeypatch.setenv("KEEPER_RELAY_URLS", "http://10.0.0.5:8545,http://10.0.0.5:8546")
    names = [e.name for e in load_settings(None).relay_endpoints]
    assert names == ["http://10.0.0.5:8545", "http://10.0.0.5:8546"]
