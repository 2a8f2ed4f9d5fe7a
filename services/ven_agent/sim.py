"""The simulated sites the agents control: chargers, cars plugging in and out, batteries, SoC
readings, and sites broken on purpose.

A `World` holds every site of one process as arrays (`flexfleet.dispatch.control.Resources`,
its `ChargerPlant`), so one step advances thousands of chargers at once. Sessions come from
the fleet simulator (`sites_from_fleet`: services/simulator's fleet, habits and sessions) or
are given directly (`SimSite`, `PlugSession`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import pandas as pd

from flexfleet.dispatch.control import (DEFAULT_LATENCY_S, DEFAULT_RAMP_KW_PER_S, ChargerPlant, Resources,
                                        ResourceSpec, SiteLimits)
from flexfleet.dispatch.signals import resource_name
from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import Charger, Site, Vehicle


class BrokenMode(StrEnum):
    """How a site fails, for the acceptance tests: its agent ignores events (it reports, but
    never responds), its chargers are slow (long latency, slow ramp: FCR-D too late), or its
    chargers drop offline (no control, nothing measured)."""

    IGNORES_EVENTS = "ignores-events"
    SLOW = "slow"
    OFFLINE = "offline"


@dataclass(frozen=True)
class Broken:
    mode: BrokenMode
    from_s: float = -math.inf        # OFFLINE: when the chargers drop off
    latency_s: float = 8.0           # SLOW: a charger that takes 8 s to react ...
    ramp_kw_per_s: float = 0.3       # ... and ramps 0.3 kW/s

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", BrokenMode(self.mode))

    @classmethod
    def parse(cls, text: str) -> Broken:
        """"slow", "ignores-events", "offline" or "offline@<epoch s>"."""
        mode, _, at = text.partition("@")
        try:
            return cls(BrokenMode(mode), float(at) if at else -math.inf)
        except ValueError:
            raise DomainError("broken", f"must be one of {', '.join(m.value for m in BrokenMode)} "
                                        f"(offline@<epoch s>); got {text!r}") from None


@dataclass(frozen=True)
class PlugSession:
    """One stay of a car on a charger, as the world plays it (times in epoch seconds)."""

    resource: str                   # "<charger_id>/<vehicle_id>"
    plug_in_s: float
    plug_out_s: float
    soc_pct: float                  # true SoC at plug-in
    departure_s: float = math.nan   # declared in the app; NaN: not declared
    min_soc_pct: float = math.nan   # declared minimum; NaN: none
    target_soc_pct: float = math.nan  # the owner's departure target, else the car's charge limit; NaN: full
    soc_out_pct: float = math.nan   # the fleet simulator's SoC at plug-out: to start a run mid-stay

    def __post_init__(self) -> None:
        if not self.plug_out_s > self.plug_in_s:
            raise DomainError("plug_out_s", f"must be after plug_in_s for {self.resource}")
        if not 0 <= self.soc_pct <= 100:
            raise DomainError("soc_pct", f"must be 0..100 for {self.resource}; got {self.soc_pct!r}")


@dataclass(frozen=True)
class SimSite:
    """One site: its registry record, its charger/vehicle pairs, who reports a SoC, its stays."""

    site: Site
    pairs: tuple[tuple[Charger, Vehicle], ...]
    sessions: tuple[PlugSession, ...] = ()
    soc_reported: Mapping[str, bool] = field(default_factory=dict)   # resource -> reports SoC (default yes)
    broken: Broken | None = None

    @property
    def site_id(self) -> str:
        return self.site.site_id

    @property
    def resources(self) -> tuple[str, ...]:
        return tuple(resource_name(c.charger_id, v.vehicle_id) for c, v in self.pairs)


class World:
    """Every simulated site of a process, stepped together. Resource i of site s is
    `offsets[s] + i` in every array."""

    def __init__(self, sites: Sequence[SimSite], *, soc_every_s: float = 60.0, dt_s: float = 1.0,
                 latency_s: float = DEFAULT_LATENCY_S, ramp_kw_per_s: float = DEFAULT_RAMP_KW_PER_S) -> None:
        if len({s.site_id for s in sites}) != len(sites):
            raise DomainError("sites", "a site appears twice")
        self.sites = tuple(sites)
        specs, offsets, reported = [], [], []
        for k, s in enumerate(self.sites):
            offsets.append(len(specs))
            slow = s.broken is not None and s.broken.mode is BrokenMode.SLOW
            for c, v in s.pairs:
                if c.site_id != s.site_id:
                    raise DomainError("pairs", f"charger {c.charger_id} is not at site {s.site_id}")
                lat, ramp = (s.broken.latency_s, s.broken.ramp_kw_per_s) if slow else (latency_s, ramp_kw_per_s)
                spec = ResourceSpec.of(v, c, k, latency_s=lat, ramp_kw_per_s=ramp)
                specs.append(spec)
                reported.append(s.soc_reported.get(spec.name, True))
        offsets.append(len(specs))
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.res = Resources.of(specs)
        self.index = {(self.sites[int(self.res.site[i])].site_id, name): i for i, name in enumerate(self.res.names)}
        self.limits = SiteLimits(np.array([s.site.max_import_kw for s in self.sites], dtype=float),
                                 np.array([s.site.max_export_kw for s in self.sites], dtype=float))
        n = self.res.n
        self.dt = float(dt_s)
        self.soc_every_s = float(soc_every_s)
        self.reports_soc = np.asarray(reported, dtype=bool)
        self.plugged = np.zeros(n, dtype=bool)
        self.departure_s = np.full(n, np.nan)
        self.min_soc_pct = np.full(n, np.nan)
        self.target_soc_pct = np.full(n, np.nan)
        self.plant = ChargerPlant(self.res, np.full(n, 50.0), dt_s)
        self.offline_from = np.repeat([s.broken.from_s if s.broken is not None and s.broken.mode is BrokenMode.OFFLINE
                                       else math.inf for s in self.sites], np.diff(self.offsets)).astype(float)
        self.phase = (np.arange(n) * 7919) % max(int(soc_every_s), 1)   # readings spread over the period
        rows = []
        for s in self.sites:
            for x in s.sessions:
                i = self.index.get((s.site_id, x.resource))
                if i is None:
                    raise DomainError("sessions", f"{x.resource} is not a pair of site {s.site_id}")
                rows.append((x.plug_in_s, 1, i, x))
                rows.append((x.plug_out_s, 0, i, x))
        rows.sort(key=lambda r: (r[0], r[1]))          # out before in at the same second
        self._events = rows
        self._next = 0
        self._open: dict[int, PlugSession] = {}
        self.departed: list[tuple[int, float, float, PlugSession]] = []   # (resource, time, SoC, session)

    def site_slice(self, k: int) -> slice:
        return slice(int(self.offsets[k]), int(self.offsets[k + 1]))

    def advance_to(self, t: float) -> None:
        """Apply the plug-ins and plug-outs due by `t`: a car arrives with its session's SoC
        (it was driven in between), declares its departure and minimum, and leaves."""
        ev = self._events
        while self._next < len(ev) and ev[self._next][0] <= t:
            when, plug, i, x = ev[self._next]
            self._next += 1
            if plug:
                self._open[i] = x
                self.plugged[i] = True
                self.plant.soc_pct[i] = x.soc_pct
                if t > when and not math.isnan(x.soc_out_pct):      # a run that starts mid-stay
                    # charged at full power since it plugged in, as the charging policy and most
                    # owners do, up to the SoC it leaves with (spread over the whole stay instead,
                    # a car plugged in for the night would start the evening under its minimum)
                    gained = (self.res.max_charge_kw[i] * self.res.efficiency[i] * (t - when) / 3600.0
                              / self.res.battery_kwh[i] * 100.0)
                    self.plant.soc_pct[i] = min(max(x.soc_out_pct, x.soc_pct), x.soc_pct + gained)
                self.departure_s[i], self.min_soc_pct[i], self.target_soc_pct[i] = (
                    x.departure_s, x.min_soc_pct, x.target_soc_pct)
            elif self._open.get(i) is x:
                del self._open[i]
                self.departed.append((i, when, float(self.plant.soc_pct[i]), x))
                self.plugged[i] = False
                self.departure_s[i] = self.min_soc_pct[i] = self.target_soc_pct[i] = np.nan

    def online(self, t: float) -> np.ndarray:
        """Chargers the agents reach at `t`."""
        return self.offline_from > t

    def soc_reading(self, t: float) -> np.ndarray:
        """The SoC readings that arrive at `t` (NaN: none): every `soc_every_s` from cars that
        report one (a linked maker account or ISO 15118), while plugged and reachable."""
        due = ((int(t) + self.phase) % max(int(self.soc_every_s), 1) == 0) & self.reports_soc & self.plugged
        due &= self.online(t)
        return np.where(due, np.round(self.plant.soc_pct, 1), np.nan)


# -- from the fleet simulator ------------------------------------------------------------------------
def sites_from_fleet(fleet, sessions: pd.DataFrame, *, broken: Mapping[str, Broken] | None = None,
                     max_sites: int | None = None) -> list[SimSite]:
    """Simulated sites from services/simulator's fleet and its sessions
    (`simulate_sessions`): each stay on a charger of ours is a plug session at that charger's
    site, with the SoC the car arrived with, what its owner declared and its charge limit as
    the target. Cars whose owners link no maker account report a SoC only through a
    bidirectional (ISO 15118) charger, as in the telemetry simulator."""
    broken = dict(broken or {})
    charger_of = {c.charger_id: c for c in fleet.chargers}
    vehicle_at = {v.vehicle_id: (v, h) for v, h in zip(fleet.vehicles, fleet.habits)}
    by_site: dict[str, dict] = {}
    for s in fleet.sites:
        by_site[s.site_id] = {"site": s, "pairs": {}, "sessions": [], "soc": {}}
    for v, h in zip(fleet.vehicles, fleet.habits):                  # every car's own chargers
        for idx in (h.home_charger, h.away_charger):
            if idx >= 0:
                c = fleet.chargers[idx]
                by_site[c.site_id]["pairs"][(c.charger_id, v.vehicle_id)] = (c, v)
    for row in sessions.itertuples(index=False):
        c = charger_of.get(row.charger_id)
        if c is None or row.vehicle_id not in vehicle_at:
            continue
        v, h = vehicle_at[row.vehicle_id]
        entry = by_site[c.site_id]
        entry["pairs"][(c.charger_id, v.vehicle_id)] = (c, v)
        name = resource_name(c.charger_id, v.vehicle_id)
        entry["soc"][name] = bool(h.api_linked or c.bidirectional)
        declared = row.departure_declared_at
        entry["sessions"].append(PlugSession(
            name, pd.Timestamp(row.plug_in_at).timestamp(), pd.Timestamp(row.plug_out_at).timestamp(),
            float(np.clip(row.soc_start, 0, 100)) if pd.notna(row.soc_start) else 50.0,
            pd.Timestamp(declared).timestamp() if pd.notna(declared) else math.nan,
            float(row.min_soc) if pd.notna(row.min_soc) else math.nan,
            float(row.target_soc) if pd.notna(getattr(row, "target_soc", math.nan)) else float(h.charge_limit_pct),
            float(np.clip(row.soc_end, 0, 100)) if pd.notna(row.soc_end) else math.nan))
    out = []
    for site_id in sorted(by_site):
        e = by_site[site_id]
        if not e["pairs"]:
            continue
        pairs = tuple(e["pairs"][k] for k in sorted(e["pairs"]))
        out.append(SimSite(e["site"], pairs, tuple(sorted(e["sessions"], key=lambda x: x.plug_in_s)), e["soc"],
                           broken.get(site_id)))
        if max_sites is not None and len(out) >= max_sites:
            break
    return out


__all__ = ["Broken", "BrokenMode", "PlugSession", "SimSite", "World", "sites_from_fleet"]
