"""Warm restart against the real daemon (docs/warm-restart.md): ``--state-dir``.

Persistent pages go through a SIGTERM and a new start and come back byte
for byte to the real client, under the same pool ids, within the lease;
``tmemctl save`` writes the same state on demand; a kill -9 at several
points during a save of a large state leaves the previous state or the new
one, whole; a damaged state, or one too big for ``--memory``, stops the
daemon with a message naming the file and the problem, and
``--discard-state`` starts empty on purpose.
"""

from __future__ import annotations

import random
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tmem.client import BadPool, Client, TmemError

from ..conftest import Daemon, start_daemon
from . import authfile
from .tmemctl import run as tmemctl_run

PAGE = 4096
TOKENS = {"web": "web-token", "ops": "ops-token"}
STATE_FILE = "tmemd.state"
#: Bound on a refused start and on one tmemctl run.
RUN_TIMEOUT_S = 60.0
Model = dict[tuple[int, int], bytes]
TMEMD = [sys.executable, "-m", "tmemd.cli", "--listen", "127.0.0.1:0"]


def page(seed: int) -> bytes:
    """Half random, half zeros: compresses about 2:1, never same-filled."""
    return random.Random(seed).randbytes(PAGE // 2) + bytes(PAGE // 2)


@pytest.fixture
def auth(tmp_path: Path) -> Path:
    return authfile.write_auth(tmp_path, TOKENS)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons to stop at the end; those killed on purpose are not checked."""
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


def start(tmp_path: Path, daemons: list[Daemon], auth: Path, *args: str) -> Daemon:
    d = start_daemon(
        tmp_path,
        "--memory",
        "64MiB",
        "--auth-file",
        str(auth),
        "--state-dir",
        str(tmp_path / "state"),
        *args,
    )
    daemons.append(d)
    return d


def stop_cleanly(d: Daemon) -> None:
    assert d.stop() == 0, d.log()
    assert "Traceback" not in d.log(), d.log()


def client(d: Daemon, name: str = "web") -> Client:
    return Client(d.address, client_name=name, token=TOKENS[name], timeout=30.0)


def put_model(pool_client: Client, pool_id: int, model: Model) -> None:
    pool = pool_client.pool(pool_id)
    items = [(oid, index, data) for (oid, index), data in model.items()]
    for start_at in range(0, len(items), 512):
        assert all(pool.put_many(items[start_at : start_at + 512]))


def read_model(pool_client: Client, pool_id: int, handles: list[tuple[int, int]]) -> Model:
    pool = pool_client.pool(pool_id)
    got: Model = {}
    for start_at in range(0, len(handles), 512):
        chunk = handles[start_at : start_at + 512]
        for handle, data in zip(chunk, pool.get_many(chunk), strict=True):
            if data is not None:
                got[handle] = data
    return got


def test_persistent_pages_come_back_through_a_restart(
    tmp_path: Path, daemons: list[Daemon], auth: Path
) -> None:
    first = start(tmp_path, daemons, auth)
    model = {(oid, i): page(oid * 1000 + i) for oid in range(4) for i in range(250)}
    web = client(first)
    pool = web.new_pool(persistent=True)
    cache = web.new_pool(persistent=False)
    assert pool.put(9, 0, page(1)) and pool.flush(9, 0)
    put_model(web, pool.pool_id, model)
    cache.put(0, 0, page(7))
    server_id = web.server_info["server_id"]
    stop_cleanly(first)
    assert "saved 1000 pages" in first.log()
    # Same address: the very Client object and Pool handle carry on.
    second = start(tmp_path, daemons, auth, "--listen", first.address)
    assert "restored 1000 pages" in second.log()
    # The old connection died with the first daemon; the client's retry
    # reconnects to the same instance, so the handle carries on.
    assert pool.get(0, 0) == model[(0, 0)]
    assert web.server_info["server_id"] == server_id  # the same instance, restarted
    assert read_model(web, pool.pool_id, list(model)) == model
    assert pool.get(9, 0) is None
    with pytest.raises(BadPool):  # ephemeral pools are not saved by default
        web.pool(cache.pool_id)
    assert web.new_pool(persistent=True).pool_id == 2  # ids 0 and 1 stay used
    web.close()
    stop_cleanly(second)


def test_save_ephemeral_keeps_the_cache_too(
    tmp_path: Path, daemons: list[Daemon], auth: Path
) -> None:
    first = start(tmp_path, daemons, auth, "--save-ephemeral")
    with client(first) as web:
        cache = web.new_pool(persistent=False)
        model = {(0, i): page(i) for i in range(300)}
        put_model(web, cache.pool_id, model)
    stop_cleanly(first)
    second = start(tmp_path, daemons, auth, "--save-ephemeral")
    with client(second) as web:
        assert read_model(web, cache.pool_id, list(model)) == model
    stop_cleanly(second)


def run_tmemctl(d: Daemon, *argv: str) -> subprocess.CompletedProcess[str]:
    return tmemctl_run(d.address, "ops", TOKENS["ops"], *argv)


def test_tmemctl_save_writes_the_state_now(
    tmp_path: Path, daemons: list[Daemon], auth: Path
) -> None:
    first = start(tmp_path, daemons, auth)
    with client(first) as web:
        pool = web.new_pool(persistent=True)
        model = {(1, i): page(i) for i in range(100)}
        put_model(web, pool.pool_id, model)
        done = run_tmemctl(first, "save")
        assert done.returncode == 0, done.stderr
        assert "saved 100 pages" in done.stdout
        with pytest.raises(TmemError, match="FORBIDDEN"):
            web.control("save")
    # kill -9: nothing saved at shutdown, so the restore is tmemctl's state.
    first.proc.kill()
    first.proc.wait()
    second = start(tmp_path, daemons, auth)
    with client(second) as web:
        assert read_model(web, pool.pool_id, list(model)) == model
    stop_cleanly(second)


def save_and_kill(d: Daemon, delay_s: float) -> None:
    """Ask for a save, and kill -9 the daemon ``delay_s`` after asking."""

    def save() -> None:
        try:
            with client(d, "ops") as ops:
                ops.control("save")
        except TmemError:
            pass  # the daemon died under it: that is the point

    thread = threading.Thread(target=save)
    thread.start()
    time.sleep(delay_s)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    thread.join(timeout=RUN_TIMEOUT_S)


def test_kill_9_during_a_save_leaves_the_previous_state_or_the_new_one(
    tmp_path: Path, daemons: list[Daemon], auth: Path
) -> None:
    # About 38 MiB of stored pages, so that a save takes long enough to be cut.
    handles = [(oid, i) for oid in range(8) for i in range(1200)]
    d = start(tmp_path, daemons, auth)
    with client(d) as web:
        pool_id = web.new_pool(persistent=True).pool_id
    with client(d, "ops") as ops:
        seconds = 0.0
        for attempt in range(2):  # a first save warms the page cache
            with client(d) as web:
                put_model(
                    web, pool_id, {h: page(attempt * 100_000 + n) for n, h in enumerate(handles)}
                )
            seconds = float(ops.control("save")["seconds"])
    assert seconds > 0
    current = {h: page(100_000 + n) for n, h in enumerate(handles)}
    leftovers = 0
    for generation, fraction in enumerate((0.05, 0.3, 0.6, 0.9, 1.5), start=1):
        with client(d) as web:
            changed = {h: page(generation * 1_000_000 + n) for n, h in enumerate(handles[::3])}
            put_model(web, pool_id, changed)
        new_state = {**current, **changed}
        save_and_kill(d, seconds * fraction)
        leftovers += any((tmp_path / "state").glob(f".{STATE_FILE}.tmp.*"))
        d = start(tmp_path, daemons, auth)
        with client(d) as web:
            got = read_model(web, pool_id, handles)
        assert got in (current, new_state), f"a mix after a kill at {fraction} of a save"
        current = got
        assert not any((tmp_path / "state").glob(f".{STATE_FILE}.tmp.*"))
    assert leftovers, "no kill landed during a save: the test proved nothing"
    stop_cleanly(d)


def test_kill_9_during_the_first_save_starts_empty_or_whole(
    tmp_path: Path, daemons: list[Daemon], auth: Path
) -> None:
    d = start(tmp_path, daemons, auth)
    handles = [(oid, i) for oid in range(8) for i in range(1200)]
    model = {h: page(n) for n, h in enumerate(handles)}
    with client(d) as web:
        pool_id = web.new_pool(persistent=True).pool_id
        put_model(web, pool_id, model)
    save_and_kill(d, 0.05)
    d = start(tmp_path, daemons, auth)
    with client(d) as web:
        try:
            got = read_model(web, pool_id, handles)
        except BadPool:
            got = {}
    assert got in ({}, model)
    stop_cleanly(d)


def saved_state(tmp_path: Path, daemons: list[Daemon], auth: Path) -> tuple[Path, str]:
    """A state file of 200 pages, and the server_id of the daemon that saved it."""
    d = start(tmp_path, daemons, auth)
    with client(d) as web:
        put_model(web, web.new_pool(persistent=True).pool_id, {(0, i): page(i) for i in range(200)})
        server_id = str(web.server_info["server_id"])
    stop_cleanly(d)
    return tmp_path / "state" / STATE_FILE, server_id


def refused_start(tmp_path: Path, auth: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TMEMD, "--auth-file", str(auth), "--state-dir", str(tmp_path / "state"), *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def future_version(path: Path) -> None:
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, 8, 99)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "problem"),
    [(truncate, "truncated"), (flip_a_byte, "checksum mismatch"), (future_version, "version 99")],
)
def test_a_damaged_state_is_refused_and_discard_starts_empty(
    tmp_path: Path, daemons: list[Daemon], auth: Path, damage: object, problem: str
) -> None:
    path, server_id = saved_state(tmp_path, daemons, auth)
    assert callable(damage)
    damage(path)
    done = refused_start(tmp_path, auth, "--memory", "64MiB")
    assert done.returncode != 0
    assert str(path) in done.stderr and problem in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    d = start(tmp_path, daemons, auth, "--discard-state")
    assert "--discard-state: starting empty on purpose" in d.log()
    assert (path.parent / (STATE_FILE + ".discarded")).exists()
    with client(d) as web:
        with pytest.raises(BadPool):
            web.pool(0)
        assert web.server_info["server_id"] != server_id  # a new instance
    stop_cleanly(d)


def test_a_state_bigger_than_the_new_memory_is_refused(
    tmp_path: Path, daemons: list[Daemon], auth: Path
) -> None:
    d = start(tmp_path, daemons, auth)
    with client(d) as web:
        model = {(0, i): random.Random(i).randbytes(PAGE) for i in range(4000)}
        put_model(web, web.new_pool(persistent=True, codec="none").pool_id, model)
    stop_cleanly(d)
    done = refused_start(tmp_path, auth, "--memory", "8MiB")
    assert done.returncode != 0
    assert "persistent share" in done.stderr and STATE_FILE in done.stderr, done.stderr
    d = start(tmp_path, daemons, auth, "--memory", "32MiB")
    with client(d) as web:
        assert read_model(web, 0, list(model)) == model
    stop_cleanly(d)


def test_a_mapping_comes_back_by_name_through_a_restart(
    tmp_path: Path, daemons: list[Daemon], auth: Path
) -> None:
    first = start(tmp_path, daemons, auth)
    values = {f"key-{i}": random.Random(i).randbytes(i * 997) for i in range(40)}
    with client(first) as web:
        web.mapping("features").update(values)
    stop_cleanly(first)
    second = start(tmp_path, daemons, auth)
    with client(second) as web:
        features = web.mapping("features")  # reattached by name: the listing came back too
        assert sorted(features) == sorted(values)
        assert {key: features[key] for key in values} == values
        features["key-0"] = b"new"
        assert features["key-0"] == b"new"
    stop_cleanly(second)
