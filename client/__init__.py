"""Neuroserve Python client: `NeuroserveClient` (blocking) and `AsyncNeuroserveClient` (asyncio).

Needs only httpx and numpy. The `neuroserve` command line lives in `client.cli`.
"""

from client._version import __version__
from client.aio import AsyncNeuroserveClient
from client.errors import (AuthenticationError, BadRequestError, NeuroserveConnectionError,
                           NeuroserveError, NeuroserveTimeoutError, NotFoundError, PayloadTooLargeError,
                           ServerError, ServiceUnavailableError, UnsupportedMediaTypeError)
from client.results import (ChatCompletion, Classification, ClassifyResult, Forecast, Health,
                            LabelScore, ModelInfo, ModelList, Sentiment, SentimentResult, Subtype, TumorDetection,
                            TumorResult, Translation)
from client.retry import RetryPolicy
from client.sync import NeuroserveClient

__all__ = [
    "AsyncNeuroserveClient", "AuthenticationError", "BadRequestError", "ChatCompletion", "Classification",
    "ClassifyResult", "Forecast", "Health", "LabelScore", "ModelInfo", "ModelList", "NeuroserveClient",
    "NeuroserveConnectionError", "NeuroserveError", "NeuroserveTimeoutError", "NotFoundError", "PayloadTooLargeError",
    "RetryPolicy", "Sentiment", "SentimentResult", "ServerError", "ServiceUnavailableError", "Subtype",
    "TumorDetection", "TumorResult", "Translation", "UnsupportedMediaTypeError", "__version__",
]
