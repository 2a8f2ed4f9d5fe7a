"""Settling a fleet's month: 100,000 owners, one month of 15-minute MTUs, in under 2 minutes.

    nice -n 19 .venv/bin/python benchmarks/settlement.py [--owners 100000 --baseline-owners 500 --runs 1
                                                          --blast-traces 30 --write-docs]

The month (December 2026, SE3: 2,976 MTUs) is synthetic and seeded, drawn with numpy:
- owners with one car (8 % with two), each on one of five plans in EUR, SEK, NOK and DKK
  (availability with a monthly minimum, revenue share with an annual cap, fixed pay with
  wear pass-through, energy with a rate change on the 15th, free charging);
- plug-in patterns by archetype (commuter, home worker, night-only fleet car, occasional):
  arrival and departure drawn per car and day, ~half the month's MTUs plugged in; charging
  after arrival, platform charging and V2G discharge now and then, broken promises rarely;
- FCR-D up and FCR-D down every hour with ~1.2 % of the fleet committed (1,200 cars of
  100,000 each hour, drawn from the cars plugged in all hour), some with penalties.

Measured: `settle_month` on `VehicleMtus` columns (what a fleet's month is given as) for
--owners, and the per-record reference path (`VehicleMtu` records, `columnar=False`) on
--baseline-owners, each as seconds per 1,000 owners, plus the time to build the records.
Wear: 30 % of cars are V2G and discharge now and then; each of them gets a month of 15-minute
SoC built from its own rows, with its reference (`flexfleet.settlement.wear_pay`). Measured: the
month settled with those traces minus without, and BLAST-Lite run over --blast-traces of them
(trace and reference, the raw library) as the baseline the curve replaces.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal as D

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from _report import figures, machine, median, update_section
from flexfleet.settlement import (ChargingRefund, Commitment, Contract, ContractTerm, Month, ObligationMtu, Penalty,
                                  RefundScope, SocTrace, VehicleMtu, settle_month)
from flexfleet.settlement.inputs import VehicleMtus
from flexfleet.settlement.wear_pay import reference_soc

console = Console(width=160)
MONTH = Month(date(2026, 12, 1), "SE3")
Q = timedelta(minutes=15)
DAYS, QPD = 31, 96
UP, DOWN = "FCR-D-up/SE_DK2", "FCR-D-down/SE_DK2"
V2G_SHARE = 0.3     # 16 % of EV models on sale can discharge (SOURCES.md); an aggregator seeks them out
ARCHETYPES = {          # share of cars, arrival hour (mean, sd), departure hour next day (mean, sd), days plugged
    "commuter": (0.45, (17.5, 1.5), (7.5, 0.7), 0.9),
    "home_worker": (0.2, (12.0, 3.0), (13.0, 3.0), 0.95),
    "night_fleet": (0.15, (22.0, 1.0), (5.5, 0.5), 0.97),
    "occasional": (0.2, (19.0, 2.0), (8.0, 1.5), 0.4),
}


def _plans() -> list[tuple[str, tuple[ContractTerm, ...]]]:
    s, mid = MONTH.start, MONTH.start + 14 * QPD * Q
    return [
        ("EUR", (ContractTerm("avail-2026", s - 200 * QPD * Q, availability_per_hour=D("0.08"),
                              min_plugged_in_hours=D(200), credit_per_broken_departure=D("5.00")),)),
        ("SEK", (ContractTerm("share-2026", s - 300 * QPD * Q, revenue_share_pct=D(50), energy_per_kwh=D("0.50"),
                              charging_refund=ChargingRefund(RefundScope.PLATFORM_CAUSED), annual_cap=D("5000")),)),
        ("NOK", (ContractTerm("fixed-2026", s - 100 * QPD * Q, fixed_monthly=D("150"), wear_factor=D(1),
                              charging_refund=ChargingRefund(per_kwh=D("1.20")), credit_per_broken_min_soc=D(20)),)),
        ("EUR", (ContractTerm("energy-nov", s - 30 * QPD * Q, energy_per_kwh=D("0.10"),
                              availability_per_hour=D("0.05")),
                 ContractTerm("energy-dec15", mid, energy_per_kwh=D("0.12"), availability_per_hour=D("0.05")))),
        ("DKK", (ContractTerm("free-charging", s - 60 * QPD * Q, min_plugged_in_hours=D(100),
                              charging_refund=ChargingRefund(RefundScope.ALL, D("2.50"))),)),
    ]


@dataclass
class Fleet:
    contracts: list[Contract]
    obligations: list[ObligationMtu]
    cols: VehicleMtus
    commitments: int


def _plugged(rng: np.random.Generator, n: int) -> np.ndarray:
    """(cars, MTUs) plugged in: per archetype, an arrival and a departure drawn per car and day."""
    kinds = rng.choice(len(ARCHETYPES), size=n, p=[a[0] for a in ARCHETYPES.values()])
    out = np.zeros((n, DAYS * QPD), bool)
    q = np.arange(2 * QPD)
    for k, (_, (am, asd), (dm, dsd), days) in enumerate(ARCHETYPES.values()):
        cars = np.flatnonzero(kinds == k)
        for d in range(DAYS):
            arrive = np.clip(rng.normal(am, asd, len(cars)) * 4, 0, QPD - 1).astype(np.int32)
            stay = rng.normal(dm, dsd, len(cars)) * 4 + QPD * (dm < am) - arrive
            leave = arrive + np.clip(stay, 4, 2 * QPD - 1).astype(np.int32)
            home = (rng.random(len(cars)) < days)[:, None]
            on = (q[None, :] >= arrive[:, None]) & (q[None, :] < leave[:, None]) & home
            hi = min(2 * QPD, (DAYS - d) * QPD)
            out[cars, d * QPD:d * QPD + hi] |= on[:, :hi]
    return out


def synthetic_fleet(owners: int, seed: int = 7, commit_share: float = 0.012) -> Fleet:
    rng = np.random.default_rng(seed)
    plans = _plans()
    two = rng.random(owners) < 0.08
    n = owners + int(two.sum())
    vids = tuple(f"car-{i:07d}" for i in range(n))
    plan_of_owner = rng.choice(len(plans), size=owners, p=[0.3, 0.25, 0.15, 0.2, 0.1])
    contracts, plan_of_car, car = [], np.empty(n, np.int64), 0
    for o in range(owners):
        k = 2 if two[o] else 1
        cur, terms = plans[plan_of_owner[o]]
        contracts.append(Contract(f"c-{o:07d}", f"owner-{o:07d}", vids[car:car + k], cur, terms))
        plan_of_car[car:car + k] = plan_of_owner[o]
        car += k
    plugged = _plugged(rng, n)
    vehicle, mtu = np.nonzero(plugged)              # row-major: sorted by car, then MTU
    rows = len(vehicle)
    arrival = plugged & ~np.roll(plugged, 1, axis=1)
    del plugged
    arrivals = arrival[vehicle, mtu]
    del arrival
    # Charging in the hours after arrival; platform charging now and then, V2G discharge (V2G cars).
    charging = (rng.random(rows) < 0.25) | arrivals
    charged = np.where(charging, rng.integers(500, 2751, rows), 0).astype(np.int32)
    platform = np.where(rng.random(rows) < 0.1, charged // 2, 0).astype(np.int32)
    v2g = np.random.default_rng(seed + 1000).random(n) < V2G_SHARE
    discharged = np.where((rng.random(rows) < 0.03) & v2g[vehicle], rng.integers(100, 3001, rows), 0).astype(np.int32)
    curve = np.round((0.9 + 0.6 * np.sin(np.arange(DAYS * QPD) / QPD * 2 * np.pi) + rng.normal(0, 0.3, DAYS * QPD))
                     * 10_000).astype(np.int32)         # spot price, 10^-4 per kWh (negative now and then)
    factor = np.array([{"EUR": 0.1, "SEK": 1.15, "NOK": 1.17, "DKK": 0.75}[p[0]] for p in plans])
    price = np.round(curve[mtu] * factor[plan_of_car[vehicle]]).astype(np.int32)
    broken_dep = (rng.random(rows) < 0.0005).astype(np.uint8)
    broken_soc = (rng.random(rows) < 0.0003).astype(np.uint8)
    cols = VehicleMtus(vids, MONTH.start, vehicle.astype(np.int32), mtu.astype(np.int16), np.ones(rows, bool),
                       controllable=rng.random(rows) < 0.96, discharged=discharged, charged=charged,
                       platform_charged=platform, charging_price=price, broken_departures=broken_dep,
                       broken_min_soc=broken_soc, kwh_places=3, price_places=4)
    obligations, commitments = _obligations(rng, cols, n, vids, commit_share)
    return Fleet(contracts, obligations, cols, commitments)


def _obligations(rng: np.random.Generator, cols: VehicleMtus, n: int, vids: tuple[str, ...],
                 share: float) -> tuple[list[ObligationMtu], int]:
    """FCR-D up and down every hour, backed by cars plugged in the whole hour."""
    hour_rows = np.zeros((n, DAYS * 24), np.int8)
    np.add.at(hour_rows, (cols.vehicle, cols.mtu.astype(np.int64) // 4), 1)
    kws = [D("3.7"), D("5.5"), D("7.4"), D("11")]
    per = max(1, int(n * share))
    out, total = [], 0
    for h in range(DAYS * 24):
        ready = np.flatnonzero(hour_rows[:, h] == 4)
        chosen = rng.choice(ready, size=min(len(ready), 2 * per), replace=False)
        start = MONTH.start + h * 4 * Q
        for product, cars, base in ((UP, chosen[:per], 30), (DOWN, chosen[per:], 12)):
            if not len(cars):
                continue
            kw = rng.integers(0, len(kws), len(cars))
            commits = tuple(Commitment(vids[c], kws[k]) for c, k in zip(np.sort(cars).tolist(), kw.tolist()))
            mw = (sum(kws[k] for k in kw.tolist()) * D("0.9") / 1000).quantize(D("0.1"))
            price = D(str(round(base * (0.5 + rng.random()), 2)))
            pens = ()
            if rng.random() < 0.03:
                pens = (Penalty("capacity_not_held", "withheld", (mw * D("0.1")).quantize(D("0.001")), price),)
            out.append(ObligationMtu(f"{product.split('/')[0]}-{h:03d}", product, start, start + 4 * Q, "EUR",
                                     max(mw, D("0.1")), price, commits, pens))
            total += len(cars)
    return out, total


def records(cols: VehicleMtus) -> list[VehicleMtu]:
    """The same rows as `VehicleMtu` records (what the per-record path takes)."""
    s, ids = cols.origin, cols.vehicle_ids
    scale = D(1).scaleb(-cols.kwh_places)
    pscale = D(1).scaleb(-cols.price_places)
    out = []
    for v, m, c, dis, ch, pl, pr, bd, bs in zip(
            cols.vehicle.tolist(), cols.mtu.tolist(), cols.controllable.tolist(), cols.discharged.tolist(),
            cols.charged.tolist(), cols.platform_charged.tolist(), cols.charging_price.tolist(),
            cols.broken_departures.tolist(), cols.broken_min_soc.tolist()):
        out.append(VehicleMtu(ids[v], s + m * Q, True, c, D(dis) * scale, D(ch) * scale, D(pl) * scale,
                              D(pr) * pscale, bd, bs))
    return out


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def soc_traces(fleet: Fleet, chunk: int = 4000) -> list[SocTrace]:
    """A month of 15-minute SoC per car that discharged, from its own rows, with its reference.

    60 kWh cars: plugged-in MTUs move the SoC by charged - discharged energy (charging stops at
    90 %); away, a car drives 1.5 % of its battery an MTU (never under 10 %).
    """
    cols, n_mtu = fleet.cols, DAYS * QPD
    cars = np.unique(cols.vehicle[cols.discharged > 0])
    out: list[SocTrace] = []
    for lo in range(0, len(cars), chunk):
        part = cars[lo:lo + chunk]
        rows = np.flatnonzero(np.isin(cols.vehicle, part))
        r = np.searchsorted(part, cols.vehicle[rows])
        plugged = np.zeros((len(part), n_mtu), bool)
        delta = np.zeros((len(part), n_mtu), np.float64)
        plugged[r, cols.mtu[rows]] = True
        delta[r, cols.mtu[rows]] = (cols.charged[rows].astype(np.float64) - cols.discharged[rows]) / 60_000
        discharging = np.zeros((len(part), n_mtu), bool)
        discharging[r, cols.mtu[rows]] = cols.discharged[rows] > 0
        soc = np.empty((len(part), n_mtu))
        s = np.full(len(part), 0.6)
        for t in range(n_mtu):
            d = delta[:, t]
            s = np.where(plugged[:, t], np.minimum(s + d, np.maximum(s, 0.9)), np.maximum(s - 0.015, 0.1))
            soc[:, t] = s
        soc = np.clip(soc, 0.0, 1.0).round(6)
        for i, c in enumerate(part.tolist()):
            out.append(SocTrace(cols.vehicle_ids[c], MONTH.start, 900.0, soc[i], "NMC", D(60), D("90"), "EUR", 10.0,
                                reference_soc(soc[i], plugged[i], discharging[i])))
    return out


def with_traces_seconds(fleet: Fleet, traces: list[SocTrace]) -> float:
    """Seconds to settle the month with the fleet's SoC traces (the wear is this minus without)."""
    from flexfleet.settlement.wear_pay import assess_wear
    assess_wear(traces[0])                  # BLAST-Lite takes seconds to import, the curve a second to fit
    gc.collect()
    began = time.perf_counter()
    s = settle_month(MONTH, fleet.contracts, fleet.obligations, fleet.cols, traces)
    took = time.perf_counter() - began
    assert all(x.balanced for x in s.reconciliation)
    return took


