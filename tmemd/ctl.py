"""``tmemctl``: administer a running tmemd through the public protocol only.

Modelled on Xen's ``xl tmem-list/freeze/thaw/set/shared-auth``: every
command is a CONTROL request sent with ``tmem.client``, so tmemctl can do
nothing a client could not, and works against any daemon it can reach.
Human tables by default; ``--json`` prints the daemon's reply as JSON for
scripts.  ``stats --watch`` redraws every second and highlights what
changed, as the zcache-stats script did under ``watch -d``.

Connection settings come from flags or the environment:
``TMEMD_SERVER`` (host:port), ``TMEMD_CLIENT`` (name), ``TMEMD_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from tmem.client import Client, TmemConnectionError, TmemError
from tmem.proto import CLIENT_NAME_CHARS, MAX_CLIENT_NAME_CHARS, is_client_name

from ._ctl_render import Screen, render_admin_reply, render_stats, table
from .config import DEFAULT_LISTEN, ConfigError, parse_size

__all__ = ["build_parser", "main"]

#: Watch-mode redraw period; one second matches ``watch``'s habit and a
#: Prometheus scrape is rarely finer.
DEFAULT_WATCH_INTERVAL_S = 1.0
#: The daemon frees at most ``MAX_FLUSH_PAGES_PER_CALL`` pages per
#: flush_ephemeral request (so one request cannot stall it); tmemctl repeats
#: the request until the size asked for is freed, nothing more was freed, or
#: this many requests were made (16384 pages each: far beyond any arena).
MAX_FLUSH_REQUESTS = 4096


def _client_name(text: str) -> str:
    """argparse type: a client name as the daemon accepts it, else a usage error."""
    if not is_client_name(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a client name (1-{MAX_CLIENT_NAME_CHARS} characters of "
            f"[{CLIENT_NAME_CHARS}])"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tmemctl", description="Administer a running tmemd.")
    p.add_argument(
        "--server",
        default=os.environ.get("TMEMD_SERVER", DEFAULT_LISTEN),
        metavar="HOST:PORT",
        help="daemon address (env TMEMD_SERVER)",
    )
    p.add_argument(
        "--name",
        default=os.environ.get("TMEMD_CLIENT", "tmemctl"),
        type=_client_name,
        help="client name to authenticate as (env TMEMD_CLIENT)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("TMEMD_TOKEN"),
        help="token (env TMEMD_TOKEN; prefer --token-file)",
    )
    p.add_argument("--token-file", metavar="PATH", help="read the token from this file")
    p.add_argument("--tls", action="store_true", help="connect with TLS")
    p.add_argument("--tls-ca", metavar="PEM", help="CA that signed the daemon's certificate")
    p.add_argument("--tls-cert", metavar="PEM", help="client certificate for mutual TLS")
    p.add_argument("--tls-key", metavar="PEM", help="key of --tls-cert")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("ping", help="check the daemon answers; prints the round trip")
    st = sub.add_parser("stats", help="clients, pools and memory figures")
    st.add_argument("--watch", action="store_true", help="redraw every second, mark changes")
    st.add_argument("--interval", type=float, default=DEFAULT_WATCH_INTERVAL_S)
    st.add_argument("--count", type=int, default=0, help="stop after N redraws (0: forever)")
    sub.add_parser("pools", help="the pools of the client tmemctl runs as")
    sub.add_parser("clients", help="every client with its figures (admin)")
    for name, helptext in (
        ("freeze", "refuse the client's puts; gets still served"),
        ("thaw", "accept the client's puts again"),
        ("destroy-client", "free every pool of the client now"),
    ):
        sub.add_parser(name, help=f"{helptext} (admin)").add_argument("client", type=_client_name)
    sw = sub.add_parser("set-weight", help="the client's share of ephemeral memory (admin)")
    sw.add_argument("client", type=_client_name)
    sw.add_argument("weight", type=int)
    sc = sub.add_parser("set-cap", help="the client's byte caps; 'none' lifts one (admin)")
    sc.add_argument("client", type=_client_name)
    sc.add_argument("--persistent", metavar="SIZE")
    sc.add_argument("--total", metavar="SIZE")
    sd = sub.add_parser("set-codec", help="codec of the client's new pools (admin)")
    sd.add_argument("client", type=_client_name)
    sd.add_argument("codec", choices=("lzo", "lz4", "zstd", "none"))
    fe = sub.add_parser("flush-ephemeral", help="evict this much ephemeral memory (admin)")
    fe.add_argument("size")
    sub.add_parser("freeable", help="ephemeral memory that could be freed (admin)")
    au = sub.add_parser("authorize", help="let a client join a shared pool (admin)")
    au.add_argument("client", type=_client_name)
    au.add_argument("uuid", help="the shared pool's UUID (hex, dashes allowed)")
    au.add_argument("--revoke", action="store_true", help="withdraw the authorization")
    sub.add_parser("save", help="save the state directory now (admin; needs --state-dir)")
    sm = sub.add_parser("set-memory", help="grow or shrink the memory limit now (admin)")
    sm.add_argument("size", help="the new limit, e.g. 2GiB")
    return p


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not (args.tls or args.tls_ca or args.tls_cert):
        return None
    ctx = ssl.create_default_context(cafile=args.tls_ca)
    if args.tls_cert:
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    return ctx


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        with open(args.token_file) as fh:
            return fh.read().strip()
    return str(args.token) if args.token is not None else None


def _cap(text: str | None) -> int | str | None:
    """'none' lifts a cap; absent leaves it alone (sent as no key)."""
    if text is None:
        return "keep"
    if text.lower() == "none":
        return None
    return parse_size(text)


def _uuid_hex(text: str) -> str:
    digits = text.replace("-", "").lower()
    if len(digits) != 32 or any(c not in "0123456789abcdef" for c in digits):
        raise ConfigError(f"not a 128-bit UUID: {text!r}")
    return digits


def _control_body(args: argparse.Namespace) -> dict[str, Any]:
    """The CONTROL body for an admin command (flag names map to body keys)."""
    cmd = args.command
    if cmd in ("freeze", "thaw", "destroy-client"):
        return {"cmd": cmd.replace("-", "_"), "client": args.client}
    if cmd == "set-weight":
        return {"cmd": "set_weight", "client": args.client, "weight": args.weight}
    if cmd == "set-cap":
        body: dict[str, Any] = {"cmd": "set_cap", "client": args.client}
        for key, value in (
            ("persistent_cap", _cap(args.persistent)),
            ("total_cap", _cap(args.total)),
        ):
            if value != "keep":
                body[key] = value
        return body
    if cmd == "set-codec":
        return {"cmd": "set_codec", "client": args.client, "codec": args.codec}
    if cmd == "flush-ephemeral":
        return {"cmd": "flush_ephemeral", "bytes": parse_size(args.size)}
    if cmd == "freeable":
        return {"cmd": "freeable"}
    if cmd == "authorize":
        return {
            "cmd": "revoke_shared" if args.revoke else "authorize_shared",
            "client": args.client,
            "uuid": _uuid_hex(args.uuid),
        }
    if cmd == "clients":
        return {"cmd": "list_clients"}
    if cmd == "save":
        return {"cmd": "save"}
    if cmd == "set-memory":
        return {"cmd": "set_memory", "bytes": parse_size(args.size)}
    raise AssertionError(cmd)


def _print(args: argparse.Namespace, reply: Any, human: Callable[[Any], str]) -> None:
    print(json.dumps(reply, sort_keys=True, default=str) if args.json else human(reply))


def _watch(client: Client, args: argparse.Namespace) -> None:
    screen = Screen(sys.stdout, highlight=sys.stdout.isatty() and not args.json)
    drawn = 0
    while args.count == 0 or drawn < args.count:
        reply = client.stats()
        if args.json:
            print(json.dumps(reply, sort_keys=True, default=str), flush=True)
        else:
            screen.draw(render_stats(reply, server=args.server))
        drawn += 1
        if args.count == 0 or drawn < args.count:
            time.sleep(args.interval)


def run(args: argparse.Namespace) -> None:
    with Client(
        args.server,
        client_name=args.name,
        token=_token(args),
        timeout=args.timeout,
        ssl=_ssl_context(args),
    ) as client:
        cmd = args.command
        if cmd == "ping":
            t0 = time.perf_counter()
            client.ping()
            rtt_us = (time.perf_counter() - t0) * 1e6
            _print(
                args,
                {"server": args.server, "rtt_us": round(rtt_us, 1)},
                lambda r: f"{r['server']} answered in {r['rtt_us']} µs",
            )
        elif cmd == "stats" and args.watch:
            _watch(client, args)
        elif cmd == "stats":
            _print(args, client.stats(), lambda r: render_stats(r, server=args.server))
        elif cmd == "pools":
            _print(args, client.list_pools(), lambda r: table(r, title="pools"))
        elif cmd == "flush-ephemeral":
            _print(
                args, _flush(client, parse_size(args.size)), lambda r: render_admin_reply(cmd, r)
            )
        else:
            reply = client.control(**_control_body(args))
            _print(args, reply, lambda r: render_admin_reply(cmd, r))


def _flush(client: Client, nbytes: int) -> dict[str, Any]:
    """flush_ephemeral, repeated until ``nbytes`` are freed (see MAX_FLUSH_REQUESTS)."""
    freed = 0
    for _ in range(MAX_FLUSH_REQUESTS):
        got = int(client.control("flush_ephemeral", bytes=nbytes - freed).get("freed_bytes", 0))
        freed += got
        if got == 0 or freed >= nbytes:
            break
    return {"freed_bytes": freed}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except KeyboardInterrupt:
        return 130
    except (ConfigError, OSError) as exc:
        print(f"tmemctl: {exc}", file=sys.stderr)
        return 2
    except TmemConnectionError as exc:
        print(f"tmemctl: cannot talk to {args.server}: {exc}", file=sys.stderr)
        return 1
    except TmemError as exc:
        print(f"tmemctl: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
