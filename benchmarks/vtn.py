"""The OpenADR VTN under the VEN polling pattern: 10,000 site VENs polling their events.

    .venv/bin/python benchmarks/vtn.py [--vens 10000 --rate 500 --seconds 20 --runs 3 --workers 2 --write-docs]

Set-up: embedded PostgreSQL; the simulated fleet registered, one VEN client per site; a day's
FCR-D obligations already sent as events (one per obligation and site, through the same
content code as the dispatcher; written straight to the store to keep the set-up short); the
VTN as deployed (`flexfleet dispatch vtn`, --workers processes). 10,000 VENs each polling every
20 s is 500 requests/s.

Each run measures:
1. open loop: --rate requests/s for --seconds, each a random VEN's poll (its events, VEN_NAME
   target filter, with its own token); latency counted from the request's scheduled time, so
   a server falling behind shows in the figures (no coordinated omission);
2. closed loop: 32 polls at a time for --seconds: requests/s the VTN sustains;
3. the same two against the floor: a bare FastAPI app on uvicorn returning a VEN's poll body
   from memory (no token, no database);
4. a new obligation backed by every site's car: time for the dispatcher (openadr3-client's BL
   client over HTTP) to create every site's event, and until every VEN's own poll returns it.
Tokens are minted with the VTN's signing key (what /auth/token hands out, once an hour per VEN).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import psycopg
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from _report import machine, median, update_section
from flexfleet.bidding.models import Bid, BidPlan, ObjectiveParts
from flexfleet.dispatch.signals import Placement, ProductSignal, assign, site_signals
from flexfleet.markets import default_catalogue
from flexfleet.auth import Principal, Role, hash_secret, issue_access_token
from services.bidder.store import ClearingIn, record_clearing, save_plan
from services.dispatcher.bl import Dispatcher, bl_client
from services.dispatcher.vtn import BASE_PATH, register_client
from services.api.accounts import register_ven_clients
from services.dispatcher.vtn import store as vtn_store
from services.runtime.embedded import EmbeddedPostgres
from services.runtime.migrate import migrate
from services.simulator.fleet import generate_fleet
from services.simulator.registry import write_fleet

console = Console()
SECRET = "benchmark-signing-secret-of-at-least-32-bytes"
BL_CLIENT = ("bench-bl", "bench-bl-secret")
PRODUCT = "FCR-D-up/SE_DK2"
DAY = date(2026, 12, 1)
CONCURRENCY = 32
SENDERS = 64                # open loop: enough in flight for 500/s at 100 ms each

_FLOOR_SERVER = """
import sys, uvicorn
from fastapi import FastAPI, Response
body = open(sys.argv[1], "rb").read()
app = FastAPI()
@app.get("/events")
def events() -> Response:
    return Response(body, media_type="application/json")
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


