"""The daemon-edge bounds without sockets: the reply backlog's budgets,
admission of connections without HELLO, the /metrics bearer-token parsing,
and the new settings from flags and TOML."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tmemd._admission import Admission
from tmemd._backlog import ReplyBacklog
from tmemd._metrics_http import _MetricsHttp, bearer_token_of
from tmemd.cli import build_parser, load_metrics_token, make_config
from tmemd.config import ConfigError, DaemonConfig


class Member:
    def __init__(self, buffered: int = 0) -> None:
        self.queued = 0
        self.buffered = buffered

    def write_buffer_size(self) -> int:
        return self.buffered


def test_backlog_budget_per_connection_and_in_all() -> None:
    backlog = ReplyBacklog(per_connection_bytes=100, total_bytes=190)
    a, b, c = Member(), Member(), Member()
    assert backlog.budget(a) == 100
    a.buffered = 90
    backlog.sample(a)
    assert backlog.budget(a) == 10
    b.buffered = 100
    backlog.sample(b)
    c.buffered = 60
    assert backlog.budget(c) <= 0  # all spent, and c's own queue is not empty
    c.buffered = 0
    assert backlog.budget(c) == 1  # an empty queue may always send one frame
    a.buffered = 0
    backlog.resample()  # a drained: room again
    assert backlog.queued == 100 and backlog.budget(c) == 90
    backlog.forget(b)
    assert backlog.queued == 0 and not backlog.holders


def test_admission_evicts_the_oldest_unauthenticated() -> None:
    adm: Admission[str] = Admission(max_connections=4, max_unauthenticated=2, hello_timeout_s=5)
    assert adm.admit("a", 0, now=0.0).evict is None
    assert adm.admit("b", 1, now=1.0).evict is None
    verdict = adm.admit("c", 2, now=2.0)
    assert verdict.admitted and verdict.evict == "a" and adm.evicted == 1
    adm.authenticated("b")
    adm.authenticated("c")
    assert adm.admit("d", 2, now=3.0).evict is None
    adm.authenticated("d")
    # Full with authenticated connections only: BUSY.
    assert not adm.admit("e", 4, now=4.0).admitted


def test_admission_full_replaces_an_unauthenticated_one() -> None:
    adm: Admission[str] = Admission(max_connections=2, max_unauthenticated=2, hello_timeout_s=5)
    adm.admit("a", 0, now=0.0)
    adm.authenticated("a")
    adm.admit("b", 1, now=1.0)
    verdict = adm.admit("c", 2, now=2.0)
    assert verdict.admitted and verdict.evict == "b"


def test_admission_hello_deadline_counts_from_connect() -> None:
    adm: Admission[str] = Admission(max_connections=9, max_unauthenticated=9, hello_timeout_s=5)
    adm.admit("a", 0, now=0.0)
    adm.admit("b", 1, now=3.0)
    assert adm.overdue(now=5.0) == []
    assert adm.overdue(now=5.5) == ["a"]
    assert adm.overdue(now=9.0) == ["b"] and adm.hello_timeouts == 2
    assert not adm.unauthenticated


@pytest.mark.parametrize(
    ("head", "token"),
    [
        (b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer abc\r\n\r\n", b"abc"),
        (b"GET /metrics HTTP/1.1\r\nauthorization:   bearer  abc  \r\n\r\n", b"abc"),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic abc\r\n\r\n", None),
        (b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer\r\n\r\n", None),
        (b"GET /metrics HTTP/1.1\r\nX-Authorization: Bearer abc\r\n\r\n", None),
        (b"GET /metrics HTTP/1.1\r\n\r\n", None),
    ],
)
def test_bearer_token_of(head: bytes, token: bytes | None) -> None:
    assert bearer_token_of(head) == token


def test_metrics_route_needs_the_token_only_on_metrics() -> None:
    app = _MetricsHttp(CollectorRegistry(), lambda: True, bearer_token="s3cret-token-0123")

    def status(path: str, token: bytes | None) -> int:
        return asyncio.run(app.route("GET", path, token))[0]

    assert status("/metrics", None) == 401
    assert status("/metrics", b"s3cret-token-012") == 401
    assert status("/metrics", b"s3cret-token-0123") == 200
    assert status("/healthz", None) == 200
    assert status("/readyz", None) == 200


def test_new_settings_from_flags_and_toml(tmp_path: Path) -> None:
    toml = tmp_path / "tmemd.toml"
    toml.write_text(
        "hello-timeout = 2.5\nmax-unauthenticated = 16\ndrain-timeout = 10\n"
        f'metrics-auth = "{tmp_path / "token"}"\n'
    )
    config = make_config(build_parser().parse_args(["--config", str(toml), "--drain-timeout", "3"]))
    assert (config.hello_timeout, config.max_unauthenticated, config.drain_timeout) == (2.5, 16, 3)
    assert config.metrics_auth == str(tmp_path / "token")
    defaults = DaemonConfig()
    assert (defaults.hello_timeout, defaults.max_unauthenticated, defaults.drain_timeout) == (
        5.0,
        128,
        5.0,
    )
    assert defaults.metrics_auth is None


@pytest.mark.parametrize(
    "changes",
    [
        {"hello_timeout": 0},
        {"max_unauthenticated": 0},
        {"drain_timeout": -1},
        {"drain_timeout": 61},
        {"metrics_tls_cert": "c.pem"},
        {"metrics_tls_client_ca": "ca.pem"},
    ],
)
def test_new_settings_are_validated(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        DaemonConfig(**changes)  # type: ignore[arg-type]


def test_metrics_token_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  0123456789abcdef0123\n")
    assert load_metrics_token(DaemonConfig(metrics_auth=str(path))) == "0123456789abcdef0123"
    path.write_text("short\n")
    with pytest.raises(ConfigError):
        load_metrics_token(DaemonConfig(metrics_auth=str(path)))
    with pytest.raises(ConfigError):
        load_metrics_token(DaemonConfig(metrics_auth=str(tmp_path / "missing")))
    assert load_metrics_token(DaemonConfig()) is None
