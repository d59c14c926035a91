"""Fraud scoring: card transactions (the ULB columns Time, V1..V28, Amount) -> P(fraud) and a flag."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, create_model

from service.api.deps import RepositoryDep, error_responses
from service.errors import ModelLoadError
from service.explain import (EXPLAIN_DESCRIPTION, FeatureExplanation, check_items, feature_explanation,
                             run_with_variants, shapley_plan)
from service.ood import OodScore, attach_ood
from service.repository import ModelVersion
from service.responses import JSONBytes
from service.security import require_api_key

FRAUD_TASK = "fraud-scoring"
MAX_TRANSACTIONS = 1024
# The model's input columns, in order (training/data/fraud.py writes the same list into the manifest; checked at load).
FEATURES: tuple[str, ...] = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount")
# |value| bound: float32 holds it, and real ULB values are far inside it (|V| < 120, Amount < 26,000, Time < 172,800).
BOUND = 1e9

router = APIRouter(prefix="/v1/fraud", tags=["fraud"], dependencies=[Depends(require_api_key)])
ERRORS = error_responses(s422="Missing or unknown columns, non-finite or negative Time/Amount, too many transactions, "
                              "a threshold outside [0, 1]")

Finite = Annotated[float, Field(allow_inf_nan=False, ge=-BOUND, le=BOUND, strict=True)]
NonNegative = Annotated[float, Field(allow_inf_nan=False, ge=0, le=BOUND, strict=True)]

Transaction = create_model(
    "Transaction",
    __config__=ConfigDict(extra="forbid"),
    __doc__="One card transaction as ULB released it: Time (seconds since the data's first transaction), the PCA "
            "components V1..V28 and Amount.",
    **{name: (NonNegative if name in ("Time", "Amount") else Finite, Field(description=f"the ULB column {name}"))
       for name in FEATURES},
)


class FraudRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transactions: list[Transaction] = Field(min_length=1, max_length=MAX_TRANSACTIONS,  # type: ignore[valid-type]
                                            description=f"1-{MAX_TRANSACTIONS} transactions")
    threshold: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False, strict=True,
                                    description="flag when probability >= this; the model's own (its card) otherwise")
    model: str | None = Field(default=None, description="name or name:version; the task's default otherwise")
    explain: bool = Field(default=False, strict=True, description=EXPLAIN_DESCRIPTION)


class FraudResult(BaseModel):
    fraud: bool = Field(description="probability >= threshold")
    probability: float = Field(description="P(fraud)")
    threshold: float
    ood: OodScore | None = Field(default=None, description="present when the model has an OOD profile")
    explanation: FeatureExplanation | None = Field(
        default=None, description="with explain: each column's Shapley estimate, positive raises P(fraud)")


class FraudResponse(BaseModel):
    model: str
    version: str
    results: list[FraudResult]


def prepare_fraud_model(model: ModelVersion) -> dict:
    """At load: the graph takes 'transactions' FP32 [batch, 30] in FEATURES order and outputs 'probability'."""
    spec = next((s for s in model.session.inputs if s.name == "transactions"), None)
    if spec is None or spec.datatype != "FP32" or len(spec.shape) != 2 or spec.shape[1] not in (-1, len(FEATURES)):
        raise ModelLoadError(f"a fraud model takes 'transactions' FP32 [batch, {len(FEATURES)}]")
    if "probability" not in model.session.output_names:
        raise ModelLoadError("a fraud model outputs 'probability' FP32 [batch]")
    order = tuple(model.manifest.parameters.get("features", FEATURES))
    if order != FEATURES:
        raise ModelLoadError(f"manifest parameters.features must be {list(FEATURES)}")
    # Explanations switch columns between the transaction's values and this baseline (the train split's medians,
    # written by the recipe; 0 for a column the manifest does not give).
    baseline = model.manifest.parameters.get("explain_baseline", {})
    return {"threshold": float(model.manifest.parameters.get("threshold", 0.5)),
            "baseline": np.array([float(baseline.get(name, 0.0)) for name in FEATURES], dtype=np.float32)}


PREPARERS = {FRAUD_TASK: prepare_fraud_model}


def fraud_rows(transactions: list) -> np.ndarray:
    """The model input for the transactions: FP32 [n, 30], columns in FEATURES order (also what explanations perturb)."""
    return np.array([[getattr(t, name) for name in FEATURES] for t in transactions], dtype=np.float32)


def flag(probabilities: np.ndarray, threshold: float, key: str) -> list[dict]:
    """One result per row: {key: p >= threshold, "probability"/"risk": p, "threshold": threshold}."""
    value_key = "probability" if key == "fraud" else "risk"
    return [{key: bool(p >= threshold), value_key: float(p), "threshold": threshold} for p in probabilities]


@router.post("/score", response_model=FraudResponse, response_model_exclude_none=True, responses=ERRORS,
             summary="Fraud probability of card transactions")
async def score(body: FraudRequest, request: Request, repo: RepositoryDep) -> JSONBytes:
    model = repo.for_task(FRAUD_TASK, body.model)
    rows = fraud_rows(body.transactions)
    variants, orders = [], None
    if body.explain:  # Shapley sampling: coalitions of columns, the others at the baseline
        check_items(len(rows))
        masks, orders = shapley_plan(len(FEATURES))
        variants = [{"transactions": np.where(masks, row, model.extras["baseline"])} for row in rows]
    outputs, varied = await run_with_variants(request, model, {"transactions": rows}, variants)
    threshold = model.extras["threshold"] if body.threshold is None else float(body.threshold)
    probability = outputs["probability"].reshape(-1)
    results = flag(probability, threshold, "fraud")
    for result, p, coalitions in zip(results, probability, varied):
        result["explanation"] = feature_explanation(list(FEATURES), p, coalitions["probability"].reshape(-1), orders)
    attach_ood(request, model, outputs, results)
    return JSONBytes({"model": model.name, "version": model.version, "results": results})
