"""Re-reading a Parquet dataset through pandas from a slow source, with and
without a cache: no cache, fsspec's ``blockcache::`` on local disk, and
``tmem::`` (tmemd, a shared pool, two client names).

The dataset is real data of this machine: one row per file under ``/usr``
(path, owning Debian package and its version and section from dpkg's
status, size, mode, mtime) with the first ``--head-kib`` KiB of the file's
content as a binary column (ELF code, Python sources, text, compressed man
pages: what a data lake of files holds).  It is written once, with
pyarrow's defaults (snappy) in row groups, under ``--data-dir``.

The source stands for object storage on another network: an fsspec
filesystem over the local file that adds ``--latency-ms`` to every request
(``info`` and every ranged read) and caps the throughput of all its reads
together at ``--mbps`` (decimal MB/s), by serialising transfer time behind
one clock while latencies overlap.

Cases, each timed as the wall time of one ``pd.read_parquet`` (or, with
``--backend bytes``, of reading the file's bytes in 8 MiB pieces, which
leaves pandas' decoding out and so measures the cache alone):

- ``local file``: the file directly, no slow source (pandas' own floor);
- ``source``: the slow source, no cache;
- ``blockcache:: cold`` / ``warm``: fsspec's block cache on local disk
  (a fresh temporary directory);
- ``tmem:: cold`` / ``warm``: client ``bench-a`` through tmemd;
- ``tmem:: other client``: client ``bench-b``, which names the same shared
  pool, after ``bench-a`` filled it.

Warm cases are the fastest of ``--repeat`` reads; the whole set runs
``--rounds`` times (each round with a fresh block cache directory and a
fresh shared pool, so that cold is cold again) and the median is reported:
on a shared 2-core machine one run is noisy.  The daemon is started
here on a free loopback port with ``--memory`` large enough for the whole
dataset and an auth file, so that an administrator can authorize both
client names for the shared pool.

    .venv/bin/python bench/apps_parquet.py --json docs/bench/apps/results.json \\
        --chart docs/bench/apps/parquet.png
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from tmem.client import Client
from tmem.client.cleancache import TmemFileSystem, shared_pool_uuid
from tmemd._auth import hash_token

#: Rows per Parquet row group: a few MiB per column chunk, as writers of
#: real datasets produce.
ROW_GROUP_ROWS = 16_384
#: The dataset's shared pool name and the benchmark's client names.
POOL_NAME = "usr-files"
TOKENS = {"bench-a": "token-a", "bench-b": "token-b", "ops": "token-ops"}
#: How long the daemon may take to start on a loaded machine.
DAEMON_START_S = 30.0


def dpkg_packages() -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """path -> package (dpkg's file lists), package -> (version, section)."""
    owner: dict[str, str] = {}
    for listing in Path("/var/lib/dpkg/info").glob("*.list"):
        package = listing.stem.split(":")[0]
        for line in listing.read_text(errors="replace").splitlines():
            owner[line] = package
    meta: dict[str, tuple[str, str]] = {}
    for stanza in Path("/var/lib/dpkg/status").read_text(errors="replace").split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " "
        )
        if "Package" in fields:
            meta[fields["Package"]] = (fields.get("Version", ""), fields.get("Section", ""))
    return owner, meta


def build_dataset(path: Path, head_bytes: int) -> None:
    """The table of files under /usr (see the module doc), as Parquet."""
    owner, meta = dpkg_packages()
    rows: dict[str, list[Any]] = {
        k: [] for k in ("path", "package", "version", "section", "size", "mode", "mtime", "head")
    }
    for root, _dirs, files in os.walk("/usr"):
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                st = os.lstat(full)
                with open(full, "rb") as fh:
                    head = fh.read(head_bytes)
            except OSError:
                continue
            package = owner.get(full, "")
            version, section = meta.get(package, ("", ""))
            for key, value in zip(
                rows,
                (full, package, version, section, st.st_size, st.st_mode, st.st_mtime, head),
                strict=True,
            ):
                rows[key].append(value)
    table = pa.table(rows)
    pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS)


class Meter:
    """The slow source's clock and counters, shared by all its instances."""

    def __init__(self, latency_s: float, bytes_per_s: float) -> None:
        self.latency_s = latency_s
        self.bytes_per_s = bytes_per_s
        self.requests = 0
        self.bytes_read = 0
        self._busy_until = 0.0
        self._lock = threading.Lock()

    def wait(self, nbytes: int) -> None:
        """One request of ``nbytes``: transfers queue behind each other at the
        capped rate; the latency of concurrent requests overlaps."""
        with self._lock:
            self.requests += 1
            self.bytes_read += nbytes
            start = max(time.monotonic(), self._busy_until)
            self._busy_until = start + nbytes / self.bytes_per_s
            done = self._busy_until + self.latency_s
        time.sleep(max(0.0, done - time.monotonic()))


class SlowFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """Local files behind ``meter``: a fixed latency per request, a throughput cap."""

    protocol = "slow"
    meter = Meter(0.02, 100e6)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.local = LocalFileSystem()

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        self.meter.wait(0)
        return dict(self.local.info(self._strip_protocol(path)))

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> Any:
        self.meter.wait(0)
        return self.local.ls(self._strip_protocol(path), detail=detail)

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        data = bytes(self.local.cat_file(self._strip_protocol(path), start, end))
        self.meter.wait(len(data))
        return data

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        return SlowFile(self, path, mode, **kwargs)


class SlowFile(AbstractBufferedFile):  # type: ignore[misc]
    def _fetch_range(self, start: int, end: int) -> bytes:
        return bytes(self.fs.cat_file(self.path, start, end))


def start_daemon(memory: str, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    auth = work / "auth.toml"
    lines = []
    for name, token in TOKENS.items():
        lines += [f"[clients.{name}]", f'token_sha256 = "{hash_token(token)}"']
        lines += ["admin = true", ""] if name == "ops" else [""]
    auth.write_text("\n".join(lines))
    port_file = work / "port"
    argv = [sys.executable, "-m", "tmemd.cli", "--listen", "127.0.0.1:0", "--memory", memory]
    argv += ["--port-file", str(port_file), "--log-level", "warning", "--auth-file", str(auth)]
    proc = subprocess.Popen(argv)
    deadline = time.monotonic() + DAEMON_START_S
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("tmemd did not start")
        time.sleep(0.02)
    return proc, f"127.0.0.1:{int(port_file.read_text())}"


#: ``--backend bytes`` reads the file in pieces of this size, as a loader does.
READ_CHUNK_BYTES = 8 << 20


def timed_read(url: str, storage: dict[str, Any], backend: str) -> tuple[float, int]:
    """One read of ``url``: ``pd.read_parquet`` (rows), or with ``backend``
    "bytes" the file's bytes in ``READ_CHUNK_BYTES`` pieces (bytes): the
    second isolates the cache from pandas' decoding, which bounds the first."""
    began = time.perf_counter()
    if backend == "bytes":
        total = 0
        with fsspec.open(url, "rb", **storage) as fh:
            while chunk := fh.read(READ_CHUNK_BYTES):
                total += len(chunk)
        return time.perf_counter() - began, total
    frame = pd.read_parquet(url, storage_options=storage, dtype_backend=backend)
    return time.perf_counter() - began, len(frame)


def daemon_cpu_s(pid: int) -> float:
    """The daemon's user + system CPU seconds so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_cases(
    args: argparse.Namespace, dataset: Path, address: str, pool: str, daemon_pid: int
) -> list[dict[str, Any]]:
    slow = SlowFileSystem.meter = Meter(args.latency_ms / 1000, args.mbps * 1e6)
    fsspec.register_implementation("slow", SlowFileSystem, clobber=True)
    results: list[dict[str, Any]] = []

    def case(name: str, url: str, storage: dict[str, Any], repeat: int = 1) -> None:
        before = (slow.requests, slow.bytes_read)
        cpu = (time.process_time(), daemon_cpu_s(daemon_pid))
        seconds, rows = min(timed_read(url, storage, args.backend) for _ in range(repeat))
        row = {"case": name, "seconds": round(seconds, 3), "rows": rows}
        # CPU per read (mean over the repeats): less at the mercy of other
        # loads on a shared machine than the wall time.
        row["cpu_s"] = round((time.process_time() - cpu[0]) / repeat, 2)
        row["daemon_cpu_s"] = round((daemon_cpu_s(daemon_pid) - cpu[1]) / repeat, 2)
        row["source_requests"] = (slow.requests - before[0]) // repeat
        row["source_mb"] = round((slow.bytes_read - before[1]) / repeat / 1e6, 1)
        results.append(row)
        print(
            f"{name:24} {seconds:8.3f} s  cpu {row['cpu_s']:5.2f} + daemon "
            f"{row['daemon_cpu_s']:5.2f} s  source: {row['source_requests']:3} requests, "
            f"{row['source_mb']:6.1f} MB",
            flush=True,
        )

    case("local file", f"file://{dataset}", {}, args.repeat)
    case("source", f"slow://{dataset}", {})
    with tempfile.TemporaryDirectory(prefix="blockcache-") as cache_dir:
        block = {"blockcache": {"cache_storage": cache_dir}}
        case("blockcache:: cold", f"blockcache::slow://{dataset}", block)
        case("blockcache:: warm", f"blockcache::slow://{dataset}", block, args.repeat)
    for name, repeat, label in (
        ("bench-a", 1, "cold"),
        ("bench-a", args.repeat, "warm"),
        ("bench-b", 1, "other client"),
    ):
        tmem = {
            "server": address,
            "client_name": name,
            "token": TOKENS[name],
            "pool": pool,
            "timeout": 10.0,
        }
        url = f"tmem::slow://{dataset}"
        fs, _ = fsspec.core.url_to_fs(url, tmem=tmem)  # the instance pandas gets
        assert isinstance(fs, TmemFileSystem)
        before = fs.stats()
        case(f"tmem:: {label}", url, {"tmem": tmem}, repeat)
        after = fs.stats()
        results[-1]["tmem"] = {k: (after[k] - before[k]) // repeat for k in after}
        print(f"{'':24} tmem stats per read: {results[-1]['tmem']}", flush=True)
    return results


def authorize(address: str, pool: str) -> None:
    uuid = shared_pool_uuid(pool, 65536)
    with Client(address, client_name="ops", token=TOKENS["ops"]) as ops:
        for name in ("bench-a", "bench-b"):
            ops.control("authorize_shared", client=name, uuid=uuid.hex)


def summarize(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per case: the last round's figures, with the median and all seconds."""
    out = []
    for position, last in enumerate(rounds[-1]):
        seconds = [r[position]["seconds"] for r in rounds]
        out.append({**last, "seconds": statistics.median(seconds), "all_seconds": seconds})
    print("median seconds: " + ", ".join(f"{r['case']} {r['seconds']:.2f}" for r in out))
    return out


def chart(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    names = [r["case"] for r in results]
    ax.barh(names[::-1], [r["seconds"] for r in results][::-1], color="#4477aa")
    ax.set_xlabel("seconds per pd.read_parquet (lower is better)")
    ax.set_title("Re-reading a Parquet dataset from a slow source")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("bench/results/tmp/apps"))
    parser.add_argument("--head-kib", type=int, default=12)
    parser.add_argument(
        "--backend",
        default="pyarrow",
        choices=["pyarrow", "numpy_nullable", "bytes"],
        help="pandas dtype_backend: pyarrow keeps Arrow buffers (no Python object per cell);"
        " bytes: read the file's bytes instead of decoding it (the cache alone)",
    )
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--mbps", type=float, default=100.0)
    parser.add_argument("--memory", default="2GiB", help="tmemd --memory (fits the dataset)")
    parser.add_argument("--repeat", type=int, default=3, help="reads per warm case (fastest)")
    parser.add_argument("--rounds", type=int, default=3, help="whole runs (median reported)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--chart", type=Path)
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    dataset = (args.data_dir / f"usr-files-head{args.head_kib}k.parquet").resolve()
    if not dataset.exists():
        print(f"building {dataset} from /usr and dpkg's database ...", flush=True)
        build_dataset(dataset, args.head_kib << 10)
    meta = pq.ParquetFile(dataset).metadata
    size_mib = dataset.stat().st_size / 2**20
    print(
        f"dataset: {size_mib:.0f} MiB, {meta.num_rows} rows, {meta.num_row_groups} row groups;"
        f" source {args.latency_ms:g} ms/request, {args.mbps:g} MB/s",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="tmemd-apps-") as work:
        proc, address = start_daemon(args.memory, Path(work))
        try:
            rounds = []
            for number in range(args.rounds):
                load = os.getloadavg()[0]
                print(f"--- round {number + 1} of {args.rounds}, load {load:.1f}", flush=True)
                pool = f"{POOL_NAME}-{number}"  # a new shared pool: cold again
                authorize(address, pool)
                rounds.append(run_cases(args, dataset, address, pool, proc.pid))
            results = summarize(rounds)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    report = {
        "dataset_mib": round(size_mib, 1),
        "rows": meta.num_rows,
        "latency_ms": args.latency_ms,
        "mbps": args.mbps,
        "results": results,
        "load_after": round(os.getloadavg()[0], 1),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.chart:
        chart(results, args.chart)


if __name__ == "__main__":
    main()
