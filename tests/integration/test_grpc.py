"""The Open Inference Protocol over gRPC against a real server process, driven by the real tritonclient[grpc]:
health, metadata, every datatype (raw and typed contents), BYTES, errors in REST's words, keys, streams, metrics
and the SIGTERM drain."""

from __future__ import annotations

import queue
import signal
import time

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.conftest import ServerProcess, free_port
from tests.onnx_models import ONNX_TYPES, add_sub, identity, write_model

KEY, ADMIN = "grpc-test-key", "grpc-admin-key"
AUTH = {"authorization": f"Bearer {KEY}"}
SAMPLES = {"BOOL": [[True, False]], "UINT8": [[1, 255]], "INT8": [[-5, 5]], "INT64": [[2**40, -1]],
           "FP16": [[0.5, 1.0]], "FP32": [[1.25, -2.5]], "FP64": [[1e-300, 2.0]], "BYTES": [["a", "\u00fc"]],
           "UINT64": [[2**63, 0]], "INT16": [[1, 2]], "INT32": [[3, 4]], "UINT16": [[5, 6]], "UINT32": [[7, 8]]}
NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "INT8": np.int8, "INT64": np.int64, "FP16": np.float16, "FP32": np.float32,
         "FP64": np.float64, "BYTES": np.object_, "UINT64": np.uint64, "INT16": np.int16, "INT32": np.int32,
         "UINT16": np.uint16, "UINT32": np.uint32}


class GrpcServer(ServerProcess):
    def __init__(self, models, env, log_path):
        self.grpc_port = free_port()
        super().__init__(models, {**env, "NEUROSERVE_GRPC_PORT": str(self.grpc_port)}, log_path)
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"


@pytest.fixture(scope="module")
def grpc_repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpc-models")
    write_model(root, "add-sub", add_sub(), batching={"max_batch_size": 16, "max_queue_delay_ms": 2})
    # a lone request waits out its batch window: a request still in flight when SIGTERM comes
    write_model(root, "slow-add", add_sub(), batching={"max_batch_size": 16, "max_queue_delay_ms": 1000})
    for datatype in ONNX_TYPES:
        write_model(root, f"identity-{datatype.lower()}", identity(datatype), batching={"max_batch_size": 8, "max_queue_delay_ms": 0})
    return root


@pytest.fixture(scope="module")
def server(grpc_repo, tmp_path_factory):
    proc = GrpcServer(grpc_repo, {"NEUROSERVE_API_KEYS": KEY, "NEUROSERVE_ADMIN_KEY": ADMIN},
                      tmp_path_factory.mktemp("grpc-logs") / "server.log")
    with httpx.Client(base_url=proc.url, timeout=5) as http:
        from tests.conftest import wait_ready

        wait_ready(http.get, 60)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server):
    with grpcclient.InferenceServerClient(server.grpc_url) as triton:
        yield triton


def _input(name: str, array: np.ndarray, datatype: str) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def _add_sub_inputs(rows: int = 3):
    a = np.random.default_rng(0).standard_normal((rows, 4)).astype(np.float32)
    return a, [_input("a", a, "FP32"), _input("b", np.ones_like(a), "FP32")]


def test_health_metadata_config_stats_and_repository(client):
    assert client.is_server_live() and client.is_server_ready()  # health needs no key
    assert client.is_model_ready("add-sub", headers=AUTH)
    meta = client.get_server_metadata(headers=AUTH, as_json=True)
    assert meta["name"] == "neuroserve" and "binary_tensor_data" in meta["extensions"]
    model = client.get_model_metadata("identity-uint8", headers=AUTH, as_json=True)
    assert model["inputs"] == [{"name": "INPUT", "datatype": "UINT8", "shape": ["-1", "-1"]}]
    assert model["versions"] == ["1"] and model["platform"] == "onnxruntime_onnx"
    config = client.get_model_config("add-sub", headers=AUTH, as_json=True)["config"]
    assert config["max_batch_size"] == 16 and config["input"][0]["data_type"] == "TYPE_FP32"
    index = client.get_model_repository_index(headers={"authorization": f"Bearer {ADMIN}"}, as_json=True)["models"]
    assert {"name": "add-sub", "version": "1", "state": "READY"} in index
    with pytest.raises(InferenceServerException, match="needs the admin key") as error:
        client.get_model_repository_index(headers=AUTH)
    assert error.value.status() == "StatusCode.PERMISSION_DENIED"


