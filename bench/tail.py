"""The one-client tail: where a lone request's time goes, and Neuroserve against the naive endpoint at c=1.

    # in-process, no sockets: each stage of POST /v1/images/classify timed over N requests, beside the naive app
    .venv/bin/python -m bench.tail stages --model cifar10-small --requests 2000
    # over HTTP: Neuroserve variants and the naive endpoint up at once, `hey -n N -c 1` against each in turn,
    # round after round (interleaved A/B: the machine's noise lands on every system alike)
    .venv/bin/python -m bench.tail ab --model cifar10-small --requests 2000 --rounds 5 \\
        --variant default= --variant nosolo=NEUROSERVE_SOLO_SESSION=false
    # before/after: an earlier commit's checkout (git worktree add /tmp/before COMMIT) with its own models
    .venv/bin/python -m bench.tail ab --workload sentiment --model sentiment-lstm --concurrency 32 --requests 3000 \\
        --variant before= --variant-root before=/tmp/before --variant-models before=/tmp/before/models --variant head=

`stages` drives both ASGI apps directly (a minimal ASGI call, uvloop), one block of 100 requests each in turn,
and times, per Neuroserve request: the whole app call, reading the body (JSON + base64), decoding the PNG, the
batcher (queue, session run, and the hand-off back to the loop: the wait minus the two), the OOD score and the
JSON encoding; and every garbage collection that started during the run (gc.callbacks). Bare `session.run`s of
the solo session, of one instance and of a naive-style session (2 threads, spinning, probabilities only) run in
the same blocks, so their tails are measured on the same machine at the same moments.

`ab` starts each variant of Neuroserve (NAME=ENV=VALUE,ENV=VALUE...; an empty list is the defaults; optionally from
another checkout and model repository) and the naive endpoint once, then per round runs `hey -n N -c C` against
each system in turn (the order rotates per round), and reports every round's p50/p90/p99, req/s and the server's
CPU time per request (/proc/PID/stat: on a shared machine the steadiest measure of the work a request costs), and
the median over rounds, with each variant's ratio to naive (or, without naive, to the first variant).
Workloads: classify (one PNG, base64 JSON), oip-binary (binary OIP tensor), sentiment (four texts).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import ROOT, cpu_name, free_port

BLOCK = 100


def stats(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return {"n": 0}
    return {"n": int(len(v)), "p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90)),
            "p99": float(np.percentile(v, 99)), "max": float(v.max()), "mean": float(v.mean())}


def fmt(name: str, s: dict) -> str:
    if not s.get("n"):
        return f"{name:32s} (none)"
    return (f"{name:32s} n={s['n']:5d}  p50 {s['p50']:7.3f}  p90 {s['p90']:7.3f}  p99 {s['p99']:7.3f}  "
            f"max {s['max']:7.2f}  mean {s['mean']:6.3f} ms")


# ------------------------------------------------------------------------------------------ stages (in-process)

def _scope(path: str, body: bytes) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"host", b"127.0.0.1")],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}


async def asgi_call(app, path: str, body: bytes) -> tuple[int, bytes]:
    delivered = False

    async def receive():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # the client never goes away

    status, chunks = [0], []

    async def send(message):
        if message["type"] == "http.response.start":
            status[0] = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(_scope(path, body), receive, send)
    return status[0], b"".join(chunks)


def _instrument(times: dict):
    """Wrap the classify route's stages (module globals of service.tasks.vision) with perf_counter timers."""
    import service.tasks.vision as vision
    from service.responses import JSONBytes

    def timed_async(name, fn):
        async def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                times.setdefault(name, []).append((time.perf_counter() - t) * 1000)
        return wrapper

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                times.setdefault(name, []).append((time.perf_counter() - t) * 1000)
        return wrapper

    original_run_model = vision.run_model

    async def run_model(request, model, feeds):
        t = time.perf_counter()
        pending = model.infer(feeds)
        outputs, stats_ = await pending
        wait = (time.perf_counter() - t) * 1000
        times.setdefault("batcher wait (total)", []).append(wait)
        times.setdefault("  queue", []).append(stats_.queue_s * 1000)
        times.setdefault("  session run" + (" (solo)" if stats_.solo else " (instance)"), []).append(stats_.compute_s * 1000)
        times.setdefault("  hand-off back (wait-queue-run)", []).append(wait - (stats_.queue_s + stats_.compute_s) * 1000)
        request.app.state.metrics.observe_inference(model.name, stats_)
        return outputs

    vision.run_model = run_model
    vision.read_image_request = timed_async("read body (JSON, base64)", vision.read_image_request)
    vision.decode_images = timed_async("decode PNG", vision.decode_images)
    vision.attach_ood = timed("OOD score", vision.attach_ood)
    JSONBytes.render = timed("JSON encode", JSONBytes.render)
    return original_run_model


