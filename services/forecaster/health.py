"""Health of `flexfleet forecast run --health-port`: what the loop's passes report, as GET /healthz
answers it (through services.runtime.health.HealthServer).

The loop beats a Heartbeat after every pass, failed or not. Between passes it sleeps at most
poll_s (less when the next scheduled issue is sooner), so a last pass older than poll_s plus a
grace means a pass that never ends (a query hung on the database) or a loop that stopped. A loop
that comes round but fails is the other 503: from a failed pass until a later one succeeds.

The grace must cover the longest pass that is working, not stuck: the daily retrain, 246 s for
2,000 vehicles on 2 cores and linear in vehicles (docs/deployment.md), plus the retry backoff
(at most 30 s). 900 s is 3.7 times that retrain, room for a throttled pod or a fleet of up to
about 7,000 vehicles, and still tells a hung pass within 16 minutes. Raise it with the fleet:
an orchestrator that restarts a retrain in progress restarts it again, every day.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import psycopg

from services.forecaster.service import PassResult
from services.runtime.health import Heartbeat

DEFAULT_GRACE_S = 900.0
_ERROR_CHARS = 300


@dataclass(frozen=True)
class _Passes:
    """What the passes so far showed; replaced whole, never changed, so a reader sees one state."""

    last_run_at: datetime | None = None
    outcome: str | None = None              # ok or failed
    error: str | None = None                # the last pass's error, when it failed
    failing_since: datetime | None = None   # the first failed pass since the last good one
    last_ok_at: datetime | None = None
    next_due: datetime | None = None        # next scheduled issue, as the last good pass saw it
    publish_error: str | None = None        # the broker error of the last good pass (the outbox retries)
    passes: int = 0
    failures: int = 0


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _one_line(error: Exception) -> str:
    """The error on one line, short; a database outage named as such (the loop's retry case)."""
    outage = isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))
    text = " ".join(f"{'database unavailable: ' if outage else ''}{type(error).__name__}: {error}".split())
    return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS - 3] + "..."


class PassHealth:
    """The forecaster loop's health: `record` is the loop's on_pass report (the loop's thread),
    `problem` and `details` are what HealthServer asks (its HTTP threads)."""

    def __init__(self, poll_s: float, grace_s: float = DEFAULT_GRACE_S,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.heartbeat = Heartbeat(poll_s + grace_s)   # raises naming stale_after_s when not positive
        self.poll_s, self.grace_s = poll_s, grace_s
        self._clock = clock
        self._started_at = clock()
        self._passes = _Passes()

    def record(self, result: PassResult | None, error: Exception | None) -> None:
        """One pass ended: with its result, or with the error that failed it."""
        now, seen = self._clock(), self._passes
        if error is None:
            assert result is not None
            seen = replace(seen, last_run_at=now, outcome="ok", error=None, failing_since=None, last_ok_at=now,
                           next_due=result.next_due, publish_error=result.publish_error, passes=seen.passes + 1)
        else:
            seen = replace(seen, last_run_at=now, outcome="failed", error=_one_line(error),
                           failing_since=seen.failing_since or now, passes=seen.passes + 1,
                           failures=seen.failures + 1)
        self._passes = seen
        self.heartbeat.beat()

    def problem(self) -> str | None:
        """Why the loop is unhealthy although it comes round: its last pass failed."""
        seen = self._passes
        if seen.outcome != "failed":
            return None
        return (f"last run failed at {_iso(seen.last_run_at)} ({seen.error}); no run succeeded since "
                f"{_iso(seen.failing_since)}")

    def details(self) -> dict[str, Any]:
        seen = self._passes
        return {"started_at": _iso(self._started_at), "last_run_at": _iso(seen.last_run_at),
                "last_outcome": seen.outcome, "last_error": seen.error, "last_ok_at": _iso(seen.last_ok_at),
                "next_due": _iso(seen.next_due), "publish_error": seen.publish_error, "passes": seen.passes,
                "failures": seen.failures, "period_s": self.poll_s, "grace_s": self.grace_s}
