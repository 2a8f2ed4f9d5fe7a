"""Which subscriptions hear of a change to an object, and the notification they are sent.

A subscription names object types and operations per callback. The spec lists subscription
operations as READ/CREATE/UPDATE/DELETE but notifications as GET/POST/PUT/DELETE; both are
accepted and compared as HTTP methods. Reads are not notified (they change nothing). A
subscription hears of objects of its own program (a program, its events and reports, and
subscriptions to it); VENs and resources belong to no program and are heard of whatever the
program. A subscription with targets hears only of untargeted objects and objects sharing one
of its targets.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from flexfleet.openadr.targets import target_keys

HTTP_OPERATION = {"READ": "GET", "CREATE": "POST", "UPDATE": "PUT", "DELETE": "DELETE",
                  "GET": "GET", "POST": "POST", "PUT": "PUT"}


@dataclass(frozen=True)
class Change:
    """An object created (POST), updated (PUT) or deleted (DELETE), as its body now reads."""

    object_type: str
    operation: Literal["POST", "PUT", "DELETE"]
    object: Mapping[str, Any]

    @property
    def program_id(self) -> str | None:
        if self.object_type == "PROGRAM":
            return self.object.get("id")
        return self.object.get("programID") if self.object_type in ("EVENT", "REPORT", "SUBSCRIPTION") else None

    @property
    def targets(self) -> list[Mapping[str, Any]] | None:
        return self.object.get("targets")


@dataclass(frozen=True)
class Callback:
    url: str
    bearer_token: str | None


def callbacks(subscription: Mapping[str, Any], change: Change) -> list[Callback]:
    """The callbacks of one subscription that this change calls, each once."""
    if change.program_id is not None and subscription.get("programID") != change.program_id:
        return []
    wanted, present = set(target_keys(subscription.get("targets"))), set(target_keys(change.targets))
    if wanted and present and not wanted & present:
        return []
    found: dict[tuple[str, str | None], Callback] = {}
    for op in subscription.get("objectOperations", ()):
        methods = {HTTP_OPERATION[o] for o in op["operations"]}
        if change.object_type in op["objects"] and change.operation in methods:
            found.setdefault((op["callbackUrl"], op.get("bearerToken")),
                             Callback(op["callbackUrl"], op.get("bearerToken")))
    return list(found.values())


def notification(change: Change) -> dict[str, Any]:
    """The spec's notification body."""
    return {"objectType": change.object_type, "operation": change.operation, "object": dict(change.object),
            "targets": change.targets}


def deliverable(url: str, allowed_hosts: Collection[str] | None) -> str | None:
    """Why a callback URL is not called, or None when it may be: only http(s), and, when the
    VTN is given a list of hosts, only those (a callback is a request the VTN makes on a
    client's behalf, so an open VTN would reach whatever its network reaches)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        return f"malformed URL: {exc}"
    if parts.scheme not in ("http", "https") or not host:
        return "not an http(s) URL with a host"
    if allowed_hosts is not None and host not in allowed_hosts:
        return f"host {host} is not among the allowed callback hosts"
    return None
