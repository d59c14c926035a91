"""Open Inference Protocol tensor codecs: JSON (nested/flat) and binary, every datatype, and bad input."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from service.codecs import INFER_REQUEST_SCHEMA, encode_infer_response, parse_infer_request
from service.errors import BadRequest
from service.runtime import DATATYPE_TO_NUMPY


def _json(body: dict) -> bytes:
    return orjson.dumps(body)


def _one_input(**tensor) -> bytes:
    return _json({"inputs": [{"name": "x", **tensor}]})


def test_nested_and_flat_json_give_the_same_array():
    flat = parse_infer_request(_one_input(datatype="FP32", shape=[2, 2], data=[1, 2, 3, 4]), None)
    nested = parse_infer_request(_one_input(datatype="FP32", shape=[2, 2], data=[[1, 2], [3, 4]]), None)
    assert flat.inputs[0].array.dtype == np.float32
    np.testing.assert_array_equal(flat.inputs[0].array, nested.inputs[0].array)
    assert flat.inputs[0].array.shape == (2, 2)


@pytest.mark.parametrize("datatype,data", [
    ("BOOL", [True, False]), ("UINT8", [0, 255]), ("UINT16", [0, 65535]), ("UINT32", [0, 2**32 - 1]),
    ("UINT64", [0, 2**63]), ("INT8", [-128, 127]), ("INT16", [-1, 1]), ("INT32", [-(2**31), 2**31 - 1]),
    ("INT64", [-(2**63), 2**63 - 1]), ("FP16", [0.5, -2.0]), ("FP32", [1.5, -1e30]), ("FP64", [1e300, -0.25]),
    ("BYTES", ["héllo", ""]),
])
def test_every_datatype_round_trips_in_json_and_binary(datatype, data):
    parsed = parse_infer_request(_one_input(datatype=datatype, shape=[2], data=data), None)
    array = parsed.inputs[0].array
    assert array.dtype == DATATYPE_TO_NUMPY[datatype]
    body, header_len = encode_infer_response("m", "1", None, [("y", array, True)])
    header = orjson.loads(body[:header_len])
    blob = body[header_len:]
    # The binary response, fed back as a binary request, gives the same tensor.
    request_header = _json({"inputs": [{"name": "x", "datatype": datatype, "shape": [2],
                                        "parameters": {"binary_data_size": len(blob)}}]})
    again = parse_infer_request(request_header + blob, str(len(request_header)))
    np.testing.assert_array_equal(again.inputs[0].array, array)
    assert header["outputs"][0]["datatype"] == datatype
    json_body, none = encode_infer_response("m", "1", "rid", [("y", array, False)])
    assert none is None
    out = orjson.loads(json_body)
    assert out["id"] == "rid"
    expected = data if datatype != "FP16" else [float(np.float16(v)) for v in data]
    assert out["outputs"][0]["data"] == expected


def test_bytes_binary_layout_is_length_prefixed():
    blob = struct.pack("<I", 3) + b"abc" + struct.pack("<I", 0)
    header = _json({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(blob)}}]})
    parsed = parse_infer_request(header + blob, str(len(header)))
    assert list(parsed.inputs[0].array) == [b"abc", b""]


def test_requested_outputs_and_binary_flags():
    parsed = parse_infer_request(_json({
        "id": "42", "parameters": {"binary_data_output": True},
        "inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [1]}],
        "outputs": [{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}],
    }), None)
    assert parsed.id == "42"
    assert [(o.name, o.binary) for o in parsed.outputs] == [("a", True), ("b", False)]


@pytest.mark.parametrize("body,header,fragment", [
    (b"{not json", None, "not valid JSON"),
    (b"[1,2]", None, "JSON object"),
    (_json({"inputs": []}), None, "non-empty list"),
    (_json({"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}), None, "'name'"),
    (_one_input(datatype="FLOAT", shape=[1], data=[1]), None, "unknown datatype"),
    (_one_input(datatype="FP32", shape=[-1], data=[1]), None, "non-negative"),
    (_one_input(datatype="FP32", shape="2", data=[1]), None, "'shape'"),
    (_one_input(datatype="FP32", shape=[3], data=[1, 2]), None, "3 expected"),
    (_one_input(datatype="FP32", shape=[2], data=[[1], [2, 3]]), None, "rectangular"),
    (_one_input(datatype="FP32", shape=[1], data=["a"]), None, "numbers"),
    (_one_input(datatype="INT32", shape=[1], data=[1.5]), None, "integers"),
    (_one_input(datatype="INT8", shape=[1], data=[300]), None, "out of range"),
    (_one_input(datatype="UINT8", shape=[1], data=[-1]), None, "out of range"),
    (_one_input(datatype="BOOL", shape=[1], data=[1]), None, "true/false"),
    (_one_input(datatype="BYTES", shape=[1], data=[1]), None, "strings"),
    (_one_input(datatype="FP32", shape=[1]), None, "'data' is missing"),
    (_one_input(datatype="FP32", shape=[1], parameters={"binary_data_size": 4}), "abc", "must be an integer"),
    (_one_input(datatype="FP32", shape=[2], parameters={"binary_data_size": 8}) + b"\0" * 4, None, "not valid JSON"),
    (_json({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]},
                       {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}), None, "twice"),
    (_json({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "outputs": "y"}), None, "'outputs'"),
    (_json({"id": 5, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}), None, "'id'"),
])
def test_malformed_requests_are_refused_with_a_reason(body, header, fragment):
    with pytest.raises(BadRequest) as caught:
        parse_infer_request(body, header)
    assert fragment in caught.value.message


def test_a_binary_header_that_lies_about_sizes_is_refused():
    header = _json({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]})
    with pytest.raises(BadRequest, match="runs past the end"):
        parse_infer_request(header + b"\0" * 4, str(len(header)))
    with pytest.raises(BadRequest, match="outside the body"):
        parse_infer_request(header, str(len(header) + 100))
    with pytest.raises(BadRequest, match="after the last input"):
        parse_infer_request(header + b"\0" * 12, str(len(header)))
    wrong_size = _json({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 4}}]})
    with pytest.raises(BadRequest, match="does not match shape"):
        parse_infer_request(wrong_size + b"\0" * 4, str(len(wrong_size)))
    lying_bytes = _json({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}]})
    with pytest.raises(BadRequest, match="longer than the data left"):
        parse_infer_request(lying_bytes + struct.pack("<I", 99) + b"ab", str(len(lying_bytes)))


def test_deep_json_nesting_is_a_clean_error():
    deep = b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(BadRequest):
        parse_infer_request(deep, None)
    nested = _one_input(datatype="BYTES", shape=[1], data=[[[[[[[[[[["a"]]]]]]]]]]])
    with pytest.raises(BadRequest, match="nested deeper"):
        parse_infer_request(nested, None)


def test_pretty_printed_json_with_a_long_array_parses():
    """orjson 3.12-3.13 reports 'failed to allocate memory' for this valid document (a newline, then an array of
    ~1,600 or more small numbers): the standard library reads it, held to orjson's rules."""
    from service.codecs import parse_json_object

    pretty = ('{\n  "inputs": [{"name": "x", "shape": [3072], "datatype": "UINT8",\n   "data": ['
              + ",".join(["0"] * 3072) + "]}]}").encode()
    assert parse_json_object(pretty)["inputs"][0]["data"] == [0] * 3072
    for bad in (b"[NaN,", b'["\\ud800",', b"[123456789012345678901234567890,"):  # what orjson refuses stays refused
        with pytest.raises(BadRequest, match="not valid JSON"):
            parse_json_object(pretty.replace(b"[0,", bad, 1))


