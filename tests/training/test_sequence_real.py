"""The committed sequence models (models/sentiment-*, traffic-lstm, prices-lstm) and the real data readers.

Model checks skip when a model folder is absent; data checks skip when the shared data is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.manifest import read_manifest
from training.data import forecast as fdata
from training.data import sentiment as sdata
from training.onnx_export import ort_session

MODELS = Path(__file__).resolve().parents[2] / "models"
SENTIMENT = ["sentiment-rnn", "sentiment-gru", "sentiment-lstm"]


def _model_dir(name: str) -> Path:
    d = MODELS / name
    if not (d / "manifest.json").exists():
        pytest.skip(f"{d} not exported")
    return d


def _io_matches(d: Path) -> None:
    m = read_manifest(d)
    sess = ort_session(d / "1" / "model.onnx")
    assert [i.name for i in sess.get_inputs()] == [t.name for t in m.inputs]
    assert [o.name for o in sess.get_outputs()] == [t.name for t in m.outputs]
    assert (d / "1" / "model.onnx").stat().st_size < 20e6
    assert not list((d / "1").glob("*.data"))
    for f in ("README.md", "card.json", "training_curves.png"):
        assert (d / f).exists(), f


@pytest.mark.parametrize("name", SENTIMENT)
def test_committed_sentiment_model(name):
    from tokenizers import Tokenizer

    d = _model_dir(name)
    _io_matches(d)
    m = read_manifest(d)
    assert m.priority == {"sentiment-rnn": 0, "sentiment-gru": 5, "sentiment-lstm": 10}[name]
    tok = Tokenizer.from_file(str(d / m.tokenizer))
    a, b = sdata.encode(tok, ["It's GREAT!!", "it 's great ! !"], m.parameters["max_tokens"])
    assert a.tolist() == b.tolist() and 1 not in a.tolist()
    texts = ["It's GREAT!!", "A dull, lifeless and boring film that I didn't enjoy at all.", "x"]
    seqs = sdata.encode(tok, texts, m.parameters["max_tokens"])
    sess = ort_session(d / "1" / "model.onnx")
    ids, lengths = sdata.pad_batch(seqs)
    ids7, _ = sdata.pad_batch(seqs, extra=7)
    wanted = ["probabilities"] + (["ood_features"] if m.ood is not None else [])
    p, *ood = sess.run(wanted, {"input_ids": ids, "lengths": lengths})
    p7, *ood7 = sess.run(wanted, {"input_ids": ids7, "lengths": lengths})
    assert np.abs(p - p7).max() <= 1e-5
    for f, f7 in zip(ood, ood7):  # the OOD features ignore padding too (the batcher pads across requests)
        assert np.abs(f - f7).max() <= 1e-4
    assert p[0, 1] > 0.5 and p[1, 0] > 0.5  # obvious positive / negative


@pytest.mark.parametrize("name", ["traffic-lstm", "prices-lstm"])
def test_committed_forecaster(name):
    d = _model_dir(name)
    _io_matches(d)


def test_real_traffic_windows(data_dir):
    t, v = fdata.read_traffic(data_dir / "traffic" / "train.csv")
    w = fdata.traffic_windows(t, v, 168, 24)
    assert len(w) > 1000
    starts = fdata.contiguous_starts(t, 192)
    assert np.all((t[starts + 191] - t[starts]) // fdata.HOUR == 191)
    np.testing.assert_array_equal(w.inputs["hour_of_week"], fdata.hour_of_week(t[starts]))


def test_real_price_windows(data_dir):
    s = fdata.read_prices(data_dir / "prices" / "train.csv")
    assert len(s) == 36 and all(len(d) == 874 for d, _ in s.values())
    w = fdata.price_windows(s, 60, 5)
    assert w.inputs["closes"].shape == (36 * (874 - 64), 60) and np.all(w.inputs["closes"] > 0)


def test_real_sentiment_files(data_dir):
    train, val = sdata.load_splits(data_dir)
    assert len(train.texts) == 67349 and len(val.texts) == 872
    assert set(np.unique(train.y).tolist()) == {0, 1}
