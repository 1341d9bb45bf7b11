"""The backoff every worker of the node uses to reach the platform again (``tenacity``):
exponential with full jitter, retried until the node stops, sleeping on the stop event so that a
stopping node does not wait out a backoff."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc
import structlog
from tenacity import Retrying, retry_if_exception_type, stop_never, wait_random_exponential

log = structlog.get_logger("lot_node.platform")


def until_stopped(stop: threading.Event, min_s: float, max_s: float, before_sleep: Callable[[Any], None]) -> Retrying:
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


class PlatformStream:
    """A worker that keeps one stream to the platform open (card list, statements, outbox).

    A subclass sets ``failure_event`` (the log event of a failed attempt) and implements
    ``_stream(stop)``, one attempt, keeping the gRPC call in ``self._call`` so ``stop`` can cut it;
    it has ``min_backoff_s``, ``max_backoff_s`` and ``reachability(ok: bool)``. ``run`` is the
    thread body: attempt, and after a failure wait (exponential, jittered) and attempt again.
    """

    failure_event = "platform.stream_failed"
    min_backoff_s: float
    max_backoff_s: float
    reachability: Callable[[bool], None]
    _call: Any = None
    _stop: threading.Event | None = None

    def _stream(self, stop: threading.Event) -> None:
        raise NotImplementedError

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        while not stop.is_set():
            for attempt in until_stopped(stop, self.min_backoff_s, self.max_backoff_s, self._failed):
                with attempt:
                    self._stream(stop)

    def stop(self) -> None:
        """Cut the stream now (the thread's stop event must be set too)."""
        call = self._call
        if call is not None:
            call.cancel()

    def _failed(self, state: Any) -> None:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, grpc.RpcError):
            self.reachability(False)
        if self._stop is not None and self._stop.is_set():
            return
        code = error.code().name if isinstance(error, grpc.RpcError) else f"{type(error).__name__}: {error}"[:200]
        retry_in = round(state.next_action.sleep, 2) if state.next_action else None
        log.warning(self.failure_event, error=code, attempt=state.attempt_number, retry_in_s=retry_in)
