"""Parse the vehicle model table (data/vehicles/models.csv) from text: no file I/O here.

A typo in a reference table must fail loudly with the line and column, not become a car with
0 kWh that the bidder then plans around.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from enum import StrEnum

from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import CurrentType, VehicleSpec


class Bidirectional(StrEnum):
    NONE = "none"
    V2L = "v2l"  # a socket on the car: cannot feed the grid
    V2G_DC_CHADEMO = "v2g_dc_chademo"
    V2G_DC_CCS = "v2g_dc_ccs"
    V2G_AC = "v2g_ac"

    @property
    def grid_current(self) -> CurrentType | None:
        """The current the car can feed the grid through, None when it cannot."""
        if self.value.startswith("v2g_dc"):
            return CurrentType.DC
        if self is Bidirectional.V2G_AC:
            return CurrentType.AC
        return None


@dataclass(frozen=True, slots=True)
class VehicleModel:
    """One row of the model table: the spec plus where its numbers come from."""

    spec: VehicleSpec
    bidirectional: Bidirectional
    source: str
    note: str


COLUMNS = ("make", "model", "usable_kwh", "chemistry", "max_ac_charge_kw", "bidirectional",
           "bidirectional_kw", "oem_discharge_cap_kwh_per_year", "usable_soc_min_pct",
           "usable_soc_max_pct", "kwh_per_km", "source", "note")


def _float(row: dict[str, str], name: str, line: int, optional: bool = False) -> float | None:
    text = (row.get(name) or "").strip()
    if not text:
        if optional:
            return None
        raise DomainError(f"line {line}: {name}", "is required")
    try:
        return float(text)
    except ValueError:
        raise DomainError(f"line {line}: {name}", f"must be a number; got {text!r}") from None


def parse_vehicle_models(text: str) -> tuple[VehicleModel, ...]:
    """Every row of a models.csv text, validated; DomainError names the line and column."""
    reader = csv.DictReader(io.StringIO(text))
    header = tuple(reader.fieldnames or ())
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DomainError("header", f"missing column(s) {', '.join(missing)}")
    models: list[VehicleModel] = []
    for line, row in enumerate(reader, start=2):
        if None in row:
            raise DomainError(f"line {line}", "has more fields than the header (unquoted comma?)")
        try:
            bidi = Bidirectional((row["bidirectional"] or "").strip())
        except ValueError:
            allowed = ", ".join(b.value for b in Bidirectional)
            raise DomainError(f"line {line}: bidirectional",
                              f"must be one of {allowed}; got {row['bidirectional']!r}") from None
        source = (row["source"] or "").strip()
        if not source:
            raise DomainError(f"line {line}: source", "every row must name its public source")
        v2g = bidi.grid_current is not None
        try:
            spec = VehicleSpec(
                make=row["make"].strip(), model=row["model"].strip(),
                battery_kwh=_float(row, "usable_kwh", line), chemistry=row["chemistry"].strip(),
                max_ac_charge_kw=_float(row, "max_ac_charge_kw", line),
                v2g_capable=v2g,
                max_discharge_kw=(_float(row, "bidirectional_kw", line) or 0.0) if v2g else 0.0,
                v2g_current=bidi.grid_current,
                usable_soc_min_pct=_float(row, "usable_soc_min_pct", line, optional=True) or 0.0,
                usable_soc_max_pct=_float(row, "usable_soc_max_pct", line, optional=True) or 100.0,
                oem_discharge_cap_kwh_per_year=_float(row, "oem_discharge_cap_kwh_per_year", line,
                                                      optional=True),
                kwh_per_km=_float(row, "kwh_per_km", line),
            )
        except DomainError as e:
            if e.field.startswith("line "):
                raise
            raise DomainError(f"line {line}: {e.field}", e.reason) from None
        models.append(VehicleModel(spec, bidi, source, (row["note"] or "").strip()))
    if not models:
        raise DomainError("rows", "the table has no vehicle models")
    return tuple(models)