def blast_against_curve(traces: list[SocTrace], n: int) -> tuple[float, float, float]:
    """The raw library on `n` traces: BLAST-Lite's cycling loss of trace and reference (two runs
    each, 15 degC), against the curve. Returns (ms a car BLAST-Lite, ms a car curve, loss ratio)."""
    from flexfleet.battery.wear import capacity_loss
    from flexfleet.settlement.wear_pay import assess_wear
    sample = traces[:n]
    began = time.perf_counter()
    blast = [max(0.0, capacity_loss(t.soc, 10.0, 900.0, "NMC").cycling_loss
                 - capacity_loss(t.reference_soc, 10.0, 900.0, "NMC").cycling_loss) for t in sample]
    t_blast = time.perf_counter() - began
    began = time.perf_counter()
    curve = [assess_wear(t).platform_loss for t in sample]
    t_curve = time.perf_counter() - began
    return t_blast / len(sample) * 1000, t_curve / len(sample) * 1000, sum(blast) / max(sum(curve), 1e-18)


def _subset(cols: VehicleMtus, keep: set[str]) -> VehicleMtus:
    ids = cols.vehicle_ids
    mask = np.isin(cols.vehicle, [i for i, v in enumerate(ids) if v in keep])
    return VehicleMtus(ids, cols.origin, cols.vehicle[mask], cols.mtu[mask], cols.plugged_in[mask],
                       controllable=cols.controllable[mask], discharged=cols.discharged[mask],
                       charged=cols.charged[mask], platform_charged=cols.platform_charged[mask],
                       charging_price=cols.charging_price[mask], broken_departures=cols.broken_departures[mask],
                       broken_min_soc=cols.broken_min_soc[mask], kwh_places=cols.kwh_places,
                       price_places=cols.price_places)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--owners", type=int, default=100_000)
    ap.add_argument("--baseline-owners", type=int, default=500, help="owners for the per-record reference path")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--blast-traces", type=int, default=30, help="traces BLAST-Lite runs over, as the baseline")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()

    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), console=console)
    res: dict[str, list[float]] = {"fast": [], "base": [], "build": [], "wear": [], "traces": []}
    with progress:
        task = progress.add_task("settle", total=args.runs * 3)
        for r in range(args.runs):
            progress.update(task, description=f"baseline: {args.baseline_owners:,} owners, per record, run {r + 1}")
            small = synthetic_fleet(args.baseline_owners, args.seed + r)
            began = time.perf_counter()
            recs = records(small.cols)
            res["build"].append(time.perf_counter() - began)
            began = time.perf_counter()
            base = settle_month(MONTH, small.contracts, small.obligations, recs, columnar=False)
            res["base"].append(time.perf_counter() - began)
            assert settle_month(MONTH, small.contracts, small.obligations, small.cols) == base
            del recs, base
            progress.advance(task)
            progress.update(task, description=f"columnar: generating {args.owners:,} owners, run {r + 1}")
            fleet = synthetic_fleet(args.owners, args.seed + r)
            gc.collect()
            progress.update(task, description=f"columnar: {args.owners:,} owners, {len(fleet.cols):,} vehicle MTUs, "
                                              f"{fleet.commitments:,} commitments, run {r + 1}")
            began = time.perf_counter()
            s = settle_month(MONTH, fleet.contracts, fleet.obligations, fleet.cols)
            res["fast"].append(time.perf_counter() - began)
            rows, lines, entries, commitments = len(fleet.cols), len(s.lines), len(s.entries), fleet.commitments
            reconciled = all(x.balanced for x in s.reconciliation)
            del s
            progress.advance(task)
            progress.update(task, description=f"wear: building the SoC traces of the cars that discharged, run {r + 1}")
            began = time.perf_counter()
            traces = soc_traces(fleet)
            res["traces"].append(time.perf_counter() - began)
            progress.update(task, description=f"wear: settling with {len(traces):,} SoC traces, run {r + 1}")
            res["wear"].append(with_traces_seconds(fleet, traces) - res["fast"][-1])
            progress.advance(task)
            if r + 1 < args.runs:
                del fleet, traces
                gc.collect()
        progress.update(task, description=f"wear: BLAST-Lite over {args.blast_traces} traces, the baseline")
        ms_blast, ms_curve, loss_ratio = blast_against_curve(traces, args.blast_traces)

    per = 1000 / args.owners
    fast, base, wear = median(res["fast"]), median(res["base"]), median(res["wear"])
    base_per, build_per = base / args.baseline_owners * 1000, median(res["build"]) / args.baseline_owners * 1000
    runs = lambda k: ", ".join(f"{x:.1f}" for x in res[k])     # noqa: E731
    cells = [("owners (columnar)", f"{args.owners:,}"), ("vehicle MTUs", f"{rows:,}"),
             ("commitments", f"{commitments:,}"), ("owner lines / journal entries", f"{lines:,} / {entries:,}"),
             ("columnar without wear: median s", f"{fast:.1f} (runs: {runs('fast')})"),
             ("columnar: s per 1,000 owners", f"{fast * per:.2f}"),
             ("per record (reference) on", f"{args.baseline_owners:,} owners"),
             ("per record: s per 1,000 owners", f"{base_per:.2f} (+ {build_per:.2f} to build the records)"),
             ("per record, extrapolated to the fleet", f"{(base_per + build_per) * args.owners / 1000:,.0f} s"),
             ("speed-up: settling / with building the records",
              f"{base_per / (fast * per):.1f}x / {(base_per + build_per) / (fast * per):.0f}x"),
             ("SoC traces (cars that discharged, 30 % of cars are V2G)", f"{len(traces):,}"),
             ("wear: median s added to the month", f"{wear:.1f} (runs: {runs('wear')}); "
                                                    f"{wear / len(traces) * 1000:.2f} ms a car"),
             ("the whole month with wear: median s", f"{fast + wear:.1f}"),
             ("wear: BLAST-Lite over trace and reference (the raw library)",
              f"{ms_blast:.1f} ms a car, {ms_blast / ms_curve:.0f}x the curve's {ms_curve:.2f} ms "
              f"({args.blast_traces} traces), so {ms_blast * len(traces) / 60_000:,.0f} min for these cars"),
             ("wear: BLAST-Lite's loss / the curve's", f"{loss_ratio:.1f}"),
             ("building the traces and references (input, not settling)", f"{median(res['traces']):.1f} s"),
             ("reconciled", str(reconciled)), ("peak RSS", f"{_rss_gb():.1f} GB")]
    md = figures(console, f"settle_month: {MONTH.label}, {MONTH.n_mtus:,} MTUs", cells)
    if args.write_docs:
        update_section("settlement", "## Settlement: a fleet's month\n\n" + machine()
                       + f", {args.runs} run(s), median; `nice -n 19 .venv/bin/python benchmarks/settlement.py`\n\n"
                       + md + "\n\n" + _reading(fast, wear, len(traces)),
                       f"{args.owners:,} owners' month with wear in {fast + wear:.0f} s")


def _reading(fast: float, wear: float, traces: int) -> str:
    """What the figures say against the 2-minute target."""
    return (f"Target: 100,000 owners' month in under 2 minutes. Settling it (owner pay, revenue shares, attribution, "
            f"conversion, the ledger and its reconciliation) takes {fast:.0f} s, and the wear of the {traces:,} cars "
            f"the platform discharged {wear:.0f} s more: {fast + wear:.0f} s in all. Wear is priced on the battery "
            "model's cycle-depth curve (rainflow counting on the trace's turning points, trace minus its reference); "
            "BLAST-Lite itself run over every car's month would take the time in the row above. Cars the platform "
            "never discharged have no trace: their cycling is their own.")


if __name__ == "__main__":
    main()
