"""A raw socket speaking frames, for tests that must send what no client would."""

from __future__ import annotations

import socket
from typing import Any

import msgpack

from tmem.proto import (
    NO_POOL,
    Opcode,
    PoolSpec,
    Request,
    Response,
    ResponseDecoder,
    Status,
    encode,
    encode_pool_flags,
)

#: A test waits this long for a reply before failing (generous for CI).
READ_TIMEOUT_S = 10.0


class RawConn:
    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=READ_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = ResponseDecoder()
        self.next_id = 1

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, opcode: int, **fields: Any) -> int:
        rid = fields.pop("request_id", self.next_id)
        self.next_id += 1
        self.sock.sendall(encode(Request(opcode, request_id=rid, **fields)))
        return rid

    def recv(self) -> Response:
        while True:
            frames = self.decoder.next_frame()
            if isinstance(frames, Response):
                return frames
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("server closed the connection")
            self.decoder.feed(data)

    def is_closed_by_peer(self) -> bool:
        """True when the server closed the connection (EOF or reset)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, TimeoutError):
            return True

    def call(self, opcode: int, **fields: Any) -> Response:
        rid = self.send(opcode, **fields)
        resp = self.recv()
        assert resp.request_id == rid, (resp, rid)
        return resp

    def hello(self, name: str = "tester", token: str | None = None) -> Response:
        body: dict[str, Any] = {"client": name}
        if token is not None:
            body["token"] = token
        return self.call(Opcode.HELLO, payload=msgpack.packb(body))

    def new_pool(self, **spec: Any) -> int:
        uuid = spec.pop("uuid", 0)
        resp = self.call(
            Opcode.NEW_POOL,
            arg=encode_pool_flags(PoolSpec(**spec)),
            object_id=uuid,
            pool_id=NO_POOL,
        )
        assert resp.status == Status.OK, error_of(resp)
        return resp.value


def error_of(resp: Response) -> str:
    if not resp.payload:
        return f"status {resp.status}"
    return f"status {resp.status}: {msgpack.unpackb(resp.payload)}"
