"""``mock-agencies``: run a mock agency as a real server, for demos and cross-implementation tests.

``mock-agencies serve --agency vrs --port 8443 --key agency.jwk.json --public-url URL`` serves
the vehicle registry; ``mock-agencies serve --agency cbas --port 8444 --key bank.key.pem --cert
bank.cert.pem`` serves the bank (SOAP 1.1 on ``POST /cbas/v1``), and ``--agency rers`` with the
registry's EC key and certificate the land registry (SOAP 1.2 on ``POST /rers/v1``). Each uses
its ICD's rate limit unless ``--rate-limit`` says otherwise. ``--admin-port`` adds the
fault/ledger admin API on a separate port, and the fault flags preset what that API can change
later. Bad input ends with one line on stderr and a non-zero exit status, so scripts can show
the reason as is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from aiohttp import web

__all__ = ["main"]

AGENCIES = ("vrs", "cbas", "rers")
# Requests/s per caller key or certificate, burst the same (VRS §1, bank ICD §1, RERS §1).
DEFAULT_RATE_LIMITS = {"vrs": 50.0, "cbas": 50.0, "rers": 20.0}
SOAP_ENDPOINTS = {"cbas": "/cbas/v1", "rers": "/rers/v1"}


class CliError(Exception):
    """Bad command-line input or start-up failure; the message is the one line to print."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        raise CliError(message)


LISTEN_BACKLOG = 2048  # connections waiting to be accepted (the kernel caps it at somaxconn)


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share from 0 to 1")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535)")
    return int(text)


def _inject(text: str) -> dict[str, object]:
    parts = text.split(":")
    if len(parts) != 3 or not parts[2].isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not OPERATION:CODE:COUNT")
    return {"operation": parts[0], "code": parts[1], "count": int(parts[2])}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mock-agencies", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="run a mock agency")
    serve.add_argument("--agency", required=True, choices=AGENCIES)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, required=True, help="0 picks a free port")
    serve.add_argument("--fixture", type=Path, help="fixture JSON (default: the packaged one)")
    serve.add_argument(
        "--key", type=Path, required=True, help="the agency's signing key, JWK or PEM"
    )
    serve.add_argument(
        "--cert", type=Path, help="the agency's X.509 certificate, PEM (cbas, rers: required)"
    )
    serve.add_argument(
        "--public-url",
        help="vrs: origin clients sign @target-uri with (default http://HOST:PORT)",
    )
    serve.add_argument("--admin-host", default="127.0.0.1")
    serve.add_argument("--admin-port", type=_port, help="serve the admin API on this port")
    serve.add_argument("--seed", type=int, help="seed of the fault generator (reproducible runs)")
    serve.add_argument(
        "--rate-limit",
        type=_non_negative,
        help="requests/s per key or certificate; 0 = off (default: vrs/cbas 50, rers 20)",
    )
    serve.add_argument("--burst", type=_non_negative, help="bucket size (default = rate limit)")
    latency = serve.add_mutually_exclusive_group()
    latency.add_argument("--latency-ms", type=_non_negative, help="fixed added latency")
    latency.add_argument(
        "--latency-uniform", type=_non_negative, nargs=2, metavar=("MIN_MS", "MAX_MS")
    )
    latency.add_argument(
        "--latency-normal", type=_non_negative, nargs=2, metavar=("MEAN_MS", "SD_MS")
    )
    serve.add_argument(
        "--error-rate-503",
        type=_share,
        default=0.0,
        help="share answered 503 (cbas: SERVICE_UNAVAILABLE fault; rers: BUSY)",
    )
    serve.add_argument(
        "--error-rate-429",
        type=_share,
        default=0.0,
        help="share answered 429 (cbas, rers: RATE_LIMITED)",
    )
    serve.add_argument(
        "--error-rate-500",
        type=_share,
        default=0.0,
        help="share answered 500 (cbas, rers: an unsigned HTML page, not a SOAP response)",
    )
    serve.add_argument("--drop-rate", type=_share, default=0.0, help="share of dropped connections")
    serve.add_argument("--drop-phase", choices=("before", "after"), default="after")
    serve.add_argument(
        "--corrupt-signature-rate", type=_share, default=0.0, help="share with a broken signature"
    )
    serve.add_argument(
        "--inject",
        type=_inject,
        action="append",
        default=[],
        metavar="OP:CODE:COUNT",
        help="append a fixture-style inject rule (repeatable)",
    )
    return parser


