"""Vision endpoints: image classification and tumor detection, from raw image files."""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from service.api.deps import RepositoryDep, error_responses, run_model
from service.errors import InferenceFailed, ModelLoadError, Unprocessable
from service.ood import OodScore, attach_ood
from service.repository import ModelVersion
from service.responses import JSONBytes
from service.security import require_api_key
from service.tasks.images import ImageSpec, decode_images, int_option, model_option, read_image_request

CLASSIFY_TASK = "image-classification"
TUMOR_TASK = "tumor-detection"

router = APIRouter(prefix="/v1", tags=["vision"], dependencies=[Depends(require_api_key)])

MAX_IMAGES_NOTE = "at most NEUROSERVE_MAX_IMAGES_PER_REQUEST images (64 by default); more is a 413"
IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["images"], "properties": {
                "images": {"type": "array", "minItems": 1, "description": MAX_IMAGES_NOTE,
                           "items": {"type": "string", "format": "binary"}},
                "top_k": {"type": "integer", "minimum": 1, "maximum": 10},
                "model": {"type": "string", "description": "name or name:version"}}}},
            "application/json": {"schema": {"type": "object", "required": ["images"], "properties": {
                "images": {"type": "array", "minItems": 1, "description": MAX_IMAGES_NOTE,
                           "items": {"type": "string", "format": "byte", "minLength": 4,
                                     "description": "base64 PNG, JPEG or WebP (a data: URL prefix is accepted)"}},
                "top_k": {"type": "integer", "minimum": 1, "maximum": 10},
                "model": {"type": "string", "description": "name or name:version"}}}},
        },
    }
}
ERRORS = error_responses(
    s400="Malformed body, bad base64, an undecodable image, or a model of another task",
    s413="Too many images, too many pixels or too large a body",
    s415="Not multipart/JSON, or an image that is not PNG, JPEG or WebP",
    s422="Invalid or unknown option (top_k, model)",
)


class LabelScore(BaseModel):
    label: str
    score: float


class Classification(BaseModel):
    label: str
    score: float
    top_k: list[LabelScore]
    ood: OodScore | None = Field(default=None, description="present when the model has an OOD profile")


class ClassifyResponse(BaseModel):
    model: str
    version: str
    results: list[Classification]


class Subtype(BaseModel):
    label: str
    score: float
    probabilities: dict[str, float]


class TumorResult(BaseModel):
    tumor: bool
    probability: float
    threshold: float
    subtype: Subtype | None = Field(default=None, description="present when the model has a subtype head")
    ood: OodScore | None = Field(default=None, description="present when the model has an OOD profile")


class TumorResponse(BaseModel):
    model: str
    version: str
    results: list[TumorResult]


def _image_input(model: ModelVersion):
    return model.session.inputs[0]  # checked at load (prepare_image_model)


def _prepare(outputs: tuple[str, ...]):
    def prepare_image_model(model: ModelVersion) -> dict:
        """At load: one uint8 NHWC image input with 1 or 3 channels and the task's outputs, so a model exported
        in another layout (NCHW float, say) is refused with the reason instead of loading READY and failing every
        request."""
        inputs = model.session.inputs
        shape = [f"{d}" if d >= 0 else "?" for d in inputs[0].shape] if inputs else []
        if len(inputs) != 1 or inputs[0].datatype != "UINT8" or len(inputs[0].shape) != 4:
            found = ", ".join(f"{s.name!r} {s.datatype} [{', '.join(map(str, s.shape))}]" for s in inputs)
            raise ModelLoadError(f"an image model takes one UINT8 NHWC tensor [batch, height, width, channels]; "
                                 f"this graph takes {found or 'nothing'}")
        if inputs[0].shape[3] not in (-1, 1, 3):
            raise ModelLoadError(f"an image model's last input axis is its channels (1 or 3), not {shape[3]}: "
                                 f"[{', '.join(shape)}] looks like NCHW; export NHWC uint8")
        missing = [name for name in outputs if name not in model.session.output_names]
        if missing:
            raise ModelLoadError(f"a {model.manifest.task} model outputs {list(outputs)}; this graph lacks {missing}")
        labels = model.manifest.labels
        if outputs == ("probabilities",):
            width = next(s.shape for s in model.session.outputs if s.name == "probabilities")
            if len(width) != 2 or (width[1] >= 0 and width[1] != len(labels)):
                raise ModelLoadError(f"'probabilities' must be [batch, {len(labels)}] (one per label), "
                                     f"not {width}")
        return {}
    return prepare_image_model


