"""Many site agents on one simulated clock.

`Simulation` steps every site of a process together, one control period (1 s) at a time,
without sleeping (or paced to the wall clock with `realtime`):

1. plug-ins and plug-outs fall due (`World.advance_to`);
2. every `io_every_s` simulated seconds the agents read their webhook inbox, and every
   `poll_every_s` wall-clock seconds they poll the VTN (the VTN lives in real time, whatever
   the simulated clock does);
3. the events in force become FCR holdings and setpoints per resource (rebuilt when an event
   changes or an interval starts or ends);
4. one vectorised `control_step` for every resource of every site, then the chargers
   (`ChargerPlant`), the SoC estimates (readings and metered energy) and the baseline's SoC;
5. power, baseline and plug state are kept per second; at the end of each batch period each
   agent reports, per event, what its resources did in it (`services.ven_agent.layout`).

A site configured `ignores-events` keeps reporting but never applies an event; a `slow` one has
slow chargers; an `offline` one loses its chargers (no control, nothing measured).
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from flexfleet.dispatch.control import (ControlConfig, FcrHoldings, ResourceState, control_step, estimate_soc,
                                        track_baseline)
from flexfleet.dispatch.signals import Direction, SignalKind, split_resource_name
from flexfleet.domain.errors import DomainError
from flexfleet.markets.clearing import FrequencyTrace
from services.ven_agent.agent import AgentEvent, SiteAgent
from services.ven_agent.layout import report_body
from services.ven_agent.sim import World

log = logging.getLogger(__name__)

NOMINAL_HZ = 50.0
# A charger told to charge that draws under a tenth of it this long (well past any charger's lag)
# has a full car: its battery management stopped it. The agent takes that as a SoC reading at the
# battery's usable maximum, so that a car reporting no SoC stops being planned as still charging
# (its declared schedule would otherwise claim power it never draws).
FULL_AFTER_S = 30.0


@dataclass
class RunStats:
    simulated_s: int = 0
    wall_s: float = 0.0
    control_wall_s: float = 0.0
    io_wall_s: float = 0.0
    resources: int = 0
    sites: int = 0
    reports: int = 0
    intervals: int = 0                 # resource intervals in them
    polls: int = 0
    too_slow_s: int = 0                # resource-seconds holding FCR on a charger too slow for it
    departure_at_risk_s: int = 0
    below_min_s: int = 0
    departures: int = 0
    departures_short: int = 0          # left at or after the declared departure under the target SoC
    departures_below_min: int = 0      # left under the declared minimum SoC
    unknown_resources: set[str] = field(default_factory=set)

    @property
    def site_hours_per_s(self) -> float:
        return self.sites * self.simulated_s / 3600 / self.wall_s if self.wall_s > 0 else math.inf


@dataclass
class Trace:
    """Per second and resource (for tests and plots): rows are seconds from the run's start."""

    start_s: int
    frequency_hz: list[float] = field(default_factory=list)
    power_kw: list[np.ndarray] = field(default_factory=list)
    baseline_kw: list[np.ndarray] = field(default_factory=list)
    soc_pct: list[np.ndarray] = field(default_factory=list)

    def array(self, name: str) -> np.ndarray:
        return np.asarray(getattr(self, name))


