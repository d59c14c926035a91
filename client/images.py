"""Image inputs -> multipart parts: file paths, raw bytes, PIL images and numpy arrays.

numpy arrays are encoded to PNG here (zlib, no Pillow needed); PIL images are saved as PNG by the
Pillow that made them, so the client itself never imports Pillow.
"""

from __future__ import annotations

import struct
import zlib
from os import PathLike
from pathlib import Path
from typing import Any, Iterable, Union

import numpy as np

ImageInput = Union[str, PathLike, bytes, bytearray, np.ndarray, Any]  # Any: a PIL.Image.Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (grey, RGB, RGBA)
SUFFIX_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


def sniff_content_type(data: bytes) -> str:
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"  # the server answers 415 with its own message


def png_bytes(array: np.ndarray) -> bytes:
    """uint8 HxW, HxWx1, HxWx3 or HxWx4 -> an 8-bit PNG file."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"image arrays must be uint8, not {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in PNG_COLOR_TYPES or 0 in array.shape:
        raise ValueError(f"image arrays must be HxW or HxWx1/3/4, not shape {array.shape}")
    height, width, channels = array.shape
    rows = np.ascontiguousarray(array).reshape(height, width * channels)
    scanlines = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter type 0 per row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, PNG_COLOR_TYPES[channels], 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 6)) + chunk(b"IEND", b"")


def _is_pil(image: Any) -> bool:
    return type(image).__module__.startswith("PIL.") and hasattr(image, "save")


def encode_image(image: ImageInput, index: int) -> tuple[str, bytes, str]:
    """One image -> (filename, bytes, content type) for a multipart part."""
    if isinstance(image, (str, PathLike)):
        path = Path(image)
        data = path.read_bytes()
        return path.name, data, SUFFIX_TYPES.get(path.suffix.lower()) or sniff_content_type(data)
    if isinstance(image, (bytes, bytearray)):
        data = bytes(image)
        return f"image-{index}", data, sniff_content_type(data)
    if isinstance(image, np.ndarray):
        return f"image-{index}.png", png_bytes(image), "image/png"
    if _is_pil(image):
        import io

        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return f"image-{index}.png", buffer.getvalue(), "image/png"
    raise TypeError(f"unsupported image type {type(image).__name__}: give a path, bytes, a PIL image or a uint8 array")


def image_list(images: ImageInput | Iterable[ImageInput]) -> list[ImageInput]:
    """One image or several; a 4-D array is a batch of HxWxC images."""
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, (str, PathLike, bytes, bytearray)) or _is_pil(images):
        return [images]
    return list(images)


def image_files(images: ImageInput | Iterable[ImageInput]) -> list[tuple[str, tuple[str, bytes, str]]]:
    items = image_list(images)
    if not items:
        raise ValueError("give at least one image")
    return [("images", encode_image(image, i)) for i, image in enumerate(items)]
