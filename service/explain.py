"""Explanations: which parts of an input made the model answer as it did (issue 18, part 3).

Every method here perturbs the input and runs the variants as ordinary inferences: an image with a patch
filled with the training mean, a text without one word, a history with one value replaced by its mean, a record
with some features set to a baseline. The variants ride in the same batched run as the request's own rows,
through the model's normal batcher, and the explanation is how the model's score for its own answer moves
between them. No gradients: no second graph to export and no torch on the server, and what is measured is the
served graph itself (test-time augmentation, calibration and all).

- Occlusion (images, text, forecasts): an input's weight is score(item) - score(item without it), averaged over
  the variants that removed it. Positive: it supported the answer (for a forecast: it raised it).
- Shapley sampling (tabular records): antithetic permutations; along each, the features are switched from the
  baseline to the record's values one at a time, and a feature's weight is its mean marginal change of the score.
  The weights add up to score(record) - score(baseline).

Bounded: at most MAX_EXPLAIN_ITEMS items per request and MAX_VARIANTS model rows per item, so an explanation
costs a known multiple of a plain request; docs/explanations.md has the measured cost and the faithfulness tests.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import io
import itertools
import re

import numpy as np
from fastapi import Request
from PIL import Image
from pydantic import BaseModel, Field

from service.api.deps import run_model
from service.errors import Unprocessable
from service.repository import ModelVersion

MAX_EXPLAIN_ITEMS = 8  # items (images, texts, records) one request may ask explanations for
MAX_VARIANTS = 256  # model rows one item's explanation may add (inputs beyond it are occluded in groups)
# Patches per image side: 16 variants. The largest served CNN costs about as much per image in a batch as alone,
# so an image explanation costs ~1 + 16 plain runs; a finer grid would break the 20x bound (docs/explanations.md).
IMAGE_GRID = 4
OVERLAY_SIDE = 128  # the overlay PNG is upscaled (by an integer factor) to about this many pixels a side
EXPLAIN_DESCRIPTION = (f"add an `explanation` to each result (at most {MAX_EXPLAIN_ITEMS} items per request; "
                       "costs extra inferences: docs/explanations.md)")


class ImageExplanation(BaseModel):
    relevance: list[list[float]] = Field(description="height x width of the image as the model saw it (after resizing): "
                                                     "how much hiding that pixel's patches lowered the answer's score")
    overlay_png: str = Field(description="base64 PNG: the image with the relevance over it (red supports, blue opposes)")


class TextExplanation(BaseModel):
    tokens: list[str] = Field(description="the words of the text as written (split at whitespace), in order")
    weights: list[float] = Field(description="one per word: how much deleting it lowered the predicted label's "
                                             "probability (positive pushes towards the predicted label)")


class FeatureWeight(BaseModel):
    name: str
    weight: float = Field(description="Shapley estimate: how much this feature moved the score from the baseline's")


class FeatureExplanation(BaseModel):
    features: list[FeatureWeight] = Field(description="sorted by |weight|, largest first")


class ForecastExplanation(BaseModel):
    history_weights: list[float] = Field(description="one per history value used (oldest first): how much it raised "
                                                     "(positive) or lowered the mean median forecast over the horizon")


def check_items(count: int) -> None:
    if count > MAX_EXPLAIN_ITEMS:
        raise Unprocessable(f"'explain' takes at most {MAX_EXPLAIN_ITEMS} items per request, not {count}", param="explain")


# --- running variants -------------------------------------------------------------------------------------------

def _rows(feeds: dict[str, np.ndarray]) -> int:
    return len(next(iter(feeds.values())))


async def run_rows(request: Request, model: ModelVersion, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Infer any number of rows: more than one batch ride as several, concurrently; rows come back in order."""
    rows = _rows(feeds)
    step = model.batcher.max_batch_size or rows
    if rows <= step:
        return await run_model(request, model, feeds)
    parts = await asyncio.gather(*(run_model(request, model, {name: array[i:i + step] for name, array in feeds.items()})
                                   for i in range(0, rows, step)))
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _stack(parts: list[dict[str, np.ndarray]], pad_inputs: dict) -> dict[str, np.ndarray]:
    stacked = {}
    for name in parts[0]:
        arrays = [part[name] for part in parts]
        if arrays[0].ndim > 1 and len({array.shape[1] for array in arrays}) > 1:  # token ids: padded like the
            length = max(array.shape[1] for array in arrays)                      # batcher pads requests
            arrays = [np.pad(array, [(0, 0), (0, length - array.shape[1])] + [(0, 0)] * (array.ndim - 2),
                             constant_values=pad_inputs.get(name, 0)) for array in arrays]
        stacked[name] = np.concatenate(arrays)
    return stacked


