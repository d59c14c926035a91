"""Exporters: a trained checkpoint -> models/<name>/ (ONNX graph with the preprocessing inside, parity check,
manifest, model card). One module per task family; each has ``main(args)`` for ``neuroserve-train export <task>``,
which resolves the CLI's arguments and calls the module's export function with explicit ones.

An exporter may import recipes, nets, data and the shared modules below them; nothing below imports an exporter.
Entries are import strings so that ``--help`` and the registry itself import no torch.
"""

from __future__ import annotations

import importlib
from typing import Callable

EXPORTERS: dict[str, str] = {
    "cifar10": "training.exporters.cifar10:main",
    "cifar10-small": "training.exporters.cifar10:main",
    "tumor": "training.exporters.tumor:main",
    "sentiment-rnn": "training.exporters.sentiment:main",
    "sentiment-gru": "training.exporters.sentiment:main",
    "sentiment-lstm": "training.exporters.sentiment:main",
    "traffic": "training.exporters.traffic:main",
    "prices": "training.exporters.prices:main",
    "translation": "training.exporters.generation:main",
    "chat": "training.exporters.generation:main",
    "fraud": "training.exporters.fraud:main",
    "deterioration": "training.exporters.deterioration:main",
    "detection": "training.exporters.detection:main",
}


def get_exporter(task: str) -> Callable | None:
    """The task's ``main(args)``, or None for a task that has no exporter module."""
    target = EXPORTERS.get(task)
    if target is None:
        return None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)
