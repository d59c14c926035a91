"""Text endpoints: sentiment with RNN/GRU/LSTM models and the tokenizer saved beside each model."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from tokenizers import Tokenizer

from service.api.deps import RepositoryDep, error_responses
from service.errors import ModelLoadError
from service.explain import (EXPLAIN_DESCRIPTION, TextExplanation, check_items, run_with_variants, text_explanation,
                             word_deletions)
from service.ood import OodScore, attach_ood
from service.repository import ModelVersion
from service.responses import JSONBytes
from service.security import require_api_key
from service.threads import off_loop

SENTIMENT_TASK = "text-sentiment"
MAX_TEXTS = 64
MAX_TEXT_CHARS = 5000

router = APIRouter(prefix="/v1/text", tags=["text"], dependencies=[Depends(require_api_key)])
ERRORS = error_responses(s422="Empty, over-long or too many texts (with explain, at most 8); wrong types; unknown fields")


def prepare_text_model(model: ModelVersion) -> dict:
    """Load the tokenizer once per version and check the graph takes token ids and lengths."""
    if not model.manifest.tokenizer:
        raise ModelLoadError("the manifest names no tokenizer file")
    path = model.resource(model.manifest.tokenizer)
    if not path.is_file():
        raise ModelLoadError(f"tokenizer file {model.manifest.tokenizer!r} is missing")
    names = {spec.name: spec for spec in model.session.inputs}
    if "input_ids" not in names or names["input_ids"].datatype != "INT64":
        raise ModelLoadError("a text model takes 'input_ids' INT64 [batch, seq]")
    if "probabilities" not in model.session.output_names:
        raise ModelLoadError("a sentiment model outputs 'probabilities' [batch, 2]")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    unk = next((tokenizer.token_to_id(t) for t in ("[UNK]", "<unk>", "<UNK>") if tokenizer.token_to_id(t) is not None), 1)
    return {"tokenizer": tokenizer, "max_tokens": int(model.manifest.parameters.get("max_tokens", 128)),
            "unk_id": unk, "uses_lengths": "lengths" in names}


PREPARERS = {SENTIMENT_TASK: prepare_text_model}


class SentimentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS, pattern=r"\S")]] = Field(
        min_length=1, max_length=MAX_TEXTS, description=f"1-{MAX_TEXTS} texts, each 1-{MAX_TEXT_CHARS} characters, not blank")
    model: str | None = Field(default=None, description="name or name:version; the task's default otherwise")
    explain: bool = Field(default=False, strict=True, description=EXPLAIN_DESCRIPTION)


class SentimentResult(BaseModel):
    label: str = Field(description="positive or negative")
    score: float = Field(description="probability that the text is positive")
    ood: OodScore | None = Field(default=None, description="present when the model has an OOD profile")
    explanation: TextExplanation | None = Field(default=None, description="with explain: one weight per word")


class SentimentResponse(BaseModel):
    model: str
    version: str
    results: list[SentimentResult]


def encode_texts(extras: dict, texts: list[str], explain: bool = False):
    """Token ids padded with 0 to the longest text of this request (the batcher pads across requests); with
    explain, also (the words, one variant feed per text with each word deleted in turn, their masks)."""
    encodings = extras["tokenizer"].encode_batch(texts)
    feeds = token_feeds(extras, [e.ids[: extras["max_tokens"]] for e in encodings])
    if not explain:
        return feeds
    deletions = [word_deletions(text, e.ids[: extras["max_tokens"]], e.offsets) for text, e in zip(texts, encodings)]
    return feeds, [(words, token_feeds(extras, rows), masks) for words, rows, masks in deletions]


def token_feeds(extras: dict, rows: list[list[int]]) -> dict[str, np.ndarray]:
    rows = [row or [extras["unk_id"]] for row in rows]
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    ids = np.zeros((len(rows), int(lengths.max(initial=1))), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    feeds = {"input_ids": ids}
    if extras["uses_lengths"]:
        feeds["lengths"] = lengths
    return feeds


@router.post("/sentiment", response_model=SentimentResponse, responses=ERRORS, summary="Sentiment of short English texts")
async def sentiment(body: SentimentRequest, request: Request, repo: RepositoryDep) -> JSONBytes:
    model = repo.for_task(SENTIMENT_TASK, body.model)
    if body.explain:
        check_items(len(body.texts))
    encoded = await off_loop(lambda: encode_texts(model.extras, body.texts, body.explain), sum(map(len, body.texts)))
    feeds, deletions = encoded if body.explain else (encoded, [])
    outputs, varied = await run_with_variants(request, model, feeds, [variant for _, variant, _ in deletions])
    positive = outputs["probabilities"][:, -1]
    results = [{"label": "positive" if p >= 0.5 else "negative", "score": float(p)} for p in positive]
    for result, p, (words, _, masks), variant in zip(results, positive, deletions, varied):
        sign = 1.0 if p >= 0.5 else -1.0  # towards the predicted label: P(positive), or P(negative) up to a constant
        result["explanation"] = text_explanation(words, sign * p, sign * variant["probabilities"][:, -1], masks)
    attach_ood(request, model, outputs, results)
    return JSONBytes({"model": model.name, "version": model.version, "results": results})
