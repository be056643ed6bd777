"""CONTROL op commands (msgpack bodies), modelled on Xen's ``xl tmem-*``.

A command is a msgpack map ``{"cmd": NAME, ...args}``; the reply is a map.
Commands a client may run on itself live in ``_SELF``; the rest need an
administrator.  Replies are built from ``engine.statistics()`` so that
``tmemctl``, metrics and tests all read one source of truth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tmem.proto import Status

from .engine import EngineStats, PoolStats

if TYPE_CHECKING:
    from ._handlers import HandlerContext, Session

__all__ = ["ControlError", "run_control"]


class ControlError(Exception):
    """A control command failed; carries the wire status to answer with."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status


_INT64_MAX = (1 << 63) - 1


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


Command = Callable[["HandlerContext", "Session", dict[str, Any]], dict[str, Any]]
_SELF: dict[str, Command] = {
    "list_pools": _cmd_list_pools,
    "stats": _cmd_stats,
}
_ADMIN: dict[str, Command] = {}


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
