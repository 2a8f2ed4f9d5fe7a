"""Baselines: what each vehicle would have drawn had it not been activated, in kW.

Response is power minus baseline (DESIGN.md, "Data the TSO requires"; the Nordic FCR technical
requirements v1.1, section 3.8). Two documented methods, chosen per product by
:func:`baseline_method_for`:

declared schedule (FCR-D, FCR-N, mFRR)
    The charger's schedule as declared before the activation: the setpoint the VEN reports with
    each measurement. The Nordic TSOs accept the setpoint of a controllable, predetermined load
    as its baseline (section 3.8), and a managed charging session is exactly that. It is also
    the only baseline that sees a one-second FCR response: a historical profile cannot tell a
    response from the owner's own plans.
rolling 5-working-day average (local flexibility)
    For every 15-minute slot of the delivery day, the vehicle's mean measured power in the same
    local slot over the 5 most recent working days before it (NODES' default). A DSO cannot
    audit our schedules, and its market settles against this historical profile, so a DSO
    order is verified the way the DSO will verify it. The declared schedule stays selectable
    where a DSO accepts it.

A baseline is a step function per vehicle: each value holds from its time until the vehicle's
next one. NaN means unknown: nothing is proven delivered where the baseline is unknown.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from flexfleet.markets.catalogue import ManualActivation, OrderActivation, Product


class VerificationInputError(ValueError):
    """An input delivery verification refuses; the message starts with the field at fault."""


class BaselineMethod(StrEnum):
    DECLARED_SCHEDULE = "declared_schedule"
    ROLLING_WORKING_DAYS = "rolling_5_working_days"


def baseline_method_for(product: Product) -> BaselineMethod:
    """The baseline a product is verified against (see the module docstring for why)."""
    activation = product.activation.value
    if isinstance(activation, OrderActivation):
        return BaselineMethod.ROLLING_WORKING_DAYS
    if isinstance(activation, ManualActivation):
        return BaselineMethod.DECLARED_SCHEDULE
    return BaselineMethod.DECLARED_SCHEDULE


def utc_ns(values: pd.Series | pd.DatetimeIndex, field: str) -> np.ndarray:
    """Nanoseconds since the epoch of timezone-aware times; naive or unparsable times are refused."""
    if len(values) == 0:
        return np.empty(0, dtype=np.int64)
    try:
        index = pd.DatetimeIndex(values)
    except (TypeError, ValueError) as exc:
        raise VerificationInputError(f"{field}: not date-times ({exc})") from None
    if index.tz is None:
        raise VerificationInputError(f"{field}: must be timezone-aware (UTC)")
    if index.hasnans:
        raise VerificationInputError(f"{field}: missing time at row {int(np.argmax(index.isna()))}")
    return index.tz_convert("UTC").as_unit("ns").asi8


def require_columns(frame: pd.DataFrame, what: str, columns: Iterable[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise VerificationInputError(f"{what}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise VerificationInputError(f"{what}.{missing[0]}: missing column (have {list(frame.columns)})")


@dataclass(frozen=True, eq=False)
class Baseline:
    """Per-vehicle baseline in kW (+ charging, - discharging, as telemetry.v1): columns
    vehicle_id, ts (timezone-aware), baseline_kw (NaN: unknown), each value a step that holds
    until the vehicle's next row."""

    method: BaselineMethod
    frame: pd.DataFrame

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", BaselineMethod(self.method))
        require_columns(self.frame, "baseline", ("vehicle_id", "ts", "baseline_kw"))
        utc_ns(self.frame["ts"], "baseline.ts")
        kw = pd.to_numeric(self.frame["baseline_kw"], errors="coerce").to_numpy(float)
        bad = np.isinf(kw) | (self.frame["baseline_kw"].notna().to_numpy() & np.isnan(kw))
        if bad.any():
            i = int(np.argmax(bad))
            raise VerificationInputError(
                f"baseline.baseline_kw: {self.frame['baseline_kw'].iloc[i]!r} for vehicle "
                f"{self.frame['vehicle_id'].iloc[i]} is not a finite number")


def declared_schedule(frame: pd.DataFrame) -> Baseline:
    """The declared schedule as a baseline: rows vehicle_id, ts, baseline_kw as the VEN reported
    them (rows without a declared value are dropped, so the previous declaration holds)."""
    require_columns(frame, "baseline", ("vehicle_id", "ts", "baseline_kw"))
    rows = frame.loc[frame["baseline_kw"].notna(), ["vehicle_id", "ts", "baseline_kw"]]
    return Baseline(BaselineMethod.DECLARED_SCHEDULE, rows.reset_index(drop=True))


