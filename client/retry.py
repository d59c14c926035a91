"""Retry policy: exponential backoff with jitter on 503/429 and connection errors, honouring Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

from client.errors import retry_after_seconds

RETRY_STATUSES = (429, 503)


def retryable(outcome: httpx.Response | Exception) -> bool:
    if isinstance(outcome, httpx.Response):
        return outcome.status_code in RETRY_STATUSES
    # Connection failures and broken connections; not read timeouts (a slow call would be slow again).
    return isinstance(outcome, httpx.TransportError) and (
        not isinstance(outcome, httpx.TimeoutException) or isinstance(outcome, httpx.ConnectTimeout))


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3  # retries after the first attempt; 0 turns retrying off
    backoff_s: float = 0.25  # first backoff; doubles on each retry
    max_backoff_s: float = 8.0  # cap on one backoff
    max_wait_s: float = 30.0  # cap on the total time spent waiting between attempts of one call
    jitter: float = 0.5  # each backoff is scaled by a random factor in [1 - jitter, 1]

    def start(self) -> "RetryState":
        return RetryState(self)


class RetryState:
    """The retries of one call: how many so far and how long they waited."""

    def __init__(self, policy: RetryPolicy):
        self.policy = policy
        self.attempts = 0
        self.waited_s = 0.0

    def delay_after(self, outcome: httpx.Response | Exception, allowed: bool = True) -> float | None:
        """Seconds to wait before the next attempt, or None to stop and report `outcome`."""
        self.attempts += 1
        policy = self.policy
        if not allowed or not retryable(outcome) or self.attempts > policy.max_retries:
            return None
        hint = retry_after_seconds(outcome) if isinstance(outcome, httpx.Response) else None
        if hint is None:
            backoff = min(policy.max_backoff_s, policy.backoff_s * 2 ** (self.attempts - 1))
            hint = backoff * (1 - policy.jitter * random.random())
        if self.waited_s + hint > policy.max_wait_s:
            return None
        self.waited_s += hint
        return hint
