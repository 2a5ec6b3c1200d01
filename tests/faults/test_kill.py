"""Fault injection with real processes: SIGKILL a pipeline run inside a long step, then check
that every table is still readable, the lock is recovered, and a rerun ends exactly where an
uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from pipelines import catalog

from ..conftest import fresh_warehouse
from ..test_serve import REELHOUSE

COUNTED_TABLES = ("raw_ratings", "ratings", "movies", "rejected_ratings")


def run_command(settings, data):
    return REELHOUSE + ["run", "--warehouse", settings.warehouse, "--data", str(data),
                        "--steps", "ingest,build", "--select", "+ratings",
                        "--select", "rejected_ratings", "--conf", "spark.ui.enabled=false"]


def counts(spark, settings):
    catalog.register_warehouse(spark, settings)
    return {t: spark.sql(f"select count(*) from movielens.{t}").first()[0]
            for t in COUNTED_TABLES}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from pipelines.generate import generate_dataset

    folder = tmp_path_factory.mktemp("faults") / "ml-synthetic"
    meta = generate_dataset(folder, 2000, num_users=50, num_movies=150, seed=11)
    # What an uninterrupted run ends with (the generator writes no bad lines).
    expected = {"raw_ratings": meta["num_ratings"], "ratings": meta["num_ratings"],
                "movies": meta["num_movies"], "rejected_ratings": 0}
    return folder, expected


@pytest.mark.parametrize("kill_after", ["raw movies", "[2/"])
def test_a_killed_run_loses_nothing_and_the_rerun_recovers(spark, tmp_path_factory, dataset,
                                                          kill_after, capsys):
    env = {**os.environ, "REELHOUSE_DRIVER_MEMORY": "1g"}
    dataset, expected = dataset

    settings = fresh_warehouse(spark, tmp_path_factory, "killed")
    victim = subprocess.Popen(run_command(settings, dataset), env=env, text=True,
                              stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    for line in victim.stderr:
        if kill_after in line:
            victim.send_signal(signal.SIGKILL)
            break
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL

    # Every table that exists is readable (at its old or new version: Delta commits are atomic).
    catalog.register_warehouse(spark, settings)
    for table in catalog.list_tables_on_storage(spark, settings):
        spark.sql(f"select count(*) from movielens.{table}").first()

    rerun = subprocess.run(run_command(settings, dataset), env=env, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-1500:]
    assert "taking over the lock" in rerun.stderr
    assert counts(spark, settings) == expected  # rows lost: 0
    statuses = sorted(r.status for r in spark.sql(
        "select status from movielens.pipeline_runs").collect())
    assert statuses == ["killed", "succeeded"]
    with capsys.disabled():
        print(f"\nfault injected after {kill_after!r}: run recovered, rows lost: "
              f"{sum(expected.values()) - sum(counts(spark, settings).values())}")