@dataclass(frozen=True)
class World:
    url: str
    vens: list[str]                 # site ids, one VEN each
    tokens: dict[str, str]
    placements: dict[str, Placement]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """A server in its own process (not sharing the load generator's interpreter), given its
    command line less the port: its base URL."""
    port = free_port()
    proc = subprocess.Popen([*argv, str(port)], env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("server exited") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def start_vtn(url: str, workers: int) -> tuple[subprocess.Popen, str]:
    """The VTN as deployed: `flexfleet dispatch vtn`."""
    flexfleet = str(Path(sys.executable).with_name("flexfleet"))
    return start([flexfleet, "dispatch", "vtn", "--workers", str(workers), "--port"],
                 {"DATABASE_URL": url, "FLEXFLEET_API_SECRET": SECRET})


def obligation(conn: psycopg.Connection, mtu: datetime, bundle: dict[str, float]):
    """A cleared FCR-D up obligation for `mtu`, backed by `bundle` (vehicle -> kW)."""
    volume = Decimal(int(sum(bundle.values()) / 100)) / 10        # MW, on the 0.1 MW step
    bid = Bid(PRODUCT, "D-1", mtu, volume, Decimal("5"), tuple(bundle), tuple(bundle.values()), Decimal("1"),
              sum(bundle.values()), 0.05, "up", PRODUCT)
    plan = BidPlan((bid,), ObjectiveParts(Decimal(1), Decimal(0), Decimal(0)), 0.1, "optimal", ())
    stored = save_plan(conn, plan, "SE3", DAY, "D-1", mtu - timedelta(days=1), {PRODUCT: 60})
    (o,) = record_clearing(conn, [ClearingIn(stored.bids[0].bid_id, volume, Decimal("5"))])
    return o


def build_world(url: str, vens: int, background: int, base: str) -> World:
    """Fleet, clients, and `background` obligations' events stored for every VEN."""
    fleet = generate_fleet(int(vens * 1.45) + 50, seed=3)
    home = {c.charger_id: c.site.site_id for c in fleet.chargers}
    placements: dict[str, Placement] = {}
    placed: set[str] = set()
    for v in fleet.vehicles:          # one car per site backs the obligations: one event per site
        site = home.get(v.home_charger_id or "")
        if site and site not in placed and len(placements) < vens:
            placements[v.vehicle_id] = Placement(v.vehicle_id, v.home_charger_id, site)
            placed.add(site)
    sites = sorted(placed)
    if len(sites) < vens:
        raise SystemExit(f"the fleet has {len(sites)} sites with a home car, fewer than {vens}")
    secret_hash = hash_secret("ven-secret")          # one hash: 10,000 PBKDF2 runs would be the set-up
    with psycopg.connect(url, autocommit=True) as conn:
        write_fleet(conn, fleet)
        register_client(conn, *BL_CLIENT)
        register_ven_clients(conn, [(f"{s}-client", s) for s in sites], secret_hash, actor="benchmark")
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
        program_id = Dispatcher(conn, bl_client(base, *BL_CLIENT)).ensure_programs([PRODUCT])[PRODUCT]
        signal = ProductSignal.from_product(default_catalogue().by_id(PRODUCT))
        bundle = {v: 5.0 for v in placements}
        start = datetime(2026, 12, 1, 0, tzinfo=UTC)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"storing {background} obligations x {len(sites):,} sites' events", total=background)
            for h in range(background):
                o = obligation(conn, start + timedelta(hours=h), bundle)
                with conn.transaction():
                    for sig in site_signals(assign(o, signal, placements)):
                        vtn_store.insert(conn, vtn_store.EVENTS, sig.event_body(program_id))
                    conn.execute("INSERT INTO dispatch_obligations (obligation_id, program_id) VALUES (%s, %s)",
                                 (o.obligation_id, program_id))
                bar.advance(task)
    now, ttl = datetime.now(UTC), timedelta(hours=2)
    tokens = {s: issue_access_token(Principal(f"{s}-client", Role.VEN, ven_name=s), SECRET, now, ttl).token
              for s in sites}
    return World(url, sites, tokens, placements)


def poll_request(base: str, world: World, ven: str) -> tuple[str, dict, dict]:
    return (f"{base}/events", {"targetType": "VEN_NAME", "targetValues": ven, "skip": 0, "limit": 50},
            {"Authorization": f"Bearer {world.tokens[ven]}"})


