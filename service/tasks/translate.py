"""Translation: POST /v1/text/translate, greedy or beam search with a length penalty (service.generation)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from service.api.deps import RepositoryDep, error_responses, mark_model, run_generation
from service.errors import Unprocessable
from service.generation.contract import TRANSLATION_TASK
from service.generation.engine import AsyncEvents
from service.generation.runtime import Translator
from service.repository import ModelRepository, ModelVersion
from service.responses import JSONBytes
from service.security import require_api_key
from service.threads import off_loop

MAX_TEXTS = 64  # as /v1/text/sentiment; rows beyond the engine's room wait for their turn
MAX_TEXT_CHARS = 2000
LANGUAGE = r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?$"

router = APIRouter(prefix="/v1/text", tags=["text"], dependencies=[Depends(require_api_key)])
ERRORS = error_responses(s422="Empty, over-long (characters or tokens) or too many texts; an unsupported language "
                              "pair; beam_size or max_tokens over the model's bounds; unknown fields")


class TranslateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS, pattern=r"\S")]] = Field(
        min_length=1, max_length=MAX_TEXTS, description=f"1-{MAX_TEXTS} texts, each 1-{MAX_TEXT_CHARS} characters, not blank")
    source: str | None = Field(default=None, pattern=LANGUAGE, description="source language, e.g. en (any when omitted)")
    target: str | None = Field(default=None, pattern=LANGUAGE, description="target language, e.g. de (any when omitted)")
    beam_size: int | None = Field(default=None, ge=1, le=64, strict=True,
                                  description="1 = greedy; up to the model's max_beam_size (8); the model's default when omitted")
    max_tokens: int | None = Field(default=None, ge=1, strict=True,
                                   description="most tokens per translation, up to the model's max_new_tokens")
    length_penalty: float | None = Field(default=None, ge=-2, le=5, allow_inf_nan=False,
                                         description="beam score = sum log p / length**length_penalty; the model's when omitted")
    model: str | None = Field(default=None, description="name or name:version; the best model for the language pair otherwise")


class TranslateResponse(BaseModel):
    model: str
    version: str
    translations: list[str]


def _pair(model: ModelVersion) -> tuple[str, str]:
    return model.session.languages()


def _fits(model: ModelVersion, body: TranslateRequest) -> bool:
    source, target = _pair(model)
    return all(want is None or want.lower() == have.lower() for want, have in ((body.source, source), (body.target, target)))


def choose_translator(repo: ModelRepository, body: TranslateRequest) -> ModelVersion:
    """The asked model (checked against the language pair), or the highest-priority ready model for the pair."""
    if body.model:
        candidates = [repo.for_task(TRANSLATION_TASK, body.model)]
    else:
        repo.for_task(TRANSLATION_TASK, None)  # 503 when no translation model is ready at all
        entries = sorted((e for e in repo.entries.values() if e.task == TRANSLATION_TASK and e.ready),
                         key=lambda e: (-e.priority, e.name))
        candidates = [repo.get(e.name) for e in entries]
    for model in candidates:
        if _fits(model, body):
            return model
    offered = ", ".join(sorted({"->".join(_pair(m)) for m in candidates}))
    wanted = f"{body.source or 'any'}->{body.target or 'any'}"
    raise Unprocessable(f"no translation model for {wanted}; {'the model translates' if body.model else 'available:'} {offered}")


@router.post("/translate", response_model=TranslateResponse, responses=ERRORS,
             summary="Translate texts (greedy or beam search, batched with every other request's decoding steps)")
async def translate(body: TranslateRequest, request: Request, repo: RepositoryDep) -> JSONBytes:
    model = choose_translator(repo, body)
    mark_model(request, model)
    runtime: Translator = model.session
    events = AsyncEvents()
    jobs = await off_loop(lambda: runtime.jobs(body.texts, events, body.beam_size, body.max_tokens, body.length_penalty),
                          sum(map(len, body.texts)))
    runtime.engine.submit(*jobs)
    finished = await run_generation(request, model, jobs, events)
    return JSONBytes({"model": model.name, "version": model.version, "translations": [f[0].text for f in finished]})
