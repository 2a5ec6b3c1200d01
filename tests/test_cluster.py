"""The whole pipeline on a real Spark standalone cluster: a master and two one-core workers on
loopback, started by `reelhouse cluster start` from the installed pyspark. A run on it must
build the same tables as a local run of the same data, and then the Thrift server and
`spark-sql` answer on the same cluster."""

from __future__ import annotations

import json
import subprocess

import pytest

from pipelines import pipeline
from tests.conftest import (
    REELHOUSE,
    free_port,
    fresh_warehouse,
    query,
    reelhouse_env,
    start_server,
    stop_server,
    wait_for_ready,
)

pytestmark = pytest.mark.cluster


def reelhouse(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(REELHOUSE + list(args), capture_output=True, text=True,
                          timeout=timeout, env=reelhouse_env(), stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster")
    started = reelhouse("cluster", "start", "--dir", str(folder), "--workers", "2",
                        "--cores", "1", "--memory", "1500m", timeout=180)
    assert started.returncode == 0, started.stderr[-2000:]
    master = started.stdout.strip()
    assert master.startswith("spark://127.0.0.1:"), started.stdout
    yield master, folder
    stopped = reelhouse("cluster", "stop", "--dir", str(folder), timeout=120)
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert "stopped 3 cluster processes" in stopped.stderr


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from pipelines.generate import generate_dataset

    folder = tmp_path_factory.mktemp("cluster-data") / "ml-synthetic"
    generate_dataset(folder, 3000, num_users=60, num_movies=200, seed=5)
    return folder


@pytest.fixture(scope="module")
def cluster_run(cluster, dataset, tmp_path_factory):
    """`reelhouse run` on the cluster, every step: (warehouse, its --summary)."""
    master, _ = cluster
    root = tmp_path_factory.mktemp("cluster-run")
    warehouse, summary = root / "warehouse", root / "summary.json"
    done = reelhouse("run", "--master", master, "--data", str(dataset), "--warehouse",
                     str(warehouse), "--summary", str(summary), "--conf",
                     "spark.ui.enabled=false")
    assert done.returncode == 0, done.stderr[-3000:]
    # Sized from the cluster's two cores, not Spark's 200 (which made each small query a
    # 200-task job on two cores).
    assert f"on {master}: 4 tasks per stage for 2 executor cores" in done.stderr
    return warehouse, json.loads(summary.read_text())


def test_a_run_on_the_cluster_builds_what_a_local_run_builds(spark, tmp_path_factory,
                                                            dataset, cluster_run):
    _, on_cluster = cluster_run
    assert on_cluster["status"] == "succeeded"
    assert on_cluster["step_seconds"].keys() == {"ingest", "build", "train", "evaluate",
                                                 "report"}
    settings = fresh_warehouse(spark, tmp_path_factory, "local-twin")
    pipeline.run_pipeline(spark, settings, dataset, "local-twin",
                          steps=("ingest", "build", "train", "evaluate"))
    local_rows = {name: spark.table(f"movielens.{name}").count()
                  for name in on_cluster["table_rows"]}
    assert local_rows == on_cluster["table_rows"]
    local_rmse = spark.sql("select rmse from movielens.model_runs").first().rmse
    assert on_cluster["model"]["rmse"] == pytest.approx(local_rmse, abs=0.005)


def test_the_thrift_server_and_spark_sql_answer_on_the_cluster(cluster, cluster_run):
    master, _ = cluster
    warehouse, on_cluster = cluster_run
    port = free_port()
    server = start_server(str(warehouse), port, "--master", master)
    try:
        wait_for_ready(server)
        assert query(port, "select count(*) from movielens.ratings") == [
            (on_cluster["table_rows"]["ratings"],)]
    finally:
        stop_server(server)
    # The server gave its executors back: spark-sql gets the cluster's cores next.
    answered = reelhouse("spark-sql", "--warehouse", str(warehouse), "--master", master,
                         "-e", "select count(*) from movielens.recommendations", timeout=300)
    assert answered.returncode == 0, answered.stderr[-2000:]
    assert answered.stdout.split()[-1] == str(on_cluster["table_rows"]["recommendations"])


def test_a_cluster_that_is_already_running_is_not_started_twice(cluster):
    _, folder = cluster
    again = reelhouse("cluster", "start", "--dir", str(folder), timeout=60)
    assert again.returncode != 0
    assert "already running" in again.stderr and "Traceback" not in again.stderr
    status = reelhouse("cluster", "status", "--dir", str(folder), timeout=60)
    assert status.returncode == 0 and "2 workers alive\t2 cores" in status.stdout


def test_a_master_nobody_serves_is_one_clear_line(tmp_path):
    # Nothing listens there: said at once, before Spark would retry for a minute.
    done = reelhouse("sql", "--warehouse", str(tmp_path / "w"), "--master",
                     f"spark://127.0.0.1:{free_port()}", "select 1", timeout=300)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "reelhouse: error: Nothing accepts connections at spark://127.0.0.1:")
