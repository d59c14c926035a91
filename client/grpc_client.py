"""The Open Inference Protocol over gRPC: `NeuroserveGrpcClient` (blocking), the tensor calls of the SDK on port 8001.

    from client.grpc_client import NeuroserveGrpcClient

    with NeuroserveGrpcClient("127.0.0.1:8001", api_key="...") as ns:
        ns.infer("cifar10-resnet", {"images": images})["probabilities"]

The same arguments, results and errors as `NeuroserveClient.infer` (inputs by name, the datatype from each
array's dtype; outputs as arrays, BYTES as object arrays of bytes; a refused request raises the same error
classes with the server's message), with raw tensor bytes both ways. The task endpoints (/v1/...) stay on
REST. Needs grpcio and protobuf < 7 (installed with the server; for a client-only install:
`pip install grpcio 'protobuf>=6.33.5,<7'`); the messages are service/protocol's generated modules, which ship
in the same distribution. No retries: a 503 (UNAVAILABLE) is raised at once.
"""

from __future__ import annotations

import os
from typing import Sequence

import grpc
import numpy as np
from google.protobuf import json_format

from client.errors import (AuthenticationError, BadRequestError, ConflictError, NeuroserveConnectionError,
                           NeuroserveError, NeuroserveTimeoutError, NotFoundError, PayloadTooLargeError, ServerError,
                           ServiceUnavailableError)
from client.tensors import NUMPY_TYPES, _bytes_elements, _json_elements, datatype_of, tensor_bytes
from service.protocol import grpc_service_pb2 as pb
from service.protocol import grpc_service_pb2_grpc as pb_grpc

DEFAULT_TARGET = "127.0.0.1:8001"
DEFAULT_TIMEOUT_S = 60.0
# gRPC status -> (the client's error class, the HTTP status REST would have answered)
ERRORS = {grpc.StatusCode.INVALID_ARGUMENT: (BadRequestError, 400), grpc.StatusCode.UNAUTHENTICATED: (AuthenticationError, 401),
          grpc.StatusCode.PERMISSION_DENIED: (AuthenticationError, 403), grpc.StatusCode.NOT_FOUND: (NotFoundError, 404),
          grpc.StatusCode.RESOURCE_EXHAUSTED: (PayloadTooLargeError, 413),
          grpc.StatusCode.FAILED_PRECONDITION: (ConflictError, 409),
          grpc.StatusCode.UNAVAILABLE: (ServiceUnavailableError, 503), grpc.StatusCode.INTERNAL: (ServerError, 500)}


def _error(exc: grpc.RpcError) -> NeuroserveError:
    code, details = exc.code(), exc.details() or str(exc.code())
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return NeuroserveTimeoutError(details)
    if code == grpc.StatusCode.UNAVAILABLE and ("connect" in details.lower() or "Socket closed" in details):
        return NeuroserveConnectionError(details)  # no server there, rather than a server saying 503
    kind, status = ERRORS.get(code, (NeuroserveError, None))
    return kind(details, status=status)


class NeuroserveGrpcClient:
    """Blocking client for Neuroserve's gRPC port; use it as a context manager or call close()."""

    def __init__(self, target: str | None = None, *, api_key: str | None = None,
                 timeout: float | None = DEFAULT_TIMEOUT_S):
        """target and api_key default to $NEUROSERVE_GRPC_TARGET (host:port) and $NEUROSERVE_API_KEY."""
        self.target = target or os.environ.get("NEUROSERVE_GRPC_TARGET") or DEFAULT_TARGET
        api_key = api_key if api_key is not None else os.environ.get("NEUROSERVE_API_KEY") or None
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._channel = grpc.insecure_channel(self.target, options=[("grpc.max_receive_message_length", -1),
                                                                     ("grpc.max_send_message_length", -1)])
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"

    def __enter__(self) -> "NeuroserveGrpcClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request):
        try:
            return getattr(self._stub, method)(request, metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _error(exc) from None

    def live(self) -> bool:
        return self._call("ServerLive", pb.ServerLiveRequest()).live

    def ready(self) -> bool:
        return self._call("ServerReady", pb.ServerReadyRequest()).ready

    def model_ready(self, model: str, version: str | int | None = None) -> bool:
        return self._call("ModelReady", pb.ModelReadyRequest(name=model, version=str(version or ""))).ready

    def model_metadata(self, model: str, version: str | int | None = None) -> dict:
        """name, versions, platform, inputs and outputs (each name, datatype, shape), as REST's metadata has them."""
        answer = self._call("ModelMetadata", pb.ModelMetadataRequest(name=model, version=str(version or "")))
        body = json_format.MessageToDict(answer)
        for tensor in body.get("inputs", []) + body.get("outputs", []):
            tensor["shape"] = [int(d) for d in tensor.get("shape", [])]
        return body

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None = None,
              version: str | int | None = None) -> dict[str, np.ndarray]:
        """ModelInfer with raw tensor bytes both ways; every output by default (NeuroserveClient.infer's contract)."""
        if not inputs:
            raise ValueError("give at least one input tensor")
        request = pb.ModelInferRequest(model_name=model, model_version=str(version or ""))
        for name, value in inputs.items():
            array = np.asarray(value)
            datatype = datatype_of(array)
            request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
            request.raw_input_contents.append(tensor_bytes(array, datatype))
        for name in outputs or ():
            request.outputs.add(name=name)
        return decode_outputs(self._call("ModelInfer", request))


def decode_outputs(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """Output name -> array, from raw contents (what Neuroserve answers raw requests with) or typed ones."""
    arrays = {}
    for index, tensor in enumerate(response.outputs):
        shape = list(tensor.shape)
        count = int(np.prod(shape, dtype=np.int64))
        if response.raw_output_contents:
            blob = memoryview(response.raw_output_contents[index])
            if tensor.datatype == "BYTES":
                flat = _bytes_elements(blob, count, tensor.name)
            else:
                dtype = NUMPY_TYPES[tensor.datatype]
                flat = np.frombuffer(blob, dtype=dtype.newbyteorder("<")).astype(dtype, copy=True)
        else:
            field = tensor.contents.ListFields()
            flat = _json_elements(list(field[0][1]) if field else [], tensor.datatype)  # typed contents: as JSON data
        arrays[tensor.name] = flat.reshape(shape)
    return arrays