def _fault_settings(args: argparse.Namespace) -> dict[str, object]:
    latency: dict[str, object] = {"mode": "none"}
    if args.latency_ms is not None:
        latency = {"mode": "fixed", "ms": args.latency_ms}
    elif args.latency_uniform is not None:
        latency = {
            "mode": "uniform",
            "minMs": args.latency_uniform[0],
            "maxMs": args.latency_uniform[1],
        }
    elif args.latency_normal is not None:
        latency = {
            "mode": "normal",
            "meanMs": args.latency_normal[0],
            "sdMs": args.latency_normal[1],
        }
    return {
        "latency": latency,
        "unavailableRate": args.error_rate_503,
        "rateLimitedRate": args.error_rate_429,
        "internalErrorRate": args.error_rate_500,
        "dropRate": args.drop_rate,
        "dropPhase": args.drop_phase,
        "corruptSignatureRate": args.corrupt_signature_rate,
    }


def _build_vrs(
    args: argparse.Namespace, public_url: str
) -> tuple[web.Application, web.Application]:
    from mock_agencies.common.faults import FaultConfig
    from mock_agencies.vrs.server import (
        DEFAULT_FIXTURE,
        create_admin_app_for,
        create_app,
        new_faults,
    )

    faults = new_faults(args.seed)
    faults.config = FaultConfig.from_json(_fault_settings(args))
    app = create_app(
        args.fixture or DEFAULT_FIXTURE,
        args.key,
        public_url,
        faults=faults,
        rate_limit=_rate_limit(args),
        burst=args.burst,
    )
    for rule in args.inject:  # after create_app: loading the fixture resets the inject queue
        faults.add_rule(rule)
    return app, create_admin_app_for(app)


def _rate_limit(args: argparse.Namespace) -> float:
    return float(
        args.rate_limit if args.rate_limit is not None else DEFAULT_RATE_LIMITS[args.agency]
    )


def _build_soap(args: argparse.Namespace) -> tuple[web.Application, web.Application]:
    """The bank (cbas) or the land registry (rers): both take a fixture, a PEM key and its
    certificate, and share the fault model and admin app."""
    from mock_agencies.common.faults import FaultConfig

    if args.agency == "cbas":
        from mock_agencies.cbas import server
    else:
        from mock_agencies.rers import server  # type: ignore[no-redef]

    faults = server.new_faults(args.seed)
    faults.config = FaultConfig.from_json(_fault_settings(args))
    app = server.create_app(
        args.fixture or server.DEFAULT_FIXTURE,
        args.key,
        args.cert,
        faults=faults,
        rate_limit=_rate_limit(args),
        burst=args.burst,
    )
    for rule in args.inject:  # after create_app: loading the fixture resets the inject queue
        faults.add_rule(rule)
    return app, server.create_admin_app_for(app)


async def _serve(args: argparse.Namespace) -> None:
    soap = args.agency in SOAP_ENDPOINTS
    if soap:
        if args.cert is None:
            whose = "the bank's" if args.agency == "cbas" else "the registry's"
            raise CliError(f"--agency {args.agency} needs --cert ({whose} X.509 certificate, PEM)")
        public_url = f"(SOAP endpoint POST {SOAP_ENDPOINTS[args.agency]})"
    else:
        if args.port == 0 and args.public_url is None:
            raise CliError("--port 0 needs --public-url (the port is not known in advance)")
        public_url = args.public_url or f"http://{args.host}:{args.port}"
    try:
        app, admin = _build_soap(args) if soap else _build_vrs(args, public_url)
    except OSError as exc:  # unreadable key or fixture file
        raise CliError(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)) from None
    except ValueError as exc:  # FixtureError, bad keys, URLs and fault settings
        raise CliError(str(exc).splitlines()[0]) from None
    runners: list[web.AppRunner] = []
    try:
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        runners.append(runner)
        # A deep accept queue: a gateway starting a backlog of work opens hundreds of
        # connections within milliseconds, more than aiohttp's default of 128 holds, and a
        # dropped SYN costs the caller a second or more.
        await web.TCPSite(runner, args.host, args.port, backlog=LISTEN_BACKLOG).start()
        where = ", ".join(f"http://{a[0]}:{a[1]}" for a in runner.addresses)
        if soap:
            line = f"{args.agency} mock listening on {where} {public_url}"
        else:
            line = f"{args.agency} mock listening on {where} (public URL {public_url})"
        if args.admin_port is not None:
            admin_runner = web.AppRunner(admin, handle_signals=False)
            await admin_runner.setup()
            runners.append(admin_runner)
            await web.TCPSite(admin_runner, args.admin_host, args.admin_port).start()
            admin_at = ", ".join(f"http://{a[0]}:{a[1]}" for a in admin_runner.addresses)
            line += f"; admin on {admin_at}"
        print(line, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    except OSError as exc:  # e.g. the port is taken
        raise CliError(f"cannot listen: {exc.strerror or exc}") from None
    finally:
        for r in reversed(runners):
            await r.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mock-agencies``; returns the process exit status."""
    try:
        args = build_parser().parse_args(argv)
        if args.command == "serve":
            asyncio.run(_serve(args))
        return 0
    except CliError as exc:
        print(f"mock-agencies: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
