"""Rule checks the bidder calls before it submits anything.

All volumes are Decimal MW: a float 0.1 + 0.2 is not a multiple of a 0.1 MW step, and a bid
rejected for that at gate closure cannot be resubmitted.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from flexfleet.markets.catalogue import FixedGateClosure, Product, RelativeGateClosure

UTC = dt.timezone.utc


class Violation(BaseModel):
    """One broken market rule: which rule, and a sentence an operator can act on."""

    model_config = ConfigDict(frozen=True)

    rule: Literal["zone", "minimum", "step", "indivisible", "non_positive"]
    message: str


def _dec(x: Decimal | int | str | float) -> Decimal:
    # str() first so that 0.3 becomes Decimal("0.3"), not 0.29999999999999998889...
    return x if isinstance(x, Decimal) else Decimal(str(x))


def round_to_step(
    product: Product,
    volume_mw: Decimal | int | str | float,
    mode: Literal["down", "up", "nearest"] = "down",
) -> Decimal:
    """Round to the product's bid step. Default rounds down: never offer more than you have."""
    v = _dec(volume_mw)
    step = product.bid_step_mw.value
    rounding = {"down": ROUND_FLOOR, "up": ROUND_CEILING, "nearest": ROUND_HALF_EVEN}[mode]
    return (v / step).to_integral_value(rounding=rounding) * step


def check_bid(
    product: Product,
    volume_mw: Decimal | int | str | float,
    *,
    zone: str | None = None,
    divisible: bool = False,
) -> list[Violation]:
    """Every rule a single bid of ``volume_mw`` breaks (empty list: the bid is acceptable).

    ``divisible=True`` means the bidder would accept partial clearing; on products that clear
    bids whole that request cannot be honoured, so it is reported rather than ignored.
    """
    v = _dec(volume_mw)
    out: list[Violation] = []
    if zone is not None and zone not in product.zones.value:
        out.append(Violation(rule="zone", message=f"{product.id} is not traded in {zone}"))
    if v <= 0:
        out.append(Violation(rule="non_positive", message=f"volume {v} MW must be positive"))
        return out
    mn, step = product.min_bid_mw.value, product.bid_step_mw.value
    if v < mn:
        out.append(Violation(rule="minimum", message=f"{v} MW is below the {mn} MW minimum bid of {product.id}"))
    if v % step != 0:
        out.append(
            Violation(
                rule="step",
                message=f"{v} MW is not a multiple of the {step} MW step of {product.id} "
                f"(nearest below: {round_to_step(product, v)} MW)",
            )
        )
    if divisible and product.indivisible.value:
        out.append(
            Violation(rule="indivisible", message=f"{product.id} clears bids whole; a divisible bid is not possible")
        )
    return out


def gate_closure(
    product: Product,
    auction: str,
    delivery_day: dt.date,
    mtu_start: dt.datetime | None = None,
) -> dt.datetime:
    """Gate closure in UTC for ``auction`` of ``product`` delivering on ``delivery_day``.

    Fixed closures are local wall-clock times (DST handled by the IANA zone). Closures relative
    to each MTU need ``mtu_start`` (aware); without it the day's first MTU is used, which is
    the earliest closure that concerns the day.
    """
    gc = product.auction(auction).gate_closure.value
    if isinstance(gc, FixedGateClosure):
        day = delivery_day - dt.timedelta(days=gc.days_before)
        local = dt.datetime.combine(day, gc.local_time, tzinfo=ZoneInfo(gc.timezone))
        return local.astimezone(UTC)
    assert isinstance(gc, RelativeGateClosure)
    if mtu_start is None:
        tz = ZoneInfo(product.delivery_timezone.value)
        mtu_start = dt.datetime.combine(delivery_day, dt.time(0), tzinfo=tz)
    elif mtu_start.tzinfo is None:
        raise ValueError("mtu_start must be timezone-aware")
    return (mtu_start - dt.timedelta(minutes=gc.minutes_before)).astimezone(UTC)


def is_open(
    product: Product,
    auction: str,
    delivery_day: dt.date,
    now: dt.datetime,
    mtu_start: dt.datetime | None = None,
) -> bool:
    """True while bids for this auction and delivery day (or MTU) may still be submitted.

    Only the closing side is modelled: opening times are not in the catalogue yet, so a
    True here means 'not yet closed'.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now < gate_closure(product, auction, delivery_day, mtu_start)
