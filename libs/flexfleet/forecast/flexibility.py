"""Endurance-limited flexibility: the kW a plugged-in vehicle can hold for a product's whole
endurance, from its SoC and departure forecasts, and the portfolio distribution of it.

Power alone overstates what a fleet can sell: an FCR-D reserve with a limited energy reservoir
must hold its power for 20 minutes, an mFRR or local-flexibility activation about an hour, a V1G
pool two. Per vehicle and target MTU, given it is plugged in then:

    up   = min(pair discharge kW, (SoC_P10 - floor) x battery / E x eff, OEM cap left / E,
               what can be charged back between the activation's end and the P10 departure)
    down = min(pair charge kW, (usable max - SoC_P90) x battery / E / eff)

both 0 unless the P10 departure leaves the whole endurance E. The floor is the higher of the
car's usable minimum and the owner's declared minimum SoC (DEFAULT_MIN_SOC when never declared).
The low SoC quantile for up and the high one for down, and the early departure, make each car's
figure one it meets in about nine cases out of ten.

Vehicles with no SoC in their history take the fleet's 10 % (up) or 90 % (down) SoC of the
last four weeks; if the fleet has no SoC at all they count with 0 kW: nothing is offered on a
battery nobody has seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from flexfleet.forecast.departure import MINUTES_PER_MTU
from flexfleet.forecast.features import HISTORY_WEEKS, HORIZON, MTUS_PER_WEEK
from flexfleet.forecast.grid import CHARGE_EFFICIENCY, Grid
from flexfleet.forecast.portfolio import Calibration
from flexfleet.forecast.soc import QuantileModel, StateFeatures

ENDURANCES_MIN = (20, 60, 120)   # FCR-D LER; mFRR and local flexibility; V1G pools
DEFAULT_MIN_SOC = 20.0           # % an owner who never declared one is assumed to want kept
EFFICIENCY = CHARGE_EFFICIENCY   # each way, battery <-> grid
SPEC_COLUMNS = ("battery_kwh", "usable_soc_min_pct", "usable_soc_max_pct", "oem_cap_remaining_kwh")


@dataclass(frozen=True)
class VehicleLimits:
    """Per vehicle, in the order of `vehicle_ids`: what the battery and its maker allow."""

    vehicle_ids: tuple[str, ...]
    battery_kwh: np.ndarray
    soc_min_pct: np.ndarray
    soc_max_pct: np.ndarray
    oem_cap_kwh: np.ndarray          # discharge the maker still allows; NaN = no cap

    @classmethod
    def from_specs(cls, specs: pd.DataFrame) -> VehicleLimits:
        """From a specs frame indexed by vehicle_id with SPEC_COLUMNS."""
        missing = [c for c in SPEC_COLUMNS if c not in specs]
        if missing:
            raise ValueError(f"specs: missing column(s) {', '.join(missing)}")
        if not specs.index.is_unique:
            raise ValueError("specs: vehicle_id appears twice in the index")
        values = {c: pd.to_numeric(specs[c]).to_numpy(np.float64) for c in SPEC_COLUMNS}
        battery, lo, hi, cap = (values[c] for c in SPEC_COLUMNS)
        for name, bad in (("battery_kwh", ~(battery > 0)), ("usable_soc_min_pct", ~((lo >= 0) & (lo < hi))),
                          ("usable_soc_max_pct", ~(hi <= 100)), ("oem_cap_remaining_kwh", cap < 0)):
            if bad.any():
                raise ValueError(f"{name}: out of range for vehicle {specs.index[np.flatnonzero(bad)[0]]}")
        return cls(tuple(str(v) for v in specs.index), battery, lo, hi, cap)


def up_kw(pair_kw: np.ndarray, charge_kw: np.ndarray, soc_pct: np.ndarray, floor_pct: np.ndarray,
          battery_kwh: np.ndarray, oem_cap_kwh: np.ndarray, departure_min: np.ndarray, endurance_min: float,
          efficiency: float = EFFICIENCY) -> np.ndarray:
    """Discharge kW (at the grid) the car holds for `endurance_min` minutes and can charge back
    at `charge_kw` before it leaves. Arrays broadcast; unknown SoC or departure gives 0."""
    hours = endurance_min / 60
    energy_kw = np.maximum(soc_pct - floor_pct, 0) / 100 * battery_kwh * efficiency / hours
    oem_kw = np.where(np.isnan(oem_cap_kwh), np.inf, oem_cap_kwh) / hours
    # Discharged P x E at the grid takes P x E / eff from the battery and P x E / eff^2 at the
    # grid to put back, within the time left after the activation.
    back_kw = np.maximum(departure_min / 60 - hours, 0) * charge_kw * efficiency ** 2 / hours
    kw = np.minimum(np.minimum(pair_kw, energy_kw), np.minimum(oem_kw, back_kw))
    return np.where(departure_min >= endurance_min, np.nan_to_num(kw, nan=0.0), 0.0)


def down_kw(pair_kw: np.ndarray, soc_pct: np.ndarray, ceiling_pct: np.ndarray, battery_kwh: np.ndarray,
            departure_min: np.ndarray, endurance_min: float, efficiency: float = EFFICIENCY) -> np.ndarray:
    """Charge kW (at the grid) the battery can absorb for `endurance_min` minutes before it leaves."""
    hours = endurance_min / 60
    room_kw = np.maximum(ceiling_pct - soc_pct, 0) / 100 * battery_kwh / efficiency / hours
    kw = np.minimum(pair_kw, room_kw)
    return np.where(departure_min >= endurance_min, np.nan_to_num(kw, nan=0.0), 0.0)


def declared_floor(grid: Grid, limits: VehicleLimits, tau: int) -> np.ndarray:
    """Per vehicle, the SoC discharge must stop at: the higher of the usable minimum and the
    minimum its owner last declared before `tau` (an app setting that carries over from stay to
    stay), DEFAULT_MIN_SOC if never declared."""
    seen = ~np.isnan(grid.min_soc[:, :tau])
    last = tau - 1 - np.argmax(seen[:, ::-1], axis=1)
    declared = np.where(seen.any(axis=1), grid.min_soc[np.arange(len(last)), last], np.nan)
    return np.maximum(limits.soc_min_pct, np.where(np.isnan(declared), DEFAULT_MIN_SOC, declared))


def fleet_soc(grid: Grid, tau: int) -> tuple[float, float]:
    """The fleet's 10 % and 90 % SoC while plugged in over the four weeks before `tau` (NaN if
    no SoC was seen): the stand-in for vehicles that never reported theirs."""
    since = max(0, tau - HISTORY_WEEKS * MTUS_PER_WEEK)
    soc = grid.soc[:, since:tau][grid.plugged[:, since:tau] >= 0.5]
    soc = soc[~np.isnan(soc)]
    if len(soc) == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(soc, (0.1, 0.9))
    return float(lo), float(hi)


@dataclass(frozen=True)
class StateForecast:
    """Per vehicle of the grid and horizon, given plugged in: what flexibility needs to know."""

    soc: np.ndarray            # (vehicles, HORIZON, 3) SoC P10/P50/P90 %, NaN where unknown
    departure_min: np.ndarray  # (vehicles, HORIZON, 3) P10/P50/P90 minutes from the MTU's start to plug-out
    floor_pct: np.ndarray      # (vehicles,) discharge floor
    fleet_soc: tuple[float, float]


def forecast_state(soc_model: QuantileModel | None, departure_model: QuantileModel, state: StateFeatures,
                   limits: VehicleLimits, tau: int) -> StateForecast:
    """SoC and departure forecasts issued at `tau` for every vehicle of the grid. SoC is left NaN
    for vehicles with no SoC in their history (the model would only echo the fleet for them),
    or for all without a SoC model; everything is NaN for vehicles that never plugged in (they
    have no availability either)."""
    grid, v = state.grid, state.vehicles
    n = len(grid.vehicle_ids)
    frame = state.frame(tau)
    soc = np.full((n, HORIZON, 3), np.nan)
    if soc_model is not None:
        soc[v] = soc_model.predict(frame).reshape(len(v), HORIZON, 3)
    soc[state.last_soc_at[:, tau - 1] < 0] = np.nan
    departure = np.full((n, HORIZON, 3), np.nan)
    departure[v] = departure_model.predict(frame).reshape(len(v), HORIZON, 3) * MINUTES_PER_MTU
    return StateForecast(soc, departure, declared_floor(grid, limits, tau), fleet_soc(grid, tau))


def endurance_kw(direction: str, capacity_up: np.ndarray, capacity_down: np.ndarray, fc: StateForecast,
                 limits: VehicleLimits, endurance_min: float) -> np.ndarray:
    """(vehicles, HORIZON) kW each vehicle holds for `endurance_min` in `direction`, given plugged
    in, in its median state (SoC and departure P50); capacities are the pair kW per vehicle
    (`FeatureGrid.capacity_kw`).

    The median, not a cautious per-car quantile: the endurance calibrations (`held_key`) are
    fitted on these figures against what the fleet really held, so they carry the state's
    uncertainty; per-car P10s under them would count it twice (and SoC P90 sits at the charge
    limit for most cars, which left every car's cautious down figure at 0)."""
    soc_at = departure_at = 1
    departure = fc.departure_min[:, :, departure_at]
    if direction == "up":
        soc = np.where(np.isnan(fc.soc[:, :, soc_at]), fc.fleet_soc[0], fc.soc[:, :, soc_at])
        return up_kw(capacity_up[:, None], capacity_down[:, None], soc, fc.floor_pct[:, None],
                     limits.battery_kwh[:, None], limits.oem_cap_kwh[:, None], departure, endurance_min)
    if direction == "down":
        soc = np.where(np.isnan(fc.soc[:, :, soc_at]), fc.fleet_soc[1], fc.soc[:, :, soc_at])
        return down_kw(capacity_down[:, None], soc, limits.soc_max_pct[:, None], limits.battery_kwh[:, None],
                       departure, endurance_min)
    raise ValueError(f"direction: must be up or down, got {direction!r}")


def held_key(direction: str, endurance_min: int) -> str:
    """The name of a direction's flexibility held for an endurance: "up_20min"."""
    return f"{direction}_{endurance_min}min"


def endurance_quantiles(calibrations: dict[str, Calibration], direction: str, p: np.ndarray, power_q: np.ndarray,
                        kw_by_endurance: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Portfolio quantiles (HORIZON, LEVELS) per endurance (ascending).

    Each endurance has its own calibration (`held_key`), fitted on what the fleet could really
    have held: the median-state kW per car (`endurance_kw`) leaves out how
    uncertain each car's state is, and the recalibrated levels put that spread back. A volume
    held for longer is also held for shorter, so each endurance's quantiles are capped by the
    shorter one's (and by the power's).
    """
    out, cap = {}, power_q
    for endurance in sorted(kw_by_endurance):
        cap = np.minimum(calibrations[held_key(direction, endurance)].quantiles(p, kw_by_endurance[endurance]), cap)
        out[endurance] = cap
    return out


def realised_endurance_kw(direction: str, grid: Grid, limits: VehicleLimits, endurance_min: float,
                          fleet: tuple[float, float]) -> np.ndarray:
    """(vehicles, MTUs) kW each vehicle could have held for `endurance_min`, as it turned out:
    plugged share x the same rule applied to the realised pair kW, SoC (reference trajectory) and
    time left, with the minimum SoC declared for that stay (DEFAULT_MIN_SOC if none, as the
    charging policy then keeps). Unknown SoC takes the fleet's, as in the forecast."""
    share = grid.plugged
    with np.errstate(invalid="ignore", divide="ignore"):
        charge = np.where(share > 0, grid.down_kw / share, 0.0)
        pair = np.where(share > 0, grid.up_kw / share, 0.0) if direction == "up" else charge
    departure = grid.remaining * MINUTES_PER_MTU
    if direction == "up":
        soc = np.where(np.isnan(grid.soc), fleet[0], grid.soc)
        floor = np.maximum(np.where(np.isnan(grid.min_soc), DEFAULT_MIN_SOC, grid.min_soc), limits.soc_min_pct[:, None])
        kw = up_kw(pair, charge, soc, floor, limits.battery_kwh[:, None], limits.oem_cap_kwh[:, None],
                   departure, endurance_min)
    elif direction == "down":
        soc = np.where(np.isnan(grid.soc), fleet[1], grid.soc)
        kw = down_kw(pair, soc, limits.soc_max_pct[:, None], limits.battery_kwh[:, None], departure, endurance_min)
    else:
        raise ValueError(f"direction: must be up or down, got {direction!r}")
    return share * kw