def test_the_openapi_request_schema_agrees_with_the_parser():
    """INFER_REQUEST_SCHEMA (docs/openapi.json) accepts what the parser accepts and refuses the structural errors it
    refuses; value-level checks (sizes against shape, ranges per datatype) stay the parser's alone, as does a shape of
    1.0 (an "integer" to JSON Schema)."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(INFER_REQUEST_SCHEMA)
    Draft202012Validator.check_schema(INFER_REQUEST_SCHEMA)
    accepted = [
        {"inputs": [{"name": "x", "datatype": datatype, "shape": [1], "data": [True if datatype == "BOOL" else "a"
                                                                              if datatype == "BYTES" else 1]}]}
        for datatype in DATATYPE_TO_NUMPY
    ] + [{"id": "r1", "parameters": {"binary_data_output": True},
          "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 1], "data": [[1], [2]]}],
          "outputs": [{"name": "y", "parameters": {"binary_data": False}}]},
         {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": 1.5}]},
         {"id": None, "parameters": None, "outputs": None,
          "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1], "parameters": None}]}]
    for body in accepted:
        parse_infer_request(orjson.dumps(body), None)
        assert validator.is_valid(body), body
    refused = [{}, {"inputs": []}, {"id": 5, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]},
               {"inputs": [{"name": "", "datatype": "FP32", "shape": [1], "data": [1]}]},
               {"inputs": [{"name": "x", "datatype": "FLOAT", "shape": [1], "data": [1]}]},
               {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]},
               {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1] * 9, "data": [1]}]},
               {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "outputs": "y"},
               {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "outputs": [{"name": ""}]},
               {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "parameters": []},
               {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1], "parameters": 0}]},
               {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
                "parameters": {"binary_data_output": 1}},
               {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
                "outputs": [{"name": "y", "parameters": {"binary_data": "yes"}}]}]
    for body in refused:
        with pytest.raises(BadRequest):
            parse_infer_request(orjson.dumps(body), None)
        assert not validator.is_valid(body), body
