"""Delivery verification: for each obligation and MTU, what was required, what the bundle
delivered against its baseline, how fast it responded, the shortfall settlement will charge, and
each site's part in it.

Units and signs: power in kW (+ charging, - discharging, as telemetry.v1), times timezone-aware
(UTC inside), results in MW and MWh. A vehicle's response is its power minus its baseline, signed
by the obligation's direction: up is less charging or more discharging.

What counts as delivered, per product kind:

frequency (FCR-D, FCR-N): capacity sold. Two checks, the smaller share wins.
    capacity held: each second, the bundle's headroom from its baseline (up: baseline plus
        discharge limit; down: charge limit minus baseline) of the vehicles plugged in and
        reporting, against the volume; per quarter-hour the mean of min(1, held / volume). This
        is the maintained capacity the TSO asks for in real time (section 3.9.1).
    response: each activation that starts in the MTU, scored by `fcr.score_activation`; the
        share of capacity the weakest response proves.
dso_order (local flexibility, ShortFlex): energy. Per quarter-hour, the bundle's response energy
    over the volume x 15 minutes, capped at 1 (metered energy: a surplus in one second covers a
    deficit in the next, not one quarter another).
manual (mFRR) needs the TSO's activation orders, which are not an input yet: refused.

Delivered share = the lowest quarter-hour of the MTU (capacity) and the weakest activation, as
the bid backtest counts delivery (flexfleet.bidding.backtest.deliver: a bid is delivered in full
only if its bundle held the volume in every quarter). One difference: the backtest counts a car
in a quarter only if it was plugged in all of it, with what it could hold; here each second of
measured headroom counts, and the quarter's mean is taken. Delivered MW = volume x share. Shortfall =
volume - delivered MW, and shortfall MWh = shortfall MW x the MTU's hours: the capacity (or
energy) settlement withholds payment for. The dispatcher may move load between the bundle's
vehicles, so the bundle is judged as a whole; a vehicle in several obligations of one direction
at once counts for each in proportion to its kW in them (as the backtest shares held kW).

Attribution: each site's required share is the obligation kW of its vehicles; its own delivered
share is computed as for the bundle. The obligation's shortfall is split over the sites in
proportion to their own deficits (required x (1 - delivered share)), so a site that delivered
carries none, the parts add up to the whole, and a broken site carries what it broke. A site that
over-delivers lowers the bundle's shortfall, which the sites short of their share then split.

Missing data proves nothing: a vehicle without a measurement in force (older than
`Measurements.max_gap_s`) or without a known baseline contributes no response and no headroom.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from flexfleet.dispatch import ObligationLike
from flexfleet.dispatch.baselines import (Baseline, BaselineMethod, VerificationInputError, baseline_method_for,
                                          utc_ns, require_columns)
from flexfleet.dispatch.fcr import (ActivationWindow, band_hz, find_activations, required_share, response_requirement,
                                   score_activation)
from flexfleet.markets.catalogue import FrequencyActivation, ManualActivation, Product
from flexfleet.markets.clearing import FrequencyTrace

__all__ = [
    "ActivationCheck", "Delivery", "Measurements", "ObligationLike", "Resource", "SiteDelivery",
    "VerificationInputError", "shared_kw", "verify", "verify_obligation",
]

SIGN = {"up": -1.0, "down": 1.0}     # response = SIGN x (power - baseline); power + = charging
QUARTER_S = 900
FREQUENCY_MAX_GAP_S = 5.0           # a frequency sample counts for at most this long
_NS = 1_000_000_000




@dataclass(frozen=True)
class Resource:
    """A vehicle during the obligation: the site it was at (the site attribution names) and
    what the vehicle-charger pair can do, in kW (both >= 0)."""

    site_id: str
    max_charge_kw: float
    max_discharge_kw: float

    def __post_init__(self) -> None:
        if not isinstance(self.site_id, str) or not self.site_id:
            raise VerificationInputError(f"resources.site_id: must be a non-empty string, got {self.site_id!r}")
        for name in ("max_charge_kw", "max_discharge_kw"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise VerificationInputError(f"resources.{name}: must be a finite number >= 0, got {v!r}")


class _Steps:
    """Per-vehicle step series sorted by vehicle and time, sliceable per vehicle."""

    def __init__(self, frame: pd.DataFrame, what: str, values: Mapping[str, np.ndarray]):
        ts = utc_ns(frame["ts"], f"{what}.ts")
        ids = frame["vehicle_id"].astype(str).to_numpy()
        codes, _ = pd.factorize(ids, sort=True)
        order = np.lexsort((ts, codes))
        self.ts = ts[order]
        self.values = {k: np.asarray(v)[order] for k, v in values.items()}
        sorted_ids = ids[order]
        uniq, first = np.unique(sorted_ids, return_index=True)
        last = np.append(first[1:], len(sorted_ids))
        self.bounds = {u: (int(a), int(b)) for u, a, b in zip(uniq, first, last)}
        # One sentinel past the end, so that lookups of "no sample" (-1, clipped to 0) stay in range.
        self.ts = np.append(self.ts, np.iinfo(np.int64).min // 2)
        self.values = {k: np.append(v, np.zeros(1, v.dtype)) for k, v in self.values.items()}

    def fill(self, vehicles: Sequence[str], grid0: int, n: int) -> np.ndarray:
        """(vehicles, n) position of the sample in force at each grid second, -1 where none yet."""
        rows, pos = [], []
        hi_ns = grid0 + (n - 1) * _NS
        for r, v in enumerate(vehicles):
            a, b = self.bounds.get(v, (0, 0))
            if a == b:
                continue
            ts = self.ts[a:b]
            lo = max(int(np.searchsorted(ts, grid0, "right")) - 1, 0)
            hi = int(np.searchsorted(ts, hi_ns, "right"))
            if hi > lo:
                rows.append(np.full(hi - lo, r))
                pos.append(np.arange(a + lo, a + hi))
        out = np.full((len(vehicles), n), -1, dtype=np.int64)
        if not rows:
            return out
        row = np.concatenate(rows)
        p = np.concatenate(pos)
        start = np.clip(-((grid0 - self.ts[p]) // _NS), 0, n - 1)   # ceil: a sample applies from its second on
        keep = np.ones(len(p), bool)
        keep[:-1] = (row[1:] != row[:-1]) | (start[1:] != start[:-1])  # last sample of each second wins
        out[row[keep], start[keep]] = p[keep]
        np.maximum.accumulate(out, axis=1, out=out)
        return out


@dataclass(frozen=True, eq=False)
class Measurements:
    """Measured power per vehicle from the VENs' reports: columns vehicle_id, ts (timezone-aware),
    power_kw (+ charging, - discharging), plugged_in (bool). One-second samples during FCR
    activations, coarser otherwise; a sample holds until the vehicle's next one, for at most
    `max_gap_s` (default: twice the coarsest cadence, one a minute), after which nothing is known."""

    frame: pd.DataFrame
    max_gap_s: float = 120.0

    def __post_init__(self) -> None:
        require_columns(self.frame, "measurements", ("vehicle_id", "ts", "power_kw", "plugged_in"))
        if not (isinstance(self.max_gap_s, (int, float)) and self.max_gap_s > 0):
            raise VerificationInputError(f"max_gap_s: must be positive, got {self.max_gap_s!r}")
        power = pd.to_numeric(self.frame["power_kw"], errors="coerce").to_numpy(float)
        if not np.isfinite(power).all():
            i = int(np.argmax(~np.isfinite(power)))
            raise VerificationInputError(
                f"measurements.power_kw: {self.frame['power_kw'].iloc[i]!r} for vehicle "
                f"{self.frame['vehicle_id'].iloc[i]} at {self.frame['ts'].iloc[i]} is not a finite number")
        plugged = self.frame["plugged_in"]
        if plugged.isna().any() or not all(isinstance(x, (bool, np.bool_)) for x in plugged.unique()):
            raise VerificationInputError("measurements.plugged_in: must be true or false on every row")
        object.__setattr__(self, "_steps", _Steps(self.frame, "measurements",
                                                  {"power": power, "plugged": plugged.to_numpy(bool)}))


def _baseline_steps(baseline: Baseline) -> _Steps:
    steps = getattr(baseline, "_steps", None)
    if steps is None:
        kw = pd.to_numeric(baseline.frame["baseline_kw"], errors="coerce").to_numpy(float)
        steps = _Steps(baseline.frame, "baseline", {"kw": kw})
        object.__setattr__(baseline, "_steps", steps)
    return steps


# ------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ActivationCheck:
    """One assessed FCR activation of the MTU and the bundle's answer (MW, MW s, seconds)."""

    start: datetime
    reference_mw: float             # the response asked for at the first checkpoint
    required_response_s: float      # the first checkpoint (FCR-D: 7.5 s)
    required_share: float           # its share (FCR-D: 0.86)
    response_time_s: float | None   # until the response first reached that share; None: never
    power_mw: float | None          # response at the first checkpoint
    energy_mws: float | None        # response energy over energy_within_s
    required_energy_mws: float | None   # the bar: min_energy_s's share of the energy asked for
    steady_state_ratio: float | None
    over_delivery: bool             # sustained response above the allowed over-delivery
    proven_share: float             # capacity share the response proves
    passed: bool


