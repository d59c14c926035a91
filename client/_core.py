"""What the sync and async clients share: settings, request building, response parsing, endpoints.

Every endpoint is written once, in `_Endpoints`, as a `Call` (what to send, how to read the answer)
handed to `self._execute`, which the two clients implement with blocking or awaitable I/O. An
endpoint of several requests (health) is a generator of calls, run by `self._run`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Generator, Iterable, Sequence
from urllib.parse import quote

import httpx
import numpy as np

from client._version import __version__
from client.errors import ServerError, error_for, transport_error
from client.images import ImageInput, image_files
from client.results import (ChatCompletion, ClassifyResult, DetectionResult, DeteriorationResult, Forecast, FraudResult,
                            Health, ModelList, SentimentResult, Translation, TumorResult)
from client.retry import RetryPolicy, RetryState
from client.tensors import HEADER_LENGTH, decode_response, encode_request

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 60.0
Message = dict[str, str]


def _json(response: httpx.Response) -> Any:
    return response.json()


def _reads(result: Any) -> Callable[[httpx.Response], Any]:
    """A parser that builds `result` (a results dataclass) from the JSON answer."""
    return lambda response: result.from_json(response.json())


@dataclass
class Call:
    """One HTTP request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], Any] = _json
    json: Any = None
    content: bytes | None = None
    files: list | None = None
    data: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    ok: tuple[int, ...] = ()  # error statuses that still carry a normal answer (readiness: 503)
    retry: bool = True
    stream: bool = False  # hand back the open response instead of parsing it

    def build(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        return http.build_request(self.method, self.path, json=self.json, content=self.content, files=self.files,
                                  data=self.data, headers=self.headers or None)

    def retry_allowed(self, outcome: httpx.Response | Exception) -> bool:
        return self.retry and not (isinstance(outcome, httpx.Response) and outcome.status_code in self.ok)

    def finish(self, outcome: httpx.Response | Exception, retries: RetryState, url: str) -> Any:
        """The parsed answer, or the typed exception for a failure."""
        if isinstance(outcome, httpx.TransportError):
            raise transport_error(outcome, url) from outcome
        if isinstance(outcome, Exception):
            raise outcome
        if outcome.is_error and outcome.status_code not in self.ok:
            raise error_for(outcome, retries.attempts)
        if self.stream:
            return outcome
        try:
            return self.parse(outcome)
        except (ValueError, KeyError, TypeError) as exc:
            raise ServerError(f"unexpected answer from {self.path}: {exc!r}", status=outcome.status_code) from exc


def sse_delta(line: str) -> str | None:
    """One server-sent-event line of a streamed chat completion -> its text ("" for none), None at [DONE]."""
    if not line.startswith("data:"):
        return ""  # blank separators, comments, event:/id: fields
    payload = line[5:].strip()
    if payload == "[DONE]":
        return None
    try:
        event = json.loads(payload)
    except ValueError:
        raise ServerError(f"malformed event in the chat stream: {payload[:200]!r}") from None
    if not isinstance(event, dict):
        raise ServerError(f"malformed event in the chat stream: {payload[:200]!r}")
    if "error" in event:
        error = event["error"]
        raise ServerError(error.get("message", str(error)) if isinstance(error, dict) else str(error))
    choices = event.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""


def _model_path(model: str, version: str | None = None) -> str:
    path = f"/v2/models/{quote(model, safe='')}"
    return f"{path}/versions/{quote(str(version), safe='')}" if version is not None else path


def _floats(values: Iterable[float]) -> list[float]:
    return np.asarray(values, dtype=np.float64).reshape(-1).tolist()


def _time(value: datetime | str) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _drop_none(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def _explain_form(explain: bool) -> str | None:
    """The multipart form's explain field: sent only when asked (older servers refuse unknown fields)."""
    return "true" if explain else None


def _texts(texts: str | Sequence[str]) -> list[str]:
    return [texts] if isinstance(texts, str) else list(texts)


def _decode_tensors(response: httpx.Response) -> dict[str, np.ndarray]:
    return decode_response(response.content, response.headers.get(HEADER_LENGTH))


class _Endpoints:
    """One typed method per endpoint. The async client's methods return awaitables of the same results.

    Each client provides the I/O: `_execute(call)` sends with retries, then parses or raises; `_run(plan)`
    sends a generator's calls in turn; `_stream_deltas(call)` iterates a chat stream's text.
    """

    def __init__(self, url: str | None = None, *, api_key: str | None = None, timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT_S,
                 retry: RetryPolicy | None = None, max_retries: int | None = None,
                 transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
                 headers: dict[str, str] | None = None):
        """url and api_key default to $NEUROSERVE_URL and $NEUROSERVE_API_KEY; timeout is in seconds (None: none)."""
        self.url = (url or os.environ.get("NEUROSERVE_URL") or DEFAULT_URL).rstrip("/")
        api_key = api_key if api_key is not None else os.environ.get("NEUROSERVE_API_KEY") or None
        retry = retry or RetryPolicy()
        self.retry = retry if max_retries is None else dataclasses.replace(retry, max_retries=max_retries)
        all_headers = {"User-Agent": f"neuroserve-client/{__version__}", **(headers or {})}
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        self._http = self._http_class(base_url=self.url, timeout=timeout, headers=all_headers, transport=transport)

    _http_class: type = httpx.Client
    # The I/O, provided by each client (blocking, or returning awaitables).
    _execute: Callable[[Call], Any]
    _run: Callable[[Generator[Call, Any, Any]], Any]
    _stream_deltas: Callable[[Call], Any]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- task endpoints ------------------------------------------------------------------------------
    def classify_images(self, images: ImageInput | Iterable[ImageInput], top_k: int = 5,
                        model: str | None = None, explain: bool = False) -> ClassifyResult:
        """POST /v1/images/classify: paths, bytes, PIL images or uint8 arrays; the top_k labels of each.
        explain=True: each result's `explanation` (at most 8 images; docs/explanations.md)."""
        form = _drop_none(top_k=str(top_k), model=model, explain=_explain_form(explain))
        return self._execute(Call("POST", "/v1/images/classify", _reads(ClassifyResult),
                                  files=image_files(images), data=form))

    def detect_tumor(self, images: ImageInput | Iterable[ImageInput], model: str | None = None,
                     explain: bool = False) -> TumorResult:
        """POST /v1/tumor/detect: tumor probability (and subtype, when the model has one) per MRI slice."""
        return self._execute(Call("POST", "/v1/tumor/detect", _reads(TumorResult), files=image_files(images),
                                  data=_drop_none(model=model, explain=_explain_form(explain))))

    def detect_objects(self, images: ImageInput | Iterable[ImageInput], score_threshold: float | None = None,
                       max_detections: int | None = None, model: str | None = None) -> DetectionResult:
        """POST /v1/images/detect: boxes (pixels of each picture as sent), labels and scores, best first.
        score_threshold (0-1) overrides the model's own; max_detections (1-300) caps each picture's list."""
        form = _drop_none(score_threshold=None if score_threshold is None else repr(float(score_threshold)),
                          max_detections=None if max_detections is None else str(int(max_detections)), model=model)
        return self._execute(Call("POST", "/v1/images/detect", _reads(DetectionResult), files=image_files(images),
                                  data=form))

    def sentiment(self, texts: str | Sequence[str], model: str | None = None, explain: bool = False) -> SentimentResult:
        """POST /v1/text/sentiment: positive/negative and P(positive) per text (explain=True: a weight per word)."""
        return self._execute(Call("POST", "/v1/text/sentiment", _reads(SentimentResult),
                                  json=_drop_none(texts=_texts(texts), model=model, explain=explain or None)))

    def score_fraud(self, transactions: dict | Sequence[dict], threshold: float | None = None,
                    model: str | None = None, explain: bool = False) -> FraudResult:
        """POST /v1/fraud/score: P(fraud) and a flag per transaction ({"Time", "V1".."V28", "Amount"}); threshold
        overrides the model's own (0-1); explain=True: a weight per column."""
        rows = [transactions] if isinstance(transactions, dict) else list(transactions)
        body = _drop_none(transactions=rows, threshold=threshold, model=model, explain=explain or None)
        return self._execute(Call("POST", "/v1/fraud/score", _reads(FraudResult), json=body))

    def deterioration(self, stays: dict | Sequence[dict], threshold: float | None = None,
                      model: str | None = None, explain: bool = False) -> DeteriorationResult:
        """POST /v1/clinical/deterioration: in-hospital mortality risk per ICU stay ({"measurements": [{"minute",
        "parameter", "value"}], "age", "gender", "height", "icu_type"}), from what each stay has so far. A research
        demonstration, not a medical device. explain=True: a weight per measured parameter and static field."""
        rows = [stays] if isinstance(stays, dict) else list(stays)
        body = _drop_none(stays=rows, threshold=threshold, model=model, explain=explain or None)
        return self._execute(Call("POST", "/v1/clinical/deterioration", _reads(DeteriorationResult), json=body))

    def translate(self, texts: str | Sequence[str], source: str = "en", target: str = "de",
                  beam_size: int | None = None, model: str | None = None) -> Translation:
        """POST /v1/text/translate: one translation per text."""
        body = _drop_none(texts=_texts(texts), source=source, target=target, beam_size=beam_size, model=model)
        return self._execute(Call("POST", "/v1/text/translate", _reads(Translation), json=body))

    def forecast_traffic(self, history: Iterable[float], start: datetime | str | None = None,
                         timestamps: Sequence[datetime | str] | None = None, horizon: int = 24,
                         model: str | None = None, explain: bool = False) -> Forecast:
        """POST /v1/forecast/traffic: hourly volumes (>= 168, oldest first) and exactly one of start/timestamps."""
        body = _drop_none(history=_floats(history), start=None if start is None else _time(start),
                          timestamps=None if timestamps is None else [_time(t) for t in timestamps],
                          horizon=horizon, model=model, explain=explain or None)
        return self._execute(Call("POST", "/v1/forecast/traffic", _reads(Forecast), json=body))

    def forecast_price(self, history: Iterable[float], horizon: int = 5, model: str | None = None,
                       explain: bool = False) -> Forecast:
        """POST /v1/forecast/price: daily closes (>= 60, oldest first) -> the next 1-5 closes."""
        body = _drop_none(history=_floats(history), horizon=horizon, model=model, explain=explain or None)
        return self._execute(Call("POST", "/v1/forecast/price", _reads(Forecast), json=body))

    def chat(self, messages: str | Sequence[Message], model: str | None = None, *, max_tokens: int | None = None,
             temperature: float | None = None, top_p: float | None = None, stop: str | Sequence[str] | None = None,
             stream: bool = False) -> ChatCompletion | Any:
        """POST /v1/chat/completions (OpenAI shape). stream=True gives an iterator of text deltas instead
        (an async iterator from the async client); the request is sent when iteration starts."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        body = _drop_none(model=model, messages=list(messages), max_tokens=max_tokens, temperature=temperature,
                          top_p=top_p, stop=stop if stop is None or isinstance(stop, str) else list(stop))
        if stream:
            body["stream"] = True
            return self._stream_deltas(Call("POST", "/v1/chat/completions", json=body, stream=True,
                                            headers={"Accept": "text/event-stream"}))
        return self._execute(Call("POST", "/v1/chat/completions", _reads(ChatCompletion), json=body))

    # -- models, health, raw inference ---------------------------------------------------------------
    def models(self) -> ModelList:
        """GET /v1/models: every model with its task, versions, readiness and provider."""
        return self._execute(Call("GET", "/v1/models", _reads(ModelList)))

    def health(self) -> Health:
        """GET /v2/health/live and /v2/health/ready; a server that is up but not ready is not an error."""
        return self._run(self._health_plan())

    @staticmethod
    def _health_plan() -> Generator[Call, Any, Health]:
        live = yield Call("GET", "/v2/health/live")
        ready = yield Call("GET", "/v2/health/ready", ok=(503,), retry=False)
        return Health.from_json(live, ready)

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None = None,
              version: str | int | None = None) -> dict[str, np.ndarray]:
        """POST /v2/models/{model}[/versions/{v}]/infer with binary tensors both ways; every output by default.

        The datatype follows the array's dtype; str, bytes and object arrays are BYTES, and BYTES
        outputs come back as object arrays of bytes.
        """
        body, header_length = encode_request(inputs, None if outputs is None else list(outputs))
        headers = {HEADER_LENGTH: str(header_length), "Content-Type": "application/octet-stream"}
        return self._execute(Call("POST", _model_path(model, version) + "/infer", _decode_tensors,
                                  content=body, headers=headers))
