"""``tmemd``: parse configuration, build the engine, serve until SIGTERM.

Precedence: built-in defaults < ``--config FILE`` (TOML) < flags.  A flag
left out does not override the file, so every flag defaults to ``None``
here and the real defaults live in ``DaemonConfig``.

Start-up refuses configurations that would expose memory by accident: with
no ``--auth-file`` the daemon serves any client name, so it listens only on
loopback unless ``--insecure`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tmem.proto._build import build_info

from . import __version__
from ._auth import AuthTable, load_auth_file
from ._logging import setup_logging
from ._statedir import StateDirError, restore_at_start, save_at_shutdown, save_now
from .config import (
    CODECS,
    LOG_FORMATS,
    LOG_LEVELS,
    PAMS,
    ConfigError,
    DaemonConfig,
    coerce,
    load_toml,
    parse_address,
)
from .engine import ClientLimits, Engine, EngineConfig, make_codecs
from .metrics import serve_metrics
from .server import Server

__all__ = ["build_parser", "main", "make_config"]

log = logging.getLogger("tmemd")

#: Shortest bearer token ``--metrics-auth`` accepts: 16 characters of a
#: generated token (``openssl rand -hex 16`` gives 32) leave nothing to guess.
MIN_METRICS_TOKEN_CHARS = 16


class _VersionAction(argparse.Action):
    """``--version``: the version and the build, found out only when asked
    (it imports every hot-path module to see which were compiled)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(f"tmemd {__version__}, {build_info().describe()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tmemd",
        description="Networked transcendent memory: compressed far memory for many hosts.",
        argument_default=None,
    )
    p.add_argument(
        "--version",
        action=_VersionAction,
        nargs=0,
        help="print the version and which build runs (compiled or interpreted), then exit",
    )
    p.add_argument("--config", metavar="FILE", help="TOML file with the same keys as the flags")
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="address to serve (default 127.0.0.1:7470; port 0 picks a free port)",
    )
    p.add_argument("--port-file", metavar="PATH", help="write the bound port here once listening")
    p.add_argument(
        "--memory", metavar="SIZE", help="arena size, e.g. 256MiB, 4GiB (default 256MiB)"
    )
    p.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="largest size tmemctl set-memory may grow the arena to "
        "(default: the host's RAM up to 16GiB, at least --memory)",
    )
    p.add_argument("--codec", choices=CODECS, help="default page codec (default lzo)")
    p.add_argument(
        "--ephemeral-pam", choices=PAMS, help="PAM of ephemeral pools naming none (default zbud)"
    )
    p.add_argument(
        "--persistent-pam",
        choices=PAMS,
        help="PAM of persistent pools naming none (default zsmalloc)",
    )
    p.add_argument("--zstd-level", type=int, metavar="N", help="zstd level, 1-19 (default 3)")
    p.add_argument(
        "--zstd-dictionary",
        metavar="SIZE",
        help="per-pool zstd dictionary trained from the pool's pages; 0 turns it off "
        "(default 128KiB)",
    )
    p.add_argument(
        "--lease",
        type=float,
        metavar="SECONDS",
        help="how long a disconnected client's pools live (default 60)",
    )
    p.add_argument(
        "--persistent-max",
        type=float,
        metavar="FRACTION",
        help="share of memory persistent pages may use (default 0.75)",
    )
    p.add_argument(
        "--persistent-accept",
        type=float,
        metavar="FRACTION",
        help="below this share every persistent put is accepted; above it each client is held "
        "to its fair share (default 0.70)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        metavar="SECONDS",
        help="close connections silent this long (default 300)",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        metavar="SECONDS",
        help="close peers that start a frame and stall this long (default 10)",
    )
    p.add_argument(
        "--hello-timeout",
        type=float,
        metavar="SECONDS",
        help="close connections that have not completed HELLO this long after connecting; "
        "PING does not extend it (default 5)",
    )
    p.add_argument("--max-connections", type=int, metavar="N", help="default 4096")
    p.add_argument(
        "--max-unauthenticated",
        type=int,
        metavar="N",
        help="connections without HELLO at once; past it the oldest is closed (default 128)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        metavar="SECONDS",
        help="on SIGTERM, answer BUSY this long while clients leave, then close (default 5)",
    )
    p.add_argument(
        "--busy-poll",
        type=int,
        metavar="USEC",
        help="keep polling the sockets this long after each read instead of sleeping: "
        "lower depth-1 latency for a busy core while traffic flows (default 0: off)",
    )
    p.add_argument("--auth-file", metavar="PATH", help="TOML file of clients, tokens and limits")
    _add_tls_flags(p, "tls", "the protocol port")
    p.add_argument("--metrics", metavar="HOST:PORT", help="serve /metrics, /healthz, /readyz here")
    p.add_argument("--metrics-port-file", metavar="PATH", help="write the bound metrics port here")
    p.add_argument(
        "--metrics-auth",
        metavar="FILE",
        help="require 'Authorization: Bearer TOKEN' on /metrics, TOKEN read from FILE",
    )
    _add_tls_flags(p, "metrics-tls", "the metrics port")
    p.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow a non-loopback listen address without --auth-file",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="save persistent pools here on SIGTERM (and tmemctl save); restore them at start",
    )
    p.add_argument(
        "--save-ephemeral",
        action="store_true",
        default=None,
        help="with --state-dir: save ephemeral pools too",
    )
    p.add_argument(
        "--discard-state",
        action="store_true",
        default=None,
        help="with --state-dir: start empty, moving a saved state aside",
    )
    p.add_argument("--log-level", choices=LOG_LEVELS, help="default info")
    p.add_argument("--log-format", choices=LOG_FORMATS, help="text (default) or json lines")
    return p


