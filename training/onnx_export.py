"""torch -> ONNX for every exporter: one-file export (dynamo for the image nets, the legacy exporter with named
dynamic axes for the sequence nets), torch-vs-onnxruntime parity checks, running a graph over many rows, INT8
quantisation, fp16 weight storage and a latency benchmark.

The served graphs take the raw inputs (uint8 NHWC pixels, token ids, raw values): the preprocessing is a module
inside the exported graph (``training/nets/preprocess.py``).
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from service.dequantize import prune_unused

PARITY_ATOL = 1e-4
PARITY_BATCHES = (1, 3, 64)


FP16_MIN_ELEMENTS = 1024  # smaller tensors (biases, norms) stay fp32: no size to win


class ParityError(AssertionError):
    pass


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path, input_name: str,
                output_names: Sequence[str], dynamo: bool = True) -> Path:
    """Export with a dynamic batch axis, as one file (no external data)."""
    module = module.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(module, (example,), str(path), dynamo=True, input_names=[input_name],
                              output_names=list(output_names), dynamic_shapes=({0: "batch"},),
                              external_data=False, verbose=False)
        else:
            torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=[input_name],
                              output_names=list(output_names), opset_version=17,
                              dynamic_axes={input_name: {0: "batch"}, **{o: {0: "batch"} for o in output_names}})
    data_file = Path(str(path) + ".data")
    if data_file.exists():
        raise RuntimeError(f"{path}: exporter wrote external data; expected one file")
    return path


def ort_session(path: Path, threads: int = 2, optimize: bool = True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def parity_check(module: nn.Module, path: Path, make_input: Callable[[int], np.ndarray],
                 batches: Sequence[int] = PARITY_BATCHES, atol: float = PARITY_ATOL) -> dict[str, float]:
    """Max |torch - onnxruntime| per output over several batch sizes; raises ParityError above atol."""
    sess = ort_session(path)
    names = [o.name for o in sess.get_outputs()]
    worst: dict[str, float] = {}
    module = module.eval()
    for b in batches:
        x = make_input(b)
        with torch.no_grad():
            ref = module(torch.from_numpy(x))
        ref = ref if isinstance(ref, (tuple, list)) else (ref,)
        got = sess.run(None, {sess.get_inputs()[0].name: x})
        for name, r, g in zip(names, ref, got):
            if tuple(r.shape) != tuple(g.shape):
                raise ParityError(f"{path}: output {name} shape {tuple(g.shape)} != torch {tuple(r.shape)} at batch {b}")
            diff = float(np.max(np.abs(r.numpy().astype(np.float64) - g.astype(np.float64)))) if g.size else 0.0
            worst[f"{name}@{b}"] = diff
    bad = {k: v for k, v in worst.items() if not v <= atol}
    if bad:
        raise ParityError(f"{path}: torch vs onnxruntime differ by more than {atol}: {bad}")
    return {"max_abs_diff": max(worst.values()), "batches": list(batches), "atol": atol}


def export_graph(module: nn.Module, example: Mapping[str, torch.Tensor], path: Path, output_names: Sequence[str],
                 dynamic: Mapping[str, Mapping[int, str]]) -> Path:
    """Legacy (TorchScript) exporter with named dynamic axes, opset 17, one file.

    The legacy path is the one that keeps ``nn.RNN`` sequence lengths dynamic (see TOOLCHAIN.md);
    LSTM/GRU export and match on it too, so all sequence models share it.
    """
    module = module.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(example)
    axes = {k: dict(v) for k, v in dynamic.items()}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(example[k] for k in names), str(path), dynamo=False, input_names=names,
                          output_names=list(output_names), opset_version=17, dynamic_axes=axes)
    if Path(str(path) + ".data").exists():
        raise RuntimeError(f"{path}: exporter wrote external data; expected one file")
    return path


def parity_cases(module: nn.Module, path: Path, cases: Sequence[Mapping[str, np.ndarray]],
                 atol: float = PARITY_ATOL, rtol: float = 0.0) -> dict[str, object]:
    """Max |torch - onnxruntime| over several named-input cases (batch sizes, sequence lengths).

    Passes where |diff| <= atol + rtol * |torch|. Outputs in raw units (vehicles/hour, dollars) need rtol:
    float32 spacing alone is ~5e-4 at 5,000, so an absolute 1e-4 is not representable there.
    """
    sess = ort_session(path)
    module = module.eval()
    worst = worst_rel = 0.0
    shapes = []
    for feeds in cases:
        with torch.no_grad():
            ref = module(*(torch.from_numpy(feeds[i.name]) for i in sess.get_inputs()))
        ref = ref if isinstance(ref, (tuple, list)) else (ref,)
        got = sess.run(None, dict(feeds))
        for r, g in zip(ref, got):
            if tuple(r.shape) != tuple(g.shape):
                raise ParityError(f"{path}: shape {g.shape} != torch {tuple(r.shape)} for {_shapes(feeds)}")
            ref64 = r.numpy().astype(np.float64)
            err = np.abs(ref64 - g.astype(np.float64))
            if g.size and not np.all(err <= atol + rtol * np.abs(ref64)):
                raise ParityError(f"{path}: torch vs onnxruntime differ by {err.max():.3g} (> {atol} + {rtol} x |ref|) "
                                  f"for {_shapes(feeds)}")
            worst = max(worst, float(err.max(initial=0.0)))
            worst_rel = max(worst_rel, float((err / np.maximum(np.abs(ref64), 1e-12)).max(initial=0.0)))
        shapes.append(_shapes(feeds))
    return {"max_abs_diff": worst, "max_rel_diff": worst_rel, "cases": shapes, "atol": atol, "rtol": rtol}


def _shapes(feeds: Mapping[str, np.ndarray]) -> str:
    return ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items())


def run_onnx(path: Path, feeds: Mapping[str, np.ndarray], batch: int = 512) -> np.ndarray:
    """First output of the graph over all rows, in chunks."""
    sess = ort_session(path)
    n = len(next(iter(feeds.values())))
    outs = [sess.run(None, {k: v[i : i + batch] for k, v in feeds.items()})[0] for i in range(0, n, batch)]
    return np.concatenate(outs)


def random_images(shape: Sequence[int], seed: int = 0) -> Callable[[int], np.ndarray]:
    rng = np.random.default_rng(seed)
    return lambda b: rng.integers(0, 256, size=(b, *shape), dtype=np.uint8)


def benchmark(path: Path, images: np.ndarray, batches: Sequence[int] = (1, 64), threads: int = 2,
              repeats: int = 50, warmup: int = 5) -> dict[str, float]:
    """Median latency (ms) of one ORT run on the CPU at each batch size."""
    repeats = int(os.environ.get("NEUROSERVE_BENCH_REPEATS", repeats))
    sess = ort_session(path, threads=threads)
    name = sess.get_inputs()[0].name
    out: dict[str, float] = {}
    for b in batches:
        x = images[:b]
        if len(x) < b:
            x = np.resize(images, (b, *images.shape[1:]))
        for _ in range(min(warmup, repeats)):
            sess.run(None, {name: x})
        times = []
        for _ in range(repeats if b == 1 else max(min(repeats, 10), repeats // 3)):
            t0 = time.perf_counter()
            sess.run(None, {name: x})
            times.append((time.perf_counter() - t0) * 1000)
        out[f"batch{b}_median_ms"] = round(statistics.median(times), 3)
    out["threads"] = threads
    return out


def quantize_static_int8(fp32_path: Path, out_path: Path, calibration: np.ndarray, input_name: str = "images",
                         per_channel: bool = True) -> Path:
    """Static QDQ INT8 of Conv/MatMul/Gemm, calibrated (MinMax) on ``calibration`` (uint8 NHWC images)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{input_name: calibration[i : i + 32]} for i in range(0, len(calibration), 32)])

        def get_next(self):
            return next(self.batches, None)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pre = out_path.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"])
    finally:
        if pre.exists():
            pre.unlink()
    for leftover in out_path.parent.glob("*.onnx.data"):
        leftover.unlink()
    return out_path


