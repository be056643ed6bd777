"""CONTROL op commands (msgpack bodies), modelled on Xen's ``xl tmem-*``.

A command is a msgpack map ``{"cmd": NAME, ...args}``; the reply is a map.
Commands a client may run on itself live in ``_SELF``; the rest need an
administrator (``admin = true`` in the auth file) and answer FORBIDDEN to
anyone else, before their arguments are even looked at.  Without an auth
file (loopback only) every client is trusted, as in memcached's default,
and so is an administrator: ``tmemctl clients`` works on a fresh daemon.
Replies are built from the engine (``statistics()``, ``client_settings()``) so that
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

Errors are ``RequestError`` (``_session``), raised as the page handlers
raise theirs: a malformed argument or an unknown client is BAD_ARGUMENT with a
message naming it (the engine's NO_SUCH_CLIENT would map to
NOT_AUTHENTICATED on the page path, which is wrong here); other engine
errors keep their usual status.  msgpack carries 64-bit integers only, so
128-bit UUIDs travel as hex strings.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, TypeVar

from tmem.proto import (
    CodecId,
    PamId,
    PoolFlagsError,
    PoolSpec,
    Status,
    decode_pool_flags,
    is_client_name,
)

from ._session import HandlerContext, RequestError, Session
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

__all__ = [
    "LIST_OBJECTS_BUCKETS_PER_CALL",
    "MAX_LIST_OBJECTS",
    "pool_kwargs",
    "run_control",
]

T = TypeVar("T")

_INT64_MAX = (1 << 63) - 1
_UUID_HEX_RE = re.compile(r"[0-9a-f]{32}")
#: Most object ids a ``list_objects`` reply asks for (``count``): 1024 ids
#: are a 50 KiB reply, a few hundred microseconds of daemon time.
MAX_LIST_OBJECTS = 1024
#: ``count`` when the request gives none.
DEFAULT_LIST_OBJECTS = 256
#: Most buckets of a pool's listing one ``list_objects`` visits (``_listing``
#: keeps 1 to 4 ids per bucket): bounds a call's work on a sparse table.
LIST_OBJECTS_BUCKETS_PER_CALL = 1024
#: Cursors are u64 (msgpack's widest unsigned integer).
_CURSOR_LIMIT = 1 << 64
#: The pool flags' codec and PAM ids -> the engine's names (None: default).
_CODEC_NAMES = {
    CodecId.DEFAULT: None,
    CodecId.NONE: "none",
    CodecId.LZO: "lzo",
    CodecId.LZ4: "lz4",
    CodecId.ZSTD: "zstd",
}
_PAM_NAMES = {
    PamId.DEFAULT: None,
    PamId.ZBUD: "zbud",
    PamId.XVMALLOC: "xvmalloc",
    PamId.ZSMALLOC: "zsmalloc",
}


def pool_kwargs(spec: PoolSpec) -> dict[str, Any]:
    """The engine's ``new_pool`` arguments for decoded pool flags (but the UUID)."""
    return {
        "persistent": spec.persistent,
        "precompressed": spec.precompressed,
        "page_size": spec.page_size,
        "codec": _CODEC_NAMES[spec.codec],
        "pam": _PAM_NAMES[spec.pam],
    }


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
        "name": p.name,
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


def _is_admin(ctx: HandlerContext, s: Session) -> bool:
    """An administrator: ``admin = true`` in the auth file, or anyone without one."""
    return s.admin or ctx.authenticate is None


