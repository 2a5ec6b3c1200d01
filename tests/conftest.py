"""One Spark session for the whole test run (starting Spark costs seconds); each test that
needs a warehouse gets a fresh folder and a catalog emptied of the previous test's tables.

Also what several test modules share, so that no test module imports another: a tiny
ml-latest folder to ingest, and the helpers that start `reelhouse serve` as a process and
query it over PyHive and beeline."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from pipelines import registration, serve, session
from pipelines.session import create_spark
from pipelines.settings import CHECKOUT_DIR, Settings

REAL_DATA = CHECKOUT_DIR.parent / "shared" / "movielens" / "ml-latest-small"
# How Spark plans and evaluates a query changes no result the tests check, and on their few
# thousand rows Spark's speed settings cost more than they save: the product's own small-data
# SQL settings (session.SMALL_DATA_SQL_CONF: no adaptive re-planning, no generated code), here
# for the whole session (training too), plus two shuffle partitions (one per core) for a few
# thousand rows. A cold tiny full run took 291 CPU-s (157 s) compiled and 226 CPU-s (124 s)
# interpreted; two partitions took a tiny run from 221 to 201 CPU-s. Spark's compiled path
# stays covered end to end by the tests that run `reelhouse run` as a process (real data,
# bench, serve): their training uses it at any size.
SMALL_DATA_SQL_CONF = {**session.SMALL_DATA_SQL_CONF, "spark.sql.shuffle.partitions": "2"}
TEST_SPARK_CONF = (("spark.ui.enabled", "false"), *SMALL_DATA_SQL_CONF.items())


def pytest_collection_modifyitems(items):
    """The fault-injection chain last: its in-process runs then find this session's JVM warm
    (compiled by the tests before it) instead of paying for that warm-up themselves, which
    made the chain some 3 minutes longer when it ran first (its folder sorts first)."""
    faults = [item for item in items if "/tests/faults/" in str(item.path)]
    items[:] = [item for item in items if item not in faults] + faults


def test_settings(warehouse: Path, **overrides) -> Settings:
    return Settings(warehouse=str(warehouse), master="local[2]", driver_memory="3g",
                    spark_conf=TEST_SPARK_CONF, target_dir=warehouse.parent / "target",
                    **overrides)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    settings = test_settings(tmp_path_factory.mktemp("boot") / "warehouse")
    session = create_spark(settings, app_name="reelhouse-tests", register=False)
    yield session
    session.stop()


def reset_catalog(spark, schema: str = "movielens") -> None:
    """Forget every table and view of the previous warehouse (their files stay where they are)."""
    spark.sql(f"create schema if not exists {schema}")
    for row in spark.sql(f"show tables in {schema}").collect():
        if not row.isTemporary:
            kind = spark.sql(f"describe table extended {schema}.{row.tableName}") \
                .where("col_name = 'Type'").first()
            if kind is not None and kind.data_type == "VIEW":
                spark.sql(f"drop view if exists {schema}.{row.tableName}")
            else:
                spark.sql(f"drop table if exists {schema}.{row.tableName}")


def fresh_warehouse(spark, tmp_path_factory, name: str = "warehouse") -> Settings:
    """Settings for an empty warehouse, the catalog emptied of the previous one's tables."""
    reset_catalog(spark)
    settings = test_settings(tmp_path_factory.mktemp(name) / "warehouse")
    registration.register_warehouse(spark, settings)
    registration.register_udfs(spark, settings)
    return settings


@pytest.fixture
def new_warehouse(spark, tmp_path_factory):
    """A function giving Settings for a fresh, empty warehouse (per test)."""
    return lambda name="warehouse": fresh_warehouse(spark, tmp_path_factory, name)


