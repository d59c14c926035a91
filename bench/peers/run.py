"""Neuroserve against the peers users would pick instead (issue 8), under the same bounded load.

    bench/peers/setup.sh                                             # once: the peers' virtualenvs
    .venv/bin/python -m bench.peers.run --seconds 10 --concurrency 1 8 32 --plot

Every system serves the same ONNX models (roles picked from Neuroserve's /v1/models: the CIFAR
classifier and the sentiment model of --models DIR, or the test fixtures when that folder lacks them),
one at a time on loopback, loaded by `hey` for --seconds per concurrency level:

- floor: session.run in the driver, no HTTP (threads = concurrency)
- neuroserve: /v1/images/classify (JSON base64), /v2/models/<m>/infer (binary tensors), /v1/text/sentiment
- kserve: KServe ModelServer, v1 /v1/models/<m>:predict (instances) and v2 /v2/models/<m>/infer (binary)
- bentoml: BentoML service, /classify and /sentiment, adaptive batching on
- naive FastAPI: bench/naive_server.py, /v1/images/classify and /v1/text/sentiment

Workloads: cifar-task (one 32x32 PNG, base64 in JSON), cifar-oip-binary (uint8 [1,32,32,3] binary
tensor), sentiment-task (4 short texts). Each server: one worker process, ORT intra-op threads 2.
Writes bench/results/peers.json; --plot writes docs/img/peers.png.
"""

from __future__ import annotations

import argparse
import atexit
import csv
import io
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.common import cpu_name, free_port, wait_ready
from bench.peers import shared

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / "bench" / "peers" / ".venvs"
RESULTS = ROOT / "bench" / "results"
THREADS = 2
WORKLOADS = ("cifar-task", "cifar-oip-binary", "sentiment-task")
SYSTEMS = ("floor", "neuroserve", "kserve", "bentoml", "naive")
PEERS = ("kserve", "bentoml", "naive")  # what "best peer" is chosen among
LABELS = {"floor": "floor (session.run)", "neuroserve": "neuroserve", "kserve": "kserve",
          "bentoml": "bentoml", "naive": "naive FastAPI"}
SETUP = {
    "floor": "session.run in the driver process, no HTTP; threads = concurrency; ORT intra-op 2",
    "neuroserve": "python -m service.cli serve (one uvicorn process); 2 model instances x 1 intra-op thread "
                  "(its default on 2 cores: the same budget of 2 ORT threads), inter-op 1, plus a solo session of "
                  "2 threads per model for a request that arrives while nothing else runs (NEUROSERVE_SOLO_SESSION); "
                  "only the two role models loaded (NEUROSERVE_LOAD_MODELS); batching as in each model's manifest",
    "kserve": "kserve.ModelServer(workers=1, enable_grpc=False, enable_latency_logging=False), sync predict; "
              "ORT intra-op 2; no batching (the Python ModelServer has none)",
    "bentoml": "bentoml serve, @bentoml.service(workers=1), @bentoml.api(batchable=True, max_batch_size=32) "
               "(adaptive batching); access log off; ORT intra-op 2",
    "naive": "uvicorn bench.naive_server:app (one process), sync FastAPI endpoints + pydantic, session.run per "
             "request; ORT intra-op 2",
}
VERSION_PACKAGES = {
    "kserve": ["kserve", "onnxruntime", "numpy", "pillow", "tokenizers", "fastapi", "uvicorn"],
    "bentoml": ["bentoml", "onnxruntime", "numpy", "pillow", "tokenizers", "starlette", "uvicorn"],
}


# ------------------------------------------------------------------------------------------ pure pieces

@dataclass
class Row:
    system: str
    route: str
    workload: str
    concurrency: int
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    ratios: dict = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def parse_hey_csv(text: str) -> tuple[list[float], int, float]:
    """hey's per-request CSV -> (latencies in ms of the 200s, non-200 count, seconds spanned)."""
    latencies, errors, span = [], 0, 0.0
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("status-code") != "200":
            errors += 1
            continue
        seconds = float(row["response-time"])
        latencies.append(seconds * 1000)
        span = max(span, float(row["offset"]) + seconds)
    return latencies, errors, span


