"""Write deploy/kserve/inferenceservice.schema.json: KServe's InferenceService (serving.kserve.io/v1beta1) as a
JSON Schema, for tests/test_deploy.py to validate deploy/kserve/*.yaml against without a cluster.

    bench/peers/setup.sh kserve      # once: the kserve package (pinned in bench/peers/requirements-kserve.txt)
    bench/peers/.venvs/kserve/bin/python scripts/kserve_schema.py

The source is the kserve Python SDK's generated model classes (kserve.models.V1beta1*, and the Kubernetes
client's V1* types they refer to): KServe generates them from the InferenceService CRD's OpenAPI definitions,
field for field. Each class becomes a $defs entry: its JSON field names (attribute_map), their types
(openapi_types), the fields whose setters refuse None as `required`, and no other fields
(additionalProperties: false, as `kubectl apply --validate=strict` would refuse unknown ones). kserve and
kubernetes are Apache-2.0 (deploy/kserve/SCHEMA-LICENSE).
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from importlib.metadata import version
from pathlib import Path

import kubernetes.client.models as k8s
import kserve.models as ks

OUT = Path(__file__).resolve().parent.parent / "deploy" / "kserve" / "inferenceservice.schema.json"
PRIMITIVES = {"str": {"type": "string"}, "int": {"type": "integer"}, "bool": {"type": "boolean"},
              "float": {"type": "number"}, "object": {}, "datetime": {"type": "string"}, "date": {"type": "string"},
              # Kubernetes quantities ("2", 2, "1Gi") and int-or-string ports are strings or numbers in YAML
              "ResourceQuantity": {"type": ["string", "number"]}}
UNRESOLVED: list[str] = []


def resolve(name: str):
    """A model class by its OpenAPI name; kserve names some Kubernetes types by their Go package path
    (K8sIoApiAutoscalingV2HorizontalPodAutoscalerBehavior: the client's V2HorizontalPodAutoscalerBehavior)."""
    match = re.fullmatch(r"K8sIoApi[A-Z][a-z]+(V\d(?:[a-z]+\d*)?)([A-Z]\w+)", name)
    for module, candidate in ((ks, name), (k8s, name), (k8s, "".join(match.groups()) if match else name)):
        if hasattr(module, candidate):
            return getattr(module, candidate)
    raise KeyError(name)


def is_required(cls, attr: str) -> bool:
    """The kubernetes client's models are pydantic (their fields say so); kserve's are classes whose setters refuse
    None for a required field."""
    fields = getattr(cls, "model_fields", None)
    if isinstance(fields, dict):
        return attr in fields and fields[attr].is_required()
    setter = inspect.getattr_static(cls, attr).fset
    return setter is not None and "must not be `None`" in inspect.getsource(setter)


def schema_for(type_name: str, defs: dict) -> dict:
    if type_name in PRIMITIVES:
        return PRIMITIVES[type_name]
    if match := re.fullmatch(r"(?:list|List)\[(.+)\]", type_name):
        return {"type": "array", "items": schema_for(match.group(1), defs)}
    if match := re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", type_name):
        return {"type": "object", "additionalProperties": schema_for(match.group(1) or match.group(2), defs)}
    if type_name not in defs:
        defs[type_name] = None  # placeholder: recursion (JSONSchemaProps refers to itself)
        try:
            cls = resolve(type_name)
        except KeyError:  # named by the SDK but not shipped in it (V1beta1MetricQuantity): any value
            UNRESOLVED.append(type_name)
            defs[type_name] = {"description": "not defined in the SDK: any value"}
            return {"$ref": f"#/$defs/{type_name}"}
        properties, required = {}, []
        for attr, attr_type in cls.openapi_types.items():
            key = cls.attribute_map[attr]
            properties[key] = schema_for(attr_type, defs)
            if is_required(cls, attr):
                required.append(key)
        defs[type_name] = {"type": "object", "properties": properties, "additionalProperties": False,
                           **({"required": required} if required else {})}
    return {"$ref": f"#/$defs/{type_name}"}


def main() -> int:
    defs: dict = {}
    root = schema_for("V1beta1InferenceService", defs)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "title": f"InferenceService serving.kserve.io/v1beta1 (kserve {version('kserve')}, "
                       f"kubernetes client {version('kubernetes')}; scripts/kserve_schema.py)",
              "allOf": [root, {"properties": {"apiVersion": {"const": "serving.kserve.io/v1beta1"},
                                              "kind": {"const": "InferenceService"}},
                               "required": ["apiVersion", "kind", "metadata", "spec"]}],
              "$defs": dict(sorted(defs.items()))}
    OUT.write_text(json.dumps(schema, indent=1, sort_keys=False) + "\n")
    print(f"wrote {OUT} ({len(defs)} types, {OUT.stat().st_size // 1024} KiB; any value for {UNRESOLVED})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
