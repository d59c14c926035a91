"""Neuroserve Python client: `NeuroserveClient` (blocking) and `AsyncNeuroserveClient` (asyncio).

Needs only httpx and numpy. The `neuroserve` command line lives in `client.cli`.
"""

__version__ = "0.1.0"

from client.aio import AsyncNeuroserveClient  # noqa: E402
from client.errors import (AuthenticationError, BadRequestError, NeuroserveConnectionError,  # noqa: E402
                           NeuroserveError, NeuroserveTimeoutError, NotFoundError, PayloadTooLargeError,
                           ServerError, ServiceUnavailableError, UnsupportedMediaTypeError)
from client.results import (ChatCompletion, Classification, ClassifyResult, Forecast, Health,  # noqa: E402
                            LabelScore, ModelInfo, ModelList, Sentiment, SentimentResult, Subtype, TumorDetection,
                            TumorResult, Translation)
from client.retry import RetryPolicy  # noqa: E402
from client.sync import NeuroserveClient  # noqa: E402

__all__ = [
    "AsyncNeuroserveClient", "AuthenticationError", "BadRequestError", "ChatCompletion", "Classification",
    "ClassifyResult", "Forecast", "Health", "LabelScore", "ModelInfo", "ModelList", "NeuroserveClient",
    "NeuroserveConnectionError", "NeuroserveError", "NeuroserveTimeoutError", "NotFoundError", "PayloadTooLargeError",
    "RetryPolicy", "Sentiment", "SentimentResult", "ServerError", "ServiceUnavailableError", "Subtype",
    "TumorDetection", "TumorResult", "Translation", "UnsupportedMediaTypeError", "__version__",
]
