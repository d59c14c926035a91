"""What users write by hand: a FastAPI endpoint that parses JSON with pydantic and calls session.run
per request. The baseline Neuroserve must beat (bench/oip_bench.py and bench/peers/)."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel

options = ort.SessionOptions()
options.intra_op_num_threads = int(os.environ.get("NAIVE_THREADS", "2"))
session = ort.InferenceSession(os.environ["NAIVE_MODEL"], sess_options=options, providers=["CPUExecutionProvider"])
DTYPES = {"UINT8": np.uint8, "FP32": np.float32, "INT64": np.int64}
app = FastAPI()


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list


class InferRequest(BaseModel):
    inputs: list[Tensor]


@app.get("/health")
def health():
    return {"ok": True}


@app.post("/infer")
def infer(request: InferRequest):
    feeds = {t.name: np.array(t.data, dtype=DTYPES[t.datatype]).reshape(t.shape) for t in request.inputs}
    outputs = session.run(None, feeds)
    return {"outputs": [{"name": meta.name, "shape": list(value.shape), "data": value.reshape(-1).tolist()}
                        for meta, value in zip(session.get_outputs(), outputs)]}
