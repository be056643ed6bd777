"""tmemd-bench's builds: each daemon's environment, and the check that it
runs the build its rows are named after."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmem.bench import _builds, main
from tmem.bench._builds import BuildMismatch, build_kind, check_builds, daemon_env
from tmem.proto._build import PURE_ENV

COMPILED_TEXT = "tmemd 0.1.0, compiled build (mypyc, 33 modules)"
INTERPRETED_TEXT = "tmemd 0.1.0, interpreted build (pure Python, TMEMD_PURE_PYTHON set)"


def test_interpreted_daemons_get_the_switch_and_compiled_ones_lose_it() -> None:
    base = {"PATH": "/usr/bin", PURE_ENV: "1"}
    assert daemon_env("interpreted", {"PATH": "/usr/bin"}) == base
    # a harness run with the switch set must not make its compiled rows interpreted
    assert daemon_env("compiled", base) == {"PATH": "/usr/bin"}
    assert daemon_env(None, base) is None  # peers and callers that name no build inherit
    assert daemon_env("-", base) is None


def test_build_kind_is_read_from_version_and_log_lines() -> None:
    assert build_kind(COMPILED_TEXT) == "compiled"
    assert build_kind(INTERPRETED_TEXT) == "interpreted"
    assert build_kind("tmemd 0.1.0, mixed build: 3 of 33 modules compiled; ...") == "mixed"
    log = f"INFO tmemd: {INTERPRETED_TEXT.removeprefix('tmemd ')} (server_id 7) listening on"
    assert build_kind("tmemd " + log) == "interpreted"
    assert build_kind("tmemd 0.1.0") is None


def _installed(monkeypatch: pytest.MonkeyPatch, texts: dict[str, str]) -> None:
    """Pretend ``tmemd --version`` under each build's environment says ``texts[build]``."""
    monkeypatch.setattr(_builds, "_version", texts.__getitem__)


def test_check_builds_returns_what_each_build_says(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = {"compiled": COMPILED_TEXT, "interpreted": INTERPRETED_TEXT}
    _installed(monkeypatch, texts)
    assert check_builds(("compiled", "interpreted")) == texts


def test_an_interpreted_install_is_not_measured_as_compiled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _installed(monkeypatch, {"compiled": "tmemd 0.1.0, interpreted build (pure Python)"})
    with pytest.raises(BuildMismatch, match=r"cannot measure the compiled build.*make dev"):
        check_builds(("compiled",))
    _installed(monkeypatch, {"interpreted": COMPILED_TEXT})
    with pytest.raises(BuildMismatch, match="cannot measure the interpreted build"):
        check_builds(("interpreted",))


def test_the_harness_refuses_before_measuring(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _installed(monkeypatch, {"compiled": "tmemd 0.1.0, mixed build: 30 of 33 modules compiled"})
    code = main(["--systems", "tmemd", "--quick", "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "tmemd-bench: cannot measure the compiled build" in err and "mixed build" in err
    assert not (tmp_path / "out").exists()
