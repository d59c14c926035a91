"""KServe peer (run from bench/peers/.venvs/kserve): KServe's Python ModelServer with one
`kserve.Model` subclass per model, loading the ONNX file with onnxruntime.

    bench/peers/.venvs/kserve/bin/python -m bench.peers.kserve_server \
        --classifier models/cifar10-resnet --sentiment models/sentiment-lstm --http_port 8080

KServe decodes the body itself and hands `predict` a dict (v1) or an InferRequest (v2):
- POST /v1/models/<classifier>:predict  {"instances": [{"image_bytes": {"b64": PNG}}]} -> {"predictions": [...]}
- POST /v2/models/<classifier>/infer    Open Inference Protocol, JSON or binary tensors
  (Inference-Header-Content-Length); outputs binary when the request asks for it
- POST /v1/models/<sentiment>:predict   {"instances": ["text", ...]} -> {"predictions": [...]}
Models are named as in the repository, so the v2 URL is the same path as Neuroserve's.
`predict` is a plain (sync) method as in KServe's examples; KServe calls it on its event loop.
One uvicorn worker (--workers 1), gRPC off unless --grpc-port is given (KServe's own grpc.aio
GRPCInferenceService, for bench/grpc_bench.py), per-request latency logging off, ORT intra-op threads 2.
KServe has no adaptive batching of its own in the Python ModelServer (batching is an InferenceService
sidecar in Kubernetes), so none is used here.
"""

from __future__ import annotations

import argparse
import logging
import sys

from bench.peers.shared import THREADS, ImageClassifier, SentimentModel


def main() -> None:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--classifier")
    own.add_argument("--sentiment")
    own.add_argument("--grpc-port", type=int, default=0, help="serve KServe's gRPC face on this port (0: off)")
    args, rest = own.parse_known_args()
    # KServe parses sys.argv at import time: leave it only its own flags.
    sys.argv = [sys.argv[0], *rest]


    import kserve
    from kserve import InferOutput, InferRequest, InferResponse

    class Classifier(kserve.Model):
        def __init__(self, folder: str):
            self.impl = ImageClassifier(folder, THREADS)
            super().__init__(self.impl.info.name)
            self.ready = True

        def predict(self, payload, headers=None):
            if isinstance(payload, InferRequest):
                batch = payload.inputs[0].as_numpy()
                probabilities = self.impl.run(batch)
                output = InferOutput("probabilities", list(probabilities.shape), "FP32", data=probabilities)
                return InferResponse(payload.id, self.name, [output], requested_outputs=payload.request_outputs)
            images = [i["image_bytes"]["b64"] if isinstance(i, dict) else i for i in payload["instances"]]
            return {"predictions": self.impl.classify_b64(images)}

    class Sentiment(kserve.Model):
        def __init__(self, folder: str):
            self.impl = SentimentModel(folder, THREADS)
            super().__init__(self.impl.info.name)
            self.ready = True

        def predict(self, payload, headers=None):
            return {"predictions": self.impl.predict(list(payload["instances"]))}

    models = []
    if args.classifier:
        models.append(Classifier(args.classifier))
    if args.sentiment:
        models.append(Sentiment(args.sentiment))
    grpc = {"enable_grpc": True, "grpc_port": args.grpc_port} if args.grpc_port else {"enable_grpc": False}
    server = kserve.ModelServer(workers=1, enable_latency_logging=False, **grpc)
    for name in ("uvicorn.access", "kserve.trace", "kserve"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start(models)


if __name__ == "__main__":
    main()
