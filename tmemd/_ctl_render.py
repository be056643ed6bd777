"""Text rendering for tmemctl: aligned tables and a redrawing screen.

``Screen`` is ``watch -d`` in a few lines: it remembers the previous frame
and shows every word that changed in reverse video, so a counter that moves
catches the eye while the rest stays still.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

__all__ = [
    "Screen",
    "human_bytes",
    "render_admin_reply",
    "render_clients",
    "render_stats",
    "table",
]

_WORD = re.compile(r"\S+")
_REVERSE, _RESET = "\x1b[7m", "\x1b[0m"
_HOME_CLEAR = "\x1b[H\x1b[2J"


def human_bytes(n: Any) -> str:
    if not isinstance(n, int | float):
        return str(n)
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _cell(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith("bytes") or key.endswith("_cap"):
        return "-" if value is None else human_bytes(value)
    if isinstance(value, float):
        return f"{value:.2f}"
    if value is None:
        return "-"
    return str(value)


def table(
    rows: Sequence[Mapping[str, Any]], title: str = "", columns: Sequence[str] | None = None
) -> str:
    """Rows of dicts as an aligned text table (nested values are skipped)."""
    if not rows:
        return f"{title}: none" if title else "none"
    if columns is None:
        columns = [k for k, v in rows[0].items() if not isinstance(v, dict | list | tuple)]
    grid = [list(columns)] + [[_cell(c, row.get(c)) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in grid) for i in range(len(columns))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in grid]
    return "\n".join(([title] if title else []) + lines)


def _ratio(original: Any, stored: Any) -> str:
    if isinstance(original, int) and isinstance(stored, int) and stored > 0:
        return f"{original / stored:.2f}"
    return "-"


def _client_rows(clients: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for c in clients:
        counters = c.get("counters", {})
        rows.append(
            {
                "client": c.get("name"),
                "conns": c.get("connections"),
                "pools": c.get("pools"),
                "pages": c.get("pages"),
                "persistent": c.get("persistent_pages"),
                "original_bytes": c.get("original_bytes"),
                "stored_bytes": c.get("stored_bytes"),
                "ratio": _ratio(c.get("original_bytes"), c.get("stored_bytes")),
                "puts": counters.get("puts_stored"),
                "refused": counters.get("puts_refused"),
                "hits": counters.get("gets_hit"),
                "misses": counters.get("gets_miss"),
                "evicted": counters.get("pages_evicted"),
                "weight": c.get("weight", "-"),
                "persistent_cap": c.get("persistent_cap"),
                "total_cap": c.get("total_cap"),
                "frozen": c.get("frozen", False),
            }
        )
    return rows


def render_clients(reply: Mapping[str, Any]) -> str:
    """``list_clients``: one row per client, settings beside the figures."""
    return table(_client_rows(reply.get("clients", [])), title="clients")


def _settings_line(reply: Mapping[str, Any]) -> str:
    return (
        f"client {reply.get('client')}: weight {reply.get('weight')}, "
        f"persistent cap {_cell('persistent_cap', reply.get('persistent_cap'))}, "
        f"total cap {_cell('total_cap', reply.get('total_cap'))}, "
        f"codec {reply.get('codec') or 'default'}, "
        f"{'FROZEN' if reply.get('frozen') else 'not frozen'}"
    )


def render_admin_reply(cmd: str, reply: Mapping[str, Any]) -> str:
    """One line for an administrator command's reply (``--json`` shows it all)."""
    if cmd == "clients":
        return render_clients(reply)
    if "weight" in reply and "frozen" in reply:
        return _settings_line(reply)
    if "freed_bytes" in reply:
        return f"freed {human_bytes(reply['freed_bytes'])} of ephemeral memory"
    if "freeable_bytes" in reply:
        return f"freeable: {human_bytes(reply['freeable_bytes'])} of ephemeral memory"
    if "authorized" in reply:
        verb = "may now join" if reply["authorized"] else "may no longer join"
        return f"client {reply.get('client')} {verb} shared pool {reply.get('uuid')}"
    if "previous_bytes" in reply:
        return (
            f"memory limit {human_bytes(reply['memory_bytes'])} (was "
            f"{human_bytes(reply['previous_bytes'])}); evicted "
            f"{human_bytes(reply['evicted_bytes'])} of ephemeral memory"
        )
    if "state_bytes" in reply:
        return (
            f"saved {reply['pages']} pages ({human_bytes(reply['stored_bytes'])} stored) "
            f"in {reply['pools']} pools to {reply['path']} in {reply['seconds']} s"
        )
    if "pages_freed" in reply:
        return f"client {reply.get('client')} destroyed: {reply['pages_freed']} pages freed"
    if not reply:
        return "ok"
    return "\n".join(f"{k}: {v}" for k, v in sorted(reply.items()))


