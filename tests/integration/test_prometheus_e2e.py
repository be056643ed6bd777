"""A real Prometheus scrapes a real tmemd with the shipped config and rules.

Debian's ``prometheus`` server runs on loopback with a config derived from
``deploy/prometheus/prometheus.yml`` (same job and rules, target rewritten to
the test daemon's metrics port, 1 s intervals, a temporary TSDB).  The test
drives traffic through ``tmem.client``, then reads the numbers back through
Prometheus' HTTP query API, evaluates every dashboard query and alert
expression (each must be valid PromQL, and the key panels must return data),
and checks that the alert rules loaded and evaluate without error.  Every
wait is bounded; Prometheus is killed at the end.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Daemon
from tests.unit.test_deploy_promql import dashboard_queries, rule_expressions, substitute
from tmem.client import Client

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
#: Prometheus starts in about a second here; a cold, busy CI box gets more.
PROMETHEUS_START_TIMEOUT_S = 30.0
#: Bound on waiting for a scraped value to reach Prometheus (1 s interval).
SCRAPE_WAIT_S = 20.0
HTTP_TIMEOUT_S = 5.0
#: Prometheus' lastEvaluation of a rule not evaluated yet.
NEVER = "0001-01-01T00:00:00Z"
PAGES = 200
#: Dashboard panels that must show data after the traffic below (the rest,
#: such as evictions or refusals, are legitimately empty or NaN here).
MUST_HAVE_DATA = (
    "Up", "Memory against the limit", "Density", "Get hit rate", "Page ops by op and result",
    "Server latency quantiles", "Connections", "Network", "Stored pages per pool",
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Prometheus:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("/api/v1/query", query=expr)
        assert data["resultType"] in ("vector", "scalar"), data
        result: list[dict[str, Any]] = data["result"]
        return result

    def scalar(self, expr: str) -> float | None:
        """The single value of ``expr``, or None while it has no data."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def wait_for(self, expr: str, want: float) -> None:
        deadline = time.monotonic() + SCRAPE_WAIT_S
        while (got := self.scalar(expr)) != want:
            assert time.monotonic() < deadline, f"{expr} = {got}, wanted {want}\n{self.log_text()}"
            time.sleep(0.2)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def write_config(tmp_path: Path, metrics_port: int) -> Path:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / name) for name in config["rule_files"]]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "tmemd"]
    job["scrape_timeout"] = "1s"
    for group in job["static_configs"]:
        group["targets"] = [f"127.0.0.1:{metrics_port}"]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[[int], Prometheus]]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package prometheus; `make` installs it)")
    started: list[Prometheus] = []

    def start(metrics_port: int) -> Prometheus:
        port = free_port()
        log = tmp_path / "prometheus.log"
        argv = [
            binary,
            f"--config.file={write_config(tmp_path, metrics_port)}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        with open(log, "wb") as fh:
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=tmp_path)
        prom = Prometheus(proc, port, log)
        started.append(prom)
        deadline = time.monotonic() + PROMETHEUS_START_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"prometheus exited:\n{prom.log_text()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return prom
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, f"prometheus not ready:\n{prom.log_text()}"
            time.sleep(0.1)

    yield start
    for prom in started:
        if prom.proc.poll() is None:
            prom.proc.send_signal(signal.SIGTERM)
            try:
                prom.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                prom.proc.kill()
                prom.proc.wait()


def drive_traffic(address: str, prom: Prometheus) -> int:
    """Persistent and ephemeral puts and gets; returns the persistent pool's id.

    The pools are created first and scraped while empty: a counter series
    that first appears already at its final value shows Prometheus no
    increase, so rate() would be 0 for this burst.
    """
    with Client(address, client_name="web-1") as client:
        swap = client.new_pool(persistent=True)
        cache = client.new_pool(persistent=False)
        prom.wait_for('count(tmemd_stored_pages{client="web-1"} == 0)', 2)
        for i in range(PAGES):
            page = (b"e2e page %06d " % i * 300)[:4096]
            assert swap.put(1, i, page)
            assert cache.put(2, i, page)
        for i in range(PAGES):
            assert swap.get(1, i) is not None
        for i in range(PAGES, PAGES + 50):
            assert swap.get(1, i) is None
        return swap.pool_id


def test_prometheus_reads_tmemd(
    daemon_factory: Callable[..., Daemon],
    prometheus_factory: Callable[[int], Prometheus],
    tmp_path: Path,
) -> None:
    port_file = tmp_path / "metrics.port"
    daemon = daemon_factory(
        "--memory", "32MiB", "--metrics", "127.0.0.1:0", "--metrics-port-file", str(port_file)
    )
    assert port_file.exists(), f"no --metrics-port-file written:\n{daemon.log()}"
    prom = prometheus_factory(int(port_file.read_text()))
    prom.wait_for('up{job="tmemd"}', 1)
    swap = drive_traffic(daemon.address, prom)
    sel = f'client="web-1", pool="{swap}", pool_kind="persistent"'
    prom.wait_for(f'tmemd_ops_total{{{sel}, op="put_page", result="stored"}}', PAGES)
    prom.wait_for(f'tmemd_ops_total{{{sel}, op="get_page", result="hit"}}', PAGES)
    prom.wait_for(f'tmemd_ops_total{{{sel}, op="get_page", result="miss"}}', 50)
    prom.wait_for(f"tmemd_stored_pages{{{sel}}}", PAGES)
    prom.wait_for('sum(tmemd_stored_pages{client="web-1"})', 2 * PAGES)
    prom.wait_for('tmemd_op_duration_seconds_count{op="put_page"}', 2 * PAGES)
    prom.wait_for("tmemd_memory_limit_bytes", 32 << 20)
    rss = prom.scalar("tmemd_process_resident_memory_bytes")
    assert rss is not None and abs(rss - daemon.rss_bytes()) < 32 << 20
    targets = prom.api("/api/v1/targets")["activeTargets"]
    assert [t["health"] for t in targets] == ["up"], targets
    check_dashboard_queries(prom)
    check_rules(prom)


def check_dashboard_queries(prom: Prometheus) -> None:
    """Every panel query is valid PromQL on real data; the key panels show data."""
    time.sleep(2.5)  # rates need two samples after the burst inside their window
    shown: dict[str, bool] = {}
    for title, expr in dashboard_queries():
        result = prom.query(substitute(expr))
        has_data = any(r["value"][1] not in ("NaN", "+Inf", "-Inf") for r in result)
        shown[title] = shown.get(title, False) or has_data
    assert set(MUST_HAVE_DATA) <= set(shown)
    assert [t for t in MUST_HAVE_DATA if not shown[t]] == []


def check_rules(prom: Prometheus) -> None:
    """The shipped alert rules loaded, evaluate without error, and none fires here."""
    for _alert, expr in rule_expressions():
        prom.query(expr)  # valid PromQL, accepted by the server
    deadline = time.monotonic() + SCRAPE_WAIT_S
    while True:
        rules = [r for g in prom.api("/api/v1/rules")["groups"] for r in g["rules"]]
        if rules and all(r.get("lastEvaluation", NEVER) != NEVER for r in rules):
            break
        assert time.monotonic() < deadline, rules
        time.sleep(0.2)
    assert sorted(r["name"] for r in rules) == sorted(a for a, _ in rule_expressions())
    for rule in rules:
        assert rule["health"] == "ok", rule
        assert rule["state"] == "inactive", rule  # a healthy daemon under light load