@dataclass(frozen=True)
class SiteDelivery:
    """One site's part in one obligation's MTU."""

    site_id: str
    vehicles: int
    required_mw: float              # the obligation kW of its vehicles
    delivered_share: float          # its own delivery, judged as the bundle's
    delivered_mw: float
    shortfall_mw: float             # its part of the obligation's shortfall
    shortfall_mwh: float
    required_energy_mwh: float
    delivered_energy_mwh: float
    response_time_s: float | None   # slowest over the assessed activations; None: none, or never reached


@dataclass(frozen=True)
class Delivery:
    """One obligation in one MTU, verified."""

    obligation_id: str
    product_id: str
    direction: str
    mtu_start: datetime
    mtu_end: datetime
    kind: str                       # frequency | dso_order
    baseline_method: BaselineMethod
    required_mw: float
    delivered_mw: float
    delivered_share: float
    capacity_share: float | None    # frequency products: lowest quarter of capacity held
    response_share: float | None    # frequency products with an assessed activation: the weakest
    shortfall_mw: float
    shortfall_mwh: float
    required_energy_mwh: float      # energy the frequency (or the order) asked for
    delivered_energy_mwh: float     # the bundle's response energy
    response_time_s: float | None   # slowest assessed activation; None: none assessed or never reached
    required_response_s: float | None
    quarter_shares: tuple[float, ...]
    activations: tuple[ActivationCheck, ...]
    sites: tuple[SiteDelivery, ...]
    vehicles: int
    vehicles_without_data: int
    notes: tuple[str, ...] = field(default=())

    @property
    def hours(self) -> float:
        return (self.mtu_end - self.mtu_start).total_seconds() / 3600


