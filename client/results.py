"""Typed results: plain dataclasses built from the server's JSON. ``raw`` keeps the JSON as received."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Iterator


@dataclass
class Ood:
    """How unlike the model's training inputs one input is (present when the model has an OOD profile)."""

    score: float  # higher is more unusual
    unusual: bool  # score >= the model's threshold

    @classmethod
    def parse(cls, value: dict | None) -> "Ood | None":
        return cls(value["score"], value["unusual"]) if value else None


@dataclass
class Explanation:
    """Why the model answered as it did (requests with explain=True; docs/explanations.md). The fields of the
    task are set: images relevance and overlay_png, sentiment tokens and weights, fraud and deterioration features,
    forecasts history_weights."""

    relevance: list[list[float]] | None = None  # height x width of the image as the model saw it
    overlay_png: bytes | None = None  # the image with the relevance over it, PNG bytes (decoded from base64)
    tokens: list[str] | None = None  # the words of the text, in order
    weights: list[float] | None = None  # one per word; positive pushes towards the predicted label
    features: list[tuple[str, float]] | None = None  # (name, weight), largest |weight| first
    history_weights: list[float] | None = None  # one per history value used

    @classmethod
    def parse(cls, value: dict | None) -> "Explanation | None":
        if not value:
            return None
        png = value.get("overlay_png")
        features = value.get("features")
        return cls(value.get("relevance"), base64.b64decode(png) if png else None, value.get("tokens"),
                   value.get("weights"), [(f["name"], f["weight"]) for f in features] if features is not None else None,
                   value.get("history_weights"))


@dataclass
class LabelScore:
    label: str
    score: float


@dataclass
class Classification:
    label: str
    score: float
    top_k: list[LabelScore]
    ood: Ood | None = None
    explanation: Explanation | None = None


@dataclass
class ClassifyResult:
    model: str
    version: str
    results: list[Classification]
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict) -> "ClassifyResult":
        results = [Classification(r["label"], r["score"], [LabelScore(t["label"], t["score"]) for t in r["top_k"]],
                                  Ood.parse(r.get("ood")), Explanation.parse(r.get("explanation")))
                   for r in body["results"]]
        return cls(body["model"], body["version"], results, body)


@dataclass
class Subtype:
    label: str
    score: float
    probabilities: dict[str, float]


@dataclass
class TumorDetection:
    tumor: bool
    probability: float
    threshold: float
    subtype: Subtype | None = None
    ood: Ood | None = None
    explanation: Explanation | None = None


@dataclass
class TumorResult:
    model: str
    version: str
    results: list[TumorDetection]
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict) -> "TumorResult":
        results = []
        for r in body["results"]:
            subtype = r.get("subtype")
            results.append(TumorDetection(r["tumor"], r["probability"], r["threshold"],
                                          Subtype(**subtype) if subtype else None, Ood.parse(r.get("ood")),
                                          Explanation.parse(r.get("explanation"))))
        return cls(body["model"], body["version"], results, body)


@dataclass
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max in pixels of the picture as sent


@dataclass
class ImageDetections:
    detections: list[Detection]  # highest score first
    width: int
    height: int


@dataclass
class DetectionResult:
    model: str
    version: str
    results: list[ImageDetections]
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict) -> "DetectionResult":
        results = [ImageDetections([Detection(d["label"], d["score"], tuple(d["box"])) for d in r["detections"]],
                                   r["width"], r["height"]) for r in body["results"]]
        return cls(body["model"], body["version"], results, body)


@dataclass
class Sentiment:
    label: str
    score: float  # probability that the text is positive
    ood: Ood | None = None
    explanation: Explanation | None = None


@dataclass
class SentimentResult:
    model: str
    version: str
    results: list[Sentiment]
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict) -> "SentimentResult":
        return cls(body["model"], body["version"], [Sentiment(r["label"], r["score"], Ood.parse(r.get("ood")),
                                                              Explanation.parse(r.get("explanation")))
                                                    for r in body["results"]], body)


