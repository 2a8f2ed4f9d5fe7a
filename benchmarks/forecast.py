"""Forecast training and issuing time on the acceptance fleet, and the backtest scores that go with it.

    .venv/bin/python benchmarks/forecast.py [--vehicles 2000 --weeks 8 --test-days 14 --runs 3 --write-docs]

A simulated fleet's sessions over --weeks weeks; the models train on all but the last
--test-days days (two LightGBM availability models, one per direction, and their portfolio
calibration; then the SoC and departure quantile models, three boosters each), then issue
48-hour forecasts. Baselines measured in the same run: LightGBM alone on the same training
rows (the raw library), the booster's bare predict for the issued rows, and the seasonal-naive
forecast whose pinball loss the model must beat. Times are medians of --runs runs.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta

import lightgbm as lgb
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from _report import machine, median, update_section
from flexfleet.domain.time import mtu_floor
from flexfleet.domain.zones import BiddingZone
from flexfleet.forecast.availability import PARAMS, ROUNDS, ROWS_PER_ISSUE
from flexfleet.forecast.features import FEATURES, HORIZON, WARM_UP, FeatureGrid
from flexfleet.forecast.grid import session_grid
from flexfleet.forecast.pipeline import TRAIN_EVERY, backtest_forecaster, issue_forecast, train_forecaster
from flexfleet.forecast.soc import MODEL_FEATURES
from services.forecaster.cli import simulated_sessions

console = Console()
# Power while plugged in, and power held for 20 minutes (FCR-D's limited energy reservoir).
DIRECTIONS = ("up", "down", "up_20min", "down_20min")
END = datetime.fromisoformat("2026-11-23T00:00:00+01:00")


def timed_training(sessions, specs, zone, start, until, seed):
    """Train once; seconds per step as reported by the pipeline's progress callback."""
    marks: list[tuple[str, float]] = []
    began = time.perf_counter()
    forecaster = train_forecaster(sessions, specs, zone, start, until, seed,
                                  progress=lambda step: marks.append((step, time.perf_counter())))
    ended = time.perf_counter()
    steps: dict[str, float] = {"building the grid": marks[0][1] - began}
    for (step, t), (_, t_next) in zip(marks, marks[1:] + [("", ended)]):
        steps[step.split()[0]] = steps.get(step.split()[0], 0.0) + t_next - t
    return forecaster, ended - began, steps


