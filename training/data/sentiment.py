"""SST-2 reader and the served tokenizer.

Everything that maps real user text ("It's GREAT!!") to the SST-2 training form ("it 's great ! !")
lives inside ``tokenizer.json`` (normalizer + pre-tokenizer), because the server only does
``Tokenizer.from_file(...).encode_batch(texts)`` and truncates the ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.tsv import read_columns

LABELS = ["negative", "positive"]
PAD, UNK = "[PAD]", "[UNK]"  # ids 0 and 1
MAX_TOKENS = 128

# word pieces kept whole after whitespace splitting; anything else non-space is one token per character
TOKEN_PATTERN = (r"``|''|\.\.\.|--|\*+|'(?:s|re|ve|ll|d|m|em)\b|n't\b|'n'"
                 r"|(?:\p{L}\.){2,}|(?:mr|mrs|ms|dr|st|jr|vs|\p{L})\.$|\p{N}+(?:,\p{N}{3})+"
                 r"|[\p{L}\p{N}]+(?:[-'./&][\p{L}\p{N}]+)*|\S")
# (regex, replacement) applied in order after NFKC + lowercase: PTB-style clitics and quotes as in SST
REPLACEMENTS = [
    ("\u2019", "'"), ("\u2018", "`"), ("\u201c", " `` "), ("\u201d", " '' "),
    ("\u2014", " -- "), ("\u2013", " -- "),
    (r"\"(?=[\p{L}\p{N}])", " `` "), ("\"", " '' "),
    (r"n't\b", " n't"), (r"\bcannot\b", "can not"),
    (r"'(s|re|ve|ll|d|m)\b", None),  # expanded below: one Replace per clitic (no back-references)
]
CLITICS = ["s", "re", "ve", "ll", "d", "m"]
# PTB escapes as written in GLUE dev/test (train writes the characters themselves): mapped to the train form
PTB_ESCAPES = [("-lrb-", "("), ("-rrb-", ")"), ("-lsb-", "["), ("-rsb-", "]"), ("-lcb-", "{"), ("-rcb-", "}"),
               ("\\/", "/"), ("\\*", "*")]


@dataclass
class TextSplit:
    texts: list[str]
    y: np.ndarray


def read_tsv(path: Path, limit: int | None = None) -> TextSplit:
    texts, labels = read_columns(path, ("text", "label"), limit)
    return TextSplit(texts, np.asarray([int(v) for v in labels], dtype=np.int64))


def load_splits(data_dir: Path, limit: int | None = None) -> tuple[TextSplit, TextSplit]:
    root = Path(data_dir) / "sentiment"
    return read_tsv(root / "train.tsv", limit), read_tsv(root / "validation.tsv", limit // 4 if limit else None)


def _normalizer():
    from tokenizers import Regex, normalizers

    steps = [normalizers.NFKC(), normalizers.Lowercase()]
    steps += [normalizers.Replace(escape, char) for escape, char in PTB_ESCAPES]
    for pattern, repl in REPLACEMENTS:
        if repl is None:
            steps += [normalizers.Replace(Regex(rf"'{c}\b"), f" '{c}") for c in CLITICS]
        elif pattern.startswith(("\\", "n't", "'")) or "(" in pattern:
            steps.append(normalizers.Replace(Regex(pattern), repl))
        else:
            steps.append(normalizers.Replace(pattern, repl))
    return normalizers.Sequence(steps)


def _pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                    pre_tokenizers.Split(Regex(TOKEN_PATTERN), behavior="isolated")])


def _word_level(texts: list[str], min_frequency: int):
    from tokenizers import Tokenizer, models, trainers

    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.normalizer = _normalizer()
    tok.pre_tokenizer = _pre_tokenizer()
    trainer = trainers.WordLevelTrainer(special_tokens=[PAD, UNK], min_frequency=min_frequency, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def build_tokenizer(texts: list[str], min_frequency: int = 2, extra_texts: list[str] | None = None,
                    extra_min_frequency: int = 3):
    """WordLevel vocabulary of the train split ([PAD]=0, [UNK]=1) behind the SST-2 normalizer; optionally followed
    by the words of ``extra_texts`` seen >= extra_min_frequency times (the train words keep their ids)."""
    from tokenizers import Tokenizer, models

    tok = _word_level(texts, min_frequency)
    if extra_texts:
        vocab = tok.get_vocab()
        more = _word_level(extra_texts, extra_min_frequency).get_vocab()
        for word, _ in sorted(more.items(), key=lambda kv: kv[1]):
            if word not in vocab:
                vocab[word] = len(vocab)
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
        tok.normalizer = _normalizer()
        tok.pre_tokenizer = _pre_tokenizer()
    assert tok.token_to_id(PAD) == 0 and tok.token_to_id(UNK) == 1
    return tok


def encode(tok, texts: list[str], max_tokens: int = MAX_TOKENS) -> list[np.ndarray]:
    """Exactly what the server does: encode_batch, take .ids, truncate to max_tokens."""
    return [np.asarray(e.ids[:max_tokens], dtype=np.int64) for e in tok.encode_batch(texts)]


def pad_batch(seqs: list[np.ndarray], extra: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad with 0 to the longest (+ extra); lengths as int64."""
    lengths = np.asarray([len(s) for s in seqs], dtype=np.int64)
    ids = np.zeros((len(seqs), max(int(lengths.max(initial=0)), 1) + extra), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
    return ids, lengths


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length (little padding): shuffle, sort within chunks of 50 batches."""
    perm = rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches = []
    for i in range(0, len(perm), chunk):
        part = perm[i : i + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    order = rng.permutation(len(batches))
    return [batches[k] for k in order]
