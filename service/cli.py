"""The `neuroserve` command: `neuroserve serve --host --port --models DIR --workers N`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.settings import Settings

    if args.workers is not None:  # before Settings(): cpu_cores() sizes the thread defaults from it
        os.environ["NEUROSERVE_WORKERS"] = str(args.workers)
    overrides = {key: value for key, value in {"host": args.host, "port": args.port, "models_dir": args.models,
                                                "workers": args.workers}.items() if value is not None}
    settings = Settings(**overrides)
    options = dict(
        host=settings.host,
        port=settings.port,
        log_config=None,  # create_app configures JSON logging
        access_log=False,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
        limit_concurrency=args.limit_concurrency,
        backlog=2048,
    )
    if settings.workers > 1:
        # Each worker builds its app from the environment (service/workers.py): hand it the command's overrides.
        # Nothing here may import prometheus_client (service.app) before run_workers sets its multiprocess folder.
        from service.logs import configure_logging
        from service.workers import run_workers

        configure_logging(settings.log_level, settings.log_json)  # the supervisor's own lines
        logging.getLogger("uvicorn.error").setLevel(settings.log_level.upper())  # "Child process [pid] died"
        os.environ["NEUROSERVE_MODELS_DIR"] = str(settings.models_dir)
        return run_workers(settings.workers, **options)

    from service.app import create_app

    uvicorn.run(create_app(settings), **options)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuroserve", description="Neuroserve model server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the HTTP server")
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1, or NEUROSERVE_HOST)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000, or NEUROSERVE_PORT)")
    serve.add_argument("--models", type=Path, default=None, help="model repository folder (default: the repository's models/)")
    serve.add_argument("--limit-concurrency", type=int, default=1024,
                       help="connections uvicorn serves at once before answering 503 (default 1024; per worker)")
    serve.add_argument("--workers", type=int, default=None,
                       help="server processes sharing the port (default 1, or NEUROSERVE_WORKERS); see docs/deployment.md")
    serve.set_defaults(handler=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
