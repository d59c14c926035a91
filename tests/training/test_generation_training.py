"""Generation training code paths: readers, tokenizers, the KV-cache graphs, tiny train + export runs,
and (when the real data and the committed models are present) the served translator's quality."""

from __future__ import annotations

import json
import random
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from training.cli import main as train_cli
from training.data import textgen
from training.exporters import generation_graphs as graphs
from training.nets.transformer import DecoderOnlyLM, Seq2SeqTransformer, TransformerConfig
from training.recipes.generation import reply_mask, token_batches

REPO = Path(__file__).resolve().parents[2]
WORDS_EN = "a man woman dog child red blue runs sits plays in the park street ball water".split()
WORDS_DE = "ein mann frau hund kind rot blau rennt sitzt spielt im dem park straße ball wasser".split()
TINY = ["--set", "d_model=32", "--set", "heads=2", "--set", "ff=64", "--set", "encoder_layers=1",
        "--set", "decoder_layers=1", "--set", "vocab_size=120", "--set", "warmup_steps=5", "--set", "eval_every=1"]


@pytest.fixture(scope="module")
def gen_data(tmp_path_factory) -> Path:
    """A toy word-for-word 'translation' corpus and a toy dialogue corpus in the shared-data layout."""
    root = tmp_path_factory.mktemp("gendata")
    rng = random.Random(0)
    (root / "translation").mkdir()
    for split, n in (("train", 300), ("validation", 30)):
        lines = ["src\ttgt"]
        for _ in range(n):
            idx = [rng.randrange(len(WORDS_EN)) for _ in range(rng.randint(3, 7))]
            lines.append(" ".join(WORDS_EN[i] for i in idx).capitalize() + ".\t"
                         + " ".join(WORDS_DE[i] for i in idx).capitalize() + ".")
        (root / "translation" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "chat").mkdir()
    for split, n in (("train", 60), ("validation", 10)):
        with open(root / "chat" / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for i in range(n):
                turns = [" ".join(rng.choice(WORDS_EN) for _ in range(rng.randint(2, 6))) + " ?" for _ in range(4)]
                f.write(json.dumps({"id": f"{split}-{i}", "turns": turns}) + "\n")
    return root


def test_detokenize_gives_back_normal_text():
    assert textgen.detokenize("Say , Jim , how about going ?") == "Say, Jim, how about going?"
    assert textgen.detokenize("I don't know . It ' s ( maybe ) fine !") == "I don't know. It's (maybe) fine!"


def test_transcript_roles_alternate_and_windows_cover_every_token():
    tok = textgen.train_bpe(["hello there", "how are you", "fine thanks"] * 5, 60,
                            textgen.SPECIALS + textgen.CHAT_ROLES)
    ids = textgen.transcript_ids(tok, ["hello there", "how are you", "fine thanks"])
    assert ids[0] == textgen.BOS_ID and ids[-1] == textgen.EOS_ID
    roles = [t for t in ids if t in (textgen.USER_ID, textgen.ASSISTANT_ID)]
    assert roles == [textgen.USER_ID, textgen.ASSISTANT_ID, textgen.USER_ID]
    mask = reply_mask(torch.tensor([ids]))[0].tolist()
    start = ids.index(textgen.ASSISTANT_ID)
    end = ids.index(textgen.EOS_ID, start)
    assert mask == [1.0 if start < i <= end else 0.0 for i in range(len(ids))]
    long = list(range(100))
    covered = {t for w in textgen.windows(long, 30, 15) for t in w}
    assert covered == set(long)
    assert [t for w in textgen.windows(long, 30, 30) for t in w] == long  # evaluation: every token once


def test_bpe_round_trips_cased_text():
    texts = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee!"] * 20
    tok = textgen.train_bpe(texts, 80, textgen.SPECIALS)
    for t in texts[:2]:
        assert tok.decode(tok.encode(t, add_special_tokens=False).ids) == t


def test_token_batches_use_every_row_once_within_the_budget():
    lengths = [random.Random(i).randint(1, 40) for i in range(500)]
    batches = token_batches(lengths, 256, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert all(max(lengths[i] for i in b) * len(b) <= 256 or len(b) == 1 for b in batches)


@pytest.mark.parametrize("batch_lengths", [[(1, 6)], [(3, 9)]])
def test_cached_translator_graphs_match_torch_token_for_token(tmp_path, batch_lengths):
    torch.manual_seed(0)
    c = TransformerConfig(vocab_size=50, d_model=32, heads=4, encoder_layers=2, decoder_layers=2, ff=64, dropout=0.0)
    model = Seq2SeqTransformer(c).eval()
    enc, dec = graphs.export_encoder(model, tmp_path / "e.onnx"), graphs.export_seq2seq_step(model, tmp_path / "d.onnx")
    rng = np.random.default_rng(0)
    batches = []
    for b, s in batch_lengths:
        src = rng.integers(4, 50, (b, s)).astype(np.int64)
        src[1:, s // 2 :] = 0  # right padding in all rows but the first
        batches.append(src)
    report = graphs.check_translator(model, enc, dec, batches, bos=1, eos=2, max_new=15)
    assert report["tokens_equal"] and report["max_abs_logit_diff"] < 1e-4


def test_cached_lm_graph_matches_torch_and_left_padding_is_neutral(tmp_path):
    torch.manual_seed(0)
    c = TransformerConfig(vocab_size=50, d_model=32, heads=4, encoder_layers=0, decoder_layers=2, ff=64, dropout=0.0)
    model = DecoderOnlyLM(c).eval()
    path = graphs.export_lm_step(model, tmp_path / "lm.onnx")
    prompts = [np.random.default_rng(i).integers(4, 50, (1, 5 + i)).astype(np.int64) for i in range(2)]
    assert graphs.check_lm(model, path, prompts, eos=2, max_new=15)["tokens_equal"]
    # a left-padded batch row gives the same last logits as the row alone
    sess = graphs.ort_session(path)
    short = prompts[0][0]
    padded = np.concatenate([np.zeros(2, np.int64), short])[None]
    mask = (padded != 0).astype(np.int64)
    pos = np.clip(mask.cumsum(-1) - 1, 0, None)
    alone = sess.run(None, {"input_ids": short[None], "position_ids": np.arange(len(short))[None],
                            "attention_mask": np.ones((1, len(short)), np.int64),
                            "past_key": graphs.empty_past(c, 1), "past_value": graphs.empty_past(c, 1)})[0]
    left = sess.run(None, {"input_ids": padded, "position_ids": pos, "attention_mask": mask,
                           "past_key": graphs.empty_past(c, 1), "past_value": graphs.empty_past(c, 1)})[0]
    np.testing.assert_allclose(alone, left, atol=1e-4)


@pytest.mark.parametrize("task,name", [("translation", "translate-en-de"), ("chat", "chat-dailydialog")])
def test_tiny_train_and_export_make_a_servable_model(gen_data, tmp_path, task, name):
    ck, out = tmp_path / "ck", tmp_path / "models"
    train = ["train", task, "--data-dir", str(gen_data), "--checkpoint-dir", str(ck), "--epochs", "2", "--quiet", *TINY]
    assert train_cli(train) == 0
    history = json.loads((ck / task / "history.json").read_text())
    assert len(history) == 2 and history[-1]["train_loss"] < history[0]["train_loss"] + 1.0
    assert (ck / task / "best.pt").exists() and (ck / task / "tokenizer.json").exists()
    assert train_cli(["export", task, "--data-dir", str(gen_data), "--checkpoint-dir", str(ck), "--out", str(out)]) == 0
    folder = out / name
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["task"] == task and manifest["metrics"]["parity"]["tokens_equal"]
    # provenance: the command that ran, not one rebuilt from the config; no sweep for a run outside the sweep
    assert manifest["provenance"]["training_command"] == shlex.join(["neuroserve-train", *train])
    assert "sweep_command" not in manifest["provenance"] and "training_command_note" not in manifest["provenance"]
    for graph in manifest["graphs"].values():
        assert (folder / "1" / graph).stat().st_size > 0
    assert (folder / "tokenizer.json").exists() and (folder / "README.md").exists()
    from service.manifest import read_manifest

    assert read_manifest(folder).graphs == manifest["graphs"]


def test_committed_translator_beats_the_bar_on_validation(data_dir):
    """The served INT8 graphs, greedy, on the first 300 validation sentences (the card has all 1,014)."""
    folder = REPO / "models" / "translate-en-de"
    if not folder.exists():
        pytest.skip("models/translate-en-de not exported")
    from training.exporters.generation import bleu_report, onnx_translate

    manifest = json.loads((folder / "manifest.json").read_text())
    p = manifest["parameters"]
    config = TransformerConfig(vocab_size=p["vocab_size"], heads=p["heads"], d_model=p["heads"] * p["head_dim"],
                               decoder_layers=p["layers"])
    _, val = textgen.load_translation(data_dir)
    tok = textgen.load_tokenizer(folder / "tokenizer.json")
    hyps, _ = onnx_translate(folder / "1" / "encoder.onnx", folder / "1" / "decoder.onnx", tok, val.src[:300], config)
    assert bleu_report(hyps, val.tgt[:300])["bleu"] >= 33  # 37.0 on all 1,014; a 300-sentence sample is noisier
