"""Request handlers: one decoded frame in, one (status, value, payload) out.

This is the only layer that knows both the wire and the engine.  Each
handler validates the fields the engine cannot see (request flags, the
``arg`` word, how a UUID sits in the object id) in the order PROTOCOL.md
fixes, then calls the engine and maps its typed errors through
``_status``.  A field an opcode does not use must be empty (``UNUSED``:
``NO_POOL``, zero, no payload), else BAD_ARGUMENT, so that a later version
can give it a meaning without old servers silently ignoring it.  Handlers
never touch the transport: the connection gathers their answers and writes
a whole read burst at once.

Hot path: PUT_PAGE and GET_PAGE are looked up first and do no allocation
beyond the result tuple; error payloads (msgpack) are built only on errors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from tmem.proto import (
    CLIENT_NAME_CHARS,
    MAX_CLIENT_NAME_CHARS,
    NO_POOL,
    GetFlags,
    Opcode,
    PoolFlagsError,
    Request,
    Status,
    decode_pool_flags,
    is_client_name,
)

from . import __version__
from ._control import ControlError, pool_kwargs, run_control
from ._status import REFUSE_REASON, status_for
from ._throttle import AuthThrottle
from .engine import Engine, EngineError

__all__ = ["GET_MODES", "UNUSED", "HandlerContext", "Result", "Session", "failure", "handle"]

log = logging.getLogger("tmemd.handlers")

Result = tuple[int, int, bytes]
_UUID_LIMIT = 1 << 128
#: The GET_PAGE flags there are -> the engine's ``exclusive`` argument
#: (None: the pool's default); any other value is BAD_FLAGS.  Plain int keys:
#: looking up an IntFlag member costs a conversion.  The daemon's inline
#: get path uses the same table.
GET_MODES: dict[int, bool | None] = {
    0: None,
    int(GetFlags.EXCLUSIVE): True,
    int(GetFlags.KEEP): False,
}
#: Fields each opcode leaves unused (PROTOCOL.md section 2), checked after
#: ``flags`` and ``arg`` and before the pool (section 13).  NEW_POOL checks
#: its own, after its pool flags and UUID; PUT_PAGE uses every field.
UNUSED: dict[int, tuple[str, ...]] = {
    Opcode.GET_PAGE: ("payload",),
    Opcode.FLUSH_PAGE: ("payload",),
    Opcode.FLUSH_OBJECT: ("index", "payload"),
    Opcode.DESTROY_POOL: ("object_id", "index", "payload"),
    Opcode.CONTROL: ("pool_id", "object_id", "index"),
    Opcode.HELLO: ("pool_id", "object_id", "index"),
    Opcode.PING: ("pool_id", "object_id", "index", "payload"),
}
#: An unused field's required value, and how an error message names it.
_EMPTY_FIELDS: dict[str, tuple[object, str]] = {
    "pool_id": (NO_POOL, "NO_POOL"),
    "object_id": (0, "0"),
    "index": (0, "0"),
    "payload": (b"", "empty"),
}
#: The BAD_ARGUMENT message for a name that breaks the rule of PROTOCOL.md section 5.
_NAME_RULE = f"client name must be 1-{MAX_CLIENT_NAME_CHARS} characters of [{CLIENT_NAME_CHARS}]"
_OK_EMPTY: Result = (Status.OK, 0, b"")
_MISS: Result = (Status.MISS, 0, b"")


@dataclass(slots=True)
class Session:
    """Per-connection state: who is speaking, once HELLO said so."""

    peer: str
    client: str | None = None
    admin: bool = False


@dataclass(slots=True)
class HandlerContext:
    """What handlers share across connections."""

    engine: Engine
    lease_s: float
    max_request_payload: int
    #: This daemon instance's identity, 32 hex digits (PROTOCOL.md §11.2).
    server_id: str = ""
    #: The limits HELLO announces (PROTOCOL.md §11.2), built once.
    limits: dict[str, Any] = field(default_factory=dict)
    #: Returns (ok, admin) for a client name and token; None = no auth file.
    authenticate: Callable[[str, str | None], tuple[bool, bool]] | None = None
    #: Budgets of failed HELLOs per address and name (with an auth file).
    auth_throttle: AuthThrottle | None = None
    #: Saves the engine to the state directory now and returns what was
    #: written (``tmemctl save``); None: the daemon has no ``--state-dir``.
    save_state: Callable[[], dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Refuse(Exception):
    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> Result:
    return (status, 0, msgpack.packb({"error": message}))


def _body(req: Request) -> dict[str, Any]:
    try:
        body = msgpack.unpackb(req.payload, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise _Refuse(Status.BAD_ARGUMENT, f"payload is not msgpack: {exc}") from None
    if not isinstance(body, dict):
        raise _Refuse(Status.BAD_ARGUMENT, "payload must be a msgpack map")
    return body


def _no_arg(req: Request) -> None:
    if req.flags:
        raise _Refuse(Status.BAD_FLAGS, f"flags {req.flags:#x} not defined for this op")
    if req.arg:
        raise _Refuse(Status.BAD_ARGUMENT, f"arg {req.arg:#x} must be 0 for this op")
    _check_unused(req)


def _check_unused(req: Request) -> None:
    """BAD_ARGUMENT for the first field ``req``'s opcode does not use that is set."""
    for name in UNUSED.get(req.opcode, ()):
        empty, shown = _EMPTY_FIELDS[name]
        if getattr(req, name) != empty:
            raise _Refuse(Status.BAD_ARGUMENT, f"{name} is unused by this op and must be {shown}")


