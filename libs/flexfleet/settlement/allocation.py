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
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
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


_SCALE = Context(prec=80, traps=[Inexact, Overflow, InvalidOperation])


def _decimal_ints(keys: list[Any], ws: list[object]) -> list[int] | None:
    """Int and Decimal weights as integers over a common power of ten (what Fractions would give,
    without them: attribution splits hundreds of thousands of lines); None for other weights."""
    exponent = 0
    for w in ws:
        if type(w) is Decimal:
            if not w.is_finite():
                return None
            exponent = min(exponent, w.as_tuple().exponent)  # type: ignore[type-var]
        elif type(w) is not int:
            return None
    shift = 10 ** -exponent
    out = [int(w.scaleb(-exponent, _SCALE)) if type(w) is Decimal else w * shift  # type: ignore[union-attr]
           for w in ws]
    for k, w in zip(keys, out):
        if w < 0:
            _weight(k, ws[keys.index(k)])       # raises, naming the key and the weight as given
    return out


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
    ints = _decimal_ints(keys, [pairs[i][1] for i in order])
    if ints is None:
        ws = [_weight(keys[j], pairs[i][1]) for j, i in enumerate(order)]
        # Exact shares t x w / sum(w) in integers: weights over their common denominator.
        den = lcm(*(w.denominator for w in ws))
        ints = [w.numerator * (den // w.denominator) for w in ws]
    if total == 0:
        return {k: 0 for k in keys}
    whole_int = sum(ints)
    if whole_int == 0:
        raise DomainError("weights", f"all weights are zero (or none given); cannot split {total}")
    sign, t = (1, total) if total > 0 else (-1, -total)
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
