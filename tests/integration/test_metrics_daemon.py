"""``tmemd --metrics`` on the real daemon: what a scrape says after real traffic.

The daemon runs as a subprocess (``daemon_factory``), reports its metrics
port through ``--metrics-port-file``, and is driven by ``tmem.client``; the
scrape must count exactly the requests made, per client and pool.  The
container image's HEALTHCHECK command is run against it too.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Daemon
from tmem.client import Client

CONTAINERFILE = Path(__file__).resolve().parents[2] / "deploy" / "container" / "Containerfile"
#: Bound on every wait and HTTP call here.
TIMEOUT_S = 10.0
PAGE = 4096


def start(daemon_factory: Callable[..., Daemon], tmp_path: Path, *flags: str) -> tuple[Daemon, int]:
    port_file = tmp_path / "metrics.port"
    daemon = daemon_factory(
        "--memory", "16MiB", "--metrics", "127.0.0.1:0",
        "--metrics-port-file", str(port_file), *flags,
    )  # fmt: skip
    # The daemon writes the metrics port before the data port, which the
    # fixture waited for; the bounded wait only guards against a reordering.
    deadline = time.monotonic() + TIMEOUT_S
    while not port_file.exists():
        assert time.monotonic() < deadline, f"no --metrics-port-file written:\n{daemon.log()}"
        time.sleep(0.02)
    return daemon, int(port_file.read_text())


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT_S) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    status, text = http_get(port, "/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert found, f"no sample {name}{labels}"
    return sum(found)


def page(i: int) -> bytes:
    return (b"metrics page %06d " % i * 256)[:PAGE]


def test_scrape_counts_real_traffic(daemon_factory: Callable[..., Daemon], tmp_path: Path) -> None:
    daemon, port = start(daemon_factory, tmp_path)
    assert http_get(port, "/healthz") == (200, "ok\n")
    assert http_get(port, "/readyz")[0] == 200
    with Client(daemon.address, client_name="web-1") as client:
        swap = client.new_pool(persistent=True)
        cache = client.new_pool(persistent=False)
        for i in range(50):
            assert swap.put(1, i, page(i))
            assert cache.put(2, i, page(i))
        for i in range(60):  # 50 hits, 10 misses
            swap.get(1, i)
        assert swap.flush(1, 0)
        samples = scrape(port)
        live = value(samples, "tmemd_client_connections", client="web-1")
    swap_labels = dict(client="web-1", pool=str(swap.pool_id), pool_kind="persistent")
    ops = "tmemd_ops_total"
    assert value(samples, ops, op="put_page", result="stored", **swap_labels) == 50
    assert value(samples, ops, op="get_page", result="hit", **swap_labels) == 50
    assert value(samples, ops, op="get_page", result="miss", **swap_labels) == 10
    assert value(samples, ops, op="flush_page", result="ok", **swap_labels) == 1
    assert value(samples, "tmemd_stored_pages", **swap_labels) == 49
    assert value(samples, "tmemd_stored_pages", client="web-1", pool_kind="ephemeral") == 50
    assert value(samples, "tmemd_stored_original_bytes", **swap_labels) == 49 * PAGE
    assert value(samples, "tmemd_op_duration_seconds_count", op="put_page") == 100
    assert value(samples, "tmemd_op_duration_seconds_count", op="get_page") == 60
    assert value(samples, "tmemd_memory_limit_bytes") == 16 << 20
    assert value(samples, "tmemd_network_received_bytes_total") > 100 * PAGE
    assert value(samples, "tmemd_network_sent_bytes_total") > 50 * PAGE
    assert live == 1
    assert value(samples, "tmemd_connections") == 1
    assert value(samples, "tmemd_clients") == 1
    rss = value(samples, "tmemd_process_resident_memory_bytes")
    assert abs(rss - daemon.rss_bytes()) < 16 << 20  # the daemon's RSS, not the test's

    # After the client leaves, its pools wait out the lease.
    deadline = time.monotonic() + TIMEOUT_S
    while value(scrape(port), "tmemd_connections") != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    samples = scrape(port)
    assert value(samples, "tmemd_client_in_lease", client="web-1") == 1
    assert value(samples, "tmemd_connections_accepted_total") == 1


KINDS = ("ephemeral", "persistent", "shared")
CODECS = (None, "none", "lzo", "lz4", "zstd")
PAMS = (None, "zbud", "xvmalloc", "zsmalloc")


def test_every_pool_kind_pam_and_codec_exports(
    daemon_factory: Callable[..., Daemon], tmp_path: Path
) -> None:
    """Any pool a client may make is exported, and no pool can break a scrape:
    a third PAM (one that is neither kind's default) used to answer 500 for good."""
    daemon, port = start(daemon_factory, tmp_path)
    made: dict[tuple[str, str], tuple[str, str | None]] = {}
    for n, kind in enumerate(KINDS):
        name = f"tenant-{kind}"
        with Client(daemon.address, client_name=name) as client:
            for i, (codec, pam) in enumerate(itertools.product(CODECS, PAMS)):
                shared = uuid.UUID(int=(n << 64) + i + 1) if kind == "shared" else None
                pool = client.new_pool(
                    persistent=kind == "persistent", shared_uuid=shared, codec=codec, pam=pam
                )
                assert pool.put(1, 0, page(i))
                made[(name, str(pool.pool_id))] = (kind, codec)
            samples = scrape(port)
    info = {
        (dict(ls)["client"], dict(ls)["pool"]): dict(ls)
        for (n, ls), _v in samples.items()
        if n == "tmemd_pool_info"
    }
    assert set(info) == set(made)
    for key, (kind, codec) in made.items():
        assert info[key]["shared"] == str(kind == "shared").lower()
        assert info[key]["codec"] == (codec or "lzo")
    roles = {
        dict(ls)["pam"]: dict(ls)["pool_kind"]
        for (n, ls), _v in samples.items()
        if n == "tmemd_pam_objects"
    }
    assert roles == {"zbud": "ephemeral", "zsmalloc": "persistent", "xvmalloc": "named"}
    assert value(samples, "tmemd_pam_objects") == len(made)
    assert value(samples, "tmemd_metrics_errors_total") == 0
    # The pools are gone with their lease; the third PAM stays and still exports.
    assert value(scrape(port), "tmemd_pam_objects", pam="xvmalloc") >= 0


def test_metrics_endpoint_errors(daemon_factory: Callable[..., Daemon], tmp_path: Path) -> None:
    _, port = start(daemon_factory, tmp_path)
    assert http_get(port, "/nope")[0] == 404
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", method="POST", data=b"")
    try:
        urllib.request.urlopen(request, timeout=TIMEOUT_S)
        raise AssertionError("POST was accepted")
    except urllib.error.HTTPError as exc:
        assert exc.code == 405


def test_container_healthcheck_command(
    daemon_factory: Callable[..., Daemon], tmp_path: Path
) -> None:
    """The image's HEALTHCHECK, pointed at this daemon's port, exits 0; at a dead port, 1."""
    _, port = start(daemon_factory, tmp_path)
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    (line,) = [ln for ln in text.splitlines() if ln.startswith("HEALTHCHECK")]
    argv = json.loads(line.split(" CMD ", 1)[1])
    assert argv[0] == "python"
    code = argv[2].replace("127.0.0.1:7471", f"127.0.0.1:{port}")
    ok = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=TIMEOUT_S)
    assert ok.returncode == 0, ok.stderr
    dead = code.replace(f"127.0.0.1:{port}", "127.0.0.1:1")
    bad = subprocess.run([sys.executable, "-c", dead], capture_output=True, timeout=TIMEOUT_S)
    assert bad.returncode != 0
