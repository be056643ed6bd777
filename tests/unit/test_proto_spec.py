"""PROTOCOL.md stays true to _constants.py: its tables, limits and worked example."""

from __future__ import annotations

import enum
import re
from pathlib import Path

import pytest

from tmem.proto import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SHIFT,
    MAX_REQUEST_PAYLOAD_BYTES,
    MAX_RESPONSE_PAYLOAD_BYTES,
    NO_OPCODE,
    NO_POOL,
    POOL_FLAGS_DEFINED,
    REQUEST_HEADER_BYTES,
    REQUEST_MAGIC,
    RESPONSE_HEADER_BYTES,
    RESPONSE_MAGIC,
    CodecId,
    GetFlags,
    Opcode,
    PamId,
    PoolFlags,
    RefuseReason,
    Request,
    Response,
    Status,
)
from tmem.proto._dump import iter_frames

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto"
SPEC = (PROTO_DIR / "PROTOCOL.md").read_text("utf-8")
#: A table row "| `NAME` | value | ..." (value decimal or 0x hex).
_ROW = re.compile(r"^\|\s*`([A-Z0-9_]+)`\s*\|\s*(0x[0-9A-Fa-f]+|\d+)\s*\|", re.MULTILINE)
ROWS: dict[str, set[int]] = {}
for _name, _value in _ROW.findall(SPEC):
    ROWS.setdefault(_name, set()).add(int(_value, 0))


def section(number: int) -> str:
    start = SPEC.index(f"\n## {number}. ")
    end = SPEC.find("\n## ", start + 1)
    return SPEC[start : end if end != -1 else len(SPEC)]


@pytest.mark.parametrize("enum_type", [Opcode, Status, RefuseReason, CodecId, PamId, GetFlags])
def test_every_member_has_a_table_row(enum_type: type[enum.Enum]) -> None:
    for member in enum_type:
        assert ROWS.get(member.name) == {member.value}, f"{enum_type.__name__}.{member.name}"


def test_pool_flag_bits_are_in_the_table() -> None:
    table = section(7)
    for flag in PoolFlags:
        assert re.search(rf"\|\s*`{flag.value:#010x}`\s*\|\s*`{flag.name}`", table), flag.name
    assert f"`{POOL_FLAGS_DEFINED:#010X}`".replace("0X", "0x") in table


@pytest.mark.parametrize(
    "text",
    [
        f"{MAX_REQUEST_PAYLOAD_BYTES} (1 MiB)",
        f"{MAX_RESPONSE_PAYLOAD_BYTES} (64 MiB)",
        f"| `DEFAULT_PAGE_SIZE`          | {DEFAULT_PAGE_SIZE}",
        f"| `MAX_PAGE_SHIFT`             | {MAX_PAGE_SHIFT}",
        f"`{REQUEST_MAGIC:#04X}` (`REQUEST_MAGIC`)".replace("0X", "0x"),
        f"`{RESPONSE_MAGIC:#04X}` (`RESPONSE_MAGIC`)".replace("0X", "0x"),
        f"Header: {REQUEST_HEADER_BYTES} bytes",
        f"Header: {RESPONSE_HEADER_BYTES} bytes",
        f"`NO_POOL` = `{NO_POOL:#010X}`".replace("0X", "0x"),
        f"`NO_OPCODE` = `{NO_OPCODE:#04X}`".replace("0X", "0x"),
    ],
)
def test_numbers_in_the_text(text: str) -> None:
    assert text in SPEC


def test_vectors_named_in_the_spec_exist() -> None:
    named = set(re.findall(r"`((?:req|resp|bad_req|bad_resp)_[a-z_]+)`", SPEC))
    assert len(named) > 20
    shipped = {path.stem for path in (PROTO_DIR / "vectors").glob("*.hex")}
    assert named - shipped == set()


#: The example's last two blocks: an oversized request header (48 bytes) and
#: the FRAME_TOO_LARGE answer (16-byte header + 53-byte body).
FRAMING_TAIL_BYTES = 48 + 16 + 53


def worked_example_blocks(page: bytes = bytes(4096)) -> list[tuple[str, bytes]]:
    """Section 14's code blocks in order, each as (direction, bytes): "→" for
    client to server, "←" for server to client (the last arrow in the text
    before the block), with each elided page as ``page``."""
    text = section(14)
    blocks: list[tuple[str, bytes]] = []
    start = 0
    for match in re.finditer(r"```\n(.*?)```", text, re.DOTALL):
        arrows = re.findall(r"[→←]", text[start : match.start()])
        start = match.end()
        out = bytearray()
        for line in match.group(1).splitlines():
            if line.strip() == "<4096 bytes>":
                out += page
                continue
            for token in line.split():
                if not re.fullmatch(r"[0-9a-f]{2}", token):
                    break  # the rest of the line is a note
                out.append(int(token, 16))
        blocks.append((arrows[-1], bytes(out)))
    return blocks


def worked_example_bytes() -> bytes:
    """The hex of section 14's code blocks, with each elided page as zeros."""
    return b"".join(data for _, data in worked_example_blocks())


def test_worked_example_decodes() -> None:
    frames = [frame for _, frame in iter_frames(worked_example_bytes()[:-FRAMING_TAIL_BYTES])]
    summary = [
        (type(f).__name__, f.opcode, getattr(f, "status", None), f.request_id) for f in frames
    ]
    q, r = "Request", "Response"
    assert summary == [
        (q, Opcode.HELLO, None, 1), (r, Opcode.HELLO, Status.OK, 1),
        (q, Opcode.NEW_POOL, None, 2), (r, Opcode.NEW_POOL, Status.OK, 2),
        (q, Opcode.PUT_PAGE, None, 3), (q, Opcode.GET_PAGE, None, 4),
        (q, Opcode.FLUSH_PAGE, None, 5), (q, Opcode.GET_PAGE, None, 6),
        (r, Opcode.PUT_PAGE, Status.OK, 3), (r, Opcode.GET_PAGE, Status.OK, 4),
        (r, Opcode.FLUSH_PAGE, Status.OK, 5), (r, Opcode.GET_PAGE, Status.MISS, 6),
        (q, Opcode.GET_PAGE, None, 7), (r, Opcode.GET_PAGE, Status.BAD_POOL, 7),
    ]  # fmt: skip
    assert isinstance(frames[3], Response) and frames[3].value == 0
    assert isinstance(frames[10], Response) and frames[10].value == 1
    assert isinstance(frames[12], Request) and frames[12].pool_id == 9


def test_worked_example_ends_with_the_framing_error() -> None:
    tail = worked_example_bytes()[-FRAMING_TAIL_BYTES:]
    too_large, answer = tail[:48], tail[48:]
    assert int.from_bytes(too_large[44:48], "little") == MAX_REQUEST_PAYLOAD_BYTES + 1
    ((_, frame),) = list(iter_frames(answer))
    assert isinstance(frame, Response)
    assert (frame.opcode, frame.status, frame.request_id) == (
        Opcode.PUT_PAGE, Status.FRAME_TOO_LARGE, 31,
    )  # fmt: skip
