"""Object detection: pictures (multipart files or base64 JSON, as for classify) -> boxes with labels and scores in
the pixels of each picture as sent.

The graph takes letterboxed uint8 pictures and returns every grid cell's box and its peak-filtered class scores
(see models/<name>/README.md); this adapter letterboxes (service/detection.py), keeps the (cell, class) pairs at or
above the score threshold, runs NMS per class at the manifest's IoU threshold and maps the boxes back.
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from service.api.deps import RepositoryDep, error_responses
from service.detection import letterbox, postprocess
from service.errors import InferenceFailed, ModelLoadError
from service.explain import run_rows
from service.repository import ModelVersion
from service.responses import JSONBytes
from service.security import require_api_key
from service.tasks.images import (decode_off_loop, float_option, image_request_body, int_option, model_option,
                                  open_image, read_image_request)

DETECT_TASK = "object-detection"
MAX_DETECTIONS = 300  # the most a request may ask for (the model's default is in its manifest)
OPTIONS = {"score_threshold", "max_detections", "model"}

router = APIRouter(prefix="/v1", tags=["vision"], dependencies=[Depends(require_api_key)])

_FIELDS = {
    "score_threshold": {"type": "number", "minimum": 0, "maximum": 1,
                        "description": "keep detections scoring at least this; the model's own (its card) otherwise"},
    "max_detections": {"type": "integer", "minimum": 1, "maximum": MAX_DETECTIONS,
                       "description": "at most this many per picture, best first (the model's default otherwise)"},
    "model": {"type": "string", "description": "name or name:version"},
}
DETECT_BODY = image_request_body(_FIELDS, "at most NEUROSERVE_MAX_IMAGES_PER_REQUEST pictures (64 by default); "
                                          "each at most 1,024 px on its longer side")
ERRORS = error_responses(
    s400="Malformed body, bad base64, an undecodable image, or a model of another task",
    s413="Too many images, too many pixels, a picture over the model's longest side, or too large a body",
    s415="Not multipart/JSON, or an image that is not PNG, JPEG or WebP",
    s422="Invalid or unknown option (score_threshold, max_detections, model)",
)


class Detection(BaseModel):
    label: str
    score: float
    box: list[float] = Field(description="[x_min, y_min, x_max, y_max] in pixels of the picture as sent")


class DetectionResult(BaseModel):
    detections: list[Detection] = Field(description="sorted by score, highest first")
    width: int = Field(description="the picture's width in pixels")
    height: int = Field(description="the picture's height in pixels")


class DetectResponse(BaseModel):
    model: str
    version: str
    results: list[DetectionResult]


def prepare_detection_model(model: ModelVersion) -> dict:
    """At load: one UINT8 [batch, S, S, 3] input, outputs 'boxes' [batch, L, 4] and 'scores' [batch, L, labels],
    and usable thresholds in the manifest's parameters."""
    inputs = model.session.inputs
    if len(inputs) != 1 or inputs[0].datatype != "UINT8" or len(inputs[0].shape) != 4 \
            or inputs[0].shape[3] != 3 or inputs[0].shape[1] <= 0 or inputs[0].shape[1] != inputs[0].shape[2]:
        raise ModelLoadError("a detection model takes one UINT8 tensor [batch, S, S, 3] (letterboxed RGB, S fixed)")
    shapes = {s.name: s.shape for s in model.session.outputs}
    labels = model.manifest.labels
    if "boxes" not in shapes or "scores" not in shapes:
        raise ModelLoadError(f"a detection model outputs 'boxes' and 'scores'; this graph has {sorted(shapes)}")
    if len(shapes["boxes"]) != 3 or shapes["boxes"][2] != 4 or len(shapes["scores"]) != 3 \
            or shapes["scores"][2] not in (-1, len(labels)) or not labels:
        raise ModelLoadError(f"'boxes' must be [batch, L, 4] and 'scores' [batch, L, {len(labels)}] (one per label); "
                             f"got {shapes['boxes']} and {shapes['scores']}")
    p = model.manifest.parameters
    extras = {"size": int(inputs[0].shape[1]), "score_threshold": float(p.get("score_threshold", 0.3)),
              "iou_threshold": float(p.get("iou_threshold", 0.5)),
              "max_detections": int(p.get("max_detections", 100)), "max_side": int(p.get("max_side", 1024))}
    if not (0 <= extras["score_threshold"] <= 1 and 0 < extras["iou_threshold"] <= 1
            and 1 <= extras["max_detections"] <= MAX_DETECTIONS and extras["max_side"] >= 1):
        raise ModelLoadError(f"manifest parameters out of range: {extras}")
    return extras


PREPARERS = {DETECT_TASK: prepare_detection_model}


@router.post("/images/detect", response_model=DetectResponse, responses=ERRORS, openapi_extra=DETECT_BODY,
             summary="Detect road signs in pictures: boxes, labels, scores (multipart files or base64 JSON)")
async def detect(request: Request, repo: RepositoryDep) -> JSONBytes:
    settings = request.app.state.settings
    body = await read_image_request(request, settings.max_images_per_request, settings.max_body_bytes, OPTIONS)
    model = repo.for_task(DETECT_TASK, model_option(body.options))
    extras = model.extras
    threshold = float_option(body.options, "score_threshold", extras["score_threshold"], 0.0, 1.0)
    max_det = int_option(body.options, "max_detections", extras["max_detections"], 1, MAX_DETECTIONS)

    def work() -> tuple[np.ndarray, list[tuple[float, int, int]]]:
        canvases, geometry = [], []
        for i, data in enumerate(body.images):
            rgb = np.asarray(open_image(data, i, 3, settings.max_image_pixels, extras["max_side"]), dtype=np.uint8)
            canvas, scale = letterbox(rgb, extras["size"])
            canvases.append(canvas)
            geometry.append((scale, rgb.shape[0], rgb.shape[1]))
        return np.stack(canvases), geometry

    pixels, geometry = await decode_off_loop(body.images, work)
    outputs = await run_rows(request, model, {model.session.inputs[0].name: pixels})
    boxes, scores = outputs.get("boxes"), outputs.get("scores")
    if boxes is None or scores is None or boxes.shape[:2] != scores.shape[:2] or len(boxes) != len(pixels):
        raise InferenceFailed(f"model {model.name!r} must output 'boxes' [batch, L, 4] and 'scores' [batch, L, C]")
    labels = model.manifest.labels
    results = []
    for (scale, height, width), b, s in zip(geometry, boxes, scores):
        d = postprocess(b, s, scale=scale, height=height, width=width, score_threshold=threshold,
                        max_detections=max_det, iou_threshold=extras["iou_threshold"])
        results.append({"detections": [{"label": labels[k], "score": round(float(v), 5),
                                        "box": [round(float(x), 2) for x in box]}
                                       for box, v, k in zip(d.boxes, d.scores, d.labels)],
                        "width": width, "height": height})
    return JSONBytes({"model": model.name, "version": model.version, "results": results})