def test_infer_raw_tensors_and_statistics(client, server):
    a, inputs = _add_sub_inputs()
    before = client.get_inference_statistics("add-sub", headers=AUTH, as_json=True)["model_stats"][0]
    result = client.infer("add-sub", inputs, outputs=[grpcclient.InferRequestedOutput("diff")], request_id="r-7",
                          headers=AUTH)
    np.testing.assert_allclose(result.as_numpy("diff"), a - 1, rtol=1e-6)
    assert result.as_numpy("sum") is None and result.get_response().id == "r-7"
    assert result.get_response().model_version == "1"
    after = client.get_inference_statistics("add-sub", headers=AUTH, as_json=True)["model_stats"][0]
    assert int(after.get("inference_count", 0)) == int(before.get("inference_count", 0)) + 1
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'route="grpc:ModelInfer",status="200"' in metrics


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
def test_every_datatype_raw_round_trip(client, datatype):
    array = np.array(SAMPLES[datatype], dtype=NUMPY[datatype])
    if datatype == "BYTES":
        array = np.array([[v.encode() for v in SAMPLES[datatype][0]]], dtype=object)
    result = client.infer(f"identity-{datatype.lower()}", [_input("INPUT", array, datatype)], headers=AUTH)
    out = result.as_numpy("OUTPUT")
    assert out.shape == (1, 2) and out.tolist() == array.tolist(), (datatype, out)
    assert result.get_output("OUTPUT").datatype == datatype


def _stub(server):
    channel = grpc.insecure_channel(server.grpc_url)
    return channel, service_pb2_grpc.GRPCInferenceServiceStub(channel)


FIELDS = {"BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
          "UINT64": "uint64_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
          "INT64": "int64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def _typed_request(datatype: str, values) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=f"identity-{datatype.lower()}")
    tensor = request.inputs.add(name="INPUT", datatype=datatype, shape=[1, 2])
    if values is not None:
        getattr(tensor.contents, FIELDS[datatype]).extend(values)
    return request


def test_every_datatype_typed_contents_round_trip(server):
    channel, stub = _stub(server)
    with channel:
        for datatype, sample in SAMPLES.items():
            if datatype == "FP16":  # no typed field for FP16: raw only, and said so
                with pytest.raises(grpc.RpcError) as error:
                    stub.ModelInfer(_typed_request("FP16", None), metadata=list(AUTH.items()))
                assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "FP16 has no typed contents; send it in raw_input_contents" in error.value.details()
                continue
            values = [v.encode() for v in sample[0]] if datatype == "BYTES" else sample[0]
            response = stub.ModelInfer(_typed_request(datatype, values), metadata=list(AUTH.items()))
            assert not response.raw_output_contents, "typed in, typed out"
            output = response.outputs[0]
            assert output.datatype == datatype and list(output.shape) == [1, 2]
            assert list(getattr(output.contents, FIELDS[datatype])) == values, datatype


def test_bad_tensors_are_invalid_argument_in_rests_words(client, server):
    channel, stub = _stub(server)
    rest = httpx.Client(base_url=server.url, headers=AUTH)
    with channel, rest:
        cases = [
            (_typed_request("INT8", [300, 1]), {"inputs": [{"name": "INPUT", "datatype": "INT8", "shape": [1, 2], "data": [300, 1]}]}),
            (_typed_request("INT32", [1, 2, 3]), {"inputs": [{"name": "INPUT", "datatype": "INT32", "shape": [1, 2], "data": [1, 2, 3]}]}),
        ]
        for request, body in cases:
            with pytest.raises(grpc.RpcError) as error:
                stub.ModelInfer(request, metadata=list(AUTH.items()))
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            answer = rest.post(f"/v2/models/{request.model_name}/infer", json=body)
            assert answer.status_code == 400 and answer.json()["error"] == error.value.details()
    wrong = _input("a", np.ones((1, 4)), "FP64")
    with pytest.raises(InferenceServerException, match="input 'a': datatype FP64, model expects FP32") as error:
        client.infer("add-sub", [wrong, _add_sub_inputs(1)[1][1]], headers=AUTH)
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException, match="shape \\[1, 3\\] does not fit the model's \\[-1, 4\\]"):
        client.infer("add-sub", [_input("a", np.ones((1, 3), np.float32), "FP32"),
                                 _input("b", np.ones((1, 3), np.float32), "FP32")], headers=AUTH)
    with pytest.raises(InferenceServerException, match="unknown model 'nope'") as error:
        client.infer("nope", _add_sub_inputs(1)[1], headers=AUTH)
    assert error.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match="has no version '9'"):
        client.get_model_metadata("add-sub", "9", headers=AUTH)


