"""Client identities from the auth file (``--auth-file``, TOML).

Each client is a table ``[clients.NAME]`` with ``token_sha256`` (hex SHA-256
of its token), ``weight``, ``persistent_cap``, ``total_cap`` (sizes such as
``512MiB``) and ``admin``.  The daemon stores only token hashes, so the file
leaks nothing usable if read, and compares them in constant time
(``hmac.compare_digest``); an unknown name costs the same comparison as a
known one, so timing does not reveal which names exist.

Example (``deploy/auth.example.toml`` has a commented one)::

    [clients.web-01]
    token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    weight = 100
    persistent_cap = "1GiB"
    total_cap = "2GiB"
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tmem.proto import CLIENT_NAME_CHARS, MAX_CLIENT_NAME_CHARS, is_client_name

from .config import ConfigError, parse_size

__all__ = ["AuthTable", "ClientEntry", "hash_token", "load_auth_file"]

#: Default scheduling weight, as Xen's tmem client weight defaulted to 100.
DEFAULT_WEIGHT = 100
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEYS = {"token_sha256", "weight", "persistent_cap", "total_cap", "admin"}
#: Compared against when the name is unknown, so both paths cost the same.
_DUMMY_HASH = "0" * 64


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token, as written in the auth file."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ClientEntry:
    """One client's identity and limits (None: no cap)."""

    name: str
    token_sha256: str
    weight: int = DEFAULT_WEIGHT
    persistent_cap: int | None = None
    total_cap: int | None = None
    admin: bool = False


class AuthTable:
    """Known clients; ``check`` is the daemon's authenticate callback."""

    def __init__(self, entries: dict[str, ClientEntry]) -> None:
        self.entries = MappingProxyType(dict(entries))

    def check(self, name: str, token: str | None) -> tuple[bool, bool]:
        """(authenticated, admin) for a HELLO's name and token."""
        entry = self.entries.get(name)
        expected = entry.token_sha256 if entry is not None else _DUMMY_HASH
        given = hash_token(token) if token is not None else ""
        ok = hmac.compare_digest(expected.encode(), given.encode())
        if entry is None or token is None or not ok:
            return False, False
        return True, entry.admin


def _entry(name: str, table: Any, path: Path) -> ClientEntry:
    where = f"{path}: [clients.{name}]"
    if not is_client_name(name):
        raise ConfigError(
            f"{where}: name must match [{CLIENT_NAME_CHARS}]{{1,{MAX_CLIENT_NAME_CHARS}}}"
        )
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(table) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    digest = table.get("token_sha256")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest.lower()):
        raise ConfigError(f"{where}: token_sha256 must be 64 hex digits")
    weight = table.get("weight", DEFAULT_WEIGHT)
    if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= 10_000:
        raise ConfigError(f"{where}: weight must be an integer from 1 to 10000")
    admin = table.get("admin", False)
    if not isinstance(admin, bool):
        raise ConfigError(f"{where}: admin must be true or false")
    caps = {
        k: parse_size(table[k]) if k in table else None for k in ("persistent_cap", "total_cap")
    }
    return ClientEntry(
        name, digest.lower(), weight, caps["persistent_cap"], caps["total_cap"], admin
    )


def load_auth_file(path: str | Path) -> AuthTable:
    """Parse and validate the auth file; raise ``ConfigError`` naming the key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read auth file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"auth file {path} is not valid TOML: {exc}") from None
    clients = data.get("clients")
    if not isinstance(clients, dict) or not clients:
        raise ConfigError(f"{path}: needs at least one [clients.NAME] table")
    if set(data) - {"clients"}:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(set(data) - {'clients'})}")
    return AuthTable({name: _entry(name, table, path) for name, table in clients.items()})
