"""Neuroserve Python client: `NeuroserveClient` (blocking) and `AsyncNeuroserveClient` (asyncio).

Needs only httpx and numpy. The `neuroserve` command line lives in `client.cli`. Names are imported
on first use, so `neuroserve serve` (client.cli) also runs on a server-only install without httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from client._version import __version__

_EXPORTS = {
    "client.aio": ["AsyncNeuroserveClient"],
    "client.errors": ["AuthenticationError", "BadRequestError", "ConflictError", "NeuroserveConnectionError",
                      "NeuroserveError", "NeuroserveTimeoutError", "NotFoundError", "PayloadTooLargeError", "ServerError",
                      "ServiceUnavailableError", "UnsupportedMediaTypeError"],
    "client.results": ["ChatCompletion", "Classification", "ClassifyResult", "Detection", "DetectionResult",
                       "DeteriorationResult", "Explanation", "ImageDetections",
                       "Forecast", "FraudResult", "FraudScore", "Health", "IgnoredMeasurement", "LabelScore", "StayRisk",
                       "ModelInfo", "ModelList", "Ood", "Sentiment", "SentimentResult", "Subtype", "TumorDetection",
                       "TumorResult", "Translation"],
    "client.retry": ["RetryPolicy"],
    "client.sync": ["NeuroserveClient"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'client' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # what type checkers and editors see
    from client.aio import AsyncNeuroserveClient
    from client.errors import (AuthenticationError, BadRequestError, ConflictError, NeuroserveConnectionError,
                               NeuroserveError, NeuroserveTimeoutError, NotFoundError, PayloadTooLargeError, ServerError,
                               ServiceUnavailableError, UnsupportedMediaTypeError)
    from client.results import (ChatCompletion, Classification, ClassifyResult, Detection, DetectionResult,
                                DeteriorationResult, Explanation, ImageDetections,
                                Forecast, FraudResult, FraudScore, Health, IgnoredMeasurement, LabelScore, StayRisk,
                                ModelInfo, ModelList, Ood, Sentiment, SentimentResult, Subtype, TumorDetection,
                                TumorResult, Translation)
    from client.retry import RetryPolicy
    from client.sync import NeuroserveClient
