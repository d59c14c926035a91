"""One ONNX Runtime session per model version: providers, threads, tensor metadata, warm-up."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.errors import ModelLoadError
from service.manifest import DATATYPE_TO_NUMPY, Manifest, TensorSpec
from service.settings import Settings

log = logging.getLogger("neuroserve.runtime")

try:  # onnx is a serving dependency of the GPU image only (requirements-gpu.txt): it is what rewrites INT8 graphs
    from service.dequantize import float_graph_bytes
except ImportError:
    float_graph_bytes = None

# ONNX Runtime type strings <-> Open Inference Protocol datatypes <-> numpy.
ORT_TO_DATATYPE = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def cuda_options(settings: Settings) -> dict[str, str]:
    """The CUDA provider's options from the settings (docs/deployment.md, "GPU", says why each default)."""
    options = {
        "device_id": str(settings.cuda_device_id),
        "cudnn_conv_algo_search": settings.cuda_conv_algo_search,
        "arena_extend_strategy": settings.cuda_arena_extend_strategy,
        "use_tf32": "1" if settings.cuda_tf32 else "0",
        "do_copy_in_default_stream": "1" if settings.cuda_copy_in_default_stream else "0",
    }
    if settings.cuda_mem_limit_mb:
        options["gpu_mem_limit"] = str(settings.cuda_mem_limit_mb * 1024 * 1024)
    return options


def resolve_providers(settings: Settings) -> list:
    """The providers argument of an InferenceSession: CUDA (with its options) then CPU, or CPU alone."""
    choice = settings.providers
    available = ort.get_available_providers()
    if choice == "cuda" and CUDA not in available:
        raise ModelLoadError(f"providers=cuda but this onnxruntime has no {CUDA} (available: {', '.join(available)})")
    if choice == "cpu" or CUDA not in available:
        return [CPU]
    return [(CUDA, cuda_options(settings)), CPU]


def check_providers(path: Path, settings: Settings, requested: list, actual: list[str]) -> bool:
    """Provider truth: the session's own list, not the one asked for. providers=cuda refuses a session that did not
    get CUDA; auto serves it on the CPU and says so (the log here, /v1/models and neuroserve_model_provider_fallback).
    True when it fell back."""
    wanted = requested[0][0] if isinstance(requested[0], tuple) else requested[0]
    if actual[:1] == [wanted]:
        return False
    reason = (f"{path}: asked for {wanted} but the session runs on {', '.join(actual) or 'nothing'} (onnxruntime "
              "logs why on stderr when the provider fails: usually a CUDA or cuDNN library it was built for is missing)")
    if settings.providers == "cuda":
        raise ModelLoadError(reason)
    log.warning("%s; serving on the CPU", reason)
    return True


@functools.lru_cache(maxsize=1)
def _float_graph(path: str, mtime_ns: int, size: int):
    """float_graph_bytes of one file version. A CUDA model opens one session per bucket, one after another: the
    last file's rewrite (or its absence) is kept, so each file is parsed and rewritten once, not once per bucket."""
    return float_graph_bytes(path)


def _graph_for(path: Path, settings: Settings, requested: list) -> tuple[str | bytes, int]:
    """What InferenceSession opens: the file, or (device_dequantize) its graph with the dynamically quantized
    MatMuls in float, for a device without integer kernels; and how many MatMuls that rewrote."""
    first = requested[0][0] if isinstance(requested[0], tuple) else requested[0]
    wanted = settings.device_dequantize == "on" or (settings.device_dequantize == "auto" and first != CPU)
    if not wanted:
        return str(path), 0
    if float_graph_bytes is None:
        if settings.device_dequantize == "on":
            raise ModelLoadError(f"{path}: device_dequantize=on needs the onnx package (pip install onnx)")
        log.warning("%s: the onnx package is not installed, so dynamically quantized MatMuls (if the graph has any) "
                    "stay INT8 on %s, with host copies on CUDA (pip install onnx, or use the GPU image)", path, first)
        return str(path), 0
    stat = path.stat()
    try:
        graph, rewrite = _float_graph(str(path), stat.st_mtime_ns, stat.st_size)
    except Exception as exc:  # onnx raises DecodeError, ValidationError or OSError for files ORT may still reject
        raise ModelLoadError(f"{path}: could not read it as ONNX to dequantize it: {exc}") from exc
    if not rewrite.matmuls:
        return str(path), 0
    log.info("%s: %d dynamically quantized MatMuls run as float MatMuls on %s (%d quantize nodes dropped)",
             path, rewrite.matmuls, first, rewrite.nodes_removed)
    return graph, rewrite.matmuls


def runtime_summary() -> str:
    """onnxruntime's version and providers, for the start-up log."""
    return f"onnxruntime {ort.__version__}, providers available: {', '.join(ort.get_available_providers())}"


def _library_version(names: tuple[str, ...], symbol: str) -> tuple[str, str] | None:
    """(version, path) of the first CUDA library the dynamic loader finds (ctypes; None where there is none)."""
    import ctypes

    for name in names:
        try:
            lib = ctypes.CDLL(name)
            if symbol == "cudaRuntimeGetVersion":
                value = ctypes.c_int()
                if lib.cudaRuntimeGetVersion(ctypes.byref(value)) != 0:
                    continue
                v = value.value
                version = f"{v // 1000}.{v % 1000 // 10}"
            else:
                lib.cudnnGetVersion.restype = ctypes.c_size_t
                v = lib.cudnnGetVersion()
                version = f"{v // 10000}.{v % 10000 // 100}.{v % 100}" if v >= 90000 else f"{v // 1000}.{v % 1000 // 100}.{v % 100}"
        except (OSError, AttributeError):
            continue
        return version, _loaded_path(name) or name
    return None


