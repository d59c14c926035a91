"""The manifest of one model in the repository: ``models/<name>/manifest.json``.

Layout (Triton-style)::

    models/<name>/manifest.json
    models/<name>/<version>/model.onnx
    models/<name>/<any file the manifest names, e.g. tokenizer.json>

The manifest describes what the server cannot read from the ONNX graph itself: the task, labels,
preprocessing, batching policy, provenance and validation metrics. Tensor names, types and shapes
declared here are checked against the ONNX session at load time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.errors import ModelLoadError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
VERSION_RE = re.compile(r"^[1-9][0-9]{0,8}$")
GRAPH_FILE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\.onnx$")
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"

# Open Inference Protocol datatypes (the ones ONNX Runtime can produce or consume) and their numpy types: the
# service's one table (runtime, codecs, the data plane and gRPC read it). client/tensors.py keeps its own copy, since
# the client installs without the service; tests/client/test_tensors.py holds the two equal.
DATATYPE_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
DATATYPES = tuple(DATATYPE_TO_NUMPY)


def resource_path(folder: Path, relative: str) -> Path:
    """A file the manifest names (tokenizer, profile), resolved inside the model folder; anything that points
    outside it (``..``, an absolute path, a link out) is refused."""
    path = (folder / relative).resolve()
    if folder.resolve() not in path.parents:
        raise ModelLoadError(f"{relative!r} points outside the model folder")
    return path


def valid_name(name: str) -> bool:
    return bool(NAME_RE.fullmatch(name))


def valid_version(version: str) -> bool:
    return bool(VERSION_RE.fullmatch(version))


class TensorSpec(BaseModel):
    """One input or output; -1 marks a dynamic dimension."""

    model_config = ConfigDict(extra="forbid")

    name: str
    datatype: str
    shape: list[int]

    def fits(self, shape: list[int]) -> bool:
        """Same rank, and every fixed dimension equal (-1 on either side matches anything)."""
        return len(shape) == len(self.shape) and all(a == b or a == -1 or b == -1 for a, b in zip(self.shape, shape))

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, value: str) -> str:
        if value not in DATATYPES:
            raise ValueError(f"unknown datatype {value!r}; expected one of {', '.join(DATATYPES)}")
        return value


class Batching(BaseModel):
    """Dynamic batching policy. max_batch_size 0 disables batching (requests run one by one)."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(default=32, ge=0, le=4096)
    # 0: no waiting; requests that arrive while a run is in progress still share the next run.
    max_queue_delay_ms: float = Field(default=0.0, ge=0, le=1000)
    max_queue_size: int = Field(default=256, ge=1, le=100_000)
    # Runs of this model that may be in flight at once (Triton's instance count), each on its own thread.
    # None: one per core, up to 4 (service.settings.default_instances).
    instances: int | None = Field(default=None, ge=1, le=64)
    # Inputs whose dimension 1 varies per request (token ids); padded with pad_value per batch.
    pad_inputs: dict[str, int | float] = Field(default_factory=dict)
    # Batch sizes (dim 0) a run is padded up to where buckets apply (NEUROSERVE_BATCH_BUCKETS; by default on
    # CUDA only), ascending, each <= max_batch_size. None: powers of two up to max_batch_size, and that.
    buckets: list[int] | None = Field(default=None)

    @field_validator("buckets")
    @classmethod
    def _ascending(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or value[0] < 1 or any(a >= b for a, b in zip(value, value[1:]))):
            raise ValueError(f"buckets {value} must be batch sizes >= 1 in ascending order, each once")
        return value

    @model_validator(mode="after")
    def _buckets_fit(self) -> "Batching":
        if self.buckets and self.buckets[-1] > self.max_batch_size:
            raise ValueError(f"bucket {self.buckets[-1]} is larger than max_batch_size {self.max_batch_size}")
        return self

    def bucket_sizes(self) -> list[int]:
        """The batch sizes runs are padded to: the manifest's, else 1, 2, 4, ... up to max_batch_size (and it)."""
        if self.buckets or self.max_batch_size < 1:
            return list(self.buckets or [])
        return [1 << i for i in range(self.max_batch_size.bit_length()) if 1 << i < self.max_batch_size] + [self.max_batch_size]


