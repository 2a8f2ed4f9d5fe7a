# %% [markdown]
# # How the simulated fleet behaves
#
# A check by eye that the simulator's fleet looks like real EV charging: when cars are plugged
# in on weekdays and weekends, by kind of owner, how much the fleet draws, and how full the
# batteries are when owners leave. Percent-format notebook: open it in Jupyter (with jupytext)
# or VS Code, or run it top to bottom with `.venv/bin/python notebooks/fleet_behaviour.py`.
# Figures land in `out/notebooks/` (or `$NOTEBOOK_OUT`).

# %%
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import orjson
import pandas as pd

from services.simulator.fleet import generate_fleet
from services.simulator.telemetry import simulate

OUT = Path(os.environ.get("NOTEBOOK_OUT", "out/notebooks"))
OUT.mkdir(parents=True, exist_ok=True)
VEHICLES, DAYS, SEED = int(os.environ.get("NOTEBOOK_VEHICLES", 300)), 14, 7
END = datetime(2026, 11, 23, tzinfo=UTC)

# %% A fortnight of readings every 15 minutes
fleet = generate_fleet(VEHICLES, seed=SEED)
rows = [orjson.loads(m.value) | {"t": m.ts_s}
        for m in simulate(fleet, END - timedelta(days=DAYS), END, cadence_s=900, seed=SEED)]
df = pd.DataFrame(rows)
kind = {v.vehicle_id: h.archetype.value for v, h in zip(fleet.vehicles, fleet.habits)}
local = pd.to_datetime(df["t"], unit="s", utc=True).dt.tz_convert(fleet.zone.timezone)
df = df.assign(kind=df["vehicle_id"].map(kind), hour=local.dt.hour + local.dt.minute / 60,
               day=local.dt.date, weekend=local.dt.dayofweek >= 5)
print(f"{len(df):,} readings of {VEHICLES} vehicles; {df['plugged_in'].mean():.0%} plugged in")

# %% Plugged-in share by time of day, weekday against weekend, per kind of owner
share = df.groupby(["kind", "weekend", "hour"])["plugged_in"].mean()
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True, layout="constrained")
for ax, weekend in zip(axes, (False, True)):
    for k in sorted(df["kind"].unique()):
        s = share.loc[(k, weekend)]
        ax.plot(s.index, s.values, label=k)
    ax.set_title("weekend" if weekend else "weekday")
    ax.set_xlabel("local hour")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("share plugged in")
axes[1].legend()
fig.savefig(OUT / "plugged_in_by_hour.png", dpi=110)

# %% Fleet charging power per day: evening peaks from commuters, night charging on cheap prices
power = df.groupby("t")["power_kw"].sum() / 1000
fig, ax = plt.subplots(figsize=(11, 3), layout="constrained")
ax.plot(pd.to_datetime(power.index, unit="s", utc=True).tz_convert(fleet.zone.timezone), power.values, lw=0.8)
ax.set_ylabel("fleet charging (MW)")
ax.grid(alpha=0.3)
fig.savefig(OUT / "fleet_power.png", dpi=110)

# %% State of charge when a car leaves its charger, against the owner's declared minimum
df = df.sort_values(["vehicle_id", "t"])
leaving = df["plugged_in"] & ~df.groupby("vehicle_id")["plugged_in"].shift(-1, fill_value=True)
at_departure = df[leaving & df["soc_pct"].notna()]
declared = at_departure[at_departure["min_soc_pct"].notna()]
kept = (declared["soc_pct"] >= declared["min_soc_pct"]).mean()
print(f"{len(at_departure):,} departures with a known SoC; median {at_departure['soc_pct'].median():.0f} %; "
      f"{kept:.1%} of declared minimums met")
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ax.hist(at_departure["soc_pct"], bins=40)
ax.set_xlabel("SoC at unplugging (%)")
ax.set_ylabel("departures")
fig.savefig(OUT / "soc_at_departure.png", dpi=110)
