"""Out-of-distribution scores: how unlike a model's training inputs each input is.

A model with a profile (manifest field ``ood``, written by ``neuroserve-train ood MODEL``) has a graph output
``ood_features`` [batch, D]: feature groups of the network (its penultimate layer; an early pooled feature map;
for text the mean token embedding and the unknown-token share) side by side. The profile file beside the
manifest holds, per group, the class means of the training inputs and a whitening matrix W (the inverse square
root of their shrunk within-class covariance). A row's score is, summed over the groups,

    (min over classes ||W (x - mean_c)||^2 - loc) / scale

(the class-conditional Mahalanobis distance, standardised by its mean and spread on held-out training inputs, so
groups of different sizes weigh alike; the manifest's ``combine`` may take the largest group's instead). Higher is more unusual; ``unusual`` is score >= the manifest's
threshold, chosen on validation inputs. Everything here is numpy: the server never imports torch.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, Field

from service.errors import ModelLoadError
from service.manifest import Manifest, OodSpec


class OodScore(BaseModel):
    """The `ood` object of one input in a task answer (present when the model has a profile)."""

    score: float = Field(description="how unlike the model's training inputs; higher is more unusual")
    unusual: bool = Field(description="score >= the model's threshold (about 5% of validation inputs exceed it)")


@dataclass
class OodGroupArrays:
    name: str
    start: int
    stop: int
    loc: float
    scale: float
    whiten: np.ndarray  # [d, d] float64
    projected_means: np.ndarray  # [K, d]: the class means already whitened
    mean_norms: np.ndarray  # [K]: their squared norms


class RollingShare:
    """The share of unusual inputs among the last `size` scored (thread-safe; a deque of flags and a running sum)."""

    def __init__(self, size: int):
        self.flags: deque[bool] = deque(maxlen=size)
        self.unusual = 0
        self._lock = threading.Lock()

    def add(self, flags) -> float:
        with self._lock:
            for flag in flags:
                flag = bool(flag)
                if len(self.flags) == self.flags.maxlen:
                    self.unusual -= self.flags[0]
                self.flags.append(flag)
                self.unusual += flag
            return self.unusual / len(self.flags) if self.flags else 0.0


@dataclass
class OodProfile:
    """A loaded, validated profile: scores rows of the graph's feature output."""

    spec: OodSpec
    groups: list[OodGroupArrays]
    window: RollingShare = field(init=False)

    def __post_init__(self) -> None:
        self.window = RollingShare(self.spec.window)

    @property
    def output(self) -> str:
        return self.spec.output

    @property
    def threshold(self) -> float:
        return self.spec.threshold

    @property
    def dimension(self) -> int:
        return self.groups[-1].stop if self.groups else 0

    def group_distances(self, features: np.ndarray) -> np.ndarray:
        """[n, groups]: each group's smallest squared Mahalanobis distance to a class mean (unstandardised)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dimension:
            raise ValueError(f"OOD features must be [batch, {self.dimension}], got {list(x.shape)}")
        out = np.empty((x.shape[0], len(self.groups)))
        for j, g in enumerate(self.groups):
            z = x[:, g.start:g.stop] @ g.whiten.T
            d2 = (z * z).sum(axis=1)[:, None] - 2.0 * z @ g.projected_means.T + g.mean_norms[None, :]
            out[:, j] = np.maximum(d2.min(axis=1), 0.0)
        return out

    def scores(self, features: np.ndarray) -> np.ndarray:
        d = self.group_distances(features)
        loc = np.array([g.loc for g in self.groups])
        scale = np.array([g.scale for g in self.groups])
        standardised = (d - loc) / scale
        return standardised.max(axis=1) if self.spec.combine == "max" else standardised.sum(axis=1)

    def assess(self, features: np.ndarray) -> tuple[list[dict], float]:
        """The `ood` object of each row, and the model's rolling unusual share after counting them."""
        scores = self.scores(features)
        flags = scores >= self.threshold
        share = self.window.add(flags)
        return [{"score": round(float(s), 4), "unusual": bool(f)} for s, f in zip(scores, flags)], share


