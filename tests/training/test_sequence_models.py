"""Sequence recipes end to end on tiny synthetic data: sentiment (RNN/LSTM), traffic and prices.

Train a few steps through the real recipe code, export (the export itself raises on a parity failure at several
batch sizes / sequence lengths), validate the manifests with the server's own model, then check the served
contracts on the ONNX files: padding invariance, tokenizer normalisation, monotone quantiles, scale-freeness.
"""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import onnx
import pytest
import torch

from service.manifest import read_manifest
from training.cli import main
from training.recipes import get_recipe
from training.data import sentiment as sdata
from training.exporters.sentiment import selection_history
from training.onnx_export import ort_session

POS = ["a great , moving film", "it 's wonderful and funny", "truly a delight", "the best movie of the year !",
       "warm , clever and beautiful", "i loved it"]
NEG = ["a dull , boring mess", "it 's awful and tedious", "truly a disaster", "the worst movie of the year !",
       "cold , stupid and ugly", "i hated it", "do n't see this"]


@pytest.fixture(scope="module")
def seq_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("seqdata")
    rng = np.random.default_rng(0)
    # sentiment: SST-form phrases with a learnable signal
    (root / "sentiment").mkdir()
    for split, n in (("train", 160), ("validation", 24)):
        with open(root / "sentiment" / f"{split}.tsv", "w", newline="") as f:
            f.write("text\tlabel\n")
            for i in range(n):
                label = i % 2
                pool = POS if label else NEG
                words = " ".join(pool[j] for j in rng.choice(len(pool), size=rng.integers(1, 3)))
                f.write(f"{words}\t{label}\n")
    # traffic: daily + weekly pattern, with gaps of 1-5 h
    (root / "traffic").mkdir()

    def traffic_csv(path, start, end, gaps):
        t = np.arange(np.datetime64(start, "h"), np.datetime64(end, "h"))
        keep = np.ones(len(t), bool)
        for g in gaps:
            keep[g : g + 3] = False
        t = t[keep]
        hod = (t.astype(np.int64) % 24).astype(float)
        dow = ((t.astype(np.int64) // 24 + 3) % 7).astype(float)
        v = 3000 + 2000 * np.sin(2 * np.pi * (hod - 6) / 24) - 800 * (dow >= 5) + rng.normal(0, 150, len(t))
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestamp", "traffic_volume", "holiday", "temp"])
            for ti, vi in zip(t, np.maximum(v, 0)):
                w.writerow([str(ti).replace("T", " ") + ":00:00", int(vi), "None", 280.0])

    traffic_csv(root / "traffic" / "train.csv", "2016-12-10T00", "2017-01-25T00", gaps=[300, 700])
    traffic_csv(root / "traffic" / "validation.csv", "2017-07-01T00", "2017-07-15T00", gaps=[250])
    # prices: 3 tickers of geometric random walks on business days
    (root / "prices").mkdir()
    days = np.arange(np.datetime64("2017-05-01"), np.datetime64("2018-09-29"))
    days = days[((days.astype(np.int64) + 3) % 7) < 5]
    for split, mask in (("train", days < np.datetime64("2018-07-01")), ("validation", days >= np.datetime64("2018-07-01"))):
        with open(root / "prices" / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["date", "ticker", "open", "high", "low", "close", "adj_close", "volume"])
            for k, ticker in enumerate(["AAA", "BBB", "CCC"]):
                p = (20 + 100 * k) * np.exp(np.cumsum(np.random.default_rng(k).normal(0.0003, 0.015, len(days))))
                for d, c in zip(days[mask], p[mask]):
                    w.writerow([str(d), ticker, c, c, c, round(c, 4), round(c * 0.98, 4), 1000])
    return root


def _common(root, tmp_path):
    return ["--data-dir", str(root), "--checkpoint-dir", str(tmp_path / "ckpt"), "--quiet"]


# -- tokenizer ---------------------------------------------------------------------------------------
def test_tokenizer_maps_real_text_to_sst_form():
    tok = sdata.build_tokenizer(POS + NEG + ["it 's great ! !", "i do n't like it ( at all ) ."], min_frequency=1)
    ids = lambda s: tok.encode(s).ids  # noqa: E731
    assert ids("It's GREAT!!") == ids("it 's great ! !")
    assert 1 not in ids("It's GREAT!!")  # all known words
    assert ids("I don't like it (at all).") == ids("i do n't like it ( at all ) .")
    assert ids("It\u2019s   great !!") == ids("it 's great ! !")  # curly apostrophe, extra spaces
    assert ids("a film -lrb- at all -rrb- 1\\/2") == ids("a film ( at all ) 1/2")  # GLUE dev's PTB escapes
    assert tok.token_to_id(sdata.PAD) == 0


def test_length_batches_cover_every_row_once():
    lengths = np.random.default_rng(0).integers(1, 30, size=1000)
    batches = sdata.length_batches(lengths, 64, np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))


# -- sentiment end to end ----------------------------------------------------------------------------
def test_sentiment_cards_tell_each_cell_its_own_selection_history():
    """The distillation and noisy-copy steps were chosen on sentiment-lstm: an undistilled GRU or RNN card must not
    claim them (nor its 88.07%); a distilled one says it took them as they stood; only cells on the extended
    vocabulary say they were retrained on it."""
    assert "88.07%" in selection_history("sentiment-lstm", True, True)
    for cell in ("sentiment-gru", "sentiment-rnn"):
        text = selection_history(cell, True, False)
        assert "88.07%" not in text and "concern sentiment-lstm only" in text
    assert "kept the SST-2 words only" in selection_history("sentiment-rnn", False, False)
    distilled = selection_history("sentiment-gru", True, True)
    assert "85.09%, served until" in distilled and "no run of its own" in distilled and "88.07%" not in distilled
    rnn = selection_history("sentiment-rnn", True, True)  # distilled on the LSTM's vocabulary, from the SST-2 words
    assert "kept the SST-2 words only" in rnn and "82.11%, served until" in rnn


@pytest.mark.timeout(180)
@pytest.mark.parametrize("task", ["sentiment-rnn", "sentiment-lstm"])
def test_sentiment_train_export_contract(seq_data, tmp_path, task):
    from tokenizers import Tokenizer

    common = _common(seq_data, tmp_path)
    # without their teacher here (test_transformer_teacher_distils_into_the_lstm covers distillation)
    extra = ["--set", "teachers="]
    assert main(["train", task, "--epochs", "1", "--batch-size", "32", *common, *extra]) == 0
    path = tmp_path / "ckpt" / task / "last.pt"
    ckpt = torch.load(path, weights_only=False)
    if task == "sentiment-lstm":
        assert not ckpt["meta"]["distill"]
        # as saved before LM pretraining was removed: that config field (0 = none) and an empty summary still export
        ckpt["meta"]["config"]["lm_epochs"], ckpt["meta"]["lm_pretrain"] = 0, {}
        torch.save(ckpt, path)
    assert ckpt["meta"]["pretrain"]["epochs"] > 0  # skip-gram initialised embeddings
    models = tmp_path / "models"
    # the RNN stored with fp16 weights (as served): parity and every figure are of the rounded weights
    fp16 = ["--fp16-weights"] if task == "sentiment-rnn" else []
    assert main(["export", task, "--out", str(models), "--skip-card", *common, *fp16]) == 0  # raises on parity failure
    model_dir = models / task
    stored = {init.data_type for init in onnx.load(str(model_dir / "1" / "model.onnx")).graph.initializer}
    assert (onnx.TensorProto.FLOAT16 in stored) == bool(fp16)
    m = read_manifest(model_dir)
    assert m.task == "text-sentiment" and m.labels == ["negative", "positive"]
    assert [(t.name, t.datatype, t.shape) for t in m.inputs] == [("input_ids", "INT64", [-1, -1]),
                                                                  ("lengths", "INT64", [-1])]
    assert [(t.name, t.datatype, t.shape) for t in m.outputs] == [("probabilities", "FP32", [-1, 2])]
    assert m.tokenizer == "tokenizer.json" and m.parameters["max_tokens"] == 128
    assert m.batching.pad_inputs == {"input_ids": 0} and m.batching.max_batch_size == 64
    assert m.priority == {"sentiment-rnn": 0, "sentiment-lstm": 10}[task]

    # the serving path: Tokenizer.from_file -> encode_batch -> ids (truncated) -> ONNX
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    texts = ["It's GREAT!!", "it 's great ! !", "A dull, boring mess.", "truly a delight", ""]
    seqs = sdata.encode(tok, texts, m.parameters["max_tokens"])
    assert seqs[0].tolist() == seqs[1].tolist()
    sess = ort_session(model_dir / "1" / "model.onnx")
    ids, lengths = sdata.pad_batch(seqs)
    (p,) = sess.run(None, {"input_ids": ids, "lengths": lengths})
    assert p.shape == (len(texts), 2)
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    # padding invariance: the same rows padded 7 further, and each row alone
    ids7, _ = sdata.pad_batch(seqs, extra=7)
    (p7,) = sess.run(None, {"input_ids": ids7, "lengths": lengths})
    assert np.abs(p - p7).max() <= 1e-5
    for i, s in enumerate(seqs):
        one, ln = sdata.pad_batch([s])
        (pi,) = sess.run(None, {"input_ids": one, "lengths": ln})
        assert np.abs(pi[0] - p[i]).max() <= 1e-5


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 1-layer BERT (random weights) + WordPiece tokenizer in Hugging Face layout: the shape of the real teacher's
    starting point (a BertModel checkpoint; the classification head is new)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny-bert")
    words = sorted({w for t in POS + NEG for w in t.split()})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    BertTokenizerFast(vocab=vocab, do_lower_case=True).save_pretrained(root)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=5 + len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(root)
    return root


@pytest.mark.timeout(180)
def test_transformer_teacher_distils_into_the_lstm(seq_data, tmp_path, tiny_bert, capsys):
    """Fine-tune the Transformer teacher, then train the LSTM on its soft labels (train rows + noisy copies, which the
    teacher reads as text joined from the student's word ids), mixed with a same-tokenizer teacher."""
    common = _common(seq_data, tmp_path)
    teacher = ["train", "sentiment-minilm-teacher", "--epochs", "3", "--batch-size", "16", *common]
    assert main([*teacher, "--set", f"base_model={tiny_bert}", "--set", "max_tokens=24", "--set", "lr=0.003"]) == 0
    tck = torch.load(tmp_path / "ckpt" / "sentiment-minilm-teacher" / "last.pt", weights_only=False)
    assert tck["meta"]["config"]["base_model"] == str(tiny_bert) and len(tck["history"]["epochs"]) == 3
    assert tck["history"]["epochs"][-1]["val_acc"] > 0.5  # the toy signal is learnable from 160 phrases
    assert main(["evaluate", "sentiment-minilm-teacher", "--out", str(tmp_path / "t.json"), *common]) == 0
    assert json.loads((tmp_path / "t.json").read_text())["accuracy"]["n"] == 24
    with pytest.raises(SystemExit, match="teacher only"):
        main(["export", "sentiment-minilm-teacher", *common])

    assert main(["train", "sentiment-gru", "--epochs", "1", "--batch-size", "32", *common]) == 0
    student = ["train", "sentiment-lstm", "--epochs", "1", "--batch-size", "32", *common,
               "--set", "teachers=sentiment-minilm-teacher,sentiment-gru", "--set", "augment_copies=2", "--set", "augment_long_copies=0",
               "--set", "augment_min_tokens=4", "--set", "distill_weight=0.7"]
    assert main(student) == 0
    assert get_recipe("sentiment-lstm").default.teachers == ("sentiment-minilm-teacher",)  # the served recipe's
    meta = torch.load(tmp_path / "ckpt" / "sentiment-lstm" / "last.pt", weights_only=False)["meta"]
    distill = meta["distill"]
    assert [t["task"] for t in distill["teachers"]] == ["sentiment-minilm-teacher", "sentiment-gru"]
    assert distill["augmented_rows"] > 0 and distill["weight"] == 0.7
    assert tuple(meta["config"]["teachers"]) == ("sentiment-minilm-teacher", "sentiment-gru")
    assert meta["n_train"] == 160 + distill["augmented_rows"]

    # a rerun with more copies of the long rows reads the labels it has from the teacher's cache: the first copies
    # are the same rows, only the new ones are labelled
    capsys.readouterr()
    assert main([*student, "--set", "augment_long_copies=2", "--set", "augment_long_min_tokens=6"]) == 0
    labelled = re.search(r"sentiment-minilm-teacher: (\d+) of (\d+) rows labelled from soft_labels.npz, "
                         r"(\d+) new texts labelled", capsys.readouterr().out)
    rerun = torch.load(tmp_path / "ckpt" / "sentiment-lstm" / "last.pt", weights_only=False)["meta"]
    assert rerun["distill"]["augmented_rows"] > distill["augmented_rows"] and int(labelled[2]) == rerun["n_train"]
    assert int(labelled[1]) >= meta["n_train"] and 0 < int(labelled[3]) <= rerun["n_train"] - meta["n_train"]
    with pytest.raises(SystemExit, match="not a field"):
        main(["train", "sentiment-lstm", "--set", "no_such_field=1", *common])


def test_teacher_label_cache_is_void_once_the_checkpoint_changes(tmp_path):
    from training.recipes.sentiment_teacher import LabelCache

    ckpt = tmp_path / "last.pt"
    ckpt.write_bytes(b"weights")
    LabelCache(tmp_path / "soft_labels.npz", ckpt).add(["a film", "bad"], np.asarray([[0.2, 0.8], [0.9, 0.1]]))
    again = LabelCache(tmp_path / "soft_labels.npz", ckpt)
    assert set(again.probs) == {"a film", "bad"} and np.allclose(again.probs["bad"], [0.9, 0.1])
    ckpt.write_bytes(b"retrained weights")
    assert LabelCache(tmp_path / "soft_labels.npz", ckpt).probs == {}


# -- forecasting helpers -------------------------------------------------------------------------------
def test_windows_only_over_contiguous_hours():
    from training.data.forecast import contiguous_starts, traffic_windows

    t = np.arange(np.datetime64("2017-01-02T00", "h"), np.datetime64("2017-01-02T20", "h"))
    t = np.delete(t, [5, 6])  # a 2-hour hole: 00..04, then 07..19
    starts = contiguous_starts(t, 4)
    assert starts.tolist() == [0, 1] + list(range(3 + 2, 3 + 2 + 10))
    v = np.arange(len(t), dtype=np.float32)
    w = traffic_windows(t, v, history=3, horizon=1)
    for h, y, how in zip(w.inputs["history"], w.y, w.inputs["hour_of_week"]):
        assert np.all(np.diff(np.r_[h, y]) == 1)  # values = index, so consecutive rows
        assert 0 <= how < 168
    assert len(w) == len(starts)


def test_hour_of_week_and_baselines_on_a_toy_series():
    from training.data.forecast import hour_of_week, hour_of_week_profile, profile_forecast, seasonal_naive

    t = np.arange(np.datetime64("2017-07-03T00", "h"), np.datetime64("2017-07-17T00", "h"))  # Monday, two weeks
    assert hour_of_week(t[:1]).tolist() == [0] and hour_of_week(t[167:168]).tolist() == [167]
    v = np.arange(len(t), dtype=np.float32)  # week 2 = week 1 + 168
    prof = hour_of_week_profile(t, v)
    np.testing.assert_allclose(prof, np.arange(168) + 84)
    hist = v[None, 10 : 10 + 168]
    np.testing.assert_array_equal(seasonal_naive(hist, 24)[0], v[10 : 10 + 24])
    np.testing.assert_allclose(profile_forecast(prof, np.array([10]), 168, 24)[0], (np.arange(10, 34) % 168) + 84)


def test_conformal_widening_reaches_the_target_coverage():
    from training.intervals import interval_report, widening_factors

    rng = np.random.default_rng(0)
    y = rng.normal(0, 1, size=(4000, 3))
    q = np.stack([np.full_like(y, -0.5), np.zeros_like(y), np.full_like(y, 0.5)], -1)  # too narrow
    f = widening_factors(q, y, 0.8)
    assert np.all(np.abs(f - 1.2816 / 0.5) < 0.15)
    wide = np.stack([-0.5 * f * np.ones_like(y), np.zeros_like(y), 0.5 * f * np.ones_like(y)], -1)
    assert abs(interval_report(wide, y)["coverage"] - 0.8) < 0.01


# -- forecasters end to end -----------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_traffic_train_export_contract(seq_data, tmp_path):
    common = _common(seq_data, tmp_path)
    assert main(["train", "traffic", "--epochs", "1", "--limit", "256", "--set", "wf_epochs=1", *common]) == 0
    wf = json.loads((tmp_path / "ckpt" / "traffic" / "walkforward.json").read_text())
    assert [f["cut"][:7] for f in wf["folds"]] == ["2017-01", "2017-07"]  # the folds with fit and evaluation windows
    models = tmp_path / "models"
    assert main(["export", "traffic", "--out", str(models), *common]) == 0
    d = models / "traffic-lstm"
    m = read_manifest(d)
    assert m.task == "traffic-forecast"
    assert [(t.name, t.datatype, t.shape) for t in m.inputs] == [("history", "FP32", [-1, 168]),
                                                                  ("hour_of_week", "INT64", [-1]),
                                                                  ("calendar", "FP32", [-1, 192, 4])]
    assert [(t.name, t.datatype, t.shape) for t in m.outputs] == [("quantiles", "FP32", [-1, 24, 3])]
    assert m.parameters == {"interval": 0.8, "history_hours": 168, "horizon": 24, "quantiles": [0.1, 0.5, 0.9]}
    assert m.metrics["walk_forward_folds"] == 2
    card = json.loads((d / "card.json").read_text())
    assert card["metrics"]["walk_forward"]["summary"]["folds"] == 2
    for f in ("README.md", "training_curves.png", "forecasts.png"):
        assert (d / f).exists()
    sess = ort_session(d / "1" / "model.onnx")
    rng = np.random.default_rng(0)
    for b in (1, 5):
        (q,) = sess.run(None, {"history": rng.uniform(0, 7000, (b, 168)).astype(np.float32),
                               "hour_of_week": rng.integers(0, 168, b).astype(np.int64),
                               "calendar": rng.uniform(0, 1, (b, 192, 4)).astype(np.float32)})
        assert q.shape == (b, 24, 3)
        assert np.all(q[..., 0] <= q[..., 1]) and np.all(q[..., 1] <= q[..., 2])


@pytest.mark.timeout(180)
def test_prices_train_export_contract(seq_data, tmp_path):
    common = _common(seq_data, tmp_path)
    assert main(["train", "prices", "--epochs", "1", *common]) == 0
    models = tmp_path / "models"
    assert main(["export", "prices", "--out", str(models), "--skip-card", *common]) == 0
    d = models / "prices-lstm"
    m = read_manifest(d)
    assert m.task == "price-forecast"
    assert [(t.name, t.datatype, t.shape) for t in m.inputs] == [("closes", "FP32", [-1, 60])]
    assert [(t.name, t.datatype, t.shape) for t in m.outputs] == [("quantiles", "FP32", [-1, 5, 3])]
    assert m.parameters == {"interval": 0.8, "history_days": 60, "horizon": 5, "quantiles": [0.1, 0.5, 0.9]}
    sess = ort_session(d / "1" / "model.onnx")
    rng = np.random.default_rng(0)
    closes = (50 * np.exp(rng.normal(0, 0.02, (4, 60)).cumsum(1))).astype(np.float32)
    (q,) = sess.run(None, {"closes": closes})
    (q10,) = sess.run(None, {"closes": closes * 10})
    assert q.shape == (4, 5, 3)
    assert np.all(q[..., 0] <= q[..., 1]) and np.all(q[..., 1] <= q[..., 2])
    np.testing.assert_allclose(q10, q * 10, rtol=1e-4)  # scale-free: prices in, prices out
    assert np.all(np.abs(np.log(q[..., 1] / closes[:, -1:])) < 0.2)  # medians near the last close
