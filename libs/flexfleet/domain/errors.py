"""The one error type the domain raises, so callers can report the field at fault."""

from __future__ import annotations


class DomainError(ValueError):
    """A value the domain refuses. `field` names what is wrong, `reason` says why.

    A ValueError so that pydantic, typer and plain callers all treat it as bad input.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
