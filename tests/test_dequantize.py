"""service/dequantize.py: INT8 graphs rewritten to float MatMuls for devices without integer kernels (CUDA)."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from service.dequantize import dequantize_dynamic_matmuls, float_graph_bytes
from service.runtime import OnnxRuntimeSession
from service.manifest import Manifest
from service.settings import Settings
from tests.conftest import ROOT
from tests.onnx_models import add_sub, quantized_mlp, write_model

INTEGER_OPS = {"DynamicQuantizeLinear", "MatMulInteger"}


def _ops(model: onnx.ModelProto) -> collections.Counter:
    return collections.Counter(node.op_type for node in model.graph.node)


def _run(model: onnx.ModelProto | bytes, feeds: dict) -> np.ndarray:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_each_quantized_matmul_becomes_one_float_matmul_and_the_quantizers_go():
    float_model, int8_model = quantized_mlp()
    assert INTEGER_OPS <= set(_ops(int8_model))
    rewrite = dequantize_dynamic_matmuls(int8_model)
    assert rewrite.matmuls == 2 and rewrite.nodes_removed >= 2 * 4  # quantizer, MatMulInteger, Cast, scale Mul each
    ops = _ops(int8_model)
    assert not INTEGER_OPS & set(ops) and ops["MatMul"] == 2 and "Cast" not in ops
    onnx.checker.check_model(int8_model, full_check=True)
    assert not [t for t in int8_model.graph.initializer if t.data_type == onnx.TensorProto.INT8]  # no dead weights


def test_the_float_graph_answers_like_the_model_before_quantization_within_the_weight_rounding():
    float_model, int8_model = quantized_mlp()
    x = np.random.default_rng(1).normal(size=(64, 16)).astype(np.float32)
    reference, quantized = _run(float_model, {"x": x}), _run(int8_model, {"x": x})
    dequantize_dynamic_matmuls(int8_model)
    rewritten = _run(int8_model, {"x": x})
    scale = np.abs(reference).max()
    # only the weights are rounded now (not the activations too): closer to the float model than the INT8 graph was
    assert np.abs(rewritten - reference).max() < 0.02 * scale
    assert np.abs(rewritten - reference).mean() < np.abs(quantized - reference).mean()


def test_a_graph_without_quantized_matmuls_is_left_alone():
    model = add_sub()
    before = model.SerializeToString()
    assert dequantize_dynamic_matmuls(model).matmuls == 0 and model.SerializeToString() == before


def _session(path, **settings) -> OnnxRuntimeSession:
    manifest = Manifest.model_validate({"name": "mlp", "task": "tensor"})
    return OnnxRuntimeSession.load(path, manifest, Settings(**settings))


def test_sessions_open_the_float_graph_only_when_the_setting_says(tmp_path):
    _, int8_model = quantized_mlp()
    folder = write_model(tmp_path, "mlp", int8_model)
    path = folder / "1" / "model.onnx"
    x = np.ones((3, 16), np.float32)
    cpu = _session(path)  # auto on the CPU: the INT8 kernels are the fast ones there
    assert cpu.dequantized_matmuls == 0
    forced = _session(path, device_dequantize="on")
    assert forced.dequantized_matmuls == 2
    assert np.allclose(forced.run({"x": x})["y"], cpu.run({"x": x})["y"], atol=0.05)
    assert _session(path, device_dequantize="off").dequantized_matmuls == 0


def test_the_committed_translator_rewrites_completely():
    path = ROOT / "models" / "translate-en-de" / "1" / "decoder.onnx"
    if not path.exists():
        pytest.skip("models/translate-en-de is not in the repository")
    data, rewrite = float_graph_bytes(str(path))
    assert rewrite.matmuls == 33
    assert not INTEGER_OPS & set(_ops(onnx.load_from_string(data)))
