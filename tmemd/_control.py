"""CONTROL op commands (msgpack bodies), modelled on Xen's ``xl tmem-*``.

A command is a msgpack map ``{"cmd": NAME, ...args}``; the reply is a map.
Commands a client may run on itself live in ``_SELF``; the rest need an
administrator (``admin = true`` in the auth file) and answer FORBIDDEN to
anyone else, before their arguments are even looked at.  Replies are built
from the engine (``statistics()``, ``client_settings()``) so that
``tmemctl``, metrics and tests all read one source of truth.

Administrator commands and their replies:

=====================  =============================================  =========================
cmd                    arguments                                      reply
=====================  =============================================  =========================
list_clients                                                          {"clients": [stats...]}
freeze, thaw           client                                         the client's settings
destroy_client         client                                         {"client", "pages_freed"}
set_weight             client, weight (1..10000)                      the client's settings
set_cap                client, persistent_cap and/or total_cap        the client's settings
                       (bytes, or nil for no cap; absent: unchanged)
set_codec              client, codec ("lzo", "lz4", "zstd", "none",   the client's settings
                       or nil for the daemon's default)
flush_ephemeral        bytes                                          {"freed_bytes"}
freeable                                                              {"freeable_bytes"}
authorize_shared,      client, uuid (32 hex digits, dashes allowed)   {"client", "uuid",
revoke_shared                                                         "authorized"}
set_memory             bytes (the new limit)                          {"memory_bytes",
                                                                      "previous_bytes",
                                                                      "evicted_bytes"}
save                                                                  {"path", "pools", "pages",
                                                                      "stored_bytes",
                                                                      "state_bytes", "seconds"}
=====================  =============================================  =========================

``set_memory`` moves the memory limit at once (``tmemd/engine/_resize.py``):
shrinking evicts ephemeral pages and is BAD_ARGUMENT, with the smallest
limit possible in the message, below the persistent pages in use.
``save`` writes the state directory now (docs/warm-restart.md); the daemon
serves nothing else meanwhile, so the state is one consistent instant.
Without ``--state-dir`` it is UNSUPPORTED; a failed write INTERNAL_ERROR
(the previous state file stays whole).

Errors: a malformed argument or an unknown client is BAD_ARGUMENT with a
message naming it (the engine's NO_SUCH_CLIENT would map to
NOT_AUTHENTICATED on the page path, which is wrong here); other engine
errors keep their usual status.  msgpack carries 64-bit integers only, so
128-bit UUIDs travel as hex strings.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from tmem.proto import Status

from ._statedir import StateDirError
from ._status import status_for
from .engine import (
    CODECS,
    MAX_WEIGHT,
    UUID_LIMIT,
    ClientLimits,
    EngineError,
    EngineStats,
    NoSuchClient,
    PoolStats,
)

if TYPE_CHECKING:
    from ._handlers import HandlerContext, Session

__all__ = ["ControlError", "run_control"]

T = TypeVar("T")


class ControlError(Exception):
    """A control command failed; carries the wire status to answer with."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status


_INT64_MAX = (1 << 63) - 1
#: Client names, as HELLO accepts them (``_handlers.CLIENT_NAME_RE``).
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_UUID_HEX_RE = re.compile(r"^[0-9a-f]{32}$")


def _plain(value: Any) -> Any:
    """Dataclasses, mappings and tuples as msgpack-ready plain values.

    msgpack carries 64-bit integers only; a 128-bit shared-pool UUID is
    sent as a hex string instead.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and value > _INT64_MAX:
        return f"{value:#x}"
    return value


def _pool_entry(p: PoolStats, pool_id: int) -> dict[str, Any]:
    """A pool as the caller sees it: under the caller's own pool id."""
    return {
        "pool_id": pool_id,
        "persistent": p.kind == "persistent",
        "shared": p.shared,
        "uuid": None if p.shared_uuid is None else f"{p.shared_uuid:032x}",
        "page_size": p.page_size,
        "codec": p.codec,
        "precompressed": p.precompressed,
        "pam": p.pam,
        "pages": p.pages,
        "original_bytes": p.original_bytes,
        "stored_bytes": p.stored_bytes,
    }


