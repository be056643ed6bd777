"""How fast can a peer guess tokens?  Failed HELLOs per second, measured.

Starts ``tmemd`` on loopback with an auth file naming one client, then for
``--seconds`` sends HELLOs with wrong tokens for that name from
``--connections`` threads, each on a fresh connection (the daemon closes a
connection after a failed HELLO), and prints the tries per second and how
many of them the daemon actually checked (answered "unknown client or wrong
token") rather than refused unchecked because of the throttle.

    .venv/bin/python bench/auth_failures.py --seconds 5
"""

from __future__ import annotations

import argparse
import secrets
import socket
import tempfile
import threading
import time
from pathlib import Path

import msgpack

from tmem.bench._peers import Server, start_server
from tmem.proto import Opcode, Request, Response, ResponseDecoder, Status, encode
from tmemd._auth import hash_token

#: The daemon's arena: no page is stored here, the smallest will do.
DAEMON_MEMORY_BYTES = 16 << 20
#: A reply slower than this ends the run (the daemon is expected to answer).
REPLY_TIMEOUT_S = 10.0


def start_daemon(workdir: Path) -> Server:
    auth = workdir / "auth.toml"
    auth.write_text(f'[clients.victim]\ntoken_sha256 = "{hash_token(secrets.token_hex())}"\n')
    return start_server(
        "tmemd", workdir, DAEMON_MEMORY_BYTES, extra_args=["--auth-file", str(auth)]
    )


def one_try(port: int) -> bytes:
    """One wrong-token HELLO on a fresh connection; the error message back."""
    body = msgpack.packb({"client": "victim", "token": secrets.token_hex(8)})
    with socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT_S) as sock:
        sock.sendall(encode(Request(Opcode.HELLO, request_id=1, payload=body)))
        decoder = ResponseDecoder()
        while True:
            frame = decoder.next_frame()
            if isinstance(frame, Response):
                if frame.status != Status.AUTH_FAILED:
                    raise RuntimeError(f"unexpected answer {frame}")
                return bytes(msgpack.unpackb(frame.payload)["error"], "utf-8")
            data = sock.recv(1 << 16)
            if not data:
                raise ConnectionError("closed without an answer")
            decoder.feed(data)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=4, help="concurrent guessers")
    args = p.parse_args()
    counts = {"checked": 0, "refused unchecked": 0}
    lock = threading.Lock()
    with tempfile.TemporaryDirectory() as tmp:
        daemon = start_daemon(Path(tmp))
        port = daemon.port
        try:
            end = time.monotonic() + args.seconds

            def guess() -> None:
                while time.monotonic() < end:
                    message = one_try(port)
                    key = "checked" if b"wrong token" in message else "refused unchecked"
                    with lock:
                        counts[key] += 1

            threads = [threading.Thread(target=guess) for _ in range(args.connections)]
            t0 = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - t0
        finally:
            daemon.stop()
    total = sum(counts.values())
    print(
        f"failed HELLOs: {total / elapsed:.0f} tries/s, of which tokens checked "
        f"{counts['checked'] / elapsed:.1f}/s ({counts['checked']} in {elapsed:.1f} s; "
        f"{counts['refused unchecked']} refused unchecked by the throttle)"
    )


if __name__ == "__main__":
    main()