@torch.no_grad()
def round_weights_to_fp16(module: nn.Module, min_elements: int = FP16_MIN_ELEMENTS) -> None:
    """Round the large float weights to fp16 precision in place, so a graph that stores them as fp16
    (``store_weights_fp16``) computes exactly what this module computes."""
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.dtype == torch.float32 and tensor.numel() >= min_elements:
            tensor.copy_(tensor.half().float())


def store_weights_fp16(path: Path, min_elements: int = FP16_MIN_ELEMENTS) -> int:
    """Rewrite the graph's large FLOAT initializers as FLOAT16, each with a Cast back to float: half the file,
    the same fp32 arithmetic (ORT folds the Casts into fp32 constants when it optimises the graph at load).
    Lossless for weights already rounded by ``round_weights_to_fp16``. Returns how many were rewritten."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    graph_inputs = {i.name for i in graph.input}
    kept, casts = [], []
    for init in graph.initializer:
        if (init.data_type == TensorProto.FLOAT and init.name not in graph_inputs
                and int(np.prod(init.dims)) >= min_elements):
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), f"{init.name}__fp16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                          name=f"{init.name}__to_fp32"))
        else:
            kept.append(init)
    nodes = list(graph.node)
    del graph.initializer[:], graph.node[:]
    graph.initializer.extend(kept)
    graph.node.extend(casts + nodes)  # the casts first: nodes stay in topological order
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return len(casts)


def float_weights_graph(path: Path, out: Path, output: str) -> Path:
    """The inverse of ``store_weights_fp16`` for a graph that is to be processed further (quantised): its FLOAT16
    initializers behind a Cast back as FLOAT initializers, and ``output`` its only output (what fed only the others,
    such as the OOD features, is pruned). Written to ``out``."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    halves = {t.name: t for t in graph.initializer if t.data_type == TensorProto.FLOAT16}
    casts = [n for n in graph.node if n.op_type == "Cast" and n.input[0] in halves]
    for cast in casts:  # the fp16 initializer itself goes with the pruning below
        weight = numpy_helper.to_array(halves[cast.input[0]]).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(weight, cast.output[0]))
        graph.node.remove(cast)
    kept = [o for o in graph.output if o.name == output]
    del graph.output[:]
    graph.output.extend(kept)
    prune_unused(graph)
    onnx.save(model, str(out))
    return out


def file_size(path: Path) -> int:
    return os.path.getsize(path)
