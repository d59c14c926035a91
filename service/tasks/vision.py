"""Vision endpoints: image classification and tumor detection, from raw image files."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from service.api.deps import RepositoryDep, error_responses
from service.errors import InferenceFailed, ModelLoadError
from service.explain import (EXPLAIN_DESCRIPTION, ImageExplanation, check_items, image_explanation, image_fill,
                             occlude_images, patch_masks, run_with_variants)
from service.ood import OodScore, attach_ood
from service.repository import ModelVersion
from service.responses import JSONBytes
from service.security import require_api_key
from service.tasks.images import (ImageSpec, bool_option, decode_images, image_request_body, int_option, model_option,
                                  read_image_request)

CLASSIFY_TASK = "image-classification"
TUMOR_TASK = "tumor-detection"

router = APIRouter(prefix="/v1", tags=["vision"], dependencies=[Depends(require_api_key)])

MAX_IMAGES_NOTE = "at most NEUROSERVE_MAX_IMAGES_PER_REQUEST images (64 by default); more is a 413"
IMAGE_BODY = image_request_body({"top_k": {"type": "integer", "minimum": 1, "maximum": 10},
                                 "explain": {"type": "boolean", "description": EXPLAIN_DESCRIPTION},
                                 "model": {"type": "string", "description": "name or name:version"}}, MAX_IMAGES_NOTE)
ERRORS = error_responses(
    s400="Malformed body, bad base64, an undecodable image, or a model of another task",
    s413="Too many images, too many pixels or too large a body",
    s415="Not multipart/JSON, or an image that is not PNG, JPEG or WebP",
    s422="Invalid or unknown option (top_k, explain, model); explain with too many images",
)


class LabelScore(BaseModel):
    label: str
    score: float


class Classification(BaseModel):
    label: str
    score: float
    top_k: list[LabelScore]
    ood: OodScore | None = Field(default=None, description="present when the model has an OOD profile")
    explanation: ImageExplanation | None = Field(default=None, description="with explain: for the predicted label")


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
    explanation: ImageExplanation | None = Field(
        default=None, description="with explain: for the answer given (tumour when `tumor`, else no tumour)")


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


class _Occlusion:
    """With explain: each image's patch-occluded variants (run with the images) and what they did to a score."""

    def __init__(self, pixels: np.ndarray, masks: np.ndarray, outputs: list[dict]):
        self.pixels, self.masks, self.outputs = pixels, masks, outputs

    def explain(self, results: list[dict], base: np.ndarray, scores) -> None:
        """base [n]: each image's score for its answer; scores(i, outputs): its variants' scores for that answer."""
        for i, result in enumerate(results):
            result["explanation"] = image_explanation(self.pixels[i], base[i], scores(i, self.outputs[i]), self.masks)


async def _run_images(request: Request, model: ModelVersion, images: list[bytes],
                      explain: bool = False) -> tuple[dict[str, np.ndarray], _Occlusion | None]:
    """The model's outputs for the images (more than one batch ride as several, concurrently; rows come back in
    order), and with explain their occluded variants' outputs, run with them."""
    settings = request.app.state.settings
    spec = _image_input(model)
    pixels = await decode_images(images, ImageSpec.from_manifest(model.manifest.preprocessing, spec.shape),
                                 settings.max_image_pixels)
    if not explain:
        outputs, _ = await run_with_variants(request, model, {spec.name: pixels}, [])
        return outputs, None
    masks = patch_masks(pixels.shape[1], pixels.shape[2])
    fill = image_fill(model.manifest.preprocessing, pixels.shape[3])
    variants = [{spec.name: occlude_images(image, masks, fill)} for image in pixels]
    outputs, varied = await run_with_variants(request, model, {spec.name: pixels}, variants)
    return outputs, _Occlusion(pixels, masks, varied)


async def _read(request: Request, allowed: set[str]):
    settings = request.app.state.settings
    body = await read_image_request(request, settings.max_images_per_request, settings.max_body_bytes, allowed)
    explain = bool_option(body.options, "explain")
    if explain:
        check_items(len(body.images))
    return body, explain


@router.post("/images/classify", response_model=ClassifyResponse, responses=ERRORS, openapi_extra=IMAGE_BODY,
             summary="Classify images (multipart files or base64 JSON)")
async def classify(request: Request, repo: RepositoryDep) -> JSONBytes:
    body, explain = await _read(request, {"top_k", "explain", "model"})
    top_k = int_option(body.options, "top_k", 5, 1, 10)
    model = repo.for_task(CLASSIFY_TASK, model_option(body.options))
    labels = model.manifest.labels
    outputs, occlusion = await _run_images(request, model, body.images, explain)
    probabilities = outputs.get("probabilities")
    if probabilities is None or probabilities.ndim != 2 or probabilities.shape[1] != len(labels):
        raise InferenceFailed(f"model {model.name!r} must output 'probabilities' [batch, {len(labels)}]")
    k = min(top_k, len(labels))
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    results = []
    for row, indices in zip(probabilities, order):
        ranked = [{"label": labels[i], "score": float(row[i])} for i in indices]
        results.append({"label": ranked[0]["label"], "score": ranked[0]["score"], "top_k": ranked})
    if occlusion:  # for the predicted label
        occlusion.explain(results, probabilities[np.arange(len(order)), order[:, 0]],
                          lambda i, varied: varied["probabilities"][:, order[i, 0]])
    attach_ood(request, model, outputs, results)
    return JSONBytes({"model": model.name, "version": model.version, "results": results})


@router.post("/tumor/detect", response_model=TumorResponse, responses=ERRORS, openapi_extra=IMAGE_BODY,
             summary="Detect brain tumors in MRI slices (multipart files or base64 JSON)")
async def detect_tumor(request: Request, repo: RepositoryDep) -> JSONBytes:
    body, explain = await _read(request, {"explain", "model"})
    model = repo.for_task(TUMOR_TASK, model_option(body.options))
    threshold = float(model.manifest.parameters.get("threshold", 0.5))
    outputs, occlusion = await _run_images(request, model, body.images, explain)
    if outputs.get("tumor_probability") is None:
        raise InferenceFailed(f"model {model.name!r} must output 'tumor_probability'")

    def tumor_probability(values: dict) -> np.ndarray:
        return values["tumor_probability"].reshape(len(values["tumor_probability"]), -1)[:, -1]

    probability = tumor_probability(outputs)
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
    if occlusion:  # for the answer given: P(tumour) when it says tumour, else P(no tumour), up to a constant
        sign = np.where(probability >= threshold, 1.0, -1.0)
        occlusion.explain(results, sign * probability, lambda i, varied: sign[i] * tumor_probability(varied))
    attach_ood(request, model, outputs, results)
    return JSONBytes({"model": model.name, "version": model.version, "results": results})


