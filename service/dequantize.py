"""Float graphs for devices without integer kernels: undo ONNX Runtime's dynamic INT8 quantization at load time.

`onnxruntime.quantization.quantize_dynamic` turns each float ``MatMul(x, W)`` into

    DynamicQuantizeLinear(x) -> MatMulInteger(x_q, W_q, x_zp, W_zp) -> Cast(float) -> Mul(x_scale * W_scale)

which is what makes the INT8 translator and chat model fast on a CPU. The CUDA provider has no kernel for
DynamicQuantizeLinear (and runs MatMulInteger through host copies), so on a GPU every quantized MatMul round-trips
through host memory: the H200 run measured the translator at 0.9x the same host's CPU. Here each such chain
becomes one float ``MatMul(x, (W_q - W_zp) * W_scale)``: the weights the quantizer started from, to within its
rounding, with the activations no longer rounded to 8 bits. Nothing is stored: the committed file stays INT8 and
the rewrite runs in memory when a session is opened on a device (settings.device_dequantize).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

FLOAT = onnx.TensorProto.FLOAT


@dataclass(frozen=True)
class Rewrite:
    """What `dequantize_dynamic_matmuls` changed in one graph."""

    matmuls: int  # quantized MatMul chains turned into float MatMuls
    nodes_removed: int  # nodes left without consumers afterwards (the quantizers, integer MatMuls, casts, scales)


def _single_consumer(consumers: dict[str, list[onnx.NodeProto]], name: str, op_type: str) -> onnx.NodeProto | None:
    users = consumers.get(name, [])
    return users[0] if len(users) == 1 and users[0].op_type == op_type else None


def _cast_to_float(node: onnx.NodeProto) -> bool:
    return any(a.name == "to" and a.i == FLOAT for a in node.attribute)


def _subgraph_names(graph: onnx.GraphProto) -> set[str]:
    """Every name read inside a control-flow node's subgraph (they may read the outer graph's values)."""
    names: set[str] = set()
    for node in graph.node:
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                for inner in sub.node:
                    names.update(inner.input)
                names |= _subgraph_names(sub)
    return names


def prune_unused(graph: onnx.GraphProto) -> int:
    """Drop nodes whose outputs nothing reads, and initializers no node reads; returns the nodes dropped."""
    needed = {o.name for o in graph.output} | _subgraph_names(graph)
    keep: list[onnx.NodeProto] = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            keep.append(node)
            needed.update(name for name in node.input if name)
    dropped = len(graph.node) - len(keep)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    unused = [t for t in graph.initializer if t.name not in needed]
    for tensor in unused:
        graph.initializer.remove(tensor)
    return dropped


def dequantize_dynamic_matmuls(model: onnx.ModelProto) -> Rewrite:
    """Rewrite, in place, every DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul chain whose weight, zero point
    and weight scale are initializers into one float MatMul. Chains of any other shape are left as they are."""
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    producer = {name: node for node in graph.node for name in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    replacements: dict[int, onnx.NodeProto] = {}  # id(Mul node) -> its float MatMul
    new_weights: list[onnx.TensorProto] = []
    for node in graph.node:
        if node.op_type != "MatMulInteger" or len(node.input) < 2:
            continue
        a_q, w_q = node.input[0], node.input[1]
        w_zp = node.input[3] if len(node.input) > 3 else ""
        quantizer = producer.get(a_q)
        cast = _single_consumer(consumers, node.output[0], "Cast")
        mul = cast and _single_consumer(consumers, cast.output[0], "Mul")
        if quantizer is None or quantizer.op_type != "DynamicQuantizeLinear" or w_q not in initializers \
                or (w_zp and w_zp not in initializers) or not cast or not _cast_to_float(cast) or not mul:
            continue
        scales = producer.get(mul.input[1] if mul.input[0] == cast.output[0] else mul.input[0])
        if scales is None or scales.op_type != "Mul" or quantizer.output[1] not in scales.input:
            continue
        w_scale = next((name for name in scales.input if name != quantizer.output[1]), None)
        if w_scale not in initializers:
            continue
        weight = numpy_helper.to_array(initializers[w_q]).astype(np.float32)
        if w_zp:
            weight -= numpy_helper.to_array(initializers[w_zp]).astype(np.float32)
        weight *= numpy_helper.to_array(initializers[w_scale]).astype(np.float32)
        name = f"{w_q}_dequantized"
        new_weights.append(numpy_helper.from_array(weight.astype(np.float32), name))
        replacements[id(mul)] = onnx.helper.make_node("MatMul", [quantizer.input[0], name], list(mul.output),
                                                     name=f"{node.name or w_q}_float")

    if not replacements:
        return Rewrite(0, 0)
    nodes = [replacements.get(id(node), node) for node in graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_weights)
    return Rewrite(len(replacements), prune_unused(graph))


def float_graph_bytes(path: str) -> tuple[bytes, Rewrite]:
    """The graph at ``path`` with its dynamically quantized MatMuls in float, serialized for InferenceSession."""
    model = onnx.load(path)
    rewrite = dequantize_dynamic_matmuls(model)
    return model.SerializeToString(), rewrite
