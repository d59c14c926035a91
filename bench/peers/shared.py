"""Pieces every system under test shares, so each does the same work per request.

Imported by the driver (main venv), by bench/naive_server.py and by the peer wrappers (their own
venvs): only numpy, Pillow, tokenizers and onnxruntime, each imported where it is used.

- ``ModelInfo``: a model folder of the repository (highest version, manifest labels, tokenizer,
  max_tokens) read the way Neuroserve reads it.
- ``ImageClassifier`` / ``SentimentModel``: decode + session.run + answer, the same steps as
  Neuroserve's /v1/images/classify and /v1/text/sentiment (PIL decode to RGB, resize to the graph's
  size if needed; tokenizers encode_batch, truncation to max_tokens (128 unless the manifest says
  otherwise), ids padded with 0, lengths).
- payload builders: the request bodies, byte-for-byte the same wherever two protocols allow it.
"""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

THREADS = int(os.environ.get("PEER_INTRA_OP_THREADS", "2"))
TOP_K = 5
SENTIMENT_TEXTS = [
    "A warm, funny and beautifully acted film; the best thing I have seen this year!",
    "Dull, far too long and the plot makes no sense at all.",
    "It's GREAT!! good good movie",
    "an awful, bad movie that it's hard to sit through",
]


@dataclass
class ModelInfo:
    name: str
    folder: Path
    onnx: Path
    task: str
    labels: list[str] = field(default_factory=list)
    tokenizer: Path | None = None
    max_tokens: int = 128

    @classmethod
    def load(cls, folder: str | Path) -> ModelInfo:
        folder = Path(folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        versions = sorted((p for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and (p / "model.onnx").is_file()),
                          key=lambda p: int(p.name))
        if not versions:
            raise FileNotFoundError(f"no <version>/model.onnx under {folder}")
        tokenizer = manifest.get("tokenizer")
        return cls(name=manifest.get("name", folder.name), folder=folder, onnx=versions[-1] / "model.onnx",
                   task=manifest.get("task", "tensor"), labels=list(manifest.get("labels") or []),
                   tokenizer=folder / tokenizer if tokenizer else None,
                   max_tokens=int((manifest.get("parameters") or {}).get("max_tokens", 128)))


def make_session(path: Path, threads: int = THREADS):
    """One CPU session, intra-op threads = the shared budget, inter-op 1, full graph optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class ImageClassifier:
    def __init__(self, folder: str | Path, threads: int = THREADS):
        self.info = ModelInfo.load(folder)
        self.session = make_session(self.info.onnx, threads)
        _, self.height, self.width, self.channels = self.session.get_inputs()[0].shape
        self.input_name = self.session.get_inputs()[0].name

    def decode(self, data: bytes):
        import numpy as np
        from PIL import Image

        image = Image.open(io.BytesIO(data))
        image.load()
        image = image.convert("L" if self.channels == 1 else "RGB")
        if image.size != (self.width, self.height):
            image = image.resize((self.width, self.height), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
        return array[:, :, None] if array.ndim == 2 else array

    def run(self, batch):
        """uint8 [n, H, W, C] -> probabilities [n, classes]."""
        return self.session.run(["probabilities"], {self.input_name: batch})[0]

    def answer(self, probabilities, top_k: int = TOP_K) -> list[dict]:
        import numpy as np

        labels = self.info.labels or [str(i) for i in range(probabilities.shape[1])]
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :min(top_k, len(labels))]
        results = []
        for row, indices in zip(probabilities, order):
            ranked = [{"label": labels[i], "score": float(row[i])} for i in indices]
            results.append({"label": ranked[0]["label"], "score": ranked[0]["score"], "top_k": ranked})
        return results

    def classify_b64(self, images: list[str], top_k: int = TOP_K) -> list[dict]:
        import numpy as np

        batch = np.stack([self.decode(base64.b64decode(v, validate=True)) for v in images])
        return self.answer(self.run(batch), top_k)


class SentimentModel:
    def __init__(self, folder: str | Path, threads: int = THREADS):
        from tokenizers import Tokenizer

        self.info = ModelInfo.load(folder)
        self.session = make_session(self.info.onnx, threads)
        self.tokenizer = Tokenizer.from_file(str(self.info.tokenizer))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.unk_id = next((self.tokenizer.token_to_id(t) for t in ("[UNK]", "<unk>", "<UNK>")
                            if self.tokenizer.token_to_id(t) is not None), 1)
        self.uses_lengths = "lengths" in {i.name for i in self.session.get_inputs()}

    def encode(self, texts: list[str]) -> dict:
        import numpy as np

        encodings = self.tokenizer.encode_batch(texts)
        rows = [(e.ids[: self.info.max_tokens] or [self.unk_id]) for e in encodings]
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        ids = np.zeros((len(rows), int(lengths.max())), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
        feeds = {"input_ids": ids}
        if self.uses_lengths:
            feeds["lengths"] = lengths
        return feeds

    def run(self, feeds: dict):
        return self.session.run(["probabilities"], feeds)[0]

    @staticmethod
    def answer(probabilities) -> list[dict]:
        return [{"label": "positive" if p >= 0.5 else "negative", "score": float(p)} for p in probabilities[:, -1]]

    def predict(self, texts: list[str]) -> list[dict]:
        return self.answer(self.run(self.encode(texts)))


# ---------------------------------------------------------------- payloads (byte-for-byte where allowed)

def test_image(height: int = 32, width: int = 32, seed: int = 0):
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def png_bytes(image) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def classify_task_body(png: bytes) -> bytes:
    """Neuroserve /v1/images/classify, naive FastAPI and BentoML /classify: {"images": [base64 PNG]}."""
    return _json({"images": [base64.b64encode(png).decode()]})


def kserve_v1_classify_body(png: bytes) -> bytes:
    """KServe v1 :predict, TF-Serving style binary instance: {"instances": [{"image_bytes": {"b64": ...}}]}."""
    return _json({"instances": [{"image_bytes": {"b64": base64.b64encode(png).decode()}}]})


def oip_binary_body(image_batch, input_name: str = "images", output_name: str = "probabilities") -> tuple[bytes, dict]:
    """Open Inference Protocol binary tensor request (same bytes for Neuroserve and KServe v2)."""
    header = _json({"inputs": [{"name": input_name, "shape": list(image_batch.shape), "datatype": "UINT8",
                                "parameters": {"binary_data_size": int(image_batch.nbytes)}}],
                    "outputs": [{"name": output_name, "parameters": {"binary_data": True}}]})
    return header + image_batch.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def sentiment_task_body(texts: list[str] = SENTIMENT_TEXTS) -> bytes:
    """Neuroserve /v1/text/sentiment, naive FastAPI and BentoML /sentiment: {"texts": [...]}."""
    return _json({"texts": list(texts)})


def kserve_v1_sentiment_body(texts: list[str] = SENTIMENT_TEXTS) -> bytes:
    """KServe v1 :predict: {"instances": [...texts]}."""
    return _json({"instances": list(texts)})


def find_label(obj) -> str | None:
    """The first "label" anywhere in a JSON answer (each system wraps its results differently)."""
    if isinstance(obj, dict):
        if isinstance(obj.get("label"), str):
            return obj["label"]
        values = obj.values()
    elif isinstance(obj, list):
        values = obj
    else:
        return None
    for value in values:
        found = find_label(value)
        if found is not None:
            return found
    return None
