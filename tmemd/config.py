"""Daemon configuration: defaults, TOML files and command-line flags.

One frozen ``DaemonConfig`` is the single source of truth; the CLI builds it
from built-in defaults, then a TOML file (``--config``), then flags, in that
order of precedence (later wins), as systemd users expect from memcached's
and Redis's drop-ins.  TOML keys are the long flag names with dashes or
underscores (``memory = "4GiB"``, ``persistent-max = 0.75``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_PORT",
    "ConfigError",
    "DaemonConfig",
    "load_toml",
    "parse_address",
    "parse_size",
]

#: Default TCP port; unassigned by IANA and clear of memcached (11211) and
#: Redis (6379), so the three can run side by side in benchmarks.
DEFAULT_PORT = 7470
#: Loopback by default: tmemd serves memory to whoever can reach it, so
#: exposing it is an explicit decision (see ``--insecure``).
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
#: The arena size when none is given: enough for a real test, small enough
#: for any laptop.
DEFAULT_MEMORY_BYTES = 256 << 20
#: Most address space mapped for ``tmemctl set-memory`` when ``--max-memory``
#: is not given (the host's RAM, up to this): xvmalloc's in-band links
#: address at most 16 GiB, and the mapping costs no memory until used.
DEFAULT_MAX_MEMORY_CAP_BYTES = 16 << 30
#: Smallest arena accepted: 16 frames is too little for any real work but
#: lets tests exercise a full arena quickly.
MIN_MEMORY_BYTES = 64 << 10

CODECS = ("lzo", "lz4", "zstd", "none")
#: The arena PAMs (``tmemd.engine.pam``); the defaults are chosen by
#: measurement, see docs/memory.md.
PAMS = ("zbud", "xvmalloc", "zsmalloc")
#: zstd levels accepted: the standard ones; negative (fast) levels compress
#: worse than LZO here and 20+ need more memory than a page store wants.
ZSTD_LEVELS = range(1, 20)
#: Largest per-pool zstd dictionary: zstd's dictionaries stop helping 4 KiB
#: pages long before 1 MiB, and each trained pool holds one.
MAX_ZSTD_DICTIONARY_BYTES = 1 << 20
#: Longest --busy-poll window: past a few milliseconds spinning buys no
#: latency and only burns the core.
MAX_BUSY_POLL_US = 10_000
#: Longest --drain-timeout: systemd's default stop timeout is 90 s and
#: Kubernetes' grace period 30 s; a drain must end well before either kills us.
MAX_DRAIN_TIMEOUT_S = 60.0
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1000,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1000**2,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1000**3,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tb": 1000**4,
    "tib": 1 << 40,
}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""


def parse_size(text: str | int) -> int:
    """Bytes from ``"256MiB"``, ``"4GiB"``, ``"1.5G"``, ``"65536"``.

    Bare K/M/G/T are binary (as ``free -h`` and memcached ``-m`` mean them);
    KB/MB/GB are decimal, KiB/MiB/GiB binary.
    """
    if isinstance(text, int):
        if text < 0:
            raise ConfigError(f"size must not be negative: {text}")
        return text
    match = _SIZE_RE.match(text)
    if not match:
        raise ConfigError(f"not a size: {text!r} (examples: 256MiB, 4GiB, 1048576)")
    number, unit = match.group(1), (match.group(2) or "").lower()
    if unit not in _UNITS:
        raise ConfigError(f"unknown size unit in {text!r}")
    return int(float(number) * _UNITS[unit])


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``) to a (host, port) pair."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(f"address must be HOST:PORT, got {text!r}")
    port = int(port_text)
    if port > 65535:
        raise ConfigError(f"port out of range in {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, port


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """Everything the daemon needs to start; validated on construction."""

    listen: str = DEFAULT_LISTEN
    port_file: str | None = None
    memory: int = DEFAULT_MEMORY_BYTES
    #: Largest limit ``tmemctl set-memory`` may set (None: the host's RAM,
    #: capped at ``DEFAULT_MAX_MEMORY_CAP_BYTES``, and never below ``memory``).
    max_memory: int | None = None
    codec: str = "lzo"
    lease: float = 60.0
    persistent_max: float = 0.75
    persistent_accept: float = 0.70
    ephemeral_pam: str = "zbud"
    persistent_pam: str = "zsmalloc"
    zstd_level: int = 3
    zstd_dictionary: int = 128 << 10
    idle_timeout: float = 300.0
    header_timeout: float = 10.0
    #: Seconds a connection may stay without a successful HELLO (PING does
    #: not extend it): a real client says HELLO within a round trip.
    hello_timeout: float = 5.0
    max_connections: int = 4096
    #: Connections without a successful HELLO at once (at most max_connections).
    max_unauthenticated: int = 128
    #: Seconds SIGTERM waits for clients to leave, answering BUSY meanwhile.
    drain_timeout: float = 5.0
    #: Microseconds the event loop keeps polling after a read (0: sleep at once).
    busy_poll: int = 0
    metrics: str | None = None
    metrics_port_file: str | None = None
    #: File holding the bearer token /metrics requires (None: no token).
    metrics_auth: str | None = None
    #: TLS for the metrics endpoint, as tls_cert/tls_key/tls_client_ca for the protocol.
    metrics_tls_cert: str | None = None
    metrics_tls_key: str | None = None
    metrics_tls_client_ca: str | None = None
    auth_file: str | None = None
    insecure: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    log_level: str = "info"
    log_format: str = "text"
    #: Where persistent pools are saved on SIGTERM and restored from at start.
    state_dir: str | None = None
    #: Save ephemeral pools too (they are a cache: off by default).
    save_ephemeral: bool = False
    #: Start empty even if the state directory holds a state.
    discard_state: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        parse_address(self.listen)
        if self.metrics is not None:
            parse_address(self.metrics)
        if self.memory < MIN_MEMORY_BYTES:
            raise ConfigError(f"memory must be at least {MIN_MEMORY_BYTES} bytes")
        if self.max_memory is not None and self.max_memory < self.memory:
            raise ConfigError("max-memory must be at least memory")
        if self.codec not in CODECS:
            raise ConfigError(f"codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        for name in ("ephemeral_pam", "persistent_pam"):
            if getattr(self, name) not in PAMS:
                raise ConfigError(f"{name.replace('_', '-')} must be one of {', '.join(PAMS)}")
        if self.zstd_level not in ZSTD_LEVELS:
            raise ConfigError(f"zstd-level must be in 1..{ZSTD_LEVELS[-1]}")
        if not 0 <= self.zstd_dictionary <= MAX_ZSTD_DICTIONARY_BYTES:
            raise ConfigError(f"zstd-dictionary must be 0..{MAX_ZSTD_DICTIONARY_BYTES} bytes")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log-level must be one of {', '.join(LOG_LEVELS)}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log-format must be one of {', '.join(LOG_FORMATS)}")
        if not 0 < self.persistent_accept <= self.persistent_max <= 1:
            raise ConfigError("need 0 < persistent-accept <= persistent-max <= 1")
        for name in ("lease", "idle_timeout", "header_timeout", "hello_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.replace('_', '-')} must be positive")
        if not 0 <= self.drain_timeout <= MAX_DRAIN_TIMEOUT_S:
            raise ConfigError(f"drain-timeout must be 0..{MAX_DRAIN_TIMEOUT_S:g} seconds")
        for name in ("max_connections", "max_unauthenticated"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be at least 1")
        if not 0 <= self.busy_poll <= MAX_BUSY_POLL_US:
            raise ConfigError(f"busy-poll must be 0..{MAX_BUSY_POLL_US} microseconds")
        if self.state_dir is None and (self.save_ephemeral or self.discard_state):
            raise ConfigError("save-ephemeral and discard-state need state-dir")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls-cert and tls-key go together")
        if (self.metrics_tls_cert is None) != (self.metrics_tls_key is None):
            raise ConfigError("metrics-tls-cert and metrics-tls-key go together")
        if self.metrics_tls_client_ca is not None and self.metrics_tls_cert is None:
            raise ConfigError("metrics-tls-client-ca needs metrics-tls-cert and metrics-tls-key")

    @property
    def reserve_bytes(self) -> int:
        """Address space the arena maps: ``max_memory`` or its default."""
        if self.max_memory is not None:
            return self.max_memory
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return max(self.memory, min(ram, DEFAULT_MAX_MEMORY_CAP_BYTES))

    @property
    def address(self) -> tuple[str, int]:
        return parse_address(self.listen)

    def replace(self, **changes: Any) -> DaemonConfig:
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name for f in dataclasses.fields(DaemonConfig)} - {"extra"}
_SIZE_KEYS = {"memory", "max_memory", "zstd_dictionary"}


def coerce(key: str, value: Any) -> Any:
    """Turn a TOML or flag value into the field's type (sizes accept units)."""
    if key in _SIZE_KEYS:
        return parse_size(value)
    return value


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a config file into DaemonConfig keyword arguments."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    out: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if key not in _FIELDS:
            raise ConfigError(f"unknown key {raw_key!r} in {path}")
        out[key] = coerce(key, value)
    return out
