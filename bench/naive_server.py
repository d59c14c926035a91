"""What users write by hand: a FastAPI endpoint that parses JSON with pydantic and calls session.run
per request. The baseline Neuroserve must beat (bench/oip_bench.py and bench/peers/).

Environment (each part optional, at least one set):
- NAIVE_MODEL: an ONNX file, served on POST /infer (OIP-shaped JSON tensors);
- NAIVE_CLASSIFIER: a model folder (manifest.json + <version>/model.onnx), served on
  POST /v1/images/classify ({"images": [base64 PNG/JPEG], "top_k": 5});
- NAIVE_SENTIMENT: a model folder with its tokenizer.json, served on POST /v1/text/sentiment ({"texts": [...]}).
NAIVE_THREADS: ORT intra-op threads (default 2). One uvicorn worker; sync endpoints run in FastAPI's threadpool.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel

THREADS = int(os.environ.get("NAIVE_THREADS", "2"))
DTYPES = {"UINT8": np.uint8, "FP32": np.float32, "INT64": np.int64}
app = FastAPI()

session = None
if os.environ.get("NAIVE_MODEL"):
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = ort.InferenceSession(os.environ["NAIVE_MODEL"], sess_options=options, providers=["CPUExecutionProvider"])


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list


class InferRequest(BaseModel):
    inputs: list[Tensor]


class ClassifyRequest(BaseModel):
    images: list[str]
    top_k: int = 5


class SentimentRequest(BaseModel):
    texts: list[str]


@app.get("/health")
def health():
    return {"ok": True}


if session is not None:
    @app.post("/infer")
    def infer(request: InferRequest):
        feeds = {t.name: np.array(t.data, dtype=DTYPES[t.datatype]).reshape(t.shape) for t in request.inputs}
        outputs = session.run(None, feeds)
        return {"outputs": [{"name": meta.name, "shape": list(value.shape), "data": value.reshape(-1).tolist()}
                            for meta, value in zip(session.get_outputs(), outputs)]}


if os.environ.get("NAIVE_CLASSIFIER"):
    from bench.peers.shared import ImageClassifier

    classifier = ImageClassifier(os.environ["NAIVE_CLASSIFIER"], THREADS)

    @app.post("/v1/images/classify")
    def classify(request: ClassifyRequest):
        return {"model": classifier.info.name, "results": classifier.classify_b64(request.images, request.top_k)}


if os.environ.get("NAIVE_SENTIMENT"):
    from bench.peers.shared import SentimentModel

    sentiment_model = SentimentModel(os.environ["NAIVE_SENTIMENT"], THREADS)

    @app.post("/v1/text/sentiment")
    def sentiment(request: SentimentRequest):
        return {"model": sentiment_model.info.name, "results": sentiment_model.predict(request.texts)}
