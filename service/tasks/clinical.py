"""ICU deterioration: in-hospital mortality risk of ICU stays from their (first 48 h of) irregular measurements.

Not a medical device (models/icu-grud/README.md). Cleaning and binning are service/vitals.py's, with the limits
table of the model's manifest: values outside physiological limits are ignored and listed, never refused.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import RepositoryDep, error_responses
from service.errors import ModelLoadError
from service.explain import (EXPLAIN_DESCRIPTION, FeatureExplanation, check_items, feature_explanation,
                             run_with_variants, shapley_plan)
from service.ood import OodScore, attach_ood
from service.repository import ModelVersion
from service.responses import JSONBytes
from service.security import require_api_key
from service.tasks.fraud import flag
from service.vitals import HOURS, MAX_MINUTE, PARAMETERS, STATICS, Stay, Variable, batch_inputs, stay_inputs

DETERIORATION_TASK = "icu-deterioration"
MAX_STAYS = 64
MAX_MEASUREMENTS = 10_000
# Building the bins is Python work (~1 us a measurement): above this many in one request, off the event loop.
INLINE_MEASUREMENTS = 5_000

router = APIRouter(prefix="/v1/clinical", tags=["clinical"], dependencies=[Depends(require_api_key)])
ERRORS = error_responses(s422="Unknown parameters, non-finite values, minutes outside 0..2880, more than 10,000 "
                              "measurements or 64 stays, a missing age or icu_type, a threshold outside [0, 1]")

Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e9, le=1e9, strict=True)]


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minute: int = Field(ge=0, le=MAX_MINUTE, strict=True, description="minutes since ICU admission, 0-2880")
    parameter: Literal[PARAMETERS] = Field(description="a parameter name of the PhysioNet 2012 data, e.g. HR, GCS")  # type: ignore[valid-type]
    value: Finite = Field(description="in the data's units (Temp in C, FiO2 as a fraction, Weight in kg)")


class StayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    measurements: list[Measurement] = Field(max_length=MAX_MEASUREMENTS,
                                            description=f"up to {MAX_MEASUREMENTS:,}, any order; the first 48 h are used")
    age: float = Field(ge=0, le=130, allow_inf_nan=False, strict=True, description="years")
    # strict ints, not Literal: a Literal would take false/true for 0/1 (schemathesis found it)
    gender: int | None = Field(default=None, ge=0, le=1, strict=True, description="0 female, 1 male, null unknown")
    height: Finite | None = Field(default=None, description="cm; outside 100-250 counts as unknown (listed in ignored)")
    icu_type: int = Field(ge=1, le=4, strict=True,
                          description="1 coronary care, 2 cardiac surgery recovery, 3 medical, 4 surgical")


class DeteriorationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stays: list[StayIn] = Field(min_length=1, max_length=MAX_STAYS, description=f"1-{MAX_STAYS} ICU stays")
    threshold: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False, strict=True,
                                    description="high_risk when risk >= this; the model's own (its card) otherwise")
    model: str | None = Field(default=None, description="name or name:version; the task's default otherwise")
    explain: bool = Field(default=False, strict=True, description=EXPLAIN_DESCRIPTION)


class Ignored(BaseModel):
    minute: int
    parameter: str
    value: float
    reason: str


class DeteriorationResult(BaseModel):
    risk: float = Field(description="P(in-hospital death) from what the stay has so far")
    high_risk: bool = Field(description="risk >= threshold")
    threshold: float
    hours_observed: int = Field(description="hours of the stay the answer read (the last measurement's hour, 1-48)")
    ignored: list[Ignored] = Field(description="measurements outside physiological limits, left out")
    ood: OodScore | None = Field(default=None, description="present when the model has an OOD profile")
    explanation: FeatureExplanation | None = Field(
        default=None, description="with explain: Shapley estimates of the stay's measured parameters and age, gender, "
                                  "height, icu_type; positive raises the risk")


class DeteriorationResponse(BaseModel):
    model: str
    version: str
    results: list[DeteriorationResult]


def prepare_deterioration_model(model: ModelVersion) -> dict:
    """At load: the manifest's variables table (limits, mean, std) fits the graph's inputs."""
    params = model.manifest.parameters
    try:
        table = [Variable.from_dict(row) for row in params["variables"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"manifest parameters.variables must list {{name, low, high, mean, std}}: {exc}") from None
    unknown = [v.name for v in table if v.name not in PARAMETERS]
    if unknown or not table:
        raise ModelLoadError(f"manifest parameters.variables: unknown parameters {unknown}")
    if tuple(params.get("statics", STATICS)) != STATICS or int(params.get("hours", HOURS)) != HOURS:
        raise ModelLoadError(f"this server builds statics {list(STATICS)} over {HOURS} hours")
    specs = {s.name: s for s in model.session.inputs}
    for name in ("values", "masks", "deltas"):
        spec = specs.get(name)
        if spec is None or spec.datatype != "FP32" or spec.shape[1:] not in ([HOURS, len(table)], [-1, len(table)], [-1, -1]):
            raise ModelLoadError(f"a deterioration model takes {name!r} FP32 [batch, {HOURS}, {len(table)}]")
    if "statics" not in specs or "hours" not in specs or "risk" not in model.session.output_names:
        raise ModelLoadError("a deterioration model takes 'statics' and 'hours' and outputs 'risk'")
    return {"variables": table, "threshold": float(params.get("threshold", 0.5))}


PREPARERS = {DETERIORATION_TASK: prepare_deterioration_model}


def build_stays(stays: list[StayIn], variables: list[Variable]) -> list[Stay]:
    """Each stay cleaned and binned as in training (also what explanations perturb: batch_inputs(...) gives the feeds)."""
    return [stay_inputs(((m.minute, m.parameter, m.value) for m in s.measurements), variables, age=s.age,
                        gender=s.gender, height=s.height, icu_type=s.icu_type) for s in stays]


# Explanations: a parameter out of a coalition has all its measurements removed (never observed); a static field
# takes the value it has when unknown: age the standardisation mean (64 y), gender and height unknown, the ICU
# type an even mix of the four. Columns of service.vitals.STATICS per field, and that value.
ABSENT_STATICS = {"age": ([0], 0.0), "gender": ([1, 2], 0.0), "height": ([3, 4], 0.0), "icu_type": ([5, 6, 7, 8], 0.25)}


def stay_coalitions(stay: Stay, variables: list[Variable]) -> tuple[list[str], dict[str, np.ndarray], list]:
    """The Shapley players of one stay (its observed parameters, then the static fields), the feeds of their
    coalitions (shapley_plan's layout) and the orders."""
    observed = np.flatnonzero(stay.masks.any(axis=0))
    names = [variables[j].name for j in observed] + list(ABSENT_STATICS)
    masks, orders = shapley_plan(len(names))
    absent = np.zeros((len(masks), stay.values.shape[1]), bool)
    absent[:, observed] = ~masks[:, :len(observed)]
    gone = absent[:, None, :]
    since_admission = ((np.arange(HOURS) + 1) / HOURS).astype(np.float32)[None, :, None]
    statics = np.repeat(stay.statics[None], len(masks), axis=0)
    for k, (columns, value) in enumerate(ABSENT_STATICS.values()):
        statics[np.ix_(~masks[:, len(observed) + k], columns)] = value
    feeds = {"values": np.where(gone, 0.0, stay.values[None]).astype(np.float32),
             "masks": np.where(gone, 0.0, stay.masks[None]).astype(np.float32),
             "deltas": np.where(gone, since_admission, stay.deltas[None]).astype(np.float32),
             "statics": statics, "hours": np.full(len(masks), stay.hours, np.int64)}
    return names, feeds, orders


@router.post("/deterioration", response_model=DeteriorationResponse, response_model_exclude_none=True,
             responses=ERRORS, summary="In-hospital mortality risk of ICU stays (research demo, not a medical device)")
async def deterioration(body: DeteriorationRequest, request: Request, repo: RepositoryDep) -> JSONBytes:
    model = repo.for_task(DETERIORATION_TASK, body.model)
    variables = model.extras["variables"]
    if sum(len(s.measurements) for s in body.stays) > INLINE_MEASUREMENTS:
        stays = await asyncio.to_thread(build_stays, body.stays, variables)
    else:
        stays = build_stays(body.stays, variables)
    if body.explain:
        check_items(len(stays))
    coalitions = [stay_coalitions(stay, variables) for stay in stays] if body.explain else []
    outputs, varied = await run_with_variants(request, model, batch_inputs(stays), [feeds for _, feeds, _ in coalitions])
    threshold = model.extras["threshold"] if body.threshold is None else float(body.threshold)
    risk = outputs["risk"].reshape(-1)
    results = flag(risk, threshold, "high_risk")
    for result, stay in zip(results, stays):
        result.update(hours_observed=stay.hours, ignored=stay.ignored)
    for result, p, (names, _, orders), scores in zip(results, risk, coalitions, varied):
        result["explanation"] = feature_explanation(names, p, scores["risk"].reshape(-1), orders)
    attach_ood(request, model, outputs, results)
    return JSONBytes({"model": model.name, "version": model.version, "results": results})
