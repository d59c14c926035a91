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


SENTIMENT_WORDS = {"[PAD]": 0, "[UNK]": 1, "good": 2, "great": 3, "bad": 4, "awful": 5, "!": 6, "it": 7, "'s": 8, "movie": 9}


def tiny_tokenizer_json() -> str:
    """A WordLevel tokenizer that lowercases and splits punctuation, like the real ones."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel(SENTIMENT_WORDS, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("'s", "isolated"), pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")])
    return tokenizer.to_str()


def tiny_sentiment(vocab: int = len(SENTIMENT_WORDS)) -> onnx.ModelProto:
    """p(positive) = sigmoid(mean over the first `lengths` tokens of a per-word score): padding-proof."""
    scores = np.zeros((vocab, 1), np.float32)
    scores[2] = scores[3] = 2.0
    scores[4] = scores[5] = -2.0
    inits = [
        numpy_helper.from_array(scores, "table"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(1, np.int64), "one"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([-1], np.int64), "axis_last"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one_f"),
    ]
    nodes = [
        helper.make_node("Shape", ["input_ids"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["seq_len"], axis=0),
        helper.make_node("Range", ["zero", "seq_len", "one"], ["positions"]),
        helper.make_node("Unsqueeze", ["lengths", "axis_last"], ["lengths_col"]),
        helper.make_node("Less", ["positions", "lengths_col"], ["mask_bool"]),
        helper.make_node("Cast", ["mask_bool"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Gather", ["table", "input_ids"], ["word_scores3"], axis=0),
        helper.make_node("Squeeze", ["word_scores3", "axis_last"], ["word_scores"]),
        helper.make_node("Mul", ["word_scores", "mask"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["total"], keepdims=0),
        helper.make_node("Cast", ["lengths"], ["lengths_f"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["total", "lengths_f"], ["mean"]),
        helper.make_node("Sigmoid", ["mean"], ["p"]),
        helper.make_node("Unsqueeze", ["p", "axis_last"], ["p_col"]),
        helper.make_node("Sub", ["one_f", "p_col"], ["q_col"]),
        helper.make_node("Concat", ["q_col", "p_col"], ["probabilities"], axis=1),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        inits,
    )


def tiny_forecaster(input_name: str, window: int, horizon: int, extra_int_input: str | None = None) -> onnx.ModelProto:
    """quantiles[b, h] = last value x (0.9, 1.0, 1.1), plus 0 x the extra input (so it is a real input)."""
    inits = [
        numpy_helper.from_array(np.array([window - 1], np.int64), "last_start"),
        numpy_helper.from_array(np.array([window], np.int64), "last_end"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.ones((1, horizon, 1), np.float32), "steps"),
        numpy_helper.from_array(np.array([0.9, 1.0, 1.1], np.float32).reshape(1, 1, 3), "spread"),
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "column3"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("Slice", [input_name, "last_start", "last_end", "axis1"], ["last"]),
        helper.make_node("Reshape", ["last", "column3"], ["last3"]),
        helper.make_node("Mul", ["last3", "steps"], ["repeated"]),
        helper.make_node("Mul", ["repeated", "spread"], ["scaled"]),
    ]
    inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", window])]
    if extra_int_input:
        inputs.append(helper.make_tensor_value_info(extra_int_input, TensorProto.INT64, ["batch"]))
        nodes += [
            helper.make_node("Cast", [extra_int_input], ["extra_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["extra_f", "zero"], ["nothing"]),
            helper.make_node("Reshape", ["nothing", "column3"], ["nothing3"]),
            helper.make_node("Add", ["scaled", "nothing3"], ["quantiles"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["scaled"], ["quantiles"]))
    return _model(nodes, inputs, [helper.make_tensor_value_info("quantiles", TensorProto.FLOAT, ["batch", horizon, 3])], inits)


def quantized_mlp(features: int = 16, hidden: int = 32, seed: int = 0) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """y = relu(x @ W1 + b1) @ W2 over FP32 [batch, features]: the float graph, and onnxruntime's dynamic INT8
    quantization of it (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul, as in the committed translator)."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(seed)
    w1, b1 = rng.normal(0, 0.3, (features, hidden)).astype(np.float32), rng.normal(0, 0.1, hidden).astype(np.float32)
    w2 = rng.normal(0, 0.3, (hidden, 4)).astype(np.float32)
    model = _model(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
         helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2")])
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
        onnx.save(model, source)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        return model, onnx.load(target)


def tiny_fraud(features: int = 30) -> onnx.ModelProto:
    """probability = sigmoid(0.01 x Amount (the last column) - 1): Amount 0 -> 0.27, 100 -> 0.5, 200 -> 0.73."""
    w = np.zeros((features, 1), np.float32)
    w[-1, 0] = 0.01
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([-1.0], np.float32), "b"),
             numpy_helper.from_array(np.array([-1], np.int64), "flat")]
    return _model(
        [helper.make_node("MatMul", ["transactions", "w"], ["z0"]), helper.make_node("Add", ["z0", "b"], ["z"]),
         helper.make_node("Reshape", ["z", "flat"], ["zf"]), helper.make_node("Sigmoid", ["zf"], ["probability"])],
        [helper.make_tensor_value_info("transactions", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch"])],
        inits,
    )


def tiny_detector(size: int = 32, cell: int = 4, half: float = 8.0) -> onnx.ModelProto:
    """A detector with the real one's contract: ``images`` uint8 [N, size, size, 3] -> ``boxes`` [N, L, 4] and
    ``scores`` [N, L, 2], L = (size / cell)^2. Class 0 scores a cell by its mean red, class 1 by its mean green
    (pixels / 255), kept only at 3x3 peaks; each cell's box is its centre +- ``half`` px (adjacent cells overlap at
    IoU 0.6, so NMS at 0.5 keeps one of two tied neighbours)."""
    g = size // cell
    centres = (np.arange(g, dtype=np.float32) + 0.5) * cell
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    boxes = np.stack([cx - half, cy - half, cx + half, cy + half], -1).reshape(1, g * g, 4).astype(np.float32)
    consts = {"cell_boxes": boxes, "c255": np.array([255.0], np.float32), "rg_start": np.array([0], np.int64),
              "rg_end": np.array([2], np.int64), "rg_axis": np.array([1], np.int64),
              "flat": np.array([0, 2, g * g], np.int64), "box_tail": np.array([g * g, 4], np.int64)}
    nodes = [
        helper.make_node("Cast", ["images"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["xf", "c255"], ["x01"]),
        helper.make_node("Transpose", ["x01"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["nchw"], ["pooled"], kernel_shape=[cell, cell], strides=[cell, cell]),
        helper.make_node("Slice", ["pooled", "rg_start", "rg_end", "rg_axis"], ["heat"]),
        helper.make_node("MaxPool", ["heat"], ["local_max"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Equal", ["heat", "local_max"], ["is_peak"]),
        helper.make_node("Cast", ["is_peak"], ["peak_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["heat", "peak_f"], ["peaks"]),
        helper.make_node("Reshape", ["peaks", "flat"], ["peaks_flat"]),
        helper.make_node("Transpose", ["peaks_flat"], ["scores"], perm=[0, 2, 1]),
        helper.make_node("Shape", ["images"], ["batch"], start=0, end=1),
        helper.make_node("Concat", ["batch", "box_tail"], ["box_shape"], axis=0),
        helper.make_node("Expand", ["cell_boxes", "box_shape"], ["boxes"]),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", g * g, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", g * g, 2])],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )


FRAUD_FEATURES = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount"]
ICU_VARIABLES = [{"name": "HR", "low": 20, "high": 300, "mean": 86.0, "std": 15.0},
                 {"name": "Temp", "low": 25, "high": 45, "mean": 37.0, "std": 1.0},
                 {"name": "GCS", "low": 3, "high": 15, "mean": 11.0, "std": 4.0}]


def tiny_deterioration(variables: int = len(ICU_VARIABLES), statics: int = 9, hours: int = 48) -> onnx.ModelProto:
    """risk = sigmoid(0.1 x observed cells + 0.01 x hours + 0 x (values, deltas, statics) - 1)."""
    f = TensorProto.FLOAT
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
             (("c_obs", 0.1), ("c_hours", 0.01), ("zero", 0.0), ("minus1", -1.0))]
    # ReduceSum over every axis but the batch: flatten first
    inits.append(numpy_helper.from_array(np.array([0, -1], np.int64), "flat2"))
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    nodes = [helper.make_node("Cast", ["hours"], ["hours_f"], to=f)]
    parts = []
    for name in ("masks", "values", "deltas", "statics"):
        nodes += [helper.make_node("Reshape", [name, "flat2"], [f"{name}_2d"]),
                  helper.make_node("ReduceSum", [f"{name}_2d", "axis1"], [f"{name}_sum"], keepdims=0)]
        parts.append(f"{name}_sum")
    nodes += [helper.make_node("Mul", ["masks_sum", "c_obs"], ["a"]),
              helper.make_node("Mul", ["hours_f", "c_hours"], ["b"]),
              helper.make_node("Add", ["values_sum", "deltas_sum"], ["vd"]),
              helper.make_node("Add", ["vd", "statics_sum"], ["vds"]),
              helper.make_node("Mul", ["vds", "zero"], ["nothing"]),
              helper.make_node("Add", ["a", "b"], ["ab"]), helper.make_node("Add", ["ab", "nothing"], ["abn"]),
              helper.make_node("Add", ["abn", "minus1"], ["z"]), helper.make_node("Sigmoid", ["z"], ["risk"])]
    seq = [helper.make_tensor_value_info(n, f, ["batch", hours, variables]) for n in ("values", "masks", "deltas")]
    return _model(nodes, [*seq, helper.make_tensor_value_info("statics", f, ["batch", statics]),
                          helper.make_tensor_value_info("hours", TensorProto.INT64, ["batch"])],
                  [helper.make_tensor_value_info("risk", f, ["batch"])], inits)


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
    folder = write_model(root, "tiny-sentiment", tiny_sentiment(), task="text-sentiment", labels=["negative", "positive"],
                         tokenizer="tokenizer.json", parameters={"max_tokens": 16},
                         batching={"max_batch_size": 64, "max_queue_delay_ms": 5, "pad_inputs": {"input_ids": 0}})
    (folder / "tokenizer.json").write_text(tiny_tokenizer_json())
    write_model(root, "tiny-traffic", tiny_forecaster("history", 168, 24, "hour_of_week"), task="traffic-forecast",
                parameters={"interval": 0.8, "horizon": 24})
    write_model(root, "tiny-prices", tiny_forecaster("closes", 60, 5), task="price-forecast",
                parameters={"interval": 0.8, "horizon": 5})
    write_model(root, "tiny-fraud", tiny_fraud(), task="fraud-scoring", labels=["legitimate", "fraud"],
                parameters={"threshold": 0.6, "features": FRAUD_FEATURES},
                batching={"max_batch_size": 1024, "max_queue_delay_ms": 0})
    write_model(root, "tiny-icu", tiny_deterioration(), task="icu-deterioration", labels=["survived", "died"],
                parameters={"threshold": 0.5, "hours": 48, "variables": ICU_VARIABLES,
                            "statics": ["age", "male", "female", "height", "height_known", "icu_ccu", "icu_csru",
                                        "icu_micu", "icu_sicu"]},
                batching={"max_batch_size": 64, "max_queue_delay_ms": 0})
    write_model(root, "tiny-detector", tiny_detector(), task="object-detection", labels=["red", "green"],
                parameters={"score_threshold": 0.5, "iou_threshold": 0.5, "max_detections": 20, "max_side": 1024},
                batching={"max_batch_size": 8, "max_queue_delay_ms": 0})
    from tests.generation_models import add_generation_models

    add_generation_models(root)  # tiny-translate, tiny-chat (when torch is installed)
    return root