class OodGroup(BaseModel):
    """One feature group of the OOD output: `size` columns, in order; its distances standardised by loc/scale."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9_]{1,32}$")
    size: int = Field(ge=1, le=65536)
    loc: float = Field(allow_inf_nan=False)
    scale: float = Field(gt=0, allow_inf_nan=False)
    source: str = Field(default="", description="what the columns are (graph tensors), for people")


class OodSpec(BaseModel):
    """The out-of-distribution profile (service/ood.py; written by ``neuroserve-train ood MODEL``)."""

    model_config = ConfigDict(extra="forbid")

    output: str = Field(default="ood_features", description="the graph output holding the features [batch, D]")
    profile: str = Field(description="npz beside the manifest: <group>.means [classes, size], <group>.whiten [size, size]")
    groups: list[OodGroup] = Field(min_length=1)
    combine: Literal["sum", "max"] = Field(default="sum", description="how the groups' standardised distances combine")
    threshold: float = Field(allow_inf_nan=False, description="score >= threshold is unusual (chosen on validation)")
    window: int = Field(default=1000, ge=1, le=1_000_000, description="inputs in the rolling unusual share (/metrics)")
    details: dict[str, Any] = Field(default_factory=dict, description="how it was fitted and checked (AUROCs)")


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    task: str = Field(description="task family, e.g. image-classification, tumor-detection, tensor")
    description: str = ""
    default_version: str | None = Field(default=None, description="served when no version is asked; latest otherwise")
    priority: int = Field(default=0, description="the highest-priority ready model of a task is that task's default")
    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    tokenizer: str | None = Field(default=None, description="tokenizer file, relative to the model folder")
    graphs: dict[str, str] = Field(
        default_factory=dict,
        description="generation models: role (encoder, decoder) -> ONNX file in each version folder; empty: model.onnx")
    batching: Batching = Field(default_factory=Batching)
    parameters: dict[str, Any] = Field(default_factory=dict, description="task-specific settings, e.g. threshold")
    provenance: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    ood: OodSpec | None = Field(default=None, description="out-of-distribution profile; none: answers carry no ood field")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not valid_name(value):
            raise ValueError(f"invalid model name {value!r}: lower-case letters, digits, '.', '_', '-'")
        return value

    @field_validator("default_version")
    @classmethod
    def _valid_version(cls, value: str | None) -> str | None:
        if value is not None and not valid_version(value):
            raise ValueError(f"invalid version {value!r}: a positive integer")
        return value

    @field_validator("graphs")
    @classmethod
    def _graph_files(cls, value: dict[str, str]) -> dict[str, str]:
        for role, file in value.items():
            if not GRAPH_FILE_RE.fullmatch(file):
                raise ValueError(f"graph {role!r}: {file!r} is not a plain .onnx file name in the version folder")
        return value

    def input(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)


def read_manifest(model_dir: Path) -> Manifest:
    path = model_dir / MANIFEST_FILE
    try:
        raw = orjson.loads(path.read_bytes())
        manifest = Manifest.model_validate(raw)
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{path} is missing") from exc
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise ModelLoadError(f"{path} is invalid: {exc}") from exc
    if manifest.name != model_dir.name:
        raise ModelLoadError(f"{path}: name {manifest.name!r} does not match folder {model_dir.name!r}")
    return manifest


def write_manifest(model_dir: Path, manifest: Manifest) -> Path:
    path = model_dir / MANIFEST_FILE
    path.write_bytes(orjson.dumps(manifest.model_dump(exclude_none=True), option=orjson.OPT_INDENT_2) + b"\n")
    return path
