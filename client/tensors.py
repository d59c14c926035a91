"""Open Inference Protocol tensors with the binary tensor data extension, both ways.

Request: a JSON header, then each input's raw little-endian bytes; the header's length goes in the
``Inference-Header-Content-Length`` header. BYTES elements are each a 4-byte little-endian length
followed by the bytes. Every output is asked for in binary, and decoded the same way.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"
NUMPY_TYPES = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
}


def datatype_of(array: np.ndarray) -> str:
    if array.dtype.kind in "OSU":
        return "BYTES"
    native = array.dtype.newbyteorder("=")
    for datatype, dtype in NUMPY_TYPES.items():
        if native == dtype:
            return datatype
    raise TypeError(f"no Open Inference Protocol datatype for numpy {array.dtype}")


def _element_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview, np.bytes_)):
        return bytes(value)
    return str(value).encode("utf-8")


def tensor_bytes(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for value in array.reshape(-1):
            raw = _element_bytes(value)
            parts += [struct.pack("<I", len(raw)), raw]
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=NUMPY_TYPES[datatype].newbyteorder("<")).tobytes()


def encode_request(inputs: dict[str, np.ndarray], outputs: list[str] | None = None,
                   request_id: str | None = None) -> tuple[bytes, int]:
    """The request body and its JSON header's length."""
    if not inputs:
        raise ValueError("give at least one input tensor")
    entries, blobs = [], []
    for name, value in inputs.items():
        array = np.asarray(value)
        datatype = datatype_of(array)
        blob = tensor_bytes(array, datatype)
        entries.append({"name": name, "shape": list(array.shape), "datatype": datatype,
                        "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    header: dict[str, Any] = {"inputs": entries, "parameters": {"binary_data_output": True}}
    if outputs is not None:
        header["outputs"] = [{"name": name, "parameters": {"binary_data": True}} for name in outputs]
    if request_id is not None:
        header["id"] = request_id
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return encoded + b"".join(blobs), len(encoded)


def _bytes_elements(blob: memoryview, count: int, name: str) -> np.ndarray:
    values, offset = [], 0
    while offset < len(blob):
        (length,) = struct.unpack_from("<I", blob, offset)
        values.append(bytes(blob[offset + 4: offset + 4 + length]))
        offset += 4 + length
    if len(values) != count:
        raise ValueError(f"output {name!r}: {len(values)} BYTES elements, {count} expected")
    out = np.empty(count, dtype=object)
    out[:] = values
    return out


def _json_elements(data: list, datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        out = np.empty(len(data), dtype=object)
        out[:] = [v.encode("utf-8") if isinstance(v, str) else v for v in data]
        return out
    return np.asarray(data, dtype=NUMPY_TYPES[datatype])


def decode_response(body: bytes, header_length: str | None) -> dict[str, np.ndarray]:
    """Output name -> array; BYTES outputs are object arrays of ``bytes``, as tritonclient gives them."""
    split = int(header_length) if header_length is not None else len(body)
    header = json.loads(body[:split])
    binary = memoryview(body)[split:]
    arrays, offset = {}, 0
    for entry in header["outputs"]:
        name, datatype, shape = entry["name"], entry["datatype"], entry["shape"]
        size = (entry.get("parameters") or {}).get("binary_data_size")
        count = int(np.prod(shape, dtype=np.int64))
        if size is None:
            flat = _json_elements(np.asarray(entry["data"], dtype=object).reshape(-1).tolist(), datatype)
        elif datatype == "BYTES":
            flat = _bytes_elements(binary[offset: offset + size], count, name)
        else:
            flat = np.frombuffer(binary[offset: offset + size], dtype=NUMPY_TYPES[datatype].newbyteorder("<")).astype(
                NUMPY_TYPES[datatype], copy=True)
        offset += size or 0
        arrays[name] = flat.reshape(shape)
    return arrays
