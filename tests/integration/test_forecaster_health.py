"""`flexfleet forecast run --health-port`: the probe an orchestrator restarts the forecaster by,
against the real PostgreSQL and Kafka-protocol broker. 200 while its passes end in time and
succeed; 503 naming the reason while a pass hangs on a locked table, and while the database is
down (the loop comes round but every pass fails); 200 again once a pass succeeds."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from services.forecaster.cli import app
from services.forecaster.health import PassHealth
from services.forecaster.service import PassResult
from services.runtime.health import HealthServer, health_answer

pytestmark = pytest.mark.integration

POLL_S = 1.0
GRACE_S = 2.0


def healthz(port: int) -> tuple[int, dict]:
    status, body = health_answer(f"http://127.0.0.1:{port}/healthz", 2)
    return status, json.loads(body) if status else {}


def wait_for(what: str, port: int, code: int, proc: subprocess.Popen,
             also=lambda body: True, timeout_s: float = 30) -> dict:
    """The body of the first GET /healthz answering `code` (and `also`), polled until timeout_s."""
    deadline, seen = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"forecaster exited while waiting for {what}: {proc.stderr.read().decode()[-2000:]}"
        seen = healthz(port)
        if seen[0] == code and also(seen[1]):
            return seen[1]
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last answer {seen}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthz_follows_the_loop_through_a_hang_and_a_database_outage(db_url_on_own_server, kafka_server):
    db_url, server = db_url_on_own_server
    port = free_port()
    env = os.environ | {"DATABASE_URL": db_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_server.bootstrap_servers}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.forecaster", "run", "--every", "15min", "--poll-s", str(POLL_S),
         "--health-port", str(port), "--health-grace-s", str(GRACE_S)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=Path(__file__).parents[2])
    try:
        # Passes every POLL_S: an empty database trains nothing and issues nothing, but each pass ends.
        body = wait_for("two good passes", port, 200, proc, lambda body: body["details"]["passes"] >= 2)
        details = body["details"]
        assert body["status"] == "ok" and "reason" not in body, body
        assert body["stale_after_s"] == POLL_S + GRACE_S
        assert details["last_outcome"] == "ok" and details["failures"] == 0 and details["last_error"] is None
        last_run = datetime.fromisoformat(details["last_run_at"])
        assert timedelta(0) <= datetime.now(UTC) - last_run < timedelta(seconds=POLL_S + GRACE_S), details

        # A pass hangs: its first query waits on a table another session holds locked.
        with psycopg.connect(db_url) as blocker:
            blocker.execute("LOCK TABLE charging_sessions IN ACCESS EXCLUSIVE MODE")
            body = wait_for("/healthz to turn 503 on the hung pass", port, 503, proc)
            assert body["status"] == "stale" and body["last_progress_s"] > POLL_S + GRACE_S, body
            assert body["reason"].startswith("no progress for"), body
            assert body["details"]["last_outcome"] == "ok", body   # hung, not failed: no pass has ended
            blocker.rollback()
        wait_for("/healthz back to 200 once the lock is gone", port, 200, proc)

        # The database goes away: the loop still comes round, but every pass fails.
        server.stop()
        body = wait_for("/healthz to turn 503 on failed passes", port, 503, proc)
        assert body["status"] == "failing", body
        assert body["details"]["last_outcome"] == "failed" and body["details"]["failures"] >= 1, body
        assert body["reason"].startswith("last run failed at") and "database unavailable" in body["reason"], body
        failed_at = datetime.fromisoformat(body["details"]["last_run_at"])

        # ... and comes back: a good pass after the failed ones is healthy again.
        server.start()
        body = wait_for("/healthz back to 200 after a good pass", port, 200, proc)
        details = body["details"]
        assert details["last_outcome"] == "ok" and details["last_error"] is None, body
        assert details["failures"] >= 1 and datetime.fromisoformat(details["last_ok_at"]) > failed_at, body

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:   # the same port scrapes
            scrape = r.read().decode()
        assert 'flexfleet_forecast_runs_total{outcome="failed"}' in scrape, scrape[:2000]
        assert 'flexfleet_forecast_runs_total{outcome="ok"}' in scrape, scrape[:2000]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    assert healthz(port)[0] == 0, "the health server outlived the process"


def test_a_failed_pass_is_503_until_a_later_one_succeeds():
    """The same rule without processes: a good pass, a failed one, a good one; and before any."""
    now = [datetime(2026, 11, 24, 10, 0, tzinfo=UTC)]
    health = PassHealth(poll_s=60, grace_s=900, clock=lambda: now[0])
    with HealthServer(health.heartbeat, host="127.0.0.1", details=health.details, problem=health.problem) as server:
        code, body = server.status()
        assert code == 200 and body["details"]["last_run_at"] is None and body["details"]["started_at"], body
        due = datetime(2026, 11, 24, 10, 15, tzinfo=UTC)
        health.record(PassResult(now[0], next_due=due), None)
        code, body = server.status()
        assert code == 200 and body["details"]["next_due"] == "2026-11-24T10:15:00Z", body

        now[0] += timedelta(minutes=1)
        health.record(None, psycopg.OperationalError("connection refused"))
        now[0] += timedelta(minutes=1)
        health.record(None, psycopg.OperationalError("connection refused\n\tIs the server running?"))
        code, body = server.status()
        assert code == 503 and body["status"] == "failing", body
        assert body["reason"] == ("last run failed at 2026-11-24T10:02:00Z (database unavailable: "
                                  "OperationalError: connection refused Is the server running?); "
                                  "no run succeeded since 2026-11-24T10:01:00Z"), body
        assert body["details"]["next_due"] == "2026-11-24T10:15:00Z"   # what the last good pass saw

        now[0] += timedelta(minutes=1)
        health.record(PassResult(now[0], next_due=due, publish_error="KafkaTimeoutError: broker away"), None)
        code, body = server.status()
        assert code == 200 and "reason" not in body, body   # the outbox retries: unpublished is not unhealthy
        assert body["details"]["failures"] == 2 and body["details"]["passes"] == 4
        assert body["details"]["publish_error"] == "KafkaTimeoutError: broker away"


def test_health_options_are_checked_before_anything_starts():
    runner = CliRunner()
    once = runner.invoke(app, ["run", "--once", "--health-port", "8095"])
    assert once.exit_code == 2 and "--health-port" in once.output, once.output
    same = runner.invoke(app, ["run", "--health-port", "9100", "--metrics-port", "9100"])
    assert same.exit_code == 2 and "--metrics-port" in same.output, same.output
    grace = runner.invoke(app, ["run", "--health-port", "0", "--health-grace-s", "0"])
    assert grace.exit_code == 2 and "--health-grace-s" in grace.output, grace.output
