"""Where a server's time goes under load (issue 8): py-spy samples one system of the peers harness while
`hey` loads one workload, then the samples are summed into buckets (ONNX Runtime, image decode, JSON,
HTTP, routing, ...) and drawn as a flame graph.

    .venv/bin/python -m bench.profile --system neuroserve --workload cifar-task --concurrency 32 --seconds 10

Needs `hey` and py-spy (`.venv/bin/pip install py-spy`; on Linux it needs ptrace rights: root, or
CAP_SYS_PTRACE in a container). Writes docs/img/profile-<label or system>-<workload>-c<N>.svg (a flame graph of
every sampled stack, all threads; hover a frame for its share) and prints the bucket table, which
bench/results/profile-<...>.json keeps (the raw collapsed stacks go to bench/results/logs/). Sampling stops the process 100
times a second, so the req/s printed alongside is a little below an unprofiled run's.
"""

from __future__ import annotations

import argparse
import html
import json
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from bench.peers import run as peers
from bench.peers import shared

ROOT = peers.ROOT

# (bucket, substrings of a frame "function (file:line)"): a sample's bucket is the first rule that matches
# its frames, scanning from the innermost frame outwards, so "orjson inside the middleware's log call"
# counts as logging, not as the middleware.
RULES: list[tuple[str, tuple[str, ...]]] = [
    # A thread blocked in a queue or condition (a pool thread between runs, an idle anyio worker), or taking
    # the GIL back after one: py-spy does not count these as idle, so they get their own bucket.
    ("threads parked (waiting for work or the GIL)", ("Condition.wait (threading.py", "_worker (concurrent/futures/thread.py",
                                                      "SimpleQueue.get", "get (queue.py")),
    ("onnxruntime (session.run)", ("onnxruntime_inference_collection.py", "libonnxruntime", "onnxruntime_pybind")),
    ("image decode (PIL)", ("PIL/", "decode_image", "libpng", "libz", "_imaging", "ImageClassifier.decode")),
    ("tokenizer", ("tokenizers", "encode_batch", "encode_texts", "SentimentModel.encode")),
    ("logging", ("logging/__init__.py", "service/logs.py")),
    ("metrics (prometheus)", ("prometheus_client",)),
    ("JSON / base64 / tensor codecs", ("orjson", "json/", "base64", "binascii", "service/codecs.py",
                                       "service/responses.py")),
    ("task endpoint code", ("service/tasks/",)),
    ("OIP route code", ("service/api/",)),
    ("batching", ("service/batching.py", "service/repository.py")),
    ("middleware", ("service/middleware.py",)),
    ("FastAPI / Starlette / pydantic", ("fastapi/", "starlette/", "pydantic", "anyio/")),
    ("HTTP server (uvicorn, httptools)", ("uvicorn/", "httptools", "h11/")),
    ("event loop (asyncio, uvloop)", ("asyncio/", "uvloop", "selectors.py", "concurrent/futures", "threading.py")),
    ("peer framework code", ("kserve", "bentoml", "bench/naive_server.py", "bench/peers/")),
]
OTHER = "other"


def bucket_of(frames: list[str]) -> str:
    """frames: outermost first (py-spy's collapsed order). Parked threads are told by their innermost frame."""
    parked, parked_needles = RULES[0]
    if frames and any(needle in frames[-1] for needle in parked_needles):
        return parked
    for frame in reversed(frames):
        for bucket, needles in RULES[1:]:
            if any(needle in frame for needle in needles):
                return bucket
    return OTHER


def parse_collapsed(text: str) -> Counter:
    """py-spy --format raw: 'frame;frame;frame count' per line -> Counter of stack tuples."""
    stacks: Counter = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def buckets(stacks: Counter) -> dict[str, float]:
    """Share of all samples per bucket, largest first."""
    totals: Counter = Counter()
    for frames, count in stacks.items():
        totals[bucket_of(list(frames))] += count
    grand = sum(totals.values()) or 1
    return {name: count / grand for name, count in totals.most_common()}