def load_profile(manifest: Manifest, folder, resource) -> OodProfile | None:
    """The manifest's profile, checked: the file exists, every group's arrays have the sizes the manifest
    says, and they are finite. None when the manifest has no `ood` field. `resource` resolves a file name
    inside the model folder (ModelVersion.resource)."""
    spec = manifest.ood
    if spec is None:
        return None
    path = resource(spec.profile)
    if not path.is_file():
        raise ModelLoadError(f"OOD profile {spec.profile!r} is missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as exc:  # a truncated or foreign file
        raise ModelLoadError(f"OOD profile {spec.profile!r} is unreadable: {exc}") from exc
    groups, start = [], 0
    for g in spec.groups:
        means, whiten = arrays.get(f"{g.name}.means"), arrays.get(f"{g.name}.whiten")
        if means is None or whiten is None:
            raise ModelLoadError(f"OOD profile {spec.profile!r} lacks {g.name}.means or {g.name}.whiten")
        if means.ndim != 2 or means.shape[1] != g.size or means.shape[0] < 1:
            raise ModelLoadError(f"OOD profile group {g.name!r}: means have shape {list(means.shape)}, "
                                 f"expected [classes, {g.size}] (the manifest's size)")
        if whiten.shape != (g.size, g.size):
            raise ModelLoadError(f"OOD profile group {g.name!r}: whitening matrix has shape {list(whiten.shape)}, "
                                 f"expected [{g.size}, {g.size}]")
        if not (np.all(np.isfinite(means)) and np.all(np.isfinite(whiten))):
            raise ModelLoadError(f"OOD profile group {g.name!r} has non-finite values")
        w = whiten.astype(np.float64)
        projected = means.astype(np.float64) @ w.T
        groups.append(OodGroupArrays(g.name, start, start + g.size, g.loc, g.scale, w, projected,
                                     (projected * projected).sum(axis=1)))
        start += g.size
    return OodProfile(spec, groups)


def check_against_graph(profile: OodProfile, session) -> None:
    """The graph must output the feature tensor, FP32 [batch, D] with D the profile's (checked on a run when the
    graph leaves D dynamic)."""
    outputs = {spec.name: spec for spec in session.outputs}
    spec = outputs.get(profile.output)
    if spec is None:
        raise ModelLoadError(f"the manifest's OOD profile reads output {profile.output!r}, which the graph lacks "
                             f"(outputs: {sorted(outputs)})")
    if spec.datatype != "FP32" or len(spec.shape) != 2:
        raise ModelLoadError(f"OOD output {profile.output!r} must be FP32 [batch, features], is {spec.datatype} {spec.shape}")
    width = spec.shape[1]
    if width == -1:
        width = session.run(session.dummy_feeds())[profile.output].shape[1]
    if width != profile.dimension:
        raise ModelLoadError(f"OOD output {profile.output!r} has {width} features but the profile's groups "
                             f"cover {profile.dimension}")


def load_ood(version) -> OodProfile:
    """A ModelVersion's profile: loaded, validated, and checked against its graph (ModelLoadError otherwise)."""
    if version.manifest.graphs:
        raise ModelLoadError(f"{version.folder}: an OOD profile needs a single-graph model (this one has graphs "
                             f"{sorted(version.manifest.graphs)})")
    try:
        profile = load_profile(version.manifest, version.folder, version.resource)
        check_against_graph(profile, version.session)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{version.folder} version {version.version}: {exc}") from exc
    return profile


def ood_results(model, outputs: dict, metrics) -> list[dict] | None:
    """Per-row ood objects for a task answer (None when the model has no profile), counted in the model's
    rolling unusual share (/metrics: neuroserve_ood_unusual_share)."""
    profile: OodProfile | None = getattr(model, "ood", None)
    if profile is None:
        return None
    features = outputs.get(profile.output)
    if features is None:
        return None
    objects, share = profile.assess(features)
    if metrics is not None:
        metrics.observe_ood(model.name, share, sum(o["unusual"] for o in objects), len(objects))
    return objects


def attach_ood(request, model, outputs: dict, results: list[dict]) -> list[dict]:
    """Add each result's `ood` object (in place; nothing when the model has no profile)."""
    objects = ood_results(model, outputs, request.app.state.metrics)
    if objects is not None:
        for result, obj in zip(results, objects):
            result["ood"] = obj
    return results


def ood_field(request, model, outputs: dict) -> dict:
    """{"ood": [one object per input]} for answers without `results` (forecasts); {} without a profile."""
    objects = ood_results(model, outputs, request.app.state.metrics)
    return {} if objects is None else {"ood": objects}
