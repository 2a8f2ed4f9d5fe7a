"""Webhook notifications of the VTN's subscriptions, sent off the request path.

A write that committed hands its change to `Notifier.publish` and returns; worker threads find
the subscriptions that hear of it and POST the spec's notification to each callback, retrying
a failed delivery a few times with backoff. A delivery that still fails is logged and dropped:
the request that caused it has long succeeded and never sees it. A subscription written by a
VEN hears only of objects that VEN may read, so it cannot learn of another VEN's events.
Changes live in memory: a VTN restart loses the notifications not yet sent (VENs poll too).

A subscription hears in the version it was written in: a 3.0.1 one gets 3.0.1 objects and HTTP
method operations (flexfleet.openadr.notifications), a 3.1.0 one 3.1.0 objects, CRUD operations
and, when a VEN wrote it, only the targets granted to that VEN (models310).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import httpx
import psycopg

from flexfleet.openadr import models310
from flexfleet.openadr.models310 import V301, V310, hide_targets
from flexfleet.openadr.notifications import Callback, Change, callbacks, deliverable, notification
from flexfleet.openadr.targets import reaches, target_keys
from services.dispatcher.vtn import store
from services.runtime.connection import PooledConnections

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
    """Whether the VEN may read the changed object (3.0.1's read rules, on its 3.0.1 view)."""
    obj = change.object
    if change.object_type in ("PROGRAM", "EVENT"):
        return reaches(target_keys(obj.get("targets")), store.identity(conn, ven_name))
    if change.object_type in ("REPORT", "SUBSCRIPTION"):
        return owner_ven == ven_name
    if change.object_type == "VEN":
        return obj.get("venName") == ven_name
    return store.ven_name_of(conn, obj.get("venID")) == ven_name


def shown_to(conn: psycopg.Connection, ven_name: str, kind: store.Kind, stored: store.Stored) -> frozenset[str] | None:
    """The targets of the object a VEN may see under 3.1.0's rules (a program or event targeted
    at it shows only those granted to it), or None when it may not read the object."""
    if kind in (store.PROGRAMS, store.EVENTS):
        if not stored.targeted:
            return frozenset()
        shown = store.granted(conn, ven_name) & set(stored.target_values)
        return shown or None
    if kind in store.OWNED:
        mine = stored.owner_ven == ven_name
    elif kind is store.VENS:
        mine = stored.body.get("venName") == ven_name
    else:
        mine = store.ven_name_of(conn, stored.body.get("venID")) == ven_name
    return frozenset() if mine else None


@dataclass(frozen=True)
class Published:
    """A committed change: the object as stored after it (before it, for a delete)."""

    kind: store.Kind
    operation: Literal["CREATE", "UPDATE", "DELETE"]
    stored: store.Stored


HTTP_METHOD = {"CREATE": "POST", "UPDATE": "PUT", "DELETE": "DELETE"}


class Notifier:
    """Background delivery of notifications; `drain` waits for what was published so far."""

    def __init__(self, connections: PooledConnections, delivery: Delivery = Delivery(), workers: int = 4) -> None:
        self.connections = connections
        self.delivery = delivery
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vtn-notify")
        self._client = httpx.Client(timeout=delivery.timeout_s)
        self._pending: set[Future] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def publish(self, published: Published) -> None:
        if not self._submit(self._fan_out, published):
            log.warning("notifier closed; %s %s not notified", published.operation, published.kind.object_type)

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

    def _fan_out(self, published: Published) -> None:
        """Each subscription hears in its own version; one notification per callback (and, in
        3.1.0, per owner, whose view of the targets may differ)."""
        kind, stored, operation = published.kind, published.stored, published.operation
        sends: dict[tuple, tuple[Callback, dict]] = {}
        with self.connections.connection() as conn:
            views = {v: store.view(kind, stored, v) for v in (V301, V310)}
            for sub in store.subscriptions_for(conn, kind.object_type, stored.program_id):
                if sub.version == V301:
                    change = Change(kind.object_type, HTTP_METHOD[operation], views[V301])  # type: ignore[arg-type]
                    if sub.owner_ven is not None and not visible_to(conn, sub.owner_ven, change, stored.owner_ven):
                        continue
                    for cb in callbacks(sub.body, change):
                        sends.setdefault((cb.url, cb.bearer_token), (cb, notification(change)))
                    continue
                obj = views[V310]
                if sub.owner_ven is not None:
                    shown = shown_to(conn, sub.owner_ven, kind, stored)
                    if shown is None:
                        continue
                    obj = hide_targets(obj, shown) if kind in (store.PROGRAMS, store.EVENTS) else obj
                body = models310.notification(kind.object_type, operation, obj)
                for cb in models310.callbacks(sub.body, kind.object_type, operation, stored.program_id,
                                              stored.target_values):
                    sends.setdefault((cb.url, cb.bearer_token, V310, sub.owner_ven), (cb, body))
        for cb, body in sends.values():
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
