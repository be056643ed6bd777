"""The reliability suite's short version (``python -m tmemd.reliability --short``),
run as a test: every figure of every part must be within its bound.
``make reliability`` runs the full version and writes docs/reliability.md."""

from __future__ import annotations

from pathlib import Path

from tmemd.reliability import SHORT, run_suite
from tmemd.reliability.__main__ import table


def test_every_figure_of_the_short_suite_is_within_its_bound(tmp_path: Path) -> None:
    rows = run_suite(SHORT, tmp_path, lambda part: None)
    print(table(rows))
    failed = [row for row in rows if not row.ok]
    assert not failed, table(failed)
    assert {row.part.split(" (")[0] for row in rows} == {
        "load held",
        "faults survived",
        "slow reader",
        "SIGTERM under load",
        "bad input",
        "overload",
        "kill -9 with replicas=2",
    }
