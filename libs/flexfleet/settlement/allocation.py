"""Splitting a whole number of minor units over weights: the largest-remainder (Hamilton) rule.

Why: rounding each share on its own makes the parts add up to a cent more or less than the
whole, which then sits nowhere in the ledger. Hamilton's rule gives each party the floor of its
exact share, then hands the cents still missing, one each, to the largest fractional remainders.
So the parts add up to the total exactly, and each part is within one minor unit of its exact
share (floor or floor + 1).

Ties between equal remainders go to the smaller key (keys are compared as given: ids, or tuples
of ids), so the same inputs always give the same parts whatever order they arrive in. A
negative total is split as its absolute value and every part negated: a refund is the mirror of
a payment and its ties fall the same way. Weights are exact (int, Decimal or Fraction) and never
negative; a zero total gives zero parts, a non-zero total needs a positive weight somewhere.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from decimal import Decimal
from fractions import Fraction
from math import lcm
from typing import Any, TypeVar

from flexfleet.domain.errors import DomainError

K = TypeVar("K", bound=Hashable)
Weight = int | Decimal | Fraction


def _weight(key: Any, w: object) -> Fraction:
    if isinstance(w, bool) or not isinstance(w, (int, Decimal, Fraction)):
        raise DomainError("weights", f"weight of {key!r} must be an int, Decimal or Fraction; got {w!r}")
    if isinstance(w, Decimal) and not w.is_finite():
        raise DomainError("weights", f"weight of {key!r} is not finite: {w}")
    f = Fraction(w)
    if f < 0:
        raise DomainError("weights", f"weight of {key!r} is negative: {w}")
    return f


def allocate(total: int, weights: Mapping[K, Weight] | Iterable[tuple[K, Weight]]) -> dict[K, int]:
    """`total` split over the keys in proportion to their weights; the parts sum to `total`.

    Returns the parts in ascending key order.
    """
    if isinstance(total, bool) or not isinstance(total, int):
        raise DomainError("total", f"must be an int of minor units; got {total!r}")
    pairs = list(weights.items() if isinstance(weights, Mapping) else weights)
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise DomainError("weights", "a key appears twice")
    try:
        order = sorted(range(len(keys)), key=lambda i: keys[i])
    except TypeError:
        raise DomainError("weights", "keys must be comparable with each other (for the tie-break)") from None
    keys = [keys[i] for i in order]
    ws = [_weight(keys[j], pairs[i][1]) for j, i in enumerate(order)]
    if total == 0:
        return {k: 0 for k in keys}
    whole = sum(ws, Fraction(0))
    if whole == 0:
        raise DomainError("weights", f"all weights are zero (or none given); cannot split {total}")
    sign, t = (1, total) if total > 0 else (-1, -total)
    # Exact shares t x w / sum(w) in integers: weights over their common denominator.
    den = lcm(*(w.denominator for w in ws))
    ints = [w.numerator * (den // w.denominator) for w in ws]
    whole_int = sum(ints)
    parts, remainders = [], []
    for w in ints:
        q, r = divmod(t * w, whole_int)
        parts.append(q)
        remainders.append(r)
    missing = t - sum(parts)
    by_remainder = sorted(range(len(keys)), key=lambda i: (-remainders[i], i))  # i is the key order
    for i in by_remainder[:missing]:
        parts[i] += 1
    return {k: sign * p for k, p in zip(keys, parts)}


def exact_shares(total: int, weights: Mapping[K, Weight]) -> dict[K, Fraction]:
    """The exact shares `allocate` rounds (for tests and for explaining a split)."""
    ws = {k: _weight(k, w) for k, w in weights.items()}
    whole = sum(ws.values(), Fraction(0))
    return {k: (Fraction(total) * w / whole if whole else Fraction(0)) for k, w in ws.items()}
