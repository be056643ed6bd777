"""dask spilling to local disk vs to tmemd: wall time, bytes spilled, peak RSS.

One dask worker process (a Nanny, as deployed) with a memory limit runs the
same computation twice, once with dask's own spill buffer (files in the
worker's local directory) and once with ``tmem.client.dask_spill.worker_data``
(spill to a tmemd started here on loopback).  The computation is a dataframe
several times bigger than the worker's memory limit, persisted (most of it
must leave the worker's memory), then a groupby aggregation over it (all of
it comes back), then a second pass that reads every partition again.

Printed per system: wall time of each phase, bytes spilled (dask's own
``spilled_total``: serialised bytes), the worker's peak RSS (``VmHWM``), and
for tmemd the daemon's RSS.  Results agree between the two runs (checked).

    .venv/bin/python bench/apps_dask.py --rows 64_000_000 --limit 512MiB

``--json PATH`` writes the figures too.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import distributed
import numpy as np
import pandas as pd
from dask.utils import format_bytes, parse_bytes

from tmem.bench._peers import start_server
from tmem.client.dask_spill import worker_data

#: Rows per partition: ~24 MB a partition with the columns below.
ROWS_PER_PARTITION = 1_000_000


def make_partition(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = ROWS_PER_PARTITION
    return pd.DataFrame(
        {
            "key": rng.integers(0, 10_000, n),
            "x": rng.random(n),
            "y": rng.integers(0, 1_000_000, n),
        }
    )


def worker_peak(dask_worker: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmHWM:", "VmRSS:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    data = dask_worker.data
    spilled = getattr(data, "spilled_total", (0, 0))
    out["spilled_memory"], out["spilled_bytes"] = int(spilled[0]), int(spilled[1])
    return out


def run(
    system: str, partitions: int, limit: int, workdir: Path, server: str | None
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if server is not None:
        target = int(limit * dask.config.get("distributed.worker.memory.target"))
        extra["data"] = (worker_data, {"server": server, "target": target, "client_name": "bench"})
    cluster = distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        memory_limit=limit,
        dashboard_address=None,
        local_directory=str(workdir / system),
        **extra,
    )
    figures: dict[str, Any] = {"system": system}
    try:
        with distributed.Client(cluster) as client:
            ddf = dd.from_map(make_partition, range(partitions))
            t0 = time.perf_counter()
            ddf = ddf.persist()
            distributed.wait(ddf)
            t1 = time.perf_counter()
            grouped = ddf.groupby("key").agg({"x": "sum", "y": "max"}).compute()
            t2 = time.perf_counter()
            sizes = ddf.map_partitions(len).compute()
            t3 = time.perf_counter()
            (peak,) = client.run(worker_peak).values()
    finally:
        cluster.close()
    figures.update(
        persist_s=t1 - t0,
        groupby_s=t2 - t1,
        second_pass_s=t3 - t2,
        total_s=t3 - t0,
        worker_peak_rss=peak["VmHWM"],
        spilled_bytes=peak["spilled_bytes"],
        rows=int(sizes.sum()),
        checksum=float(grouped["x"].sum()),
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64_000_000)
    parser.add_argument("--limit", default="512MiB", help="the worker's memory limit")
    parser.add_argument("--memory", default="2GiB", help="tmemd's --memory")
    parser.add_argument("--codec", default="lz4")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    limit = parse_bytes(args.limit)
    partitions = max(1, args.rows // ROWS_PER_PARTITION)
    data_bytes = partitions * ROWS_PER_PARTITION * 24
    print(f"{partitions} partitions, {format_bytes(data_bytes)} of data, "
          f"worker memory limit {format_bytes(limit)} ({data_bytes / limit:.1f}x)")  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory(prefix="apps-dask-") as tmp:
        workdir = Path(tmp)
        results.append(run("disk", partitions, limit, workdir, None))
        daemon = start_server("tmemd", workdir, parse_bytes(args.memory), codec=args.codec)
        try:
            results.append(run("tmemd", partitions, limit, workdir, daemon.address))
            with open(f"/proc/{daemon.pid}/status") as fh:
                hwm = [int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:")]
            results[-1]["daemon_peak_rss"] = hwm[0]
        finally:
            daemon.stop()
    disk, tmem = results
    if (disk["rows"], round(disk["checksum"], 3)) != (tmem["rows"], round(tmem["checksum"], 3)):
        raise SystemExit(f"results differ: {disk} vs {tmem}")
    print(f"{'system':8} {'persist s':>10} {'groupby s':>10} {'2nd pass s':>10} {'total s':>9} "
          f"{'spilled':>10} {'worker peak RSS':>16} {'daemon peak RSS':>16}")  # fmt: skip
    for r in results:
        daemon_rss = format_bytes(r["daemon_peak_rss"]) if "daemon_peak_rss" in r else "-"
        spilled = format_bytes(r["spilled_bytes"])
        print(f"{r['system']:8} {r['persist_s']:10.1f} {r['groupby_s']:10.1f} "
              f"{r['second_pass_s']:10.1f} {r['total_s']:9.1f} {spilled:>10} "
              f"{format_bytes(r['worker_peak_rss']):>16} {daemon_rss:>16}")  # fmt: skip
    print(f"tmemd / disk wall time: {tmem['total_s'] / disk['total_s']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
