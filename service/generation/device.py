"""The decode loop's key/value caches kept on the device between steps (ONNX Runtime IO binding).

Without this, every decode step hands ONNX Runtime numpy caches and gets numpy caches back: on the CUDA
provider that is a host->device and a device->host copy of every row's whole cache per token. With
``DeviceCache`` the decoder's inputs and outputs are bound (``session.io_binding()``): ``present_key`` /
``present_value`` stay ``OrtValue``s on the device and go straight back in as the next step's past; only the
logits come to the host (the strategies pick tokens there). The other per-step inputs (next token ids,
positions, the attention mask) are a few int64 per row.

Reordering the rows (beams that branch, requests that finish or are cancelled) and trimming the columns
every row pads is one tiny ONNX graph run on the same provider (``SELECT``: Gather on the batch axis, Slice on
the time axis); rows that join (admission) are left-padded and concatenated by another (``JOIN``: Pad +
Concat). So no cache crosses to the host at all. Translation's cross-attention keys/values live on the device
too (``CrossPool``): each request's encoder output is uploaded once, at admission, and the batch's cross caches
are gathered from that pool on the device when requests join or leave (``CROSS_SELECT``, ``JOIN_RIGHT``).
What still crosses per step: the next token ids, positions and attention mask (a few int64 per row) and the
logits; per change of the batch: the cross-attention mask (int64 per source column).

The same code runs on the CPU provider with device ``cpu`` (the tests compare it token for token with the
host path); the server uses it where the decoder runs on CUDA (``NEUROSERVE_GENERATION_DEVICE_CACHE``: auto).
"""

from __future__ import annotations

import base64
import logging

import numpy as np
import onnxruntime as ort

log = logging.getLogger("neuroserve.generation")

CACHE_OUTPUTS = ("present_key", "present_value")
PROVIDER_DEVICES = {"CUDAExecutionProvider": "cuda", "CPUExecutionProvider": "cpu"}

