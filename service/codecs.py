"""Open Inference Protocol tensors <-> numpy, in JSON and with the binary tensor data extension.

Request body: a JSON header, optionally followed by raw tensor bytes (its length in the
``Inference-Header-Content-Length`` header; each binary input says ``binary_data_size``).
BYTES tensors in binary form are a 4-byte little-endian length before each element.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from service.errors import BadRequest
from service.manifest import DATATYPES
from service.runtime import DATATYPE_TO_NUMPY

HEADER_LENGTH = "inference-header-content-length"
MAX_DIMS = 8

def _parameters_schema(**known: dict) -> dict[str, Any]:
    return {"type": ["object", "null"], "description": "free-form apart from the keys listed", "properties": known}


# JSON schema of the request header ``parse_infer_request`` accepts (for the OpenAPI document): what it refuses with
# a 400 that a schema can say, it says (required fields, datatypes, non-negative shapes of at most MAX_DIMS, the
# parameters it reads). The parser is stricter where JSON Schema cannot follow: a shape of 1.0 is an "integer" there.
INFER_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["inputs"],
    "properties": {
        "id": {"type": ["string", "null"]},
        "parameters": _parameters_schema(binary_data_output={"type": "boolean"}),
        "inputs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "shape", "datatype"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "shape": {"type": "array", "maxItems": MAX_DIMS, "items": {"type": "integer", "minimum": 0}},
                "datatype": {"type": "string", "enum": list(DATATYPES)},
                "parameters": _parameters_schema(binary_data_size={"type": "integer", "minimum": 0}),
                "data": {"description": "the values in row-major order, a flat or nested array (or one value for a "
                                        "one-element tensor); absent when parameters.binary_data_size places them "
                                        "in the binary part"}}}},
        "outputs": {"type": ["array", "null"], "items": {
            "type": "object", "required": ["name"],
            "properties": {"name": {"type": "string", "minLength": 1},
                           "parameters": _parameters_schema(binary_data={"type": "boolean"})}}},
    },
}


@dataclass
class InferInput:
    name: str
    datatype: str
    shape: list[int]
    array: np.ndarray


@dataclass
class RequestedOutput:
    name: str
    binary: bool


@dataclass
class InferRequest:
    id: str | None
    inputs: list[InferInput]
    outputs: list[RequestedOutput] | None  # None: every output
    binary_output_default: bool
    parameters: dict[str, Any] = field(default_factory=dict)


def _fail(message: str) -> BadRequest:
    return BadRequest(message)


def _shape(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or len(value) > MAX_DIMS or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        raise _fail(f"{where}: 'shape' must be a list of at most {MAX_DIMS} non-negative integers")
    return value


def _elements(shape: list[int]) -> int:
    return math.prod(shape)


def _json_array(data: Any, datatype: str, shape: list[int], where: str) -> np.ndarray:
    """Nested or flat JSON data to an array of exactly `shape`, refusing silent conversions."""
    if not isinstance(data, list):
        data = [data]
    expected = _elements(shape)
    if datatype == "BYTES":
        flat = _flatten(data, where)
        if len(flat) != expected:
            raise _fail(f"{where}: {len(flat)} values for shape {shape} ({expected} expected)")
        out = np.empty(expected, dtype=object)
        for i, value in enumerate(flat):
            if isinstance(value, str):
                out[i] = value.encode("utf-8")
            else:
                raise _fail(f"{where}: BYTES data must be strings")
        return out.reshape(shape)
    try:
        raw = np.asarray(data)
    except ValueError as exc:  # ragged nesting
        raise _fail(f"{where}: data is not a rectangular array: {exc}") from None
    target = DATATYPE_TO_NUMPY[datatype]
    if target.kind == "u" and raw.dtype.kind in "fO":
        raw = _big_unsigned(data, target, where)  # above 2**63 numpy infers float or object
    if raw.size != expected:
        raise _fail(f"{where}: {raw.size} values for shape {shape} ({expected} expected)")
    if raw.size and raw.dtype == object:
        raise _fail(f"{where}: data must hold only {datatype} values")
    kind = raw.dtype.kind if raw.size else None
    if kind is not None:
        if datatype == "BOOL" and kind != "b":
            raise _fail(f"{where}: BOOL data must be true/false")
        if target.kind in "iu" and kind not in "iu":
            raise _fail(f"{where}: {datatype} data must be integers")
        if target.kind == "f" and kind not in "iuf":
            raise _fail(f"{where}: {datatype} data must be numbers")
        if target.kind in "iu" and raw.size:
            info = np.iinfo(target)
            if raw.min() < info.min or raw.max() > info.max:
                raise _fail(f"{where}: values out of range for {datatype}")
    try:
        with np.errstate(over="raise"):
            array = raw.astype(target, copy=False) if raw.size else np.zeros(0, dtype=target)
    except (OverflowError, FloatingPointError):
        raise _fail(f"{where}: values out of range for {datatype}") from None
    return array.reshape(shape)


def _big_unsigned(data: list, target: np.dtype, where: str) -> np.ndarray:
    flat = _flatten(data, where)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        raise _fail(f"{where}: {target.name.upper()} data must be integers")
    try:
        return np.array(data, dtype=target)
    except (OverflowError, ValueError):
        raise _fail(f"{where}: values out of range for {target.name.upper()}") from None


def _flatten(data: list, where: str, depth: int = 0) -> list:
    if depth > MAX_DIMS:
        raise _fail(f"{where}: data nested deeper than {MAX_DIMS} levels")
    out = []
    for value in data:
        if isinstance(value, list):
            out.extend(_flatten(value, where, depth + 1))
        else:
            out.append(value)
    return out


def _binary_array(blob: memoryview, datatype: str, shape: list[int], where: str) -> np.ndarray:
    expected = _elements(shape)
    if datatype == "BYTES":
        values, offset = [], 0
        while offset < len(blob):
            if offset + 4 > len(blob):
                raise _fail(f"{where}: truncated BYTES element length")
            (length,) = struct.unpack_from("<I", blob, offset)
            offset += 4
            if offset + length > len(blob):
                raise _fail(f"{where}: BYTES element longer than the data left")
            values.append(bytes(blob[offset : offset + length]))
            offset += length
        if len(values) != expected:
            raise _fail(f"{where}: {len(values)} BYTES elements for shape {shape} ({expected} expected)")
        out = np.empty(expected, dtype=object)
        out[:] = values
        return out.reshape(shape)
    dtype = DATATYPE_TO_NUMPY[datatype]
    if len(blob) != expected * dtype.itemsize:
        raise _fail(f"{where}: binary_data_size {len(blob)} does not match shape {shape} of {datatype} "
                    f"({expected * dtype.itemsize} bytes expected)")
    array = np.frombuffer(blob, dtype=dtype.newbyteorder("<")).reshape(shape)
    if datatype == "BOOL" and array.size and array.view(np.uint8).max() > 1:
        raise _fail(f"{where}: BOOL bytes must be 0 or 1")
    return array


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _loads_stdlib(body: bytes | memoryview) -> Any:
    """The standard library's parser held to orjson's rules: NaN/Infinity refused, and the result re-encoded with
    orjson, which refuses what orjson would not have read (lone surrogates, integers beyond 64 bits)."""
    try:
        value = json.loads(bytes(body), parse_constant=_reject_constant)
        orjson.dumps(value)
    except (ValueError, RecursionError, orjson.JSONEncodeError) as exc:
        raise _fail(f"request body is not valid JSON: {exc}") from None
    return value


def parse_json_object(body: bytes | memoryview) -> dict:
    """A request body that must be one JSON object; anything else is a 400 that says why."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson 3.12-3.13 answers "failed to allocate memory" for some valid documents (an array of ~1,600 small
        # numbers after an indented line, as pretty-printed JSON has); the body is bounded by max_body_bytes, so the
        # standard library reads those instead.
        if "failed to allocate memory" not in str(exc):
            raise _fail(f"request body is not valid JSON: {exc}") from None
        value = _loads_stdlib(body)
    if not isinstance(value, dict):
        raise _fail("request body must be a JSON object")
    return value


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    if header_length is not None:
        try:
            json_length = int(header_length)
        except ValueError:
            raise _fail("Inference-Header-Content-Length must be an integer") from None
        if json_length < 0 or json_length > len(body):
            raise _fail(f"Inference-Header-Content-Length {json_length} is outside the body ({len(body)} bytes)")
    else:
        json_length = len(body)
    header = parse_json_object(body[:json_length])
    binary = memoryview(body)[json_length:]

    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _fail("'id' must be a string")
    parameters = _parameters(header, "'parameters'")
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise _fail("'inputs' must be a non-empty list")

    inputs, offset, seen = [], 0, set()
    for index, raw in enumerate(raw_inputs):
        if not isinstance(raw, dict):
            raise _fail(f"inputs[{index}] must be an object")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(f"inputs[{index}]: 'name' must be a non-empty string")
        if name in seen:
            raise _fail(f"input {name!r} is given twice")
        seen.add(name)
        where = f"input {name!r}"
        datatype = raw.get("datatype")
        if datatype not in DATATYPES:
            raise _fail(f"{where}: unknown datatype {datatype!r}")
        shape = _shape(raw.get("shape"), where)
        params = _parameters(raw, f"{where}: 'parameters'")
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise _fail(f"{where}: binary_data_size must be a non-negative integer")
            if "data" in raw:
                raise _fail(f"{where}: give either 'data' or binary_data_size, not both")
            if offset + size > len(binary):
                raise _fail(f"{where}: binary_data_size {size} runs past the end of the body")
            array = _binary_array(binary[offset : offset + size], datatype, shape, where)
            offset += size
        else:
            if "data" not in raw:
                raise _fail(f"{where}: 'data' is missing")
            array = _json_array(raw["data"], datatype, shape, where)
        inputs.append(InferInput(name, datatype, shape, array))
    if offset != len(binary):
        raise _fail(f"{len(binary) - offset} bytes of binary data after the last input")

    binary_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise _fail("parameters.binary_data_output must be true or false")
    outputs = None
    raw_outputs = header.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise _fail("'outputs' must be a list")
        outputs = []
        for index, raw in enumerate(raw_outputs):
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
                raise _fail(f"outputs[{index}] must be an object with a non-empty 'name'")
            params = _parameters(raw, f"outputs[{index}]: 'parameters'")
            wants_binary = params.get("binary_data", binary_default)
            if not isinstance(wants_binary, bool):
                raise _fail(f"outputs[{index}]: binary_data must be true or false")
            outputs.append(RequestedOutput(raw["name"], wants_binary))
    return InferRequest(request_id, inputs, outputs, binary_default, parameters)


