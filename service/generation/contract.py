"""What a generation model folder must hold: its graphs' inputs and outputs, and its manifest parameters.

The graph I/O is the contract with ``training/exporters/generation_graphs.py`` (ENCODER_IO,
SEQ2SEQ_STEP_IO, LM_STEP_IO; a test keeps the two in step). Caches are ``[layers, batch, heads,
time, head_dim]`` float32, masks int64 (1 = attend, 0 = padding), positions explicit.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.manifest import TensorSpec

TRANSLATION_TASK = "translation"
CHAT_TASK = "chat"


def _specs(*tensors: tuple[str, str, int]) -> list[TensorSpec]:
    return [TensorSpec(name=name, datatype=datatype, shape=[-1] * rank) for name, datatype, rank in tensors]


_CACHE = 5  # rank of a key/value cache
_STEP_INPUTS = (("input_ids", "INT64", 2), ("position_ids", "INT64", 2), ("attention_mask", "INT64", 2),
                ("past_key", "FP32", _CACHE), ("past_value", "FP32", _CACHE))
_CROSS = (("cross_key", "FP32", _CACHE), ("cross_value", "FP32", _CACHE), ("encoder_attention_mask", "INT64", 2))
_STEP_OUTPUTS = (("logits", "FP32", 2), ("present_key", "FP32", _CACHE), ("present_value", "FP32", _CACHE))

# role -> (inputs, outputs), per task
GRAPHS: dict[str, dict[str, tuple[list[TensorSpec], list[TensorSpec]]]] = {
    TRANSLATION_TASK: {
        "encoder": (_specs(("src_ids", "INT64", 2)), _specs(*_CROSS)),
        "decoder": (_specs(*_STEP_INPUTS, *_CROSS), _specs(*_STEP_OUTPUTS)),
    },
    CHAT_TASK: {
        "decoder": (_specs(*_STEP_INPUTS), _specs(*_STEP_OUTPUTS)),
    },
}

# What the Open Inference Protocol sees of a generation model: one string in, one string out per element.
TEXT_FACE = (_specs(("text", "BYTES", 1)), _specs(("text", "BYTES", 1)))


class _Params(BaseModel):
    """Manifest parameters shared by both tasks (unknown keys, e.g. training settings, are allowed)."""

    model_config = ConfigDict(extra="ignore")

    bos_id: int = Field(default=1, ge=0)
    eos_id: int = Field(default=2, ge=0)
    pad_id: int = Field(default=0, ge=0)
    layers: int = Field(ge=1)
    heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    vocab_size: int = Field(ge=4)
    max_positions: int = Field(default=512, ge=2)
    max_new_tokens: int = Field(ge=1)

    @model_validator(mode="after")
    def _ids_in_vocab(self):
        for field in ("bos_id", "eos_id", "pad_id"):
            if getattr(self, field) >= self.vocab_size:
                raise ValueError(f"{field} {getattr(self, field)} is outside the vocabulary ({self.vocab_size})")
        return self


class TranslationParams(_Params):
    source_language: str = Field(min_length=1)
    target_language: str = Field(min_length=1)
    max_input_tokens: int = Field(default=128, ge=2, description="source tokens, its eos included")
    source_eos: bool = Field(default=True, description="the source ends with eos (as training encodes it)")
    max_new_tokens: int = Field(default=160, ge=1)
    default_beam_size: int = Field(default=4, ge=1)
    max_beam_size: int = Field(default=8, ge=1)
    length_penalty: float = 0.6

    @model_validator(mode="after")
    def _bounds(self):
        if self.default_beam_size > self.max_beam_size:
            raise ValueError("default_beam_size exceeds max_beam_size")
        if self.max_input_tokens > self.max_positions or self.max_new_tokens + 1 > self.max_positions:
            raise ValueError("max_input_tokens and max_new_tokens + 1 must fit max_positions")
        return self


class ChatParams(_Params):
    role_ids: dict[str, int]
    max_context_tokens: int = Field(default=512, ge=2)
    max_new_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.8, ge=0, le=2)
    top_p: float = Field(default=0.95, gt=0, le=1)
    top_k: int = Field(default=50, ge=0)

    @model_validator(mode="after")
    def _bounds(self):
        missing = {"user", "assistant"} - set(self.role_ids)
        if missing:
            raise ValueError(f"role_ids lacks {sorted(missing)}")
        if self.max_context_tokens > self.max_positions:
            raise ValueError("max_context_tokens must fit max_positions")
        if self.max_new_tokens >= self.max_context_tokens:
            raise ValueError("max_new_tokens must leave room for a prompt in max_context_tokens")
        return self


PARAMS: dict[str, type[_Params]] = {TRANSLATION_TASK: TranslationParams, CHAT_TASK: ChatParams}
