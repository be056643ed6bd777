"""Real dask spilling past its memory limit into tmemd.

One worker process (a Nanny, as in production) with a memory limit, whose
``data=`` is ``tmem.client.dask_spill.worker_data``; it persists an array
several times bigger than that limit, then computes on it.  The result must
be exact, and the bytes that went to tmemd must show in the store's counters
and in tmemd's own statistics for the worker's client name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon
from tmem.client import Client

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

#: The worker's memory limit and the buffer's target.  The array is 3x the
#: limit, so most of it must leave the worker's memory.
MEMORY_LIMIT_BYTES = 400 << 20
TARGET_BYTES = 64 << 20
ARRAY_ITEMS = 150_000_000  # int64: 1.2 GB, 3x the limit
CHUNK_ITEMS = 5_000_000  # 40 MB chunks


def spill_stats(dask_worker: Any) -> dict[str, Any]:
    data = dask_worker.data
    return {**data.store.stats(), "spilled_total": list(data.spilled_total)}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dask_worker_spills_past_its_memory_limit_to_tmemd(
    daemon_factory: Callable[..., Daemon], tmp_path: Path
) -> None:
    from tmem.client.dask_spill import worker_data

    daemon = daemon_factory("--memory", "2GiB", "--codec", "lz4")
    cluster = distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        memory_limit=MEMORY_LIMIT_BYTES,
        dashboard_address=None,
        local_directory=str(tmp_path),
        data=(
            worker_data,
            {"server": daemon.address, "target": TARGET_BYTES, "client_name": "dask-test"},
        ),
    )
    try:
        with distributed.Client(cluster) as dask_client:
            x = da.arange(ARRAY_ITEMS, chunks=CHUNK_ITEMS, dtype="int64").persist()
            distributed.wait(x)
            total, sevens = dask_client.compute([x.sum(), (x % 7).sum()], sync=True)
            stats = next(iter(dask_client.run(spill_stats).values()))
    finally:
        cluster.close()
    n = ARRAY_ITEMS
    assert total == n * (n - 1) // 2
    full, rest = divmod(n, 7)
    assert sevens == full * 21 + sum(range(rest))
    spilled = stats["far_bytes"] + stats["fallback_bytes"]
    assert stats["far_bytes"] > 2 * MEMORY_LIMIT_BYTES, stats
    assert spilled >= stats["far_bytes"]
    with Client(daemon.address, client_name="dask-test") as tmem:
        daemon_side = tmem.stats()
    print("spill store:", stats)
    print("tmemd:", {k: v for k, v in daemon_side.items() if not isinstance(v, list | dict)})