def test_api_keys_ride_in_the_authorization_metadata(client):
    with pytest.raises(InferenceServerException, match="missing or invalid API key") as error:
        client.infer("add-sub", _add_sub_inputs(1)[1])
    assert error.value.status() == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException) as error:
        client.get_model_metadata("add-sub", headers={"authorization": "Bearer wrong"})
    assert error.value.status() == "StatusCode.UNAUTHENTICATED"
    assert client.is_server_ready()


def test_stream_answers_in_order_and_reports_errors_without_ending(server):
    answers: queue.Queue = queue.Queue()
    with grpcclient.InferenceServerClient(server.grpc_url) as streaming:
        streaming.start_stream(callback=lambda result, error: answers.put((result, error)), headers=AUTH)
        a, inputs = _add_sub_inputs(2)
        streaming.async_stream_infer("add-sub", inputs, request_id="s-1")
        streaming.async_stream_infer("nope", inputs, request_id="s-2")
        streaming.async_stream_infer("add-sub", inputs, request_id="s-3")
        got = [answers.get(timeout=10) for _ in range(3)]
        streaming.stop_stream()
    assert got[0][1] is None and got[0][0].get_response().id == "s-1"
    np.testing.assert_allclose(got[0][0].as_numpy("sum"), a + 1, rtol=1e-6)
    assert got[1][0] is None and "unknown model 'nope'" in str(got[1][1])
    assert got[2][1] is None and got[2][0].get_response().id == "s-3"


def test_sigterm_drains_calls_in_flight_then_refuses(grpc_repo, tmp_path):
    proc = GrpcServer(grpc_repo, {"NEUROSERVE_LOAD_MODELS": "slow-add"}, tmp_path / "drain.log").wait_ready()
    results: queue.Queue = queue.Queue()
    try:
        with grpcclient.InferenceServerClient(proc.grpc_url) as triton:
            a, inputs = _add_sub_inputs(1)
            triton.async_infer("slow-add", inputs, callback=lambda result, error: results.put((result, error)))
            time.sleep(0.3)  # queued, waiting out its 1 s batch window
            proc.proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            with pytest.raises(InferenceServerException) as refused:  # draining: no new calls
                triton.infer("slow-add", inputs)
            assert refused.value.status() == "StatusCode.UNAVAILABLE"
            result, error = results.get(timeout=20)
            assert error is None, error
            np.testing.assert_allclose(result.as_numpy("sum"), a + 1, rtol=1e-6)
        proc.proc.wait(30)
        assert "shut down" in proc.logs()
    finally:
        proc.stop()
    with grpcclient.InferenceServerClient(proc.grpc_url) as triton, pytest.raises(InferenceServerException):
        triton.is_server_live()