# The two cache graphs (opset 17, IR 8), serialized by build_graphs() below (which needs the onnx package;
# the serving side only loads the bytes).
SELECT = (
    "CAgSCm5ldXJvc2VydmU6yAQKMxIEZW5kcyIIQ29uc3RhbnQqIQoFdmFsdWUqFQgBEAc6CYCAgICAgICAQEIEZW5kc6ABBAorEgRh"
    "eGVzIghDb25zdGFudCoZCgV2YWx1ZSoNCAEQBzoBA0IEYXhlc6ABBAolCgNrZXkKBWluZGV4EgJnayIGR2F0aGVyKgsKBGF4aXMY"
    "AaABAgonCgV2YWx1ZQoFaW5kZXgSAmd2IgZHYXRoZXIqCwoEYXhpcxgBoAECCicKAmdrCgVzdGFydAoEZW5kcwoEYXhlcxIHb3V0"
    "X2tleSIFU2xpY2UKKQoCZ3YKBXN0YXJ0CgRlbmRzCgRheGVzEglvdXRfdmFsdWUiBVNsaWNlEgxjYWNoZV9zZWxlY3RaPQoDa2V5"
    "EjYKNAgBEjAKCBIGbGF5ZXJzCgcSBWJhdGNoCgcSBWhlYWRzCgYSBHRpbWUKChIIaGVhZF9kaW1aPwoFdmFsdWUSNgo0CAESMAoI"
    "EgZsYXllcnMKBxIFYmF0Y2gKBxIFaGVhZHMKBhIEdGltZQoKEghoZWFkX2RpbVoXCgVpbmRleBIOCgwIBxIICgYSBHJvd3NaEwoF"
    "c3RhcnQSCgoICAcSBAoCCAFiQAoHb3V0X2tleRI1CjMIARIvCggSBmxheWVycwoGEgRyb3dzCgcSBWhlYWRzCgYSBGtlcHQKChII"
    "aGVhZF9kaW1iQgoJb3V0X3ZhbHVlEjUKMwgBEi8KCBIGbGF5ZXJzCgYSBHJvd3MKBxIFaGVhZHMKBhIEa2VwdAoKEghoZWFkX2Rp"
    "bUIECgAQEQ=="
)
JOIN = (
    "CAgSCm5ldXJvc2VydmU6gQcKKRICejMiCENvbnN0YW50KhkKBXZhbHVlKg0IAxAHOgMAAABCAnozoAEECiwSAno2IghDb25zdGFu"
    "dCocCgV2YWx1ZSoQCAYQBzoGAAAAAAAAQgJ6NqABBAosCgVhX2tleRICdGEiBVNoYXBlKgoKA2VuZBgEoAECKgwKBXN0YXJ0GAOg"
    "AQIKLAoFYl9rZXkSAnRiIgVTaGFwZSoKCgNlbmQYBKABAioMCgVzdGFydBgDoAECChAKAnRhCgJ0YhIBdCIDTWF4ChAKAXQKAnRh"
    "EgJwYSIDU3ViChAKAXQKAnRiEgJwYiIDU3ViCikKAnozCgJwYQoCejYSBnBhZHNfYSIGQ29uY2F0KgsKBGF4aXMYAKABAgopCgJ6"
    "MwoCcGIKAno2EgZwYWRzX2IiBkNvbmNhdCoLCgRheGlzGACgAQIKGAoFYV9rZXkKBnBhZHNfYRICa2EiA1BhZAoaCgdhX3ZhbHVl"
    "CgZwYWRzX2ESAnZhIgNQYWQKGAoFYl9rZXkKBnBhZHNfYhICa2IiA1BhZAoaCgdiX3ZhbHVlCgZwYWRzX2ISAnZiIgNQYWQKJgoC"
    "a2EKAmtiEgdvdXRfa2V5IgZDb25jYXQqCwoEYXhpcxgBoAECCigKAnZhCgJ2YhIJb3V0X3ZhbHVlIgZDb25jYXQqCwoEYXhpcxgB"
    "oAECEgpjYWNoZV9qb2luWjkKBWFfa2V5EjAKLggBEioKCBIGbGF5ZXJzCgMSAWEKBxIFaGVhZHMKBBICdGEKChIIaGVhZF9kaW1a"
    "OwoHYV92YWx1ZRIwCi4IARIqCggSBmxheWVycwoDEgFhCgcSBWhlYWRzCgQSAnRhCgoSCGhlYWRfZGltWjkKBWJfa2V5EjAKLggB"
    "EioKCBIGbGF5ZXJzCgMSAWIKBxIFaGVhZHMKBBICdGIKChIIaGVhZF9kaW1aOwoHYl92YWx1ZRIwCi4IARIqCggSBmxheWVycwoD"
    "EgFiCgcSBWhlYWRzCgQSAnRiCgoSCGhlYWRfZGltYkAKB291dF9rZXkSNQozCAESLwoIEgZsYXllcnMKBhIEcm93cwoHEgVoZWFk"
    "cwoGEgR0aW1lCgoSCGhlYWRfZGltYkIKCW91dF92YWx1ZRI1CjMIARIvCggSBmxheWVycwoGEgRyb3dzCgcSBWhlYWRzCgYSBHRp"
    "bWUKChIIaGVhZF9kaW1CBAoAEBE="
)
CROSS_SELECT = (
    "CAgSCm5ldXJvc2VydmU6wgQKLxIGc3RhcnRzIghDb25zdGFudCobCgV2YWx1ZSoPCAEQBzoBAEIGc3RhcnRzoAEECisSBGF4ZXMi"
    "CENvbnN0YW50KhkKBXZhbHVlKg0IARAHOgEDQgRheGVzoAEECiUKA2tleQoFaW5kZXgSAmdrIgZHYXRoZXIqCwoEYXhpcxgBoAEC"
    "CicKBXZhbHVlCgVpbmRleBICZ3YiBkdhdGhlcioLCgRheGlzGAGgAQIKJwoCZ2sKBnN0YXJ0cwoDZW5kCgRheGVzEgdvdXRfa2V5"
    "IgVTbGljZQopCgJndgoGc3RhcnRzCgNlbmQKBGF4ZXMSCW91dF92YWx1ZSIFU2xpY2USDGNyb3NzX3NlbGVjdFo9CgNrZXkSNgo0"
    "CAESMAoIEgZsYXllcnMKBxIFYmF0Y2gKBxIFaGVhZHMKBhIEdGltZQoKEghoZWFkX2RpbVo/CgV2YWx1ZRI2CjQIARIwCggSBmxh"
    "eWVycwoHEgViYXRjaAoHEgVoZWFkcwoGEgR0aW1lCgoSCGhlYWRfZGltWhcKBWluZGV4Eg4KDAgHEggKBhIEcm93c1oRCgNlbmQS"
    "CgoICAcSBAoCCAFiQAoHb3V0X2tleRI1CjMIARIvCggSBmxheWVycwoGEgRyb3dzCgcSBWhlYWRzCgYSBGtlcHQKChIIaGVhZF9k"
    "aW1iQgoJb3V0X3ZhbHVlEjUKMwgBEi8KCBIGbGF5ZXJzCgYSBHJvd3MKBxIFaGVhZHMKBhIEa2VwdAoKEghoZWFkX2RpbUIECgAQ"
    "EQ=="
)
JOIN_RIGHT = (
    "CAgSCm5ldXJvc2VydmU6hwcKLhICejgiCENvbnN0YW50Kh4KBXZhbHVlKhIICBAHOggAAAAAAAAAAEICejigAQQKJxICejEiCENv"
    "bnN0YW50KhcKBXZhbHVlKgsIARAHOgEAQgJ6MaABBAosCgVhX2tleRICdGEiBVNoYXBlKgoKA2VuZBgEoAECKgwKBXN0YXJ0GAOg"
    "AQIKLAoFYl9rZXkSAnRiIgVTaGFwZSoKCgNlbmQYBKABAioMCgVzdGFydBgDoAECChAKAnRhCgJ0YhIBdCIDTWF4ChAKAXQKAnRh"
    "EgJwYSIDU3ViChAKAXQKAnRiEgJwYiIDU3ViCikKAno4CgJwYQoCejESBnBhZHNfYSIGQ29uY2F0KgsKBGF4aXMYAKABAgopCgJ6"
    "OAoCcGIKAnoxEgZwYWRzX2IiBkNvbmNhdCoLCgRheGlzGACgAQIKGAoFYV9rZXkKBnBhZHNfYRICa2EiA1BhZAoaCgdhX3ZhbHVl"
    "CgZwYWRzX2ESAnZhIgNQYWQKGAoFYl9rZXkKBnBhZHNfYhICa2IiA1BhZAoaCgdiX3ZhbHVlCgZwYWRzX2ISAnZiIgNQYWQKJgoC"
    "a2EKAmtiEgdvdXRfa2V5IgZDb25jYXQqCwoEYXhpcxgBoAECCigKAnZhCgJ2YhIJb3V0X3ZhbHVlIgZDb25jYXQqCwoEYXhpcxgB"
    "oAECEhBjYWNoZV9qb2luX3JpZ2h0WjkKBWFfa2V5EjAKLggBEioKCBIGbGF5ZXJzCgMSAWEKBxIFaGVhZHMKBBICdGEKChIIaGVh"
    "ZF9kaW1aOwoHYV92YWx1ZRIwCi4IARIqCggSBmxheWVycwoDEgFhCgcSBWhlYWRzCgQSAnRhCgoSCGhlYWRfZGltWjkKBWJfa2V5"
    "EjAKLggBEioKCBIGbGF5ZXJzCgMSAWIKBxIFaGVhZHMKBBICdGIKChIIaGVhZF9kaW1aOwoHYl92YWx1ZRIwCi4IARIqCggSBmxh"
    "eWVycwoDEgFiCgcSBWhlYWRzCgQSAnRiCgoSCGhlYWRfZGltYkAKB291dF9rZXkSNQozCAESLwoIEgZsYXllcnMKBhIEcm93cwoH"
    "EgVoZWFkcwoGEgR0aW1lCgoSCGhlYWRfZGltYkIKCW91dF92YWx1ZRI1CjMIARIvCggSBmxheWVycwoGEgRyb3dzCgcSBWhlYWRz"
    "CgYSBHRpbWUKChIIaGVhZF9kaW1CBAoAEBE="
)


