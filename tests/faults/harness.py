"""Tools for the fault-injection tests: `reelhouse run` and `reelhouse serve` as real
subprocesses, the moments to kill a run at, a warehouse read straight from storage, and
clients that query the Thrift server while runs write."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..conftest import TEST_SPARK_CONF

REELHOUSE = [sys.executable, "-m", "pipelines.cli"]
# The chain's runs and server may use another Java than the test session: `dev.sh test` points
# REELHOUSE_FAULTS_JAVA_HOME at a Java 25 when the machine has one, and first records its JVM
# start cache with the chain's settings (`python -m tests.faults.harness`, below). Nine cold
# `reelhouse run` JVMs are most of the chain's time; a tiny run recorded and replayed with
# these settings took 173 CPU-s against 218 without a cache. The chain then also shows a
# warehouse written on one Java carried on by another, to the same RMSE bit for bit.
FAULTS_JAVA_HOME = os.environ.get("REELHOUSE_FAULTS_JAVA_HOME")
# The test session's heap (3g; 24 GB hold four such JVMs). With 1g, G1's concurrent marking
# took a sixth of a run's CPU and a run 16% longer. The Spark UI is not needed.
ENV = {**os.environ, "REELHOUSE_DRIVER_MEMORY": "3g",
       **({"JAVA_HOME": FAULTS_JAVA_HOME} if FAULTS_JAVA_HOME else {})}
# The chain's runs and server get the test session's own Spark settings (conftest: no UI, and
# the small-data SQL settings): the same plans as its in-process runs, the same RMSE to the
# last bit.
SPARK_OPTIONS = [arg for key, value in TEST_SPARK_CONF for arg in ("--conf", f"{key}={value}")]
SCHEMA = "movielens"


def runs_java(jars_dir: Path) -> str:
    """Which Java the chain's processes start on, and whether from a start cache."""
    from pipelines import jvm

    found = (jvm.java_at(str(Path(FAULTS_JAVA_HOME) / "bin" / "java")) if FAULTS_JAVA_HOME
             else jvm.java())
    cache = jvm.start_cache_path(jars_dir, jvm.ensure_delta_jars(jars_dir, quiet=True), found)
    cached = "with" if cache is not None and cache.is_file() else "without"
    return f"Java {'.'.join(map(str, found.version))} {cached} a start cache"


# --- a pipeline run we can watch and kill -----------------------------------------------------