def _put(ctx: HandlerContext, s: Session, req: Request) -> Result:
    _no_arg(req)
    assert s.client is not None
    refusal = ctx.engine.put(s.client, req.pool_id, req.object_id, req.index, req.payload)
    if refusal is None:
        return _OK_EMPTY
    return (Status.REFUSED, REFUSE_REASON[refusal], b"")


def _get(ctx: HandlerContext, s: Session, req: Request) -> Result:
    flags = req.flags
    if flags not in GET_MODES:
        raise _Refuse(Status.BAD_FLAGS, f"bad get flags {flags:#x}")
    if req.arg:
        raise _Refuse(Status.BAD_ARGUMENT, f"arg {req.arg:#x} must be 0 for GET_PAGE")
    _check_unused(req)
    exclusive = GET_MODES[flags]
    assert s.client is not None
    page = ctx.engine.get(s.client, req.pool_id, req.object_id, req.index, exclusive)
    if page is None:
        return _MISS
    return (Status.OK, 0, page)


def _flush_page(ctx: HandlerContext, s: Session, req: Request) -> Result:
    _no_arg(req)
    assert s.client is not None
    flushed = ctx.engine.flush_page(s.client, req.pool_id, req.object_id, req.index)
    return (Status.OK, int(flushed), b"")


def _flush_object(ctx: HandlerContext, s: Session, req: Request) -> Result:
    _no_arg(req)
    assert s.client is not None
    count = ctx.engine.flush_object(s.client, req.pool_id, req.object_id)
    return (Status.OK, min(count, 0xFFFFFFFF), b"")


def _new_pool(ctx: HandlerContext, s: Session, req: Request) -> Result:
    if req.flags:
        raise _Refuse(Status.BAD_FLAGS, f"flags {req.flags:#x} not defined for NEW_POOL")
    try:
        spec = decode_pool_flags(req.arg)
    except PoolFlagsError as exc:
        raise _Refuse(exc.status, str(exc)) from None
    if spec.shared:
        if not 0 < req.object_id < _UUID_LIMIT:
            raise _Refuse(Status.BAD_ARGUMENT, "a shared pool needs a 128-bit UUID in object_id")
        uuid: int | None = req.object_id
    elif req.object_id:
        raise _Refuse(Status.BAD_ARGUMENT, "object_id must be 0 for a private pool")
    else:
        uuid = None
    if req.payload or req.index or req.pool_id != NO_POOL:
        raise _Refuse(Status.BAD_ARGUMENT, "NEW_POOL takes no pool id, index or payload")
    assert s.client is not None
    pool_id = ctx.engine.new_pool(s.client, shared_uuid=uuid, **pool_kwargs(spec))
    log.debug("client %s new pool %d %s", s.client, pool_id, spec)
    return (Status.OK, pool_id, b"")


