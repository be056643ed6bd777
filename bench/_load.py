"""The load: client processes, one thread per connection, and the timed loops.

Theory of operation.  A case's connections are spread over up to
``processes`` forked worker processes (fork: the corpus is shared
copy-on-write, nothing is pickled on the way in), each running one thread
per connection; a blocking client releases the GIL while it waits, so the
threads of a process overlap their round trips, and the processes overlap
their Python work on different cores.  Every thread:

1. connects (tmemd: creates its pool) and **preloads** what the workload
   needs (the stored set; for flush_object, whole objects), untimed;
2. reports *ready* and waits for *go*; the harness reads the server's CPU
   time between the last *ready* and *go*;
3. runs the **timed loop**, bounded by ``ops_per_connection`` requests and
   ``duration_s`` seconds, timing each call (one request at depth 1, one
   batch of ``depth`` otherwise) with ``time.perf_counter``;
4. sends its ``ThreadResult`` and waits for *release* before it closes its
   connection, so closing is not counted as the server's work.

Every get is checked against the page its key was given (``page_for``):
a wrong page is counted, never hidden.  Key ``k`` of thread ``t`` always
holds ``payloads[(k + t * THREAD_PAGE_STRIDE) % len(payloads)]``, also when
the mixed workload puts it again, so the check needs no history.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._config import MIXED_GET_PERCENT, PAGES_PER_OBJECT, Case
from ._drivers import Driver, make_driver, object_keys
from ._stats import ThreadResult

__all__ = ["FLUSH_STORE_FACTOR", "LoadPlan", "page_for", "run_load", "timed_loop"]

#: Batch size of the untimed preload (the deepest pipelining measured).
PRELOAD_BATCH = 64
#: Keys gets miss on: far above any stored key, in every thread's space.
MISS_BASE = 1 << 36
#: Offset of each thread's pages in the corpus, so threads do not all put
#: the same pages in the same order (a prime, to spread them).
THREAD_PAGE_STRIDE = 7_919
#: The flush_object workload preloads this many times ``stored`` pages, so
#: its timed phase is long enough to measure (one flush drops an object).
FLUSH_STORE_FACTOR = 4
#: Longest a preload may take (10^6 pages at depth 64 take under a minute).
PRELOAD_TIMEOUT_S = 900.0
#: Slack after ``duration_s`` for the last call and the results to arrive.
RESULT_GRACE_S = 120.0
#: How often the harness wakes while it waits, to redraw the progress bar.
TICK_S = 0.2


@dataclass(frozen=True)
class LoadPlan:
    """What every thread of one case is told."""

    case: Case
    host: str
    port: int
    stored_per_thread: int
    duration_s: float
    ops_per_connection: int
    seed: int
    #: CPUs the client processes run on (None: wherever the OS puts them).
    client_cpus: frozenset[int] | None = None
    #: Every daemon's ``host:port`` in a several-server case (else empty).
    addresses: tuple[str, ...] = ()


def page_for(payloads: Sequence[bytes], thread: int, key: int) -> bytes:
    """The page key ``key`` of thread ``thread`` holds."""
    return payloads[(key + thread * THREAD_PAGE_STRIDE) % len(payloads)]


def _check(
    result: ThreadResult, values: Sequence[bytes | None], expected: Sequence[bytes | None]
) -> None:
    for value, want in zip(values, expected, strict=True):
        if value is None:
            result.misses += 1
        elif value == want:
            result.hits += 1
        else:
            result.wrong += 1


def _preload(driver: Driver, plan: LoadPlan, thread: int, payloads: Sequence[bytes]) -> int:
    """Store what the workload reads or flushes; returns the refused count."""
    if plan.case.workload == "flush_object":
        objects = plan.stored_per_thread * FLUSH_STORE_FACTOR // PAGES_PER_OBJECT
        keys = [key for obj in range(objects) for key in object_keys(obj)]
    elif plan.case.workload == "put":
        return 0
    else:
        keys = list(range(plan.stored_per_thread))
    refused = 0
    for start in range(0, len(keys), PRELOAD_BATCH):
        batch = keys[start : start + PRELOAD_BATCH]
        pages = [page_for(payloads, thread, key) for key in batch]
        refused += len(batch) - driver.put_many(batch, pages)
    return refused


def _choose_keys(plan: LoadPlan, rng: random.Random, depth: int) -> tuple[bool, list[int]]:
    """(is a put, keys) of the next call of a keyed workload."""
    workload = plan.case.workload
    stored = max(1, plan.stored_per_thread)
    # Distinct keys within a call: memcached's set_many takes a dict, so a
    # repeated key would silently shrink its batch.
    keys = (
        rng.sample(range(stored), depth) if depth <= stored else rng.choices(range(stored), k=depth)
    )
    if workload == "get_miss":
        return False, [MISS_BASE + key for key in keys]
    if workload == "mixed":
        return rng.randrange(100) >= MIXED_GET_PERCENT, keys
    return False, keys


def _call(
    driver: Driver, is_put: bool, keys: list[int], pages: list[bytes]
) -> tuple[int, list[bytes | None]]:
    """One call at depth ``len(keys)``: (pages stored, values got)."""
    if is_put:
        if len(keys) == 1:
            return int(driver.put(keys[0], pages[0])), []
        return driver.put_many(keys, pages), []
    if len(keys) == 1:
        return 0, [driver.get(keys[0])]
    return 0, driver.get_many(keys)


def timed_loop(
    driver: Driver, plan: LoadPlan, thread: int, payloads: Sequence[bytes], result: ThreadResult
) -> None:
    """The measured phase of one thread (see the module doc)."""
    case, depth = plan.case, plan.case.depth
    rng = random.Random(f"{plan.seed}:{thread}")
    clock, lat = time.perf_counter, result.latencies
    objects = plan.stored_per_thread * FLUSH_STORE_FACTOR // PAGES_PER_OBJECT
    budget = plan.ops_per_connection
    if case.workload == "flush_object":
        budget = min(budget, objects)
    result.start = clock()
    deadline = result.start + plan.duration_s
    while result.ops < budget and clock() < deadline:
        if case.workload == "flush_object":
            t0 = clock()
            driver.flush_object(result.ops)
            lat.append(clock() - t0)
            result.ops += 1
            result.pages += PAGES_PER_OBJECT
            continue
        if case.workload == "put":
            is_put, keys = True, list(range(result.ops, result.ops + depth))
        else:
            is_put, keys = _choose_keys(plan, rng, depth)
        pages = [page_for(payloads, thread, key) for key in keys]
        t0 = clock()
        stored, values = _call(driver, is_put, keys, pages)
        lat.append(clock() - t0)
        _count(result, case, is_put, stored, values, pages)
    result.end = clock()


def _count(
    result: ThreadResult,
    case: Case,
    is_put: bool,
    stored: int,
    values: list[bytes | None],
    pages: list[bytes],
) -> None:
    result.ops += len(pages)
    result.pages += len(pages)
    if is_put:
        result.refused += len(pages) - stored
        return
    if case.workload == "get_miss":
        result.misses += sum(1 for value in values if value is None)
        result.wrong += sum(1 for value in values if value is not None)
    else:
        _check(result, values, pages)


@dataclass
class _Signals:
    """The cross-process signals of one case."""

    messages: multiprocessing.queues.Queue[tuple[str, int, ThreadResult | None]]
    go: multiprocessing.synchronize.Event
    release: multiprocessing.synchronize.Event


def _thread_main(plan: LoadPlan, thread: int, payloads: Sequence[bytes], sig: _Signals) -> None:
    result = ThreadResult()
    driver = make_driver(plan.host, plan.port, thread, plan.case, plan.addresses)
    try:
        driver.connect()
        result.preload_refused = _preload(driver, plan, thread, payloads)
    except Exception as exc:  # reported in the case's errors, the run goes on
        result.error = f"thread {thread} setup: {type(exc).__name__}: {exc}"
    sig.messages.put(("ready", thread, None))
    if sig.go.wait(PRELOAD_TIMEOUT_S) and result.error is None:
        try:
            timed_loop(driver, plan, thread, payloads, result)
        except Exception as exc:  # reported, as above
            result.error = f"thread {thread}: {type(exc).__name__}: {exc}"
            result.end = result.end or time.perf_counter()
    sig.messages.put(("done", thread, result))
    sig.release.wait(RESULT_GRACE_S)
    # Closing a connection the server may already have dropped can fail; moot.
    with contextlib.suppress(Exception):
        driver.close()


def _worker_main(
    plan: LoadPlan, threads: Sequence[int], payloads: Sequence[bytes], sig: _Signals
) -> None:
    if plan.client_cpus is not None:
        os.sched_setaffinity(0, plan.client_cpus)
    workers = [
        threading.Thread(target=_thread_main, args=(plan, t, payloads, sig), daemon=True)
        for t in threads
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def _collect(
    sig: _Signals, kind: str, count: int, timeout_s: float, tick: Callable[[], None]
) -> dict[int, ThreadResult | None]:
    """Wait for ``count`` messages of ``kind``; fewer if the time runs out."""
    got: dict[int, ThreadResult | None] = {}
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        try:
            what, thread, result = sig.messages.get(timeout=TICK_S)
        except queue.Empty:
            tick()
            continue
        if what == kind:
            got[thread] = result
    return got


def run_load(
    plan: LoadPlan,
    payloads: Sequence[bytes],
    processes: int,
    server_cpu: Callable[[], float],
    tick: Callable[[str], None],
) -> tuple[list[ThreadResult], float]:
    """Run one case's load; returns the threads' results and the server's
    CPU seconds over the timed phase (``server_cpu`` reads its counter)."""
    ctx = multiprocessing.get_context("fork")
    conns = plan.case.connections
    sig = _Signals(ctx.Queue(), ctx.Event(), ctx.Event())
    nproc = max(1, min(conns, processes or os.cpu_count() or 1))
    procs = [
        ctx.Process(target=_worker_main, args=(plan, range(p, conns, nproc), payloads, sig))
        for p in range(nproc)
    ]
    for proc in procs:
        proc.start()
    try:
        _collect(sig, "ready", conns, PRELOAD_TIMEOUT_S, lambda: tick("preload"))
        cpu0 = server_cpu()
        sig.go.set()
        done = _collect(sig, "done", conns, plan.duration_s + RESULT_GRACE_S, lambda: tick("run"))
        cpu = server_cpu() - cpu0
    finally:
        sig.go.set()
        sig.release.set()
        for proc in procs:
            proc.join(timeout=RESULT_GRACE_S)
            if proc.is_alive():
                proc.terminate()
                proc.join()
    results = [r if r is not None else ThreadResult() for r in done.values()]
    missing = conns - len(results)
    results += [ThreadResult(error="thread sent no result") for _ in range(missing)]
    return results, cpu