def session(connections: int) -> aiohttp.ClientSession:
    """The load generator's client: aiohttp, since httpx's async client tops out near 150
    requests/s on this machine, below the server it measures."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections),
                                 timeout=aiohttp.ClientTimeout(total=30))


async def poll(client: aiohttp.ClientSession, base: str, world: World, ven: str) -> bytes:
    url, params, headers = poll_request(base, world, ven)
    async with client.get(url, params=params, headers=headers) as r:
        body = await r.read()
        r.raise_for_status()
        return body


async def open_loop(base: str, world: World, rate: float, seconds: float, seed: int) -> tuple[np.ndarray, int]:
    """Latencies (s, from the scheduled time) of rate x seconds polls, and how many failed. A fixed
    set of senders takes the requests in schedule order (a task per request would make the
    client's connection pool, not the server, the bottleneck)."""
    rng = random.Random(seed)
    n = int(rate * seconds)
    latencies, failed = np.full(n, np.nan), 0
    order = iter(range(n))
    async with session(SENDERS) as client:
        t0 = time.perf_counter() + 0.2

        async def sender() -> None:
            nonlocal failed
            for i in order:
                scheduled = t0 + i / rate
                await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
                try:
                    await poll(client, base, world, rng.choice(world.vens))
                    latencies[i] = time.perf_counter() - scheduled
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    failed += 1

        await asyncio.gather(*(sender() for _ in range(SENDERS)))
    return latencies, failed


async def closed_loop(base: str, world: World, seconds: float, seed: int) -> float:
    """Polls per second with CONCURRENCY in flight."""
    rng = random.Random(seed)
    done = 0
    async with session(CONCURRENCY) as client:
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                await poll(client, base, world, rng.choice(world.vens))
                done += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - began)


def new_obligation(world: World, base: str, hour: int) -> tuple[float, float]:
    """Seconds to dispatch one obligation over every site, and until every VEN has read its event."""
    with psycopg.connect(world.url, autocommit=True) as conn:
        o = obligation(conn, datetime(2026, 12, 1, hour, tzinfo=UTC), {v: 5.0 for v in world.placements})
        began = time.perf_counter()
        Dispatcher(conn, bl_client(base, *BL_CLIENT)).dispatch([o])
        sent = time.perf_counter() - began

    async def everyone_reads() -> None:
        left = list(world.vens)
        async with session(CONCURRENCY) as client:
            async def worker() -> None:
                while left:
                    ven = left.pop()
                    events = json.loads(await poll(client, base, world, ven))
                    if not any(e["eventName"].startswith(o.obligation_id) for e in events):
                        left.append(ven)          # not there yet: ask again
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    asyncio.run(everyone_reads())
    return sent, time.perf_counter() - began


def percentiles(lat: np.ndarray) -> tuple[float, float]:
    ok = lat[~np.isnan(lat)]
    return float(np.percentile(ok, 50) * 1000), float(np.percentile(ok, 99) * 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vens", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=500.0, help="open-loop polls per second")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--background", type=int, default=8, help="obligations already sent to every site")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="VTN processes (this machine has 2 cores)")
    ap.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = ap.parse_args()

    results: dict[str, list[float]] = {k: [] for k in (
        "p50", "p99", "failed", "max_rps", "floor_p50", "floor_p99", "floor_rps", "dispatch_s", "readable_s")}
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        pg.start()
        try:
            migrate(pg.url)
            vtn, vtn_url = start_vtn(pg.url, args.workers)
            try:
                base = f"{vtn_url}{BASE_PATH}"
                world = build_world(pg.url, args.vens, args.background, base)
                url, params, headers = poll_request(base, world, world.vens[0])
                body = httpx.get(url, params=params, headers=headers).raise_for_status().content
                floor_body = Path(tmp) / "body.json"
                floor_body.write_bytes(body)
                floor, floor_url = start([sys.executable, "-c", _FLOOR_SERVER, str(floor_body)])
                try:
                    with Progress(console=console, transient=True) as bar:
                        task = bar.add_task("measuring", total=args.runs)
                        for run in range(args.runs):
                            lat, failed = asyncio.run(open_loop(base, world, args.rate, args.seconds, run))
                            p50, p99 = percentiles(lat)
                            results["p50"].append(p50)
                            results["p99"].append(p99)
                            results["failed"].append(failed)
                            results["max_rps"].append(asyncio.run(closed_loop(base, world, args.seconds, run)))
                            lat, _ = asyncio.run(open_loop(floor_url, world, args.rate, args.seconds, run))
                            p50, p99 = percentiles(lat)
                            results["floor_p50"].append(p50)
                            results["floor_p99"].append(p99)
                            results["floor_rps"].append(asyncio.run(closed_loop(floor_url, world, args.seconds, run)))
                            sent, readable = new_obligation(world, base, args.background + run)
                            results["dispatch_s"].append(sent)
                            results["readable_s"].append(readable)
                            bar.advance(task)
                finally:
                    floor.terminate()
                    floor.wait()
            finally:
                vtn.terminate()
                vtn.wait()
        finally:
            pg.stop()
    report(args, len(body), results)


