"""Write a fleet into the registry tables (owners, sites, chargers, vehicles, contracts).

Upserts, so registering the same simulated fleet twice is harmless and a changed spec updates.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import psycopg

from flexfleet.domain import Charger, Owner, Site, Vehicle
from services.simulator.fleet import ContractRow, Fleet

_SQL = {
    "owners": ("INSERT INTO owners (owner_id, display_name, language, currency) VALUES (%s, %s, %s, %s) "
               "ON CONFLICT (owner_id) DO UPDATE SET display_name = excluded.display_name, "
               "language = excluded.language, currency = excluded.currency"),
    "sites": ("INSERT INTO sites (site_id, kind, grid_node, bidding_zone, timezone, earthing, max_import_kw, "
              "max_export_kw) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (site_id) DO UPDATE SET "
              "kind = excluded.kind, grid_node = excluded.grid_node, bidding_zone = excluded.bidding_zone, "
              "timezone = excluded.timezone, earthing = excluded.earthing, "
              "max_import_kw = excluded.max_import_kw, max_export_kw = excluded.max_export_kw"),
    "chargers": ("INSERT INTO chargers (charger_id, site_id, current_type, bidirectional, max_charge_kw, "
                 "max_discharge_kw) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (charger_id) DO UPDATE SET "
                 "site_id = excluded.site_id, current_type = excluded.current_type, "
                 "bidirectional = excluded.bidirectional, max_charge_kw = excluded.max_charge_kw, "
                 "max_discharge_kw = excluded.max_discharge_kw"),
    "vehicles": ("INSERT INTO vehicles (vehicle_id, owner_id, make, model, battery_kwh, usable_soc_min_pct, "
                 "usable_soc_max_pct, chemistry, max_charge_kw, max_discharge_kw, v2g_capable, "
                 "oem_discharge_cap_kwh_per_year, home_charger_id) "
                 "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (vehicle_id) DO UPDATE SET "
                 "owner_id = excluded.owner_id, make = excluded.make, model = excluded.model, "
                 "battery_kwh = excluded.battery_kwh, usable_soc_min_pct = excluded.usable_soc_min_pct, "
                 "usable_soc_max_pct = excluded.usable_soc_max_pct, chemistry = excluded.chemistry, "
                 "max_charge_kw = excluded.max_charge_kw, max_discharge_kw = excluded.max_discharge_kw, "
                 "v2g_capable = excluded.v2g_capable, "
                 "oem_discharge_cap_kwh_per_year = excluded.oem_discharge_cap_kwh_per_year, "
                 "home_charger_id = excluded.home_charger_id"),
    "contracts": ("INSERT INTO contracts (contract_id, owner_id, vehicle_id, kind, valid_from, valid_to, terms) "
                  "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (contract_id) DO UPDATE SET "
                  "kind = excluded.kind, valid_from = excluded.valid_from, valid_to = excluded.valid_to, "
                  "terms = excluded.terms"),
}


def _owner(o: Owner) -> tuple:
    return (o.owner_id, o.name, o.language.value, o.currency.value)


def _site(s: Site) -> tuple:
    return (s.site_id, s.kind.value, s.grid_node, s.bidding_zone.value, s.timezone, s.earthing.value,
            s.max_import_kw, s.max_export_kw)


def _charger(c: Charger) -> tuple:
    return (c.charger_id, c.site_id, c.current.value, c.bidirectional, c.max_charge_kw, c.max_discharge_kw)


def _vehicle(v: Vehicle) -> tuple:
    s = v.spec
    return (v.vehicle_id, v.owner_id, s.make, s.model, s.battery_kwh, s.usable_soc_min_pct,
            s.usable_soc_max_pct, s.chemistry.value, s.max_ac_charge_kw, s.max_discharge_kw,
            s.v2g_capable, s.oem_discharge_cap_kwh_per_year, v.home_charger_id)


def _contract(k: ContractRow) -> tuple:
    return (k.contract_id, k.owner_id, k.vehicle_id, k.kind, k.valid_from, k.valid_to,
            orjson.dumps(dict(k.terms)).decode())


def write_registry(conn: psycopg.Connection, owners: Sequence[Owner] = (), sites: Sequence[Site] = (),
                   chargers: Sequence[Charger] = (), vehicles: Sequence[Vehicle] = (),
                   contracts: Sequence[ContractRow] = ()) -> None:
    """Upsert registry rows in dependency order, in one transaction."""
    with conn.transaction(), conn.cursor() as cur:
        for table, rows, row in (("owners", owners, _owner), ("sites", sites, _site),
                                 ("chargers", chargers, _charger), ("vehicles", vehicles, _vehicle),
                                 ("contracts", contracts, _contract)):
            if rows:
                cur.executemany(_SQL[table], [row(r) for r in rows])


def write_fleet(conn: psycopg.Connection, fleet: Fleet) -> None:
    """Register a simulated fleet."""
    write_registry(conn, fleet.owners, fleet.sites, fleet.chargers, fleet.vehicles, fleet.contracts)
