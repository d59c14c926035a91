"""One ONNX Runtime session per model version: providers, threads, tensor metadata, warm-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.errors import ModelLoadError
from service.manifest import Manifest, TensorSpec
from service.settings import Settings

log = logging.getLogger("neuroserve.runtime")

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
DATATYPE_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}


def resolve_providers(choice: str) -> list[str]:
    available = ort.get_available_providers()
    if choice == "cpu":
        return ["CPUExecutionProvider"]
    if choice == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ModelLoadError("providers=cuda but this onnxruntime has no CUDAExecutionProvider")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


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
    provider: str

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
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.ort_spinning else "0")
        if intra_op_threads:
            options.add_session_config_entry("session.force_spinning_stop", "1")
        options.log_severity_level = 4  # we log failures ourselves, with the request id
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=resolve_providers(settings.providers))
        except ModelLoadError:
            raise
        except Exception as exc:  # ORT raises several unrelated types for bad files
            raise ModelLoadError(f"{path}: onnxruntime could not load it: {exc}") from exc
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
        return cls(path=path, session=session, inputs=inputs, outputs=outputs, provider=session.get_providers()[0])

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
