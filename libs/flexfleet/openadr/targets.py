"""Targeting in OpenADR 3.0.1: which objects a VEN may see, and the targetType/targetValues
filter of the search endpoints.

A target is a valuesMap such as {"type": "VEN_NAME", "values": ["ven-7"]}. Each (type, value)
pair becomes a key, so "targeted at X" is a set overlap, which the database answers from an
indexed array. The rules, where the spec leaves them open:
- an object without targets is for everyone;
- an object with targets reaches a VEN when any of its pairs is one of the VEN's own: its
  VEN_NAME, and the targets the business logic gave the VEN object and its resources (a VEN
  cannot set those itself, see `vtn` access rules, so it cannot claim another's group);
- a search filter (targetType with targetValues) keeps objects that have the type with any of
  the values (values are OR'ed, as openadr3-client documents); targetType alone keeps objects
  with any target of that type. Untargeted objects do not match a filter: a filter asks for
  objects targeted at something.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flexfleet.domain.errors import DomainError

VEN_NAME = "VEN_NAME"


def target_key(target_type: str, value: Any) -> str:
    """One (type, value) pair as a string; numbers and booleans as their JSON text, so that a
    query's "12345" finds a target value 12345."""
    text = value if isinstance(value, str) else json.dumps(value)
    return json.dumps([target_type, text], ensure_ascii=False)


def target_keys(targets: Iterable[Mapping[str, Any]] | None) -> list[str]:
    """Every (type, value) pair of an object's targets; points are not target values."""
    keys = {target_key(t["type"], v) for t in targets or () for v in t.get("values", ())
            if not isinstance(v, Mapping)}
    return sorted(keys)


def target_types(targets: Iterable[Mapping[str, Any]] | None) -> list[str]:
    return sorted({t["type"] for t in targets or ()})


@dataclass(frozen=True)
class TargetFilter:
    """A search's targetType and targetValues; `values` empty means "any value of the type"."""

    type: str
    values: tuple[str, ...] = ()

    @property
    def keys(self) -> list[str]:
        return [target_key(self.type, v) for v in self.values]

    def matches(self, targets: Iterable[Mapping[str, Any]] | None) -> bool:
        if not self.values:
            return self.type in target_types(targets)
        return bool(set(self.keys) & set(target_keys(targets)))


def target_filter(target_type: str | None, target_values: Sequence[str] | None) -> TargetFilter | None:
    """The filter of a search's query, or None; values without a type are refused."""
    values = tuple(target_values or ())
    if target_type is None or target_type == "":
        if values:
            raise DomainError("targetType", "is required with targetValues")
        return None
    return TargetFilter(target_type, values)


def ven_identity(ven_name: str, ven_targets: Iterable[Mapping[str, Any]] | None = None,
                 resource_targets: Iterable[Iterable[Mapping[str, Any]] | None] = ()) -> frozenset[str]:
    """The keys an object may target to reach this VEN."""
    keys = {target_key(VEN_NAME, ven_name), *target_keys(ven_targets)}
    for targets in resource_targets:
        keys.update(target_keys(targets))
    return frozenset(keys)


def reaches(object_keys: Iterable[str], identity: frozenset[str]) -> bool:
    """Whether an object with these target keys is for the VEN with this identity."""
    keys = set(object_keys)
    return not keys or bool(keys & identity)
