"""The fixed cost of one small Delta table in Spark: the floor under the pipeline's time.

    .venv/bin/python -m bench.delta_floor [--rounds 5]

In one warm Spark session with reelhouse's settings, on tables of 1,000 rows, it times what
building one model costs whatever the data size: create a table (CREATE OR REPLACE ... AS
SELECT, as the runner does), replace it, count it (the shape of a data test), and build a
second table from the first (the shape of a downstream model). It prints the Spark jobs and
the seconds of each, the mean over the warm rounds (the first round warms the JVM and is
left out). `reelhouse run` writes about 40 Delta tables, so this, times 40, is time no
amount of tuning of the queries themselves removes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from pipelines import naming, writes
from pipelines.session import create_spark
from pipelines.settings import Settings


def timed(spark, results: dict, name: str, work) -> None:
    """Run work under a job group of its own; record its Spark jobs and seconds."""
    context = spark.sparkContext
    group = f"floor-{time.monotonic_ns()}"
    context.setJobGroup(group, name)
    started = time.monotonic()
    work()
    seconds = time.monotonic() - started
    jobs = len(context.statusTracker().getJobIdsForGroup(group))
    results.setdefault(name, []).append((jobs, seconds))


def one_round(spark, settings: Settings, results: dict, index: int) -> None:
    table = f"floor_{index}"
    rows = spark.range(1000).selectExpr("id", "id % 7 as k")
    comments = {"id": "a row id"}
    timed(spark, results, "create table (CTAS)", lambda: writes.replace_table(
        spark, settings, rows, table, "a table", comments, None, {"built_from": "a"}))
    timed(spark, results, "replace table", lambda: writes.replace_table(
        spark, settings, rows, table, "a table", comments, None, {"built_from": "b"}))
    timed(spark, results, "count rows (a data test)", lambda: spark.sql(
        f"select count(*) from {naming.qualified(settings, table)} where k = 3").collect())
    timed(spark, results, "table from table (a model)", lambda: writes.replace_table(
        spark, settings, spark.sql(f"select k, count(*) as n from "
                                   f"{naming.qualified(settings, table)} group by k"),
        f"{table}_by_k", "an aggregate", {}, None, {"built_from": "a"}))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.delta_floor")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="reelhouse-floor-"))
    settings = Settings(warehouse=str(folder / "warehouse"), master="local[*]",
                        spark_conf=(("spark.ui.enabled", "false"),),
                        target_dir=folder / "target")
    spark = create_spark(settings, app_name="delta-floor", register=False)
    try:
        spark.sql(f"create schema if not exists {settings.schema}")
        results: dict[str, list[tuple[int, float]]] = {}
        for index in range(max(2, args.rounds)):
            one_round(spark, settings, results, index)
    finally:
        spark.stop()
        shutil.rmtree(folder, ignore_errors=True)
    summary = {name: {"jobs": runs[-1][0],
                      "seconds": round(sum(s for _, s in runs[1:]) / len(runs[1:]), 3)}
               for name, runs in results.items()}
    for name, found in summary.items():
        print(f"{name:28} {found['jobs']:2d} Spark jobs  {found['seconds']:.2f} s")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
