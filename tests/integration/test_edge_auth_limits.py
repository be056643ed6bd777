"""Failed HELLOs are throttled per address and per name, with counters and a
log line; ``/metrics`` can require a bearer token (401 without it) and be
served over mutual TLS, while ``/healthz`` and ``/readyz`` stay open."""

from __future__ import annotations

import socket
import ssl
import urllib.request
from collections.abc import Callable
from pathlib import Path

import msgpack

from tmem.proto import Opcode, Status
from tmemd._throttle import AUTH_FAILURE_BURST

from ..conftest import Daemon
from .authfile import write_auth
from .rawwire import RawConn
from .test_auth_tls import _make_ca_and_certs
from .test_metrics_daemon import TIMEOUT_S, http_get, scrape, start, value

TOKENS = {"victim": "victim-secret", "other": "other-secret", "ops": "ops-secret"}
METRICS_TOKEN = "0123456789abcdef0123"


class SourceConn(RawConn):
    """A RawConn from a chosen loopback source address (127.0.0.x)."""

    def __init__(self, address: tuple[str, int], source: str) -> None:
        super().__init__(address)
        self.sock.close()
        self.sock = socket.create_connection(address, timeout=TIMEOUT_S, source_address=(source, 0))


def hello(daemon: Daemon, name: str, token: str, source: str = "127.0.0.1") -> str:
    """One HELLO on a fresh connection: "ok", or the AUTH_FAILED message."""
    with SourceConn((daemon.host, daemon.port), source) as conn:
        body = msgpack.packb({"client": name, "token": token})
        resp = conn.call(Opcode.HELLO, payload=body)
        if resp.status == Status.OK:
            return "ok"
        assert resp.status == Status.AUTH_FAILED, resp
        return str(msgpack.unpackb(resp.payload)["error"])


def test_failed_hellos_are_throttled(daemon_factory: Callable[..., Daemon], tmp_path: Path) -> None:
    auth = write_auth(tmp_path, TOKENS)
    daemon, metrics_port = start(daemon_factory, tmp_path, "--auth-file", str(auth))
    for _ in range(AUTH_FAILURE_BURST):
        assert "wrong token" in hello(daemon, "victim", "guess")
    # Spent: even the right token is not checked, from this address or for this name.
    assert "not checked" in hello(daemon, "victim", TOKENS["victim"])
    assert "not checked" in hello(daemon, "other", TOKENS["other"])
    assert "not checked" in hello(daemon, "victim", TOKENS["victim"], source="127.0.0.2")
    # Another name from another address is untouched.
    assert hello(daemon, "other", TOKENS["other"], source="127.0.0.2") == "ok"
    samples = scrape(metrics_port)
    assert value(samples, "tmemd_auth_failures_total") == AUTH_FAILURE_BURST
    assert value(samples, "tmemd_auth_throttled_total") == 3
    assert "auth throttled for client victim from 127.0.0.1" in daemon.log()


def _get(url: str, token: str | None, context: ssl.SSLContext | None = None) -> int:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_metrics_bearer_token(daemon_factory: Callable[..., Daemon], tmp_path: Path) -> None:
    token_file = tmp_path / "metrics.token"
    token_file.write_text(METRICS_TOKEN + "\n")
    _, port = start(daemon_factory, tmp_path, "--metrics-auth", str(token_file))
    url = f"http://127.0.0.1:{port}"
    assert _get(f"{url}/metrics", None) == 401
    assert _get(f"{url}/metrics", "wrong-token-of-some-length") == 401
    assert _get(f"{url}/metrics", METRICS_TOKEN[:-1]) == 401
    assert _get(f"{url}/metrics", METRICS_TOKEN) == 200
    assert http_get(port, "/healthz")[0] == 200
    assert http_get(port, "/readyz")[0] == 200


def test_metrics_mutual_tls(daemon_factory: Callable[..., Daemon], tmp_path: Path) -> None:
    files = _make_ca_and_certs(tmp_path)
    token_file = tmp_path / "metrics.token"
    token_file.write_text(METRICS_TOKEN)
    flags = ["--metrics-auth", str(token_file)]
    flags += ["--metrics-tls-cert", str(files["server.crt"])]
    flags += ["--metrics-tls-key", str(files["server.key"])]
    flags += ["--metrics-tls-client-ca", str(files["ca.crt"])]
    _, port = start(daemon_factory, tmp_path, *flags)
    url = f"https://127.0.0.1:{port}/metrics"
    ctx = ssl.create_default_context(cafile=str(files["ca.crt"]))
    ctx.load_cert_chain(str(files["client.crt"]), str(files["client.key"]))
    assert _get(url, METRICS_TOKEN, ctx) == 200
    assert _get(url, None, ctx) == 401
    no_cert = ssl.create_default_context(cafile=str(files["ca.crt"]))
    try:
        status = _get(url, METRICS_TOKEN, no_cert)
    except (ssl.SSLError, OSError):
        status = 0
    assert status == 0