def frequency_source(trace: FrequencyTrace | Callable[[float], float] | None) -> Callable[[float], float]:
    """Hz at an epoch second: a trace (nominal outside it), a function, or nominal throughout."""
    if trace is None:
        return lambda t: NOMINAL_HZ
    if callable(trace):
        return trace
    start, res, hz = trace.start.timestamp(), trace.resolution_s, trace.hz.tolist()

    def at(t: float) -> float:
        i = int((t - start) // res)
        return hz[i] if 0 <= i < len(hz) else NOMINAL_HZ

    return at


class Simulation:
    """The agents of `world.sites` (in the same order) on one simulated clock."""

    def __init__(self, world: World, agents: Sequence[SiteAgent],
                 frequency: FrequencyTrace | Callable[[float], float] | None = None, *,
                 config: ControlConfig = ControlConfig(), batch_s: int = 900, tail_s: int = 30,
                 io_every_s: int = 60, poll_every_s: float = 30.0, realtime: bool = False, workers: int = 1,
                 keep_trace: bool = False) -> None:
        if len(agents) != len(world.sites):
            raise DomainError("agents", f"{len(agents)} agents for {len(world.sites)} sites")
        for a, s in zip(agents, world.sites):
            if a.ven_name != s.site_id:
                raise DomainError("agents", f"agent {a.ven_name!r} is not the VEN of site {s.site_id!r}")
        if config.dt_s != world.dt:
            raise DomainError("config.dt_s", f"must be the world's step, {world.dt} s")
        if batch_s < 1 or batch_s % 60:
            raise DomainError("batch_s", f"must be whole minutes of seconds; got {batch_s}")
        self.world, self.agents, self.config = world, list(agents), config
        self.hz = frequency_source(frequency)
        self.batch_s, self.tail_s, self.io_every_s = int(batch_s), int(tail_s), int(io_every_s)
        self.poll_every_s, self.realtime = float(poll_every_s), realtime
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="ven-io") if workers > 1 else None
        self.index = [{name: world.index[(a.ven_name, name)] for name in a.resources} for a in agents]
        # A car's pairs at each site: an event names the charger the dispatcher expected, and at
        # a site with several chargers the car may plug into another (a shared hub): the site
        # controller knows which car is on which charger and follows the car (`_pair`).
        self.pairs_of: list[dict[str, list[int]]] = []
        for names in self.index:
            by_car: dict[str, list[int]] = defaultdict(list)
            for name, i in names.items():
                by_car[split_resource_name(name)[1]].append(i)
            self.pairs_of.append(dict(by_car))
        self._roaming = np.zeros(world.res.n, dtype=bool)         # pairs of a car with several at a site
        for by_car in self.pairs_of:
            for idx in by_car.values():
                if len(idx) > 1:
                    self._roaming[idx] = True
        self.keep_trace = keep_trace
        self.trace: Trace | None = None
        n = world.res.n
        self.soc = np.full(n, np.nan)
        self.soc_age = np.full(n, np.inf)
        self.base_soc = np.full(n, np.nan)
        self.quiet = np.full(n, np.inf)
        self.starved_s = np.zeros(n)
        self._plugged = np.zeros(n, dtype=bool)
        self._holdings = FcrHoldings.none()
        self._setpoints = np.full(n, np.nan)
        self._versions = [-1] * len(agents)
        self._next_change = -math.inf
        self._last_poll = -math.inf

    # -- events -> what each resource holds ------------------------------------------------------
    def _rebuild(self, t: float, stats: RunStats) -> None:
        rows, sp = [], np.full(self.world.res.n, np.nan)
        nxt = math.inf
        for k, agent in enumerate(self.agents):
            self._versions[k] = agent.version
            for e in agent.events.values():
                for i in e.signal.intervals:
                    a, b = i.start.timestamp(), i.end.timestamp()
                    nxt = min(nxt, *(x for x in (a, b) if x > t), math.inf)
                    if agent.ignores_events or not a <= t < b:
                        continue
                    for name, kw in zip(e.signal.resources, i.kw):
                        idx = self._pair(k, name)
                        if idx is None:
                            if name not in stats.unknown_resources:
                                log.warning("%s: event %s names %s, which is not at this site", agent.ven_name,
                                            e.signal.event_name, name)
                            stats.unknown_resources.add(name)
                            continue
                        if kw <= 0:
                            continue
                        if e.signal.kind is SignalKind.FCR:
                            endurance = e.signal.endurance.total_seconds() if e.signal.endurance else 0.0
                            rows.append((idx, kw, e.signal.curve, endurance, *e.checkpoint))
                        else:
                            signed = kw if e.signal.direction is Direction.DOWN else -kw
                            sp[idx] = signed if np.isnan(sp[idx]) else sp[idx] + signed
        self._holdings = FcrHoldings.of(rows)
        self._setpoints = sp
        self._next_change = nxt

    def _pair(self, k: int, name: str) -> int | None:
        """The resource of agent `k` that an event's `<charger>/<vehicle>` means now: that pair,
        unless the car is plugged into another charger of the site, then that one (None: the
        car has no charger here)."""
        idx = self.index[k].get(name)
        if idx is not None and (self.world.plugged[idx] or not self._roaming[idx]):
            return idx
        try:
            mine = self.pairs_of[k].get(split_resource_name(name)[1], ())
        except DomainError:
            return idx
        return next((i for i in mine if self.world.plugged[i]), idx if idx is not None else next(iter(mine), None))

    # -- I/O ---------------------------------------------------------------------------------------
    def _each(self, fn: Callable[[SiteAgent], object]) -> list:
        if self.pool is None:
            return [fn(a) for a in self.agents]
        return list(self.pool.map(fn, self.agents))

    def _io(self, stats: RunStats, force_poll: bool = False) -> None:
        """Webhook inboxes, and a poll when one is due; marks the holdings stale on a change."""
        for a in self.agents:
            a.process_inbox()
        now = time.monotonic()
        if force_poll or now - self._last_poll >= self.poll_every_s:
            self._last_poll = now
            self._each(lambda a: _safely(a, a.poll))
            stats.polls += 1
        if any(a.version != v for a, v in zip(self.agents, self._versions)):
            self._next_change = -math.inf

    def _flush(self, start_s: int, rows: int, buf: dict[str, np.ndarray], hz: np.ndarray, stats: RunStats) -> None:
        """Queue and send each agent's reports for the seconds [start_s, start_s + rows)."""
        if rows <= 0:
            return
        end_s = start_s + rows
        seconds = np.arange(start_s - self.tail_s, end_s)
        for k, agent in enumerate(self.agents):
            for e in agent.active_events(start_s, end_s):
                lo, hi = int(max(start_s, math.ceil(e.start_s))), int(min(end_s, math.floor(e.end_s)))
                if hi <= lo:
                    continue
                cols = [i for i in (self._pair(k, n) for n in e.signal.resources) if i is not None]
                if not cols:
                    continue
                names = [self.world.res.names[i] for i in cols]
                r = slice(lo - start_s, hi - start_s)
                fine = self._fine(e, hz, seconds)[lo - int(seconds[0]):hi - int(seconds[0])]
                body = report_body(program_id=e.program_id, event_id=e.event_id, ven_name=agent.ven_name,
                                   event_name=e.signal.event_name, start_s=lo, resources=names,
                                   power_kw=buf["power"][r][:, cols], baseline_kw=buf["baseline"][r][:, cols],
                                   plugged=buf["plugged"][r][:, cols], measured=buf["measured"][r][:, cols],
                                   fine=fine, batch_start_s=start_s)
                if body is not None:
                    agent.queue_report(body)
                    stats.reports += 1
                    stats.intervals += sum(len(x["intervals"]) for x in body["resources"])
        self._each(lambda a: _safely(a, a.send_reports))

    def _fine(self, e: AgentEvent, hz: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """Seconds of 1 s reporting for an event: its curve asks for a response, or did within
        the tail before."""
        if e.signal.kind is not SignalKind.FCR or not e.signal.curve:
            return np.zeros(len(seconds), dtype=bool)
        f, s = zip(*sorted(e.signal.curve))
        active = np.interp(hz, f, s) != 0
        last = np.maximum.accumulate(np.where(active, np.arange(len(hz)), -10**9))
        return np.arange(len(hz)) - last <= self.tail_s

    # -- the loop ----------------------------------------------------------------------------------
    def start(self, receiver=None, on_started: Callable[[SiteAgent], None] | None = None) -> None:
        """Every agent registers, subscribes (with a receiver) and reads its events; one that
        cannot (its VTN calls fail) is logged and tries again at its next poll. `on_started` is
        called after each agent (progress bars: starting thousands takes minutes)."""
        def start(a: SiteAgent) -> None:
            _safely(a, lambda: a.start(receiver))
            if on_started is not None:
                on_started(a)

        self._each(start)
        self._last_poll = time.monotonic()

    def run(self, start_s: int, end_s: int, on_batch: Callable[[int], None] | None = None) -> RunStats:
        """Simulate [start_s, end_s); `on_batch(t)` is called after each batch's reports are sent."""
        w, cfg, res = self.world, self.config, self.world.res
        n, dt = res.n, int(cfg.dt_s)
        stats = RunStats(resources=n, sites=len(w.sites))
        if self.keep_trace:
            self.trace = Trace(start_s)
        rows = self.batch_s
        buf = {"power": np.zeros((rows, n), np.float32), "baseline": np.zeros((rows, n), np.float32),
               "plugged": np.zeros((rows, n), bool), "measured": np.zeros((rows, n), bool)}
        hz_buf = np.full(rows + self.tail_s, NOMINAL_HZ)
        batch_start = start_s - start_s % self.batch_s       # the first batch may be partial
        departed = len(w.departed)
        self._next_change = -math.inf          # events may have come in since the last run
        wall0 = time.perf_counter()
        next_io = start_s
        t = start_s
        while t < end_s:
            w.advance_to(t)
            newly = w.plugged & ~self._plugged
            if newly.any():
                self.soc[newly], self.soc_age[newly], self.base_soc[newly] = np.nan, np.inf, np.nan
                self.starved_s[newly] = 0.0
            if ((w.plugged != self._plugged) & self._roaming).any():
                self._next_change = -math.inf           # a car changed chargers at a site: follow it
            self._plugged = w.plugged.copy()
            if t >= next_io:
                io0 = time.perf_counter()
                self._io(stats)
                stats.io_wall_s += time.perf_counter() - io0
                next_io = t + self.io_every_s
            if t >= self._next_change:
                self._rebuild(t, stats)
            c0 = time.perf_counter()
            hz = self.hz(t)
            online = w.online(t)
            state = ResourceState(w.plugged, online, self.soc, self.soc_age, w.min_soc_pct, w.target_soc_pct,
                                  w.departure_s)
            step = control_step(t, hz, res, w.limits, state, self._holdings, self._setpoints, cfg, self.base_soc)
            power = w.plant.step(step.command_kw, w.plugged, online)
            starved = w.plugged & online & (step.command_kw >= 1.0) & (power < 0.1 * step.command_kw)
            self.starved_s = np.where(starved, self.starved_s + dt, 0.0)
            reading = w.soc_reading(t)
            reading = np.where((self.starved_s >= FULL_AFTER_S) & np.isnan(reading), res.soc_max_pct, reading)
            self.soc, self.soc_age = estimate_soc(self.soc, self.soc_age, np.where(online, power, 0.0), res, dt,
                                                  reading)
            self.base_soc, self.quiet = track_baseline(self.base_soc, self.soc, self.quiet, step, res, dt)
            j = t - batch_start
            buf["power"][j], buf["baseline"][j] = power, step.baseline_kw
            buf["plugged"][j], buf["measured"][j] = w.plugged, online
            hz_buf[self.tail_s + j] = hz
            if len(self._holdings):
                stats.too_slow_s += int(step.too_slow.sum())
            stats.departure_at_risk_s += int((step.departure_at_risk & w.plugged).sum())
            stats.below_min_s += int((step.below_min & w.plugged).sum())
            if self.trace is not None:
                self.trace.frequency_hz.append(hz)
                self.trace.power_kw.append(power.copy())
                self.trace.baseline_kw.append(step.baseline_kw.copy())
                self.trace.soc_pct.append(w.plant.soc_pct.copy())
            stats.control_wall_s += time.perf_counter() - c0
            t += dt
            if t - batch_start == self.batch_s or t == end_s:
                io0 = time.perf_counter()
                self._io(stats)
                lo = max(batch_start, start_s)
                self._flush(lo, t - lo, {k: v[lo - batch_start:t - batch_start] for k, v in buf.items()},
                            hz_buf[lo - batch_start:t - batch_start + self.tail_s], stats)
                stats.io_wall_s += time.perf_counter() - io0
                hz_buf[:self.tail_s] = hz_buf[-self.tail_s:] if self.tail_s else hz_buf[:0]
                batch_start = t
                if on_batch is not None:
                    on_batch(t)
            if self.realtime:
                ahead = (t - start_s) - (time.perf_counter() - wall0)
                if ahead > 0:
                    time.sleep(ahead)
        for _, at, soc, x in w.departed[departed:]:
            if at < start_s:                 # stays that ended before the run: not simulated
                continue
            stats.departures += 1
            if not math.isnan(x.target_soc_pct) and not math.isnan(x.departure_s) and at >= x.departure_s:
                stats.departures_short += int(soc < x.target_soc_pct - 0.5)
            stats.departures_below_min += int(not math.isnan(x.min_soc_pct) and soc < x.min_soc_pct - 0.5)
        stats.simulated_s = end_s - start_s
        stats.wall_s = time.perf_counter() - wall0
        return stats

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def _safely(agent: SiteAgent, fn: Callable[[], object]) -> object:
    """One agent's VTN trouble must not stop the others: logged, tried again next time."""
    try:
        return fn()
    except Exception as exc:            # requests, pydantic, the VTN's 5xx: all retried later
        log.warning("%s: %s failed: %s: %s", agent.ven_name, getattr(fn, "__name__", "call"), type(exc).__name__, exc)
        return None


__all__ = ["RunStats", "Simulation", "Trace", "frequency_source"]
