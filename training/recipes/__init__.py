"""Task registry. A new task = a recipe module + one entry here; nothing else changes.

Entries are import strings so that ``--help`` and the registry itself import no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.recipes.base import Recipe

REGISTRY: dict[str, str] = {
    "cifar10": "training.recipes.cifar10:Cifar10Recipe",
    "cifar10-small": "training.recipes.cifar10:Cifar10SmallRecipe",
    "tumor": "training.recipes.tumor:TumorRecipe",
    "sentiment-rnn": "training.recipes.sentiment:SentimentRNNRecipe",
    "sentiment-gru": "training.recipes.sentiment:SentimentGRURecipe",
    "sentiment-lstm": "training.recipes.sentiment:SentimentRecipe",
    "sentiment-minilm-teacher": "training.recipes.sentiment_teacher:SentimentTeacherRecipe",
    "traffic": "training.recipes.traffic:TrafficRecipe",
    "prices": "training.recipes.prices:PricesRecipe",
    "translation": "training.recipes.generation:TranslationRecipe",
    "chat": "training.recipes.generation:ChatRecipe",
    "fraud": "training.recipes.fraud:FraudRecipe",
    "deterioration": "training.recipes.deterioration:DeteriorationRecipe",
    "detection": "training.recipes.detection:DetectionRecipe",
}


def get_recipe(task: str) -> "Recipe":
    try:
        target = REGISTRY[task]
    except KeyError:
        raise SystemExit(f"unknown task {task!r}; known: {', '.join(sorted(REGISTRY))}") from None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)()