def working_days_before(day: date, count: int, holidays: Collection[date] = (),
                        exclude: Collection[date] = ()) -> list[date]:
    """The `count` most recent working days (Monday to Friday, not a holiday, not excluded, e.g.
    because the vehicle was activated then) strictly before `day`, newest first."""
    if count < 1:
        raise VerificationInputError(f"working_days: need at least 1, got {count}")
    out, d = [], day
    while len(out) < count:
        d -= timedelta(days=1)
        if d.weekday() < 5 and d not in holidays and d not in exclude:
            out.append(d)
        if (day - d).days > 366:
            raise VerificationInputError("holidays: no working day in the year before the delivery day")
    return out


def rolling_average(history: pd.DataFrame, start: datetime, end: datetime, timezone: str, *,
                    vehicles: Iterable[str] | None = None, working_days: int = 5, slot_minutes: int = 15,
                    holidays: Collection[date] = (), exclude_days: Collection[date] = ()) -> Baseline:
    """The NODES-style baseline for the local days overlapping [start, end).

    history: measured power, columns vehicle_id, ts (timezone-aware), power_kw (telemetry's one
    reading a minute is enough). Each slot's value is the mean of the vehicle's readings in that
    local slot, averaged over the reference days that have readings in it; a slot no reference
    day covers is NaN (unknown). `vehicles` adds all-NaN rows for vehicles without history, so
    the result says "unknown" for them rather than nothing.
    """
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise VerificationInputError(f"timezone: unknown IANA timezone {timezone!r}") from None
    if slot_minutes <= 0 or 1440 % slot_minutes:
        raise VerificationInputError(f"slot_minutes: must divide a day, got {slot_minutes}")
    for name, ts in (("start", start), ("end", end)):
        if not isinstance(ts, datetime) or ts.tzinfo is None:
            raise VerificationInputError(f"{name}: must be a timezone-aware datetime, got {ts!r}")
    if end <= start:
        raise VerificationInputError("end: must be after start")
    require_columns(history, "history", ("vehicle_id", "ts", "power_kw"))
    utc_ns(history["ts"], "history.ts")
    local = pd.DatetimeIndex(pd.to_datetime(history["ts"], utc=True)).tz_convert(tz)
    power = pd.to_numeric(history["power_kw"], errors="coerce").to_numpy(float)
    if not np.isfinite(power).all():
        i = int(np.argmax(~np.isfinite(power)))
        raise VerificationInputError(f"history.power_kw: {history['power_kw'].iloc[i]!r} for vehicle "
                                     f"{history['vehicle_id'].iloc[i]} is not a finite number")
    slot = (local.hour * 60 + local.minute) // slot_minutes
    means = (pd.DataFrame({"vehicle_id": history["vehicle_id"].astype(str).to_numpy(), "day": local.date,
                           "slot": np.asarray(slot), "power_kw": power})
             .groupby(["vehicle_id", "day", "slot"], sort=False)["power_kw"].mean().reset_index())
    wanted = sorted(set(means["vehicle_id"]) | set(map(str, vehicles or ())))
    first = start.astimezone(tz).date()
    last = (end - timedelta(microseconds=1)).astimezone(tz).date()
    frames = []
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        refs = set(working_days_before(day, working_days, holidays, exclude_days))
        profile = (means[means["day"].isin(refs)].groupby(["vehicle_id", "slot"])["power_kw"].mean()
                   .unstack("slot").reindex(index=wanted, columns=range(1440 // slot_minutes)))
        # The day's real slots (92, 96 or 100 across DST), each with its wall-clock slot's value.
        starts = pd.date_range(pd.Timestamp(day).tz_localize(tz), pd.Timestamp(day + timedelta(days=1)).tz_localize(tz),
                               freq=f"{slot_minutes}min", inclusive="left")
        wall = (starts.hour * 60 + starts.minute) // slot_minutes
        values = profile.to_numpy(float)[:, np.asarray(wall)]
        frames.append(pd.DataFrame({"vehicle_id": np.repeat(wanted, len(starts)),
                                    "ts": np.tile(starts.tz_convert("UTC"), len(wanted)),
                                    "baseline_kw": values.reshape(-1)}))
    frame = (pd.concat(frames, ignore_index=True) if frames
             else pd.DataFrame(columns=["vehicle_id", "ts", "baseline_kw"]))
    return Baseline(BaselineMethod.ROLLING_WORKING_DAYS, frame)