def build_graphs() -> dict[str, bytes]:
    """Re-create SELECT and JOIN (needs onnx; run when changing them, paste the base64 above)."""
    import onnx
    from onnx import TensorProto, helper

    f32, i64 = TensorProto.FLOAT, TensorProto.INT64

    def cache(name, batch="batch", time="time"):
        return helper.make_tensor_value_info(name, f32, ["layers", batch, "heads", time, "head_dim"])

    def model(graph):
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="neuroserve")
        m.ir_version = 8
        onnx.checker.check_model(m, full_check=True)
        return m.SerializeToString()

    select = helper.make_graph([
        helper.make_node("Constant", [], ["ends"], value=helper.make_tensor("ends", i64, [1], [2**62])),
        helper.make_node("Constant", [], ["axes"], value=helper.make_tensor("axes", i64, [1], [3])),
        helper.make_node("Gather", ["key", "index"], ["gk"], axis=1),
        helper.make_node("Gather", ["value", "index"], ["gv"], axis=1),
        helper.make_node("Slice", ["gk", "start", "ends", "axes"], ["out_key"]),
        helper.make_node("Slice", ["gv", "start", "ends", "axes"], ["out_value"]),
    ], "cache_select", [cache("key"), cache("value"), helper.make_tensor_value_info("index", i64, ["rows"]),
                        helper.make_tensor_value_info("start", i64, [1])],
        [cache("out_key", "rows", "kept"), cache("out_value", "rows", "kept")])
    join = helper.make_graph([
        helper.make_node("Constant", [], ["z3"], value=helper.make_tensor("z3", i64, [3], [0, 0, 0])),
        helper.make_node("Constant", [], ["z6"], value=helper.make_tensor("z6", i64, [6], [0] * 6)),
        helper.make_node("Shape", ["a_key"], ["ta"], start=3, end=4),
        helper.make_node("Shape", ["b_key"], ["tb"], start=3, end=4),
        helper.make_node("Max", ["ta", "tb"], ["t"]),
        helper.make_node("Sub", ["t", "ta"], ["pa"]),
        helper.make_node("Sub", ["t", "tb"], ["pb"]),
        helper.make_node("Concat", ["z3", "pa", "z6"], ["pads_a"], axis=0),
        helper.make_node("Concat", ["z3", "pb", "z6"], ["pads_b"], axis=0),
        helper.make_node("Pad", ["a_key", "pads_a"], ["ka"]),
        helper.make_node("Pad", ["a_value", "pads_a"], ["va"]),
        helper.make_node("Pad", ["b_key", "pads_b"], ["kb"]),
        helper.make_node("Pad", ["b_value", "pads_b"], ["vb"]),
        helper.make_node("Concat", ["ka", "kb"], ["out_key"], axis=1),
        helper.make_node("Concat", ["va", "vb"], ["out_value"], axis=1),
    ], "cache_join", [cache("a_key", "a", "ta"), cache("a_value", "a", "ta"), cache("b_key", "b", "tb"),
                      cache("b_value", "b", "tb")], [cache("out_key", "rows", "time"), cache("out_value", "rows", "time")])
    cross_select = helper.make_graph([
        helper.make_node("Constant", [], ["starts"], value=helper.make_tensor("starts", i64, [1], [0])),
        helper.make_node("Constant", [], ["axes"], value=helper.make_tensor("axes", i64, [1], [3])),
        helper.make_node("Gather", ["key", "index"], ["gk"], axis=1),
        helper.make_node("Gather", ["value", "index"], ["gv"], axis=1),
        helper.make_node("Slice", ["gk", "starts", "end", "axes"], ["out_key"]),
        helper.make_node("Slice", ["gv", "starts", "end", "axes"], ["out_value"]),
    ], "cross_select", [cache("key"), cache("value"), helper.make_tensor_value_info("index", i64, ["rows"]),
                        helper.make_tensor_value_info("end", i64, [1])],
        [cache("out_key", "rows", "kept"), cache("out_value", "rows", "kept")])
    join_right = helper.make_graph([
        helper.make_node("Constant", [], ["z8"], value=helper.make_tensor("z8", i64, [8], [0] * 8)),
        helper.make_node("Constant", [], ["z1"], value=helper.make_tensor("z1", i64, [1], [0])),
        helper.make_node("Shape", ["a_key"], ["ta"], start=3, end=4),
        helper.make_node("Shape", ["b_key"], ["tb"], start=3, end=4),
        helper.make_node("Max", ["ta", "tb"], ["t"]),
        helper.make_node("Sub", ["t", "ta"], ["pa"]),
        helper.make_node("Sub", ["t", "tb"], ["pb"]),
        helper.make_node("Concat", ["z8", "pa", "z1"], ["pads_a"], axis=0),
        helper.make_node("Concat", ["z8", "pb", "z1"], ["pads_b"], axis=0),
        helper.make_node("Pad", ["a_key", "pads_a"], ["ka"]),
        helper.make_node("Pad", ["a_value", "pads_a"], ["va"]),
        helper.make_node("Pad", ["b_key", "pads_b"], ["kb"]),
        helper.make_node("Pad", ["b_value", "pads_b"], ["vb"]),
        helper.make_node("Concat", ["ka", "kb"], ["out_key"], axis=1),
        helper.make_node("Concat", ["va", "vb"], ["out_value"], axis=1),
    ], "cache_join_right", [cache("a_key", "a", "ta"), cache("a_value", "a", "ta"), cache("b_key", "b", "tb"),
                            cache("b_value", "b", "tb")], [cache("out_key", "rows", "time"), cache("out_value", "rows", "time")])
    return {"SELECT": model(select), "JOIN": model(join), "CROSS_SELECT": model(cross_select),
            "JOIN_RIGHT": model(join_right)}


