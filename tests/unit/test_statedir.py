"""The state directory's file layer (``tmemd/_statedir.py``) without a daemon:
owner-only files, temporary files of a crashed save removed, a missing
state is no state, a damaged one is an error naming the file, and
``--discard-state`` moves the old file aside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tmemd._statedir import (
    STATE_FILE,
    StateDirError,
    discard_state,
    restore_state,
    save_state,
    state_path,
)
from tmemd.engine import Engine, EngineConfig

PAGE = 4096


def engine_with_pages(pages: int = 10) -> Engine:
    engine = Engine(EngineConfig(memory_bytes=4 << 20, default_codec="none"), lambda: 0.0)
    engine.connect("a")
    pool = engine.new_pool("a", persistent=True)
    for i in range(pages):
        engine.put("a", pool, 0, i, bytes([i % 250 + 1, 0]) * (PAGE // 2))
    return engine


def fresh() -> Engine:
    return Engine(EngineConfig(memory_bytes=4 << 20, default_codec="none"), lambda: 0.0)


def test_save_then_restore(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    summary = save_state(engine_with_pages(), folder, ephemeral=False, server_id="ab" * 16)
    path = state_path(folder)
    assert path.stat().st_size == summary.stream_bytes
    assert path.stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o777 == 0o700
    engine = fresh()
    restored = restore_state(engine, folder)
    assert restored is not None and restored.pages == 10
    assert restored.extra == {"server_id": "ab" * 16}
    assert engine.get("a", 0, 0, 3) == bytes([4, 0]) * (PAGE // 2)


def test_no_state_is_none_and_crash_leftovers_go(tmp_path: Path) -> None:
    tmp_path.joinpath(f".{STATE_FILE}.tmp.123").write_bytes(b"half a save")
    assert restore_state(fresh(), tmp_path) is None
    assert os.listdir(tmp_path) == []


def test_a_damaged_state_names_the_file(tmp_path: Path) -> None:
    save_state(engine_with_pages(), tmp_path, ephemeral=False, server_id=None)
    path = state_path(tmp_path)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(StateDirError, match=f"state file {path}: truncated"):
        restore_state(fresh(), tmp_path)


def test_discard_moves_the_state_aside(tmp_path: Path) -> None:
    assert discard_state(tmp_path) is None
    save_state(engine_with_pages(), tmp_path, ephemeral=False, server_id=None)
    aside = discard_state(tmp_path)
    assert aside is not None and aside.exists() and not state_path(tmp_path).exists()
    assert restore_state(fresh(), tmp_path) is None


def test_an_unwritable_directory_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StateDirError, match=str(blocker)):
        save_state(engine_with_pages(), blocker, ephemeral=False, server_id=None)