# ------------------------------------------------------------------------------------ checking


@dataclass(frozen=True)
class _Ob:
    obligation_id: str
    product_id: str
    direction: str
    start_ns: int
    end_ns: int
    volume_kw: float
    vehicles: tuple[str, ...]
    kw: np.ndarray


def _aware(ts: object, field_name: str) -> int:
    if not isinstance(ts, datetime) or ts.tzinfo is None or ts.utcoffset() is None:
        raise VerificationInputError(f"{field_name}: must be a timezone-aware datetime, got {ts!r}")
    return int(pd.Timestamp(ts).tz_convert("UTC").as_unit("ns").value)


def _obligation(o: ObligationLike) -> _Ob:
    oid = getattr(o, "obligation_id", None)
    where = f"obligation {oid}"
    if not isinstance(oid, str) or not oid:
        raise VerificationInputError(f"obligation_id: must be a non-empty string, got {oid!r}")
    if o.direction not in SIGN:
        raise VerificationInputError(f"direction: {o.direction!r} of {where} is not up or down")
    start, end = _aware(o.mtu_start, "mtu_start"), _aware(o.mtu_end, "mtu_end")
    if end <= start or (end - start) % _NS:
        raise VerificationInputError(f"mtu_end: {where} must end whole seconds after it starts")
    try:
        volume = float(o.volume_mw)
    except (TypeError, ValueError):
        raise VerificationInputError(f"volume_mw: {o.volume_mw!r} of {where} is not a number") from None
    if not (math.isfinite(volume) and volume > 0):
        raise VerificationInputError(f"volume_mw: {where} must be positive, got {o.volume_mw!r}")
    vehicles = tuple(str(v) for v in o.vehicles)
    kw = np.asarray([float(x) for x in o.kw], dtype=float)
    if len(vehicles) != len(kw) or not vehicles:
        raise VerificationInputError(f"kw: {where} needs one kW per vehicle ({len(vehicles)} vehicles, {len(kw)} kW)")
    if len(set(vehicles)) != len(vehicles):
        raise VerificationInputError(f"vehicles: {where} lists a vehicle twice")
    if not (np.isfinite(kw) & (kw > 0)).all():
        raise VerificationInputError(f"kw: {where} has a kW that is not positive")
    return _Ob(oid, str(o.product_id), o.direction, start, end, volume * 1000, vehicles, kw)