PREPARERS = {CLASSIFY_TASK: _prepare(("probabilities",)), TUMOR_TASK: _prepare(("tumor_probability",))}


async def _run_images(request: Request, model: ModelVersion, images: list[bytes]) -> dict[str, np.ndarray]:
    settings = request.app.state.settings
    spec = _image_input(model)
    pixels = await decode_images(images, ImageSpec.from_manifest(model.manifest.preprocessing, spec.shape),
                                 settings.max_image_pixels)
    # Larger requests than one batch ride as several, concurrently; rows come back in order.
    step = model.batcher.max_batch_size or len(pixels)
    if len(pixels) <= step:
        return await run_model(request, model, {spec.name: pixels})
    parts = await asyncio.gather(*(run_model(request, model, {spec.name: pixels[i:i + step]})
                                   for i in range(0, len(pixels), step)))
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


async def _read(request: Request, allowed: set[str]):
    settings = request.app.state.settings
    body = await read_image_request(request, settings.max_images_per_request, settings.max_body_bytes)
    unknown = sorted(set(body.options) - allowed)
    if unknown:
        raise Unprocessable(f"unknown fields {unknown}; allowed: images, {', '.join(sorted(allowed))}")
    return body


@router.post("/images/classify", response_model=ClassifyResponse, responses=ERRORS, openapi_extra=IMAGE_BODY,
             summary="Classify images (multipart files or base64 JSON)")
async def classify(request: Request, repo: RepositoryDep) -> JSONBytes:
    body = await _read(request, {"top_k", "model"})
    top_k = int_option(body.options, "top_k", 5, 1, 10)
    model = repo.for_task(CLASSIFY_TASK, model_option(body.options))
    labels = model.manifest.labels
    outputs = await _run_images(request, model, body.images)
    probabilities = outputs.get("probabilities")
    if probabilities is None or probabilities.ndim != 2 or probabilities.shape[1] != len(labels):
        raise InferenceFailed(f"model {model.name!r} must output 'probabilities' [batch, {len(labels)}]")
    k = min(top_k, len(labels))
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    results = []
    for row, indices in zip(probabilities, order):
        ranked = [{"label": labels[i], "score": float(row[i])} for i in indices]
        results.append({"label": ranked[0]["label"], "score": ranked[0]["score"], "top_k": ranked})
    attach_ood(request, model, outputs, results)
    return JSONBytes({"model": model.name, "version": model.version, "results": results})


@router.post("/tumor/detect", response_model=TumorResponse, responses=ERRORS, openapi_extra=IMAGE_BODY,
             summary="Detect brain tumors in MRI slices (multipart files or base64 JSON)")
async def detect_tumor(request: Request, repo: RepositoryDep) -> JSONBytes:
    body = await _read(request, {"model"})
    model = repo.for_task(TUMOR_TASK, model_option(body.options))
    threshold = float(model.manifest.parameters.get("threshold", 0.5))
    outputs = await _run_images(request, model, body.images)
    probability = outputs.get("tumor_probability")
    if probability is None:
        raise InferenceFailed(f"model {model.name!r} must output 'tumor_probability'")
    probability = probability.reshape(len(body.images), -1)[:, -1]
    subtypes = outputs.get("subtype_probabilities")
    labels = model.manifest.labels
    results = []
    for i, p in enumerate(probability):
        result = {"tumor": bool(p >= threshold), "probability": float(p), "threshold": threshold}
        if subtypes is not None and subtypes.shape[-1] == len(labels):
            row = subtypes[i]
            best = int(np.argmax(row))
            result["subtype"] = {"label": labels[best], "score": float(row[best]),
                                 "probabilities": {label: float(v) for label, v in zip(labels, row)}}
        results.append(result)
    attach_ood(request, model, outputs, results)
    return JSONBytes({"model": model.name, "version": model.version, "results": results})


