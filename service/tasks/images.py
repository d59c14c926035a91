"""Image inputs for the vision endpoints: multipart files or base64 JSON, decoded safely.

Hostile until proven otherwise: the format is checked, the pixel count is checked from the header
before any pixel is decoded (decompression bombs), and truncated files are refused.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import warnings
from dataclasses import dataclass
from typing import Callable, TypeVar

import numpy as np
from fastapi import Request
from PIL import Image, UnidentifiedImageError

from service.codecs import parse_json_object
from service.errors import BadRequest, PayloadTooLarge, Unprocessable, UnsupportedMediaType

FORMATS = ("PNG", "JPEG", "WEBP")
RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
            "lanczos": Image.Resampling.LANCZOS, "nearest": Image.Resampling.NEAREST}

T = TypeVar("T")
# multipart file fields taken as images too (what common upload clients name them)
FILE_FIELD_ALIASES = ("image", "file", "files")

# Our own limit is enforced per request; this only stops Pillow's warning path from being the guard.
Image.MAX_IMAGE_PIXELS = None


@dataclass
class ImageRequest:
    images: list[bytes]
    options: dict  # the other fields: top_k, model, ...


@dataclass
class ImageSpec:
    """What the model's graph expects, from the manifest's preprocessing block."""

    height: int
    width: int
    channels: int  # 1: grayscale, 3: RGB
    resample: Image.Resampling
    pad_to_square: bool

    @classmethod
    def from_manifest(cls, preprocessing: dict, input_shape: list[int]) -> "ImageSpec":
        # Graph input is NHWC uint8; the manifest may restate the sizes, the graph decides.
        _, height, width, channels = input_shape
        height = height if height > 0 else int(preprocessing.get("height", 0))
        width = width if width > 0 else int(preprocessing.get("width", 0))
        channels = channels if channels > 0 else int(preprocessing.get("channels", 3))
        resample = RESAMPLE.get(str(preprocessing.get("resize", preprocessing.get("resample", "bilinear"))).lower(),
                                Image.Resampling.BILINEAR)
        return cls(height, width, channels, resample, bool(preprocessing.get("pad_to_square", False)))


def image_request_body(fields: dict, images_note: str) -> dict:
    """The OpenAPI request body of an image route (``openapi_extra``): ``images`` as multipart files or base64 JSON
    strings, plus the route's own option ``fields`` (JSON schemas), in both forms."""
    def form(item: dict, aliases: tuple[str, ...] = ()) -> dict:
        images = {"type": "array", "minItems": 1, "description": images_note, "items": item}
        # no minItems on an alias: in a multipart body an empty list is the field left out
        also = {name: {"type": "array", "description": "the same as images", "items": item} for name in aliases}
        required = {"anyOf": [{"required": [name]} for name in ("images", *aliases)]} if aliases else {"required": ["images"]}
        return {"schema": {"type": "object", **required, "additionalProperties": False,
                           "properties": {"images": images, **also, **fields}}}

    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": form({"type": "string", "format": "binary"}, FILE_FIELD_ALIASES),
        "application/json": form({"type": "string", "format": "byte", "minLength": 4,
                                  "description": "base64 PNG, JPEG or WebP (a data: URL prefix is accepted)"}),
    }}}


def _b64(value: object, index: int) -> bytes:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"images[{index}] must be a non-empty base64 string")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"images[{index}] is not valid base64") from None


async def read_image_request(request: Request, max_images: int, max_part_bytes: int, allowed: set[str]) -> ImageRequest:
    """Multipart (files in `images`, other fields as form fields) or JSON {"images": [base64...], ...}; a field
    other than the images and ``allowed`` is a 422."""
    body = await _images_and_fields(request, max_images, max_part_bytes)
    unknown = sorted(set(body.options) - allowed)
    if unknown:
        raise Unprocessable(f"unknown fields {unknown}; allowed: images, {', '.join(sorted(allowed))}")
    return body


