"""A month's settlement inputs, read from the registry, telemetry, obligations and deliveries.

Every reader returns the pure library's records (flexfleet.settlement) in a stated order, so the
same rows always give the same records and the same `digest`: that is what makes a rerun find
"nothing changed". Rules that are choices, not facts of the data:

- a 15-minute MTU is plugged in when at least half its readings are; controllable when plugged
  in and the car reported a SoC in it (the platform never dispatches on a missing SoC);
- energy is the mean measured power of the MTU's readings x 0.25 h (charged: power > 0,
  discharged: power < 0), rounded to the Wh;
- platform-caused charging is what the VENs measured above the declared schedule
  (measured_power.power_kw - baseline_kw), at most the MTU's charged energy;
- a vehicle is settled in the zone of its home charger's site, or, without one, of the sites
  of its charging sessions;
- promises: a declared departure with a target SoC holds the platform to the target as far as
  plain charging could have reached it: to min(target, reachable), where reachable is the
  stay's first SoC plus charging at the stay's max_power_kw (the pair's rating when the stay
  drew none) at 90 % efficiency until the declared departure (or the plug-out, if the car left
  earlier); it is broken when the SoC then was more than 1 point below that. So the platform
  breaks it only where the car could have made the target and did not. Without a target it is
  broken when the car left more than 1 SoC point below the highest SoC it had reached in the
  stay. The minimum SoC when the car, once at or above it, went more than 0.5 points under it
  while plugged in (a car that arrives low breaks nothing);
- an obligation without a verified delivery is not settled: it awaits verification (`Awaiting`),
  since the market pays only what was proven, and a later version settles it once verified; with
  one, the shortfall is withheld at the obligation's own price (what the TSO keeps: DESIGN.md);
- wear: only for cars that discharged while plugged in (only the platform discharges a plugged-in
  car), from the month's SoC per MTU (mean SoC, gaps carried forward) and its reference trace,
  the running maximum since plug-in in each stay with a discharge (`flexfleet.settlement.wear_pay`),
  at the month's mean battery temperature; the pack value is BNEF's 2024 EV pack price (97 USD/kWh)
  converted at the ECB USD rate of its publication day (`PACK_VALUE_EUR`).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping
from itertools import groupby
from operator import itemgetter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg

from flexfleet.battery.pack_value import BNEF_2024_EV
from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import Currency, Language, Owner
from flexfleet.domain.time import MTU
from flexfleet.markets.exchange_rates import usd_per_eur
from flexfleet.settlement import (CapUsage, Contract, Month, ObligationMtu, SocTrace, VehicleMtu,
                                  contract_from_mapping, obligation_mtu)
from flexfleet.settlement.statement import Promise, PromiseKind
from flexfleet.settlement.wear_pay import reference_soc
from services.bidder.store import list_obligations

# The pack value's USD at the ECB euro reference rate of its publication day (the packaged rates'
# latest on or before it), so the euro value names a dated, sourced rate.
USD_PER_EUR_AT_PACK_DATE = usd_per_eur(BNEF_2024_EV.as_of)
PACK_VALUE_EUR = USD_PER_EUR_AT_PACK_DATE.to_eur(BNEF_2024_EV.per_kwh).quantize(Decimal("0.01"))
_WH = Decimal("0.001")


@dataclass(frozen=True)
class MonthInputs:
    """Everything `settle_month` and the statements need for one month and zone."""

    month: Month
    contracts: tuple[Contract, ...]
    obligations: tuple[ObligationMtu, ...]
    vehicle_mtus: tuple[VehicleMtu, ...]
    soc_traces: tuple[SocTrace, ...]
    cap_usage: tuple[CapUsage, ...]
    owners: tuple[Owner, ...]
    promises: tuple[Promise, ...]
    awaiting: tuple[Awaiting, ...] = ()

    def digest(self) -> str:
        """sha256 over every record, in order: equal inputs, equal digest."""
        h = hashlib.sha256()
        for group in (self.contracts, self.obligations, self.vehicle_mtus, self.soc_traces, self.cap_usage,
                      self.owners, self.promises, self.awaiting):
            h.update(b"\x1e")
            for record in group:
                h.update(repr(record).encode())
                h.update(b"\x1f")
        return h.hexdigest()


# ------------------------------------------------------------------------------------- contracts


def contract_from_row(row: Mapping[str, Any]) -> Contract:
    """The one path from a registry `contracts` row (+ its owner's currency and language) to a
    settlement Contract. `terms` holds {"terms": [dated terms]}; the row says whose and which car.
    A field error names the contract and the field, e.g. `contracts[k1].terms[0].availabilty_per_hour`."""
    terms = row["terms"]
    cid = row["contract_id"]
    if not isinstance(terms, Mapping) or set(terms) != {"terms"}:
        extra = sorted(set(terms) - {"terms"}) if isinstance(terms, Mapping) else []
        raise DomainError(f"contracts[{cid}].terms" + (f".{extra[0]}" if extra else ""),
                          'must be {"terms": [dated settlement terms]} (flexfleet.settlement.contracts)')
    data = {"contract_id": cid, "owner_id": row["owner_id"], "vehicle_ids": [row["vehicle_id"]],
            "currency": row["currency"], "language": row["language"], "terms": terms["terms"]}
    if row.get("valid_to") is not None:
        data["ends"] = row["valid_to"].astimezone(UTC)   # the same record whatever the session's TimeZone
    try:
        return contract_from_mapping(data)
    except DomainError as exc:
        raise DomainError(f"contracts[{cid}].{exc.field}", exc.reason) from None


# A vehicle belongs to the zone of its home charger's site; one without a home charger to the
# zone of the sites it charged at (its charging sessions), so no car is settled in two zones.
_ZONE_VEHICLES = """
SELECT v.vehicle_id FROM vehicles v JOIN chargers c ON c.charger_id = v.home_charger_id
JOIN sites s USING (site_id) WHERE s.bidding_zone = %(zone)s
UNION
SELECT DISTINCT v.vehicle_id FROM vehicles v JOIN charging_sessions cs USING (vehicle_id)
JOIN chargers c ON c.charger_id = cs.charger_id JOIN sites s USING (site_id)
WHERE v.home_charger_id IS NULL AND s.bidding_zone = %(zone)s
"""


def read_contracts(conn: psycopg.Connection, month: Month, zone: str) -> tuple[Contract, ...]:
    rows = conn.execute(
        "SELECT k.contract_id, k.owner_id, k.vehicle_id, k.valid_to, k.terms, o.currency, o.language "
        f"FROM contracts k JOIN owners o USING (owner_id) WHERE k.vehicle_id IN ({_ZONE_VEHICLES}) "
        "AND k.valid_from < %(end)s AND (k.valid_to IS NULL OR k.valid_to > %(start)s) ORDER BY k.contract_id",
        {"zone": zone, "start": month.start, "end": month.end}).fetchall()
    cols = ("contract_id", "owner_id", "vehicle_id", "valid_to", "terms", "currency", "language")
    return tuple(contract_from_row(dict(zip(cols, r))) for r in rows)


def read_owners(conn: psycopg.Connection, owner_ids: set[str]) -> tuple[Owner, ...]:
    rows = conn.execute("SELECT owner_id, display_name, language, currency FROM owners "
                        "WHERE owner_id = ANY(%s) ORDER BY owner_id", (sorted(owner_ids),)).fetchall()
    return tuple(Owner(o, name, Language(lang), Currency(cur)) for o, name, lang, cur in rows)


# ------------------------------------------------------------------------------------- vehicles

# Telemetry of contracted vehicles while their contract is in force, per 15-minute MTU.
_VEHICLE_MTUS = """
WITH k AS (
    SELECT vehicle_id, valid_from, valid_to FROM contracts
    WHERE valid_from < %(end)s AND (valid_to IS NULL OR valid_to > %(start)s) AND vehicle_id = ANY(%(vehicles)s)
), t AS (
    SELECT t.vehicle_id, date_bin(interval '15 minutes', t.ts, timestamptz '2000-01-01 00:00:00+00') AS mtu,
           avg(t.plugged_in::int) >= 0.5 AS plugged, bool_or(t.soc_pct IS NOT NULL) AS has_soc,
           round((avg(greatest(t.power_kw, 0)) * 0.25)::numeric, 3) AS charged,
           round((avg(greatest(-t.power_kw, 0)) * 0.25)::numeric, 3) AS discharged
    FROM telemetry t JOIN k ON k.vehicle_id = t.vehicle_id AND t.ts >= k.valid_from
                           AND (k.valid_to IS NULL OR t.ts < k.valid_to)
    WHERE t.ts >= %(start)s AND t.ts < %(end)s
    GROUP BY 1, 2
), p AS (
    SELECT vehicle_id, date_bin(interval '15 minutes', ts, timestamptz '2000-01-01 00:00:00+00') AS mtu,
           round((avg(greatest(power_kw - baseline_kw, 0)) * 0.25)::numeric, 3) AS platform
    FROM measured_power WHERE ts >= %(start)s AND ts < %(end)s AND baseline_kw IS NOT NULL
    GROUP BY 1, 2
)
SELECT t.vehicle_id, t.mtu, t.plugged, t.has_soc, t.charged, t.discharged,
       least(coalesce(p.platform, 0), t.charged) AS platform
FROM t LEFT JOIN p USING (vehicle_id, mtu)
WHERE t.plugged OR t.charged > 0 OR t.discharged > 0
ORDER BY t.vehicle_id, t.mtu
"""


def read_vehicle_mtus(conn: psycopg.Connection, month: Month, vehicle_ids: set[str],
                      broken: Mapping[tuple[str, datetime], tuple[int, int]]) -> tuple[VehicleMtu, ...]:
    """Only MTUs where something happened; `broken` adds (departures, min SoC) broken per MTU."""
    out = []
    seen = set()
    for v, mtu, plugged, has_soc, charged, discharged, platform in conn.execute(
            _VEHICLE_MTUS, {"start": month.start, "end": month.end, "vehicles": sorted(vehicle_ids)}):
        mtu = mtu.astimezone(UTC)
        dep, low = broken.get((v, mtu), (0, 0))
        seen.add((v, mtu))
        out.append(VehicleMtu(v, mtu, plugged_in=bool(plugged), controllable=bool(plugged and has_soc),
                              discharged_kwh=discharged, charged_kwh=charged, platform_charged_kwh=platform,
                              broken_departures=dep, broken_min_soc=low))
    for (v, mtu), (dep, low) in sorted(broken.items()):
        if (v, mtu) not in seen and (dep or low):
            out.append(VehicleMtu(v, mtu, plugged_in=False, broken_departures=dep, broken_min_soc=low))
    return tuple(sorted(out, key=lambda r: (r.vehicle_id, r.mtu)))


def _mtu_of(ts: datetime) -> datetime:
    ts = ts.astimezone(UTC)
    return ts.replace(minute=ts.minute - ts.minute % 15, second=0, microsecond=0)


# Per stay ending in the month, in one pass over telemetry's (vehicle_id, ts) key: the SoC at the
# declared departure, the highest before it and the first of the stay (when, and what); the power
# plain charging would have drawn and the pack it fills; the lowest SoC after first reaching the
# minimum.
_PROMISES = """
SELECT s.vehicle_id, s.plug_out_at, s.departure_declared_at, s.min_soc, d.reached, d.peak, m.low,
       s.target_soc, d.arrival, d.arrival_at,
       coalesce(nullif(s.max_power_kw, 0), least(v.max_charge_kw, c.max_charge_kw)) AS charge_kw, v.battery_kwh
FROM charging_sessions s
JOIN vehicles v ON v.vehicle_id = s.vehicle_id
LEFT JOIN chargers c ON c.charger_id = s.charger_id
LEFT JOIN LATERAL (
    SELECT (array_agg(t.soc_pct ORDER BY t.ts DESC))[1] AS reached, max(t.soc_pct) AS peak,
           (array_agg(t.soc_pct ORDER BY t.ts))[1] AS arrival, min(t.ts) AS arrival_at
    FROM telemetry t WHERE t.vehicle_id = s.vehicle_id AND t.plugged_in AND t.soc_pct IS NOT NULL
      AND t.ts >= s.plug_in_at AND t.ts <= least(s.departure_declared_at, s.plug_out_at)
) d ON s.departure_declared_at IS NOT NULL
LEFT JOIN LATERAL (
    SELECT min(t.soc_pct) AS low FROM telemetry t
    WHERE t.vehicle_id = s.vehicle_id AND t.plugged_in AND t.soc_pct IS NOT NULL AND t.ts <= s.plug_out_at
      AND t.ts >= (SELECT min(u.ts) FROM telemetry u WHERE u.vehicle_id = s.vehicle_id AND u.plugged_in
                   AND u.soc_pct >= s.min_soc AND u.ts >= s.plug_in_at AND u.ts <= s.plug_out_at)
) m ON s.min_soc IS NOT NULL
WHERE s.plug_out_at > %(start)s AND s.plug_out_at <= %(end)s AND s.vehicle_id = ANY(%(vehicles)s)
  AND (s.departure_declared_at IS NOT NULL OR s.min_soc IS NOT NULL)
ORDER BY s.vehicle_id, s.plug_in_at
"""


def read_promises(conn: psycopg.Connection, month: Month,
                  vehicle_ids: set[str]) -> tuple[Promise, ...]:
    """Departure and minimum-SoC promises of the stays that ended in the month (see module doc).

    A departure with a target is promised min(target, reachable), rounded to 0.1 point as the
    statement shows it: the target the car was held to."""
    efficiency = 0.9                # grid to battery, for what plain charging could have reached
    out: list[Promise] = []
    for (v, plug_out, departure, min_soc, reached, peak, low, target, arrival, arrival_at, charge_kw,
         battery_kwh) in conn.execute(
            _PROMISES, {"start": month.start, "end": month.end, "vehicles": sorted(vehicle_ids)}):
        if departure is not None and reached is not None and month.contains(departure):
            if target is None:
                promised = float(peak)
            else:
                hours = max((min(departure, plug_out) - arrival_at) / timedelta(hours=1), 0.0)
                reachable = min(float(arrival) + float(charge_kw) * hours * efficiency / float(battery_kwh) * 100,
                                100.0)
                promised = round(min(float(target), reachable), 1)
            out.append(Promise(v, PromiseKind.DEPARTURE, departure.astimezone(UTC), promised, float(reached),
                               kept=reached >= promised - 1.0))
        if min_soc is not None and low is not None:
            due = min(plug_out, month.end - MTU).astimezone(UTC)
            out.append(Promise(v, PromiseKind.MIN_SOC, due, float(min_soc), float(low), kept=low >= min_soc - 0.5))
    return tuple(out)


def broken_by_mtu(promises: tuple[Promise, ...], month: Month) -> dict[tuple[str, datetime], tuple[int, int]]:
    """(departures, min SoC) broken per vehicle and MTU: the MTU a promise fell due in."""
    out: dict[tuple[str, datetime], list[int]] = defaultdict(lambda: [0, 0])
    for p in promises:
        if not p.kept and month.contains(p.due):
            out[(p.vehicle_id, _mtu_of(p.due))][0 if p.kind is PromiseKind.DEPARTURE else 1] += 1
    return {k: (a, b) for k, (a, b) in out.items()}


# Per contracted vehicle that discharged while plugged in during the month (only the platform
# discharges a plugged-in car; without a discharge its wear is its own): each MTU's mean SoC and
# battery temperature, whether it was plugged in and whether it discharged.
_SOC_TRACES = """
WITH m AS (
    SELECT t.vehicle_id, date_bin(interval '15 minutes', t.ts, timestamptz '2000-01-01 00:00:00+00') AS mtu,
           avg(t.soc_pct) FILTER (WHERE t.soc_pct IS NOT NULL) AS soc, avg(t.battery_temp_c) AS temp,
           avg(t.plugged_in::int) >= 0.5 AS plugged, bool_or(t.plugged_in AND t.power_kw < 0) AS discharging
    FROM telemetry t JOIN contracts k ON k.vehicle_id = t.vehicle_id AND t.ts >= k.valid_from
                                     AND (k.valid_to IS NULL OR t.ts < k.valid_to)
    WHERE t.ts >= %(start)s AND t.ts < %(end)s AND t.vehicle_id = ANY(%(vehicles)s)
    GROUP BY 1, 2
)
SELECT m.vehicle_id, m.mtu, m.soc, m.temp, m.plugged, m.discharging, v.chemistry, v.battery_kwh
FROM m JOIN vehicles v USING (vehicle_id)
WHERE m.soc IS NOT NULL AND m.vehicle_id IN (SELECT vehicle_id FROM m WHERE discharging)
ORDER BY 1, 2
"""


def read_soc_traces(conn: psycopg.Connection, month: Month, vehicle_ids: set[str]) -> tuple[SocTrace, ...]:
    """A trace per vehicle the platform discharged: mean SoC per MTU from its first to its last MTU
    with a SoC (gaps carried forward), with its reference (`flexfleet.settlement.wear_pay`)."""
    rows = conn.execute(_SOC_TRACES, {"start": month.start, "end": month.end,
                                      "vehicles": sorted(vehicle_ids)}).fetchall()
    out = []
    for v, group in groupby(rows, key=itemgetter(0)):
        samples = list(group)
        if len(samples) < 2:
            continue
        start = samples[0][1].astimezone(UTC)
        k = np.array([(r[1] - samples[0][1]) // MTU for r in samples])
        n = int(k[-1]) + 1
        at = np.searchsorted(k, np.arange(n), side="right") - 1     # the sample each MTU carries forward
        soc = np.clip(np.array([float(r[2]) for r in samples]) / 100.0, 0.0, 1.0).round(6)[at]
        temp = np.array([np.nan if r[3] is None else float(r[3]) for r in samples])
        temp = 20.0 if np.isnan(temp).all() else float(np.nanmean(temp).round(3))
        plugged = np.zeros(n, dtype=bool)
        plugged[k] = [bool(r[4]) for r in samples]
        discharging = np.zeros(n, dtype=bool)
        discharging[k] = [bool(r[5]) for r in samples]
        _, _, _, _, _, _, chemistry, battery_kwh = samples[0]
        out.append(SocTrace(v, start, 900.0, soc, chemistry, Decimal(repr(float(battery_kwh))), PACK_VALUE_EUR,
                            Currency.EUR, temp, reference_soc(soc, plugged, discharging)))
    return tuple(out)


# ------------------------------------------------------------------------------------- obligations


def settlement_obligation_id(obligation_id: str) -> str:
    """The bidder's obligation ids are "<plan uuid>/<n>", and settlement ids may not hold "/"
    (they join line and entry ids): "/" becomes ":", which a uuid never holds, so it maps back."""
    if ":" in obligation_id:
        raise DomainError("obligation_id", f"must not contain ':' (it stands for '/'); got {obligation_id!r}")
    return obligation_id.replace("/", ":")


def stored_obligation_id(obligation_id: str | None) -> str | None:
    """The obligations table's id of a settlement obligation id."""
    return None if obligation_id is None else obligation_id.replace(":", "/")


@dataclass(frozen=True)
class _Delivery:
    obligation_id: str
    product_id: str
    mtu_start: datetime
    mtu_end: datetime
    kind: str
    shortfall_mwh: float
    capacity_share: float | None
    response_share: float | None


@dataclass(frozen=True)
class Awaiting:
    """An obligation left out of a version: no delivery verified for it yet."""

    obligation_id: str          # as the obligations table has it
    product_id: str
    mtu_start: datetime
    mtu_end: datetime
    volume_mw: Decimal
    price_eur_per_mw_h: Decimal


def read_obligations(conn: psycopg.Connection, month: Month,
                     zone: str) -> tuple[tuple[ObligationMtu, ...], tuple[Awaiting, ...]]:
    """Obligation MTUs of the zone starting in the month, one per verified delivery, and the
    obligations still awaiting verification (settled by a later version, once verified)."""
    obligations = [o for o in list_obligations(conn, month.start, month.end, zone) if o.mtu_start >= month.start]
    deliveries: dict[str, list[_Delivery]] = defaultdict(list)
    for r in conn.execute(
            "SELECT obligation_id, product_id, mtu_start, mtu_end, kind, shortfall_mwh, capacity_share, "
            "response_share FROM deliveries WHERE obligation_id = ANY(%s) ORDER BY obligation_id, mtu_start",
            ([o.obligation_id for o in obligations],)):
        deliveries[r[0]].append(_Delivery(settlement_obligation_id(r[0]), *r[1:]))
    out, awaiting = [], []
    for o in obligations:
        if o.obligation_id not in deliveries:
            awaiting.append(Awaiting(o.obligation_id, o.product_id, o.mtu_start.astimezone(UTC),
                                     o.mtu_end.astimezone(UTC), o.volume_mw, o.price_eur_per_mw_h))
            continue
        ob = replace(o, obligation_id=settlement_obligation_id(o.obligation_id))
        for d in deliveries[o.obligation_id]:
            out.append(obligation_mtu(ob, o.price_eur_per_mw_h, Currency.EUR, d))
    return tuple(out), tuple(awaiting)


def read_cap_usage(conn: psycopg.Connection, month: Month, zone: str) -> tuple[CapUsage, ...]:
    """What the caps had counted by the end of the previous month of the same year (its last version)."""
    if month.first_day.month == 1:
        return ()
    prev = (month.first_day - timedelta(days=1)).replace(day=1)
    rows = conn.execute(
        "SELECT contract_id, year, counted FROM settlement_cap_usage c WHERE zone = %s AND month = %s "
        "AND version = (SELECT max(version) FROM settlement_runs r WHERE r.zone = c.zone AND r.month = c.month "
        "AND r.status = 'posted') ORDER BY contract_id", (zone, prev)).fetchall()
    return tuple(CapUsage(c, y, int(n)) for c, y, n in rows)


def read_month_inputs(conn: psycopg.Connection, month: Month, zone: str) -> MonthInputs:
    contracts = read_contracts(conn, month, zone)
    vehicle_ids = {v for c in contracts for v in c.vehicle_ids}
    promises = read_promises(conn, month, vehicle_ids)
    vehicle_mtus = read_vehicle_mtus(conn, month, vehicle_ids, broken_by_mtu(promises, month))
    obligations, awaiting = read_obligations(conn, month, zone)
    return MonthInputs(
        month=month, contracts=contracts, obligations=obligations, awaiting=awaiting,
        vehicle_mtus=vehicle_mtus, soc_traces=read_soc_traces(conn, month, vehicle_ids),
        cap_usage=read_cap_usage(conn, month, zone), owners=read_owners(conn, {c.owner_id for c in contracts}),
        promises=promises)
