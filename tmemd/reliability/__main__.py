"""``python -m tmemd.reliability [--short] [--write docs/reliability.md]``."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from ._suite import FULL, SHORT, Row, run_suite


def table(rows: list[Row]) -> str:
    """A Markdown table: readable in a terminal and in docs/reliability.md."""
    lines = ["| part | figure | measured | must be | ok |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| {r.part} | {r.figure} | {r.value} | {r.bound} | {'yes' if r.ok else 'NO'} |"
        for r in rows
    ]
    return "\n".join(lines)


def report(rows: list[Row], command: str, seconds: float, name: str) -> str:
    verdict = "every figure within its bound" if all(r.ok for r in rows) else "FAILED"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"""# Reliability: the figures of the last run

Written by `{command}` ({name} suite, {seconds:.0f} s, {when}):
{verdict}.  Every row is a figure measured in that run, on real daemons on 127.0.0.1;
`tmemd/reliability/_suite.py` describes each part, and `make reliability` runs it again.

{table(rows)}

What the parts do: *load held* checks every get of several clients' random puts, gets and
flushes against a model (a page may be missing from an ephemeral pool, never wrong; a
persistent page must come back); *faults survived* runs the same load through a proxy on
loopback that drops connections, cuts them mid-frame and delays them, and allows an
operation whose reply was lost to have happened or not; *slow reader* pipelines GETs
without reading the replies while another client is served; *SIGTERM under load* stops a daemon
with `--state-dir` in the middle of the load and starts it again, and every acknowledged
persistent page must be back; *bad input* sends mutated valid frames and random bytes as
another client (a frame counts as sent while its connection was open; a framing error
closes it, as the protocol says); *overload* offers 16 times `--memory`; *kill -9 with
replicas=2* spreads a persistent pool with two replicas over three daemons, kills one with
SIGKILL, starts it again empty and repairs, then kills another: every page must read back.
"""


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tmemd.reliability")
    parser.add_argument("--short", action="store_true", help="the test suite's short version")
    parser.add_argument("--write", metavar="PATH", help="write the report (docs/reliability.md)")
    args = parser.parse_args()
    cfg = SHORT if args.short else FULL
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tmemd-reliability-") as tmp:
        rows = run_suite(cfg, Path(tmp), lambda part: print(f"running {part} ...", flush=True))
    seconds = time.monotonic() - t0
    print(table(rows))
    if args.write:
        command = "make reliability" if not args.short else "python -m tmemd.reliability --short"
        Path(args.write).write_text(report(rows, command, seconds, cfg.name))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