def summarize(system: str, route: str, workload: str, concurrency: int, latencies: list[float], errors: int,
              span: float) -> Row:
    count = len(latencies)
    return Row(system, route, workload, concurrency, count, errors, count / span if span > 0 else 0.0,
               statistics.median(latencies) if latencies else float("nan"), percentile(latencies, 99))


def select_roles(models: dict) -> dict[str, str | None]:
    """Roles from GET /v1/models: classifier = cifar10-resnet, else the first ready image-classification
    model; sentiment = sentiment-lstm, else tiny-sentiment. None where no ready model fits."""
    ready = {m["id"]: m for m in models.get("data", []) if m.get("ready")}
    classifiers = sorted(name for name, m in ready.items() if m.get("task") == "image-classification")
    classifier = "cifar10-resnet" if "cifar10-resnet" in classifiers else (classifiers[0] if classifiers else None)
    sentiment = next((name for name in ("sentiment-lstm", "tiny-sentiment")
                      if name in ready and ready[name].get("task") == "text-sentiment"), None)
    return {"classifier": classifier, "sentiment": sentiment}


def floor_workload(workload: str) -> str:
    """Both CIFAR workloads run the same session.run: one floor for the two."""
    return "cifar-task" if workload.startswith("cifar") else workload


def compute_ratios(rows: list[Row], peers=PEERS) -> list[Row]:
    """Adds to each row: req/s and p99 against the best peer (highest req/s among `peers` at the same
    workload and concurrency) and against the floor."""
    def key(r: Row) -> tuple[str, int]:
        return r.workload, r.concurrency

    best: dict[tuple[str, int], Row] = {}
    floor: dict[tuple[str, int], Row] = {}
    for r in rows:
        if r.system in peers and r.requests and (key(r) not in best or r.rps > best[key(r)].rps):
            best[key(r)] = r
        if r.system == "floor":
            floor[key(r)] = r
    for r in rows:
        ratios = {}
        peer = best.get(key(r))
        if peer is not None and r.requests:
            ratios.update(best_peer=peer.system, rps_vs_best_peer=r.rps / peer.rps, p99_vs_best_peer=r.p99_ms / peer.p99_ms)
        base = floor.get((floor_workload(r.workload), r.concurrency))
        if base is not None and base.requests and r.requests:
            ratios.update(rps_vs_floor=r.rps / base.rps, p99_vs_floor=r.p99_ms / base.p99_ms)
        r.ratios = ratios
    return rows


def _ratio(value) -> str:
    return f"{value:.2f}x" if isinstance(value, (int, float)) else ""


def markdown_tables(rows: list[Row]) -> str:
    out = []
    for workload in WORKLOADS:
        mine = [r for r in rows if r.workload == workload]
        if not mine:
            continue
        out += [f"\n**{workload}**\n",
                "| system | route | conc. | requests | errors | req/s | p50 ms | p99 ms | req/s vs best peer | p99 vs best peer | req/s vs floor |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sorted(mine, key=lambda r: (r.concurrency, SYSTEMS.index(r.system))):
            x = r.ratios
            out.append(f"| {LABELS[r.system]} | `{r.route}` | {r.concurrency} | {r.requests} | {r.errors} | {r.rps:.0f} | "
                       f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {_ratio(x.get('rps_vs_best_peer'))} | "
                       f"{_ratio(x.get('p99_vs_best_peer'))} | {_ratio(x.get('rps_vs_floor'))} |")
    return "\n".join(out)


def machine_info() -> dict:
    cpu = cpu_name()
    import onnxruntime

    return {"cpu": cpu, "cores": os.cpu_count(), "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "loadavg_at_start": list(os.getloadavg()), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


# ------------------------------------------------------------------------------------------ processes

class Server:
    """A server subprocess on a loopback port (own process group, log file), stopped with SIGTERM."""

    def __init__(self, name: str, args: list[str], port: int, env: dict | None = None, ready_path: str = "/",
                 timeout: float = 120):
        self.name, self.port, self.url = name, port, f"http://127.0.0.1:{port}"
        log_dir = RESULTS / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_ready(self.url + ready_path, self.proc, timeout, f"{name} (log: {self.log_path})")
        except (RuntimeError, TimeoutError):
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # children that outlived the leader (workers of a process manager)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.log.close()


def venv_python(peer: str) -> Path:
    return VENVS / peer / "bin" / "python"


def venv_versions(peer: str) -> dict:
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for p in sys.argv[1:]:\n"
            "    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    done = subprocess.run([str(venv_python(peer)), "-c", code, *VERSION_PACKAGES[peer], "torch"],
                          capture_output=True, text=True, timeout=60, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-300:]}


