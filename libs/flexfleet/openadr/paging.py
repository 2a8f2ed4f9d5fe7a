"""Pagination of the VTN's searches: the spec's skip and limit, with the page size capped."""

from __future__ import annotations

from dataclasses import dataclass

from flexfleet.domain.errors import DomainError

MAX_PAGE = 50            # the spec's maximum for limit, and the default page
INT32_MAX = 2**31 - 1    # skip and limit are int32 in the spec


@dataclass(frozen=True)
class Page:
    skip: int = 0
    limit: int = MAX_PAGE


def page(skip: int | None, limit: int | None) -> Page:
    """The page a search asked for; a missing limit is a full page."""
    skip = 0 if skip is None else skip
    limit = MAX_PAGE if limit is None else limit
    if not 0 <= skip <= INT32_MAX:
        raise DomainError("skip", f"must be between 0 and {INT32_MAX}, got {skip}")
    if not 0 <= limit <= MAX_PAGE:
        raise DomainError("limit", f"must be between 0 and {MAX_PAGE}, got {limit}")
    return Page(skip, limit)
