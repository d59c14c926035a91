"""Road-sign detection end to end on a tiny synthetic set (coloured squares on noise, in the data's jsonl layout):
train a few steps through the real recipe, export (parity checked inside), read the manifest with the server's
model, run the exported graph; plus the augmentation, the targets and the AP metric on cases worked by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from service.detection import postprocess
from service.manifest import read_manifest
from training import detection_eval
from training.cli import main
from training.data import detection as data

COLOURS = {"crosswalk": (40, 90, 230), "speedlimit": (240, 240, 240), "stop": (220, 30, 30), "trafficlight": (30, 30, 30)}


def _write_split(root, split, n, rng):
    folder = root / "detection" / split
    (folder / "images").mkdir(parents=True)
    with open(folder / "annotations.jsonl", "w") as f:
        for i in range(n):
            h, w = (96, 128) if i % 2 else (128, 96)
            img = rng.integers(90, 160, size=(h, w, 3), dtype=np.uint8)
            boxes, labels = [], []
            for k in range(1 + i % 2):
                name = data.CLASSES[(i + k) % 4]
                s = int(rng.integers(16, 30))
                x0, y0 = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
                img[y0:y0 + s, x0:x0 + s] = COLOURS[name]
                boxes.append([x0, y0, x0 + s, y0 + s]), labels.append(name)
            Image.fromarray(img).save(folder / "images" / f"road{i}.jpg", quality=95)
            f.write(json.dumps({"file": f"road{i}.jpg", "width": w, "height": h, "boxes": boxes, "labels": labels}) + "\n")


@pytest.fixture(scope="module")
def det_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("detdata")
    rng = np.random.default_rng(0)
    _write_split(root, "train", 16, rng)
    _write_split(root, "val", 6, rng)
    return root


def test_train_export_serve_contract(det_root, tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROSERVE_BENCH_REPEATS", "5")
    monkeypatch.setenv("NEUROSERVE_BOOTSTRAP", "50")  # the card's CIs: enough to exercise them
    common = ["--data-dir", str(det_root), "--quiet"]
    tiny = ["--set", "size=64", "--set", "crop=64", "--set", "width=8", "--set", "neck=16", "--set", "head=16"]
    assert main(["train", "detection", "--epochs", "2", "--batch-size", "4", *tiny, "--checkpoint-dir",
                 str(tmp_path / "ck"), *common]) == 0
    assert main(["train", "detection", "--epochs", "1", "--batch-size", "4", *tiny, "--set", "augment=false",
                 "--checkpoint-dir", str(tmp_path / "base"), *common]) == 0
    models = tmp_path / "models"
    assert main(["export", "detection", "--out", str(models), "--checkpoint-dir", str(tmp_path / "ck"),
                 "--set", f"baseline_checkpoint={tmp_path / 'base' / 'detection' / 'last.pt'}", *common]) == 0
    folder = models / "roadsign-detector"
    manifest = read_manifest(folder)
    assert manifest.task == "object-detection" and manifest.labels == list(data.CLASSES)
    assert manifest.inputs[0].shape == [-1, 64, 64, 3] and [o.name for o in manifest.outputs] == ["boxes", "scores"]
    assert 0 <= manifest.parameters["score_threshold"] <= 1 and manifest.parameters["iou_threshold"] == 0.5
    card = json.loads((folder / "card.json").read_text())
    assert 0 <= card["metrics"]["map50"] <= 1 and len(card["metrics"]["map50_ci95"]) == 2
    assert set(card["metrics"]["per_class"]) == set(data.CLASSES) and card["baseline"]["epochs"] == 1
    readme = (folder / "README.md").read_text()
    assert "## Recreate" in readme and "mAP@0.5" in readme and "IoU > 0.5" in readme
    for png in ("precision_recall.png", "validation_grid.jpg", "training_curves.png"):
        assert (folder / png).stat().st_size > 1000
    import onnxruntime as ort

    sess = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.shape for o in sess.get_outputs()] == [["batch", 256, 4], ["batch", 256, 4]]  # the server checks them
    boxes, scores = sess.run(None, {"images": np.zeros((2, 64, 64, 3), np.uint8)})
    assert boxes.shape == (2, 256, 4) and scores.shape == (2, 256, 4)
    assert np.all((scores >= 0) & (scores <= 1)) and np.all(boxes[..., 2] >= boxes[..., 0])


def test_augment_keeps_boxes_and_flips_only_mirror_safe_classes():
    rng = np.random.default_rng(0)
    img = np.zeros((240, 320, 3), np.uint8)
    img[:, :100] = 255  # white left of the box, black from its left side on: a mirror shows beside the box
    speed = data.Picture("a", img, np.array([[100, 50, 140, 90]], np.float32), np.array([1]))
    light = data.Picture("b", img, np.array([[100, 50, 140, 90]], np.float32), np.array([3]))

    def mirrored(out, boxes):
        x0, y = int(boxes[0, 0]), int((boxes[0, 1] + boxes[0, 3]) / 2)
        return None if x0 < 4 else bool(out[y, x0 - 3].mean() < 128)  # left of the box is white unless mirrored

    seen = {"speed": [], "light": []}
    for _ in range(40):
        for key, pic in (("speed", speed), ("light", light)):
            out, boxes, labels = data.augment(pic, 320, 256, rng, scale_min=0.6, scale_max=1.4, flip=True)
            assert out.shape == (256, 256, 3) and len(boxes) == 1 and labels.tolist() == pic.labels.tolist()
            assert np.all(boxes >= 0) and np.all(boxes <= 256) and boxes[0, 2] - boxes[0, 0] > 20  # kept whole
            flag = mirrored(out, boxes)
            if flag is not None:
                seen[key].append(flag)
    assert not any(seen["speed"])  # speed-limit digits are never mirrored
    assert 0.2 < np.mean(seen["light"]) < 0.8  # traffic lights are, about half of the time


def test_targets_peak_at_the_box_centre():
    hm, reg, wt = data.targets(np.array([[16, 16, 48, 40]], np.float32), np.array([2]), 64, 4, 4)
    assert hm.shape == (4, 16, 16) and hm[2].max() == 1.0 and hm[[0, 1, 3]].max() == 0
    cy, cx = np.unravel_index(np.argmax(hm[2]), hm[2].shape)
    assert (cy, cx) == (7, 8)
    assert np.allclose(reg[:, cy, cx], [16, 16, 48, 40]) and wt[cy, cx] > 0
    assert wt.sum() == pytest.approx(np.log(32 * 24), rel=1e-4)


def test_average_precision_by_hand():
    truths = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0, 0])), (np.array([[0, 0, 10, 10]]), np.array([1]))]
    perfect = [(t[0].astype(np.float32), np.array([0.9, 0.8][:len(t[1])]), t[1]) for t in truths]
    m = detection_eval.match(perfect, truths, 2)
    assert detection_eval.ap_table(m).min() == pytest.approx(1.0)
    # one false positive ranked above the second true box: precision 1, 1/2, 2/3 -> AP = (51 x 1 + 50 x 2/3) / 101
    preds = [(np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], np.float32), np.array([0.9, 0.8, 0.7]),
              np.array([0, 0, 0])), (np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0, np.int64))]
    m = detection_eval.match(preds, truths, 2)
    table = detection_eval.ap_table(m)
    assert table[0, 0] == pytest.approx((51 + 50 * 2 / 3) / 101) and table[1, 0] == 0
    s = detection_eval.summary(m, ["a", "b"], n_boot=20)
    assert s["per_class"]["a"]["boxes"] == 2 and s["map50_ci95"][0] <= s["map50_ci95"][1]
    # a box shifted to IoU 0.6 counts at 0.5/0.55/0.6, not above
    shifted = [(np.array([[0, 0, 10, 10]], np.float32) + [2.5, 0, 2.5, 0], np.array([0.9]), np.array([1]))]
    m = detection_eval.match(shifted, [truths[1]], 2)
    assert m.tp[1][0].tolist() == [t <= 0.6 for t in detection_eval.IOU_THRESHOLDS]


def test_postprocess_maps_back_and_suppresses_per_class():
    boxes = np.array([[10, 10, 50, 50], [12, 12, 52, 52], [12, 12, 52, 52], [100, 50, 160, 120]], np.float32)
    scores = np.zeros((4, 2), np.float32)
    scores[0, 0], scores[1, 0], scores[2, 1], scores[3, 1] = 0.9, 0.8, 0.7, 0.2
    d = postprocess(boxes, scores, scale=0.5, height=150, width=300, score_threshold=0.1, max_detections=10,
                    iou_threshold=0.5)
    assert d.scores.tolist() == pytest.approx([0.9, 0.7, 0.2])  # box 1 suppressed by box 0; box 2 is another class
    assert d.labels.tolist() == [0, 1, 1]
    assert d.boxes[0].tolist() == [20, 20, 100, 100]  # /0.5
    assert d.boxes[2].tolist() == [200, 100, 300, 150]  # clipped to the picture (300 x 150)
    assert len(postprocess(boxes, scores, scale=1, height=200, width=200, score_threshold=0.75, max_detections=10,
                           iou_threshold=0.5).scores) == 1