def main_versions() -> dict:
    import importlib.metadata as m

    out = {}
    for p in ("onnxruntime", "numpy", "fastapi", "uvicorn", "pillow", "tokenizers", "orjson"):
        try:
            out[p] = m.version(p)
        except m.PackageNotFoundError:
            pass
    try:
        out["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                    text=True, check=False).stdout.strip()
    except OSError:
        pass
    return out


def run_hey(system: str, route: str, workload: str, url: str, body: bytes, headers: dict, content_type: str,
            concurrency: int, seconds: float) -> Row:
    hey = shutil.which("hey")
    if hey is None:
        sys.exit("the benchmark needs `hey` (Debian/Ubuntu: apt-get install hey)")
    with tempfile.NamedTemporaryFile(prefix="peers-body-", dir=RESULTS, delete=False) as f:
        f.write(body)
        body_file = f.name
    args = [hey, "-z", f"{seconds}s", "-c", str(concurrency), "-m", "POST", "-T", content_type, "-D", body_file,
            "-o", "csv", "-t", "20"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    try:
        output = subprocess.run(args + [url], capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    finally:
        os.unlink(body_file)
    return summarize(system, route, workload, concurrency, *parse_hey_csv(output))


def run_in_process(workload: str, call, concurrency: int, seconds: float) -> Row:
    from bench.common import time_calls

    latencies, elapsed = time_calls(call, concurrency, seconds)
    return summarize("floor", "session.run (in-process)", workload, concurrency, latencies, 0, elapsed)


# ------------------------------------------------------------------------------------------ the run

@dataclass
class Request:
    route: str  # shown in the tables
    path: str
    body: bytes
    headers: dict = field(default_factory=dict)
    content_type: str = "application/json"


def build_requests(classifier: shared.ImageClassifier, sentiment: shared.SentimentModel) -> dict:
    """system -> workload -> Request; the same bytes wherever the two protocols are the same."""
    image = shared.test_image(classifier.height, classifier.width)
    png = shared.png_bytes(image)
    task_image = shared.classify_task_body(png)
    binary, binary_headers = shared.oip_binary_body(image[None])
    texts = shared.sentiment_task_body()
    c, s = classifier.info.name, sentiment.info.name
    octet = "application/octet-stream"
    return {
        "neuroserve": {
            "cifar-task": Request("POST /v1/images/classify", "/v1/images/classify", task_image),
            "cifar-oip-binary": Request(f"POST /v2/models/{c}/infer", f"/v2/models/{c}/infer", binary, binary_headers, octet),
            "sentiment-task": Request("POST /v1/text/sentiment", "/v1/text/sentiment", texts),
        },
        "kserve": {
            "cifar-task": Request(f"POST /v1/models/{c}:predict", f"/v1/models/{c}:predict",
                                  shared.kserve_v1_classify_body(png)),
            "cifar-oip-binary": Request(f"POST /v2/models/{c}/infer", f"/v2/models/{c}/infer", binary, binary_headers, octet),
            "sentiment-task": Request(f"POST /v1/models/{s}:predict", f"/v1/models/{s}:predict",
                                      shared.kserve_v1_sentiment_body()),
        },
        "bentoml": {
            "cifar-task": Request("POST /classify", "/classify", task_image),
            "sentiment-task": Request("POST /sentiment", "/sentiment", texts),
        },
        "naive": {
            "cifar-task": Request("POST /v1/images/classify", "/v1/images/classify", task_image),
            "sentiment-task": Request("POST /v1/text/sentiment", "/v1/text/sentiment", texts),
        },
    }


def check_answer(system: str, workload: str, response, expected: dict) -> str | None:
    """None when the answer is right (same top label as the floor's session.run); else why not."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if workload == "cifar-oip-binary":
        import numpy as np

        length = int(response.headers.get("inference-header-content-length", "0"))
        if not length:
            return "no binary output (Inference-Header-Content-Length missing)"
        values = np.frombuffer(response.content[length:], dtype=np.float32)
        return None if int(values.argmax()) == expected["cifar-index"] else f"argmax {int(values.argmax())}"
    label = shared.find_label(response.json())
    want = expected[workload]
    return None if label == want else f"label {label!r}, expected {want!r}"


def start_system(system: str, models: Path, roles: dict) -> Server:
    from bench.common import neuroserve, uvicorn_app

    classifier, sentiment = models / roles["classifier"], models / roles["sentiment"]
    port = free_port()
    if system == "neuroserve":
        # The same budget of THREADS ORT threads, spent as Neuroserve spends it on a small CPU:
        # THREADS model instances of one intra-op thread each (its default on 2 cores).
        server = neuroserve(models, {"NEUROSERVE_INTRA_OP_THREADS": "1", "NEUROSERVE_MODEL_INSTANCES": str(THREADS),
                                     "NEUROSERVE_INTER_OP_THREADS": "1",
                                     "NEUROSERVE_LOAD_MODELS": f"{roles['classifier']},{roles['sentiment']}"})
    elif system == "naive":
        server = uvicorn_app("bench.naive_server:app", env={"NAIVE_CLASSIFIER": str(classifier),
                                                             "NAIVE_SENTIMENT": str(sentiment), "NAIVE_THREADS": str(THREADS)})
    elif system == "kserve":
        server = Server("kserve", [str(venv_python("kserve")), "-m", "bench.peers.kserve_server",
                                   "--classifier", str(classifier), "--sentiment", str(sentiment),
                                   "--http_port", str(port)], port, {"PEER_INTRA_OP_THREADS": str(THREADS)},
                        "/v2/health/ready")
    elif system == "bentoml":
        server = Server("bentoml", [str(VENVS / "bentoml" / "bin" / "bentoml"), "serve", "bench.peers.bento_service:Peer",
                                    "--port", str(port), "--host", "127.0.0.1", "--working-dir", str(ROOT)], port,
                        {"PEER_CLASSIFIER": str(classifier), "PEER_SENTIMENT": str(sentiment),
                         "PEER_INTRA_OP_THREADS": str(THREADS), "BENTOML_DO_NOT_TRACK": "True"}, "/readyz")
    else:
        raise ValueError(system)
    return server


def discover_roles(models: Path) -> dict:
    """Start Neuroserve on `models`, read /v1/models once every model settled, pick the roles."""
    import httpx

    from bench.common import Server as CommonServer

    port = free_port()
    server = CommonServer([sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--models", str(models)],
                          port, {"NEUROSERVE_LOG_LEVEL": "warning", "NEUROSERVE_INTRA_OP_THREADS": "1",
                                 "NEUROSERVE_GRPC_PORT": "0"},  # REST only here (bench/grpc_bench.py: gRPC)
                          ready_path="/v2/health/live")
    try:
        deadline = time.monotonic() + 120
        while True:
            data = httpx.get(server.url + "/v1/models", timeout=10).json()
            if not any(m.get("state") == "LOADING" for m in data.get("data", [])) or time.monotonic() > deadline:
                return select_roles(data)
            time.sleep(0.5)
    finally:
        server.stop()


def plot(rows: list[Row], path: Path, machine: dict, seconds: float, note: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = [w for w in WORKLOADS if any(r.workload == w for r in rows)]
    fig, axes = plt.subplots(2, len(workloads), figsize=(5 * len(workloads), 7.5), squeeze=False)
    for col, workload in enumerate(workloads):
        for system in SYSTEMS:
            mine = sorted((r for r in rows if r.workload == workload and r.system == system and r.requests),
                          key=lambda r: r.concurrency)
            if not mine:
                continue
            cs = [r.concurrency for r in mine]
            style = {"marker": "o", "linestyle": "--" if system == "floor" else "-",
                     "linewidth": 2.5 if system == "neuroserve" else 1.5}
            axes[0][col].plot(cs, [r.rps for r in mine], label=LABELS[system], **style)
            axes[1][col].plot(cs, [r.p99_ms for r in mine], label=LABELS[system], **style)
        axes[0][col].set_title(workload)
        for row, ylabel in ((0, "req/s"), (1, "p99 latency (ms)")):
            ax = axes[row][col]
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ticks = sorted({r.concurrency for r in rows})
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.set_xlabel("concurrency")
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
        axes[0][col].legend(fontsize=8)
    fig.suptitle(f"Neuroserve vs peers: {machine['cpu']}, {machine['cores']} cores, onnxruntime "
                 f"{machine['onnxruntime']}, {seconds:g} s per point{note}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--models", type=Path, default=ROOT / "models",
                        help="model repository; falls back to the test fixtures when it lacks the roles")
    parser.add_argument("--fixtures", action="store_true", help="use the tiny fixture models (development)")
    parser.add_argument("--classifier", metavar="NAME", help="serve this model of --models as the classifier "
                        "(every system), e.g. cifar10-int8; default: picked from /v1/models")
    parser.add_argument("--sentiment", metavar="NAME", help="likewise for the sentiment model")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of discarded load per system and workload")
    parser.add_argument("--out", type=Path, default=RESULTS / "peers.json")
    parser.add_argument("--plot", action="store_true", help="also write --plot-out (matplotlib)")
    parser.add_argument("--plot-out", type=Path, default=ROOT / "docs" / "img" / "peers.png")
    parser.add_argument("--from-json", type=Path, metavar="PATH",
                        help="measure nothing: print the tables (and --plot) of an earlier run's JSON")
    args = parser.parse_args()
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        rows = compute_ratios([Row(**{k: v for k, v in r.items() if k != "ratios"}) for r in report["results"]])
        machine, settings = report["machine"], report["settings"]
        print(f"{machine['cpu']}, {machine['cores']} cores, onnxruntime {machine['onnxruntime']}, "
              f"{settings['seconds']:g} s per run, load average {machine['loadavg_at_start'][0]:.2f} -> "
              f"{machine.get('loadavg_at_end', [float('nan')])[0]:.2f}, models: "
              f"{'fixtures' if settings['fixtures'] else settings['models_dir']} {settings['roles']}")
        print(markdown_tables(rows))
        if args.plot:
            roles = settings["roles"]
            note = (f"\nFIXTURE models ({roles['classifier']}, {roles['sentiment']}), load average "
                    f"{machine['loadavg_at_start'][0]:.1f}: a development smoke run, not the figures") if settings["fixtures"] else ""
            plot(rows, args.plot_out, machine, settings["seconds"], note)
        return
    RESULTS.mkdir(parents=True, exist_ok=True)

    import httpx

    machine = machine_info()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, onnxruntime {machine['onnxruntime']}, "
          f"load average {machine['loadavg_at_start'][0]:.2f}", flush=True)

    models, roles, fixtures = args.models.resolve(), {"classifier": None, "sentiment": None}, args.fixtures
    if not fixtures:
        if args.classifier and args.sentiment:
            roles = {"classifier": args.classifier, "sentiment": args.sentiment}
        else:
            roles = {**discover_roles(models), **{k: v for k, v in (("classifier", args.classifier),
                                                                    ("sentiment", args.sentiment)) if v}}
        if not roles["classifier"] or not roles["sentiment"]:
            print(f"{models} has no ready classifier and sentiment model ({roles}); using the fixture models", flush=True)
            fixtures = True
    if fixtures:
        from tests.onnx_models import build_repository

        models = build_repository(Path(tempfile.mkdtemp(prefix="peers-models-")))
        atexit.register(shutil.rmtree, models, True)
        roles = discover_roles(models)
    print(f"models: {models} ({'FIXTURES, development only' if fixtures else 'repository'}); roles: {roles}", flush=True)

    classifier = shared.ImageClassifier(models / roles["classifier"], THREADS)
    sentiment = shared.SentimentModel(models / roles["sentiment"], THREADS)
    requests_by_system = build_requests(classifier, sentiment)
    image = shared.test_image(classifier.height, classifier.width)
    image_batch = image[None]
    feeds = sentiment.encode(shared.SENTIMENT_TEXTS)
    cifar_probs = classifier.run(image_batch)
    expected = {"cifar-task": classifier.answer(cifar_probs)[0]["label"], "cifar-index": int(cifar_probs.argmax()),
                "sentiment-task": sentiment.answer(sentiment.run(feeds))[0]["label"]}

    rows: list[Row] = []
    systems_meta: dict = {}
    if "floor" in args.systems:
        calls = {"cifar-task": lambda: classifier.run(image_batch), "sentiment-task": lambda: sentiment.run(feeds)}
        for workload in ("cifar-task", "sentiment-task"):
            if not any(floor_workload(w) == workload for w in args.workloads):
                continue
            for c in args.concurrency:
                row = run_in_process(workload, calls[workload], c, args.seconds)
                rows.append(row)
                if "cifar-oip-binary" in args.workloads and workload == "cifar-task":
                    rows.append(Row(**{**asdict(row), "workload": "cifar-oip-binary"}))
                print(f"  floor {workload} c={c}: {row.rps:.0f} req/s", flush=True)
        systems_meta["floor"] = {"setup": SETUP["floor"], "versions": main_versions()}
    del classifier.session, sentiment.session  # the driver's sessions are idle from here on

    for system in [s for s in args.systems if s != "floor"]:
        if system in VERSION_PACKAGES and not venv_python(system).exists():
            print(f"skipping {system}: {venv_python(system)} missing; run bench/peers/setup.sh", flush=True)
            systems_meta[system] = {"skipped": "venv missing"}
            continue
        meta = {"setup": SETUP[system], "routes": {},
                "versions": venv_versions(system) if system in VERSION_PACKAGES else main_versions()}
        systems_meta[system] = meta
        print(f"{system}: starting", flush=True)
        try:
            server = start_system(system, models, roles)
        except (RuntimeError, TimeoutError) as exc:
            print(f"skipping {system}: {exc}", flush=True)
            meta["skipped"] = str(exc)
            continue
        try:
            for workload in args.workloads:
                request = requests_by_system[system].get(workload)
                if request is None:
                    continue
                url = server.url + request.path
                headers = {"Content-Type": request.content_type, **request.headers}
                answer = httpx.post(url, content=request.body, headers=headers, timeout=30)
                problem = check_answer(system, workload, answer, expected)
                if problem:
                    print(f"  {system} {workload}: wrong answer, not measured: {problem}", flush=True)
                    meta["routes"][workload] = {"route": request.route, "error": problem}
                    continue
                meta["routes"][workload] = {"route": request.route, "body_bytes": len(request.body)}
                if args.warmup > 0:
                    run_hey(system, request.route, workload, url, request.body, request.headers, request.content_type,
                            max(args.concurrency), args.warmup)
                for c in args.concurrency:
                    row = run_hey(system, request.route, workload, url, request.body, request.headers,
                                  request.content_type, c, args.seconds)
                    rows.append(row)
                    print(f"  {system} {workload} c={c}: {row.rps:.0f} req/s, p99 {row.p99_ms:.1f} ms, "
                          f"{row.errors} errors", flush=True)
        finally:
            server.stop()

    compute_ratios(rows)
    machine["loadavg_at_end"] = list(os.getloadavg())
    print(f"\n{machine['cpu']}, {machine['cores']} cores, onnxruntime {machine['onnxruntime']} (driver), "
          f"{args.seconds:g} s per run, load average {machine['loadavg_at_start'][0]:.2f} -> "
          f"{machine['loadavg_at_end'][0]:.2f}, models: {'fixtures' if fixtures else models} {roles}")
    print(markdown_tables(rows))
    report = {"machine": machine, "settings": {"seconds": args.seconds, "concurrency": args.concurrency,
                                               "warmup_s": args.warmup, "ort_intra_op_threads": THREADS,
                                               "workers_per_server": 1, "load_generator": "hey",
                                               "fixtures": fixtures, "models_dir": str(models), "roles": roles,
                                               "sentiment_texts": shared.SENTIMENT_TEXTS},
              "systems": systems_meta, "results": [asdict(r) for r in rows]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    if args.plot:
        note = (f"\nFIXTURE models ({roles['classifier']}, {roles['sentiment']}), load average {machine['loadavg_at_start'][0]:.1f}: "
                "a development smoke run, not the figures") if fixtures else ""
        plot(rows, args.plot_out, machine, args.seconds, note)


if __name__ == "__main__":
    main()
