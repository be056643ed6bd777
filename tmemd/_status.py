"""The one table from engine outcomes to wire statuses.

The engine knows nothing of the wire (docs/design.md §9.1), so its error codes
and refusal reasons are its own enums; this module is the only place that
translates them.  A unit test checks both maps are total, so adding an
engine error without deciding its wire status fails the suite.
"""

from __future__ import annotations

from types import MappingProxyType

from tmem.proto import RefuseReason, Status

from .engine import ErrorCode, Refusal

__all__ = ["ERROR_STATUS", "REFUSE_REASON", "status_for"]

ERROR_STATUS = MappingProxyType(
    {
        ErrorCode.NO_SUCH_POOL: Status.BAD_POOL,
        ErrorCode.BAD_OBJECT_ID: Status.BAD_ARGUMENT,
        ErrorCode.BAD_INDEX: Status.BAD_ARGUMENT,
        ErrorCode.BAD_LENGTH: Status.BAD_LENGTH,
        ErrorCode.BAD_ARGUMENT: Status.BAD_ARGUMENT,
        ErrorCode.TOO_MANY_POOLS: Status.TOO_MANY_POOLS,
        ErrorCode.FORBIDDEN: Status.FORBIDDEN,
        # A connected client always exists; this can only follow an admin's
        # destroy_client, after which the connection must authenticate anew.
        ErrorCode.NO_SUCH_CLIENT: Status.NOT_AUTHENTICATED,
        ErrorCode.UNSUPPORTED: Status.UNSUPPORTED,
    }
)

#: Engine refusals and wire reasons share names and values by design.
REFUSE_REASON = MappingProxyType({r: RefuseReason[r.name] for r in Refusal})


def status_for(code: ErrorCode) -> Status:
    """Wire status for an engine error code."""
    return ERROR_STATUS[code]