@pytest.fixture(scope="session")
def installed_reelhouse(tmp_path_factory) -> Path:
    """`reelhouse` from a plain `pip install .` (not editable) of this checkout into a fresh
    virtualenv: what a user gets, with the SQL project inside the package and no checkout
    to fall back on. Returns its `reelhouse` command."""
    import os
    import subprocess
    import sys

    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "REELHOUSE_PROJECT_DIR")}
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(CHECKOUT_DIR)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv / "bin" / "reelhouse"


# --- data files -----------------------------------------------------------------------------

def write_file(folder: Path, name: str, text: str, encoding: str = "utf-8",
               crlf: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = text.replace("\n", "\r\n") if crlf else text
    (folder / name).write_bytes(data.encode(encoding))
    return folder / name


def latest_folder(root: Path) -> Path:
    """ml-latest layout with CRLF endings, a quoted title and non-Latin letters: 3 ratings,
    3 movies, 1 tag, 2 links."""
    folder = root / "ml-latest-tiny"
    write_file(folder, "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n"
               "1,2,3.5,964981247\n2,1,5.0,964982224\n", crlf=True)
    write_file(folder, "movies.csv",
               'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
               '2,"American President, The (1995)",Comedy|Drama|Romance\n'
               '3,Амели (2001),(no genres listed)\n', crlf=True)
    write_file(folder, "tags.csv",
               'userId,movieId,tag,timestamp\n1,1,"pixar, fun",1139045764\n', crlf=True)
    write_file(folder, "links.csv", "movieId,imdbId,tmdbId\n1,0114709,862\n2,0112346,\n",
               crlf=True)
    return folder


# --- `reelhouse` processes: the Thrift server and its clients --------------------------------

REELHOUSE = [sys.executable, "-m", "pipelines.cli"]


def reelhouse_env(driver_memory: str = "1g") -> dict[str, str]:
    """The environment of a `reelhouse` subprocess: a small driver, as two of them (a server
    and a run) share the machine with this test session's own JVM."""
    return {**os.environ, "REELHOUSE_DRIVER_MEMORY": driver_memory}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(warehouse: str, port: int, *options: str) -> subprocess.Popen:
    """`reelhouse serve` on 127.0.0.1:port in its own process (stdout piped, for
    wait_for_ready); options are more command-line flags."""
    return subprocess.Popen(
        REELHOUSE + ["serve", "--warehouse", warehouse, "--port", str(port),
                     "--conf", "spark.ui.enabled=false", *options],
        stdout=subprocess.PIPE, text=True, env=reelhouse_env())


def wait_for_ready(process: subprocess.Popen, seconds: float = 180) -> str:
    """The JDBC URL the server prints once it accepts clients."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("READY "):
            return line.split()[1]
        if not line and process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
    raise AssertionError("server did not start in time")


def stop_server(process: subprocess.Popen, seconds: float = 60) -> None:
    """SIGTERM, as an operator stops it, unless it has stopped already."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=seconds)


def query(port: int, sql: str) -> list[tuple]:
    """The rows of `sql` over PyHive, through SQLAlchemy's hive:// URL (as Superset does)."""
    engine = create_engine(f"hive://127.0.0.1:{port}/movielens")
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql)).fetchall()]


def run_beeline(port: int, sql: str, *options: str) -> subprocess.CompletedProcess:
    """Spark's own JDBC shell running `sql`, its rows as CSV (options: more flags, such as
    -n USER -p PASSWORD)."""
    return subprocess.run(
        [str(serve.spark_home() / "bin" / "beeline"), "-u",
         f"jdbc:hive2://127.0.0.1:{port}/movielens", *options, "--outputformat=csv2",
         "-e", sql],
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
        env={**os.environ, "SPARK_HOME": str(serve.spark_home())})


def beeline(port: int, sql: str) -> list[str]:
    """The query's rows as CSV lines over beeline, header first (a prompt beeline may print
    before the header, '. . . .> ', taken off)."""
    result = run_beeline(port, sql)
    assert result.returncode == 0, result.stderr[-2000:]
    return [re.sub(r"^(?:\. )*\.> ", "", line) for line in result.stdout.strip().splitlines()]
