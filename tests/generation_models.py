"""Tiny translation and chat models for the generation tests, built like the real ones.

The networks and exporters are the training package's own (training.nets.transformer,
training.exporters.generation_graphs), so the graphs have exactly the I/O the service expects. A few
hundred steps on a handful of sentence pairs and dialogues make them answer sensibly (and stop) in
about a second of CPU each. Needs torch (the train extra); the serving side never imports it.
"""

from __future__ import annotations

import json
from pathlib import Path

TRANSLATIONS = [
    ("good morning", "guten morgen"), ("thank you", "danke schön"), ("good night", "gute nacht"),
    ("the house is small", "das haus ist klein"), ("i love you", "ich liebe dich"),
    ("where is the station", "wo ist der bahnhof"), ("the cat sleeps", "die katze schläft"),
    ("we are here", "wir sind hier"),
]
DIALOGUES = [
    [("user", "hi"), ("assistant", "hello there")],
    [("user", "how are you"), ("assistant", "i am fine thanks")],
    [("user", "what is your name"), ("assistant", "my name is tiny")],
    [("system", "be brief"), ("user", "tell me a story"), ("assistant", "once upon a time there was a cat")],
    [("user", "hi"), ("assistant", "hello there"), ("user", "bye"), ("assistant", "goodbye friend")],
]
CHAT_SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>"]
ROLE_IDS = {"user": 4, "assistant": 5, "system": 6}


def train_tokenizer(texts: list[str], specials: list[str], vocab_size: int):
    """BPE with the real tokenizers' pipeline: NFKC, Metaspace pre-tokenizer and decoder."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                             show_progress=False))
    return tokenizer


def _config(vocab: int, max_positions: int, d_model: int = 32, layers: int = 2):
    from training.nets.transformer import TransformerConfig

    return TransformerConfig(vocab_size=vocab, d_model=d_model, heads=2, encoder_layers=layers, decoder_layers=layers,
                             ff=2 * d_model, dropout=0.0, max_positions=max_positions)


def _fit(model, batches, loss_fn, steps: int) -> None:
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is several times faster on a busy machine
    try:
        model.train()
        for _ in range(steps):
            loss = loss_fn(*batches)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
    finally:
        torch.set_num_threads(threads)


def _padded(rows: list[list[int]], pad: int = 0):
    import torch

    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows])


def _params(config, **extra) -> dict:
    return {"bos_id": 1, "eos_id": 2, "pad_id": 0, "layers": config.decoder_layers, "heads": config.heads,
            "head_dim": config.head_dim, "vocab_size": config.vocab_size, "max_positions": config.max_positions, **extra}


def _write(folder: Path, manifest: dict, tokenizer) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    tokenizer.save(str(folder / "tokenizer.json"))


def build_translator(root: Path, name: str = "tiny-translate", steps: int = 150, max_new_tokens: int = 24,
                     max_input_tokens: int = 32, max_positions: int = 64) -> Path:
    import torch
    import torch.nn.functional as F

    from training.exporters.generation_graphs import export_encoder, export_seq2seq_step
    from training.nets.transformer import Seq2SeqTransformer

    torch.manual_seed(0)
    tokenizer = train_tokenizer([t for pair in TRANSLATIONS for t in pair], CHAT_SPECIALS[:4], 120)
    config = _config(tokenizer.get_vocab_size(), max_positions)
    model = Seq2SeqTransformer(config)
    src = _padded([tokenizer.encode(s, add_special_tokens=False).ids + [2] for s, _ in TRANSLATIONS])  # source + eos
    targets = [tokenizer.encode(t, add_special_tokens=False).ids for _, t in TRANSLATIONS]
    tgt_in = _padded([[1] + t for t in targets])
    labels = _padded([t + [2] for t in targets])

    def loss(src, tgt_in, labels):
        logits = model(src, tgt_in)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=0)

    _fit(model, (src, tgt_in, labels), loss, steps)
    folder = root / name
    export_encoder(model, folder / "1" / "encoder.onnx")
    export_seq2seq_step(model, folder / "1" / "decoder.onnx")
    _write(folder, {
        "name": name, "task": "translation", "description": "tiny en->de test translator",
        "tokenizer": "tokenizer.json", "graphs": {"encoder": "encoder.onnx", "decoder": "decoder.onnx"},
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "parameters": _params(config, source_language="en", target_language="de", max_input_tokens=max_input_tokens,
                              max_new_tokens=max_new_tokens, default_beam_size=3, max_beam_size=8, length_penalty=0.6),
    }, tokenizer)
    return folder


def dialogue_ids(tokenizer, dialogue: list[tuple[str, str]]) -> list[int]:
    ids = [1]
    for role, text in dialogue:
        ids += [ROLE_IDS[role], *tokenizer.encode(text, add_special_tokens=False).ids, 2]
    return ids


def build_chat(root: Path, name: str = "tiny-chat", steps: int = 150, max_new_tokens: int = 64,
               max_context_tokens: int = 128, d_model: int = 32, layers: int = 2, train: bool = True,
               silence_eos: bool = False) -> Path:
    """silence_eos: zero the end-of-turn embedding of an untrained model, so greedy replies never end
    (the disconnect test needs a long answer)."""
    import torch
    import torch.nn.functional as F

    from training.exporters.generation_graphs import export_lm_step
    from training.nets.transformer import DecoderOnlyLM

    torch.manual_seed(0)
    tokenizer = train_tokenizer([t for d in DIALOGUES for _, t in d], CHAT_SPECIALS, 120)
    config = _config(tokenizer.get_vocab_size(), max_context_tokens, d_model, layers)
    model = DecoderOnlyLM(config)
    if train:
        ids = _padded([dialogue_ids(tokenizer, d) for d in DIALOGUES])

        def loss(ids):
            mask = (ids != 0).long()
            logits = model(ids[:, :-1], mask[:, :-1])
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), ignore_index=0)

        _fit(model, (ids,), loss, steps)
    if silence_eos:
        with torch.no_grad():
            model.embed.tokens.weight[2].zero_()
    folder = root / name
    export_lm_step(model, folder / "1" / "decoder.onnx")
    _write(folder, {
        "name": name, "task": "chat", "description": "tiny test chat model",
        "tokenizer": "tokenizer.json", "graphs": {"decoder": "decoder.onnx"},
        "parameters": _params(config, role_ids=ROLE_IDS, max_context_tokens=max_context_tokens,
                              max_new_tokens=max_new_tokens, temperature=0.8, top_p=0.95, top_k=50),
    }, tokenizer)
    return folder


def require_generation_models(repo_dir: Path) -> None:
    """Skip the calling test when the shared repository has no generation models (no torch to build them)."""
    import pytest

    if not (repo_dir / "tiny-chat").is_dir():
        pytest.skip("the tiny generation models need torch (the train extra) to be built")


def add_generation_models(root: Path) -> bool:
    """The shared test repository's translator and chat model; False (and nothing written) without torch."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    build_translator(root)
    build_chat(root)
    return True
