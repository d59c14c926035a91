"""The gRPC face's tensor codec (service/grpc_server.py) without a server: typed and raw contents, REST's words."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import BadRequest
from service.grpc_server import decode_request, encode_response
from service.protocol import grpc_service_pb2 as pb


def _request(datatype: str, shape, *, typed=None, raw=None) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m", id="r-1")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=shape)
    if typed is not None:
        getattr(tensor.contents, typed[0]).extend(typed[1])
    if raw is not None:
        request.raw_input_contents.append(raw)
    return request


def test_typed_and_raw_contents_decode_to_the_same_array():
    values = np.array([[1.5, -2.0, 3.25]], np.float32)
    typed = decode_request(_request("FP32", [1, 3], typed=("fp32_contents", values.reshape(-1).tolist())))
    raw = decode_request(_request("FP32", [1, 3], raw=values.astype("<f4").tobytes()))
    for parsed in (typed, raw):
        np.testing.assert_array_equal(parsed.inputs[0].array, values)
        assert parsed.id == "r-1" and parsed.outputs is None
    strings = decode_request(_request("BYTES", [2], raw=b"\x01\x00\x00\x00a\x02\x00\x00\x00\xc3\xbc"))
    assert strings.inputs[0].array.tolist() == [b"a", "\u00fc".encode()]


@pytest.mark.parametrize("request_, words", [
    (_request("INT8", [2], typed=("int_contents", [1, 300])), "input 'x': values out of range for INT8"),
    (_request("FP32", [1, 3], typed=("fp32_contents", [1.0, 2.0])), "input 'x': 2 values for shape [1, 3] (3 expected)"),
    (_request("FP32", [2], typed=("int_contents", [1, 2])), "input 'x': FP32 data goes in contents.fp32_contents, not int_contents"),
    (_request("FP16", [1]), "input 'x': FP16 has no typed contents; send it in raw_input_contents"),
    (_request("FP32", [2], raw=b"\x00" * 4), "input 'x': binary_data_size 4 does not match shape [2] of FP32"),
    (_request("COMPLEX", [1]), "input 'x': unknown datatype 'COMPLEX'"),
])
def test_bad_tensors_are_refused_with_rests_words(request_, words):
    with pytest.raises(BadRequest, match=words.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        decode_request(request_)


def test_the_answer_is_raw_when_the_request_was_or_an_output_is_fp16():
    class Model:
        name, version = "m", "1"

    outputs = [("p", np.array([[0.25, 0.75]], np.float32), True), ("s", np.array(["a"], dtype=object), True)]
    typed = encode_response(Model, "r-1", outputs, raw=False)
    assert not typed.raw_output_contents and list(typed.outputs[0].contents.fp32_contents) == [0.25, 0.75]
    assert list(typed.outputs[1].contents.bytes_contents) == [b"a"] and typed.id == "r-1"
    raw = encode_response(Model, None, outputs, raw=True)
    assert raw.raw_output_contents[0] == np.array([0.25, 0.75], "<f4").tobytes()
    assert raw.raw_output_contents[1] == b"\x01\x00\x00\x00a" and list(raw.outputs[0].shape) == [1, 2]
    half = encode_response(Model, None, [("h", np.array([1.0], np.float16), True)], raw=False)
    assert half.raw_output_contents and half.outputs[0].datatype == "FP16"