def raw_lightgbm(sessions, ids, zone, start, until, seed: int) -> tuple[float, int]:
    """LightGBM alone, one direction: the same parameters and rounds on as many real feature rows
    as the pipeline trains on (seconds for both directions, rows per direction)."""
    start = mtu_floor(start)
    grid = session_grid(sessions, ids, start, int((until - start).total_seconds() // 900))
    fg = FeatureGrid(grid, BiddingZone.parse(zone), "up")
    issues = len(range(WARM_UP, grid.n_mtus - HORIZON + 1, TRAIN_EVERY))
    rows = issues * min(ROWS_PER_ISSUE, len(fg.vehicles) * HORIZON)
    x = fg.frame(grid.n_mtus - 3 * HORIZON)[list(FEATURES)].to_numpy(np.float32)
    x = np.resize(x, (rows, x.shape[1]))
    y = np.random.default_rng(seed).random(rows)
    began = time.perf_counter()
    lgb.train(PARAMS | {"seed": seed}, lgb.Dataset(x, y, feature_name=list(FEATURES)), num_boost_round=ROUNDS)
    return 2 * (time.perf_counter() - began), rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vehicles", type=int, default=2000)
    ap.add_argument("--weeks", type=int, default=8)
    ap.add_argument("--test-days", type=int, default=14)
    ap.add_argument("--zone", default="SE3")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()

    with console.status("simulating the fleet's sessions"):
        sessions, specs, start = simulated_sessions(args.vehicles, args.weeks, args.seed, args.zone, END)
    ids = list(specs.index)
    until = END - timedelta(days=args.test_days)
    train_s, steps_runs, issue_s, forecaster = [], [], [], None
    with Progress(console=console) as progress:
        task = progress.add_task("training", total=args.runs)
        for _ in range(args.runs):
            forecaster, seconds, steps = timed_training(sessions, specs, args.zone, start, until, args.seed)
            train_s.append(seconds)
            steps_runs.append(steps)
            console.print(f"training run {len(train_s)}: {seconds:.1f} s ("
                          + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()) + ")")
            progress.advance(task)
        task = progress.add_task("issuing 48-hour forecasts", total=args.runs)
        for k in range(args.runs):
            began = time.perf_counter()
            issue_forecast(forecaster, sessions, specs, until + timedelta(days=k, hours=7))
            issue_s.append(time.perf_counter() - began)
            progress.advance(task)
    raw_train, rows = raw_lightgbm(sessions, ids, args.zone, start, until, args.seed)
    rng = np.random.default_rng(0)
    x = rng.random((len(ids) * HORIZON, len(FEATURES))).astype(np.float32)
    began = time.perf_counter()
    forecaster.models["up"].booster.predict(x, num_threads=PARAMS["num_threads"])
    raw_predict = 2 * (time.perf_counter() - began)   # two directions
    x = rng.random((len(ids) * HORIZON, len(MODEL_FEATURES))).astype(np.float32)
    began = time.perf_counter()
    for model in (forecaster.soc, forecaster.departure):
        if model is not None:
            model.predict(x)
    raw_predict += time.perf_counter() - began     # the SoC and departure boosters
    with console.status("backtesting on the test days"):
        bt = backtest_forecaster(forecaster, sessions, specs, start, END)

    step_names = list(steps_runs[0])
    step_medians = {k: median([s[k] for s in steps_runs]) for k in step_names}
    s = bt.summary.set_index(["direction", "forecaster"])
    table = Table("figure", "value", "vs baseline")
    table.add_row("training, availability + SoC/departure (s)", f"{median(train_s):.1f}", f"{median(train_s) / raw_train:.2f}x raw LightGBM ({raw_train:.1f} s)")
    table.add_row("48-hour forecast (s)", f"{median(issue_s):.2f}", f"{median(issue_s) / raw_predict:.1f}x bare predict ({raw_predict:.2f} s)")
    for d in DIRECTIONS:
        ratio = s.loc[(d, "model"), "pinball_mean"] / s.loc[(d, "seasonal_naive"), "pinball_mean"]
        table.add_row(f"{d}: pinball loss (kW)", f"{s.loc[(d, 'model'), 'pinball_mean']:.1f}", f"{ratio:.2f}x seasonal naive")
        table.add_row(f"{d}: P90 coverage", f"{s.loc[(d, 'model'), 'p90_coverage']:.3f}",
                      f"naive {s.loc[(d, 'seasonal_naive'), 'p90_coverage']:.3f}")
    for m in bt.models.itertuples():
        table.add_row(f"{m.model}: pinball loss ({m.unit})", f"{m.pinball_mean:.2f}",
                      f"P10: {m.below_q10:.3f} below, {m.coverage_q10:.3f} at or below")
    console.print(table)
    console.print("training steps (median s): " + ", ".join(f"{k} {v:.1f}" for k, v in step_medians.items()))

    if args.write_docs:
        lines = [
            "## Forecast (`benchmarks/forecast.py`)", "",
            f"{len(ids):,} simulated vehicles, {len(sessions):,} sessions over {args.weeks} weeks ({args.zone}); "
            f"trained on all but the last {args.test_days} days, scored on forecasts issued at 08:00 each test day; "
            f"times are medians of {args.runs} runs; {machine()}.", "",
            "Reproduce: `.venv/bin/python benchmarks/forecast.py --write-docs` (or `make bench`).", "",
            "| figure | value | runs | baseline in the same run | ratio |", "|---|---:|---|---|---:|",
            f"| training (availability both directions, calibration, SoC and departure models) | {median(train_s):.1f} s | "
            f"{', '.join(f'{x:.1f}' for x in train_s)} | LightGBM alone (availability only), 2 x {rows:,} rows x {ROUNDS} rounds: {raw_train:.1f} s "
            f"| {median(train_s) / raw_train:.2f} |",
            f"| 48-hour fleet forecast (grid, features, 2 + 6 boosters, portfolio per endurance) | {median(issue_s):.2f} s | "
            f"{', '.join(f'{x:.2f}' for x in issue_s)} | bare booster predict of the same rows: {raw_predict:.2f} s "
            f"| {median(issue_s) / raw_predict:.1f} |",
        ]
        for d in DIRECTIONS:
            m, n = s.loc[(d, "model")], s.loc[(d, "seasonal_naive")]
            lines.append(f"| {d}: mean pinball loss | {m['pinball_mean']:.1f} kW | | seasonal naive: "
                         f"{n['pinball_mean']:.1f} kW | {m['pinball_mean'] / n['pinball_mean']:.2f} |")
            lines.append(f"| {d}: P90 coverage (share of MTUs with the P90 volume there) | {m['p90_coverage']:.3f} | "
                         f"| seasonal naive: {n['p90_coverage']:.3f} | |")
        for m in bt.models.itertuples():
            lines.append(f"| {m.model} model (given plugged in): mean pinball loss, P10 share below / at or below | "
                         f"{m.pinball_mean:.2f} {m.unit} | | | {m.below_q10:.3f} / {m.coverage_q10:.3f} |")
        lines += ["", "Training time by step (median): " + ", ".join(f"{k} {v:.1f} s" for k, v in step_medians.items())
                  + ". Targets: training under 5 minutes, a 48-hour forecast under 30 seconds, P90 coverage of "
                  "up-flexibility 0.88-0.95, pinball loss at most 0.85 of seasonal naive."]
        up = s.loc[("up", "model"), "pinball_mean"] / s.loc[("up", "seasonal_naive"), "pinball_mean"]
        update_section("forecast", "\n".join(lines), f"48-hour forecast of {len(ids):,} cars in {median(issue_s):.1f} s; "
                                                      f"up pinball loss {up:.2f}x seasonal naive; training "
                                                      f"{median(train_s):.0f} s")


if __name__ == "__main__":
    main()
