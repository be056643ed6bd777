"""Request handlers: one request's fields in, one (status, value, payload) out.

This is the only layer that knows both the wire and the engine.  Each
handler validates the fields the engine cannot see (request flags, the
``arg`` word, how a UUID sits in the object id) in the order PROTOCOL.md
fixes, then calls the engine and maps its typed errors through
``_status``.  A field an opcode does not use must be empty (``UNUSED``:
``NO_POOL``, zero, no payload), else BAD_ARGUMENT, so that a later version
can give it a meaning without old servers silently ignoring it.  Handlers
never touch the transport: the burst loop (``_dispatch``) gathers their
answers and the connection writes a whole read burst at once.

A handler reads its request from the ``RequestFields`` that the decoder
fills in place, so no ``Request`` object is built per frame.  ``handle``
answers any request.  PUT_PAGE and GET_PAGE, nearly every frame, are
answered by ``answer_put`` and ``answer_get``, which ``handle`` and the
burst loop call first and directly: each is its opcode's handler folded
with ``handle``'s own checks (authenticated) and error mapping, so that the
common case is one call, no table look-up and no allocation beyond the
result tuple.  Their checks only test for "anything unusual" and leave the
order and the message of the refusal to the same helpers the other
handlers use, so every error answer is the one PROTOCOL.md section 13
fixes.  Error payloads (msgpack) are built only on errors.  Refusals are
``RequestError`` (``_session``), shared with the CONTROL commands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

import msgpack

from tmem.proto import (
    CLIENT_NAME_CHARS,
    MAX_CLIENT_NAME_CHARS,
    NO_POOL,
    GetFlags,
    Opcode,
    PoolFlagsError,
    RequestFields,
    Status,
    decode_pool_flags,
    is_client_name,
)

from . import __version__
from ._control import pool_kwargs, run_control
from ._session import HandlerContext, RequestError, Session
from ._status import REFUSE_REASON, status_for
from .engine import EngineError

__all__ = [
    "GET_MODES",
    "UNUSED",
    "Result",
    "answer_get",
    "answer_put",
    "failure",
    "handle",
]

log = logging.getLogger("tmemd.handlers")

Result = tuple[int, int, bytes]
_UUID_LIMIT: Final = 1 << 128
#: The GET_PAGE flags there are -> the engine's ``exclusive`` argument
#: (None: the pool's default); any other value is BAD_FLAGS.  Plain int keys:
#: looking up an IntFlag member costs a conversion.
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
_NAME_RULE: Final = (
    f"client name must be 1-{MAX_CLIENT_NAME_CHARS} characters of [{CLIENT_NAME_CHARS}]"
)
#: The NOT_AUTHENTICATED message (PROTOCOL.md section 12.1).
_SEND_HELLO: Final = "send HELLO first"
_PUT: Final = int(Opcode.PUT_PAGE)
_GET: Final = int(Opcode.GET_PAGE)
_OK: Final = int(Status.OK)
_REFUSED: Final = int(Status.REFUSED)
_OK_EMPTY: Result = (_OK, 0, b"")
_MISS: Result = (int(Status.MISS), 0, b"")


def _error(status: int, message: str) -> Result:
    return (status, 0, msgpack.packb({"error": message}))


def _body(req: RequestFields) -> dict[str, Any]:
    try:
        body = msgpack.unpackb(req.payload, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise RequestError(Status.BAD_ARGUMENT, f"payload is not msgpack: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError(Status.BAD_ARGUMENT, "payload must be a msgpack map")
    return body


def _no_arg(req: RequestFields) -> None:
    if req.flags:
        raise RequestError(Status.BAD_FLAGS, f"flags {req.flags:#x} not defined for this op")
    if req.arg:
        raise RequestError(Status.BAD_ARGUMENT, f"arg {req.arg:#x} must be 0 for this op")
    _check_unused(req)


def _check_unused(req: RequestFields) -> None:
    """BAD_ARGUMENT for the first field ``req``'s opcode does not use that is set."""
    for name in UNUSED.get(req.opcode, ()):
        empty, shown = _EMPTY_FIELDS[name]
        if getattr(req, name) != empty:
            raise RequestError(
                Status.BAD_ARGUMENT, f"{name} is unused by this op and must be {shown}"
            )


