"""The reliability suite: figures, measured against real daemons, in one table.

``python -m tmemd.reliability`` (``make reliability``) runs the full suite
in at most ten minutes and writes docs/reliability.md with its table and
the command; ``--short`` runs the version the test suite runs (about a
minute and a half).  ``_suite`` lists the parts and their bounds;
``_harness`` holds the daemon process, the fault-injecting proxy and the
model; ``_load``, ``_fuzz`` and ``_overload`` are the workloads.  Only
127.0.0.1 is used, and every loop is bounded by a deadline or a count.
"""

from __future__ import annotations

from ._suite import FULL, SHORT, Row, SuiteConfig, run_suite

__all__ = ["FULL", "SHORT", "Row", "SuiteConfig", "run_suite"]
