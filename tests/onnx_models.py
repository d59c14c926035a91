"""Tiny ONNX models built with onnx.helper, and a helper that lays them out as a model repository."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]

ONNX_TYPES = {
    "BOOL": TensorProto.BOOL, "UINT8": TensorProto.UINT8, "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32, "UINT64": TensorProto.UINT64, "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16, "INT32": TensorProto.INT32, "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16, "FP32": TensorProto.FLOAT, "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=OPSET)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def add_sub() -> onnx.ModelProto:
    """sum = a + b, diff = a - b over FP32 [batch, 4]."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 4])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 4])
    return _model(
        [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Sub", ["a", "b"], ["diff"])],
        [a, b],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("diff", TensorProto.FLOAT, ["batch", 4])],
    )


def identity(datatype: str) -> onnx.ModelProto:
    """OUTPUT = INPUT, [batch, n] of any datatype."""
    t = ONNX_TYPES[datatype]
    return _model(
        [helper.make_node("Identity", ["INPUT"], ["OUTPUT"])],
        [helper.make_tensor_value_info("INPUT", t, ["batch", "n"])],
        [helper.make_tensor_value_info("OUTPUT", t, ["batch", "n"])],
    )


def sequence_sum() -> onnx.ModelProto:
    """total = sum(ids, axis=1): padding with 0 must not change a row's answer."""
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    return _model(
        [helper.make_node("ReduceSum", ["ids", "axes"], ["total"], keepdims=0)],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("total", TensorProto.INT64, ["batch"])],
        [axes],
    )


def lookup() -> onnx.ModelProto:
    """value = table[index]: an index out of range makes ORT raise at run time."""
    table = numpy_helper.from_array(np.arange(5, dtype=np.float32) * 10, "table")
    return _model(
        [helper.make_node("Gather", ["table", "index"], ["value"], axis=0)],
        [helper.make_tensor_value_info("index", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("value", TensorProto.FLOAT, ["batch"])],
        [table],
    )


def small_cnn(size: int = 32, channels: int = 3, classes: int = 10, width: int = 16, seed: int = 0) -> onnx.ModelProto:
    """uint8 NHWC images -> softmax probabilities; a stand-in for a trained image classifier."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.standard_normal((width, channels, 3, 3)) * 0.1).astype(np.float32), "w1"),
        numpy_helper.from_array(np.zeros(width, np.float32), "b1"),
        numpy_helper.from_array((rng.standard_normal((width * 2, width, 3, 3)) * 0.1).astype(np.float32), "w2"),
        numpy_helper.from_array(np.zeros(width * 2, np.float32), "b2"),
        numpy_helper.from_array((rng.standard_normal((width * 2, classes)) * 0.1).astype(np.float32), "w3"),
        numpy_helper.from_array(np.zeros(classes, np.float32), "b3"),
        numpy_helper.from_array(np.array(1 / 255, np.float32), "scale"),
    ]
    nodes = [
        helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["f", "scale"], ["fs"]),
        helper.make_node("Transpose", ["fs"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w3", "b3"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", size, size, channels])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )


def tiny_tumor(size: int = 64) -> onnx.ModelProto:
    """uint8 [batch,64,64,1] -> tumor_probability = mean brightness, subtype_probabilities = softmax of it."""
    inits = [
        numpy_helper.from_array(np.array(1 / 255, np.float32), "scale"),
        numpy_helper.from_array(np.array([-1, 1], dtype=np.int64), "column"),
        numpy_helper.from_array(np.array([[-4.0, 4.0, 0.0, 1.0]], np.float32), "w"),
    ]
    nodes = [
        helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["f", "scale"], ["fs"]),
        helper.make_node("ReduceMean", ["fs"], ["tumor_probability"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Reshape", ["tumor_probability", "column"], ["col"]),
        helper.make_node("MatMul", ["col", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["subtype_probabilities"], axis=1),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", size, size, 1])],
        [helper.make_tensor_value_info("tumor_probability", TensorProto.FLOAT, ["batch"]),
         helper.make_tensor_value_info("subtype_probabilities", TensorProto.FLOAT, ["batch", 4])],
        inits,
    )


def write_model(root: Path, name: str, model: onnx.ModelProto | bytes, *, task: str = "tensor",
                versions=("1",), batching: dict | None = None, **manifest) -> Path:
    folder = root / name
    for version in versions:
        (folder / version).mkdir(parents=True, exist_ok=True)
        data = model if isinstance(model, bytes) else model.SerializeToString()
        (folder / version / "model.onnx").write_bytes(data)
    body = {"name": name, "task": task, **manifest}
    if batching is not None:
        body["batching"] = batching
    (folder / "manifest.json").write_text(json.dumps(body, indent=2))
    return folder


CIFAR_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def build_repository(root: Path) -> Path:
    """The repository most tests serve: one model per behaviour under test."""
    root.mkdir(parents=True, exist_ok=True)
    write_model(root, "add-sub", add_sub(), batching={"max_batch_size": 16, "max_queue_delay_ms": 5})
    write_model(root, "sequence-sum", sequence_sum(),
                batching={"max_batch_size": 32, "max_queue_delay_ms": 20, "pad_inputs": {"ids": 0}})
    write_model(root, "lookup", lookup(), batching={"max_batch_size": 8, "max_queue_delay_ms": 0})
    for datatype in ONNX_TYPES:
        write_model(root, f"identity-{datatype.lower()}", identity(datatype),
                    batching={"max_batch_size": 8, "max_queue_delay_ms": 0})
    write_model(root, "tiny-cnn", small_cnn(), task="image-classification", labels=CIFAR_LABELS,
                preprocessing={"layout": "NHWC", "dtype": "uint8", "height": 32, "width": 32, "channels": 3},
                batching={"max_batch_size": 32, "max_queue_delay_ms": 2})
    write_model(root, "tiny-tumor", tiny_tumor(), task="tumor-detection", labels=["none", "glioma", "meningioma", "pituitary"],
                preprocessing={"layout": "NHWC", "dtype": "uint8", "height": 64, "width": 64, "channels": 1,
                               "pad_to_square": True, "resize": "lanczos"},
                parameters={"threshold": 0.5}, batching={"max_batch_size": 4, "max_queue_delay_ms": 0})
    return root
