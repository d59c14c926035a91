"""Forecast endpoints: hourly traffic volume (I-94) and daily stock closes, with 80% intervals."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.api.deps import RepositoryDep, error_responses
from service.calendar import CALENDAR_FEATURES, calendar_features
from service.errors import ModelLoadError, Unprocessable
from service.explain import (EXPLAIN_DESCRIPTION, ForecastExplanation, occlude_series, repeat_row, run_with_variants,
                             series_explanation)
from service.ood import OodScore, ood_field
from service.repository import ModelVersion
from service.responses import JSONBytes
from service.security import require_api_key

TRAFFIC_TASK = "traffic-forecast"
PRICE_TASK = "price-forecast"
TRAFFIC_HOURS = 168
PRICE_DAYS = 60
MAX_HISTORY = 10_000

router = APIRouter(prefix="/v1/forecast", tags=["forecast"], dependencies=[Depends(require_api_key)])
ERRORS = error_responses(s422="NaN/infinite/negative values, history too short or too long, bad times, bad horizon")

# Bounded so float32 (what the graphs take) holds every value exactly enough and never overflows.
# Strict: "12" is a wrong type, not a number; an int is still a valid float.
Finite = Annotated[float, Field(allow_inf_nan=False, le=1e9, strict=True)]


def _prepare(input_name: str, window: int):
    def prepare(model: ModelVersion) -> dict:
        names = {spec.name: spec for spec in model.session.inputs}
        spec = names.get(input_name)
        if spec is None or spec.shape[-1] not in (-1, window):
            raise ModelLoadError(f"a {model.manifest.task} model takes {input_name!r} FP32 [batch, {window}]")
        outputs = {spec.name: spec for spec in model.session.outputs}
        if "quantiles" not in outputs or len(outputs["quantiles"].shape) != 3:
            raise ModelLoadError("a forecast model outputs 'quantiles' [batch, horizon, 3] (q10, q50, q90)")
        horizon = outputs["quantiles"].shape[1]
        horizon = horizon if horizon > 0 else int(model.manifest.parameters.get("horizon", 1))
        calendar = names.get("calendar")  # traffic models that read the calendar of history + forecast hours
        if calendar is not None and list(calendar.shape[1:]) != [window + horizon, len(CALENDAR_FEATURES)]:
            raise ModelLoadError(f"'calendar' must be FP32 [batch, {window + horizon}, {len(CALENDAR_FEATURES)}] "
                                 f"(service/calendar.py), not {calendar.shape}")
        return {"window": window, "horizon": horizon, "calendar": calendar is not None,
                "interval": float(model.manifest.parameters.get("interval", 0.8))}
    return prepare


PREPARERS = {TRAFFIC_TASK: _prepare("history", TRAFFIC_HOURS), PRICE_TASK: _prepare("closes", PRICE_DAYS)}


class ForecastResponse(BaseModel):
    model: str
    version: str
    forecast: list[float] = Field(description="median forecast, one value per step")
    lower: list[float] = Field(description="lower bound of the prediction interval")
    upper: list[float] = Field(description="upper bound of the prediction interval")
    interval: float = Field(description="nominal coverage of [lower, upper]")
    timestamps: list[str] | None = Field(default=None, description="traffic: the hour each forecast is for")
    ood: list[OodScore] | None = Field(default=None, description="one per input history, when the model has an OOD profile")
    explanation: ForecastExplanation | None = Field(default=None, description="with explain: one weight per history value used")


class TrafficRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    history: list[Annotated[Finite, Field(ge=0)]] = Field(
        min_length=TRAFFIC_HOURS, max_length=MAX_HISTORY,
        description=f"hourly volumes, oldest first; at least {TRAFFIC_HOURS} (the last {TRAFFIC_HOURS} are used)")
    start: datetime | None = Field(default=None, description="ISO-8601 local time of history[0]")
    timestamps: list[datetime] | None = Field(default=None, max_length=MAX_HISTORY,
                                              description="one ISO-8601 time per history value, hourly and contiguous")
    horizon: int = Field(default=24, ge=1, le=24, strict=True, description="hours to forecast (1-24)")
    model: str | None = Field(default=None, description="name or name:version")
    explain: bool = Field(default=False, strict=True, description=EXPLAIN_DESCRIPTION)

    @model_validator(mode="after")
    def _times(self) -> "TrafficRequest":
        if (self.start is None) == (self.timestamps is None):
            raise ValueError("give exactly one of 'start' and 'timestamps'")
        if self.timestamps is not None:
            if len(self.timestamps) != len(self.history):
                raise ValueError(f"{len(self.timestamps)} timestamps for {len(self.history)} history values")
            steps = {b - a for a, b in zip(self.timestamps, self.timestamps[1:])}
            if steps != {timedelta(hours=1)}:
                raise ValueError("timestamps must be hourly and contiguous (no gaps, no repeats)")
        return self

    def window_start(self) -> datetime:
        first = self.start if self.start is not None else self.timestamps[0]
        return first + timedelta(hours=len(self.history) - TRAFFIC_HOURS)


class PriceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    history: list[Annotated[Finite, Field(gt=0)]] = Field(
        min_length=PRICE_DAYS, max_length=MAX_HISTORY,
        description=f"daily closes, oldest first, positive; at least {PRICE_DAYS} (the last {PRICE_DAYS} are used)")
    horizon: int = Field(default=5, ge=1, le=5, strict=True, description="trading days to forecast (1-5)")
    model: str | None = Field(default=None, description="name or name:version")
    explain: bool = Field(default=False, strict=True, description=EXPLAIN_DESCRIPTION)


def hour_of_week(moment: datetime) -> int:
    """Monday 00:00 = 0 ... Sunday 23:00 = 167, on the wall clock the time was given in."""
    return moment.weekday() * 24 + moment.hour


def _model_for(repo, task: str, requested: str | None, horizon: int) -> ModelVersion:
    model = repo.for_task(task, requested)
    if horizon > model.extras["horizon"]:
        raise Unprocessable(f"horizon {horizon} exceeds this model's {model.extras['horizon']}")
    return model


async def _run(request: Request, model: ModelVersion, feeds: dict[str, np.ndarray], series: str, horizon: int,
               explain: bool) -> tuple[dict[str, np.ndarray], dict]:
    """The model's outputs for the one history, and with explain {"explanation": ...}: each history value replaced
    by the history's mean in turn, run with it; the score is the mean median forecast over the horizon."""
    if not explain:
        outputs, _ = await run_with_variants(request, model, feeds, [])
        return outputs, {}
    history, masks = occlude_series(feeds[series][0])
    outputs, (varied,) = await run_with_variants(request, model, feeds,
                                                 [repeat_row(feeds, 0, len(history), **{series: history})])

    def score(quantiles: np.ndarray) -> np.ndarray:
        return np.sort(quantiles[:, :horizon], axis=-1)[..., 1].mean(axis=-1)

    base = score(outputs["quantiles"])[0]
    return outputs, {"explanation": series_explanation(base, score(varied["quantiles"]), masks)}


