"""Task adapters: each module turns a task's friendly request into tensors and back.

A task plugs in by adding a module here and listing it in TASK_MODULES. The module exposes
``router`` (its endpoints) and may expose ``PREPARERS`` ({task: callable(ModelVersion) -> dict}):
run at load time to check the model fits the task and to load what it needs (a tokenizer), so a
model that cannot serve its task fails to load with a clear reason instead of failing per request.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter

TASK_MODULES: list[str] = ["vision", "text", "forecast", "translate", "chat", "fraud", "clinical", "detection"]


def _modules():
    return [importlib.import_module(f"service.tasks.{name}") for name in TASK_MODULES]


def task_routers() -> list[APIRouter]:
    return [module.router for module in _modules()]


def task_preparers() -> dict:
    preparers: dict = {}
    for module in _modules():
        preparers.update(getattr(module, "PREPARERS", {}))
    return preparers