def _destroy_pool(ctx: HandlerContext, s: Session, req: Request) -> Result:
    _no_arg(req)
    assert s.client is not None
    ctx.engine.destroy_pool(s.client, req.pool_id)
    return _OK_EMPTY


def _hello(ctx: HandlerContext, s: Session, req: Request) -> Result:
    _no_arg(req)
    if s.client is not None:
        raise _Refuse(Status.BAD_ARGUMENT, "already said HELLO on this connection")
    body = _body(req)
    name, token = body.get("client"), body.get("token")
    if not is_client_name(name):
        raise _Refuse(Status.BAD_ARGUMENT, _NAME_RULE)
    if token is not None and not isinstance(token, str):
        raise _Refuse(Status.BAD_ARGUMENT, "token must be a string")
    admin = False
    if ctx.authenticate is not None:
        throttle = ctx.auth_throttle
        if throttle is not None and not throttle.allow(s.peer, name):
            log.warning("auth throttled for client %s from %s", name, s.peer)
            raise _Refuse(Status.AUTH_FAILED, "too many failed HELLOs; token not checked")
        ok, admin = ctx.authenticate(name, token)
        if not ok:
            if throttle is not None:
                throttle.failed(s.peer, name)
            log.info("auth failed for client %s from %s", name, s.peer)
            raise _Refuse(Status.AUTH_FAILED, "unknown client or wrong token")
    ctx.engine.connect(name)
    s.client, s.admin = name, admin
    log.info("client %s connected from %s", name, s.peer)
    reply = {
        "server": "tmemd",
        "version": __version__,
        "protocol": 1,
        "lease_s": ctx.lease_s,
        "max_request_payload": ctx.max_request_payload,
        "server_id": ctx.server_id,
        "limits": ctx.limits,
    }
    return (Status.OK, 0, msgpack.packb(reply))


def _ping(ctx: HandlerContext, s: Session, req: Request) -> Result:
    _no_arg(req)
    return _OK_EMPTY


def _control(ctx: HandlerContext, s: Session, req: Request) -> Result:
    _no_arg(req)
    body = _body(req)
    assert s.client is not None
    try:
        reply = run_control(ctx, s, body)
    except ControlError as exc:
        raise _Refuse(exc.status, str(exc)) from None
    return (Status.OK, 0, msgpack.packb(reply))


Handler = Callable[[HandlerContext, Session, Request], Result]
HANDLERS: dict[int, Handler] = {
    Opcode.PUT_PAGE: _put,
    Opcode.GET_PAGE: _get,
    Opcode.FLUSH_PAGE: _flush_page,
    Opcode.FLUSH_OBJECT: _flush_object,
    Opcode.NEW_POOL: _new_pool,
    Opcode.DESTROY_POOL: _destroy_pool,
    Opcode.CONTROL: _control,
    Opcode.HELLO: _hello,
    Opcode.PING: _ping,
}
#: Ops a connection may send before HELLO.
PRE_AUTH_OPS = frozenset({Opcode.HELLO, Opcode.PING})


def handle(ctx: HandlerContext, session: Session, req: Request) -> Result:
    """Answer one request; never raises for anything a peer can send."""
    handler = HANDLERS.get(req.opcode)
    if handler is None:
        return _error(Status.BAD_OPCODE, f"unknown opcode {req.opcode}")
    if session.client is None and req.opcode not in PRE_AUTH_OPS:
        return _error(Status.NOT_AUTHENTICATED, "send HELLO first")
    try:
        return handler(ctx, session, req)
    except Exception as exc:  # every error becomes an answer
        return failure(exc, session, req)


def failure(exc: Exception, session: Session, req: Request) -> Result:
    """The answer to a request whose handling raised ``exc``.

    Shared by ``handle`` and the daemon's inline put/get path, so both map
    errors the same way: engine errors by their code, refusals as raised,
    anything else is a bug, logged with its traceback, INTERNAL_ERROR.
    """
    if isinstance(exc, EngineError):
        return _error(status_for(exc.code), str(exc))
    if isinstance(exc, _Refuse):
        return _error(exc.status, str(exc))
    log.error("internal error handling %s from %s", req.describe(), session.peer, exc_info=exc)
    return _error(Status.INTERNAL_ERROR, "internal error; see the daemon log")
