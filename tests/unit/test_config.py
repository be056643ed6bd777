"""Configuration parsing: sizes, addresses, TOML files, precedence, exposure."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmemd.cli import build_parser, check_exposure, make_config
from tmemd.config import ConfigError, DaemonConfig, load_toml, parse_address, parse_size


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("256MiB", 256 << 20),
        ("4GiB", 4 << 30),
        ("1.5G", 3 << 29),
        ("65536", 65536),
        ("64k", 64 << 10),
        ("2 MB", 2_000_000),
        ("1TiB", 1 << 40),
        (4096, 4096),
    ],
)
def test_parse_size(text: str | int, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "MiB", "12 parsecs", "-5", "1e9", "0x10"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_size(text)


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_address("[::1]:7470") == ("::1", 7470)
    assert parse_address(":7470") == ("127.0.0.1", 7470)
    for bad in ("localhost", "host:port", "h:70000"):
        with pytest.raises(ConfigError):
            parse_address(bad)


def test_validation_names_the_key() -> None:
    with pytest.raises(ConfigError, match="codec"):
        DaemonConfig(codec="brotli")
    with pytest.raises(ConfigError, match="memory"):
        DaemonConfig(memory=100)
    with pytest.raises(ConfigError, match="persistent"):
        DaemonConfig(persistent_max=0.5, persistent_accept=0.6)
    with pytest.raises(ConfigError, match="tls"):
        DaemonConfig(tls_cert="c.pem")
    for bad in (-1, 10_001):
        with pytest.raises(ConfigError, match="busy-poll"):
            DaemonConfig(busy_poll=bad)
    assert DaemonConfig().busy_poll == 0  # off unless asked for


def test_toml_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "tmemd.toml"
    cfg.write_text(
        'memory = "1GiB"\ncodec = "zstd"\npersistent-max = 0.5\n'
        'persistent_accept = 0.4\nlisten = "127.0.0.1:9000"\nbusy-poll = 200\n'
    )
    args = build_parser().parse_args(["--config", str(cfg), "--codec", "lz4"])
    config = make_config(args)
    assert config.busy_poll == 200  # the key is the flag's name, as for the others
    assert make_config(build_parser().parse_args(["--busy-poll", "50"])).busy_poll == 50
    assert config.memory == 1 << 30
    assert config.codec == "lz4"  # the flag wins
    assert config.persistent_max == 0.5
    assert config.address == ("127.0.0.1", 9000)


def test_toml_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("memory = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(bad)
    bad.write_text('colour = "blue"\n')
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        load_toml(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_toml(tmp_path / "missing.toml")


def test_exposure_needs_auth_or_insecure() -> None:
    check_exposure(DaemonConfig(listen="127.0.0.1:1"))
    check_exposure(DaemonConfig(listen="[::1]:1"))
    with pytest.raises(ConfigError, match="auth-file"):
        check_exposure(DaemonConfig(listen="0.0.0.0:1"))
    check_exposure(DaemonConfig(listen="0.0.0.0:1", insecure=True))
    check_exposure(DaemonConfig(listen="0.0.0.0:1", auth_file="a.toml"))
