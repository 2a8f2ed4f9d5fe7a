"""Webhook notifications of the VTN's subscriptions, sent off the request path.

A write that committed hands its change to `Notifier.publish` and returns; worker threads find
the subscriptions that hear of it and POST the spec's notification to each callback, retrying
a failed delivery a few times with backoff. A delivery that still fails is logged and dropped:
the request that caused it has long succeeded and never sees it. A subscription written by a
VEN hears only of objects that VEN may read, so it cannot learn of another VEN's events.
Changes live in memory: a VTN restart loses the notifications not yet sent (VENs poll too).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import psycopg

from flexfleet.openadr.notifications import Callback, Change, callbacks, deliverable, notification
from flexfleet.openadr.targets import reaches, target_keys
from services.dispatcher.vtn import store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """How hard to try: attempts in all, the first pause (doubling), the time one POST may take;
    and the only hosts callbacks may go to (None: any)."""

    attempts: int = 4
    backoff_s: float = 0.5
    timeout_s: float = 5.0
    allowed_hosts: frozenset[str] | None = None


def visible_to(conn: psycopg.Connection, ven_name: str, change: Change, owner_ven: str | None) -> bool:
    """Whether the VEN may read the changed object (the VTN's read rules)."""
    obj = change.object
    if change.object_type in ("PROGRAM", "EVENT"):
        return reaches(target_keys(obj.get("targets")), store.identity(conn, ven_name))
    if change.object_type in ("REPORT", "SUBSCRIPTION"):
        return owner_ven == ven_name
    if change.object_type == "VEN":
        return obj.get("venName") == ven_name
    row = conn.execute("SELECT ven_name FROM oadr_vens WHERE id = %s", (obj.get("venID"),)).fetchone()
    return row is not None and row[0] == ven_name


class Notifier:
    """Background delivery of notifications; `drain` waits for what was published so far."""

    def __init__(self, database_url: str, delivery: Delivery = Delivery(), workers: int = 4) -> None:
        self.database_url = database_url
        self.delivery = delivery
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vtn-notify")
        self._client = httpx.Client(timeout=delivery.timeout_s)
        self._pending: set[Future] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def publish(self, change: Change, owner_ven: str | None = None) -> None:
        if not self._submit(self._fan_out, change, owner_ven):
            log.warning("notifier closed; %s %s not notified", change.operation, change.object_type)

    def _submit(self, fn: Callable, *args: object) -> bool:
        try:
            future = self._pool.submit(fn, *args)
        except RuntimeError:            # shut down: the app is stopping
            return False
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return True

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("notification failed", exc_info=future.exception())

    def _fan_out(self, change: Change, owner_ven: str | None) -> None:
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            targets: dict[tuple[str, str | None], Callback] = {}
            for sub in store.subscriptions_for(conn, change.object_type, change.program_id):
                if sub.owner_ven is not None and not visible_to(conn, sub.owner_ven, change, owner_ven):
                    continue
                for cb in callbacks(sub.body, change):
                    targets.setdefault((cb.url, cb.bearer_token), cb)
        body = notification(change)
        for cb in targets.values():
            self._submit(self._deliver, cb, body)

    def _deliver(self, cb: Callback, body: dict) -> bool:
        refused = deliverable(cb.url, self.delivery.allowed_hosts)
        if refused is not None:
            log.warning("notification to %s not sent: %s", cb.url, refused)
            return False
        headers = {"Authorization": f"Bearer {cb.bearer_token}"} if cb.bearer_token else {}
        pause = self.delivery.backoff_s
        for attempt in range(1, self.delivery.attempts + 1):
            try:
                response = self._client.post(cb.url, json=body, headers=headers)
                if response.status_code < 300:
                    return True
                reason = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except Exception as exc:        # a URL httpx cannot use: retrying will not help
                log.warning("notification to %s not sent: %s: %s", cb.url, type(exc).__name__, exc)
                return False
            log.warning("notification to %s failed (attempt %d of %d): %s", cb.url, attempt,
                        self.delivery.attempts, reason)
            if attempt < self.delivery.attempts and self._closing.wait(pause):
                break
            pause *= 2
        log.error("notification to %s dropped after %d attempt(s)", cb.url, attempt)
        return False

    def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until every published change was delivered or dropped (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return
            time.sleep(0.02)
        raise TimeoutError("notifications still pending")

    def close(self) -> None:
        """Stop: deliveries not yet started are dropped, retries end after their current try."""
        self._closing.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()