def _add_tls_flags(p: argparse.ArgumentParser, prefix: str, port: str) -> None:
    """``--PREFIX-cert``, ``--PREFIX-key``, ``--PREFIX-client-ca``: one meaning for both ports."""
    p.add_argument(f"--{prefix}-cert", metavar="PEM", help=f"serve {port} over TLS with this chain")
    p.add_argument(f"--{prefix}-key", metavar="PEM", help=f"private key of --{prefix}-cert")
    p.add_argument(
        f"--{prefix}-client-ca",
        metavar="PEM",
        help=f"on {port}, require client certificates signed by this CA",
    )


def make_config(args: argparse.Namespace) -> DaemonConfig:
    """Defaults, then the TOML file, then flags."""
    values: dict[str, Any] = {}
    if args.config:
        values.update(load_toml(args.config))
    for key, value in vars(args).items():
        if key != "config" and value is not None:
            values[key] = coerce(key, value)
    return DaemonConfig(**values)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(config: DaemonConfig) -> None:
    host, _ = config.address
    if config.auth_file is None and not config.insecure and not _is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without --auth-file: any host could read and "
            "write pages. Use an auth file, or --insecure if the network is trusted."
        )


def _write_port_file(path: str, port: int) -> None:
    """Atomic: a watcher never reads a half-written port."""
    tmp = Path(f"{path}.tmp.{os.getpid()}")
    tmp.write_text(f"{port}\n")
    tmp.replace(path)


def make_ssl_context(config: DaemonConfig) -> ssl.SSLContext | None:
    """Server TLS context; with ``--tls-client-ca`` a client certificate is required."""
    return _server_tls(config.tls_cert, config.tls_key, config.tls_client_ca, "tls")


def make_metrics_ssl_context(config: DaemonConfig) -> ssl.SSLContext | None:
    """The metrics port's TLS context, from the ``--metrics-tls-*`` flags."""
    return _server_tls(
        config.metrics_tls_cert, config.metrics_tls_key, config.metrics_tls_client_ca, "metrics-tls"
    )


