"""The Open Inference Protocol over gRPC: KServe v2's `inference.GRPCInferenceService` on the data plane.

A thin adapter, like the REST routes: each call turns protobuf into data-plane calls (service/dataplane.py)
and back. Same repository, batcher, checks and words as REST: a bad tensor is INVALID_ARGUMENT with the
message REST puts in its 400. Tensors come as typed contents (`contents.fp32_contents`, ...) or as
`raw_input_contents` (little-endian bytes, BYTES elements length-prefixed: the binary extension's layout);
the answer is raw (`raw_output_contents`) when the request was, or when an output has no typed field (FP16),
else typed. API keys ride in the `authorization` metadata ("Bearer KEY"); health calls need none, the
repository calls need the admin key. Metrics: the REST counters, route "grpc:<Method>", status the HTTP
equivalent. Started and stopped by the app's lifespan (service/app.py): on SIGTERM new calls get UNAVAILABLE
and calls in flight get drain_timeout_s to finish.

ModelStreamInfer queues a stream's requests as they arrive (up to 64 in flight, so they batch together) and
answers them in the order they came; an error is that request's `error_message`, and the stream goes on.
Shared memory, trace and log settings are not offered (UNIMPLEMENTED).
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import numpy as np
from google.protobuf import json_format

from service.codecs import MAX_DIMS, InferInput, InferRequest, RequestedOutput, binary_array, datatype_of, json_array, raw_bytes
from service.dataplane import DataPlane
from service.errors import BadRequest, NeuroserveError, ServiceUnavailable, Unauthorized
from service.manifest import DATATYPES
from service.protocol import grpc_service_pb2 as pb
from service.protocol import grpc_service_pb2_grpc as pb_grpc
from service.security import api_key_valid, check_admin_key

log = logging.getLogger("neuroserve.grpc")

CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
         403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
         409: grpc.StatusCode.FAILED_PRECONDITION, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
         415: grpc.StatusCode.INVALID_ARGUMENT, 422: grpc.StatusCode.INVALID_ARGUMENT,
         499: grpc.StatusCode.CANCELLED, 503: grpc.StatusCode.UNAVAILABLE}
# The typed field of InferTensorContents each datatype travels in (FP16 has none: raw contents only)
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
            "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
            "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
UNMETERED = {"ServerLive", "ServerReady"}
STREAM_WINDOW = 64  # requests of one ModelStreamInfer in flight at once


# ----- tensors -----
def _shape(tensor, where: str) -> list[int]:
    shape = list(tensor.shape)
    if len(shape) > MAX_DIMS or any(d < 0 for d in shape):
        raise BadRequest(f"{where}: 'shape' must be a list of at most {MAX_DIMS} non-negative integers")
    return shape


def _typed_array(tensor, datatype: str, shape: list[int], where: str) -> np.ndarray:
    field = CONTENTS.get(datatype)
    if field is None:
        raise BadRequest(f"{where}: {datatype} has no typed contents; send it in raw_input_contents")
    used = [f.name for f, _ in tensor.contents.ListFields()]
    if used and used != [field]:
        raise BadRequest(f"{where}: {datatype} data goes in contents.{field}, not {', '.join(used)}")
    values = getattr(tensor.contents, field)
    if datatype != "BYTES":
        return json_array(list(values), datatype, shape, where)
    expected = int(np.prod(shape))
    if len(values) != expected:
        raise BadRequest(f"{where}: {len(values)} values for shape {shape} ({expected} expected)")
    out = np.empty(expected, dtype=object)
    out[:] = list(values)
    return out.reshape(shape)


def decode_request(request: pb.ModelInferRequest) -> InferRequest:
    """ModelInferRequest -> the data plane's InferRequest, with REST's checks and words."""
    if not request.inputs:
        raise BadRequest("'inputs' must be a non-empty list")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(f"raw_input_contents holds {len(raw)} tensors for {len(request.inputs)} inputs")
    inputs, seen = [], set()
    for index, tensor in enumerate(request.inputs):
        if not tensor.name:
            raise BadRequest(f"inputs[{index}]: 'name' must be a non-empty string")
        if tensor.name in seen:
            raise BadRequest(f"input {tensor.name!r} is given twice")
        seen.add(tensor.name)
        where = f"input {tensor.name!r}"
        if tensor.datatype not in DATATYPES:
            raise BadRequest(f"{where}: unknown datatype {tensor.datatype!r}")
        shape = _shape(tensor, where)
        if raw:
            if tensor.HasField("contents"):
                raise BadRequest(f"{where}: give either contents or raw_input_contents, not both")
            array = binary_array(memoryview(raw[index]), tensor.datatype, shape, where)
        else:
            array = _typed_array(tensor, tensor.datatype, shape, where)
        inputs.append(InferInput(tensor.name, tensor.datatype, shape, array))
    outputs = [RequestedOutput(o.name, True) for o in request.outputs] or None
    return InferRequest(request.id or None, inputs, outputs, binary_output_default=bool(raw))


def encode_response(model, request_id: str | None, outputs: list[tuple[str, np.ndarray, bool]],
                    raw: bool) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request_id or "")
    datatypes = [datatype_of(array) for _, array, _ in outputs]
    raw = raw or any(d not in CONTENTS for d in datatypes)  # raw for one output means raw for all
    for (name, array, _), datatype in zip(outputs, datatypes):
        tensor = response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        if raw:
            response.raw_output_contents.append(raw_bytes(array, datatype))
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(v if isinstance(v, bytes) else str(v).encode("utf-8")
                                                  for v in array.reshape(-1))
        else:
            getattr(tensor.contents, CONTENTS[datatype]).extend(array.reshape(-1).tolist())
    return response


# ----- the servicer -----
class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane):
        self.plane = plane
        self.settings = plane.settings
        self.metrics = plane.metrics
        # several workers: every answer names its worker, as REST's X-Neuroserve-Worker header does
        self.worker = (("x-neuroserve-worker", str(plane.workers.pid)),) if plane.workers is not None else None

    def _authorize(self, context, admin: bool = False) -> None:
        authorization = dict(context.invocation_metadata()).get("authorization", "")
        if admin:
            check_admin_key(self.settings, authorization)
        elif not api_key_valid(self.settings, authorization):
            raise Unauthorized()

    async def _call(self, method: str, context, handler, *, auth: str | None = "key"):
        """Run one call: drain check, key check, handler; errors to status codes; metrics."""
        started = time.perf_counter()
        status, model = 200, ""
        self.metrics.in_flight.inc()
        if self.worker is not None:
            context.set_trailing_metadata(self.worker)
        try:
            if self.plane.draining and method not in UNMETERED:
                raise ServiceUnavailable("server is shutting down", retry_after_s=5)
            if auth is not None:
                self._authorize(context, admin=auth == "admin")
            answer, model = await handler()
            return answer
        except NeuroserveError as exc:
            status = exc.status_code
            await context.abort(CODES.get(status, grpc.StatusCode.INTERNAL), exc.message)
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            status = 500
            log.exception("unhandled error in %s", method)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")
        finally:
            self.metrics.in_flight.dec()
            if method not in UNMETERED:
                route = f"grpc:{method}"
                self.metrics.requests.labels(model=model, route=route, status=str(status)).inc()
                self.metrics.request_latency.labels(route=route).observe(time.perf_counter() - started)

    async def ServerLive(self, request, context):
        async def handler():
            return pb.ServerLiveResponse(live=self.plane.live()["live"]), ""
        return await self._call("ServerLive", context, handler, auth=None)

    async def ServerReady(self, request, context):
        async def handler():
            return pb.ServerReadyResponse(ready=self.plane.ready()[0] and not self.plane.draining), ""
        return await self._call("ServerReady", context, handler, auth=None)

    async def ServerMetadata(self, request, context):
        async def handler():
            return json_format.ParseDict(self.plane.server_metadata(), pb.ServerMetadataResponse()), ""
        return await self._call("ServerMetadata", context, handler)

    async def ModelReady(self, request, context):
        async def handler():
            ready, _ = self.plane.model_ready(request.name, request.version)
            return pb.ModelReadyResponse(ready=ready), request.name
        return await self._call("ModelReady", context, handler)

    async def ModelMetadata(self, request, context):
        async def handler():
            body = self.plane.model_metadata(self.plane.model(request.name, request.version))
            body.pop("parameters")  # not in the gRPC message
            return json_format.ParseDict(body, pb.ModelMetadataResponse()), request.name
        return await self._call("ModelMetadata", context, handler)

    async def ModelConfig(self, request, context):
        async def handler():
            config = self.plane.model_config(self.plane.model(request.name, request.version))
            return json_format.ParseDict({"config": config}, pb.ModelConfigResponse()), request.name
        return await self._call("ModelConfig", context, handler)

    async def ModelStatistics(self, request, context):
        async def handler():
            stats = self.plane.model_stats(request.name, request.version) if request.name else {"model_stats": [
                row for name, entry in sorted(self.plane.repository.entries.items()) if entry.versions
                for row in self.plane.model_stats(name)["model_stats"]]}
            return json_format.ParseDict(stats, pb.ModelStatisticsResponse()), request.name
        return await self._call("ModelStatistics", context, handler)

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        self.plane.check_capacity(request.model_name, request.model_version)  # 503 before decoding under overload
        parsed = decode_request(request)
        model, outputs = await self.plane.infer(request.model_name, request.model_version, parsed)
        return encode_response(model, parsed.id, outputs, raw=bool(request.raw_input_contents))

    async def ModelInfer(self, request, context):
        async def handler():
            return await self._infer(request), request.model_name
        return await self._call("ModelInfer", context, handler)

    async def ModelStreamInfer(self, request_iterator, context):
        """Requests are queued as they arrive (so one stream's requests batch together, up to STREAM_WINDOW in
        flight) and answered in the order they came; an error is that request's error_message."""
        async def handler():
            return None, ""
        await self._call("ModelStreamInfer", context, handler)  # the key and drain checks, once per stream
        pending: asyncio.Queue = asyncio.Queue(STREAM_WINDOW)  # in order; a full window stops reading requests

        async def one(request) -> pb.ModelStreamInferResponse:
            try:
                if self.plane.draining:
                    raise ServiceUnavailable("server is shutting down", retry_after_s=5)
                return pb.ModelStreamInferResponse(infer_response=await self._infer(request))
            except NeuroserveError as exc:
                return pb.ModelStreamInferResponse(error_message=exc.message)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await pending.put(asyncio.ensure_future(one(request)))
            finally:
                await pending.put(None)

        reader = asyncio.ensure_future(read())
        try:
            while (answer := await pending.get()) is not None:
                yield await answer
            await reader  # the client's errors reading the stream, if any
        finally:
            reader.cancel()
            while not pending.empty():
                if (left := pending.get_nowait()) is not None:
                    left.cancel()

    async def RepositoryIndex(self, request, context):
        async def handler():
            rows = [row for row in self.plane.index() if not request.ready or row["state"] == "READY"]
            return json_format.ParseDict({"models": rows}, pb.RepositoryIndexResponse()), ""
        return await self._call("RepositoryIndex", context, handler, auth="admin")

    async def RepositoryModelLoad(self, request, context):
        async def handler():
            await self.plane.load(request.model_name)
            return pb.RepositoryModelLoadResponse(), request.model_name
        return await self._call("RepositoryModelLoad", context, handler, auth="admin")

    async def RepositoryModelUnload(self, request, context):
        async def handler():
            await self.plane.unload(request.model_name)
            return pb.RepositoryModelUnloadResponse(), request.model_name
        return await self._call("RepositoryModelUnload", context, handler, auth="admin")


async def start_grpc(plane: DataPlane, reuse_port: bool = False) -> grpc.aio.Server:
    """Bind settings.host:grpc_port and start serving; raises when the port cannot be bound. reuse_port: several
    worker processes share the port (SO_REUSEPORT); otherwise a second server on it fails to start instead of
    sharing it silently."""
    settings = plane.settings
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", settings.max_body_bytes),  # REST's body limit
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", int(reuse_port)),
    ])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(plane), server)
    address = f"{settings.host}:{settings.grpc_port}"
    try:
        server.add_insecure_port(address)
    except RuntimeError as exc:
        raise RuntimeError(f"cannot serve gRPC on {address}: {exc} (NEUROSERVE_GRPC_PORT; 0 turns gRPC off)") from exc
    await server.start()
    log.info("Open Inference Protocol over gRPC on %s", address)
    return server


async def stop_grpc(server: grpc.aio.Server, plane: DataPlane) -> None:
    """New calls get UNAVAILABLE; calls in flight get drain_timeout_s to finish."""
    plane.draining = True
    await server.stop(plane.settings.drain_timeout_s)