def answer_put(ctx: HandlerContext, s: Session, req: RequestFields) -> Result:
    """Answer a PUT_PAGE as ``handle`` would; never raises."""
    client = s.client
    if client is None:
        return _error(Status.NOT_AUTHENTICATED, _SEND_HELLO)
    try:
        if req.flags or req.arg:
            _no_arg(req)
        refusal = ctx.engine.put(client, req.pool_id, req.object_id, req.index, req.payload)
    except Exception as exc:  # every error becomes an answer
        return failure(exc, s, req)
    if refusal is None:
        return _OK_EMPTY
    return (_REFUSED, REFUSE_REASON[refusal], b"")


def answer_get(ctx: HandlerContext, s: Session, req: RequestFields) -> Result:
    """Answer a GET_PAGE as ``handle`` would; never raises."""
    client = s.client
    if client is None:
        return _error(Status.NOT_AUTHENTICATED, _SEND_HELLO)
    try:
        flags = req.flags
        if req.arg or req.payload or flags not in GET_MODES:
            _check_get(req)
        page = ctx.engine.get(client, req.pool_id, req.object_id, req.index, GET_MODES[flags])
    except Exception as exc:  # every error becomes an answer
        return failure(exc, s, req)
    if page is None:
        return _MISS
    return (_OK, 0, page)


def _check_get(req: RequestFields) -> None:
    """Raise the refusal for a GET_PAGE's first bad field (PROTOCOL.md section 13)."""
    if req.flags not in GET_MODES:
        raise RequestError(Status.BAD_FLAGS, f"bad get flags {req.flags:#x}")
    if req.arg:
        raise RequestError(Status.BAD_ARGUMENT, f"arg {req.arg:#x} must be 0 for GET_PAGE")
    _check_unused(req)


def _flush_page(ctx: HandlerContext, s: Session, req: RequestFields) -> Result:
    _no_arg(req)
    assert s.client is not None
    flushed = ctx.engine.flush_page(s.client, req.pool_id, req.object_id, req.index)
    return (Status.OK, int(flushed), b"")


def _flush_object(ctx: HandlerContext, s: Session, req: RequestFields) -> Result:
    _no_arg(req)
    assert s.client is not None
    count = ctx.engine.flush_object(s.client, req.pool_id, req.object_id)
    return (Status.OK, min(count, 0xFFFFFFFF), b"")


def _new_pool(ctx: HandlerContext, s: Session, req: RequestFields) -> Result:
    if req.flags:
        raise RequestError(Status.BAD_FLAGS, f"flags {req.flags:#x} not defined for NEW_POOL")
    try:
        spec = decode_pool_flags(req.arg)
    except PoolFlagsError as exc:
        raise RequestError(exc.status, str(exc)) from None
    if spec.shared:
        if not 0 < req.object_id < _UUID_LIMIT:
            raise RequestError(
                Status.BAD_ARGUMENT, "a shared pool needs a 128-bit UUID in object_id"
            )
        uuid: int | None = req.object_id
    elif req.object_id:
        raise RequestError(Status.BAD_ARGUMENT, "object_id must be 0 for a private pool")
    else:
        uuid = None
    if req.payload or req.index or req.pool_id != NO_POOL:
        raise RequestError(Status.BAD_ARGUMENT, "NEW_POOL takes no pool id, index or payload")
    assert s.client is not None
    pool_id = ctx.engine.new_pool(s.client, shared_uuid=uuid, **pool_kwargs(spec))
    log.debug("client %s new pool %d %s", s.client, pool_id, spec)
    return (Status.OK, pool_id, b"")