async def run_with_variants(request: Request, model: ModelVersion, feeds: dict[str, np.ndarray],
                            variants: list[dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], list[dict]]:
    """The request's own rows and every item's variant rows in one batched inference: (the request's outputs,
    one dict of outputs per entry of `variants`)."""
    if not variants:
        return await run_rows(request, model, feeds), []
    parts = [feeds, *variants]
    bounds = np.cumsum([0] + [_rows(part) for part in parts])
    outputs = await run_rows(request, model, _stack(parts, model.batcher.pad_inputs))
    split = [{name: value[a:b] for name, value in outputs.items()} for a, b in zip(bounds[:-1], bounds[1:])]
    return split[0], split[1:]


def repeat_row(feeds: dict[str, np.ndarray], index: int, rows: int, **replaced: np.ndarray) -> dict[str, np.ndarray]:
    """Variant feeds: `replaced` inputs as given, every other input the item's own row repeated."""
    return {name: replaced[name] if name in replaced else np.repeat(array[index:index + 1], rows, axis=0)
            for name, array in feeds.items()}


# --- weights ----------------------------------------------------------------------------------------------------

def occlusion_weights(base: float, scores: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """masks [variants, *inputs] (True: removed in that variant) -> weights [*inputs]: the mean drop of the score
    over the variants that removed each input (0 for an input no variant removed)."""
    drops = float(base) - np.asarray(scores, np.float64)
    flat = masks.reshape(len(masks), -1).astype(np.float64)
    counts = flat.sum(axis=0)
    weights = np.divide(drops @ flat, counts, out=np.zeros(flat.shape[1]), where=counts > 0)
    return weights.reshape(masks.shape[1:])


def contiguous_groups(count: int, limit: int = MAX_VARIANTS) -> list[np.ndarray]:
    """0..count-1 in at most `limit` runs of neighbours (one each while count <= limit)."""
    return np.array_split(np.arange(count), min(count, limit)) if count else []


def group_masks(groups: list[np.ndarray], size: int) -> np.ndarray:
    masks = np.zeros((len(groups), size), bool)
    for row, group in enumerate(groups):
        masks[row, group] = True
    return masks


def round_sig(values, digits: int = 4) -> np.ndarray:
    """Round to `digits` significant digits of the largest magnitude (short JSON, no false precision)."""
    values = np.asarray(values, np.float64)
    peak = float(np.abs(values).max()) if values.size else 0.0
    if peak == 0.0 or not np.isfinite(peak):
        return values
    return np.round(values, digits - 1 - int(np.floor(np.log10(peak))))


# --- images -----------------------------------------------------------------------------------------------------

def patch_masks(height: int, width: int, grid: int = IMAGE_GRID) -> np.ndarray:
    """grid x grid patches covering the image, each 1.5 grid steps wide so neighbours overlap (a pixel's
    relevance is then the mean over the 1-4 patches that cover it): [grid*grid, height, width] bool."""
    def spans(size: int) -> list[tuple[int, int]]:
        side = min(size, max(1, round(1.5 * size / grid)))
        return [(int(s), int(s) + side) for s in np.round(np.linspace(0, size - side, grid))]

    masks = np.zeros((grid * grid, height, width), bool)
    for k, ((y0, y1), (x0, x1)) in enumerate(itertools.product(spans(height), spans(width))):
        masks[k, y0:y1, x0:x1] = True
    return masks


def image_fill(preprocessing: dict, channels: int) -> np.ndarray:
    """What an occluded patch is filled with: the mean the graph normalises with (0 after normalisation), in
    0-255 pixels; mid-grey when the manifest states none."""
    mean = np.asarray(preprocessing.get("mean", 0.5), np.float64).reshape(-1)
    mean = mean * 255.0 if mean.max() <= 1.0 else mean
    return np.broadcast_to(np.clip(np.round(mean), 0, 255), (channels,)).astype(np.uint8)


def occlude_images(pixels: np.ndarray, masks: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """pixels [H, W, C] uint8, masks [V, H, W] -> [V, H, W, C], each with its mask's pixels set to `fill`."""
    variants = np.repeat(pixels[None], len(masks), axis=0)
    variants[masks] = fill
    return variants


def overlay_png(pixels: np.ndarray, relevance: np.ndarray, side: int = OVERLAY_SIDE) -> str:
    """base64 PNG: the image (upscaled by an integer factor, nearest) under the relevance, red where it supports the
    answer and blue where it opposes it, opacity from |relevance| / max |relevance|."""
    height, width = relevance.shape
    scale = max(1, side // max(height, width))
    size = (width * scale, height * scale)
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).convert("RGB")
    base = np.asarray(image.resize(size, Image.Resampling.NEAREST), np.float32)
    base = 0.6 * base + 0.4 * base.mean(axis=-1, keepdims=True)  # a little desaturated, so the colours read
    heat = np.asarray(Image.fromarray(relevance.astype(np.float32)).resize(size, Image.Resampling.BILINEAR))
    peak = float(np.abs(relevance).max()) or 1.0
    strength = np.clip(heat / peak, -1.0, 1.0)[..., None]
    colour = np.where(strength >= 0, np.array([225.0, 25.0, 25.0]), np.array([25.0, 80.0, 235.0]))
    alpha = 0.7 * np.abs(strength)
    blended = (1.0 - alpha) * base + alpha * colour
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.round(blended), 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def image_explanation(pixels: np.ndarray, base: float, scores: np.ndarray, masks: np.ndarray) -> dict:
    relevance = occlusion_weights(base, scores, masks)
    return {"relevance": round_sig(relevance).tolist(), "overlay_png": overlay_png(pixels, relevance)}


# --- text -------------------------------------------------------------------------------------------------------

WORD = re.compile(r"\S+")


def word_deletions(text: str, ids: list[int], offsets: list[tuple[int, int]]) -> tuple[list[str], list[list[int]], np.ndarray]:
    """The words of `text` (split at whitespace, as written), token-id rows with one word's tokens deleted (one
    row per word that has tokens among `ids`; words in groups past MAX_VARIANTS), and their masks [rows, words].
    A token belongs to the word its character offset falls in (tokenizers give offsets into the original text,
    through normalisation)."""
    spans = [(m.start(), m.end()) for m in WORD.finditer(text)]
    starts = [start for start, _ in spans]
    owner = np.array([max(0, bisect.bisect_right(starts, start) - 1) for start, _ in offsets[:len(ids)]], np.int64)
    present = np.unique(owner)
    groups = [present[group] for group in contiguous_groups(len(present))]
    masks = group_masks(groups, len(spans))
    rows = [[token for token, word in zip(ids, owner) if not masks[row, word]] for row in range(len(groups))]
    return [text[a:b] for a, b in spans], rows, masks


def text_explanation(words: list[str], base: float, scores: np.ndarray, masks: np.ndarray) -> dict:
    return {"tokens": words, "weights": round_sig(occlusion_weights(base, scores, masks)).tolist()}


# --- series -----------------------------------------------------------------------------------------------------

def occlude_series(history: np.ndarray, limit: int = MAX_VARIANTS) -> tuple[np.ndarray, np.ndarray]:
    """history [L] -> (variants [V, L], masks [V, L]): each value (or run of values, past `limit`) replaced by the
    history's mean."""
    masks = group_masks(contiguous_groups(len(history), limit), len(history))
    return np.where(masks, history.mean(dtype=np.float64), history[None]).astype(history.dtype), masks


def series_explanation(base: float, scores: np.ndarray, masks: np.ndarray) -> dict:
    return {"history_weights": round_sig(occlusion_weights(base, scores, masks)).tolist()}


# --- tabular: Shapley sampling ----------------------------------------------------------------------------------

def shapley_orders(players: int, budget: int = MAX_VARIANTS, seed: int = 0) -> list[np.ndarray]:
    """Antithetic permutation pairs (an order and its reverse), as many as fit `budget` rows (at least one pair).
    Seeded: the same record gets the same explanation."""
    rng = np.random.default_rng(seed)
    pairs = max(1, (budget - 1) // max(1, players - 1) // 2)
    orders = []
    for _ in range(pairs):
        order = rng.permutation(players)
        orders += [order, order[::-1]]
    return orders


def shapley_masks(orders: list[np.ndarray], players: int) -> np.ndarray:
    """[1 + len(orders) * (players - 1), players] (True: the record's value, False: the baseline's): the empty
    coalition, then along each order the coalitions of its first 1 .. players-1 features (the full one is the
    record itself, already scored by the plain answer)."""
    masks = [np.zeros(players, bool)]
    for order in orders:
        for k in range(1, players):
            mask = np.zeros(players, bool)
            mask[order[:k]] = True
            masks.append(mask)
    return np.array(masks).reshape(-1, players)


def shapley_weights(full: float, scores: np.ndarray, orders: list[np.ndarray]) -> np.ndarray:
    """Mean marginal contribution of each feature along the orders (scores as laid out by shapley_masks)."""
    players = len(orders[0])
    weights = np.zeros(players)
    for j, order in enumerate(orders):
        chain = np.concatenate([[scores[0]], scores[1 + j * (players - 1): 1 + (j + 1) * (players - 1)], [full]])
        weights[order] += np.diff(chain)
    return weights / len(orders)


def shapley_plan(players: int, budget: int = MAX_VARIANTS) -> tuple[np.ndarray, list[np.ndarray]]:
    """(coalition masks [rows, players], the orders they follow) for one record."""
    orders = shapley_orders(players, budget)
    return shapley_masks(orders, players), orders


def feature_explanation(names: list[str], full: float, scores: np.ndarray, orders: list[np.ndarray]) -> dict:
    """{"features": [{"name", "weight"}]}: Shapley estimates from the coalitions' scores, largest |weight| first."""
    return ranked_features(names, shapley_weights(full, scores, orders))


def ranked_features(names: list[str], weights: np.ndarray) -> dict:
    weights = round_sig(weights)
    order = sorted(range(len(names)), key=lambda i: -abs(weights[i]))
    return {"features": [{"name": names[i], "weight": float(weights[i])} for i in order]}
