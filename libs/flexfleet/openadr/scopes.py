"""The OpenADR 3 scopes (the spec's securitySchemes) and which of them the VTN's two kinds of
client hold: the business logic (BL) writes programs, events, subscriptions and vens; a VEN
writes reports, subscriptions and its own ven and resources; both read.

The platform's roles (flexfleet.auth.roles) include them: an operator account is the business
logic, a ven account is one VEN, bound to its venName. venName is unique within a VTN and known
before the VEN object exists, so a VEN can register itself with it (the object's id is the
VTN's to assign).
"""

from __future__ import annotations

READ_ALL, WRITE_PROGRAMS, WRITE_EVENTS = "read_all", "write_programs", "write_events"
WRITE_REPORTS, WRITE_SUBSCRIPTIONS, WRITE_VENS = "write_reports", "write_subscriptions", "write_vens"
BL_SCOPES = frozenset({READ_ALL, WRITE_PROGRAMS, WRITE_EVENTS, WRITE_SUBSCRIPTIONS, WRITE_VENS})
VEN_SCOPES = frozenset({READ_ALL, WRITE_REPORTS, WRITE_SUBSCRIPTIONS, WRITE_VENS})
OPENADR_SCOPES = BL_SCOPES | VEN_SCOPES

# 3.1.0 split read_all into read_targets (programs, events) and read_ven_objects (reports,
# subscriptions, vens, resources). The VTN confines every VEN to exactly those reads by its
# rules (targets granted to it, objects it owns), so either name is granted as read_all, which
# both versions' reads require: RFC 6749 3.3 lets a server grant another scope than asked, and
# the answer's `scope` says which.
READ_ALIASES = {"read_targets": READ_ALL, "read_ven_objects": READ_ALL}


def unaliased(requested: str | None) -> str | None:
    """A token request's scope with 3.1.0's read scopes named as read_all."""
    return None if requested is None else " ".join(READ_ALIASES.get(s, s) for s in requested.split())
