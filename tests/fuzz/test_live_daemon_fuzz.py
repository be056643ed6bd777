"""Random and mutated frames against a live daemon (docs/multi-tenancy.md, bad input).

One daemon runs for the whole test.  First a well-behaved client ("keeper")
stores persistent pages.  Then hypothesis opens a fresh connection per
example and sends either random bytes or a session of plausible frames (a
HELLO as "fuzz", then page, pool and control ops with ids, lengths and
msgpack bodies near the valid ones), whole or mutated: bytes flipped, cut
short, or spliced with noise.  The fuzzer then half-closes its side and
reads every reply until the daemon closes.

Checked on every example: whatever the daemon sends decodes as response
frames, with known statuses, and never INTERNAL_ERROR; and the daemon is
still running.  Checked at the end: the keeper gets back every page it
stored, byte for byte, and (by the fixture) the daemon logged no traceback
and exits cleanly.  The fuzzer knows only its own token, so it can reach
nothing of the keeper's; it is bounded by ``max_examples`` and by
``FUZZ_BUDGET_S`` of wall time.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tmem.client import Client
from tmem.proto import (
    NO_POOL,
    OBJECT_ID_LIMIT,
    CodecId,
    NeedData,
    Opcode,
    PoolSpec,
    RemoteProtocolError,
    Request,
    Response,
    ResponseDecoder,
    Status,
    encode,
    encode_pool_flags,
)
from tmemd._auth import hash_token

from ..conftest import Daemon

T = TypeVar("T")
PAGE = 4096
TOKENS = {"keeper": "keeper-token", "fuzz": "fuzz-token"}
KEEPER_PAGES = 64
#: Wall-time budget for the fuzzing phase; examples past it return at once.
FUZZ_BUDGET_S = 20.0
#: Per-connection read bound (the daemon closes as soon as it sees our EOF).
READ_TIMEOUT_S = 5.0
MAX_EXAMPLES = 400
#: Examples between two clean-ups of the fuzzer's own pools.
CLEANUP_EVERY = 25

U32 = st.integers(0, (1 << 32) - 1)
U8 = st.integers(0, 255)
#: Pool ids the fuzzer's own pools get first, and ids it does not have.
POOL_IDS = st.sampled_from([0, 1, 2, 3])
ODD_POOL_IDS = st.sampled_from([63, 64, NO_POOL, 1 << 31]) | U32
OBJECT_IDS = st.sampled_from([0, 1, 7]) | st.integers(0, OBJECT_ID_LIMIT - 1)
INDEXES = st.sampled_from([0, 1, 2, (1 << 32) - 1]) | U32
OPCODES = st.sampled_from([op for op in Opcode if op != Opcode.HELLO])
PAGES = st.sampled_from([bytes(PAGE), random.Random(1).randbytes(PAGE), b"\x07" * PAGE])
CONTROL_COMMANDS = st.sampled_from(
    ["stats", "list_pools", "list_clients", "freeze", "flush_ephemeral", "destroy_client", "x"]
)
CONTROL_BODIES = st.fixed_dictionaries(
    {"cmd": CONTROL_COMMANDS},
    optional={
        "client": st.sampled_from(["fuzz", "keeper", "", 7]),
        "bytes": st.integers(-(1 << 63), (1 << 64) - 1),
        "uuid": st.text(max_size=40),
    },
).map(lambda body: msgpack.packb(body))
POOL_SPECS = st.builds(
    PoolSpec,
    persistent=st.booleans(),
    precompressed=st.booleans(),
    codec=st.sampled_from([CodecId.DEFAULT, CodecId.NONE, CodecId.LZ4]),
).map(encode_pool_flags)


def mostly(draw: st.DrawFn, usual: st.SearchStrategy[T], odd: st.SearchStrategy[T]) -> T:
    """Draw from ``usual`` nine times in ten: valid-looking requests reach the engine."""
    return draw(odd if draw(st.integers(0, 9)) == 0 else usual)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    opcode: int = mostly(draw, OPCODES, U8)
    if opcode == Opcode.CONTROL:
        payload = mostly(draw, CONTROL_BODIES, st.binary(max_size=64))
    elif opcode == Opcode.PUT_PAGE:
        payload = mostly(draw, PAGES, st.binary(max_size=200))
    else:
        payload = mostly(draw, st.just(b""), st.binary(max_size=64))
    get_flags = st.sampled_from([0, 1, 2])
    usual_arg = POOL_SPECS if opcode == Opcode.NEW_POOL else st.just(0)
    return Request(
        opcode,
        request_id=draw(U32),
        pool_id=NO_POOL if opcode == Opcode.NEW_POOL else mostly(draw, POOL_IDS, ODD_POOL_IDS),
        object_id=mostly(draw, st.just(0), OBJECT_IDS)
        if opcode == Opcode.NEW_POOL
        else draw(OBJECT_IDS),
        index=draw(INDEXES),
        flags=mostly(draw, get_flags if opcode == Opcode.GET_PAGE else st.just(0), U8),
        arg=mostly(draw, usual_arg, U32),
        payload=payload,
    )


def new_pools(count: int) -> list[bytes]:
    """NEW_POOL frames: ephemeral and persistent pools for the ops to hit."""
    specs = [PoolSpec(), PoolSpec(persistent=True)] * count
    return [
        encode(Request(Opcode.NEW_POOL, request_id=2 + i, arg=encode_pool_flags(spec)))
        for i, spec in enumerate(specs[:count])
    ]


@st.composite
def sessions(draw: st.DrawFn) -> bytes:
    """Random bytes, or frames (usually after a valid HELLO), maybe mutated."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(min_size=1, max_size=300))
    frames = [encode(r) for r in draw(st.lists(requests(), min_size=1, max_size=12))]
    if draw(st.integers(0, 9)) > 0:
        hello = msgpack.packb({"client": "fuzz", "token": TOKENS["fuzz"]})
        frames[:0] = [encode(Request(Opcode.HELLO, request_id=1, payload=hello))]
        frames[1:1] = new_pools(draw(st.integers(0, 3)))
    data = bytearray(b"".join(frames))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        where = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "cut", "splice"]))
        if kind == "flip":
            data[where] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[max(where, 1) :]
        else:
            data[where:where] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def write_auth(tmp_path: Path) -> Path:
    path = tmp_path / "auth.toml"
    path.write_text(
        "".join(
            f'[clients.{name}]\ntoken_sha256 = "{hash_token(token)}"\n\n'
            for name, token in TOKENS.items()
        )
    )
    return path


