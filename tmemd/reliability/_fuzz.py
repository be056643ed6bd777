"""Bad input at volume: a million fuzzed frames against a live daemon.

A keeper client stores secret pages (random bytes, unique) in a persistent
and an ephemeral pool.  Then connections, one after another, say HELLO as
the client "fuzz" and pipeline frames built from valid ones (new pools,
puts, gets, flushes, pings, control bodies) with one to three bytes
mutated anywhere past the HELLO, or, one connection in ``RANDOM_EVERY``,
plain random bytes.  A reader thread per connection drains and decodes
every reply (so the daemon's backpressure never stalls the writer) and
looks for any secret page in any payload: a *cross-client read*.  A
framing error closes the connection, as the protocol says; the next one
starts afresh.  Afterwards the daemon must still be running, with no
traceback in its log, and the keeper must read every page back.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from dataclasses import dataclass

import msgpack

from tmem.client import Client
from tmem.proto import (
    NO_POOL,
    REQUEST_HEADER_BYTES,
    Opcode,
    PoolSpec,
    RemoteProtocolError,
    Request,
    Response,
    ResponseDecoder,
    encode,
    encode_pool_flags,
)

from ._harness import DaemonProcess

__all__ = ["FuzzTotals", "fuzz"]

PAGE = 4096
#: Frames per connection before it is closed and a new one opened.
FRAMES_PER_CONNECTION = 4000
#: Frames written per ``sendall``.
SEND_BATCH_FRAMES = 200
#: One connection in this many sends random bytes instead of frames.
RANDOM_EVERY = 20
#: Secret pages per keeper pool.
SECRET_PAGES = 64
#: Share of mutations that hit the framing bytes (magic, version, length).
FRAMING_MUTATION_P = 0.0002
_FRAMING_BYTES = (0, 1, 44, 45, 46, 47)
#: Bound on waiting for a connection's replies after its last frame.
DRAIN_TIMEOUT_S = 10.0


@dataclass
class FuzzTotals:
    frames: int = 0
    connections: int = 0
    replies: int = 0
    cross_client_reads: int = 0
    keeper_wrong: int = 0


def _templates(rng: random.Random) -> list[bytes]:
    """Valid frames of every kind the fuzzer mutates."""
    frames = []
    for spec in (PoolSpec(), PoolSpec(persistent=True), PoolSpec(precompressed=True)):
        frames.append(encode(Request(Opcode.NEW_POOL, arg=encode_pool_flags(spec))))
    data = rng.randbytes(PAGE // 2) + bytes(PAGE // 2)
    for pool in (0, 1, 2, 63, NO_POOL):
        for index in (0, 1, 1 << 31):
            frames.append(encode(Request(Opcode.PUT_PAGE, pool_id=pool, index=index, payload=data)))
            frames.append(encode(Request(Opcode.GET_PAGE, pool_id=pool, index=index, flags=2)))
            frames.append(encode(Request(Opcode.FLUSH_PAGE, pool_id=pool, index=index)))
        frames.append(encode(Request(Opcode.FLUSH_OBJECT, pool_id=pool)))
        frames.append(encode(Request(Opcode.DESTROY_POOL, pool_id=pool)))
    frames.append(encode(Request(Opcode.PING)))
    for body in ({"cmd": "stats"}, {"cmd": "list_pools"}, {"cmd": "list_clients"}):
        frames.append(encode(Request(Opcode.CONTROL, payload=msgpack.packb(body))))
    return frames


def _mutate(frame: bytes, rng: random.Random) -> bytes:
    """One to three bytes flipped: mostly in the fields a handler validates
    (opcode to arg) or the payload, rarely in the framing (magic, version,
    length), which ends the connection and so would end the session early."""
    data = bytearray(frame)
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if roll < FRAMING_MUTATION_P:
            at = rng.choice(_FRAMING_BYTES)
        elif roll < 0.3 and len(data) > REQUEST_HEADER_BYTES:
            at = rng.randrange(REQUEST_HEADER_BYTES, len(data))
        else:
            at = rng.randrange(2, 44)
        data[at] ^= rng.randint(1, 255)
    return bytes(data)


class _Reader(threading.Thread):
    """Drains one connection, decoding replies and looking for secrets."""

    def __init__(self, sock: socket.socket, secrets: set[bytes], totals: FuzzTotals) -> None:
        super().__init__(daemon=True)
        self.sock, self.secrets, self.totals = sock, secrets, totals

    def run(self) -> None:
        decoder = ResponseDecoder()
        try:
            while data := self.sock.recv(1 << 16):
                decoder.feed(data)
                while isinstance(frame := decoder.next_frame(), Response):
                    self.totals.replies += 1
                    if frame.payload in self.secrets:
                        self.totals.cross_client_reads += 1
        except (OSError, RemoteProtocolError):
            return


def _session(
    address: tuple[str, int], frames: list[bytes], secrets: set[bytes], totals: FuzzTotals
) -> None:
    """Send ``frames`` in batches until the daemon closes the connection (a
    framing error, as the protocol says): only frames sent while it was
    open are counted."""
    sock = socket.create_connection(address, timeout=DRAIN_TIMEOUT_S)
    reader = _Reader(sock, secrets, totals)
    reader.start()
    try:
        for start in range(0, len(frames), SEND_BATCH_FRAMES):
            if not reader.is_alive():
                break
            batch = frames[start : start + SEND_BATCH_FRAMES]
            sock.sendall(b"".join(batch))
            totals.frames += len(batch)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    reader.join(timeout=DRAIN_TIMEOUT_S)
    sock.close()


def _keeper(
    daemon: DaemonProcess, rng: random.Random
) -> tuple[dict[tuple[int, int], bytes], Client]:
    keeper = Client(daemon.address, client_name="keeper", timeout=30.0)
    stored = {}
    for persistent in (True, False):
        pool = keeper.new_pool(persistent=persistent)
        for index in range(SECRET_PAGES):
            secret = rng.randbytes(PAGE)
            if pool.put(0, index, secret):
                stored[(pool.pool_id, index)] = secret
    return stored, keeper


def fuzz(daemon: DaemonProcess, frames: int, seed: int) -> FuzzTotals:
    """Send at least ``frames`` fuzzed frames (module docstring); the totals."""
    rng = random.Random(seed)
    stored, keeper = _keeper(daemon, rng)
    secrets = set(stored.values())
    totals = FuzzTotals()
    templates = _templates(rng)
    hello = encode(Request(Opcode.HELLO, payload=msgpack.packb({"client": "fuzz", "token": None})))
    address = ("127.0.0.1", daemon.port)
    while totals.frames < frames and daemon.alive():
        totals.connections += 1
        if totals.connections % RANDOM_EVERY == 0:
            # Random bytes: the daemon closes at the first bad magic; one "frame".
            _session(address, [rng.randbytes(rng.randint(1, 4096))], secrets, totals)
            continue
        picks = rng.choices(templates, k=FRAMES_PER_CONNECTION)
        batch = [hello] + [_mutate(f, rng) if rng.random() < 0.8 else f for f in picks]
        _session(address, batch, secrets, totals)
    time.sleep(0.1)
    for (pool_id, index), secret in stored.items():
        got = keeper.pool(pool_id).get(0, index, exclusive=False)
        # Ephemeral pages may be gone; never other bytes.
        totals.keeper_wrong += got is not None and got != secret
        totals.keeper_wrong += got is None and pool_id == 0
    keeper.close()
    return totals