class GcWatch:
    def __init__(self):
        self.pauses: list[tuple[int, float]] = []
        self._t = 0.0

    def __call__(self, phase, info):
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses.append((info["generation"], (time.perf_counter() - self._t) * 1000))


def run_stages(args) -> dict:
    import uvloop

    os.environ.setdefault("NEUROSERVE_LOG_LEVEL", "warning")
    model_dir = args.models / args.model
    os.environ["NAIVE_CLASSIFIER"] = str(model_dir)
    os.environ.setdefault("NAIVE_THREADS", "2")
    from bench.peers import shared
    from service.app import create_app
    from service.settings import Settings

    settings = Settings(models_dir=args.models, load_models=[args.model], log_level="warning",
                        intra_op_threads=1, model_instances=2, inter_op_threads=1)
    app = create_app(settings)
    import bench.naive_server as naive

    png = shared.png_bytes(shared.test_image(32, 32))
    body = shared.classify_task_body(png)
    times: dict[str, list[float]] = {}
    _instrument(times)
    gcw = GcWatch()

    async def main():
        async with app.router.lifespan_context(app):
            while not app.state.repository.all_ready():
                await asyncio.sleep(0.1)
            model = app.state.repository.for_task("image-classification", args.model)
            if args.no_ood:
                model.ood = None
            batcher = model.batcher
            solo, inst = batcher._solo_runner, batcher._runner
            x = shared.ImageClassifier(model_dir, 2)  # a naive-style session: 2 threads, ORT defaults
            feeds = {"images": np.asarray(shared.test_image(32, 32))[None]}
            for _ in range(3):
                await asgi_call(app, "/v1/images/classify", body)
                await asgi_call(naive.app, "/v1/images/classify", body)
            for k in list(times):
                times[k].clear()
            gc.callbacks.append(gcw)
            total = {"neuroserve app call": [], "naive app call": [], "bare run: solo session": [],
                     "bare run: instance session": [], "bare run: naive-style session": []}
            started = time.time()
            for block in range(args.requests // BLOCK):
                for _ in range(BLOCK):
                    t = time.perf_counter()
                    status, _ = await asgi_call(app, "/v1/images/classify", body)
                    total["neuroserve app call"].append((time.perf_counter() - t) * 1000)
                    assert status == 200, status
                    if args.gap_ms:
                        time.sleep(args.gap_ms / 1000)
                await asyncio.sleep(0.02)
                for _ in range(BLOCK):
                    t = time.perf_counter()
                    status, _ = await asgi_call(naive.app, "/v1/images/classify", body)
                    total["naive app call"].append((time.perf_counter() - t) * 1000)
                    assert status == 200, status
                    if args.gap_ms:
                        time.sleep(args.gap_ms / 1000)
                await asyncio.sleep(0.02)
                if args.bare:
                    for name, fn in (("bare run: solo session", solo), ("bare run: instance session", inst),
                                     ("bare run: naive-style session", lambda f: x.run(f["images"]))):
                        if fn is None:
                            continue
                        for _ in range(BLOCK // 4):
                            t = time.perf_counter()
                            fn(feeds)
                            total[name].append((time.perf_counter() - t) * 1000)
                            if args.gap_ms:
                                time.sleep(args.gap_ms / 1000)
                        await asyncio.sleep(0.02)
            gc.callbacks.remove(gcw)
            return total, time.time() - started

    total, seconds = uvloop.run(main())
    report = {"machine": {"cpu": cpu_name(), "loadavg": os.getloadavg()}, "seconds": seconds,
              "stages": {k: stats(v) for k, v in {**total, **times}.items()},
              "gc": {"count": len(gcw.pauses), "by_generation": {g: sum(1 for gg, _ in gcw.pauses if gg == g) for g in (0, 1, 2)},
                     "pauses": stats([ms for _, ms in gcw.pauses])}}
    print(f"load average {os.getloadavg()}, {seconds:.0f} s, {args.requests} requests per system")
    for k, s in report["stages"].items():
        print(fmt(k, s))
    print(fmt(f"gc pauses {report['gc']['by_generation']}", report["gc"]["pauses"]))
    return report


# ------------------------------------------------------------------------------------------ ab (HTTP, interleaved)

def hey_latencies(url: str, body_file: str, requests: int, concurrency: int = 1, content_type: str = "application/json",
                  headers: dict | None = None) -> list[float]:
    args = ["hey", "-n", str(requests), "-c", str(concurrency), "-m", "POST", "-T", content_type, "-D", body_file,
            "-o", "csv", "-t", "20"]
    for k, v in (headers or {}).items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run(args + [url], capture_output=True, text=True, timeout=600, check=True).stdout
    lat = []
    for line in out.splitlines()[1:]:
        parts = line.split(",")
        if len(parts) > 6 and parts[6] == "200":
            lat.append(float(parts[0]) * 1000)
    return lat


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Checkout:
    """Neuroserve from another checkout (a `git worktree` of an earlier commit): its code, cwd and PYTHONPATH."""

    def __init__(self, root: Path, models: Path, env: dict):
        from bench.common import wait_ready

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(self.port), "--models",
                                      str(models)], cwd=root, env={**os.environ, "PYTHONPATH": str(root),
                                                                   "NEUROSERVE_LOG_LEVEL": "warning",
                                                                   "NEUROSERVE_GRPC_PORT": "0", **env},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(self.url + "/v2/health/ready", self.proc, 120, f"server in {root}")
        except (RuntimeError, TimeoutError):
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _requests(workload: str, model: str, model_dir: Path) -> tuple[str, bytes, str, dict]:
    """(path, body, content type, headers) of one request of the workload (the peers harness's bytes)."""
    from bench.peers import shared

    if workload == "classify":
        return "/v1/images/classify", shared.classify_task_body(shared.png_bytes(shared.test_image(32, 32))), \
            "application/json", {}
    if workload == "oip-binary":
        body, headers = shared.oip_binary_body(shared.test_image(32, 32)[None])
        return f"/v2/models/{model}/infer", body, "application/octet-stream", headers
    if workload == "sentiment":
        return "/v1/text/sentiment", shared.sentiment_task_body(), "application/json", {}
    raise ValueError(workload)


def run_ab(args) -> dict:
    from bench.common import neuroserve, uvicorn_app

    model_dir = args.models / args.model
    path, body, content_type, headers = _requests(args.workload, args.model, model_dir)
    roots = dict(spec.split("=", 1) for spec in args.variant_root)
    model_dirs = dict(spec.split("=", 1) for spec in args.variant_models)
    servers = {}
    try:
        for spec in args.variant:
            name, _, envs = spec.partition("=")
            env = dict(kv.split("=", 1) for kv in envs.split(",") if kv)
            base = {"NEUROSERVE_INTRA_OP_THREADS": "1", "NEUROSERVE_MODEL_INSTANCES": "2",
                    "NEUROSERVE_INTER_OP_THREADS": "1", "NEUROSERVE_LOAD_MODELS": args.model}
            models = Path(model_dirs.get(name, args.models))
            if name in roots:
                servers[name] = Checkout(Path(roots[name]).resolve(), models, {**base, **env})
            else:
                servers[name] = neuroserve(models, {**base, **env})
        if not args.no_naive and args.workload != "oip-binary":
            key = "NAIVE_SENTIMENT" if args.workload == "sentiment" else "NAIVE_CLASSIFIER"
            servers["naive"] = uvicorn_app("bench.naive_server:app", env={key: str(model_dir), "NAIVE_THREADS": "2"})
        with tempfile.NamedTemporaryFile(prefix="tail-body-", delete=False) as f:
            f.write(body)
            body_file = f.name
        names = list(servers)
        for name in names:  # warm-up
            hey_latencies(servers[name].url + path, body_file, 200, args.concurrency, content_type, headers)
        rounds: dict[str, list[dict]] = {name: [] for name in names}
        loads = []
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            loads.append(os.getloadavg()[0])
            for name in order:
                cpu, started = cpu_seconds(servers[name].proc.pid), time.perf_counter()
                lat = hey_latencies(servers[name].url + path, body_file, args.requests, args.concurrency, content_type,
                                    headers)
                elapsed = time.perf_counter() - started
                s = stats(lat)
                s["cpu_ms"] = (cpu_seconds(servers[name].proc.pid) - cpu) * 1000 / max(1, s["n"])
                s["rps"] = s["n"] / elapsed
                rounds[name].append(s)
                print(f"round {r + 1} load {os.getloadavg()[0]:5.2f} {name:10s} p50 {s['p50']:6.2f} p99 {s['p99']:6.2f} "
                      f"p90 {s['p90']:6.2f} max {s['max']:7.2f} ms (n={s['n']}), {s['rps']:.0f} req/s, "
                      f"server CPU {s['cpu_ms']:.2f} ms/request", flush=True)
        os.unlink(body_file)
    finally:
        for server in servers.values():
            server.stop()
    summary = {}
    for name in names:
        summary[name] = {q: statistics.median(s[q] for s in rounds[name]) for q in ("p50", "p90", "p99", "cpu_ms", "rps")}
    print(f"\nmedian over {args.rounds} rounds of {args.requests} requests, {args.workload}, c={args.concurrency} "
          f"(load average during: {min(loads):.2f}-{max(loads):.2f})")
    ref = "naive" if "naive" in summary else names[0]
    for name in names:
        s = summary[name]
        ratio = ""
        if name != ref:
            ratio = (f"   vs {ref}: p50 {s['p50'] / summary[ref]['p50']:.2f}x, p99 {s['p99'] / summary[ref]['p99']:.2f}x, "
                     f"req/s {s['rps'] / summary[ref]['rps']:.2f}x")
            per_round = [a["p99"] / b["p99"] for a, b in zip(rounds[name], rounds[ref])]
            ratio += f" (per round p99 ratios {', '.join(f'{x:.2f}' for x in per_round)})"
        print(f"{name:10s} p50 {s['p50']:6.2f}  p90 {s['p90']:6.2f}  p99 {s['p99']:6.2f} ms, {s['rps']:6.0f} req/s, "
              f"CPU {s['cpu_ms']:.2f} ms/request{ratio}")
    return {"machine": {"cpu": cpu_name(), "loadavg_rounds": loads}, "rounds": rounds, "median": summary,
            "settings": {k: str(v) for k, v in vars(args).items()}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("stages", "ab"):
        p = sub.add_parser(name)
        p.add_argument("--models", type=Path, default=ROOT / "models")
        p.add_argument("--model", default="cifar10-small")
        p.add_argument("--requests", type=int, default=2000)
        p.add_argument("--out", type=Path)
    stages_p = sub.choices["stages"]
    stages_p.add_argument("--gap-ms", type=float, default=0.0, help="sleep between requests (a client's round trip)")
    stages_p.add_argument("--no-ood", action="store_true", help="drop the model's OOD profile (no score per request)")
    stages_p.add_argument("--bare", action="store_true", help="also time bare session runs in the same blocks")
    ab_p = sub.choices["ab"]
    ab_p.add_argument("--rounds", type=int, default=5)
    ab_p.add_argument("--variant", action="append", default=[], metavar="NAME=ENV=V,ENV=V",
                      help="a Neuroserve server with these environment variables (repeatable)")
    ab_p.add_argument("--no-naive", action="store_true")
    ab_p.add_argument("--workload", choices=("classify", "oip-binary", "sentiment"), default="classify")
    ab_p.add_argument("--concurrency", type=int, default=1)
    ab_p.add_argument("--variant-root", action="append", default=[], metavar="NAME=DIR",
                      help="run variant NAME from another checkout (e.g. a git worktree of an earlier commit)")
    ab_p.add_argument("--variant-models", action="append", default=[], metavar="NAME=DIR",
                      help="variant NAME serves this model repository instead of --models")
    args = parser.parse_args(argv)
    if args.command == "ab" and not args.variant:
        args.variant = ["neuroserve="]
    report = run_stages(args) if args.command == "stages" else run_ab(args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