def report(args, body_bytes: int, results: dict[str, list[float]]) -> None:
    med = {k: median(v) for k, v in results.items()}
    rows = [
        ("poll p50 (ms)", "p50", "floor_p50", ".1f"),
        ("poll p99 (ms)", "p99", "floor_p99", ".1f"),
        ("polls/s sustained, 32 in flight", "max_rps", "floor_rps", ",.0f"),
    ]
    title = (f"VTN: {args.vens:,} VENs polling at {args.rate:,.0f}/s for {args.seconds:.0f} s, "
             f"median of {args.runs} runs")
    table = Table(title=title)
    for col in ("figure", "VTN", "runs", "floor", "VTN / floor"):
        table.add_column(col)
    md = ["## OpenADR VTN (`benchmarks/vtn.py`)", "",
          f"{args.vens:,} site VENs, each with {args.background} events of the day already sent (a poll returns "
          f"{body_bytes:,} bytes); the VTN as `flexfleet dispatch vtn --workers {args.workers}` on embedded "
          "PostgreSQL; the load generator (aiohttp, asyncio) in another process on the same machine. "
          f"Median of {args.runs} runs; {machine()}.", "",
          "Reproduce: `.venv/bin/python benchmarks/vtn.py --write-docs` (or `make bench`).", "",
          f"Open loop at {args.rate:,.0f} polls/s for {args.seconds:.0f} s (latency from each request's scheduled "
          "time), then a closed loop with 32 polls in flight. The floor is a bare FastAPI app in one uvicorn process "
          "returning the same body from memory: what the framework and the load generator cost. The runs follow "
          "each other on one VTN: the first is most VENs' first poll since it started, whose token signature is "
          "checked before it is cached (the cold start after a VTN restart), and each later run follows the "
          "previous run's new obligation.", "",
          "| figure | VTN | runs | floor | VTN / floor |", "|---|---:|---|---:|---:|"]
    for label, key, floor_key, fmt in rows:
        runs = ", ".join(f"{x:{fmt}}" for x in results[key])
        ratio = f"{med[key] / med[floor_key]:.2f}"
        table.add_row(label, f"{med[key]:{fmt}}", runs, f"{med[floor_key]:{fmt}}", ratio)
        md.append(f"| {label} | {med[key]:{fmt}} | {runs} | {med[floor_key]:{fmt}} | {ratio} |")
    failed = int(sum(results["failed"]))
    md += ["", f"Failed polls: {failed}. Target: p99 under 100 ms at 500 polls/s.", "",
           f"A new obligation backed by a car at each of the {args.vens:,} sites: the dispatcher sends every "
           f"site's event in {med['dispatch_s']:.1f} s (runs: {', '.join(f'{x:.1f}' for x in results['dispatch_s'])}); "
           f"every VEN's poll returns it {med['readable_s']:.1f} s after the start "
           f"(runs: {', '.join(f'{x:.1f}' for x in results['readable_s'])})."]
    console.print(table)
    console.print("\n".join(md[-3:]))
    if args.write_docs:
        update_section("vtn", "\n".join(md), f"{args.vens:,} VENs at {args.rate:,.0f} polls/s: p99 {med['p99']:.1f} ms; "
                                          f"an obligation readable by every VEN in {med['readable_s']:.0f} s")


if __name__ == "__main__":
    main()