def _cmd_list_pools(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    assert s.client is not None
    return {"pools": _pools_of(ctx.engine.statistics(), s.client)}


def _cmd_open_pool(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    """The caller's pool named ``name``, created with ``flags`` if it has none."""
    assert s.client is not None
    name = body.get("name")
    if not is_client_name(name):  # a pool name follows the client-name rule
        raise RequestError(Status.BAD_ARGUMENT, "'name' must be 1-64 of [A-Za-z0-9._-]")
    flags = _count(body, "flags", 0, 0xFFFFFFFF)
    try:
        spec = decode_pool_flags(flags)
    except PoolFlagsError as exc:
        raise RequestError(exc.status, str(exc)) from None
    if spec.shared:
        raise RequestError(Status.BAD_ARGUMENT, "a shared pool is named by its UUID")
    client = s.client
    pool_id = _engine_call(
        client, lambda: ctx.engine.new_pool(client, name=name, **pool_kwargs(spec))
    )
    return {"pool_id": pool_id}


def _cmd_list_objects(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    """A page of a named pool's object ids (``_listing`` has the guarantee)."""
    assert s.client is not None
    client = s.client
    pool_id = _count(body, "pool_id", 0, 0xFFFFFFFE)
    cursor = _count(body, "cursor", 0, _CURSOR_LIMIT - 1) if "cursor" in body else 0
    count = DEFAULT_LIST_OBJECTS
    if "count" in body:
        count = _count(body, "count", 1, MAX_LIST_OBJECTS)
    ids, cursor = _engine_call(
        client,
        lambda: ctx.engine.list_objects(
            client, pool_id, cursor, count, LIST_OBJECTS_BUCKETS_PER_CALL
        ),
    )
    return {"objects": [f"{oid:048x}" for oid in ids], "cursor": cursor}


def _cmd_stats(ctx: HandlerContext, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    """Admins see everything; a client sees itself and its own pools.

    Only an administrator of the auth file gets the daemon-wide reply:
    without an auth file every client may run the administrator commands,
    but ``stats`` keeps the self view whose shape applications read.
    """
    stats = ctx.engine.statistics()
    if s.admin:
        return dict(_plain(stats))
    assert s.client is not None
    clients = [_plain(c) for c in stats.client_stats if c.name == s.client]
    return {"clients": clients, "pools": _pools_of(stats, s.client)}


# --- arguments ---------------------------------------------------------------------------


def _client(body: dict[str, Any]) -> str:
    name = body.get("client")
    if not is_client_name(name):
        raise RequestError(Status.BAD_ARGUMENT, "'client' must be a client name")
    return name


def _count(body: dict[str, Any], key: str, low: int, high: int) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RequestError(Status.BAD_ARGUMENT, f"{key!r} must be an integer in [{low}, {high}]")
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
    if not _UUID_HEX_RE.fullmatch(digits) or not 0 < int(digits, 16) < UUID_LIMIT:
        raise RequestError(Status.BAD_ARGUMENT, "'uuid' must be 32 hex digits, not all zero")
    return int(digits, 16)


def _engine_call(name: str, call: Callable[[], T]) -> T:
    """Run an engine call; its typed errors become control errors."""
    try:
        return call()
    except NoSuchClient:
        raise RequestError(Status.BAD_ARGUMENT, f"no client named {name!r}") from None
    except EngineError as exc:
        raise RequestError(status_for(exc.code), str(exc)) from None


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
        raise RequestError(Status.BAD_ARGUMENT, "give 'persistent_cap' and/or 'total_cap'")
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
        raise RequestError(Status.BAD_ARGUMENT, f"'codec' must be one of {sorted(CODECS)} or nil")
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
        raise RequestError(Status.UNSUPPORTED, "this daemon runs without --state-dir")
    try:
        return ctx.save_state()
    except StateDirError as exc:
        raise RequestError(Status.INTERNAL_ERROR, str(exc)) from None


Command = Callable[[HandlerContext, Session, dict[str, Any]], dict[str, Any]]
_SELF: dict[str, Command] = {
    "list_pools": _cmd_list_pools,
    "open_pool": _cmd_open_pool,
    "list_objects": _cmd_list_objects,
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
    """Dispatch one control body; raise ``RequestError`` with a wire status."""
    cmd = body.get("cmd")
    if not isinstance(cmd, str):
        raise RequestError(Status.BAD_ARGUMENT, "control body needs a string 'cmd'")
    if cmd in _SELF:
        return _SELF[cmd](ctx, s, body)
    if cmd in _ADMIN:
        if not _is_admin(ctx, s):
            raise RequestError(Status.FORBIDDEN, f"{cmd!r} needs an administrator")
        return _ADMIN[cmd](ctx, s, body)
    raise RequestError(Status.UNSUPPORTED, f"unknown control command {cmd!r}")
