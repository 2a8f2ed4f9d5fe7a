"""Targeting and pagination of the VTN, without I/O: target keys, search filters, which
objects reach a VEN, and the page a search asks for."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flexfleet.domain.errors import DomainError
from flexfleet.openadr.paging import MAX_PAGE, Page, page
from flexfleet.openadr.targets import (
    TargetFilter,
    reaches,
    target_filter,
    target_key,
    target_keys,
    target_types,
    ven_identity,
)

GROUP_G1 = [{"type": "GROUP", "values": ["g1"]}]


def test_target_keys_are_one_per_type_and_value() -> None:
    targets = [{"type": "GROUP", "values": ["g1", "g2", "g1"]}, {"type": "POSTAL_CODE", "values": [11122, True]},
               {"type": "LOCATION", "values": [{"x": 1.0, "y": 2.0}]}]
    assert target_keys(targets) == sorted({target_key("GROUP", "g1"), target_key("GROUP", "g2"),
                                           target_key("POSTAL_CODE", "11122"), target_key("POSTAL_CODE", "true")})
    assert target_types(targets) == ["GROUP", "LOCATION", "POSTAL_CODE"]
    assert target_keys(None) == [] and target_keys([]) == []


@given(st.text(), st.text())
def test_target_keys_never_collide_across_types(type_a: str, value: str) -> None:
    """A separator in a type or value cannot make two different pairs one key."""
    assert target_key(type_a, value) != target_key(type_a + "x", value)
    assert target_key(type_a, value) != target_key(type_a, value + "x")


def test_filters() -> None:
    assert target_filter(None, None) is None and target_filter("", []) is None
    with pytest.raises(DomainError) as err:
        target_filter(None, ["g1"])
    assert err.value.field == "targetType"
    any_group = target_filter("GROUP", None)
    assert any_group == TargetFilter("GROUP") and any_group.matches(GROUP_G1) and not any_group.matches(None)
    g1_or_g2 = target_filter("GROUP", ["g2", "g1"])
    assert g1_or_g2.matches(GROUP_G1) and not g1_or_g2.matches([{"type": "GROUP", "values": ["g3"]}])
    assert not g1_or_g2.matches(None), "a filter asks for targeted objects"
    assert not target_filter("VEN_NAME", ["g1"]).matches(GROUP_G1)


def test_what_reaches_a_ven() -> None:
    ven_a = ven_identity("ven-a", GROUP_G1, [[{"type": "POWER_SERVICE_LOCATION", "values": ["psl-1"]}], None])
    assert reaches([], ven_a), "untargeted objects are for everyone"
    assert reaches(target_keys([{"type": "VEN_NAME", "values": ["ven-b", "ven-a"]}]), ven_a)
    assert reaches(target_keys(GROUP_G1), ven_a)
    assert reaches(target_keys([{"type": "POWER_SERVICE_LOCATION", "values": ["psl-1"]}]), ven_a)
    assert not reaches(target_keys([{"type": "VEN_NAME", "values": ["ven-b"]}]), ven_a)
    assert not reaches(target_keys([{"type": "GROUP", "values": ["ven-a"]}]), ven_a)


def test_pages() -> None:
    assert page(None, None) == Page(0, MAX_PAGE) == Page()
    assert page(100, 0) == Page(100, 0)
    for skip, limit, field in ((-1, 10, "skip"), (2**31, 10, "skip"), (0, 51, "limit"), (0, -1, "limit")):
        with pytest.raises(DomainError) as err:
            page(skip, limit)
        assert err.value.field == field