def _server_tls(
    cert: str | None, key: str | None, client_ca: str | None, flags: str
) -> ssl.SSLContext | None:
    if cert is None or key is None:
        if client_ca is not None:
            raise ConfigError(f"{flags}-client-ca needs {flags}-cert and {flags}-key")
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
        if client_ca is not None:
            ctx.load_verify_locations(client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS files: {exc}") from None
    return ctx


def load_metrics_token(config: DaemonConfig) -> str | None:
    """The bearer token of ``--metrics-auth FILE`` (surrounding whitespace dropped)."""
    if config.metrics_auth is None:
        return None
    try:
        token = Path(config.metrics_auth).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read metrics-auth file {config.metrics_auth}: {exc}") from None
    if len(token) < MIN_METRICS_TOKEN_CHARS:
        raise ConfigError(
            f"metrics-auth file {config.metrics_auth} must hold a token of at least "
            f"{MIN_METRICS_TOKEN_CHARS} characters"
        )
    return token


def make_engine(config: DaemonConfig) -> Engine:
    """The engine over one arena of ``--memory`` with the configured PAMs and codecs."""
    return Engine(
        EngineConfig(
            memory_bytes=config.memory,
            default_codec=config.codec,
            lease_s=config.lease,
            persistent_max=config.persistent_max,
            persistent_accept=config.persistent_accept,
            ephemeral_pam=config.ephemeral_pam,
            persistent_pam=config.persistent_pam,
            dictionary_bytes=config.zstd_dictionary,
            # Without an auth file every client is trusted (loopback only).
            open_shared_pools=config.auth_file is None,
            memory_reserve_bytes=config.reserve_bytes,
        ),
        clock=time.monotonic,
        codecs=make_codecs(config.zstd_level),
    )


def apply_auth_limits(engine: Engine, auth: AuthTable) -> None:
    """Give every client of the auth file its weight and caps before it connects."""
    for entry in auth.entries.values():
        limits = ClientLimits(entry.weight, entry.persistent_cap, entry.total_cap)
        engine.configure_client(entry.name, limits)


@dataclass(frozen=True, slots=True)
class _Secrets:
    """What start-up loads from files besides the configuration."""

    auth: AuthTable | None
    tls: ssl.SSLContext | None
    metrics_tls: ssl.SSLContext | None
    metrics_token: str | None


def _load_secrets(config: DaemonConfig) -> _Secrets:
    return _Secrets(
        auth=load_auth_file(config.auth_file) if config.auth_file else None,
        tls=make_ssl_context(config),
        metrics_tls=make_metrics_ssl_context(config),
        metrics_token=load_metrics_token(config),
    )


async def serve(config: DaemonConfig, secrets: _Secrets) -> int:
    """Serve until SIGTERM; the exit code (1: the shutdown save failed)."""
    auth, tls = secrets.auth, secrets.tls
    engine = make_engine(config)
    server_id = restore_at_start(engine, config)
    if auth is not None:
        apply_auth_limits(engine, auth)

    def save() -> dict[str, Any]:  # tmemctl save
        return save_now(engine, config, server.server_id)

    server: Server = Server.build(
        config,
        engine,
        server_id,
        authenticate=auth.check if auth else None,
        save_state=save if config.state_dir else None,
    )
    host, port = await server.start(ssl=tls)
    log.info(
        "tmemd %s, %s (server_id %s) listening on %s:%d%s, memory %d bytes, codec %s, "
        "PAMs %s/%s, %s",
        __version__,
        build_info().describe(),
        server.server_id,
        host,
        port,
        " (TLS)" if tls else "",
        config.memory,
        config.codec,
        config.ephemeral_pam,
        config.persistent_pam,
        f"{len(auth.entries)} clients in {config.auth_file}" if auth else "no auth file",
    )
    stop = asyncio.Event()
    metrics = None
    if config.metrics:
        metrics, metrics_port = await serve_metrics(
            config.metrics,
            engine.statistics,
            server,
            ready=lambda: not stop.is_set(),
            bearer_token=secrets.metrics_token,
            ssl=secrets.metrics_tls,
        )
        log.info(
            "metrics on %s://%s:%d/metrics%s",
            "https" if secrets.metrics_tls else "http",
            parse_address(config.metrics)[0],
            metrics_port,
            " (bearer token required)" if secrets.metrics_token else "",
        )
        if config.metrics_port_file:
            _write_port_file(config.metrics_port_file, metrics_port)
    # The data port file is written last: a watcher that sees it may use everything.
    if config.port_file:
        _write_port_file(config.port_file, port)
    hurry = asyncio.Event()

    def on_signal() -> None:
        # The first signal drains; a second one cuts the drain short.
        (hurry if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await stop.wait()
    log.info("shutting down")
    await server.drain(config.drain_timeout, hurry)
    if metrics is not None:
        metrics.close()
        await metrics.wait_closed()
    return 0 if save_at_shutdown(engine, config, server.server_id) else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = make_config(args)
        check_exposure(config)
        secrets = _load_secrets(config)
    except ConfigError as exc:
        print(f"tmemd: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.log_format)
    import uvloop

    try:
        return uvloop.run(serve(config, secrets))
    except StateDirError as exc:
        log.error("%s; refusing to start (--discard-state starts empty)", exc)
        return 1
    except OSError as exc:
        log.error("cannot serve on %s: %s", config.listen, exc.strerror or exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
