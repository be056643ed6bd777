"""tmemctl without a daemon: the flush loop, the human rendering of admin
replies, and the example commands of ``docs/multi-tenancy.md`` (so the page
cannot drift from the parser)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from tmemd import ctl
from tmemd._ctl_render import render_admin_reply, render_clients

DOC = Path(__file__).resolve().parents[2] / "docs" / "multi-tenancy.md"


class FakeClient:
    """Answers flush_ephemeral like a daemon with ``freeable`` bytes, ``per_call`` at a time."""

    def __init__(self, freeable: int, per_call: int) -> None:
        self.freeable, self.per_call, self.calls = freeable, per_call, 0

    def control(self, cmd: str, **args: Any) -> dict[str, Any]:
        assert cmd == "flush_ephemeral"
        self.calls += 1
        freed = min(args["bytes"], self.per_call, self.freeable)
        self.freeable -= freed
        return {"freed_bytes": freed}


@pytest.mark.parametrize(
    ("freeable", "asked", "freed", "calls"),
    [(100, 50, 50, 3), (100, 1000, 100, 6), (0, 10, 0, 1), (100, 0, 0, 1)],
)
def test_flush_repeats_until_done(freeable: int, asked: int, freed: int, calls: int) -> None:
    client = FakeClient(freeable, per_call=20)
    assert ctl._flush(client, asked) == {"freed_bytes": freed}  # type: ignore[arg-type]
    assert client.calls == calls


def test_flush_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctl, "MAX_FLUSH_REQUESTS", 3)
    client = FakeClient(1 << 40, per_call=1)
    assert ctl._flush(client, 1 << 40) == {"freed_bytes": 3}  # type: ignore[arg-type]


def test_human_replies() -> None:
    settings = {
        "client": "web",
        "weight": 100,
        "persistent_cap": None,
        "total_cap": 1 << 30,
        "codec": None,
        "frozen": True,
    }
    assert render_admin_reply("freeze", settings) == (
        "client web: weight 100, persistent cap -, total cap 1.0GiB, codec default, FROZEN"
    )
    assert render_admin_reply("flush-ephemeral", {"freed_bytes": 3 << 20}) == (
        "freed 3.0MiB of ephemeral memory"
    )
    assert render_admin_reply("authorize", {"client": "a", "uuid": "ab", "authorized": False}) == (
        "client a may no longer join shared pool ab"
    )
    assert render_admin_reply("destroy-client", {"client": "a", "pages_freed": 3}) == (
        "client a destroyed: 3 pages freed"
    )
    assert render_admin_reply("thaw", {}) == "ok"


def test_clients_table() -> None:
    row = {"name": "web", "weight": 300, "frozen": False, "total_cap": None, "counters": {}}
    lines = render_clients({"clients": [row]}).splitlines()
    assert lines[0] == "clients"
    header, values = lines[1].split(), lines[2].split()
    assert dict(zip(header, values, strict=True))["weight"] == "300"
    assert render_clients({"clients": []}) == "clients: none"


def doc_commands() -> list[list[str]]:
    """Every ``tmemctl ...`` line of the doc, and every command of its tmemctl table."""
    text = DOC.read_text()
    lines = re.findall(r"tmemctl ([^`|\n]+)", text)
    table = text[text.index("| Command | Effect |") :].split("\n\n")[0]
    for cell in re.findall(r"^\| `([^|]+)` \|", table, flags=re.MULTILINE):
        lines += re.split(r" / |, ", cell.replace("`", ""))
    argvs = []
    for line in lines:
        line = line.split("#")[0].replace("NAME", "web").replace("<uuid>", "0" * 32)
        words = [w for w in shlex.split(line.replace("UUID", "0" * 32)) if not w.startswith("$")]
        argvs.append(words)
    return argvs


def test_the_docs_commands_parse() -> None:
    parser = ctl.build_parser()
    commands = doc_commands()
    assert len(commands) >= 15
    for argv in commands:
        assert parser.parse_args(argv).command, argv
