"""Auth files for integration tests: clients and their token hashes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tmemd._auth import hash_token


def write_auth(
    tmp_path: Path,
    tokens: Mapping[str, str],
    admin: str = "ops",
    others: Sequence[str] = (),
) -> Path:
    """``auth.toml`` in ``tmp_path`` naming every client of ``tokens``; the
    client ``admin`` gets ``admin = true``, every other one the TOML lines
    ``others`` (caps, weights)."""
    path = tmp_path / "auth.toml"
    lines = []
    for name, token in tokens.items():
        lines += [f"[clients.{name}]", f'token_sha256 = "{hash_token(token)}"']
        lines += ["admin = true", ""] if name == admin else [*others, ""]
    path.write_text("\n".join(lines))
    return path