def flamegraph_svg(stacks: Counter, title: str, width: int = 1400, row: int = 16) -> str:
    """A plain SVG flame graph (root at the bottom) of collapsed stacks; <title> on each frame gives its share."""
    tree: dict = {"n": 0, "kids": {}}
    for frames, count in stacks.items():
        node = tree
        node["n"] += count
        for frame in frames:
            node = node["kids"].setdefault(frame, {"n": 0, "kids": {}})
            node["n"] += count
    total = tree["n"] or 1
    depth_of = [0]

    def depth(node, d=0):
        depth_of[0] = max(depth_of[0], d)
        for kid in node["kids"].values():
            depth(kid, d + 1)

    depth(tree)
    height = (depth_of[0] + 2) * row + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" '
             f'font-size="11"><rect width="100%" height="100%" fill="#fff"/>'
             f'<text x="6" y="18" font-size="13">{html.escape(title)} ({total} samples)</text>']

    def color(name: str) -> str:
        bucket = bucket_of([name])
        hue = {b: i * 360 // (len(RULES) + 1) for i, (b, _) in enumerate(RULES)}.get(bucket, 0)
        return f"hsl({hue},70%,{72 if bucket == OTHER else 62}%)"

    def draw(node, name, x, d):
        w = node["n"] / total * (width - 12)
        if w < 0.3:
            return
        y = height - (d + 1) * row
        share = 100 * node["n"] / total
        label = html.escape(name)
        parts.append(f'<g><title>{label} ({node["n"]} samples, {share:.1f}%)</title>'
                     f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" fill="{color(name)}"/>')
        chars = int(w / 6.6)
        if chars >= 4:
            text = name if len(name) <= chars else name[: chars - 2] + ".."
            parts.append(f'<text x="{x + 2:.1f}" y="{y + row - 4}">{html.escape(text)}</text>')
        parts.append("</g>")
        offset = x
        for kid_name, kid in sorted(node["kids"].items(), key=lambda kv: kv[0]):
            draw(kid, kid_name, offset, d + 1)
            offset += kid["n"] / total * (width - 12)

    offset = 6.0
    for name, kid in sorted(tree["kids"].items(), key=lambda kv: kv[0]):
        draw(kid, name, offset, 0)
        offset += kid["n"] / total * (width - 12)
    parts.append("</svg>")
    return "\n".join(parts)


def bucket_table(shares: dict[str, float]) -> str:
    lines = ["| where | share of samples |", "|---|---:|"]
    lines += [f"| {name} | {100 * share:.1f}% |" for name, share in shares.items()]
    return "\n".join(lines)


def summary_png(reports: list[dict], path: Path) -> None:
    """One stacked bar per profile (its bucket shares), the same colour per bucket across bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = [name for name, _ in RULES] + [OTHER]
    colors = plt.get_cmap("tab20").colors[0::2] + plt.get_cmap("tab20").colors[1::2]  # strong ones first
    fig, ax = plt.subplots(figsize=(11, 0.9 * len(reports) + 2.4))
    parked = RULES[0][0]
    labels, seen = [], set()
    for row, report in enumerate(reports):
        left = 0.0
        parked_share = report["buckets"].get(parked, 0.0)
        busy = 1.0 - parked_share or 1.0
        for i, name in enumerate(order):
            share = 0.0 if name == parked else 100 * report["buckets"].get(name, 0.0) / busy
            if share:
                ax.barh(row, share, left=left, color=colors[i % len(colors)], label=None if name in seen else name)
                seen.add(name)
                if share >= 6:
                    ax.text(left + share / 2, row, f"{share:.0f}%", ha="center", va="center", fontsize=8)
                left += share
        labels.append(f"{report.get('label') or report['system']}\n{report['workload']} c={report['concurrency']}, "
                      f"{report['rps']:.0f} req/s\n({100 * parked_share:.0f}% of samples: parked threads)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4)
    ax.set_yticks(range(len(reports)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the samples of working threads (py-spy, all threads; parked threads left out)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", choices=[s for s in peers.SYSTEMS if s != "floor"], default="neuroserve")
    parser.add_argument("--workload", choices=peers.WORKLOADS, default="cifar-task")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the sampled load")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--native", action="store_true", help="also sample native frames (C/C++ inside ORT, PIL)")
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--classifier", default="cifar10-resnet")
    parser.add_argument("--sentiment", default="sentiment-lstm")
    parser.add_argument("--out", type=Path, help="SVG path (default docs/img/profile-<label or system>-<workload>-c<N>.svg)")
    parser.add_argument("--label", help="name of this profile in the summary chart (default: the system)")
    parser.add_argument("--summary", type=Path, nargs="+", metavar="JSON",
                        help="measure nothing: draw the bucket shares of earlier profiles' JSON into --summary-out")
    parser.add_argument("--summary-out", type=Path, default=ROOT / "docs" / "img" / "profile-summary.png")
    args = parser.parse_args()
    if args.summary:
        reports = [json.loads(p.read_text()) for p in args.summary]
        for report in reports:  # re-bucket from the raw stacks when they are still there (RULES may have changed)
            if Path(report.get("collapsed", "")).is_file():
                report["buckets"] = buckets(parse_collapsed(Path(report["collapsed"]).read_text()))
        summary_png(reports, args.summary_out)
        return
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        sys.exit("needs py-spy: .venv/bin/pip install py-spy")
    peers.RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"profile-{args.label or args.system}-{args.workload}-c{args.concurrency}"
    svg_path = args.out or ROOT / "docs" / "img" / f"{stem}.svg"

    models = args.models.resolve()
    roles = {"classifier": args.classifier, "sentiment": args.sentiment}
    classifier = shared.ImageClassifier(models / roles["classifier"], 1)
    sentiment = shared.SentimentModel(models / roles["sentiment"], 1)
    request = peers.build_requests(classifier, sentiment)[args.system].get(args.workload)
    if request is None:
        sys.exit(f"{args.system} does not serve {args.workload}")
    del classifier, sentiment

    server = peers.start_system(args.system, models, roles)
    raw = peers.RESULTS / "logs" / f"{stem}.collapsed.txt"  # git-ignored
    raw.parent.mkdir(parents=True, exist_ok=True)
    try:
        url = server.url + request.path
        peers.run_hey(args.system, request.route, args.workload, url, request.body, request.headers,
                      request.content_type, args.concurrency, 1.0)  # warm-up
        result = {}
        load = threading.Thread(target=lambda: result.setdefault("row", peers.run_hey(
            args.system, request.route, args.workload, url, request.body, request.headers, request.content_type,
            args.concurrency, args.seconds + 1.0)))
        load.start()
        time.sleep(0.5)
        command = [py_spy, "record", "--pid", str(server.proc.pid), "--duration", str(int(args.seconds)),
                   "--rate", str(args.rate), "--format", "raw", "--threads", "--subprocesses", "-o", str(raw)]
        if args.native:
            command.append("--native")
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        load.join()
    finally:
        server.stop()
    stacks = parse_collapsed(raw.read_text())
    shares = buckets(stacks)
    row = result["row"]
    title = (f"{args.system} {args.workload} c={args.concurrency}: {row.rps:.0f} req/s, p99 {row.p99_ms:.1f} ms "
             f"while sampled ({args.rate}/s{', native' if args.native else ''})")
    svg_path.parent.mkdir(parents=True, exist_ok=True)
    svg_path.write_text(flamegraph_svg(stacks, title))
    print(title)
    print(bucket_table(shares))
    (peers.RESULTS / f"{stem}.json").write_text(json.dumps(
        {"label": args.label, "system": args.system, "workload": args.workload, "concurrency": args.concurrency, "rps": row.rps,
         "p99_ms": row.p99_ms, "native": args.native, "buckets": shares, "collapsed": str(raw)}, indent=2))
    print(f"wrote {svg_path} and {raw}")


if __name__ == "__main__":
    main()
