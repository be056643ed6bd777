"""The client-name rule, defined once for the daemon, the client and tmemctl.

A client name goes into log lines and metric labels, so it must be short and
printable and hold nothing that splits a line or a label: 1 to
``MAX_CLIENT_NAME_CHARS`` characters of ``[A-Za-z0-9._-]`` (PROTOCOL.md
section 5).  The whole string must match: ``re.match`` with a ``$`` anchor
also accepts a name followed by one ``\\n`` (``$`` matches before a final
newline), so the check is ``fullmatch`` with an explicit ASCII class, and a
non-``str`` is simply not a name.
"""

from __future__ import annotations

import re
from typing import TypeGuard

__all__ = ["CLIENT_NAME_CHARS", "MAX_CLIENT_NAME_CHARS", "is_client_name"]

#: Longest client name: room for a fully qualified host name's first labels
#: while keeping a metric label and a log field short.
MAX_CLIENT_NAME_CHARS = 64
#: The characters a client name may use, as written in messages and docs.
CLIENT_NAME_CHARS = "A-Za-z0-9._-"
_CLIENT_NAME_RE = re.compile(f"[{CLIENT_NAME_CHARS}]{{1,{MAX_CLIENT_NAME_CHARS}}}")


def is_client_name(name: object) -> TypeGuard[str]:
    """True when ``name`` is a ``str`` that is a whole, valid client name."""
    return isinstance(name, str) and _CLIENT_NAME_RE.fullmatch(name) is not None
