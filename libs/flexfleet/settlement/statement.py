"""What an owner's monthly statement shows, as data. The settlement service builds a `Statement`
per owner from the month's `Settlement` and the records it was settled from
(`statement_of`); services/settlement/statements renders it (HTML and PDF). Pure: no I/O.

A statement is issued in versions: a month re-settled after late meter data issues version 2,
which shows what version 1 paid and the difference as an adjustment, never a silent rewrite."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import Currency, Owner
from flexfleet.domain.time import require_aware, to_local
from flexfleet.domain.zones import BiddingZone
from flexfleet.settlement.inputs import Month, VehicleMtu
from flexfleet.settlement.lines import OwnerLine
from flexfleet.settlement.money import currency
from flexfleet.settlement.wear_pay import WearAssessment

if TYPE_CHECKING:
    from flexfleet.settlement.settle import Settlement

QUARTER_HOUR = Decimal("0.25")


class PromiseKind(StrEnum):
    DEPARTURE = "departure"         # the departure SoC by the declared departure time
    MIN_SOC = "min_soc"             # never under the owner's minimum SoC while plugged in


@dataclass(frozen=True)
class Promise:
    """One promise the platform made for one stay, and whether it was kept. A broken one is
    credited by the contract's `credit_departure` / `credit_min_soc` line, if it has one."""

    vehicle_id: str
    kind: PromiseKind
    due: datetime                   # departure: the declared departure; min_soc: the stay's end
    promised_soc_pct: float         # the departure target, or the minimum
    reached_soc_pct: float          # at departure, or the lowest while plugged in
    kept: bool


@dataclass(frozen=True)
class StatementDay:
    """One local day of the owner's vehicles, summed: what the day charts show."""

    day: date
    available_hours: Decimal        # plugged in and controllable
    charged_kwh: Decimal
    discharged_kwh: Decimal


@dataclass(frozen=True)
class Statement:
    """One owner's month. `lines` are the settlement's owner lines (contract currency);
    `previous_totals` are what the last issued version paid, per currency (empty for the first
    version), so `adjustments` is the difference this version pays on top."""

    owner: Owner
    month: Month
    version: int
    lines: tuple[OwnerLine, ...]
    days: tuple[StatementDay, ...]
    wear: tuple[WearAssessment, ...]
    promises: tuple[Promise, ...]
    totals: dict[Currency, int]             # minor units per currency
    previous_totals: dict[Currency, int]

    @property
    def adjustments(self) -> dict[Currency, int]:
        if not self.previous_totals:
            return {}
        return {c: self.totals.get(c, 0) - self.previous_totals.get(c, 0)
                for c in sorted(set(self.totals) | set(self.previous_totals))}


def statement_of(settlement: Settlement, owner: Owner, vehicle_mtus: Iterable[VehicleMtu],
                 promises: Iterable[Promise], zone: BiddingZone | str | tzinfo | None = None, version: int = 1,
                 previous_totals: Mapping[Currency | str, int] | None = None) -> Statement:
    """The owner's statement of a settled month.

    `vehicle_mtus` and `promises` are the owner's records of the month (the ones the month was
    settled from); days are local days of `zone` (default: the month's own zone), every day of the
    month listed, so a chart shows the days the car was away as empty rather than leaving them out.
    A record of a vehicle that only other owners' lines name is refused: a statement shows only its
    owner's data (the caller selects the records; this catches a wrong selection).
    """
    if not isinstance(owner, Owner):
        raise DomainError("owner", f"must be an Owner; got {type(owner).__name__}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DomainError("version", f"must be an int >= 1; got {version!r}")
    month = settlement.month
    lines = settlement.owner_lines(owner.owner_id)
    # A car that changed hands mid-month is in both owners' lines: only a car that is in someone
    # else's lines and never in this owner's is certainly not theirs.
    others = ({x.vehicle_id for x in settlement.lines if x.owner_id != owner.owner_id and x.vehicle_id}
              - {x.vehicle_id for x in lines})
    records = _owned(list(vehicle_mtus), others, month, "vehicle_mtus")
    kept = tuple(sorted(_owned(list(promises), others, month, "promises", Promise),
                        key=lambda p: (p.due, p.vehicle_id, p.kind.value)))
    vehicles = {x.vehicle_id for x in lines if x.vehicle_id} | {r.vehicle_id for r in records}
    wear = tuple(w for w in settlement.wear if w.vehicle_id in vehicles)
    totals: dict[Currency, int] = defaultdict(int)
    for x in lines:
        totals[x.currency] += x.amount
    previous = {currency(c, "previous_totals"): _minor(v, "previous_totals")
                for c, v in (previous_totals or {}).items()}
    if previous and version == 1:
        raise DomainError("previous_totals", "version 1 has no previous version to adjust")
    return Statement(owner, month, version, lines, _days(month, records, zone if zone is not None else month.zone),
                     wear, kept, dict(sorted(totals.items())), dict(sorted(previous.items())))


def _minor(v: object, field: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise DomainError(field, f"must be whole minor units (int); got {v!r}")
    return v


def _owned(records: list, others: set[str], month: Month, field: str, kind: type = VehicleMtu) -> list:
    for i, r in enumerate(records):
        if not isinstance(r, kind):
            raise DomainError(f"{field}[{i}]", f"must be a {kind.__name__}; got {type(r).__name__}")
        if r.vehicle_id in others:
            raise DomainError(f"{field}[{i}].vehicle_id", f"vehicle {r.vehicle_id} belongs to another owner's lines")
        if kind is VehicleMtu and not month.contains(r.mtu):
            raise DomainError(f"{field}[{i}].mtu", f"{r.mtu.isoformat()} is outside {month.label}")
        if kind is Promise:
            records[i] = _promise(r, f"{field}[{i}]")
    return records


def _promise(p: Promise, where: str) -> Promise:
    try:
        kind = PromiseKind(p.kind)
    except ValueError:
        raise DomainError(f"{where}.kind", f"must be departure or min_soc; got {p.kind!r}") from None
    return replace(p, kind=kind, due=require_aware(p.due, f"{where}.due"))


def _days(month: Month, records: list[VehicleMtu], zone: BiddingZone | str | tzinfo) -> tuple[StatementDay, ...]:
    """Per local day: controllable quarter hours / 4, kWh charged and discharged."""
    hours: dict[date, Decimal] = defaultdict(Decimal)
    charged: dict[date, Decimal] = defaultdict(Decimal)
    discharged: dict[date, Decimal] = defaultdict(Decimal)
    for r in records:
        d = to_local(r.mtu, zone, "zone").date()
        if r.controllable:
            hours[d] += QUARTER_HOUR
        charged[d] += r.charged_kwh
        discharged[d] += r.discharged_kwh
    first = to_local(month.start, zone, "zone").date()
    last = to_local(month.end - timedelta(minutes=15), zone, "zone").date()
    out = []
    d = first
    while d <= last:
        out.append(StatementDay(d, _plain(hours.get(d, Decimal(0))), _plain(charged.get(d, Decimal(0))),
                                _plain(discharged.get(d, Decimal(0)))))
        d += timedelta(days=1)
    return tuple(out)


def _plain(d: Decimal) -> Decimal:
    """Without trailing zeros or an exponent (12, not 12.00 or 1.2E+1): the same Decimal on a rerun."""
    d = d.normalize()
    return d.quantize(Decimal(1)) if d.as_tuple().exponent > 0 else d  # type: ignore[operator]