def shared_kw(obligations: Iterable[ObligationLike]) -> dict[str, dict[str, float]]:
    """Per obligation and vehicle, the vehicle's kW summed over every obligation of the same
    direction overlapping it in time: what its headroom and response are shared by."""
    obs = [_obligation(o) for o in obligations]
    out: dict[str, dict[str, float]] = {}
    for o in obs:
        total: dict[str, float] = defaultdict(float)
        mine = set(o.vehicles)
        for p in obs:
            if p.direction == o.direction and p.start_ns < o.end_ns and o.start_ns < p.end_ns:
                for v, kw in zip(p.vehicles, p.kw):
                    if v in mine:
                        total[v] += float(kw)
        out[o.obligation_id] = dict(total)
    return out


def _frequency_hz(frequency: FrequencyTrace | pd.Series, grid_ns: np.ndarray) -> np.ndarray:
    """Hz at each grid time (the sample in force), NaN where the trace says nothing."""
    if isinstance(frequency, FrequencyTrace):
        start = _aware(frequency.start, "frequency.start")
        res = int(round(frequency.resolution_s * _NS))
        i = np.floor_divide(grid_ns - start, res)
        ok = (i >= 0) & (i < len(frequency))
        return np.where(ok, np.asarray(frequency.hz, float)[np.clip(i, 0, max(len(frequency) - 1, 0))], np.nan)
    if isinstance(frequency, pd.Series):
        index = utc_ns(frequency.index, "frequency.index")
        order = np.argsort(index, kind="stable")
        index, hz = index[order], pd.to_numeric(frequency, errors="coerce").to_numpy(float)[order]
        pos = np.searchsorted(index, grid_ns, "right") - 1
        ok = (pos >= 0) & (grid_ns - index[np.clip(pos, 0, None)] <= FREQUENCY_MAX_GAP_S * _NS)
        return np.where(ok, hz[np.clip(pos, 0, None)], np.nan)
    raise VerificationInputError(f"frequency: expected a FrequencyTrace or a pandas Series of Hz, "
                                 f"got {type(frequency).__name__}")


def _kind(product: Product) -> str:
    activation = product.activation.value
    if isinstance(activation, FrequencyActivation):
        return "frequency"
    if isinstance(activation, ManualActivation):
        raise VerificationInputError(
            f"product_id: {product.id} is activated manually (mFRR); verifying it needs the TSO's "
            "activation orders, which are not an input yet")
    return "dso_order"


