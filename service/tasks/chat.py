"""OpenAI-compatible chat: POST /v1/chat/completions, plain or streamed as server-sent events.

The request and answer shapes are OpenAI's (the official ``openai`` package works against this
server); fields it does not know are ignored, as OpenAI does. Errors on this route are in OpenAI's
shape too ({"error": {"message", "type", "param", "code"}}, see service.errors.error_body).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, AsyncIterator, Literal

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from service.api.deps import RepositoryDep, error_responses, mark_model, run_generation
from service.errors import NeuroserveError, Unprocessable, error_body
from service.generation.contract import CHAT_TASK
from service.generation.engine import AsyncEvents, Job, cancel_unfinished
from service.generation.runtime import CHAT_ROLES, ChatModel
from service.repository import ModelVersion
from service.responses import GuardedStream, JSONBytes
from service.security import require_api_key
from service.threads import off_loop

MAX_MESSAGES = 256
MAX_PROMPT_CHARS = 200_000
MAX_CHOICES = 8
MAX_STOPS = 4

router = APIRouter(prefix="/v1", tags=["chat"], dependencies=[Depends(require_api_key)])
ERRORS = error_responses(
    s400="Malformed JSON, or a model of another task",
    s404="Unknown model",
    s422="Invalid fields; an unsupported role; a conversation whose last message does not fit the context; "
         "max_tokens over the model's bound")


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    # an enum in the schema only: an unsupported role gets the OpenAI-style 422 naming the message (runtime check)
    role: Annotated[str, StringConstraints(min_length=1, max_length=32)] = Field(
        description="system (or developer), user or assistant",
        json_schema_extra={"enum": list(CHAT_ROLES)})
    content: str | list[ContentPart] | None = Field(default=None, description="text, or a list of text parts")
    name: str | None = None

    def text(self, index: int) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        parts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise Unprocessable(f"messages[{index}].content: only text parts are supported, not {part.type!r}",
                                    param=f"messages.{index}.content")
            parts.append(part.text)
        return "".join(parts)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    include_usage: bool = False


Stop = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request; other OpenAI fields (logprobs, tools, penalties...) are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = Field(default=None, description="a chat model's name (or name:version); the default chat model otherwise")
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False, description="0 = greedy")
    top_p: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    top_k: int | None = Field(default=None, ge=0, le=100_000, description="not OpenAI's: sample among the k likeliest (0 = all)")
    max_tokens: int | None = Field(default=None, ge=1, description="most tokens per choice; the model's max_new_tokens by default")
    max_completion_tokens: int | None = Field(default=None, ge=1, description="the same as max_tokens (OpenAI's newer name)")
    stop: Stop | list[Stop] | None = Field(default=None, description=f"up to {MAX_STOPS} strings that end the reply (not included)")
    # null is the default for stream and n, as in OpenAI's API (its python client sends "n": null when given None)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=1, ge=1, le=MAX_CHOICES, description="choices to generate")
    seed: int | None = Field(default=None, description="the same seed, request and model give the same sampled reply")
    user: str | None = None

    @model_validator(mode="after")
    def _null_means_default(self) -> "ChatCompletionRequest":
        self.n = 1 if self.n is None else self.n
        self.stream = bool(self.stream)
        return self


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatChoiceMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatChoice]
    usage: Usage


def _stops(stop: str | list[str] | None) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > MAX_STOPS:
        raise Unprocessable(f"stop: at most {MAX_STOPS} strings", param="stop")
    return stops


def _conversation(body: ChatCompletionRequest) -> list[tuple[str, str]]:
    messages = [(m.role, m.text(i)) for i, m in enumerate(body.messages)]
    chars = sum(len(text) for _, text in messages)
    if chars > MAX_PROMPT_CHARS:
        raise Unprocessable(f"messages hold {chars} characters; at most {MAX_PROMPT_CHARS}", param="messages")
    return messages


def _job(runtime: ChatModel, body: ChatCompletionRequest, messages, events: AsyncEvents, max_tokens: int) -> Job:
    prompt = runtime.prompt(messages, max_tokens)
    seed = None if body.seed is None else body.seed % 2**64
    return runtime.job(prompt, events.sink(0), n=body.n, max_new_tokens=max_tokens, stop=_stops(body.stop), seed=seed,
                       sampling=runtime.sampling(body.temperature, body.top_p, body.top_k), stream=body.stream)


def _sse(payload: dict) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class _Reply:
    """The fields every chunk or completion of one request shares."""

    def __init__(self, model: ModelVersion, prompt_tokens: int):
        self.head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model.name,
                     "system_fingerprint": f"{model.name}:{model.version}"}
        self.prompt_tokens = prompt_tokens

    def usage(self, completion_tokens: int) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": self.prompt_tokens + completion_tokens}

    def chunk(self, index: int, delta: dict, finish_reason: str | None = None, **extra) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse({**self.head, "object": "chat.completion.chunk", "choices": [choice], **extra})


async def _stream(request: Request, model: ModelVersion, job: Job, events: AsyncEvents, reply: _Reply, n: int,
                  include_usage: bool) -> AsyncIterator[bytes]:
    """Chunks as the engine produces tokens. Freeing the job's rows when the stream ends early is the
    response's close hook (GuardedStream), not this generator's: a generator left in a drain is not closed."""
    extra = {"usage": None} if include_usage else {}
    completion = 0
    for index in range(n):
        yield reply.chunk(index, {"role": "assistant", "content": ""}, **extra)
    while True:
        _, event = await events.get()
        if event.kind == "delta":
            yield reply.chunk(event.index, {"content": event.text}, **extra)
        elif event.kind == "finish":
            completion += event.tokens
            yield reply.chunk(event.index, {}, event.reason, **extra)
        elif event.kind == "error":
            error = event.error
            status = error.status_code if isinstance(error, NeuroserveError) else 500
            yield _sse(error_body(request.url.path, status, getattr(error, "message", str(error))))
            break
        else:  # done
            if include_usage:
                yield _sse({**reply.head, "object": "chat.completion.chunk", "choices": [], "usage": reply.usage(completion)})
            break
    yield b"data: [DONE]\n\n"


# One server-sent event of a streamed reply, the generic SSE fields (OpenAPI 3.2 names this an itemSchema; on 3.1,
# schemathesis validates each parsed event against the media type's schema)
SSE_EVENT = {"type": "object", "required": ["data"], "properties": {
    "data": {"type": "string", "description": "a chat.completion.chunk JSON object (an {\"error\": ...} object if the "
                                              "reply fails mid-stream); the last event's data is [DONE]"},
    "event": {"type": "string"}, "id": {"type": "string"}, "retry": {"type": "integer", "minimum": 0}}}


@router.post("/chat/completions", response_model=ChatCompletion, summary="Chat completion (OpenAI-compatible; stream=true for server-sent events)",
             responses={**ERRORS, 200: {"content": {"application/json": {}, "text/event-stream": {"schema": SSE_EVENT}}}})
async def chat_completions(body: ChatCompletionRequest, request: Request, repo: RepositoryDep):
    model = repo.for_task(CHAT_TASK, body.model)
    mark_model(request, model)
    runtime: ChatModel = model.session
    max_tokens = body.max_completion_tokens or body.max_tokens or runtime.params.max_new_tokens
    messages = _conversation(body)
    events = AsyncEvents()
    job = await off_loop(lambda: _job(runtime, body, messages, events, max_tokens), sum(len(text) for _, text in messages))
    runtime.engine.submit(job)
    reply = _Reply(model, len(job.tokens))
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return GuardedStream(_stream(request, model, job, events, reply, body.n, include_usage),
                             on_close=lambda: cancel_unfinished([job]), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    finished = (await run_generation(request, model, [job], events))[0]
    choices = [{"index": e.index, "message": {"role": "assistant", "content": e.text}, "logprobs": None,
                "finish_reason": e.reason} for e in sorted(finished, key=lambda e: e.index)]
    return JSONBytes({**reply.head, "object": "chat.completion", "choices": choices,
                      "usage": reply.usage(sum(e.tokens for e in finished))})