def is_device(value) -> bool:
    return isinstance(value, ort.OrtValue)


class DeviceCache:
    """IO binding for one decoder session: caches stay ``OrtValue``s on ``device`` ('cuda' or 'cpu')."""

    def __init__(self, session: ort.InferenceSession, device: str | None = None, device_id: int | None = None):
        providers = session.get_providers()
        options = session.get_provider_options()
        self.session = session
        self.device = device or PROVIDER_DEVICES.get(providers[0], "cpu")
        if device_id is None:
            device_id = int(options.get(providers[0], {}).get("device_id", 0) or 0)
        self.device_id = device_id
        self.output_names = [o.name for o in session.get_outputs()]
        self._select = self._graph_session(SELECT, providers, options)
        self._join = self._graph_session(JOIN, providers, options)
        self._cross_select = self._graph_session(CROSS_SELECT, providers, options)
        self._join_right = self._graph_session(JOIN_RIGHT, providers, options)
        self.copies = {"select": 0, "join": 0, "upload": 0, "cross_select": 0, "join_right": 0}  # graph runs, uploads

    def _graph_session(self, chunks: tuple[str, ...], providers: list[str], options: dict) -> ort.InferenceSession:
        """A cache graph on the decoder's providers, with its provider options (or just the device id, should
        this onnxruntime refuse some option that it reported)."""
        sess_options = ort.SessionOptions()
        sess_options.log_severity_level = 3
        sess_options.intra_op_num_threads = 1
        graph = base64.b64decode("".join(chunks))
        try:
            return ort.InferenceSession(graph, sess_options=sess_options, providers=providers,
                                        provider_options=[options.get(p, {}) for p in providers])
        except Exception as exc:  # noqa: BLE001
            log.warning("cache graph session with the decoder's provider options failed (%s); retrying with the device id",
                        exc)
            fallback = [{"device_id": str(self.device_id)} if p == "CUDAExecutionProvider" else {} for p in providers]
            return ort.InferenceSession(graph, sess_options=sess_options, providers=providers, provider_options=fallback)

    def self_test(self) -> None:
        """Both cache graphs once on this provider, against numpy (at load: a provider that cannot run them fails here)."""
        a = np.arange(2 * 3 * 1 * 2 * 2, dtype=np.float32).reshape(2, 3, 1, 2, 2)
        b = -np.arange(2 * 1 * 1 * 3 * 2, dtype=np.float32).reshape(2, 1, 1, 3, 2)
        key, value = self.join((self.upload(a), self.upload(a)), (b, 2 * b))
        padded = np.concatenate([np.zeros((2, 3, 1, 1, 2), np.float32), a], axis=3)
        if not (np.array_equal(key.numpy(), np.concatenate([padded, b], axis=1))
                and np.array_equal(value.numpy(), np.concatenate([padded, 2 * b], axis=1))):
            raise RuntimeError("the cache join graph gave a wrong answer")
        key, _ = self.select(key, value, np.array([3, 0, 0]), 1)
        if not np.array_equal(key.numpy(), np.concatenate([padded, b], axis=1)[:, [3, 0, 0], :, 1:]):
            raise RuntimeError("the cache select graph gave a wrong answer")

    def upload(self, array: np.ndarray) -> ort.OrtValue:
        self.copies["upload"] += 1
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.device, self.device_id)

    def _run(self, session: ort.InferenceSession, feeds: dict, names: list[str], on_device: set[str]) -> dict:
        binding = session.io_binding()
        held = []  # host inputs stay referenced until the run is over
        for name, value in feeds.items():
            if is_device(value):
                binding.bind_ortvalue_input(name, value)
            else:
                held.append(np.ascontiguousarray(value))
                binding.bind_cpu_input(name, held[-1])
        for name in names:
            if name in on_device:
                binding.bind_output(name, self.device, self.device_id)
            else:
                binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        values = binding.get_outputs()
        del held
        return {name: value if name in on_device else value.numpy() for name, value in zip(names, values)}

    def decode(self, feeds: dict) -> dict:
        """One decoder run: the caches out stay on the device, everything else comes to the host."""
        return self._run(self.session, feeds, self.output_names, set(CACHE_OUTPUTS))

    def select(self, key, value, index: np.ndarray, start: int) -> tuple[ort.OrtValue, ort.OrtValue]:
        """Rows ``index`` (repeats allowed) of both caches, from time column ``start`` on."""
        self.copies["select"] += 1
        out = self._run(self._select, {"key": key, "value": value, "index": np.asarray(index, np.int64),
                                       "start": np.array([start], np.int64)}, ["out_key", "out_value"],
                        {"out_key", "out_value"})
        return out["out_key"], out["out_value"]

    def join(self, a: tuple, b: tuple) -> tuple[ort.OrtValue, ort.OrtValue]:
        """The rows of b after those of a, both left-padded (zeros) to the longer time axis."""
        self.copies["join"] += 1
        out = self._run(self._join, {"a_key": a[0], "a_value": a[1], "b_key": b[0], "b_value": b[1]},
                        ["out_key", "out_value"], {"out_key", "out_value"})
        return out["out_key"], out["out_value"]


    def cross_select(self, key, value, index: np.ndarray, end: int) -> tuple[ort.OrtValue, ort.OrtValue]:
        """Rows ``index`` of both cross caches, time columns [0, end) (right padding beyond each source)."""
        self.copies["cross_select"] += 1
        out = self._run(self._cross_select, {"key": key, "value": value, "index": np.asarray(index, np.int64),
                                             "end": np.array([end], np.int64)}, ["out_key", "out_value"],
                        {"out_key", "out_value"})
        return out["out_key"], out["out_value"]

    def join_right(self, a: tuple, b: tuple) -> tuple[ort.OrtValue, ort.OrtValue]:
        """The rows of b after those of a, both right-padded (zeros) to the longer time axis."""
        self.copies["join_right"] += 1
        out = self._run(self._join_right, {"a_key": a[0], "a_value": a[1], "b_key": b[0], "b_value": b[1]},
                        ["out_key", "out_value"], {"out_key", "out_value"})
        return out["out_key"], out["out_value"]