def _destroy_pool(ctx: HandlerContext, s: Session, req: RequestFields) -> Result:
    _no_arg(req)
    assert s.client is not None
    ctx.engine.destroy_pool(s.client, req.pool_id)
    return _OK_EMPTY


def _hello(ctx: HandlerContext, s: Session, req: RequestFields) -> Result:
    _no_arg(req)
    if s.client is not None:
        raise RequestError(Status.BAD_ARGUMENT, "already said HELLO on this connection")
    body = _body(req)
    name, token = body.get("client"), body.get("token")
    if not is_client_name(name):
        raise RequestError(Status.BAD_ARGUMENT, _NAME_RULE)
    if token is not None and not isinstance(token, str):
        raise RequestError(Status.BAD_ARGUMENT, "token must be a string")
    admin = False
    if ctx.authenticate is not None:
        throttle = ctx.auth_throttle
        if throttle is not None and not throttle.allow(s.peer, name):
            log.warning("auth throttled for client %s from %s", name, s.peer)
            raise RequestError(Status.AUTH_FAILED, "too many failed HELLOs; token not checked")
        ok, admin = ctx.authenticate(name, token)
        if not ok:
            if throttle is not None:
                throttle.failed(s.peer, name)
            log.info("auth failed for client %s from %s", name, s.peer)
            raise RequestError(Status.AUTH_FAILED, "unknown client or wrong token")
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


def _ping(ctx: HandlerContext, s: Session, req: RequestFields) -> Result:
    _no_arg(req)
    return _OK_EMPTY


def _control(ctx: HandlerContext, s: Session, req: RequestFields) -> Result:
    _no_arg(req)
    body = _body(req)
    assert s.client is not None
    return (Status.OK, 0, msgpack.packb(run_control(ctx, s, body)))


Handler = Callable[[HandlerContext, Session, RequestFields], Result]
#: The handlers of every opcode but PUT_PAGE and GET_PAGE (``answer_put``
#: and ``answer_get``).  They raise; ``handle`` makes errors answers.
HANDLERS: dict[int, Handler] = {
    Opcode.FLUSH_PAGE: _flush_page,
    Opcode.FLUSH_OBJECT: _flush_object,
    Opcode.NEW_POOL: _new_pool,
    Opcode.DESTROY_POOL: _destroy_pool,
    Opcode.CONTROL: _control,
    Opcode.HELLO: _hello,
    Opcode.PING: _ping,
}
#: Ops a connection may send before HELLO.
PRE_AUTH_OPS: Final = frozenset({Opcode.HELLO, Opcode.PING})


def handle(ctx: HandlerContext, session: Session, req: RequestFields) -> Result:
    """Answer one request; never raises for anything a peer can send."""
    opcode = req.opcode
    if opcode == _PUT:
        return answer_put(ctx, session, req)
    if opcode == _GET:
        return answer_get(ctx, session, req)
    handler = HANDLERS.get(opcode)
    if handler is None:
        return _error(Status.BAD_OPCODE, f"unknown opcode {opcode}")
    if session.client is None and opcode not in PRE_AUTH_OPS:
        return _error(Status.NOT_AUTHENTICATED, _SEND_HELLO)
    try:
        return handler(ctx, session, req)
    except Exception as exc:  # every error becomes an answer
        return failure(exc, session, req)


def failure(exc: Exception, session: Session, req: RequestFields) -> Result:
    """The answer to a request whose handling raised ``exc``.

    Engine errors by their code, refusals as raised; anything else is a
    bug, logged with its traceback, INTERNAL_ERROR.
    """
    if isinstance(exc, EngineError):
        return _error(status_for(exc.code), str(exc))
    if isinstance(exc, RequestError):
        return _error(exc.status, str(exc))
    what = req.request().describe()
    log.error("internal error handling %s from %s", what, session.peer, exc_info=exc)
    return _error(Status.INTERNAL_ERROR, "internal error; see the daemon log")
