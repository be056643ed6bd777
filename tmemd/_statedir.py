"""The state directory (``--state-dir``): where a saved engine state lives.

The engine writes and reads its state as a byte stream
(``tmemd.engine._snapshot`` has the format and the rules); this module is
the thin file layer around it, kept apart so that it can be tested without
a daemon.

Atomic replacement: a save writes ``STATE_FILE`` under a temporary name in
the same directory, fsyncs it, renames it over ``STATE_FILE`` and fsyncs
the directory, so the rename itself is durable.  A crash (or kill -9) at any
point leaves either the previous state file, whole, or none if there was
none: never a mix, and a leftover temporary file is removed by the next
start.  One file rather than one per pool, because only a single rename is
atomic: several files would need a second level of indirection to switch
together.

Refusal: a state that cannot be read whole is never half used.  Any problem
(truncated, checksum, another format version, inconsistent, too big for
``--memory``) raises ``StateDirError`` naming the file and the problem; the
daemon exits non-zero with it, and ``--discard-state`` is the operator's way
to start empty on purpose: the old file is kept beside, renamed with the
``DISCARDED_SUFFIX``, for inspection.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from .config import DaemonConfig
from .engine import Engine, RestoreSummary, SaveSummary, StateError

__all__ = [
    "DISCARDED_SUFFIX",
    "STATE_FILE",
    "StateDirError",
    "discard_state",
    "restore_at_start",
    "restore_state",
    "save_at_shutdown",
    "save_now",
    "save_state",
    "state_path",
]

log = logging.getLogger("tmemd.state")

#: The state file's name inside the state directory.
STATE_FILE = "tmemd.state"
#: Where ``--discard-state`` moves an unwanted state file.
DISCARDED_SUFFIX = ".discarded"
#: Prefix of a save in progress; any such file at start is from a crash.
_TMP_PREFIX = f".{STATE_FILE}.tmp."
#: Write buffer of a save: 1 MiB turns the engine's many small writes into
#: few system calls without holding much memory.
WRITE_BUFFER_BYTES = 1 << 20
#: A state directory holds pages of every client: owner-only.
DIR_MODE = 0o700
FILE_MODE = 0o600


class StateDirError(Exception):
    """The state directory or its file cannot be used; the message names the file."""


def state_path(directory: str | Path) -> Path:
    """The state file in ``directory``."""
    return Path(directory) / STATE_FILE


def _prepare(directory: Path) -> None:
    """Create the directory if needed and remove temporary files of crashed saves."""
    try:
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        for leftover in directory.glob(f"{_TMP_PREFIX}*"):
            leftover.unlink()
    except OSError as exc:
        raise StateDirError(f"state directory {directory}: {exc.strerror or exc}") from None


def _owner_only(path: str, flags: int) -> int:
    return os.open(path, flags, FILE_MODE)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_state(
    engine: Engine, directory: str | Path, *, ephemeral: bool, server_id: str | None
) -> SaveSummary:
    """Write the engine's state to ``directory`` atomically (see the module docstring)."""
    folder = Path(directory)
    _prepare(folder)
    tmp = folder / f"{_TMP_PREFIX}{os.getpid()}"
    try:
        with open(tmp, "wb", buffering=WRITE_BUFFER_BYTES, opener=_owner_only) as fh:
            summary = engine.save_state(
                fh.write, ephemeral=ephemeral, extra={"server_id": server_id}
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, state_path(folder))
        _fsync_dir(folder)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StateDirError(f"cannot save to {tmp}: {exc.strerror or exc}") from None
    return summary


def restore_state(engine: Engine, directory: str | Path) -> RestoreSummary | None:
    """Restore ``directory``'s state into a fresh engine; None if there is none."""
    folder = Path(directory)
    _prepare(folder)
    path = state_path(folder)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, after the restore
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateDirError(f"state file {path}: {exc.strerror or exc}") from None
    with fh:
        try:
            return engine.restore_state(fh.read)
        except StateError as exc:
            raise StateDirError(f"state file {path}: {exc}") from None
        except OSError as exc:
            raise StateDirError(f"state file {path}: {exc.strerror or exc}") from None


def discard_state(directory: str | Path) -> Path | None:
    """Move an existing state file aside; return where it went (None: there was none)."""
    folder = Path(directory)
    _prepare(folder)
    path = state_path(folder)
    if not path.exists():
        return None
    aside = path.with_name(STATE_FILE + DISCARDED_SUFFIX)
    try:
        os.replace(path, aside)
        _fsync_dir(folder)
    except OSError as exc:
        raise StateDirError(f"cannot move {path} aside: {exc.strerror or exc}") from None
    return aside


# --- the daemon's hooks: at start, on tmemctl save, at shutdown -------------------


def restore_at_start(engine: Engine, config: DaemonConfig) -> str | None:
    """``--state-dir`` at start, before listening: restore the saved state
    (or move it aside with ``--discard-state``); return its ``server_id``.
    Raises ``StateDirError`` for a state that cannot be used."""
    if config.state_dir is None:
        return None
    if config.discard_state:
        aside = discard_state(config.state_dir)
        where = f"the saved state is kept as {aside}" if aside else "there was no saved state"
        log.warning("--discard-state: starting empty on purpose; %s", where)
        return None
    t0 = time.perf_counter()
    summary = restore_state(engine, config.state_dir)
    if summary is None:
        log.info("no saved state in %s: starting empty", config.state_dir)
        return None
    log.info(
        "restored %d pages (%d stored bytes) in %d pools of %d clients from %s in %.2f s",
        summary.pages,
        summary.stored_bytes,
        summary.pools,
        summary.clients,
        state_path(config.state_dir),
        time.perf_counter() - t0,
    )
    if summary.ephemeral_pages_dropped:
        log.warning(
            "dropped %d ephemeral pages of the saved state: they did not fit in --memory",
            summary.ephemeral_pages_dropped,
        )
    server_id = summary.extra.get("server_id")
    return server_id if isinstance(server_id, str) else None


def save_now(engine: Engine, config: DaemonConfig, server_id: str | None) -> dict[str, Any]:
    """Save to ``--state-dir`` now (``tmemctl save`` and shutdown); return what
    was written, as the CONTROL reply reports it."""
    if config.state_dir is None:
        raise StateDirError("no --state-dir: this daemon does not save its state")
    t0 = time.perf_counter()
    summary = save_state(
        engine, config.state_dir, ephemeral=config.save_ephemeral, server_id=server_id
    )
    seconds = time.perf_counter() - t0
    path = state_path(config.state_dir)
    log.info(
        "saved %d pages (%d stored bytes) in %d pools to %s (%d bytes) in %.2f s",
        summary.pages,
        summary.stored_bytes,
        summary.pools,
        path,
        summary.stream_bytes,
        seconds,
    )
    return {
        "path": str(path),
        "pools": summary.pools,
        "pages": summary.pages,
        "stored_bytes": summary.stored_bytes,
        "state_bytes": summary.stream_bytes,
        "seconds": round(seconds, 3),
    }


def save_at_shutdown(engine: Engine, config: DaemonConfig, server_id: str | None) -> bool:
    """The shutdown hook: save if ``--state-dir`` is set, after the server has
    closed (no request can change the engine then); False if the save failed
    (logged; the previous state file is still whole)."""
    if config.state_dir is None:
        return True
    try:
        save_now(engine, config, server_id)
    except StateDirError as exc:
        log.error("%s", exc)
        return False
    return True
