"""The one retry helper: bounded attempts with full-jitter exponential backoff.

Every cloud call and every ledger push that accessctl retries itself goes through
``retrying``; the SDKs' own retry objects (botocore's adaptive mode, PyGithub's
``GithubRetry``) sit below it and are configured, not duplicated. The caller says which
failures are worth another try and, optionally, how long the server asked us to wait.

```python
stored = retrying(lambda: client.set_iam_policy(...), policy=Backoff(attempts=5),
                  retryable=lambda exc: isinstance(exc, Conflict))
```
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """How often and how long to retry: attempt ``n`` (0-based) waits a random time in
    ``[ceiling / 2, ceiling]`` with ``ceiling = min(cap, base * 2**n)``."""

    attempts: int = 5
    base: float = 0.5  # seconds
    cap: float = 8.0  # seconds
    max_hint: float = 300.0  # never wait longer than this on a server's Retry-After

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        ceiling = min(self.cap, self.base * (2.0**attempt))
        return ceiling / 2 + rng() * ceiling / 2


def retrying(
    call: Callable[[], T],
    *,
    policy: Backoff = Backoff(),
    retryable: Callable[[BaseException], bool],
    hint: Callable[[BaseException], float | None] = lambda _: None,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """``call()`` until it returns, a failure is not ``retryable``, or attempts run out
    (then the last failure is raised unchanged). ``hint`` may return the wait a server
    asked for (Retry-After), which replaces the computed backoff, bounded by ``max_hint``."""
    attempts = max(1, policy.attempts)
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if attempt + 1 >= attempts or not retryable(exc):
                raise
            asked = hint(exc)
            wait = min(asked, policy.max_hint) if asked is not None else policy.delay(attempt)
            if on_retry is not None:
                on_retry(attempt, exc, wait)
            sleep(max(0.0, wait))
    raise AssertionError("unreachable")  # the loop returns or raises
