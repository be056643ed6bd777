"""The auth file: parsing, validation and constant-time token checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmemd._auth import hash_token, load_auth_file
from tmemd.config import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "auth.toml"
    path.write_text(text)
    return path


def test_load_and_check(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"""
[clients.web-01]
token_sha256 = "{hash_token("s3cret")}"
weight = 200
persistent_cap = "512MiB"
total_cap = "1GiB"

[clients.ops]
token_sha256 = "{hash_token("root-token").upper()}"
admin = true
""",
    )
    table = load_auth_file(path)
    web = table.entries["web-01"]
    assert (web.weight, web.persistent_cap, web.total_cap, web.admin) == (
        200,
        512 << 20,
        1 << 30,
        False,
    )
    assert table.check("web-01", "s3cret") == (True, False)
    assert table.check("ops", "root-token") == (True, True)
    assert table.check("web-01", "wrong") == (False, False)
    assert table.check("web-01", None) == (False, False)
    assert table.check("nobody", "s3cret") == (False, False)
    assert table.entries["ops"].persistent_cap is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at least one"),
        ("[clients.a]\ntoken_sha256 = 'abc'\n", "64 hex"),
        (f"[clients.a]\ntoken_sha256 = '{'0' * 64}'\nweight = 0\n", "weight"),
        (f"[clients.a]\ntoken_sha256 = '{'0' * 64}'\nadmin = 'yes'\n", "admin"),
        (f"[clients.a]\ntoken_sha256 = '{'0' * 64}'\ncolour = 1\n", "unknown keys"),
        (f"[clients.'a b']\ntoken_sha256 = '{'0' * 64}'\n", "name must match"),
        (f"[clients.a]\ntoken_sha256 = '{'0' * 64}'\ntotal_cap = 'lots'\n", "not a size"),
        ("[server]\nx = 1\n[clients.a]\ntoken_sha256 = '" + "0" * 64 + "'\n", "top-level"),
        ("[clients.a\n", "not valid TOML"),
    ],
)
def test_rejects(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_auth_file(_write(tmp_path, text))