@dataclass
class FraudScore:
    fraud: bool  # probability >= threshold
    probability: float  # P(fraud)
    threshold: float
    ood: Ood | None = None
    explanation: Explanation | None = None


@dataclass
class FraudResult:
    model: str
    version: str
    results: list[FraudScore]
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict) -> "FraudResult":
        return cls(body["model"], body["version"],
                   [FraudScore(r["fraud"], r["probability"], r["threshold"], Ood.parse(r.get("ood")),
                               Explanation.parse(r.get("explanation"))) for r in body["results"]], body)


@dataclass
class IgnoredMeasurement:
    """A measurement outside its physiological limits (or unused by the model), left out of the answer."""

    minute: int
    parameter: str
    value: float
    reason: str


@dataclass
class StayRisk:
    risk: float  # P(in-hospital death) from what the stay has so far
    high_risk: bool  # risk >= threshold
    threshold: float
    hours_observed: int
    ignored: list[IgnoredMeasurement] = field(default_factory=list)
    ood: Ood | None = None
    explanation: Explanation | None = None


@dataclass
class DeteriorationResult:
    model: str
    version: str
    results: list[StayRisk]
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict) -> "DeteriorationResult":
        return cls(body["model"], body["version"],
                   [StayRisk(r["risk"], r["high_risk"], r["threshold"], r["hours_observed"],
                             [IgnoredMeasurement(**i) for i in r.get("ignored", [])], Ood.parse(r.get("ood")),
                             Explanation.parse(r.get("explanation"))) for r in body["results"]], body)


@dataclass
class Forecast:
    model: str
    version: str
    forecast: list[float]  # the median, one value per step
    lower: list[float]
    upper: list[float]
    interval: float  # nominal coverage of [lower, upper]
    timestamps: list[str] | None = None  # traffic: the hour each value is for
    ood: list[Ood] | None = None  # one per input history, when the model has an OOD profile
    raw: dict = field(default_factory=dict, repr=False, compare=False)
    explanation: Explanation | None = None  # with explain=True

    @classmethod
    def from_json(cls, body: dict) -> "Forecast":
        return cls(body["model"], body["version"], body["forecast"], body["lower"], body["upper"],
                   body["interval"], body.get("timestamps"),
                   [Ood.parse(o) for o in body["ood"]] if body.get("ood") is not None else None, body,
                   Explanation.parse(body.get("explanation")))


@dataclass
class Translation:
    model: str
    version: str
    translations: list[str]
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict) -> "Translation":
        return cls(body["model"], body["version"], body["translations"], body)


@dataclass
class ChatCompletion:
    model: str
    content: str  # the first choice's message
    finish_reason: str | None
    usage: dict
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict) -> "ChatCompletion":
        choice = body["choices"][0]
        return cls(body.get("model", ""), choice["message"].get("content") or "", choice.get("finish_reason"),
                   body.get("usage") or {}, body)


@dataclass
class ModelInfo:
    id: str
    task: str | None
    versions: list[str]
    default_version: str | None
    ready: bool
    state: str
    reason: str = ""
    provider: str | None = None
    description: str = ""
    ood: bool = False  # answers carry ood scores

    @classmethod
    def from_json(cls, row: dict) -> "ModelInfo":
        return cls(row["id"], row.get("task"), row.get("versions", []), row.get("default_version"),
                   bool(row.get("ready")), row.get("state", ""), row.get("reason", ""), row.get("provider"),
                   row.get("description", ""), bool(row.get("ood", False)))


@dataclass
class ModelList:
    data: list[ModelInfo]
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict) -> "ModelList":
        return cls([ModelInfo.from_json(row) for row in body["data"]], body)

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def get(self, name: str) -> ModelInfo | None:
        return next((m for m in self.data if m.id == name), None)


@dataclass
class Health:
    live: bool
    ready: bool
    loading: list[str]  # models still loading
    failed: dict[str, str]  # model -> why it failed to load
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, live: dict, ready: dict) -> "Health":
        return cls(bool(live.get("live")), bool(ready.get("ready")), ready.get("loading", []),
                   ready.get("failed", {}), {"live": bool(live.get("live")), **ready})
