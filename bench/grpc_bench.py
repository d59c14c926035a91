"""The Open Inference Protocol's binary faces under load: gRPC against REST binary, Neuroserve and KServe, one run.

    nice -n 10 .venv/bin/python -m bench.grpc_bench --seconds 5 --concurrency 32 --rounds 6

One CIFAR image (uint8 [1,32,32,3], random pixels, seed 0) per request, `probabilities` back as raw bytes:
- REST binary: POST /v2/models/<m>/infer with the binary tensor extension (Inference-Header-Content-Length);
- gRPC: inference.GRPCInferenceService/ModelInfer with raw_input_contents (as tritonclient.grpc sends).
Systems: Neuroserve (REST on its port, gRPC on NEUROSERVE_GRPC_PORT) and, when bench/peers/setup.sh made its
venv, KServe's Python ModelServer with its own gRPC server (bench/peers/kserve_server.py --grpc-port).

Both transports are driven by the same kind of client so neither gets a cheaper one: one asyncio process,
`--concurrency` workers each with one request in flight, requests serialized once up front (a minimal
HTTP/1.1 keep-alive client, one connection per worker; for gRPC a grpc.aio channel per worker calling the
method with the request's bytes, no protobuf work in the loop). Each answer is checked once before the load
(the top label must equal onnxruntime's own on the same image). Each system is started once and its two
transports alternate for `--rounds` windows of `--seconds`; the table reports each one's median window and
the median of the rounds' gRPC/REST pairs. Results: bench/results/grpc.json (git-ignored).

Each Neuroserve round also times the **model alone**: the served graph run in this process, one single-threaded
session run per core at once, `--concurrency` images in all (the most a batcher can merge from that many
one-image requests), while the server idles. Its images/s is a ceiling no transport can beat on this machine: if
it is less than 1.3x REST's req/s, no gRPC server could reach 1.3x REST here, the model's own time is the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import cpu_name, free_port, percentile
from bench.peers.run import Server, venv_python

ROOT = Path(__file__).resolve().parent.parent
METHOD = "/inference.GRPCInferenceService/ModelInfer"


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)


def rest_request(model: str, pixels: np.ndarray, port: int) -> bytes:
    header = json.dumps({"inputs": [{"name": "images", "shape": list(pixels.shape), "datatype": "UINT8",
                                     "parameters": {"binary_data_size": pixels.nbytes}}],
                         "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
    body = header + pixels.tobytes()
    head = (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\n"
            f"Inference-Header-Content-Length: {len(header)}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def grpc_request(model: str, pixels: np.ndarray) -> bytes:
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="images", datatype="UINT8", shape=list(pixels.shape))
    request.outputs.add(name="probabilities")
    request.raw_input_contents.append(pixels.tobytes())
    return request.SerializeToString()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, dict]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")  # the empty line after the last chunk (no trailers)
        return status, b"".join(parts), headers
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers


def rest_probabilities(body: bytes, headers: dict) -> np.ndarray:
    """The binary answer, or the JSON one from a server that answers JSON though binary was asked for."""
    length = headers.get("inference-header-content-length")
    if length is not None and int(length) < len(body):
        return np.frombuffer(body[int(length):], dtype="<f4")
    return np.asarray(json.loads(body[: int(length)] if length else body)["outputs"][0]["data"], dtype=np.float32)


def grpc_probabilities(raw: bytes) -> np.ndarray:
    from tritonclient.grpc import service_pb2

    response = service_pb2.ModelInferResponse.FromString(raw)
    if response.raw_output_contents:
        return np.frombuffer(response.raw_output_contents[0], dtype="<f4")
    return np.asarray(response.outputs[0].contents.fp32_contents, dtype=np.float32)


async def load(transport: str, port: int, request: bytes, concurrency: int, seconds: float) -> dict:
    """`concurrency` workers, one request in flight each, for `seconds`: latencies of the good answers."""
    latencies: list[float] = []
    errors = [0]
    stop_at = time.perf_counter() + seconds

    if transport == "rest":
        async def worker():
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                while time.perf_counter() < stop_at:
                    started = time.perf_counter()
                    writer.write(request)
                    status, _, _ = await _read_response(reader)
                    if status == 200:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors[0] += 1
            finally:
                writer.close()
    else:
        import grpc

        async def worker():
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary(METHOD)  # bytes in, bytes out: no protobuf work in the loop
                while time.perf_counter() < stop_at:
                    started = time.perf_counter()
                    try:
                        await call(request)
                        latencies.append(time.perf_counter() - started)
                    except grpc.aio.AioRpcError:
                        errors[0] += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    ms = sorted(x * 1000 for x in latencies)
    return {"requests": len(ms), "errors": errors[0], "rps": len(ms) / elapsed,
            "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}


async def check(transport: str, port: int, request: bytes, expected: int) -> None:
    if transport == "rest":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        status, body, headers = await _read_response(reader)
        writer.close()
        if status != 200:
            raise RuntimeError(f"REST answered {status}: {body[:300]!r}")
        top = int(np.argmax(rest_probabilities(body, headers)))
    else:
        import grpc

        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            top = int(np.argmax(grpc_probabilities(await channel.unary_unary(METHOD)(request))))
    if top != expected:
        raise RuntimeError(f"{transport} top label {top}, onnxruntime says {expected}")


def model_alone(models: Path, classifier: str, pixels: np.ndarray, batch: int):
    """A function timing the served graph for some seconds: images/s, no HTTP, no gRPC, no batcher, no client.
    One single-threaded session run per core at once, each on its share of ``batch`` images (as the server's
    instances run; one run over every core waits for its slowest thread whenever a core is taken away)."""
    from concurrent.futures import ThreadPoolExecutor

    from service.manifest import read_manifest
    from service.runtime import OnnxRuntimeSession
    from service.settings import Settings

    folder = models / classifier
    session = OnnxRuntimeSession.load(folder / "1" / "model.onnx", read_manifest(folder), Settings(),
                                      intra_op_threads=1)
    cores = os.cpu_count() or 1
    share = max(1, batch // cores)
    feeds = {"images": np.repeat(pixels, share, axis=0)}
    session.run(feeds)  # warm-up

    def window(seconds: float) -> dict:
        began = time.perf_counter()

        def runs() -> int:
            count = 0
            while time.perf_counter() - began < seconds:
                session.run(feeds)  # releases the GIL: the cores' runs overlap
                count += 1
            return count

        with ThreadPoolExecutor(cores) as pool:
            total = sum(pool.map(lambda _: runs(), range(cores)))
        elapsed = time.perf_counter() - began
        return {"requests": total * share, "errors": 0, "rps": total * share / elapsed,
                "p50_ms": elapsed / total * cores * 1000, "p99_ms": elapsed / total * cores * 1000}
    return window


def start(system: str, models: Path, classifier: str) -> tuple[Server, int, int]:
    http, grpc_port = free_port(), free_port()
    if system == "neuroserve":
        server = Server("neuroserve-grpc", [sys.executable, "-m", "service.cli", "serve", "--port", str(http),
                                            "--models", str(models)], http,
                        env={"NEUROSERVE_GRPC_PORT": str(grpc_port), "NEUROSERVE_LOAD_MODELS": classifier,
                             "NEUROSERVE_LOG_LEVEL": "warning"}, ready_path="/v2/health/ready")
    else:
        server = Server("kserve-grpc", [str(venv_python("kserve")), "-m", "bench.peers.kserve_server",
                                        "--classifier", str(models / classifier), "--http_port", str(http),
                                        "--grpc-port", str(grpc_port)], http, ready_path="/v2/health/ready")
    return server, http, grpc_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--classifier", default="cifar10-resnet")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--systems", nargs="+", default=["neuroserve", "kserve"], choices=["neuroserve", "kserve"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "grpc.json")
    args = parser.parse_args()
    systems = [s for s in args.systems if s == "neuroserve" or venv_python(s).exists()]
    for missing in sorted(set(args.systems) - set(systems)):
        print(f"skipping {missing}: no venv (run bench/peers/setup.sh {missing})")

    import onnxruntime as ort

    pixels = image()
    session = ort.InferenceSession(str(args.models / args.classifier / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = int(np.argmax(session.run(["probabilities"], {"images": pixels})[0]))
    del session
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "load_start": os.getloadavg()[0]}
    rounds: dict[tuple[str, str], list[dict]] = {}
    # Each system is started once; its two transports then alternate, `rounds` windows each (REST first in even
    # rounds, gRPC first in odd ones), so both see the same drifts of a shared machine's background load.
    ceiling = model_alone(args.models, args.classifier, pixels, args.concurrency)
    for system in systems:
        server, http, grpc_port = start(system, args.models, args.classifier)
        try:
            requests = {"rest": (http, rest_request(args.classifier, pixels, http)),
                        "grpc": (grpc_port, grpc_request(args.classifier, pixels))}
            for transport, (port, request) in requests.items():
                asyncio.run(check(transport, port, request, expected))
                asyncio.run(load(transport, port, request, args.concurrency, 1.0))  # warm-up, discarded
            for round_index in range(args.rounds):
                for transport in (["rest", "grpc"] if round_index % 2 == 0 else ["grpc", "rest"]):
                    port, request = requests[transport]
                    row = asyncio.run(load(transport, port, request, args.concurrency, args.seconds))
                    rounds.setdefault((system, transport), []).append(row)
                    print(f"round {round_index + 1} {system:10s} {transport:4s} {row['rps']:8.0f} req/s  "
                          f"p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  errors {row['errors']}", flush=True)
                if system == "neuroserve":
                    row = ceiling(args.seconds)
                    rounds.setdefault(("model alone", f"batch {args.concurrency}"), []).append(row)
                    print(f"round {round_index + 1} model alone, batch {args.concurrency}: {row['rps']:8.0f} images/s "
                          f"({row['p50_ms']:.1f} ms a run of {args.concurrency // (os.cpu_count() or 1)})", flush=True)
        finally:
            server.stop()
    machine["load_end"] = os.getloadavg()[0]
    table = []
    for (system, transport), rows in rounds.items():
        median = sorted(rows, key=lambda r: r["rps"])[(len(rows) - 1) // 2]
        table.append({"system": system, "transport": transport, **median,
                      "rps_rounds": [round(r["rps"]) for r in rows]})
    print(f"\n{machine}\n| system | transport | req/s (median of {args.rounds}) | p50 ms | p99 ms | rounds req/s |")
    print("|---|---|---|---|---|---|")
    for row in table:
        print(f"| {row['system']} | {row['transport']} | {row['rps']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
              f"{', '.join(map(str, row['rps_rounds']))} |")
    by = {(r["system"], r["transport"]): r["rps"] for r in table}
    ratios = {}
    for system in systems:  # the median of each round's gRPC/REST pair: the figure least moved by background load
        pairs = [g["rps"] / r["rps"] for g, r in zip(rounds[(system, "grpc")], rounds[(system, "rest")]) if r["rps"]]
        ratios[f"{system} grpc / rest, median of the rounds' pairs"] = sorted(pairs)[len(pairs) // 2]
    if ("neuroserve", "rest") in by and ("neuroserve", "grpc") in by:
        ratios["neuroserve grpc / rest"] = by[("neuroserve", "grpc")] / by[("neuroserve", "rest")]
    ceiling_rows = rounds.get(("model alone", f"batch {args.concurrency}"))
    if ceiling_rows:  # the most gRPC could gain over REST here if it cost nothing at all
        pairs = [c["rps"] / r["rps"] for c, r in zip(ceiling_rows, rounds[("neuroserve", "rest")]) if r["rps"]]
        ratios["model alone / neuroserve rest, median of the rounds' pairs (ceiling of grpc / rest)"] = \
            sorted(pairs)[len(pairs) // 2]
    if ("kserve", "grpc") in by and ("neuroserve", "grpc") in by:
        ratios["neuroserve grpc / kserve grpc"] = by[("neuroserve", "grpc")] / by[("kserve", "grpc")]
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "settings": vars(args) | {"models": str(args.models),
                                                                                  "out": str(args.out)},
                                    "rows": table, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