async def _images_and_fields(request: Request, max_images: int, max_part_bytes: int) -> ImageRequest:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=max_images, max_fields=32, max_part_size=max_part_bytes)
        except Exception as exc:  # python-multipart raises several types for malformed or oversized parts
            message = str(getattr(exc, "detail", exc))
            if "Too many files" in message:
                raise PayloadTooLarge(f"too many images; at most {max_images} per request") from None
            if "maximum size" in message:
                raise PayloadTooLarge(f"an image part exceeds {max_part_bytes} bytes") from None
            raise BadRequest(f"malformed multipart body: {message}") from None
        files, options = [], {}
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                if key != "images" and key not in FILE_FIELD_ALIASES:
                    raise BadRequest(f"unexpected file field {key!r}; send images in the 'images' field")
                files.append(await value.read())
            else:
                options[key] = value
        if not files:
            raise BadRequest("no image files in the multipart body (field 'images')")
        return ImageRequest(files, options)
    if content_type in ("application/json", ""):
        payload = parse_json_object(await request.body())
        raw = payload.pop("images", None)
        if not isinstance(raw, list) or not raw:
            raise BadRequest("'images' must be a non-empty list of base64 strings")
        if len(raw) > max_images:
            raise PayloadTooLarge(f"{len(raw)} images; at most {max_images} per request")
        return ImageRequest([_b64(v, i) for i, v in enumerate(raw)], payload)
    raise UnsupportedMediaType(f"unsupported Content-Type {content_type!r}; use multipart/form-data or application/json")


def open_image(data: bytes, index: int, channels: int, max_pixels: int, max_side: int | None = None) -> Image.Image:
    """Bytes -> a decoded grayscale (channels 1) or RGB picture at its own size, transparency flattened onto white.
    The pixel count (and ``max_side``, the longer side, when given) is checked from the header, before decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            if image.width * image.height > max_pixels:
                raise PayloadTooLarge(f"image {index} is {image.width}x{image.height}; at most {max_pixels} pixels")
            if max_side is not None and max(image.width, image.height) > max_side:
                raise PayloadTooLarge(f"image {index} is {image.width}x{image.height}; this model takes at most "
                                      f"{max_side} px on the longer side")
            image.load()
    except PayloadTooLarge:
        raise
    except UnidentifiedImageError:
        raise UnsupportedMediaType(f"image {index} is not a PNG, JPEG or WebP image") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadRequest(f"image {index} could not be decoded: {exc}") from None
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("L" if channels == 1 else "RGB")


def decode_image(data: bytes, index: int, spec: ImageSpec, max_pixels: int) -> np.ndarray:
    """Bytes -> uint8 HxWxC array the model expects (blocking: call off the event loop)."""
    image = open_image(data, index, spec.channels, max_pixels)
    if spec.pad_to_square and image.width != image.height:
        side = max(image.size)
        square = Image.new(image.mode, (side, side), 0)
        square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
        image = square
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), spec.resample)
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


# Below this many encoded bytes in a request, decoding takes well under a millisecond: do it inline
# rather than pay a thread hand-off (which costs more than the decode on a busy small machine).
INLINE_DECODE_BYTES = 32 * 1024


async def decode_off_loop(images: list[bytes], work: Callable[[], T]) -> T:
    """``work()`` (decoding ``images``) inline when the request is small, else in a worker thread."""
    if sum(len(data) for data in images) <= INLINE_DECODE_BYTES:
        return work()
    return await asyncio.to_thread(work)


async def decode_images(images: list[bytes], spec: ImageSpec, max_pixels: int) -> np.ndarray:
    def work() -> np.ndarray:
        return np.stack([decode_image(data, i, spec, max_pixels) for i, data in enumerate(images)])

    return await decode_off_loop(images, work)


def int_option(options: dict, name: str, default: int, low: int, high: int) -> int:
    value = options.get(name, default)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise Unprocessable(f"{name!r} must be an integer from {low} to {high}")
    return value


def float_option(options: dict, name: str, default: float, low: float, high: float) -> float:
    """A JSON number (not a boolean), or in a multipart form its text; finite and within [low, high]."""
    value = options.get(name, default)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise Unprocessable(f"{name!r} must be a number from {low} to {high}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise Unprocessable(f"{name!r} must be a number from {low} to {high}")
    return float(value)


def bool_option(options: dict, name: str, default: bool = False) -> bool:
    """A JSON boolean, or in a multipart form the text true or false (what the OpenAPI schema's boolean allows;
    0/1 are refused like any other text)."""
    value = options.get(name, default)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        value = value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise Unprocessable(f"{name!r} must be a boolean (true or false)")
    return value


def model_option(options: dict) -> str | None:
    value = options.get("model")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Unprocessable("'model' must be a string: name or name:version")
    return value