class CrossPool:
    """The encoder's keys/values of every running translation request, on the device: one row per request,
    right-padded with zeros to the longest source (as the host path pads them). Each request's row is uploaded
    once, at admission; the batch's cross caches (one row per beam, padded to the longest running source) are
    gathered from it on the device whenever requests join or leave. Rows of finished requests are dropped
    when they outnumber the live ones."""

    def __init__(self, device: DeviceCache):
        self.device = device
        self.key = self.value = None
        self.lengths: list[int] = []  # source length of each pool row
        self.slots: dict[int, int] = {}  # id(job) -> pool row

    def add(self, jobs: list, key: np.ndarray, value: np.ndarray, lengths: list[int]) -> None:
        """The encoder's output for newly admitted jobs ([L, k, H, S, dh], right-padded): zeros past each source."""
        key, value = key.copy(), value.copy()
        for i, n in enumerate(lengths):
            key[:, i, :, n:] = 0
            value[:, i, :, n:] = 0
        if self.key is None:
            self.key, self.value = self.device.upload(key), self.device.upload(value)
        else:
            self.key, self.value = self.device.join_right((self.key, self.value), (key, value))
        for job, n in zip(jobs, lengths):
            self.slots[id(job)] = len(self.lengths)
            self.lengths.append(n)

    def batch(self, runs: list) -> tuple[ort.OrtValue, ort.OrtValue]:
        """Cross keys/values for the running requests, each repeated for its rows, padded to the longest."""
        if len(self.lengths) > 2 * len(runs) + 16:
            self._compact(runs)
        index = np.concatenate([np.full(run.rows, self.slots[id(run.job)], np.int64) for run in runs])
        end = max(self.lengths[self.slots[id(run.job)]] for run in runs)
        return self.device.cross_select(self.key, self.value, index, end)

    def _compact(self, runs: list) -> None:
        live = [self.slots[id(run.job)] for run in runs]
        end = max(self.lengths[slot] for slot in live)
        self.key, self.value = self.device.cross_select(self.key, self.value, np.asarray(live, np.int64), end)
        self.lengths = [self.lengths[slot] for slot in live]
        self.slots = {id(run.job): i for i, run in enumerate(runs)}


def to_host(value) -> np.ndarray:
    return value.numpy() if is_device(value) else value