def _loaded_path(name: str) -> str | None:
    """Where a library this process has loaded lives (/proc/self/maps), so the log names the file in use."""
    stem = name.split(".so")[0] + ".so"
    try:
        with open("/proc/self/maps") as maps:
            return next((line.split()[-1] for line in maps if f"/{stem}" in line), None)
    except OSError:
        return None


def cuda_summary() -> str | None:
    """The CUDA runtime and cuDNN versions this process loads, when onnxruntime offers CUDA; None on a CPU box."""
    if CUDA not in ort.get_available_providers():
        return None
    cudart = _library_version(("libcudart.so.13", "libcudart.so.12", "libcudart.so"), "cudaRuntimeGetVersion")
    cudnn = _library_version(("libcudnn.so.9", "libcudnn.so.8", "libcudnn.so"), "cudnnGetVersion")
    found = lambda what, hit: f"{what} {hit[0]} ({hit[1]})" if hit else f"{what} not found by the dynamic loader"
    build = " ".join(ort.get_build_info().split())
    return f"{found('CUDA runtime', cudart)}, {found('cuDNN', cudnn)}; onnxruntime build: {build}"


def _spec_from_ort(node) -> TensorSpec:
    datatype = ORT_TO_DATATYPE.get(node.type)
    if datatype is None:
        raise ModelLoadError(f"tensor {node.name!r} has unsupported type {node.type}")
    shape = [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in node.shape]
    return TensorSpec(name=node.name, datatype=datatype, shape=shape)


def _check_declared(kind: str, declared: list[TensorSpec], actual: list[TensorSpec], source: str = "manifest") -> None:
    """The manifest may omit tensors, but what it declares must match the graph."""
    by_name = {spec.name: spec for spec in actual}
    for spec in declared:
        real = by_name.get(spec.name)
        if real is None:
            raise ModelLoadError(f"{source} {kind} {spec.name!r} is not in the graph (graph has {sorted(by_name)})")
        if spec.datatype != real.datatype:
            raise ModelLoadError(f"{kind} {spec.name!r}: {source} says {spec.datatype}, graph has {real.datatype}")
        if not real.fits(spec.shape):
            raise ModelLoadError(f"{kind} {spec.name!r}: {source} shape {spec.shape} does not fit graph shape {real.shape}")


@dataclass
class OnnxRuntimeSession:
    """A loaded ONNX graph. ``run`` is thread-safe (ORT sessions are) and blocking."""

    path: Path
    session: ort.InferenceSession
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    provider: str  # the first of the session's own providers
    providers: list[str] = field(default_factory=list)  # session.get_providers(): what it really runs on
    fallback: bool = False  # CUDA was offered and asked for (providers=auto), the session got the CPU
    dequantized_matmuls: int = 0  # INT8 MatMul chains run as float MatMuls on the device (service/dequantize.py)

    @classmethod
    def load(cls, path: Path, manifest: Manifest, settings: Settings,
             contract: tuple[list[TensorSpec], list[TensorSpec]] | None = None,
             intra_op_threads: int | None = None) -> "OnnxRuntimeSession":
        """contract: the exact inputs and outputs the graph must have (a generation graph's I/O), instead of
        checking what the manifest declares. intra_op_threads: instead of the settings' (a solo session: its
        pool threads spin during a run but not after it, when the instances' runs need the cores)."""
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads or settings.intra_op_threads
        options.inter_op_num_threads = settings.inter_op_threads
        # A solo session (intra_op_threads given) spins only when settings.solo_spinning says so, and then stops
        # spinning when its run ends; otherwise its pool threads sleep between the pieces of work a run hands them.
        spinning = settings.ort_spinning and (settings.solo_spinning if intra_op_threads else True)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        if intra_op_threads and spinning:
            options.add_session_config_entry("session.force_spinning_stop", "1")
        options.log_severity_level = 4  # we log failures ourselves, with the request id
        requested = resolve_providers(settings)
        source, dequantized = _graph_for(path, settings, requested)
        try:
            session = ort.InferenceSession(source, sess_options=options, providers=requested)
        except Exception as exc:  # ORT raises several unrelated types for bad files
            raise ModelLoadError(f"{path}: onnxruntime could not load it: {exc}") from exc
        providers = list(session.get_providers())
        fallback = check_providers(path, settings, requested, providers)
        inputs = [_spec_from_ort(node) for node in session.get_inputs()]
        outputs = [_spec_from_ort(node) for node in session.get_outputs()]
        if contract is None:
            _check_declared("input", manifest.inputs, inputs)
            _check_declared("output", manifest.outputs, outputs)
        else:
            _check_declared("input", contract[0], inputs, f"{path.name}: the generation contract's")
            _check_declared("output", contract[1], outputs, f"{path.name}: the generation contract's")
            extra = sorted({spec.name for spec in inputs} - {spec.name for spec in contract[0]})
            if extra:
                raise ModelLoadError(f"{path.name}: inputs {extra} are not part of the generation contract")
        return cls(path=path, session=session, inputs=inputs, outputs=outputs, provider=providers[0], providers=providers,
                   fallback=fallback, dequantized_matmuls=dequantized)

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(None, feeds)
        return dict(zip(self.output_names, values))

    def dummy_feeds(self, batch: int = 1, length: int = 8) -> dict[str, np.ndarray]:
        """Zeros of every input: batch for dim 0, `length` for other dynamic dims (warm-up)."""
        feeds = {}
        for spec in self.inputs:
            shape = [batch if i == 0 and d == -1 else (length if d == -1 else d) for i, d in enumerate(spec.shape)]
            dtype = DATATYPE_TO_NUMPY[spec.datatype]
            feeds[spec.name] = np.full(shape, b"", dtype=object) if spec.datatype == "BYTES" else np.zeros(shape, dtype)
        return feeds