def test_the_committed_stubs_are_what_the_command_generates():
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = subprocess.run([sys.executable, "scripts/grpc_stubs.py", "--check"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_several_workers_each_serve_grpc_on_the_shared_port(grpc_repo, tmp_path):
    """--workers 2: each worker serves the gRPC port (SO_REUSEPORT) once its models are loaded; every answer names
    its worker in the x-neuroserve-worker trailing metadata, as REST's header does; SIGTERM stops them all."""
    proc = GrpcServer(grpc_repo, {"NEUROSERVE_WORKERS": "2", "NEUROSERVE_LOAD_MODELS": "add-sub"}, tmp_path / "w.log")
    try:
        proc.wait_ready()
        request = service_pb2.ModelInferRequest(
            model_name="add-sub", raw_input_contents=[np.ones((1, 4), "<f4").tobytes()] * 2,
            inputs=[{"name": name, "datatype": "FP32", "shape": [1, 4]} for name in ("a", "b")])
        pids = set()
        for _ in range(40):  # new connections until both workers have answered (the kernel picks one per connection)
            channel, stub = _stub(proc)
            with channel:
                deadline = time.monotonic() + 10
                while True:
                    try:  # a worker's gRPC starts once its models are loaded
                        answer, call = stub.ModelInfer.with_call(request)
                        break
                    except grpc.RpcError:
                        assert time.monotonic() < deadline, "gRPC never answered"
                        time.sleep(0.1)
                pids.add(dict(call.trailing_metadata())["x-neuroserve-worker"])
                assert np.frombuffer(answer.raw_output_contents[0], "<f4").tolist() == [2.0] * 4
            if len(pids) == 2:
                break
        assert len(pids) == 2, pids
    finally:
        proc.stop()
    assert "shut down" in proc.logs()


def test_a_busy_grpc_port_stops_the_start_with_the_reason(grpc_repo, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = ServerProcess(grpc_repo, {"NEUROSERVE_GRPC_PORT": str(port), "NEUROSERVE_LOAD_MODELS": "add-sub"},
                             log_path=tmp_path / "busy.log")
        try:
            assert proc.proc.wait(60) != 0
        finally:
            proc.stop()
    assert f"cannot serve gRPC on 127.0.0.1:{port}" in proc.logs()


def test_one_streams_requests_batch_together(server):
    """Queued as they arrive: 8 requests on one stream share slow-add's 1 s batch window (one after another they
    would take 8 windows)."""
    answers: queue.Queue = queue.Queue()
    with grpcclient.InferenceServerClient(server.grpc_url) as streaming:
        streaming.start_stream(callback=lambda result, error: answers.put((result, error)), headers=AUTH)
        started = time.perf_counter()
        for i in range(8):
            streaming.async_stream_infer("slow-add", _add_sub_inputs(1)[1], request_id=f"b-{i}")
        got = [answers.get(timeout=20) for _ in range(8)]
        elapsed = time.perf_counter() - started
        streaming.stop_stream()
    assert [r.get_response().id for r, e in got] == [f"b-{i}" for i in range(8)]
    assert elapsed < 4, elapsed
    with grpcclient.InferenceServerClient(server.grpc_url) as triton:
        stats = triton.get_inference_statistics("slow-add", headers=AUTH, as_json=True)["model_stats"][0]
    assert max(int(b["batch_size"]) for b in stats["batch_stats"]) > 1


def test_the_sdks_grpc_client_matches_the_rest_clients_contract(server):
    from client.errors import AuthenticationError, BadRequestError, NeuroserveConnectionError, NotFoundError
    from client.grpc_client import NeuroserveGrpcClient

    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    with NeuroserveGrpcClient(server.grpc_url, api_key=KEY) as ns:
        assert ns.live() and ns.ready() and ns.model_ready("add-sub")
        assert ns.model_metadata("add-sub")["inputs"][0] == {"name": "a", "datatype": "FP32", "shape": [-1, 4]}
        out = ns.infer("add-sub", {"a": a, "b": np.ones_like(a)})
        np.testing.assert_array_equal(out["sum"], a + 1)
        assert set(ns.infer("add-sub", {"a": a, "b": a}, outputs=["diff"])) == {"diff"}
        strings = ns.infer("identity-bytes", {"INPUT": np.array([["a", "\u00fc"]], dtype=object)})["OUTPUT"]
        assert strings.tolist() == [[b"a", "\u00fc".encode()]]
        with pytest.raises(BadRequestError, match="input 'a': datatype FP64, model expects FP32") as error:
            ns.infer("add-sub", {"a": a.astype(np.float64), "b": a})
        assert error.value.status == 400
        with pytest.raises(NotFoundError, match="unknown model 'nope'"):
            ns.infer("nope", {"a": a})
    with NeuroserveGrpcClient(server.grpc_url) as anonymous, pytest.raises(AuthenticationError):
        anonymous.infer("add-sub", {"a": a, "b": a})
    with NeuroserveGrpcClient(f"127.0.0.1:{free_port()}", timeout=5) as nobody, pytest.raises(NeuroserveConnectionError):
        nobody.live()