def _answer(model: ModelVersion, quantiles: np.ndarray, horizon: int, **extra) -> JSONBytes:
    steps = quantiles[0, :horizon]
    ordered = np.sort(steps, axis=-1)  # a guarantee, not a fix: the models already emit ordered quantiles
    return JSONBytes({"model": model.name, "version": model.version, "forecast": ordered[:, 1].tolist(),
                      "lower": ordered[:, 0].tolist(), "upper": ordered[:, 2].tolist(),
                      "interval": model.extras["interval"], **extra})


@router.post("/traffic", response_model=ForecastResponse, response_model_exclude_none=True, responses=ERRORS,
             summary="Forecast the next 1-24 hours of I-94 traffic volume")
async def forecast_traffic(body: TrafficRequest, request: Request, repo: RepositoryDep) -> JSONBytes:
    model = _model_for(repo, TRAFFIC_TASK, body.model, body.horizon)
    start = body.window_start()
    feeds = {"history": np.asarray(body.history[-TRAFFIC_HOURS:], dtype=np.float32)[None, :],
             "hour_of_week": np.array([hour_of_week(start)], dtype=np.int64)}
    if model.extras["calendar"]:  # holidays and time of year, from the request's own times (no new request field)
        feeds["calendar"] = calendar_features(start, TRAFFIC_HOURS + model.extras["horizon"])[None]
    outputs, explanation = await _run(request, model, feeds, "history", body.horizon, body.explain)
    first = start + timedelta(hours=TRAFFIC_HOURS)
    stamps = [(first + timedelta(hours=h)).isoformat() for h in range(body.horizon)]
    return _answer(model, outputs["quantiles"], body.horizon, timestamps=stamps, **ood_field(request, model, outputs),
                   **explanation)


@router.post("/price", response_model=ForecastResponse, response_model_exclude_none=True, responses=ERRORS,
             summary="Forecast the next 1-5 daily closes of a stock")
async def forecast_price(body: PriceRequest, request: Request, repo: RepositoryDep) -> JSONBytes:
    model = _model_for(repo, PRICE_TASK, body.model, body.horizon)
    feeds = {"closes": np.asarray(body.history[-PRICE_DAYS:], dtype=np.float32)[None, :]}
    outputs, explanation = await _run(request, model, feeds, "closes", body.horizon, body.explain)
    return _answer(model, outputs["quantiles"], body.horizon, **ood_field(request, model, outputs), **explanation)
