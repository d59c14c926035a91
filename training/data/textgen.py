"""Readers and BPE tokenizers for the generation tasks: Multi30k (en->de) and DailyDialog (chat).

One tokenizer per model, trained with ``tokenizers`` on the train split only, saved beside the model
as ``tokenizer.json`` and used as-is by the server: NFKC, Metaspace pre-tokenizer and decoder
(so decoding gives back cased, detokenized text), byte-pair merges.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from training.data.tsv import read_columns

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0..3
CHAT_ROLES = ["<|user|>", "<|assistant|>", "<|system|>"]  # ids 4..6
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
USER_ID, ASSISTANT_ID, SYSTEM_ID = 4, 5, 6


def train_bpe(texts, vocab_size: int, specials: list[str]):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, min_frequency=2,
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    for i, s in enumerate(specials):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    return tok


def load_tokenizer(path: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def encode_batch(tok, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


# -- translation ------------------------------------------------------------------------------

@dataclass
class Pairs:
    src: list[str]
    tgt: list[str]

    def __len__(self) -> int:
        return len(self.src)


def read_pairs(path: Path, limit: int | None = None) -> Pairs:
    src, tgt = read_columns(path, ("src", "tgt"), limit)
    return Pairs(src, tgt)


def load_translation(data_dir: Path, limit: int | None = None) -> tuple[Pairs, Pairs]:
    root = Path(data_dir) / "translation"
    return read_pairs(root / "train.tsv", limit), read_pairs(root / "validation.tsv", limit)


# -- chat -------------------------------------------------------------------------------------

_DETOK = [
    (re.compile(r" ([,.!?;:%)\]}])"), r"\1"),
    (re.compile(r"([(\[{$]) "), r"\1"),
    (re.compile(r" ' (s|t|re|ve|ll|d|m)\b"), r"'\1"),
    (re.compile(r" (n't|'s|'re|'ve|'ll|'d|'m)\b"), r"\1"),
    (re.compile(r"\s+"), " "),
]


def detokenize(text: str) -> str:
    """DailyDialog is space-tokenized ("Say , Jim , how about it ?"): give back normal text."""
    for pattern, repl in _DETOK:
        text = pattern.sub(repl, text)
    return text.strip()


def read_dialogues(path: Path, limit: int | None = None) -> list[list[str]]:
    dialogues = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                turns = [detokenize(t) for t in json.loads(line)["turns"]]
                dialogues.append([t for t in turns if t])
            if limit and len(dialogues) >= limit:
                break
    return dialogues


def load_chat(data_dir: Path, limit: int | None = None) -> tuple[list[list[str]], list[list[str]]]:
    root = Path(data_dir) / "chat"
    return read_dialogues(root / "train.jsonl", limit), read_dialogues(root / "validation.jsonl", limit)


def transcript_ids(tok, turns: list[str]) -> list[int]:
    """[bos] + per turn: role (user, assistant alternating, user first) + text + eos (end of turn)."""
    ids = [BOS_ID]
    for i, text_ids in enumerate(encode_batch(tok, turns)):
        ids += [USER_ID if i % 2 == 0 else ASSISTANT_ID, *text_ids, EOS_ID]
    return ids


def windows(ids: list[int], length: int, stride: int) -> list[list[int]]:
    """Cut a long transcript into overlapping windows (every token is predicted in at least one)."""
    if len(ids) <= length:
        return [ids]
    out = [ids[i : i + length] for i in range(0, len(ids) - length + stride, stride)]
    return [w for w in out if len(w) > 1]
