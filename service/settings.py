"""Server settings: environment variables with the NEUROSERVE_ prefix, or a .env file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def cpu_cores() -> int:
    """Cores one server process may use: the machine's, shared among the NEUROSERVE_WORKERS worker processes
    (`neuroserve serve --workers N` exports it to its workers), so N workers do not each size their thread pools
    for the whole machine. At least one."""
    try:
        workers = int(os.environ.get("NEUROSERVE_WORKERS", "1") or 1)
    except ValueError:
        workers = 1
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def default_instances() -> int:
    """Runs in flight per model when neither the manifest nor the settings say: one per core, up to 4.
    On small CPUs, two single-threaded runs use two cores better than one run on two threads
    (measured in docs/benchmarks.md)."""
    return max(1, min(4, cpu_cores()))


def _default_threads() -> int:
    # ORT's intra-op pool per session: the cores left per instance, so instances x threads = cores.
    return max(1, cpu_cores() // default_instances())


class Settings(BaseSettings):
    """Every field is documented in the README's settings table (generated from these docstrings)."""

    model_config = SettingsConfigDict(env_prefix="NEUROSERVE_", env_file=".env", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to bind.")
    grpc_port: int = Field(
        default=8001, ge=0, le=65535, description="Port of the Open Inference Protocol over gRPC (KServe v2 "
        "GRPCInferenceService), on the same host address; 0 turns it off. With several workers each serves it once "
        "its models are loaded (SO_REUSEPORT).")
    workers: int = Field(
        default=1, ge=1, le=64, description="Server processes sharing the port (`neuroserve serve --workers N`). "
        "Each loads every model; the default instances and ORT threads divide the cores among them; metrics are "
        "summed over them; readiness waits for all; the repository API's load and unload answer 409 while N > 1."
    )
    models_dir: Path = Field(default=DEFAULT_MODELS_DIR, description="Model repository folder (models/<name>/<version>/model.onnx).")
    load_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated model names to load at start; empty loads every model found."
    )
    providers: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="ONNX Runtime execution provider: auto uses CUDA when onnxruntime offers it, else CPU."
    )
    batch_buckets: Literal["auto", "on", "off"] = Field(
        default="auto", description="Pad each batched run along dim 0 up to the smallest of the model's batch buckets "
        "(manifest batching.buckets; by default 1, 2, 4, ... up to max_batch_size) and warm every bucket before the "
        "model is ready, so a session only meets shapes it has planned: auto on CUDA only (its convolutions are "
        "re-planned for every new shape; there each bucket gets its own session, warmed at its shape, each with its "
        "own copy of the weights on the GPU), on also on the CPU (one shared session; padding only adds work "
        "there), off nowhere."
    )
    cuda_device_id: int = Field(default=0, ge=0, description="GPU the CUDA provider runs on.")
    cuda_conv_algo_search: Literal["HEURISTIC", "DEFAULT", "EXHAUSTIVE"] = Field(
        default="HEURISTIC", description="How the CUDA provider picks a convolution algorithm for each new shape: "
        "cuDNN's heuristic (no benchmarking; with batch buckets each shape is planned once, at warm-up), DEFAULT (one "
        "fixed algorithm: cheapest for shapes that change on every run), EXHAUSTIVE (benchmarks every algorithm: "
        "up to 268 ms per new shape)."
    )
    cuda_mem_limit_mb: int = Field(default=0, ge=0, description="Largest GPU memory arena of one CUDA session, in MiB; 0: no limit.")
    cuda_arena_extend_strategy: Literal["kSameAsRequested", "kNextPowerOfTwo"] = Field(
        default="kNextPowerOfTwo", description="How the CUDA memory arena grows: by doubling (onnxruntime's default; "
        "measured on an H200 with buckets: 21,317 images/s against 18,368 growing by what is asked), or by what is "
        "asked (kSameAsRequested: a smaller footprint where GPU memory is tight)."
    )
    cuda_tf32: bool = Field(
        default=True, description="Let convolutions and matrix products use TF32 on Ampere and later GPUs (onnxruntime's "
        "default: faster, scores within 1e-3 of the CPU's); false for FP32 arithmetic throughout."
    )
    cuda_copy_in_default_stream: bool = Field(
        default=True, description="Copy inputs and outputs in the CUDA default stream (onnxruntime's default; false uses "
        "separate copy streams, which onnxruntime documents as racy)."
    )
    intra_op_threads: int = Field(default_factory=_default_threads, ge=1, le=256, description="ORT intra-op threads per session.")
    inter_op_threads: int = Field(default=1, ge=1, le=64, description="ORT inter-op threads per session.")
    ort_spinning: bool = Field(default=True, description="Let ORT worker threads spin between runs (lower latency, more CPU).")
    warmup_runs: int = Field(default=2, ge=0, le=100, description="Inference runs on dummy input per model before it is marked ready.")
    strict_readiness: bool = Field(
        default=False, description="When true /v2/health/ready stays 503 while any model failed to load; when false it lists them."
    )
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 beyond).")
    max_decompressed_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="Largest gzip/deflate body after decompression.")
    max_images_per_request: int = Field(default=64, ge=1, le=1024, description="Images one vision request may carry (413 beyond).")
    max_image_pixels: int = Field(default=36_000_000, ge=1, description="Pixels one image may have, read from its header before decoding (413 beyond).")
    model_instances: int | None = Field(default=None, ge=1, le=64, description="Override every model's instance count: runs in flight at once per model, each on its own thread.")
    solo_session: bool = Field(
        default=True, description="When a model runs several instances, also open one session with all their threads "
        "(at most one per core) for a request that arrives while no other run is in flight anywhere in the server: "
        "a lone request gets every core, concurrent ones keep the instances."
    )
    solo_spinning: bool = Field(
        default=False, description="Let the solo session's pool threads spin while it runs (stopped when the run "
        "ends: session.force_spinning_stop). Off: they sleep until a run hands them work; on 2 shared cores spinning "
        "about doubled a lone request's p90 and p99 (docs/benchmarks.md, one-client tail)."
    )
    gc_freeze: bool = Field(
        default=True, description="After models load (and after each repository load or unload), freeze every object "
        "alive in the garbage collector's permanent generation (gc.freeze), so its full passes scan only request-time "
        "objects (the longest pause under the soak: 121 ms without, 59 ms with)."
    )
    max_queue_size: int | None = Field(default=None, ge=1, description="Override every model's queue depth (503 + Retry-After when full).")
    generation_max_rows: int = Field(default=64, ge=8, le=4096, description="Rows (sequences; each beam or choice counts one) one generation model decodes together per step; more requests wait for room.")
    generation_device_cache: Literal["auto", "on", "off"] = Field(
        default="auto", description="Where a generation model keeps its KV caches between decode steps: on the device "
        "through ONNX Runtime IO binding (on), in host numpy arrays (off), or auto: on the device under CUDA, on the host "
        "on the CPU (where IO binding measured no faster)."
    )
    device_dequantize: Literal["auto", "on", "off"] = Field(
        default="auto", description="Open dynamically INT8-quantized graphs (the translator, chat) with their "
        "quantized MatMuls rewritten as float MatMuls, in memory (on), as they are (off), or auto: rewritten when the "
        "session asks for CUDA, which has no DynamicQuantizeLinear kernel and would copy every quantized MatMul's "
        "input to the host and back (service/dequantize.py); on the CPU the INT8 kernels are the fast ones."
    )
    generation_max_waiting: int = Field(default=256, ge=1, description="Generation requests (one per text or chat completion) that may wait for room per model (503 + Retry-After beyond).")
    request_timeout_s: float = Field(default=60.0, gt=0, description="Longest a request may wait for its inference result (503 beyond).")
    drain_timeout_s: float = Field(default=20.0, ge=0, description="On SIGTERM, how long in-flight requests may take to finish.")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated API keys (Authorization: Bearer). Empty disables auth (a warning is logged)."
    )
    admin_key: SecretStr | None = Field(default=None, description="Key for the repository API (load/unload/index). Unset: that API refuses everyone when api_keys are set, else it is open.")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Comma-separated origins allowed by CORS; empty disables CORS.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")
    log_json: bool = Field(default=True, description="JSON log lines (one object a line) instead of plain text.")

    @field_validator("load_models", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys) or self.admin_key is not None