def _pools_of(stats: EngineStats, client: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in stats.pool_stats:
        if p.shared:
            out.extend(_pool_entry(p, pid) for member, pid in p.members if member == client)
        elif p.client == client:
            out.append(_pool_entry(p, p.pool_id))
    return sorted(out, key=lambda entry: int(entry["pool_id"]))


def _cmd_list_pools(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    assert s.client is not None
    return {"pools": _pools_of(ctx.engine.statistics(), s.client)}


def _cmd_stats(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    """Admins see everything; a client sees itself and its own pools."""
    stats = ctx.engine.statistics()
    if s.admin:
        return dict(_plain(stats))
    assert s.client is not None
    clients = [_plain(c) for c in stats.client_stats if c.name == s.client]
    return {"clients": clients, "pools": _pools_of(stats, s.client)}


# --- arguments ---------------------------------------------------------------------------


def _client(body: dict[str, Any]) -> str:
    name = body.get("client")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ControlError(Status.BAD_ARGUMENT, "'client' must be a client name")
    return name


def _count(body: dict[str, Any], key: str, low: int, high: int) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ControlError(Status.BAD_ARGUMENT, f"{key!r} must be an integer in [{low}, {high}]")
    return value


def _cap(body: dict[str, Any], key: str, current: int | None) -> int | None:
    if key not in body:
        return current
    if body[key] is None:
        return None
    return _count(body, key, 0, _INT64_MAX)


def _uuid(body: dict[str, Any]) -> int:
    text = body.get("uuid")
    digits = text.replace("-", "").lower() if isinstance(text, str) else ""
    if not _UUID_HEX_RE.match(digits) or not 0 < int(digits, 16) < UUID_LIMIT:
        raise ControlError(Status.BAD_ARGUMENT, "'uuid' must be 32 hex digits, not all zero")
    return int(digits, 16)


def _engine_call(name: str, call: Callable[[], T]) -> T:
    """Run an engine call; its typed errors become control errors."""
    try:
        return call()
    except NoSuchClient:
        raise ControlError(Status.BAD_ARGUMENT, f"no client named {name!r}") from None
    except EngineError as exc:
        raise ControlError(status_for(exc.code), str(exc)) from None


def _settings_reply(ctx: HandlerContext, name: str) -> dict[str, Any]:
    settings = _engine_call(name, lambda: ctx.engine.client_settings(name))
    return {
        "client": name,
        **_plain(settings.limits),
        "codec": settings.codec,
        "frozen": settings.frozen,
    }


# --- administrator commands --------------------------------------------------------------


def _cmd_list_clients(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    stats = ctx.engine.statistics()
    return {"clients": [_plain(c) for c in sorted(stats.client_stats, key=lambda c: c.name)]}


def _cmd_freeze(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    name = _client(body)
    _engine_call(name, lambda: ctx.engine.freeze(name))
    return _settings_reply(ctx, name)


def _cmd_thaw(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    name = _client(body)
    _engine_call(name, lambda: ctx.engine.thaw(name))
    return _settings_reply(ctx, name)


def _cmd_destroy_client(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    name = _client(body)
    before = ctx.engine.statistics().pages_freed_by_destroy
    _engine_call(name, lambda: ctx.engine.destroy_client(name))
    freed = ctx.engine.statistics().pages_freed_by_destroy - before
    return {"client": name, "pages_freed": freed}


def _cmd_set_weight(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    name = _client(body)
    weight = _count(body, "weight", 1, MAX_WEIGHT)
    limits = _engine_call(name, lambda: ctx.engine.client_limits(name))
    new = dataclasses.replace(limits, weight=weight)
    _engine_call(name, lambda: ctx.engine.set_client_limits(name, new))
    return _settings_reply(ctx, name)


def _cmd_set_cap(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    name = _client(body)
    if "persistent_cap" not in body and "total_cap" not in body:
        raise ControlError(Status.BAD_ARGUMENT, "give 'persistent_cap' and/or 'total_cap'")
    limits = _engine_call(name, lambda: ctx.engine.client_limits(name))
    new = ClientLimits(
        limits.weight,
        _cap(body, "persistent_cap", limits.persistent_cap),
        _cap(body, "total_cap", limits.total_cap),
    )
    _engine_call(name, lambda: ctx.engine.set_client_limits(name, new))
    return _settings_reply(ctx, name)


def _cmd_set_codec(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    name = _client(body)
    codec = body.get("codec")
    if codec is not None and (not isinstance(codec, str) or codec not in CODECS):
        raise ControlError(Status.BAD_ARGUMENT, f"'codec' must be one of {sorted(CODECS)} or nil")
    _engine_call(name, lambda: ctx.engine.set_client_codec(name, codec))
    return _settings_reply(ctx, name)


def _cmd_flush_ephemeral(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    nbytes = _count(body, "bytes", 0, _INT64_MAX)
    return {"freed_bytes": ctx.engine.flush_ephemeral(nbytes)}


def _cmd_freeable(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    return {"freeable_bytes": ctx.engine.freeable()}


def _cmd_authorize(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    name, uuid = _client(body), _uuid(body)
    authorize = body["cmd"] == "authorize_shared"
    call = ctx.engine.authorize_shared if authorize else ctx.engine.revoke_shared
    _engine_call(name, lambda: call(uuid, name))
    return {"client": name, "uuid": f"{uuid:032x}", "authorized": authorize}


def _cmd_set_memory(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    nbytes = _count(body, "bytes", 0, _INT64_MAX)
    previous = ctx.engine.config.memory_bytes
    evicted = _engine_call(s.client or "", lambda: ctx.engine.set_memory(nbytes))
    return {"memory_bytes": nbytes, "previous_bytes": previous, "evicted_bytes": evicted}


def _cmd_save(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    if ctx.save_state is None:
        raise ControlError(Status.UNSUPPORTED, "this daemon runs without --state-dir")
    try:
        return ctx.save_state()
    except StateDirError as exc:
        raise ControlError(Status.INTERNAL_ERROR, str(exc)) from None


Command = Callable[["HandlerContext", "Session", dict[str, Any]], dict[str, Any]]
_SELF: dict[str, Command] = {
    "list_pools": _cmd_list_pools,
    "stats": _cmd_stats,
}
_ADMIN: dict[str, Command] = {
    "list_clients": _cmd_list_clients,
    "freeze": _cmd_freeze,
    "thaw": _cmd_thaw,
    "destroy_client": _cmd_destroy_client,
    "set_weight": _cmd_set_weight,
    "set_cap": _cmd_set_cap,
    "set_codec": _cmd_set_codec,
    "flush_ephemeral": _cmd_flush_ephemeral,
    "freeable": _cmd_freeable,
    "authorize_shared": _cmd_authorize,
    "revoke_shared": _cmd_authorize,
    "save": _cmd_save,
    "set_memory": _cmd_set_memory,
}


def run_control(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    """Dispatch one control body; raise ``ControlError`` with a wire status."""
    cmd = body.get("cmd")
    if not isinstance(cmd, str):
        raise ControlError(Status.BAD_ARGUMENT, "control body needs a string 'cmd'")
    if cmd in _SELF:
        return _SELF[cmd](ctx, s, body)
    if cmd in _ADMIN:
        if not s.admin:
            raise ControlError(Status.FORBIDDEN, f"{cmd!r} needs an administrator")
        return _ADMIN[cmd](ctx, s, body)
    raise ControlError(Status.UNSUPPORTED, f"unknown control command {cmd!r}")
