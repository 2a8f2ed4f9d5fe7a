"""Ingest throughput, topic to table, against the raw limits measured in the same run.

    .venv/bin/python benchmarks/ingest.py [--vehicles 10000 --minutes 20 --runs 3 --write-docs]

Raw limits: a bare kafka-python consumer reading the same messages with no processing, and a
bare COPY of the same (already parsed) rows into the telemetry table. End to end: the ingest
worker (one process, then two in a consumer group) from the first message received to the last
batch committed, each run on a fresh database. Figures are medians of --runs runs.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from kafka import KafkaConsumer, KafkaProducer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from _report import machine, median, update_section
from flexfleet.telemetry import FleetLimits, Limits, parse_reading
from services.ingest.worker import _COPY_TYPES, COLUMNS, IngestConfig, IngestWorker
from services.runtime.config import with_database
from services.runtime.migrate import migrate
from services.runtime.services import FAST_GROUP, ensure_topics, platform
from services.simulator.fleet import Fleet, generate_fleet
from services.simulator.registry import write_fleet
from services.simulator.telemetry import simulate

console = Console()


def messages(fleet: Fleet, minutes: int) -> list[tuple[bytes, bytes]]:
    """The simulated fleet's telemetry for the last `minutes`, one reading per vehicle a minute."""
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    return [(m.key, m.value) for m in simulate(fleet, end - timedelta(minutes=minutes), end, 60, seed=1)]


def fresh_database(admin_url: str, name: str, fleet: Fleet) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(admin_url, name)
    migrate(url)
    with psycopg.connect(url) as conn:
        write_fleet(conn, fleet)
    return url


def raw_consume(bootstrap: str, topic: str, n: int) -> float:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex}",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             max_poll_records=5000, fetch_max_bytes=64 << 20,
                             max_partition_fetch_bytes=16 << 20, **FAST_GROUP)
    got, started = 0, None
    while got < n:
        batch = consumer.poll(timeout_ms=1000)
        if batch and started is None:
            started = time.perf_counter()
        got += sum(len(records) for records in batch.values())
    elapsed = time.perf_counter() - started
    consumer.close()
    return n / elapsed