def keeper_page(i: int) -> bytes:
    return random.Random(i).randbytes(PAGE // 4) * 4


def exchange(daemon: Daemon, data: bytes) -> list[Response]:
    """Send ``data`` on a fresh connection, half-close, read replies until EOF."""
    decoder = ResponseDecoder()
    frames = []
    with socket.create_connection((daemon.host, daemon.port), timeout=READ_TIMEOUT_S) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon already closed on a framing error: read what it sent
        while True:
            try:
                chunk = sock.recv(1 << 16)
            except ConnectionResetError:
                break
            if not chunk:
                break
            decoder.feed(chunk)
            while not isinstance(frame := decoder.next_frame(), NeedData):
                frames.append(frame)
    return frames


def check_replies(frames: list[Response]) -> None:
    for frame in frames:
        status = Status(frame.status)  # raises for a status the spec does not define
        assert status != Status.INTERNAL_ERROR, frame.describe()


def test_live_daemon_survives_fuzzing(
    daemon_factory: Callable[..., Daemon], tmp_path: Path
) -> None:
    daemon = daemon_factory(
        "--memory", "16MiB", "--auth-file", str(write_auth(tmp_path)), "--lease", "600"
    )
    with Client(daemon.address, client_name="keeper", token=TOKENS["keeper"]) as keeper:
        pool = keeper.new_pool(persistent=True)
        assert all(pool.put_many([(5, i, keeper_page(i)) for i in range(KEEPER_PAGES)]))
        pool_id = pool.pool_id
    deadline = time.monotonic() + FUZZ_BUDGET_S
    sent = [0]
    fuzzer = Client(daemon.address, client_name="fuzz", token=TOKENS["fuzz"])

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=sessions())
    def fuzz(data: bytes) -> None:
        if time.monotonic() > deadline:
            return
        try:
            frames = exchange(daemon, data)
        except RemoteProtocolError as exc:
            raise AssertionError(f"the daemon sent bytes that are not frames: {exc}") from exc
        check_replies(frames)
        assert daemon.proc.poll() is None, "the daemon died"
        sent[0] += 1
        if sent[0] % CLEANUP_EVERY == 0:
            # The fuzzer's pools outlive its connections (the lease): free them
            # now and then, so NEW_POOL does not stay at TOO_MANY_POOLS.
            for entry in fuzzer.list_pools():
                fuzzer.pool(entry["pool_id"]).destroy()

    with fuzzer:
        fuzz()
    assert sent[0] > 0
    with Client(daemon.address, client_name="keeper", token=TOKENS["keeper"]) as keeper:
        got = keeper.pool(pool_id).get_many([(5, i) for i in range(KEEPER_PAGES)])
        assert got == [keeper_page(i) for i in range(KEEPER_PAGES)]
    assert "internal error" not in daemon.log()
    print(f"\nfuzzed {sent[0]} connections")