def _pool_rows(pools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for p in pools:
        counters = p.get("counters", {})
        kind = p.get("kind") or ("persistent" if p.get("persistent") else "ephemeral")
        rows.append(
            {
                "client": p.get("client", "-"),
                "pool": p.get("pool_id"),
                "kind": kind + (" shared" if p.get("shared") else ""),
                "codec": p.get("codec"),
                "pages": p.get("pages"),
                "original_bytes": p.get("original_bytes"),
                "stored_bytes": p.get("stored_bytes"),
                "ratio": _ratio(p.get("original_bytes"), p.get("stored_bytes")),
                "hits": counters.get("gets_hit", "-"),
                "misses": counters.get("gets_miss", "-"),
            }
        )
    return rows


def render_stats(reply: Mapping[str, Any], server: str = "") -> str:
    """The stats reply (admin: whole daemon; client: itself) as text."""
    parts = []
    if "memory_limit_bytes" in reply:
        used, limit = reply.get("memory_used_bytes", 0), reply["memory_limit_bytes"]
        share = used / limit * 100 if limit else 0.0
        parts.append(
            f"tmemd {server}  memory {human_bytes(used)} / {human_bytes(limit)} ({share:.1f}%)  "
            f"pages {reply.get('pages')}  ratio "
            f"{_ratio(reply.get('original_bytes'), reply.get('stored_bytes'))}  "
            f"persistent {human_bytes(reply.get('persistent_bytes'))}"
            f"{' FULL' if reply.get('persistent_full') else ''}"
        )
        refused = reply.get("puts_refused_by_reason") or {}
        evicted = reply.get("evictions_by_reason") or {}
        parts.append(
            "refused: " + (", ".join(f"{k}={v}" for k, v in sorted(refused.items())) or "none")
        )
        parts.append(
            "evicted: " + (", ".join(f"{k}={v}" for k, v in sorted(evicted.items())) or "none")
        )
    clients = reply.get("client_stats", reply.get("clients", []))
    pools = reply.get("pool_stats", reply.get("pools", []))
    parts.append(table(_client_rows(clients), title="clients"))
    parts.append(table(_pool_rows(pools), title="pools"))
    return "\n\n".join(parts)


class Screen:
    """Redraws a frame in place, marking words that changed since the last."""

    def __init__(self, out: TextIO, highlight: bool) -> None:
        self.out = out
        self.highlight = highlight
        self.previous: list[str] = []

    def mark(self, text: str) -> str:
        lines = text.split("\n")
        marked = []
        for i, line in enumerate(lines):
            old = self.previous[i] if i < len(self.previous) else ""
            old_words = {m.start(): m.group() for m in _WORD.finditer(old)}
            pieces, last = [], 0
            for m in _WORD.finditer(line):
                pieces.append(line[last : m.start()])
                changed = self.previous and old_words.get(m.start()) != m.group()
                pieces.append(f"{_REVERSE}{m.group()}{_RESET}" if changed else m.group())
                last = m.end()
            pieces.append(line[last:])
            marked.append("".join(pieces))
        self.previous = lines
        return "\n".join(marked)

    def draw(self, text: str) -> None:
        if self.highlight:
            self.out.write(_HOME_CLEAR + self.mark(text) + "\n")
        else:
            self.out.write(text + "\n\n")
        self.out.flush()
