"""Membership at the gate in the lot's mode (DESIGN section 4, patent Figs. 1–3, 7).

* ``CACHED``: the pushed card list, looked up locally; never waits on the network.
* ``ONLINE``: ask the platform; no answer within the deadline → temporary, ``OFFLINE_DECISION``.
* ``ONLINE_FALLBACK``: ask the platform; on timeout or error → the cache, ``OFFLINE_DECISION``.

The platform call and the cache are passed in, so this module does no I/O of its own.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import structlog

from crosspark.identity import VehicleIdentity
from lot_node.gate import UNKNOWN_OFFLINE, MembershipAnswer

log = structlog.get_logger("lot_node.membership")


class Mode(enum.Enum):
    ONLINE = "ONLINE"
    CACHED = "CACHED"
    ONLINE_FALLBACK = "ONLINE_FALLBACK"


#: The cache's answer for a vehicle at an instant.
CachedAnswer = Callable[[VehicleIdentity, datetime], MembershipAnswer]
#: The platform's answer, or an exception; the float is the time left, seconds.
OnlineAnswer = Callable[[VehicleIdentity, datetime, float], MembershipAnswer]


class MembershipDecider:
    """Answers "monthly-card vehicle here, now?" within the deadline, whatever the network does.

    ``reachability`` is told after each platform call whether it answered, for ``Status``."""

    def __init__(
        self,
        mode: Mode,
        *,
        deadline_s: float = 0.3,
        cached: CachedAnswer | None = None,
        online: OnlineAnswer | None = None,
        reachability: Callable[[bool], None] | None = None,
    ) -> None:
        if mode is not Mode.ONLINE and cached is None:
            raise ValueError(f"mode {mode.value} needs the card cache")
        if mode is not Mode.CACHED and online is None:
            raise ValueError(f"mode {mode.value} needs the platform")
        self.mode = mode
        self.deadline_s = deadline_s
        self._cached = cached
        self._online = online
        self._reachability = reachability or (lambda _ok: None)

    def answer(self, identity: VehicleIdentity, at: datetime, started: float | None = None) -> MembershipAnswer:
        """The answer for ``identity`` at ``at``. ``started`` (``time.monotonic()``) is when the
        gate's request arrived: the deadline counts from there."""
        if self.mode is Mode.CACHED:
            assert self._cached is not None
            return self._cached(identity, at)
        assert self._online is not None
        remaining = self.deadline_s - (time.monotonic() - started if started is not None else 0.0)
        if remaining > 0.001:
            try:
                result = self._online(identity, at, remaining)
            except Exception as exc:
                log.warning("membership.offline", mode=self.mode.value, error=type(exc).__name__, detail=str(exc)[:200])
                self._reachability(False)
            else:
                self._reachability(True)
                return result
        if self.mode is Mode.ONLINE:
            return UNKNOWN_OFFLINE
        assert self._cached is not None
        return replace(self._cached(identity, at), offline=True)
