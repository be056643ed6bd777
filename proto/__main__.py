"""Command line of ``tmem.proto``: decode captured traffic, list the vectors.

``python -m tmem.proto dump FILE [--hex]`` prints one line per frame of a
capture (raw bytes, or hex text with ``--hex``; ``-`` reads standard input)
and exits with status 1 at the first framing error, naming its byte offset.
``python -m tmem.proto vectors`` lists the golden vectors shipped with the
package; each one can be decoded with ``dump --hex``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ._dump import DumpError, dump_lines, parse_hex, read_vector, vector_files

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tmem.proto", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    dump = commands.add_parser("dump", help="decode a capture, one line per frame")
    dump.add_argument("file", help="capture file, or - for standard input")
    dump.add_argument("--hex", action="store_true", help="the input is hex text, not raw bytes")
    commands.add_parser("vectors", help="list the golden vectors")
    args = parser.parse_args(argv)
    try:
        if args.command == "vectors":
            return _list_vectors()
        return _dump(args.file, args.hex)
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as cat does.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until exit
        return 0


def _dump(path: str, is_hex: bool) -> int:
    try:
        data = _read(path, is_hex)
        for line in dump_lines(data):
            print(line)
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except DumpError as exc:
        sys.stdout.flush()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _read(path: str, is_hex: bool) -> bytes:
    if path == "-":
        raw = sys.stdin.buffer.read()
    else:
        with open(path, "rb") as file:
            raw = file.read()
    if not is_hex:
        return raw
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise DumpError(f"hex input has a non-ASCII byte at offset {exc.start}") from None
    return parse_hex(text)


def _list_vectors() -> int:
    files = vector_files()
    for item in files:
        vector = read_vector(item.name.removesuffix(".hex"), item.read_text("utf-8"))
        kind = vector.meta.get("kind", "?")
        expect = vector.meta.get("expect", "?")
        print(f"{vector.name:<32} {kind:<8} {expect:<5} {vector.title}")
    if files:
        print(f"\n{len(files)} vectors; decode one with: python -m tmem.proto dump --hex FILE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
