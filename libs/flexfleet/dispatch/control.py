"""The site controller: what each charger/vehicle pair of a site does, second by second.

A power manager in the OpenEMS style: small units, each planning inside the bounds the units
above it leave, in the priority order of the design notes:

1. **site and safety** (`device_bounds`, `split_site_limits`): pair limits, plug and charger
   state, never a discharge on a stale or missing SoC, the site's fuse split across its
   devices in proportion to what each could draw (never the site limit written to each);
2. **mobility** (`energy_bounds`): never below the owner's minimum SoC, and the departure SoC
   by the departure time. The floor is the latest-start plan: the least power now after which
   charging at full power still arrives in time, with margins for the charger's lag;
3. **reserved FCR capacity** (`reserve`): the declared schedule (the baseline) is kept where
   the held capacity fits around it for the product's endurance, so a response is never
   refused by the layers above unless they must;
4. **setpoints** (mFRR, local flexibility) and otherwise the **charging policy** choose the
   baseline inside that band;
5. **FCR response** (`control_step`): command = baseline - capacity x share(frequency) (+ is up:
   less charging or more discharging), clipped to the bounds of 1 and 2, which always win.

Everything works on numpy arrays over resources, so one call steps every site of a process at
once (a simulated day of thousands of cars runs in seconds). The charger is modelled too
(`ChargerPlant`: a command takes effect after a latency and ramps at a finite rate, the car's
battery management clips at its usable range) because the FCR-D requirement (86 % of the
response within 7.5 s) is a requirement on that chain, not on the controller alone.

Units: kW at the grid connection, + charging, - discharging (as telemetry.v1); SoC in %;
times in seconds (epoch seconds for clock times; NaN for unknown). Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from flexfleet.dispatch.signals import frequency_share, resource_name
from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import Charger, Vehicle, pair_limits

Curve = tuple[tuple[float, float], ...]

DEFAULT_EFFICIENCY = 0.92      # each way, battery <-> grid (the simulator's and the forecast's)
DEFAULT_LATENCY_S = 1.0        # command to first movement (ISO 15118-20 / OCPP smart charging: about 1 s)
DEFAULT_RAMP_KW_PER_S = 4.0    # an 11 kW swing in under 3 s
NO_DEPARTURE_S = 1e9           # time left when no departure is declared: nothing to plan for


def _f(values: object, n: int, name: str, *, lo: float | None = None, hi: float | None = None,
       nan_ok: bool = False, lo_open: bool = False) -> np.ndarray:
    """`values` as n floats, or a DomainError naming the first bad element."""
    a = np.broadcast_to(np.asarray(values, dtype=float), (n,)).astype(float)
    bad = np.isinf(a) if nan_ok else ~np.isfinite(a)
    if lo is not None:
        bad |= (a <= lo) if lo_open else (a < lo)
    if hi is not None:
        bad |= a > hi
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        bound = f" {'above' if lo_open else 'at least'} {lo:g}" if lo is not None else ""
        bound += f" and at most {hi:g}" if hi is not None else ""
        raise DomainError(f"{name}[{i}]", f"must be a finite number{bound}; got {a[i]!r}")
    return a


# -- what the site has ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ResourceSpec:
    """One charger/vehicle pair as the controller sees it."""

    name: str                  # "<charger_id>/<vehicle_id>", the OpenADR resource
    site: int                  # index of its site in SiteLimits
    battery_kwh: float
    max_charge_kw: float       # pair limits (flexfleet.domain.model.pair_limits)
    max_discharge_kw: float
    soc_min_pct: float = 0.0   # the battery's usable range
    soc_max_pct: float = 100.0
    efficiency: float = DEFAULT_EFFICIENCY
    latency_s: float = DEFAULT_LATENCY_S
    ramp_kw_per_s: float = DEFAULT_RAMP_KW_PER_S

    @classmethod
    def of(cls, vehicle: Vehicle, charger: Charger, site: int, **dynamics: float) -> ResourceSpec:
        """The pair of a registry vehicle and charger (its limits by the domain's rules)."""
        spec, limits = vehicle.spec, pair_limits(vehicle, charger)
        return cls(resource_name(charger.charger_id, vehicle.vehicle_id), site, spec.battery_kwh,
                   limits.max_charge_kw, limits.max_discharge_kw, spec.usable_soc_min_pct, spec.usable_soc_max_pct,
                   **dynamics)


@dataclass(frozen=True, eq=False)
class Resources:
    """n charger/vehicle pairs as arrays (index i is resource i everywhere in this module)."""

    names: tuple[str, ...]
    site: np.ndarray
    battery_kwh: np.ndarray
    max_charge_kw: np.ndarray
    max_discharge_kw: np.ndarray
    soc_min_pct: np.ndarray
    soc_max_pct: np.ndarray
    efficiency: np.ndarray
    latency_s: np.ndarray
    ramp_kw_per_s: np.ndarray
    _cache: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.names)
        site = np.broadcast_to(np.asarray(self.site), (n,))
        if n and (not np.issubdtype(site.dtype, np.integer) or (site < 0).any()):
            raise DomainError("site", "must be site indices (integers >= 0)")
        object.__setattr__(self, "site", site.astype(np.int64))
        for name, kw in (("battery_kwh", dict(lo=0.0, lo_open=True)), ("max_charge_kw", dict(lo=0.0)),
                         ("max_discharge_kw", dict(lo=0.0)), ("soc_min_pct", dict(lo=0.0, hi=100.0)),
                         ("soc_max_pct", dict(lo=0.0, hi=100.0)), ("efficiency", dict(lo=0.0, hi=1.0, lo_open=True)),
                         ("latency_s", dict(lo=0.0)), ("ramp_kw_per_s", dict(lo=0.0, lo_open=True))):
            object.__setattr__(self, name, _f(getattr(self, name), n, name, **kw))
        if (self.soc_min_pct >= self.soc_max_pct).any():
            i = int(np.flatnonzero(self.soc_min_pct >= self.soc_max_pct)[0])
            raise DomainError(f"soc_min_pct[{i}]", "must be below soc_max_pct")

    @classmethod
    def of(cls, specs: Sequence[ResourceSpec]) -> Resources:
        if len({s.name for s in specs}) != len(specs):
            raise DomainError("names", "a resource is listed twice")
        cols = {f: [getattr(s, f) for s in specs] for f in ResourceSpec.__dataclass_fields__}
        if not specs:
            return cls((), np.zeros(0, dtype=np.int64), *(np.zeros(0) for _ in range(8)))
        return cls(tuple(cols.pop("name")), np.asarray(cols.pop("site"), dtype=np.int64),
                   **{k: np.asarray(v, dtype=float) for k, v in cols.items()})

    @property
    def n(self) -> int:
        return len(self.names)

    def lag_s(self, dt_s: float) -> np.ndarray:
        """Worst time from a command to the charger having followed it: the control period it
        runs for, the latency rounded up to whole periods (the controller decides once a
        period), and a full swing from maximum discharge to maximum charge."""
        return (dt_s + np.ceil(self.latency_s / dt_s - 1e-9) * dt_s
                + (self.max_charge_kw + self.max_discharge_kw) / self.ramp_kw_per_s)

    def margins(self, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(lag s, kWh the battery may still give after a stop command): what mobility plans
        keep in hand for the charger's dynamics."""
        key = ("margins", dt_s)
        if key not in self._cache:
            lag = self.lag_s(dt_s)
            self._cache[key] = lag, self.max_discharge_kw * lag / 3600.0 / self.efficiency
        return self._cache[key]

    @property
    def e_max_kwh(self) -> np.ndarray:
        if "e_max" not in self._cache:
            self._cache["e_max"] = self.soc_max_pct * self.battery_kwh / 100.0
        return self._cache["e_max"]


@dataclass(frozen=True, eq=False)
class SiteLimits:
    """Per site (index as Resources.site): the connection's import and export limits in kW."""

    max_import_kw: np.ndarray
    max_export_kw: np.ndarray

    def __post_init__(self) -> None:
        n = np.asarray(self.max_import_kw).size
        object.__setattr__(self, "max_import_kw", _f(self.max_import_kw, n, "max_import_kw", lo=0.0))
        object.__setattr__(self, "max_export_kw", _f(self.max_export_kw, n, "max_export_kw", lo=0.0))


@dataclass(frozen=True, eq=False)
class ResourceState:
    """What the site knows now, per resource. SoC is the agent's estimate (readings, and metered
    energy in between) with its age: the time since the last real reading."""

    plugged: np.ndarray            # a car is on the charger
    online: np.ndarray             # the agent reaches the charger (commands arrive, meter readable)
    soc_pct: np.ndarray            # NaN: unknown
    soc_age_s: np.ndarray
    min_soc_pct: np.ndarray        # the owner's minimum; NaN: ControlConfig.default_min_soc_pct
    target_soc_pct: np.ndarray     # SoC due at departure; NaN: as full as the car lets it
    departure_s: np.ndarray        # epoch seconds; NaN: not declared

    def with_soc(self, soc_pct: np.ndarray) -> ResourceState:
        return replace(self, soc_pct=soc_pct)


class ChargePolicy(StrEnum):
    """What a car does when nothing asks for anything: charge at once to its target (what an
    uncontrolled charger does, the usual declared schedule), or as late as mobility allows."""

    IMMEDIATE = "immediate"
    LATEST = "latest"


@dataclass(frozen=True)
class ControlConfig:
    """The controller's settings: its period (1 s: FCR-D wants 86 % within 7.5 s, and the lag
    of every period counts), when a SoC is too old to discharge on, what an unknown SoC and an
    undeclared minimum are taken to be, how early the departure SoC is aimed for."""

    dt_s: float = 1.0
    max_soc_age_s: float = 900.0          # older than this, the SoC is stale: no discharge
    unknown_soc_pct: float = 20.0         # mobility plans an unknown SoC as this, or the minimum if higher
    default_min_soc_pct: float = 20.0     # an owner who declared none (the forecast's DEFAULT_MIN_SOC)
    departure_margin_s: float = 300.0     # be at the departure SoC this long before the departure
    policy: ChargePolicy = ChargePolicy.IMMEDIATE

    def __post_init__(self) -> None:
        for name in ("dt_s", "max_soc_age_s", "departure_margin_s"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < (1e-9 if name == "dt_s" else 0):
                raise DomainError(name, f"must be a finite number above 0; got {getattr(self, name)!r}")
        for name in ("unknown_soc_pct", "default_min_soc_pct"):
            if not 0 <= getattr(self, name) <= 100:
                raise DomainError(name, f"must be a SoC in % (0..100); got {getattr(self, name)!r}")
        object.__setattr__(self, "policy", ChargePolicy(self.policy))


# -- what the site was asked -----------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FcrHoldings:
    """FCR capacity held now: one row per (resource, event), each with its activation curve
    (+ is up), the endurance it must be sustainable for, and the product's speed requirement:
    `checkpoint_share` of the response due `checkpoint_s` after a step (FCR-D: 86 % at 7.5 s)."""

    resource: np.ndarray
    capacity_kw: np.ndarray
    curve: np.ndarray
    curves: tuple[Curve, ...]
    endurance_s: np.ndarray
    checkpoint_s: np.ndarray
    checkpoint_share: np.ndarray
    _up: np.ndarray = field(init=False, repr=False)
    _down: np.ndarray = field(init=False, repr=False)
    _cache: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        k = np.asarray(self.resource).size
        object.__setattr__(self, "resource", np.asarray(self.resource, dtype=np.int64).reshape(k))
        object.__setattr__(self, "curve", np.asarray(self.curve, dtype=np.int64).reshape(k))
        object.__setattr__(self, "capacity_kw", _f(self.capacity_kw, k, "capacity_kw", lo=0.0))
        object.__setattr__(self, "endurance_s", _f(self.endurance_s, k, "endurance_s", lo=0.0))
        object.__setattr__(self, "checkpoint_s", _f(self.checkpoint_s, k, "checkpoint_s", lo=0.0, lo_open=True))
        object.__setattr__(self, "checkpoint_share", _f(self.checkpoint_share, k, "checkpoint_share", lo=0.0,
                                                        hi=1.0))
        if k and (self.resource.min() < 0 or self.curve.min() < 0 or self.curve.max() >= len(self.curves)):
            raise DomainError("curve", "must index curves (and resource, resources)")
        for c in self.curves:
            if len(c) < 2:
                raise DomainError("curves", f"a curve needs 2+ points; got {c!r}")
        shares = [[s for _, s in c] for c in self.curves]
        object.__setattr__(self, "_up", np.array([max(0.0, max(s)) for s in shares] or [0.0]))
        object.__setattr__(self, "_down", np.array([max(0.0, -min(s)) for s in shares] or [0.0]))

    @classmethod
    def none(cls) -> FcrHoldings:
        return cls.of([])

    @classmethod
    def of(cls, rows: Sequence[tuple[int, float, Curve, float, float, float]]) -> FcrHoldings:
        """From (resource index, capacity kW, curve, endurance s, checkpoint s, checkpoint share) rows."""
        curves: dict[Curve, int] = {}
        keys = [tuple((float(f), float(s)) for f, s in r[2]) for r in rows]
        for c in keys:
            curves.setdefault(c, len(curves))
        col = [np.array([r[i] for r in rows], dtype=float) for i in (1, 3, 4, 5)]
        return cls(np.array([r[0] for r in rows], dtype=np.int64), col[0],
                   np.array([curves[c] for c in keys], dtype=np.int64), tuple(curves), col[1], col[2], col[3])

    def __len__(self) -> int:
        return int(self.resource.size)

    def up_down_kw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Per resource, the most the holdings can ask up and down."""
        key = ("up_down", n)
        if key not in self._cache:
            if not len(self):
                self._cache[key] = np.zeros(n), np.zeros(n)
            else:
                self._cache[key] = (np.bincount(self.resource, self.capacity_kw * self._up[self.curve], minlength=n),
                                    np.bincount(self.resource, self.capacity_kw * self._down[self.curve], minlength=n))
        return self._cache[key]

    def shares(self, frequency_hz: float) -> np.ndarray:
        """Each curve's share of capacity at this frequency (+ up)."""
        return np.array([frequency_share(c, frequency_hz) for c in self.curves] or [0.0])

    def response_kw(self, frequency_hz: float, n: int) -> np.ndarray:
        """Per resource, the response the frequency asks for (+ up: less consumption)."""
        if not len(self):
            return np.zeros(n)
        return np.bincount(self.resource, self.capacity_kw * self.shares(frequency_hz)[self.curve], minlength=n)

    def longest_endurance_s(self, n: int, default: float) -> np.ndarray:
        key = ("endurance", n, default)
        if key not in self._cache:
            out = np.full(n, default)
            if len(self):
                np.maximum.at(out, self.resource, self.endurance_s)
            self._cache[key] = out
        return self._cache[key]

    def too_slow(self, res: Resources, dt_s: float) -> np.ndarray:
        """Per resource: its charger cannot give the checkpoint share of everything it holds
        in one direction by the checkpoint (a control period, the latency, then the ramp)."""
        key = ("too_slow", res, dt_s)
        if key not in self._cache:
            out = np.zeros(res.n, dtype=bool)
            if len(self):
                up, down = self.up_down_kw(res.n)
                kw = np.maximum(up, down)[self.resource]
                r = self.resource
                late = dt_s + res.latency_s[r] + self.checkpoint_share * kw / res.ramp_kw_per_s[r] > self.checkpoint_s
                np.logical_or.at(out, r, late & (kw > 0))
            self._cache[key] = out
        return self._cache[key]


# -- 1. site and safety ------------------------------------------------------------------------------
def soc_fresh(state: ResourceState, config: ControlConfig) -> np.ndarray:
    """A SoC one may discharge on: known, and read recently enough."""
    return ~np.isnan(state.soc_pct) & (state.soc_age_s <= config.max_soc_age_s)


def device_bounds(res: Resources, state: ResourceState, config: ControlConfig) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) kW each pair may run at now: 0 when unplugged or unreachable; no discharge on a
    stale or missing SoC (a peer's chargers discharged on stale data)."""
    on = state.plugged & state.online
    hi = np.where(on, res.max_charge_kw, 0.0)
    lo = np.where(on & soc_fresh(state, config), -res.max_discharge_kw, 0.0)
    return lo, hi


def split_site_limits(lo: np.ndarray, hi: np.ndarray, site: np.ndarray, limits: SiteLimits
                      ) -> tuple[np.ndarray, np.ndarray]:
    """A site's import (export) limit split across its pairs in proportion to what each could
    draw (feed in) now: the limit is for the site, so the pairs share it, never each take it."""
    m = limits.max_import_kw.size
    draw = np.bincount(site, np.maximum(hi, 0.0), minlength=m)
    feed = np.bincount(site, np.maximum(-lo, 0.0), minlength=m)
    with np.errstate(divide="ignore", invalid="ignore"):
        f_in = np.where(draw > limits.max_import_kw, limits.max_import_kw / draw, 1.0)
        f_out = np.where(feed > limits.max_export_kw, limits.max_export_kw / feed, 1.0)
    return lo * f_out[site], hi * f_in[site]


# -- 2. mobility -------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class EnergyBounds:
    lo: np.ndarray                 # kW floor held over the horizon
    hi: np.ndarray                 # kW ceiling held over the horizon
    departure_at_risk: np.ndarray  # even full power now does not reach the departure SoC in time
    below_min: np.ndarray          # the SoC is under the owner's minimum (charging at full power)


def _clip(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """np.clip without its overhead (this runs every second for every resource)."""
    return np.minimum(np.maximum(x, lo), hi)


def _energy(p: np.ndarray, eta: np.ndarray, seconds: np.ndarray | float) -> np.ndarray:
    """Battery kWh from grid kW held for `seconds` (losses both ways)."""
    return np.where(p >= 0, p * eta, p / eta) * seconds / 3600.0


def _power(kwh: np.ndarray, eta: np.ndarray, seconds: np.ndarray | float) -> np.ndarray:
    """Grid kW that moves `kwh` into (+) or out of (-) the battery in `seconds`."""
    return np.where(kwh >= 0, kwh / eta, kwh * eta) * 3600.0 / seconds


def energy_bounds(now_s: float, lo: np.ndarray, hi: np.ndarray, res: Resources, state: ResourceState,
                  config: ControlConfig, horizon_s: np.ndarray | float,
                  recharge_kw: np.ndarray | None = None) -> EnergyBounds:
    """Narrow (lo, hi) to powers that, held for `horizon_s`, keep mobility safe:

    - above the minimum SoC, with room for what the charger still discharges after it is told
      to stop (`Resources.lag_s`);
    - the departure SoC still reachable by charging at `hi` from the end of the horizon (the
      latest-start plan), aiming `departure_margin_s` plus the lag early;
    - the battery's usable maximum.
    A car under its minimum, or one that cannot make its departure anymore, gets `hi`: the best
    effort, never nothing, with the reason flagged. `recharge_kw` is what the car can charge at
    after the horizon (default `hi`); narrowing bounds an earlier call narrowed, give the device's:
    a full battery's 0 kW now says nothing of how fast it recharges after a discharge."""
    dt = config.dt_s
    eta, cap = res.efficiency, res.battery_kwh
    lag, leak = res.margins(dt)
    floor_pct = np.maximum(np.where(np.isnan(state.min_soc_pct), config.default_min_soc_pct, state.min_soc_pct),
                           res.soc_min_pct)
    unknown = np.isnan(state.soc_pct)      # planned as if at the minimum (or unknown_soc_pct if higher)
    e = np.where(unknown, np.maximum(config.unknown_soc_pct, floor_pct), state.soc_pct) * cap / 100.0
    e_min = floor_pct * cap / 100.0
    target_pct = np.where(np.isnan(state.target_soc_pct), floor_pct, np.maximum(state.target_soc_pct, floor_pct))
    e_dep = np.minimum(target_pct, res.soc_max_pct) * cap / 100.0
    time_left = state.departure_s - (now_s + config.departure_margin_s) - lag
    time_left = np.where(np.isnan(time_left), NO_DEPARTURE_S, time_left)   # undeclared: no departure plan
    h = np.maximum(np.minimum(horizon_s, time_left), dt)
    charge = np.maximum(hi if recharge_kw is None else recharge_kw, 0.0)

    # minimum SoC: what may leave the battery over h, keeping what the lag still lets through
    floor_min = np.minimum(e_min + leak - e, 0.0) * eta * 3600.0 / h
    below = (e < e_min - 1e-9) & ~unknown
    # departure: after h, charging at `charge` for the time left must still get there, with
    # room for a discharge still under way (a fast discharge takes a slow charger long to undo)
    e_req = e_dep + leak - charge * eta * np.maximum(time_left - h, 0.0) / 3600.0
    floor_dep = _power(e_req - e, eta, h)
    at_risk = floor_dep > charge + 1e-9
    new_lo = np.maximum(lo, np.maximum(floor_min, floor_dep))
    new_lo = np.where(below & (hi > 0), hi, new_lo)
    new_hi = np.minimum(hi, np.maximum(res.e_max_kwh - e, 0.0) / eta * 3600.0 / h)
    new_lo = np.minimum(new_lo, np.maximum(new_hi, lo))
    new_hi = np.maximum(new_hi, new_lo)
    return EnergyBounds(new_lo, new_hi, at_risk, below)


# -- 3./4. reservation, setpoints, policy ------------------------------------------------------------
def policy_kw(lo: np.ndarray, hi: np.ndarray, res: Resources, state: ResourceState, config: ControlConfig
              ) -> np.ndarray:
    """The charging policy's power inside (lo, hi): at once up to the target SoC, or the floor."""
    if config.policy is ChargePolicy.LATEST:
        return lo
    soc = np.where(np.isnan(state.soc_pct), config.unknown_soc_pct, state.soc_pct)
    room = (np.where(np.isnan(state.target_soc_pct), res.soc_max_pct, state.target_soc_pct) - soc) / 100.0
    to_target = np.where(np.isnan(state.soc_pct), np.inf,
                         _power(np.maximum(room * res.battery_kwh, 0.0), res.efficiency, config.dt_s))
    return _clip(np.minimum(hi, to_target), lo, hi)


def reserve(wanted: np.ndarray, lo: np.ndarray, hi: np.ndarray, sustained_lo: np.ndarray, sustained_hi: np.ndarray,
            up_kw: np.ndarray, down_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The baseline nearest `wanted` from which `up_kw` less and `down_kw` more stay within
    the bounds now (lo, hi) and for the endurance (sustained_*); where both cannot be held, the
    middle of what is left. Returns (baseline, held up kW, held down kW)."""
    low, high = np.maximum(lo, sustained_lo), np.minimum(hi, sustained_hi)
    band_lo, band_hi = low + up_kw, high - down_kw
    base = np.where(band_lo <= band_hi, _clip(wanted, band_lo, band_hi), (band_lo + band_hi) / 2)
    base = _clip(base, lo, hi)
    return base, _clip(base - low, 0.0, up_kw), _clip(high - base, 0.0, down_kw)


# -- the whole step ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ControlStep:
    """One second of the controller, per resource."""

    command_kw: np.ndarray         # the setpoint sent to the charger
    baseline_kw: np.ndarray        # the declared schedule: what it runs at without FCR response
    lo_kw: np.ndarray              # bounds of safety and mobility now
    hi_kw: np.ndarray
    response_kw: np.ndarray        # what the frequency asks (+ up), before the bounds
    held_up_kw: np.ndarray         # FCR capacity the baseline and bounds leave room for
    held_down_kw: np.ndarray
    too_slow: np.ndarray           # the charger cannot give its held capacity in the product's time
    departure_at_risk: np.ndarray
    below_min: np.ndarray

    @property
    def active(self) -> np.ndarray:
        return np.abs(self.response_kw) > 1e-9


def control_step(now_s: float, frequency_hz: float, res: Resources, sites: SiteLimits, state: ResourceState,
                 holdings: FcrHoldings, setpoint_kw: np.ndarray | None = None, config: ControlConfig = ControlConfig(),
                 baseline_soc_pct: np.ndarray | None = None) -> ControlStep:
    """The commands for one control period.

    setpoint_kw: per resource the power an mFRR or local-flexibility event asks (+ charging),
    NaN where none does. baseline_soc_pct: the SoC the declared schedule would have left
    (`track_baseline`); the schedule is planned on it, so that an activation does not move its
    own baseline. Without it, the state's SoC."""
    n = res.n
    lo0, hi0 = split_site_limits(*device_bounds(res, state, config), res.site, sites)
    now = energy_bounds(now_s, lo0, hi0, res, state, config, config.dt_s)
    if baseline_soc_pct is None or np.array_equal(baseline_soc_pct, state.soc_pct, equal_nan=True):
        bstate, bnow, bhi0 = state, now, hi0
    else:
        bstate = state.with_soc(baseline_soc_pct)
        blo0, bhi0 = split_site_limits(*device_bounds(res, bstate, config), res.site, sites)
        bnow = energy_bounds(now_s, blo0, bhi0, res, bstate, config, config.dt_s)
    up, down = holdings.up_down_kw(n)
    endurance = holdings.longest_endurance_s(n, config.dt_s)
    if len(holdings):
        held_for = energy_bounds(now_s, bnow.lo, bnow.hi, res, bstate, config, endurance, recharge_kw=bhi0)
        sus_lo, sus_hi = held_for.lo, held_for.hi
    else:
        sus_lo, sus_hi = bnow.lo, bnow.hi
    wanted = policy_kw(bnow.lo, bnow.hi, res, bstate, config)
    if setpoint_kw is not None:
        sp = np.asarray(setpoint_kw, dtype=float)
        wanted = np.where(np.isnan(sp), wanted, sp)
    base, held_up, held_down = reserve(wanted, bnow.lo, bnow.hi, sus_lo, sus_hi, up, down)
    response = holdings.response_kw(frequency_hz, n)
    command = _clip(base - response, now.lo, now.hi)
    return ControlStep(command, base, now.lo, now.hi, response, held_up, held_down,
                       holdings.too_slow(res, config.dt_s), now.departure_at_risk, now.below_min)


def track_baseline(baseline_soc_pct: np.ndarray, soc_pct: np.ndarray, quiet_s: np.ndarray, step: ControlStep,
                   res: Resources, dt_s: float, settle_s: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """The SoC the declared schedule would have given: it follows the real SoC while nothing is
    activated, runs on the baseline's own power during an activation and `settle_s` after it
    (the charger still ramping back), and joins the real SoC again after. Returns (baseline
    SoC, seconds since the last activation)."""
    quiet = np.where(step.active, 0.0, quiet_s + dt_s)
    shadow = np.where(np.isnan(baseline_soc_pct), soc_pct, baseline_soc_pct) + _energy(
        step.baseline_kw, res.efficiency, dt_s) / res.battery_kwh * 100.0
    shadow = np.minimum(shadow, res.soc_max_pct)
    return np.where(quiet > settle_s, soc_pct, shadow), quiet


def estimate_soc(soc_pct: np.ndarray, age_s: np.ndarray, power_kw: np.ndarray, res: Resources, dt_s: float,
                 reading_pct: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The SoC estimate after a period at the metered `power_kw`: a reading where there is one
    (age 0), else the last estimate plus the metered energy (age grows; unknown stays unknown)."""
    soc = _clip(soc_pct + _energy(power_kw, res.efficiency, dt_s) / res.battery_kwh * 100.0, 0.0, 100.0)
    if reading_pct is None:
        return soc, age_s + dt_s
    read = ~np.isnan(reading_pct)
    return np.where(read, reading_pct, soc), np.where(read, 0.0, age_s + dt_s)


# -- the charger and the car -----------------------------------------------------------------------
class ChargerPlant:
    """The physical side the controller commands: each charger applies a command after its
    latency (whole control periods) and ramps towards it at its ramp rate; the car's battery
    management stops charging at the usable maximum and discharging at the usable minimum; an
    unplugged pair draws nothing; an offline charger ignores commands and runs its fallback
    (charging at full power, what a smart charger does when it loses its backend).

    Mutable (it is the simulated world), but without I/O."""

    def __init__(self, res: Resources, soc_pct: np.ndarray, dt_s: float = 1.0,
                 power_kw: np.ndarray | None = None) -> None:
        self.res, self.dt = res, float(dt_s)
        self.soc_pct = _f(soc_pct, res.n, "soc_pct", lo=0.0, hi=100.0).copy()
        self.power_kw = np.zeros(res.n) if power_kw is None else _f(power_kw, res.n, "power_kw").copy()
        self.delay = np.ceil(res.latency_s / self.dt - 1e-9).astype(np.int64)
        self._queue = np.tile(self.power_kw, (int(self.delay.max(initial=0)) + 1, 1))
        self._k = 0
        self._cols = np.arange(res.n)

    def step(self, command_kw: np.ndarray, plugged: np.ndarray, online: np.ndarray) -> np.ndarray:
        """Advance one period under `command_kw`; returns each pair's power during it."""
        res, dt = self.res, self.dt
        depth = self._queue.shape[0]
        self._queue[self._k % depth] = command_kw
        due = self._queue[(self._k - self.delay) % depth, self._cols]
        self._k += 1
        target = np.where(online, due, res.max_charge_kw)
        step = res.ramp_kw_per_s * dt
        p = self.power_kw + _clip(target - self.power_kw, -step, step)
        p = _clip(p, -res.max_discharge_kw, res.max_charge_kw)
        e = self.soc_pct / 100.0 * res.battery_kwh
        room = np.maximum(res.soc_max_pct / 100.0 * res.battery_kwh - e, 0.0)
        left = np.maximum(e - res.soc_min_pct / 100.0 * res.battery_kwh, 0.0)
        p = _clip(p, -left * res.efficiency * 3600.0 / dt, room / res.efficiency * 3600.0 / dt)
        p = np.where(plugged, p, 0.0)
        self.power_kw = p
        self.soc_pct = _clip(self.soc_pct + _energy(p, res.efficiency, dt) / res.battery_kwh * 100.0, 0.0, 100.0)
        return p


__all__ = [
    "ChargePolicy", "ChargerPlant", "ControlConfig", "ControlStep", "Curve", "EnergyBounds", "FcrHoldings",
    "ResourceSpec", "ResourceState", "Resources", "SiteLimits", "control_step", "device_bounds", "energy_bounds",
    "estimate_soc", "policy_kw", "reserve", "soc_fresh", "split_site_limits", "track_baseline",
]
