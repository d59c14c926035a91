"""BentoML peer (run from bench/peers/.venvs/bentoml): the same ONNX models behind BentoML's
new-style service API, with adaptive batching on both endpoints.

    PEER_CLASSIFIER=models/cifar10-resnet PEER_SENTIMENT=models/sentiment-lstm \
    bench/peers/.venvs/bentoml/bin/bentoml serve bench.peers.bento_service:Peer --port 3000

Routes (BentoML's own JSON convention: the body is an object of the API's parameters):
- POST /classify  {"images": [base64 PNG, ...]} -> [{"label", "score", "top_k"}, ...]
- POST /sentiment {"texts": [...]}              -> [{"label", "score"}, ...]
Both are `batchable=True` (adaptive batching: BentoML merges the lists of concurrent requests into
one call, max_batch_size 32, and splits the answer back). One worker process; ORT intra-op threads 2;
access log off (as in Neuroserve and the naive server).
"""

from __future__ import annotations

import os

import bentoml

from bench.peers.shared import THREADS, ImageClassifier, SentimentModel

MAX_BATCH = int(os.environ.get("PEER_MAX_BATCH", "32"))


@bentoml.service(workers=1, resources={"cpu": "2"}, traffic={"timeout": 60}, logging={"access": {"enabled": False}})
class Peer:
    def __init__(self) -> None:
        self.classifier = ImageClassifier(os.environ["PEER_CLASSIFIER"], THREADS) if os.environ.get("PEER_CLASSIFIER") else None
        self.sentiment_model = SentimentModel(os.environ["PEER_SENTIMENT"], THREADS) if os.environ.get("PEER_SENTIMENT") else None

    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=MAX_BATCH)
    def classify(self, images: list[str]) -> list[dict]:
        return self.classifier.classify_b64(images)

    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=MAX_BATCH)
    def sentiment(self, texts: list[str]) -> list[dict]:
        return self.sentiment_model.predict(texts)
