"""The backoff every worker of the node uses to reach the platform again (``tenacity``):
exponential with full jitter, retried until the node stops, sleeping on the stop event so that a
stopping node does not wait out a backoff."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_never, wait_random_exponential


def until_stopped(
    stop: threading.Event, min_s: float, max_s: float, before_sleep: Callable[[Any], None]
) -> Retrying:
    def sleep(seconds: float) -> None:
        stop.wait(seconds)

    return Retrying(
        wait=wait_random_exponential(multiplier=min_s, max=max_s),
        # Anything (a broken stream, a busy database, a bad message) is retried: the worker must
        # outlive it.
        retry=retry_if_exception_type(Exception),
        stop=stop_never,
        sleep=sleep,
        before_sleep=before_sleep,
    )
