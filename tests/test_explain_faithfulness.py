"""Explanations of the committed models are faithful, on real validation inputs (issue 18, part 3).

For each modality: deleting the inputs an explanation ranks highest changes the model's score for its answer more
than deleting as many random inputs ("deletion" or "region perturbation", Samek et al. 2017), asked through the
real endpoints. Images are deleted in square regions (an eighth of the side), ranked by mean relevance, because
scattered single pixels are a different perturbation from the patches the explanation is made of; deleted means
filled as the explanation fills (the training mean), for text the words are removed, for forecasts the values set to
the history's mean. Also the measured cost bound: an explanation at batch 1 within 20x a plain request.

Skipped, with the reason, when the data (../shared/data or NEUROSERVE_DATA_DIR) or a model folder is absent.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

from scripts.explanation_examples import (MODELS, cifar_validation, data_dir, fraud_validation, png_b64,
                                          price_validation, real_client, sentiment_validation, traffic_validation,
                                          tumor_validation, vitals_validation)
from service.explain import MAX_EXPLAIN_ITEMS, image_fill
from service.manifest import read_manifest

SERVED = ["cifar10-resnet", "tumor-cnn", "sentiment-lstm", "traffic-lstm", "prices-lstm"]
TABULAR = ["fraud-mlp", "icu-grud"]  # each test skips while its model is absent


@pytest.fixture(scope="module")
def real():
    root = data_dir()
    if root is None:
        pytest.skip("real data not found: set NEUROSERVE_DATA_DIR or put it at ../shared/data beside the repo")
    missing = [name for name in SERVED if not (MODELS / name / "manifest.json").exists()]
    if missing:
        pytest.skip(f"models {missing} are not in the repository")
    with real_client(SERVED + [name for name in TABULAR if (MODELS / name / "manifest.json").exists()]) as client:
        yield client, root


def _post(client, path: str, body: dict) -> dict:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _compare(top: list[float], random: list[float]) -> tuple[float, float, float]:
    top, random = np.array(top), np.array(random)
    return float(top.mean()), float(random.mean()), float((top > random).mean())


def _deletions(client, path: str, field: str, items: list, edit, change, encode=lambda item: item, **extra):
    """Explain `items` (the request's `field`, MAX_EXPLAIN_ITEMS a request), ask again with each item's two edits
    edit(item, answer) -> (top-ranked inputs deleted, as many random ones deleted), and compare how far each moved:
    change(answer, result). Returns (mean move top, mean move random, share of items where top moved more)."""
    top, random = [], []
    for start in range(0, len(items), MAX_EXPLAIN_ITEMS):
        part = items[start:start + MAX_EXPLAIN_ITEMS]
        answers = _post(client, path, {field: [encode(i) for i in part], "explain": True, **extra})["results"]
        edited = [version for item, answer in zip(part, answers) for version in edit(item, answer)]
        again = _post(client, path, {field: [encode(i) for i in edited], **extra})["results"]
        top += [change(answer, again[2 * i]) for i, answer in enumerate(answers)]
        random += [change(answer, again[2 * i + 1]) for i, answer in enumerate(answers)]
    return _compare(top, random)


# --- images -----------------------------------------------------------------------------------------------------

def _region_deleted(image: np.ndarray, regions, fill: np.ndarray, grid: int = 8) -> np.ndarray:
    side_y, side_x = image.shape[0] // grid, image.shape[1] // grid
    out = image.copy()
    for region in regions:
        row, column = divmod(int(region), grid)
        out[row * side_y:(row + 1) * side_y, column * side_x:(column + 1) * side_x] = fill
    return out


def _image_deletions(client, path: str, model: str, images: np.ndarray, score, regions: int = 8):
    """Explain the images, delete the top `regions` of 64 regions and as many random ones; each image's drop of
    its answer's score."""
    fill = image_fill(read_manifest(MODELS / model).preprocessing, images.shape[-1])
    rng = np.random.default_rng(0)

    def edit(image: np.ndarray, answer: dict) -> list[np.ndarray]:
        relevance = np.array(answer["explanation"]["relevance"])
        assert relevance.shape == image.shape[:2]
        by_region = relevance.reshape(8, relevance.shape[0] // 8, 8, -1).mean(axis=(1, 3)).ravel()
        return [_region_deleted(image, np.argsort(-by_region, kind="stable")[:regions], fill),
                _region_deleted(image, rng.choice(64, regions, replace=False), fill)]

    extra = {"top_k": 10} if path.endswith("classify") else {}
    return _deletions(client, path, "images", list(images), edit,
                      lambda answer, result: score(answer, answer) - score(result, answer),
                      encode=png_b64, model=model, **extra)


def _label_probability(result: dict, answer: dict) -> float:
    return next(entry["score"] for entry in result["top_k"] if entry["label"] == answer["label"])


def _answer_probability(result: dict, answer: dict) -> float:
    return result["probability"] if answer["tumor"] else 1.0 - result["probability"]


def test_cifar_explanations_are_faithful(real):
    client, root = real
    images, _ = cifar_validation(root, 8)
    top, random, wins = _image_deletions(client, "/v1/images/classify", "cifar10-resnet", images,
                                         _label_probability)
    # measured 2026-12-04: top 8 of 64 regions 0.172, 8 random regions 0.031, top larger for 8 of 8 images
    assert top > random + 0.05 and wins >= 0.75, (top, random, wins)


def test_tumor_explanations_are_faithful(real):
    client, root = real
    scans, _ = tumor_validation(root)
    chosen = scans[np.sort(np.random.default_rng(0).choice(len(scans), 16, replace=False))]
    top, random, wins = _image_deletions(client, "/v1/tumor/detect", "tumor-cnn", chosen, _answer_probability)
    # measured: 0.082 vs 0.024, top larger for 9 of 16 (confident answers barely move either way)
    assert top > 2 * random and top > random + 0.02, (top, random, wins)


# --- text -------------------------------------------------------------------------------------------------------

def test_sentiment_explanations_are_faithful(real):
    client, root = real
    texts, _ = sentiment_validation(root)
    pool = [t for t in texts if len(t.split()) >= 6]
    rng = np.random.default_rng(0)
    chosen = [pool[i] for i in rng.choice(len(pool), 32, replace=False)]

    def probability(result: dict, answer: dict) -> float:
        return result["score"] if answer["label"] == "positive" else 1.0 - result["score"]

    def edit(text: str, answer: dict) -> list[str]:
        words, weights = answer["explanation"]["tokens"], np.array(answer["explanation"]["weights"])
        assert len(words) == len(weights)
        drops = (set(np.argsort(-weights, kind="stable")[:2]), set(rng.choice(len(words), 2, replace=False)))
        return [" ".join(word for j, word in enumerate(words) if j not in drop) for drop in drops]

    top, random, wins = _deletions(client, "/v1/text/sentiment", "texts", chosen, edit,
                                   lambda answer, result: probability(answer, answer) - probability(result, answer))
    # measured (the 88.07% model): deleting the top 2 words 0.400, 2 random words 0.081, top larger for 30 of 32 texts
    assert top > random + 0.1 and wins >= 0.75, (top, random, wins)


# --- forecasts --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,count", [("/v1/forecast/traffic", 12), ("/v1/forecast/price", 4)])
def test_forecast_explanations_are_faithful(real, path, count):
    client, root = real
    windows = traffic_validation(root, 8) if path.endswith("traffic") else price_validation(root, 8)
    rng = np.random.default_rng(0)
    top_moves, random_moves = [], []
    for key, history in windows:
        body = {"history": history, **({"start": key} if path.endswith("traffic") else {})}
        answer = _post(client, path, {**body, "explain": True})
        weights = np.abs(answer["explanation"]["history_weights"])
        assert len(weights) == len(history)
        values = np.array(history)
        for order, moves in ((np.argsort(-weights, kind="stable"), top_moves), (rng.permutation(len(values)), random_moves)):
            edited = values.copy()
            edited[order[:count]] = values.mean()
            again = _post(client, path, {**body, "history": edited.tolist()})
            moves.append(abs(np.mean(again["forecast"]) - np.mean(answer["forecast"])))
    top, random, wins = _compare(top_moves, random_moves)
    # measured: traffic (12 hours) 265 vs 58 vehicles/hour, top larger 7 of 8; price (4 closes) 21.9 vs 0.37, 8 of 8
    assert top > 2 * random and wins >= 0.75, (top, random, wins)


# --- tabular ----------------------------------------------------------------------------------------------------

def _sign(flagged: bool) -> float:
    return 1.0 if flagged else -1.0


def test_fraud_explanations_are_faithful(real):
    client, root = real
    if not (MODELS / "fraud-mlp" / "manifest.json").exists():
        pytest.skip("models/fraud-mlp is not in the repository")
    baseline = read_manifest(MODELS / "fraud-mlp").parameters["explain_baseline"]
    transactions, labels = fraud_validation(root)
    rng = np.random.default_rng(0)
    chosen = [transactions[i] for i in np.sort(rng.choice(len(transactions), 32, replace=False))]
    def edit(row: dict, answer: dict) -> list[dict]:
        features = answer["explanation"]["features"]
        assert sorted(f["name"] for f in features) == sorted(row)
        # the top-ranked evidence for the answer given (as for images and text): the largest weights towards fraud
        # when flagged, towards legitimate otherwise
        evidence = [f["name"] for f in sorted(features, key=lambda f: -_sign(answer["fraud"]) * f["weight"])]
        return [{**row, **{name: baseline[name] for name in drop}}
                for drop in (evidence[:3], rng.choice(sorted(row), 3, replace=False))]

    top, random, wins = _deletions(client, "/v1/fraud/score", "transactions", chosen, edit,
                                   lambda answer, result: abs(answer["probability"] - result["probability"]))
    # measured: the top 3 columns 0.174, 3 random columns 0.022 (|change of P(fraud)|), top larger for 31 of 32
    assert top > 2 * random and wins >= 0.75, (top, random, wins)


def test_deterioration_explanations_are_faithful(real):
    client, root = real
    if not (MODELS / "icu-grud" / "manifest.json").exists():
        pytest.skip("models/icu-grud is not in the repository (yet)")
    stays = [stay for stay, _ in vitals_validation(root, 16)]
    rng = np.random.default_rng(0)
    def edit(stay: dict, answer: dict) -> list[dict]:
        # measured parameters only (a static field's "absent" value, an even mix of ICU types, cannot be sent); the
        # top-ranked evidence for the answer given: towards high risk when flagged, towards low otherwise
        measured = {m["parameter"] for m in stay["measurements"]}
        ranked = sorted(answer["explanation"]["features"], key=lambda f: -_sign(answer["high_risk"]) * f["weight"])
        evidence = [f["name"] for f in ranked if f["name"] in measured]
        k = min(3, len(evidence))
        return [{**stay, "measurements": [m for m in stay["measurements"] if m["parameter"] not in drop]}
                for drop in (set(evidence[:k]), set(rng.choice(sorted(evidence), k, replace=False)))]

    top, random, wins = _deletions(client, "/v1/clinical/deterioration", "stays", stays, edit,
                                   lambda answer, result: abs(answer["risk"] - result["risk"]))
    # measured: the top 3 parameters 0.144, 3 random measured parameters 0.053 (|change of the risk|), 15 of 16
    assert top > 2 * random and wins >= 0.75, (top, random, wins)


# --- the cost ---------------------------------------------------------------------------------------------------

def test_an_explanation_costs_at_most_20_plain_requests_at_batch_one(real):
    """The costliest served explanation (cifar10-resnet: 16 occluded variants; its batch costs ~16 images): median
    of interleaved rounds, in process. docs/explanations.md has every model's figure from a real server."""
    client, root = real
    image, _ = cifar_validation(root, 1)
    body = {"images": [png_b64(image[0])], "model": "cifar10-resnet"}
    times: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(8):
        for explain in (False, True):
            started = time.perf_counter()
            _post(client, "/v1/images/classify", {**body, "explain": explain})
            if round_:
                times[explain].append(time.perf_counter() - started)
    ratio = statistics.median(times[True]) / statistics.median(times[False])
    assert ratio <= 20, (ratio, times)
