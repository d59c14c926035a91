"""Where do the light routes' latency tails come from? The soak's traffic, with the models split over servers.

    .venv/bin/python -m bench.soak_split --layout one                    # every model in one server (the soak)
    .venv/bin/python -m bench.soak_split --layout split --nice 10        # --heavy models in a second server, niced
    .venv/bin/python -m bench.soak_split --layout light-only [--pin]     # only the light models, nothing else

The same 32 closed-loop clients in 4 processes as `bench.soak` (short runs: 30 s warm-up, 90 s measured). `split`
serves the `--heavy` models (default: translation and chat) from a second server process whose every thread runs
at `--nice`, and sends their routes there: what a separate, lower-priority generation (or inference) process
would give the light routes, without the GIL or the CPU share of that work. `light-only` serves just the other
models; `--pin` puts that server on CPU 0 and the load generator on CPU 1. Experiments, not a product layout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import ROOT, neuroserve
from bench.soak import DEPLOYED_ENV, build_requests, route_table, soak_processes

GENERATION = ["chat-dailydialog", "translate-en-de"]


def repository(names: list[str]) -> Path:
    """A models folder holding copies of these models (the server refuses links that leave its folder)."""
    folder = Path(tempfile.mkdtemp(prefix="neuroserve-split-"))
    for name in names:
        shutil.copytree(ROOT / "models" / name, folder / name)
    return folder


def threads_of(pid: int) -> list[int]:
    return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", choices=["one", "split", "light-only"], default="one")
    parser.add_argument("--heavy", nargs="+", default=GENERATION, metavar="MODEL",
                        help="the models of the second server (split) or left out (light-only)")
    parser.add_argument("--nice", type=int, default=10, help="split: the second server's threads' nice value")
    parser.add_argument("--pin", action="store_true", help="light-only: server on CPU 0, load generator on CPU 1")
    parser.add_argument("--minutes", type=float, default=1.5)
    parser.add_argument("--warmup-s", type=float, default=30.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    env = {"NEUROSERVE_MAX_QUEUE_SIZE": "64", **DEPLOYED_ENV}
    every = sorted(p.name for p in (ROOT / "models").iterdir() if (p / "manifest.json").exists())
    light = [name for name in every if name not in args.heavy]
    servers = []
    try:
        if args.layout == "one":
            servers.append(neuroserve(ROOT / "models", env))
        else:
            if args.pin:
                os.sched_setaffinity(0, {1})  # this process, and so the client processes it spawns
            servers.append(neuroserve(repository(light), env))
            if args.pin:
                for tid in threads_of(servers[0].proc.pid):
                    os.sched_setaffinity(tid, {0})
        main_server = servers[0]
        requests = build_requests(httpx.get(f"{main_server.url}/v1/models").json()["data"])
        if args.layout == "split":
            second = neuroserve(repository(args.heavy), env)
            servers.append(second)
            for tid in threads_of(second.proc.pid):  # its ORT pools and decode threads exist once it is ready
                os.setpriority(os.PRIO_PROCESS, tid, args.nice)
            for route, (path, kwargs) in build_requests(httpx.get(f"{second.url}/v1/models").json()["data"]).items():
                if route != "models":
                    requests[route] = (second.url + path, kwargs)  # an absolute URL overrides the client's base
        began = time.monotonic() + 3.0
        result = soak_processes(main_server.url, requests, 32, 4, began, args.warmup_s, args.minutes * 60, 0.0)
        total = sum(map(len, result["latencies"].values()))
        print(f"layout {args.layout}, heavy {args.heavy}, nice {args.nice}, pin {args.pin}: "
              f"{total / (args.minutes * 60):.1f} requests/s")
        report = route_table(result)
        if args.out:
            args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "routes": report}, indent=2))
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