def _ts(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // _NS, UTC) + timedelta(microseconds=(ns % _NS) // 1000)


def verify_obligation(obligation: ObligationLike, product: Product, measurements: Measurements,
                      baselines: Baseline | Mapping[BaselineMethod, Baseline], resources: Mapping[str, Resource],
                      frequency: FrequencyTrace | pd.Series | None = None, *,
                      shared: Mapping[str, float] | None = None, min_assessed_share: float = 0.1,
                      chunk_vehicles: int = 256) -> list[Delivery]:
    """Verify one obligation, one Delivery per MTU of the product it spans.

    baselines: the baseline for the product's method (`baseline_method_for`), or one per method.
    resources: every vehicle of the obligation (site and limits during the obligation).
    frequency: the grid frequency, at least 1 Hz over the MTU; needed for frequency products.
    shared: the vehicle's kW over overlapping obligations of the same direction (`shared_kw`).
    """
    ob = _obligation(obligation)
    if ob.product_id != product.id:
        raise VerificationInputError(f"product_id: obligation {ob.obligation_id} is for {ob.product_id}, "
                                     f"the product given is {product.id}")
    own = product.direction.value
    if own in ("up", "down") and own != ob.direction:
        raise VerificationInputError(
            f"direction: obligation {ob.obligation_id} is {ob.direction}, {product.id} is {own}")
    if not 0 < min_assessed_share <= 1:
        raise VerificationInputError(f"min_assessed_share: must be in (0, 1], got {min_assessed_share}")
    if not isinstance(measurements, Measurements):
        raise VerificationInputError(f"measurements: expected Measurements, got {type(measurements).__name__}")
    kind = _kind(product)
    method = baseline_method_for(product)
    if isinstance(baselines, Baseline):
        baseline = baselines
    else:
        baseline = baselines.get(method) if isinstance(baselines, Mapping) else None
        if baseline is None:
            raise VerificationInputError(f"baselines: {product.id} is verified against the {method.value} baseline; "
                                         f"none was given")
    missing = [v for v in ob.vehicles if v not in resources]
    if missing:
        raise VerificationInputError(f"resources: no site and limits for vehicle {missing[0]} of obligation "
                                     f"{ob.obligation_id} ({len(missing)} missing)")
    if kind == "frequency" and frequency is None:
        raise VerificationInputError(f"frequency: {product.id} is frequency-activated; give the grid frequency")
    mtu_ns = product.mtu_minutes.value * 60 * _NS
    span = ob.end_ns - ob.start_ns
    if span % mtu_ns:
        raise VerificationInputError(f"mtu_end: obligation {ob.obligation_id} is not a whole number of "
                                     f"{product.mtu_minutes.value}-minute MTUs")
    ratio = np.array([kw / max(float((shared or {}).get(v, kw)), kw) for v, kw in zip(ob.vehicles, ob.kw)])
    return [_verify_mtu(ob, product, kind, method, measurements, _baseline_steps(baseline), resources, frequency,
                        ratio, start, start + mtu_ns, min_assessed_share, max(1, chunk_vehicles))
            for start in range(ob.start_ns, ob.end_ns, mtu_ns)]


def _verify_mtu(ob: _Ob, product: Product, kind: str, method: BaselineMethod, measurements: Measurements,
                base: _Steps, resources: Mapping[str, Resource], frequency, ratio: np.ndarray, start: int, end: int,
                min_share: float, chunk: int) -> Delivery:
    n_mtu = (end - start) // _NS
    requirement = response_requirement(product) if kind == "frequency" else None
    horizon = 0.0
    if requirement is not None:
        horizon = max(float(requirement.checkpoints[-1][0]), float(requirement.energy_within_s or 0))
    n = n_mtu + (int(math.ceil(horizon)) + 1 if kind == "frequency" else 0)
    grid = start + np.arange(n, dtype=np.int64) * _NS
    notes: list[str] = []
    windows: list[ActivationWindow] = []
    band = 0.0
    if kind == "frequency":
        activation = product.activation.value
        band = band_hz(activation)
        symmetric = product.direction.value == "symmetric"
        hz = _frequency_hz(frequency, np.concatenate(([start - _NS], grid)))
        if np.isnan(hz[1:n_mtu + 1]).any():
            gap = int(np.argmax(np.isnan(hz[1:n_mtu + 1])))
            raise VerificationInputError(f"frequency: no reading at {_ts(start + gap * _NS).isoformat()} "
                                         f"(obligation {ob.obligation_id} needs the whole MTU at 1 Hz or faster)")
        share_all = required_share(activation, hz, ob.direction, symmetric)
        before, share = float(np.nan_to_num(share_all[0])), share_all[1:]
        windows = find_activations(share, before, n_mtu, horizon, min_share)
        if before > 0:
            notes.append("an activation was running at the MTU's start: assessed in the MTU it began in")
        small = sum(not w.assessed for w in windows)
        if small:
            notes.append(f"{small} activation(s) under {min_share:.0%} of capacity not assessed")
    else:
        share = np.zeros(n)
        share[:n_mtu] = 1.0
    q_len = QUARTER_S if n_mtu % QUARTER_S == 0 else n_mtu
    quarters = [slice(q, q + q_len) for q in range(0, n_mtu, q_len)]
    sign = SIGN[ob.direction]

    # Vehicles grouped by site, in chunks of whole sites.
    sites_of = np.array([resources[v].site_id for v in ob.vehicles])
    order = np.lexsort((np.arange(len(ob.vehicles)), sites_of))
    site_ids, site_first = np.unique(sites_of[order], return_index=True)
    site_required = np.add.reduceat(ob.kw[order], site_first) / ob.kw.sum() * ob.volume_kw
    site_counts = np.diff(np.append(site_first, len(order)))
    total_r = np.zeros(n)
    total_x = np.zeros(n)
    site_stats: list[dict] = []
    without_data = 0
    steps = measurements._steps  # type: ignore[attr-defined]
    gap_ns = int(measurements.max_gap_s * _NS)
    s_lo = 0
    while s_lo < len(site_ids):
        s_hi = s_lo + 1
        while s_hi < len(site_ids) and site_first[s_hi] - site_first[s_lo] < chunk:
            s_hi += 1
        v_lo = site_first[s_lo]
        v_hi = site_first[s_hi] if s_hi < len(site_ids) else len(order)
        idx = order[v_lo:v_hi]
        vehicles = [ob.vehicles[i] for i in idx]
        m = steps.fill(vehicles, start, n)
        b = base.fill(vehicles, start, n)
        have = m >= 0
        mp = np.clip(m, 0, None)
        valid = have & (grid[None, :] - steps.ts[mp] <= gap_ns)
        without_data += int((~valid[:, :n_mtu].any(axis=1)).sum())
        power = steps.values["power"][mp]
        baseline_kw = np.where(b >= 0, base.values["kw"][np.clip(b, 0, None)], np.nan)
        known = valid & np.isfinite(baseline_kw)
        w = ratio[idx][:, None]
        r = np.where(known, sign * (power - baseline_kw), 0.0) * w
        local_first = site_first[s_lo:s_hi] - v_lo
        r_sites = np.add.reduceat(r, local_first, axis=0)
        total_r += r.sum(axis=0)
        x_sites = None
        if kind == "frequency":
            limits = np.array([(resources[v].max_charge_kw, resources[v].max_discharge_kw) for v in vehicles])
            room = (baseline_kw + limits[:, 1:2]) if ob.direction == "up" else (limits[:, 0:1] - baseline_kw)
            x = np.where(known & steps.values["plugged"][mp], np.clip(room, 0.0, None), 0.0) * w
            x_sites = np.add.reduceat(x, local_first, axis=0)
            total_x += x.sum(axis=0)
        site_stats.append(_stats(kind, r_sites, x_sites, site_required[s_lo:s_hi], share, n_mtu, quarters,
                                 windows, requirement, band, min_share))
        s_lo = s_hi
    whole = _stats(kind, total_r[None, :], total_x[None, :] if kind == "frequency" else None,
                   np.array([ob.volume_kw]), share, n_mtu, quarters, windows, requirement, band, min_share)
    hours = n_mtu / 3600
    delivered_share = _share(whole["share"][0])
    shortfall_kw = ob.volume_kw * (1 - delivered_share)
    site_share = np.concatenate([s["share"] for s in site_stats])
    deficit = site_required * (1 - site_share)
    weights = deficit / deficit.sum() if deficit.sum() > 0 else site_required / site_required.sum()
    site_short = shortfall_kw * weights
    sites = tuple(
        SiteDelivery(str(sid), int(cnt), float(req) / 1000, _share(sh), float(req) * _share(sh) / 1000,
                     float(short) / 1000, float(short) / 1000 * hours, float(reqe) / 1000, float(dele) / 1000, _opt(rt))
        for sid, cnt, req, sh, short, reqe, dele, rt in zip(
            site_ids, site_counts, site_required, site_share, site_short,
            np.concatenate([s["required_kwh"] for s in site_stats]),
            np.concatenate([s["delivered_kwh"] for s in site_stats]),
            np.concatenate([s["response_time"] for s in site_stats])))
    checks = tuple(_check(w, sc, requirement, start) for w, sc in zip(windows, whole["scores"]) if w.assessed)
    if without_data:
        notes.append(f"{without_data} of {len(ob.vehicles)} vehicle(s) reported nothing in the MTU")
    return Delivery(
        obligation_id=ob.obligation_id, product_id=ob.product_id, direction=ob.direction,
        mtu_start=_ts(start), mtu_end=_ts(end), kind=kind, baseline_method=method,
        required_mw=ob.volume_kw / 1000, delivered_mw=ob.volume_kw * delivered_share / 1000,
        delivered_share=delivered_share,
        capacity_share=_opt(whole["capacity"][0]) if kind == "frequency" else None,
        response_share=_opt(whole["response"][0]) if any(w.assessed for w in windows) else None,
        shortfall_mw=shortfall_kw / 1000, shortfall_mwh=shortfall_kw / 1000 * hours,
        required_energy_mwh=float(whole["required_kwh"][0]) / 1000,
        delivered_energy_mwh=float(whole["delivered_kwh"][0]) / 1000,
        response_time_s=_opt(whole["response_time"][0]),
        required_response_s=float(requirement.checkpoints[0][0]) if requirement is not None else None,
        quarter_shares=tuple(float(q) for q in whole["quarters"][:, 0]),
        activations=checks, sites=sites, vehicles=len(ob.vehicles), vehicles_without_data=without_data,
        notes=tuple(notes))


def _share(x: float) -> float:
    return min(max(float(x), 0.0), 1.0) + 0.0     # + 0.0: no -0.0 in reports


def _opt(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _stats(kind: str, r: np.ndarray, x: np.ndarray | None, required_kw: np.ndarray, share: np.ndarray, n_mtu: int,
           quarters: list[slice], windows: list[ActivationWindow], requirement, band: float, min_share: float) -> dict:
    """Delivery of each row (the bundle, or each site) of response `r` and headroom `x` (kW per
    grid second) against `required_kw` (one per row)."""
    rows = r.shape[0]
    out: dict = {"required_kwh": required_kw * float(np.nansum(share[:n_mtu])) / 3600,
                 "delivered_kwh": r[:, :n_mtu].sum(axis=1) / 3600}
    if kind == "frequency":
        q = np.array([np.minimum(x[:, s] / required_kw[:, None], 1.0).mean(axis=1) for s in quarters])
        capacity = q.min(axis=0)
        scores = [score_activation(r, required_kw, share, w, requirement, band, min_share) if w.assessed else None
                  for w in windows]
        proven = [s.proven for s in scores if s is not None]
        response = np.min(proven, axis=0) if proven else np.ones(rows)
        times = [s.response_time_s for s in scores if s is not None]
        if times:
            t = np.vstack(times)
            slowest = np.where(np.isnan(t).any(axis=0), np.nan, np.nanmax(np.where(np.isnan(t), -1, t), axis=0))
        else:
            slowest = np.full(rows, np.nan)
        out.update(quarters=q, capacity=capacity, response=response, share=np.minimum(capacity, response),
                   scores=scores, response_time=slowest)
    else:
        q = np.array([np.clip(r[:, s].sum(axis=1) / (required_kw * (s.stop - s.start)), 0.0, 1.0) for s in quarters])
        out.update(quarters=q, share=q.min(axis=0), scores=[], response_time=np.full(rows, np.nan))
    return out


def _check(window: ActivationWindow, scores, requirement, start_ns: int) -> ActivationCheck:
    first_s, first_share = (float(v) for v in requirement.checkpoints[0])
    at = _ts(start_ns + window.start * _NS)
    ref = float(scores.reference_kw[0])
    need_e = _opt(scores.required_energy_kws[0] / 1000)
    proven = float(scores.proven[0])
    return ActivationCheck(
        start=at, reference_mw=ref / 1000, required_response_s=first_s, required_share=first_share,
        response_time_s=_opt(scores.response_time_s[0]), power_mw=_opt(scores.power_kw[0] / 1000),
        energy_mws=_opt(scores.energy_kws[0] / 1000), required_energy_mws=need_e,
        steady_state_ratio=_opt(scores.steady_ratio[0]), over_delivery=bool(scores.over_delivery[0]),
        proven_share=proven, passed=proven >= 1 - 1e-9)


def verify(obligations: Iterable[ObligationLike], products: Mapping[str, Product] | Callable[[str], Product],
           measurements: Measurements, baselines: Baseline | Mapping[BaselineMethod, Baseline],
           resources: Mapping[str, Resource], frequency: FrequencyTrace | pd.Series | None = None, *,
           min_assessed_share: float = 0.1) -> list[Delivery]:
    """Verify obligations together (a vehicle in several of one direction at once is shared
    between them); `products` maps product ids to products (a Catalogue's `by_id` works)."""
    obligations = list(obligations)
    shares = shared_kw(obligations)
    lookup = products if callable(products) else products.__getitem__
    out = []
    for o in obligations:
        try:
            product = lookup(o.product_id)
        except KeyError:
            raise VerificationInputError(f"product_id: unknown product {o.product_id!r} "
                                         f"(obligation {o.obligation_id})") from None
        out += verify_obligation(o, product, measurements, baselines, resources, frequency,
                                 shared=shares[o.obligation_id], min_assessed_share=min_assessed_share)
    return out