def _parameters(holder: dict, what: str) -> dict:
    """A ``parameters`` member: absent or null is {}, anything else must be an object."""
    value = holder.get("parameters")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(f"{what} must be an object")
    return value


def datatype_of(array: np.ndarray) -> str:
    if array.dtype == object or array.dtype.kind in "SU":
        return "BYTES"
    for datatype, dtype in DATATYPE_TO_NUMPY.items():
        if datatype != "BYTES" and array.dtype == dtype:
            return datatype
    raise TypeError(f"no Open Inference Protocol datatype for {array.dtype}")


def _bytes_blob(array: np.ndarray) -> bytes:
    parts = []
    for value in array.reshape(-1):
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
        parts.append(struct.pack("<I", len(raw)))
        parts.append(raw)
    return b"".join(parts)


def raw_bytes(array: np.ndarray, datatype: str) -> bytes:
    """A tensor's bytes as the binary extension and gRPC's raw contents carry them: little-endian, row-major;
    BYTES as a 4-byte length before each element."""
    if datatype == "BYTES":
        return _bytes_blob(array)
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


# The decoders, for the gRPC face (same checks, same words as REST's JSON and binary tensors)
json_array = _json_array
binary_array = _binary_array


def _json_data(array: np.ndarray) -> list | np.ndarray:
    if array.dtype == object or array.dtype.kind in "SU":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]
    return np.ascontiguousarray(array).reshape(-1)  # orjson writes numpy arrays natively (shortest repr per dtype)


def encode_infer_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: list[tuple[str, np.ndarray, bool]],
) -> tuple[bytes, int | None]:
    """Returns (body, json_header_length or None when the body is plain JSON)."""
    entries, blobs = [], []
    for name, array, binary in outputs:
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = raw_bytes(array, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(array)
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": entries}
    if request_id is not None:
        response["id"] = request_id
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
