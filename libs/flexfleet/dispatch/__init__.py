"""Dispatch: obligations to OpenADR signals, re-dispatch inside a bundle, FCR response, and
delivery verification against the obligation and a baseline. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol


class ObligationLike(Protocol):
    """What dispatch reads of an obligation (services.bidder.store.Obligation has it)."""

    obligation_id: str
    product_id: str
    direction: str
    mtu_start: datetime
    mtu_end: datetime
    volume_mw: Decimal | float
    vehicles: Sequence[str]
    kw: Sequence[float]
