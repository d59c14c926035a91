"""Task adapters: each module turns a task's friendly request into tensors and back.

A task plugs in by adding a module here that exposes ``router`` and listing it in TASK_MODULES.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter

TASK_MODULES: list[str] = ["vision"]


def task_routers() -> list[APIRouter]:
    return [importlib.import_module(f"service.tasks.{name}").router for name in TASK_MODULES]