class Run:
    """`reelhouse run` in a subprocess. Its stderr is read on a thread, so the test can watch
    the progress lines and the files the run writes at the same time."""

    def __init__(self, warehouse: str, data: Path, cwd: Path):
        # Every step (ingest, build, train, evaluate, report). --master local[2]: the same
        # ALS blocks as the test's session, whatever the number of cores, so both fit exactly
        # the same model. The report lands in <cwd>/target, not in the project.
        command = REELHOUSE + ["run", "--warehouse", warehouse, "--data", str(data),
                               "--master", "local[2]", *SPARK_OPTIONS]
        # A session of its own: the kill takes the Python process and its Spark JVM at once,
        # as a crash or the OOM killer would (killing Python alone lets the JVM notice and exit
        # through Spark's shutdown hooks).
        self.process = subprocess.Popen(command, env=ENV, cwd=cwd, text=True,
                                        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        start_new_session=True)
        self.lines: list[str] = []
        # Every line with the seconds since the start, in a file per run: where a chain's
        # time went, and what a failed run said.
        self.log_path = cwd / f"run-{self.process.pid}.log"
        self.started = time.monotonic()
        self.ended: float | None = None  # when it was killed or seen to finish
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with self.log_path.open("w") as log:
            for line in self.process.stderr:
                self.lines.append(line.rstrip("\n"))
                log.write(f"{time.monotonic() - self.started:7.1f} {line}")
                log.flush()

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    @property
    def run_id(self) -> str | None:
        """From its "run <id> started" line."""
        for line in self.lines:
            words = line.split()
            if words[-1:] == ["started"] and words[-3:-2] == ["run"]:
                return words[-2]
        return None

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def wait_until(self, fired, seconds: float) -> bool:
        """Poll `fired(self)` until it is true (True) or the run ends first (False)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if fired(self):
                return True
            if self.process.poll() is not None:
                self._reader.join(timeout=10)
                return fired(self)
            time.sleep(0.02)
        raise AssertionError(f"no kill point within {seconds:.0f}s; stderr:\n{self.stderr[-3000:]}")

    def kill(self) -> int:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:  # it had just ended by itself: its exit code tells
            pass
        code = self.process.wait(timeout=60)
        self.ended = time.monotonic()
        self._reader.join(timeout=10)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill()

    def finish(self, seconds: float) -> int:
        code = self.process.wait(timeout=seconds)
        self.ended = time.monotonic()
        self._reader.join(timeout=10)
        return code


# --- kill points --------------------------------------------------------------------------------

@dataclass(frozen=True)
class AtLine:
    """Kill as soon as the run prints a progress line containing `text`."""

    text: str

    def arm(self, warehouse: str):
        return lambda run: run.said(self.text)


@dataclass(frozen=True)
class AtNewFiles:
    """Kill as soon as a data file appears under `folder` (relative to the warehouse) that was
    not there when the run started: a write is under way and has not committed (or has only
    just committed; either way the table must be at its old or its new version)."""

    folder: str

    def arm(self, warehouse: str):
        root = Path(warehouse) / self.folder
        before = data_files(root)
        return lambda run: bool(data_files(root) - before)


def data_files(root: Path) -> set[Path]:
    # Delta data files and Spark checkpoint files are both part-*; the Delta log has none.
    return set(root.rglob("part-*")) if root.exists() else set()


@dataclass(frozen=True)
class KillPoint:
    name: str
    trigger: AtLine | AtNewFiles


# --- the warehouse, read from storage ------------------------------------------------------------

def table_versions(warehouse: str) -> dict[str, int]:
    """Each Delta table's latest committed version, from its log's file names (no Spark)."""
    versions = {}
    for log in sorted((Path(warehouse) / SCHEMA).glob("*/_delta_log")):
        commits = [int(p.stem) for p in log.glob("*.json") if p.stem.isdigit()]
        if commits:
            versions[log.parent.name] = max(commits)
    return versions


@dataclass
class TableCounter:
    """Row counts of every table, read with Spark by path (so each table is also proven
    readable); a table whose version has not moved since it was counted is not read again:
    a Delta version never changes."""

    spark: object
    warehouse: str
    _known: dict = field(default_factory=dict)

    def counts(self, versions: dict[str, int] | None = None) -> dict[str, int]:
        """At the given versions (default: the latest)."""
        result = {}
        for table, version in (versions or table_versions(self.warehouse)).items():
            if (table, version) not in self._known:
                location = f"{self.warehouse}/{SCHEMA}/{table}"
                self._known[(table, version)] = self.spark.sql(
                    f"select count(*) from delta.`{location}` version as of {version}").first()[0]
            result[table] = self._known[(table, version)]
        return result


def lock_holder(warehouse: str) -> dict | None:
    path = Path(warehouse) / "_run.lock"
    return json.loads(path.read_text()) if path.exists() else None


# --- the Thrift server and its clients ----------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(warehouse: str, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        REELHOUSE + ["serve", "--warehouse", warehouse, "--port", str(port),
                     "--refresh-seconds", "2", *SPARK_OPTIONS],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV)


def wait_for_server(process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("READY "):
            return
        if not line and process.poll() is not None:
            raise AssertionError(f"reelhouse serve exited with {process.returncode}")
    raise AssertionError("reelhouse serve did not start in time")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def connect(port: int):
    from pyhive import hive

    return hive.connect(host="127.0.0.1", port=port, database=SCHEMA)


def wait_for_tables(port: int, tables: tuple[str, ...], seconds: float) -> None:
    """Until the server's catalog refresh has registered the tables."""
    deadline = time.monotonic() + seconds
    connection = connect(port)
    try:
        cursor = connection.cursor()
        while time.monotonic() < deadline:
            cursor.execute(f"show tables in {SCHEMA}")
            if set(tables) <= {row[1] for row in cursor.fetchall()}:
                return
            time.sleep(0.5)
    finally:
        connection.close()
    raise AssertionError(f"the server did not register {tables} in {seconds:.0f}s")


class Readers(threading.Thread):
    """A BI client querying the Thrift server in a loop (bounded in count and time) while
    runs write: one query counts the rows of several tables; every result, when it came, and
    every error are kept for the test to judge. A query costs the server about 1.4 s of CPU
    (its JVM used some 200 CPU-s for 140 queries in a chain): a pause of 6 s still queries
    every run at least twice (the shortest, killed inside the ALS fit, takes some 28 s)
    without taking much of a core from them."""

    def __init__(self, port: int, tables: tuple[str, ...], max_queries: int = 5000,
                 max_seconds: float = 1800, pause: float = 6.0):
        super().__init__(daemon=True)
        self.port, self.tables = port, tables
        self.max_queries, self.max_seconds, self.pause = max_queries, max_seconds, pause
        self.sql = "select " + ", ".join(f"(select count(*) from {SCHEMA}.{t})" for t in tables)
        self.results: list[dict[str, int]] = []
        self.answered_at: list[float] = []  # time.monotonic() of each result
        self.errors: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        connection = None
        while (not self._stop_event.is_set() and time.monotonic() < deadline
               and len(self.results) + len(self.errors) < self.max_queries):
            try:
                connection = connection or connect(self.port)
                cursor = connection.cursor()
                cursor.execute(self.sql)
                self.results.append(dict(zip(self.tables, cursor.fetchone(), strict=True)))
                self.answered_at.append(time.monotonic())
            except Exception as exc:  # every query must succeed: keep the error for the test
                self.errors.append(repr(exc)[:300])
                connection = None
            self._stop_event.wait(self.pause)
        if connection is not None:
            connection.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=120)


if __name__ == "__main__":
    # dev.sh test, with JAVA_HOME at the Java the chain will use: `reelhouse setup` with the
    # chain's settings, so the JVM start cache it records (on Java 25) holds what the chain's
    # processes load and run.
    sys.exit(subprocess.call(REELHOUSE + ["setup", *SPARK_OPTIONS]))
