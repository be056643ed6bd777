"""Authentication and TLS against the real daemon, with a CA made in the test."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tmem.client import AuthFailed, Client, NotAuthenticated, TmemConnectionError
from tmem.proto import Opcode, Status
from tmemd._auth import hash_token

from ..conftest import Daemon
from .rawwire import RawConn

PAGE = b"\x5a" * 2048 + b"\xa5" * 2048


def write_auth(tmp_path: Path) -> Path:
    path = tmp_path / "auth.toml"
    path.write_text(f"""
[clients.web-01]
token_sha256 = "{hash_token("web-secret")}"
weight = 100

[clients.ops]
token_sha256 = "{hash_token("ops-secret")}"
admin = true
""")
    return path


@pytest.fixture
def auth_daemon(daemon_factory: Callable[..., Daemon], tmp_path: Path) -> Daemon:
    return daemon_factory("--auth-file", str(write_auth(tmp_path)))


def test_right_token_works(auth_daemon: Daemon) -> None:
    with Client(auth_daemon.address, client_name="web-01", token="web-secret") as client:
        pool = client.new_pool(persistent=True)
        assert pool.put(1, 2, PAGE)
        assert pool.get(1, 2) == PAGE


@pytest.mark.parametrize(
    ("name", "token"),
    [("web-01", "wrong"), ("web-01", None), ("nobody", "web-secret"), ("ops", "web-secret")],
)
def test_wrong_credentials_refused(auth_daemon: Daemon, name: str, token: str | None) -> None:
    with (
        Client(auth_daemon.address, client_name=name, token=token) as client,
        pytest.raises(AuthFailed),
    ):
        client.ping()
        client.new_pool()


def test_auth_failure_closes_connection(auth_daemon: Daemon) -> None:
    with RawConn((auth_daemon.host, auth_daemon.port)) as conn:
        assert conn.hello("web-01", "nope").status == Status.AUTH_FAILED
        assert conn.is_closed_by_peer()
    with RawConn((auth_daemon.host, auth_daemon.port)) as conn:
        assert conn.call(Opcode.GET_PAGE, pool_id=0).status == Status.NOT_AUTHENTICATED
        assert conn.call(Opcode.CONTROL, payload=b"\x80").status == Status.NOT_AUTHENTICATED


def test_client_without_hello_cannot_reach_pages(auth_daemon: Daemon) -> None:
    with Client(auth_daemon.address, client_name="web-01", token="web-secret") as client:
        client.new_pool(persistent=True).put(1, 1, PAGE)
    with RawConn((auth_daemon.host, auth_daemon.port)) as conn:
        resp = conn.call(Opcode.GET_PAGE, pool_id=0, object_id=1, index=1)
        assert resp.status == Status.NOT_AUTHENTICATED and resp.payload != PAGE
    assert NotAuthenticated  # the client library maps the status to this type


def _make_ca_and_certs(tmp_path: Path) -> dict[str, Path]:
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(hours=1))

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: str,
        issuer_key: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid[0])
            .not_valid_after(valid[1])
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(issuer_key, hashes.SHA256())

    out: dict[str, Path] = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = cert("test-ca", ca_key, "test-ca", ca_key, ca=True)
    for label, key, crt in [("ca", ca_key, ca_cert)] + [
        (lbl, k, cert(lbl, k, "test-ca", ca_key, ca=False))
        for lbl, k in (
            ("server", ec.generate_private_key(ec.SECP256R1())),
            ("client", ec.generate_private_key(ec.SECP256R1())),
        )
    ]:
        out[f"{label}.crt"] = tmp_path / f"{label}.crt"
        out[f"{label}.crt"].write_bytes(crt.public_bytes(serialization.Encoding.PEM))
        out[f"{label}.key"] = tmp_path / f"{label}.key"
        out[f"{label}.key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return out


def test_tls_and_mutual_tls(daemon_factory: Callable[..., Daemon], tmp_path: Path) -> None:
    files = _make_ca_and_certs(tmp_path)
    daemon = daemon_factory(
        "--tls-cert",
        str(files["server.crt"]),
        "--tls-key",
        str(files["server.key"]),
        "--tls-client-ca",
        str(files["ca.crt"]),
        "--auth-file",
        str(write_auth(tmp_path)),
    )
    ctx = ssl.create_default_context(cafile=str(files["ca.crt"]))
    ctx.load_cert_chain(str(files["client.crt"]), str(files["client.key"]))
    with Client(daemon.address, client_name="web-01", token="web-secret", ssl=ctx) as client:
        pool = client.new_pool(persistent=True)
        assert pool.put_many([(1, i, PAGE) for i in range(100)]) == [True] * 100
        assert pool.get_many([(1, i) for i in range(100)]) == [PAGE] * 100
    no_cert = ssl.create_default_context(cafile=str(files["ca.crt"]))
    with (
        Client(
            daemon.address, client_name="web-01", token="web-secret", ssl=no_cert, timeout=5
        ) as client,
        pytest.raises((TmemConnectionError, ssl.SSLError, OSError)),
    ):
        client.ping()
    with (
        Client(daemon.address, client_name="web-01", token="web-secret") as plain,
        pytest.raises((TmemConnectionError, OSError)),
    ):
        plain.ping()


def test_refuses_public_listen_without_auth(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "tmemd.cli", "--listen", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "auth-file" in result.stderr
