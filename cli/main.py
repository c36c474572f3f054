"""`easel serve | worker | webhooks | up | ...`: entry points; each builds its own settings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _serve(args: argparse.Namespace) -> None:
    from cli.serve import serve

    serve(args.process, args.supervisor)


def _worker(args: argparse.Namespace) -> None:
    import logging

    from core.settings import WorkerSettings
    from workers.main import run

    try:
        run(WorkerSettings())
    except SystemExit as exc:  # "unknown pipelines ...": a log line (JSON too), then exit 1
        if isinstance(exc.code, str):
            logging.getLogger("easel.worker").critical(exc.code)
            raise SystemExit(1) from None
        raise


def _webhooks(args: argparse.Namespace) -> None:
    import logging

    from core.settings import WebhookSettings
    from workers.webhook_main import alive, run

    settings = WebhookSettings()
    if args.check:  # the container healthcheck: a live `easel webhooks` heartbeats in Redis
        raise SystemExit(0 if alive(settings) else 1)
    try:
        run(settings)
    except SystemExit as exc:  # a missing or bad secret: a log line, then exit 1
        if isinstance(exc.code, str):
            logging.getLogger("easel.webhooks").critical(exc.code)
            raise SystemExit(1) from None
        raise


def _up(args: argparse.Namespace) -> None:
    from cli.stack import Stack, StackOptions

    Stack(StackOptions(port=args.port, host=args.host, workers=args.workers,
                       threads=args.threads, data_dir=args.data_dir,
                       insecure_no_auth=args.insecure_no_auth)).run()


def _hash_key(args: argparse.Namespace) -> None:
    from service.auth import hash_key

    print(f"{args.name}:{hash_key(args.key)}")


def _certs(args: argparse.Namespace) -> None:
    from cli.certs import init

    paths = init(Path(args.dir), args.organization, args.force)
    print(f"root (give it to verifiers as a trust anchor): {paths.root}\n"
          f"EASEL_C2PA_CERT_CHAIN={paths.chain}\nEASEL_C2PA_PRIVATE_KEY={paths.key}")


def _verify(args: argparse.Namespace) -> None:
    from cli.verify import run

    raise SystemExit(run(args.files, args.trust, args.watermark_key, args.json))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="easel", description="OpenAI Images API on your hardware")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway (settings from EASEL_* variables; "
                                         "EASEL_GATEWAY_PROCESSES processes on one port)")
    serve.add_argument("--process", type=int, default=None, help=argparse.SUPPRESS)
    serve.add_argument("--supervisor", type=int, default=None, help=argparse.SUPPRESS)
    sub.add_parser("worker", help="run one worker process (settings from EASEL_* variables)")
    wh = sub.add_parser("webhooks", help="deliver signed webhook events (settings from EASEL_* "
                                         "variables; docs/async.md)")
    wh.add_argument("--check", action="store_true",
                    help="exit 0 when a webhooks process is alive (a healthcheck)")
    up = sub.add_parser("up", help="run a local stack: Redis (unless EASEL_REDIS_URL is set), "
                                   "the gateway and N workers, restarting workers that die")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--workers", type=int, default=1)
    up.add_argument("--threads", type=int, default=0,
                    help="torch threads per worker (0: cores / workers, at least 1)")
    up.add_argument("--data-dir", default=".easel", help="Redis AOF and stored images")
    up.add_argument("--insecure-no-auth", action="store_true",
                    help="allow API keys off with a non-loopback --host (anyone who can reach "
                         "it can use it)")
    hk = sub.add_parser("hash-key", help="print the EASEL_API_KEYS entry for an API key")
    hk.add_argument("key")
    hk.add_argument("--name", default="default")
    certs = sub.add_parser("certs", help="C2PA signing certificates (docs/provenance.md)")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True)
    ci = certs_sub.add_parser("init", help="make a private root and a signing certificate")
    ci.add_argument("--dir", default=".easel/certs")
    ci.add_argument("--organization", default="Easel (local)")
    ci.add_argument("--force", action="store_true", help="replace existing files")
    ve = sub.add_parser("verify", help="report the C2PA manifest and watermark of images")
    ve.add_argument("files", nargs="+", metavar="FILE")
    ve.add_argument("--trust", help="PEM root(s) to trust (default: .easel/certs/root.pem "
                                    "if present)")
    ve.add_argument("--watermark-key", help="default: $EASEL_WATERMARK_KEY or easel")
    ve.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from core.catalog import CatalogError

    try:
        {"serve": _serve, "worker": _worker, "webhooks": _webhooks, "up": _up,
         "hash-key": _hash_key, "certs": _certs, "verify": _verify}[args.command](args)
    except CatalogError as exc:  # a user's mistake: its message, not a traceback
        print(f"easel: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main(sys.argv[1:])
