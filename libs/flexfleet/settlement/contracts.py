"""Owner contracts as data: dated terms, each a set of typed rates, and the terms in force at an MTU.

Why dated terms rather than editing a contract: pay must be recomputable for any past month, so
a rate change is a new term from a date, and settlement asks `terms_at(mtu)` for every MTU it
prices. A term is in force from its `valid_from` until the next term's (or the contract's end).

What a term can say (all rates in the contract's currency, major units, Decimal; zero = not in
this contract). Amounts are per vehicle, the annual cap per contract:
- availability_per_hour: per plugged-in, controllable hour (Mobilize's bonus, Octopus);
- revenue_share_pct: the share of each obligation's net capacity revenue, by the vehicle's
  committed kW (kW x time through the MTUs it is committed in);
- energy_per_kwh: per kWh discharged (Mobilize's fixed price per kWh);
- charging_refund: platform-caused charging refunded at a fixed price or at the price the
  owner paid (`per_kwh=None`); scope "all" refunds every kWh charged (free charging);
- wear_factor: pass-through of the modelled cost of the wear the platform caused, times this;
- fixed_monthly: a fixed amount per month, pro rata for part months;
- annual_cap: the most the capped pay (availability, revenue share, energy, fixed) may reach in
  a calendar year; refunds, wear and credits are never capped (they repay costs and harm);
- min_plugged_in_hours: eligibility; below it (pro rata for part months) the month's
  availability and fixed pay are forfeited (Octopus' 12 h on 20 days, as a monthly total);
- credit_per_broken_departure / credit_per_broken_min_soc: paid per promise the platform broke.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import ID_PATTERN, Currency, Language
from flexfleet.domain.time import is_mtu_start, parse_rfc3339, require_aware
from flexfleet.settlement.money import currency, decimal

_RATES = ("availability_per_hour", "revenue_share_pct", "energy_per_kwh", "wear_factor", "fixed_monthly",
          "min_plugged_in_hours", "credit_per_broken_departure", "credit_per_broken_min_soc")
_MONEY = {"fixed_monthly", "annual_cap", "credit_per_broken_departure", "credit_per_broken_min_soc"}
_MAX = {"revenue_share_pct": Decimal(100), "min_plugged_in_hours": Decimal(744)}  # 31 days x 24 h


def _id(value: object, field: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise DomainError(field, f"must be 1-64 characters of A-Z a-z 0-9 _ . : -; got {value!r}")
    return value


def _mtu_start(value: object, field: str) -> datetime:
    ts = parse_rfc3339(value, field) if isinstance(value, str) else require_aware(value, field)  # type: ignore[arg-type]
    if not is_mtu_start(ts, field):
        raise DomainError(field, f"must start a 15-minute MTU; got {ts.isoformat()}")
    return ts


class RefundScope(StrEnum):
    PLATFORM_CAUSED = "platform_caused"   # only charging the platform caused (down-regulation, refills)
    ALL = "all"                           # every kWh charged: free charging


@dataclass(frozen=True)
class ChargingRefund:
    """How charging energy is refunded: `per_kwh` fixed, or None for the price the owner paid."""

    scope: RefundScope = RefundScope.PLATFORM_CAUSED
    per_kwh: Decimal | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "scope", RefundScope(self.scope))
        except ValueError:
            raise DomainError("charging_refund.scope", f"must be platform_caused or all; got {self.scope!r}") from None
        if self.per_kwh is not None:
            object.__setattr__(self, "per_kwh", decimal(self.per_kwh, "charging_refund.per_kwh"))


@dataclass(frozen=True)
class ContractTerm:
    """One set of rates, in force from `valid_from` (an MTU start) until the next term."""

    term_id: str
    valid_from: datetime
    availability_per_hour: Decimal = Decimal(0)
    revenue_share_pct: Decimal = Decimal(0)
    energy_per_kwh: Decimal = Decimal(0)
    charging_refund: ChargingRefund | None = None
    wear_factor: Decimal = Decimal(0)
    fixed_monthly: Decimal = Decimal(0)
    annual_cap: Decimal | None = None
    min_plugged_in_hours: Decimal = Decimal(0)
    credit_per_broken_departure: Decimal = Decimal(0)
    credit_per_broken_min_soc: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        _id(self.term_id, "term_id")
        object.__setattr__(self, "valid_from", _mtu_start(self.valid_from, "valid_from"))
        for name in _RATES + ("annual_cap",):
            value = getattr(self, name)
            if value is None and name == "annual_cap":
                continue
            places = 2 if name in _MONEY else None  # all four currencies have two minor digits
            object.__setattr__(self, name, decimal(value, name, hi=_MAX.get(name), places=places))
        if self.charging_refund is not None and not isinstance(self.charging_refund, ChargingRefund):
            raise DomainError("charging_refund", f"must be a ChargingRefund; got {self.charging_refund!r}")


@dataclass(frozen=True)
class Contract:
    """What an owner signed for one or more vehicles: currency, statement language, dated terms."""

    contract_id: str
    owner_id: str
    vehicle_ids: tuple[str, ...]
    currency: Currency
    terms: tuple[ContractTerm, ...]
    language: Language = Language.EN
    ends: datetime | None = None

    def __post_init__(self) -> None:
        _id(self.contract_id, "contract_id")
        _id(self.owner_id, "owner_id")
        if isinstance(self.vehicle_ids, str) or not isinstance(self.vehicle_ids, Sequence) or not self.vehicle_ids:
            raise DomainError("vehicle_ids", f"must be a non-empty list of vehicle ids; got {self.vehicle_ids!r}")
        vids = tuple(_id(v, f"vehicle_ids[{i}]") for i, v in enumerate(self.vehicle_ids))
        if len(set(vids)) != len(vids):
            raise DomainError("vehicle_ids", f"contract {self.contract_id} lists a vehicle twice")
        object.__setattr__(self, "vehicle_ids", vids)
        object.__setattr__(self, "currency", currency(self.currency))
        try:
            object.__setattr__(self, "language", Language(self.language))
        except ValueError:
            known = ", ".join(x.value for x in Language)
            raise DomainError("language", f"must be one of {known}; got {self.language!r}") from None
        self._check_terms()
        if self.ends is not None:
            object.__setattr__(self, "ends", _mtu_start(self.ends, "ends"))
            if self.ends <= self.terms[-1].valid_from:
                raise DomainError("ends", f"must be after the last term's valid_from {self.terms[-1].valid_from}")

    def _check_terms(self) -> None:
        if isinstance(self.terms, ContractTerm) or not isinstance(self.terms, Sequence) or not self.terms:
            raise DomainError("terms", f"contract {self.contract_id} needs at least one term")
        terms = tuple(self.terms)
        for i, t in enumerate(terms):
            if not isinstance(t, ContractTerm):
                raise DomainError(f"terms[{i}]", f"must be a ContractTerm; got {type(t).__name__}")
            if i and t.valid_from <= terms[i - 1].valid_from:
                raise DomainError(f"terms[{i}].valid_from",
                                  f"{t.valid_from.isoformat()} is not after terms[{i - 1}].valid_from "
                                  f"{terms[i - 1].valid_from.isoformat()}: terms must be sorted by date, "
                                  "one in force at a time")
        ids = [t.term_id for t in terms]
        if len(set(ids)) != len(ids):
            dup = next(x for x in ids if ids.count(x) > 1)
            raise DomainError("terms", f"term_id {dup!r} appears twice in contract {self.contract_id}")
        object.__setattr__(self, "terms", terms)

    @property
    def starts(self) -> datetime:
        return self.terms[0].valid_from

    def covers(self, mtu: datetime) -> bool:
        """Whether a term of this contract is in force at `mtu`."""
        return self.starts <= mtu and (self.ends is None or mtu < self.ends)

    def terms_at(self, mtu: datetime) -> ContractTerm:
        """The term in force at `mtu`: the last one that started at or before it."""
        return self.term_span(mtu)[0]

    def term_span(self, mtu: datetime) -> tuple[ContractTerm, datetime | None]:
        """The term in force at `mtu` and when it stops being in force (None: open-ended)."""
        require_aware(mtu, "mtu")
        if not self.covers(mtu):
            when = (f"its first term starts {self.starts.isoformat()}" if mtu < self.starts
                    else f"it ended {self.ends.isoformat()}")  # type: ignore[union-attr]
            raise DomainError("mtu", f"contract {self.contract_id} has no terms in force at {mtu.isoformat()}: {when}")
        lo, hi = 0, len(self.terms)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.terms[mid].valid_from <= mtu:
                lo = mid
            else:
                hi = mid
        until = self.terms[lo + 1].valid_from if lo + 1 < len(self.terms) else self.ends
        return self.terms[lo], until

    def term_periods(self, start: datetime, end: datetime) -> list[tuple[ContractTerm, datetime, datetime]]:
        """Each term with the part of [start, end) it is in force in (empty parts left out)."""
        out = []
        for i, t in enumerate(self.terms):
            a = max(t.valid_from, start)
            b = self.terms[i + 1].valid_from if i + 1 < len(self.terms) else end
            b = min(b, end, self.ends) if self.ends is not None else min(b, end)
            if a < b:
                out.append((t, a, b))
        return out


_TERM_FIELDS = {"term_id", "valid_from", "charging_refund", "annual_cap", *_RATES}
_CONTRACT_FIELDS = {"contract_id", "owner_id", "vehicle_ids", "currency", "language", "terms", "ends"}


def _known(data: object, allowed: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise DomainError(where or "contract", f"must be a mapping; got {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise DomainError(f"{where}.{unknown[0]}" if where else unknown[0], "unknown field")
    return data


def contract_from_mapping(data: Mapping[str, Any]) -> Contract:
    """A contract from plain data (JSON, a stored row): rates as decimal strings, dates RFC 3339.

    Unknown fields are refused rather than ignored: a misspelt rate would silently pay nothing.
    """
    _known(data, _CONTRACT_FIELDS, "")
    raw_terms = data.get("terms")
    if not isinstance(raw_terms, Sequence) or isinstance(raw_terms, str):
        raise DomainError("terms", "must be a list of terms")
    terms = []
    for i, raw in enumerate(raw_terms):
        t = dict(_known(raw, _TERM_FIELDS, f"terms[{i}]"))
        refund = t.get("charging_refund")
        if refund is not None:
            r = _known(refund, {"scope", "per_kwh"}, f"terms[{i}].charging_refund")
            try:
                t["charging_refund"] = ChargingRefund(r.get("scope", RefundScope.PLATFORM_CAUSED), r.get("per_kwh"))
            except DomainError as exc:
                raise DomainError(f"terms[{i}].{exc.field}", exc.reason) from None
        if "term_id" not in t or "valid_from" not in t:
            raise DomainError(f"terms[{i}]", "needs term_id and valid_from")
        try:
            terms.append(ContractTerm(**t))
        except DomainError as exc:
            raise DomainError(f"terms[{i}].{exc.field}", exc.reason) from None
    ends = data.get("ends")
    return Contract(
        contract_id=data.get("contract_id"),  # type: ignore[arg-type]
        owner_id=data.get("owner_id"),  # type: ignore[arg-type]
        vehicle_ids=tuple(data.get("vehicle_ids") or ()),
        currency=data.get("currency"),  # type: ignore[arg-type]
        terms=tuple(terms),
        language=data.get("language", Language.EN),
        ends=_mtu_start(ends, "ends") if ends is not None else None,
    )
