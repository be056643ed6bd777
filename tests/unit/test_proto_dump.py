"""``python -m tmem.proto dump`` and ``vectors``: output, bodies, errors, exit statuses."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from tmem.proto import (
    NO_OPCODE,
    Opcode,
    PoolSpec,
    Request,
    Response,
    Status,
    encode,
    encode_pool_flags,
)
from tmem.proto.__main__ import main
from tmem.proto._dump import DumpError, dump_lines, iter_frames, parse_hex, vector_files

VECTOR_DIR = Path(__file__).resolve().parents[2] / "proto" / "vectors"

HELLO = Request(Opcode.HELLO, 1, payload=msgpack.packb({"client": "host-a", "token": "hunter2"}))
GREETING = Response(
    Opcode.HELLO, Status.OK, 1, payload=msgpack.packb({"server": "tmemd", "protocol": 1})
)
NEW_POOL = Request(Opcode.NEW_POOL, 2, arg=encode_pool_flags(PoolSpec(persistent=True)))
PUT = Request(Opcode.PUT_PAGE, 3, pool_id=0, object_id=5, index=9, payload=bytes(4096))
PUT_OK = Response(Opcode.PUT_PAGE, Status.OK, 3)
BAD_POOL = Response(
    Opcode.GET_PAGE, Status.BAD_POOL, 4, payload=msgpack.packb({"error": "unknown pool 9"})
)
SESSION: list[Request | Response] = [HELLO, GREETING, NEW_POOL, PUT, PUT_OK, BAD_POOL]
CAPTURE = b"".join(encode(f) for f in SESSION)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_iter_frames_detects_direction_per_frame() -> None:
    frames = [frame for _, frame in iter_frames(CAPTURE)]
    assert frames == SESSION
    offsets = [offset for offset, _ in iter_frames(CAPTURE)]
    assert offsets[1] == len(encode(HELLO))
    assert offsets[-1] == len(CAPTURE) - len(encode(BAD_POOL))


def test_dump_raw_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "capture.bin"
    path.write_bytes(CAPTURE)
    status, out, err = run(["dump", str(path)], capsys)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == len(SESSION)
    for line, frame in zip(lines, SESSION, strict=True):
        assert frame.describe() in line


def test_dump_shows_bodies_and_hides_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    lines = list(dump_lines(CAPTURE))
    assert '"client": "host-a"' in lines[0]
    assert "hunter2" not in "\n".join(lines)
    assert "<redacted>" in lines[0]
    assert '"server": "tmemd"' in lines[1]
    assert "spec=persistent,page_size=4096,codec=DEFAULT" in lines[2]
    assert "body=" not in lines[3]  # a page is not a body
    assert '{"error": "unknown pool 9"}' in lines[5]


def test_dump_bodies_without_msgpack(monkeypatch: pytest.MonkeyPatch) -> None:
    # tmem.proto needs only the standard library: without msgpack the body is hex.
    monkeypatch.setitem(sys.modules, "msgpack", None)
    line = next(dump_lines(encode(HELLO)))
    assert "body=hex:81 a2" in line or "body=hex:82" in line


def test_dump_undecodable_body_is_hex() -> None:
    frame = Response(Opcode.CONTROL, Status.OK, 1, payload=b"\xc1" * 100)
    line = next(dump_lines(encode(frame)))
    assert "body=hex:c1 c1" in line
    assert line.endswith("...")


def test_dump_hex_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "# a capture\n" + encode(HELLO).hex(" ") + "  # hello\n" + encode(GREETING).hex()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    status, out, _ = run(["dump", "--hex", "-"], capsys)
    assert status == 0
    assert len(out.splitlines()) == 2


def test_dump_every_vector_file(capsys: pytest.CaptureFixture[str]) -> None:
    # Two bad strings are frames of the other direction: dump, which detects
    # the direction, decodes them.
    swapped = {"bad_req_magic_response.hex", "bad_resp_magic.hex"}
    for path in sorted(VECTOR_DIR.glob("*.hex")):
        status, out, err = run(["dump", "--hex", str(path)], capsys)
        if path.name.startswith("bad_") and path.name not in swapped:
            assert status == 1 and "offset 0:" in err, path.name
        else:
            assert (status, len(out.splitlines()), err) == (0, 1, ""), path.name


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b"GET / HTTP/1.1\r\n", "BAD_MAGIC: bad magic byte 0x47"),
        (b"\xa7\x02" + bytes(46), "BAD_VERSION"),
        (encode(PUT)[:40], "truncated header: 40 of 48 bytes"),
        (encode(PUT)[:1000], "truncated payload: 952 of 4096 bytes"),
        (encode(Response(Opcode.GET_PAGE, Status.OK, 1))[:12] + b"\xff" * 4, "FRAME_TOO_LARGE"),
    ],
)
def test_dump_framing_error_names_the_offset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tail: bytes, message: str
) -> None:
    path = tmp_path / "capture.bin"
    path.write_bytes(CAPTURE + tail)
    status, out, err = run(["dump", str(path)], capsys)
    assert status == 1
    assert len(out.splitlines()) == len(SESSION)  # the good frames are still shown
    assert f"error: offset {len(CAPTURE)}: " in err
    assert message in err


def test_dump_error_carries_status_and_offset() -> None:
    with pytest.raises(DumpError) as info:
        list(iter_frames(encode(PUT_OK) + b"\x00"))
    assert (info.value.offset, info.value.status) == (16, Status.BAD_MAGIC)


@pytest.mark.parametrize(
    ("text", "message"),
    [("a7 01\nzz\n", "line 2: not hex bytes: 'zz'"), ("a7 0", "line 1"), ("é", "non-ASCII")],
)
def test_dump_bad_hex(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "capture.hex"
    path.write_text(text, "utf-8")
    status, _, err = run(["dump", "--hex", str(path)], capsys)
    assert status == 1
    assert message in err


def test_parse_hex_ignores_comments_and_spacing() -> None:
    assert parse_hex("# x = 1\na7 01#c\n\n  02\t03 # 04\n0506") == bytes([0xA7, 1, 2, 3, 5, 6])


def test_dump_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(["dump", str(tmp_path / "absent")], capsys)
    assert status == 1
    assert "cannot read" in err


def test_dump_names_no_opcode_error_frames() -> None:
    frame = Response(NO_OPCODE, Status.BAD_MAGIC, 0, payload=msgpack.packb({"error": "x"}))
    assert "BAD_MAGIC" in next(dump_lines(encode(frame)))


def test_vectors_lists_every_shipped_vector(capsys: pytest.CaptureFixture[str]) -> None:
    shipped = {item.name for item in vector_files()}
    assert shipped == {path.name for path in VECTOR_DIR.glob("*.hex")}
    status, out, _ = run(["vectors"], capsys)
    assert status == 0
    lines = out.splitlines()
    listed = [line.split()[0] for line in lines if line.startswith(("req", "resp", "bad"))]
    assert sorted(f"{name}.hex" for name in listed) == sorted(shipped)


def test_module_entry_point(tmp_path: Path) -> None:
    path = tmp_path / "capture.bin"
    path.write_bytes(CAPTURE + b"\x00")
    result = subprocess.run(
        [sys.executable, "-m", "tmem.proto", "dump", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == len(SESSION)
    assert f"offset {len(CAPTURE)}" in result.stderr