def raw_copy(url: str, rows: list) -> float:
    with psycopg.connect(url) as conn:
        start = min(r.ts for r in rows).replace(hour=0, minute=0, second=0)
        conn.execute("SELECT flexfleet_ensure_telemetry_partitions(%s, %s)", (start, max(r.ts for r in rows)))
        conn.commit()
        t = time.perf_counter()
        for k in range(0, len(rows), 5000):
            with conn.cursor().copy(f"COPY telemetry ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_COPY_TYPES)
                for row in rows[k:k + 5000]:
                    copy.write_row(row)
            conn.commit()
        return len(rows) / (time.perf_counter() - t)


def _worker(config: IngestConfig, out) -> None:
    stats = IngestWorker(config).run(idle_exit_s=3)
    out.put((stats.consumed, stats.started_at, stats.finished_at))


def end_to_end(url: str, bootstrap: str, topic: str, n: int, workers: int) -> float:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    config = IngestConfig(url, bootstrap, topic=topic, dlq_topic=f"{topic}.dlq",
                          group_id=f"e2e-{uuid.uuid4().hex}")
    procs = [ctx.Process(target=_worker, args=(config, out)) for _ in range(workers)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    consumed = sum(r[0] for r in results)
    assert consumed == n, f"consumed {consumed} of {n}"
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM telemetry").fetchone()[0] == n
    return n / (max(r[2] for r in results) - min(r[1] for r in results))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vehicles", type=int, default=10_000)
    ap.add_argument("--minutes", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = ap.parse_args()

    fleet = generate_fleet(args.vehicles, seed=1)
    msgs = messages(fleet, args.minutes)
    n = len(msgs)
    limits = FleetLimits({v.vehicle_id: Limits(v.spec.max_ac_charge_kw, v.spec.max_discharge_kw) for v in fleet.vehicles},
                         {c.charger_id: Limits(c.max_charge_kw, c.max_discharge_kw) for c in fleet.chargers})
    now = datetime.now(UTC)
    rows = [parse_reading(v, limits, now) for _, v in msgs]
    results: dict[str, list[float]] = {"raw_consume": [], "raw_copy": [], "e2e_1": [], "e2e_2": []}
    with platform() as p:
        topic = f"bench.telemetry.{uuid.uuid4().hex[:8]}"
        ensure_topics(p.bootstrap_servers, {topic: 8, f"{topic}.dlq": 1})
        producer = KafkaProducer(bootstrap_servers=p.bootstrap_servers, acks="all", linger_ms=20,
                                 batch_size=1 << 20)
        t = time.perf_counter()
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"producing {n:,} messages", total=n)
            for k, (key, value) in enumerate(msgs):
                producer.send(topic, key=key, value=value)
                if k % 10_000 == 0:
                    bar.update(task, completed=k)
            producer.flush()
        produce_rate = n / (time.perf_counter() - t)
        producer.close()
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("measuring", total=args.runs * 4)
            for run in range(args.runs):
                results["raw_consume"].append(raw_consume(p.bootstrap_servers, topic, n))
                bar.advance(task)
                results["raw_copy"].append(raw_copy(fresh_database(p.database_url, "bench_copy", fleet), rows))
                bar.advance(task)
                for w in (1, 2):
                    url = fresh_database(p.database_url, f"bench_e2e_{w}", fleet)
                    results[f"e2e_{w}"].append(end_to_end(url, p.bootstrap_servers, topic, n, w))
                    bar.advance(task)

    med = {k: median(v) for k, v in results.items()}
    limit = min(med["raw_consume"], med["raw_copy"])
    rows_md = [
        ("kafka-python consumer, no processing (raw limit)", "raw_consume"),
        ("bare binary COPY of the parsed rows (raw limit)", "raw_copy"),
        ("ingest end to end, 1 worker", "e2e_1"),
        ("ingest end to end, 2 workers in one group", "e2e_2"),
    ]
    table = Table(title=f"ingest: {n:,} readings, {args.vehicles:,} vehicles, median of {args.runs} runs")
    for col in ("path", "readings/s", "runs", "vs slower raw limit"):
        table.add_column(col)
    md = ["## Ingest (`benchmarks/ingest.py`)", "",
          f"{n:,} readings of the simulated fleet ({args.vehicles:,} vehicles, {args.minutes} minutes), topic of 8 partitions, embedded Tansu broker "
          f"and PostgreSQL (native partitions), median of {args.runs} runs; {machine()}.", "",
          "Reproduce: `.venv/bin/python benchmarks/ingest.py --write-docs` (or `make bench`).", "",
          "| path | readings/s | runs | vs slower raw limit |", "|---|---:|---|---:|"]
    for label, key in rows_md:
        runs = ", ".join(f"{x:,.0f}" for x in results[key])
        ratio = f"{med[key] / limit:.2f}"
        table.add_row(label, f"{med[key]:,.0f}", runs, ratio)
        md.append(f"| {label} | {med[key]:,.0f} | {runs} | {ratio} |")
    md += ["", f"Producing the messages (kafka-python, acks=all) ran at {produce_rate:,.0f} messages/s; "
           "targets: end to end >= 0.50 of the slower raw limit and >= 20,000 readings/s.", "",
           "Where a worker's time goes (profiled on 100,000 simulated readings): about half in "
           "kafka-python decoding records (the raw-consumer limit itself), a third in validation, "
           "the rest handing rows to COPY in the writer thread; the database work runs in the "
           "PostgreSQL server, overlapped with the next poll. One worker is bound by one core, so "
           "the group of two is the figure that counts on this 2-core machine, where the broker "
           "and PostgreSQL share the same cores. Scale further with more partitions and workers "
           "on more cores."]
    console.print(table)
    console.print(f"producer: {produce_rate:,.0f} messages/s")
    if args.write_docs:
        update_section("ingest", "\n".join(md), f"{med['e2e_2']:,.0f} readings/s end to end (2 workers), "
                                                f"{med['e2e_2'] / limit:.2f} of the raw limit")
        console.print("docs/benchmarks.md updated")


if __name__ == "__main__":
    main()
