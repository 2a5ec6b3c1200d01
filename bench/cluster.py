"""The same `reelhouse run` on `local[2]` and on a Spark standalone cluster of two one-core
workers on loopback, one after the other in one bench run, on the same data: the ratio, and
where the difference goes (from each run's Spark event log: task time, serialization, shuffle,
scheduling).

    .venv/bin/python -m bench.cluster [--size 1m] [--keep]

Both sides have two cores; the cluster adds executors in their own JVMs, so every task's
closure and result cross a process boundary, and every shuffle block is fetched over loopback
from another JVM. Writes results/<date>-cluster-<size>.json. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.__main__ import (
    DRIVER_MEMORY,
    REELHOUSE,
    RESULTS_DIR,
    SIZES,
    WORK_DIR,
    dataset,
    job_seconds_by_description,
    machine,
    measured,
    spark_events,
)
from pipelines import cluster

# Executor memory per size: the worker gets it plus a little for itself.
EXECUTOR_MEMORY = {"10k": "1g", "100k": "2g", "1m": "3g", "10m": "6g", "25m": "8g"}


def task_metrics(event_log_dir: Path) -> dict:
    """Sums over every task of a run: seconds running, deserializing, serializing results,
    in GC, waiting for shuffle blocks, waiting to be scheduled; shuffle MB; task count."""
    sums = dict.fromkeys(("tasks", "run_s", "cpu_s", "deserialize_s", "result_serialize_s",
                          "gc_s", "shuffle_fetch_wait_s", "scheduler_delay_s",
                          "shuffle_write_mb", "shuffle_remote_read_mb", "shuffle_local_read_mb"),
                         0.0)
    for event in spark_events(event_log_dir, '"SparkListenerTaskEnd"'):
        info, metrics = event.get("Task Info") or {}, event.get("Task Metrics") or {}
        if not metrics:
            continue
        read = metrics.get("Shuffle Read Metrics") or {}
        write = metrics.get("Shuffle Write Metrics") or {}
        run = metrics.get("Executor Run Time", 0)
        deserialize = metrics.get("Executor Deserialize Time", 0)
        serialize = metrics.get("Result Serialization Time", 0)
        duration = info.get("Finish Time", 0) - info.get("Launch Time", 0)
        sums["tasks"] += 1
        sums["run_s"] += run / 1000
        sums["cpu_s"] += metrics.get("Executor CPU Time", 0) / 1e9
        sums["deserialize_s"] += deserialize / 1000
        sums["result_serialize_s"] += serialize / 1000
        sums["gc_s"] += metrics.get("JVM GC Time", 0) / 1000
        sums["shuffle_fetch_wait_s"] += read.get("Fetch Wait Time", 0) / 1000
        sums["scheduler_delay_s"] += max(
            0, duration - run - deserialize - serialize
            - info.get("Getting Result Time", 0)) / 1000
        sums["shuffle_write_mb"] += write.get("Shuffle Bytes Written", 0) / 1e6
        sums["shuffle_remote_read_mb"] += read.get("Remote Bytes Read", 0) / 1e6
        sums["shuffle_local_read_mb"] += read.get("Local Bytes Read", 0) / 1e6
    return {key: round(value, 1) for key, value in sums.items()}


def bench_run(name: str, master: str, data: Path, work: Path, size: str) -> dict:
    folder = work / name
    (folder / "events").mkdir(parents=True)
    summary_file = folder / "summary.json"
    print(f"bench.cluster {size}: reelhouse run --master {master} ...", file=sys.stderr)
    result = measured(
        REELHOUSE + ["run", "--master", master, "--data", str(data), "--warehouse",
                     str(folder / "warehouse"), "--summary", str(summary_file),
                     "--conf", "spark.ui.enabled=false",
                     "--conf", f"spark.executor.memory={EXECUTOR_MEMORY[size]}",
                     "--conf", "spark.eventLog.enabled=true",
                     "--conf", "spark.eventLog.compress=false",
                     "--conf", "spark.eventLog.rolling.enabled=false",
                     "--conf", f"spark.eventLog.dir=file://{folder / 'events'}"],
        folder / "run.log", env={"REELHOUSE_DRIVER_MEMORY": DRIVER_MEMORY[size]})
    summary = json.loads(summary_file.read_text())
    result.update(master=master, step_seconds=summary["step_seconds"],
                  rmse=summary["model"]["rmse"], table_rows=summary["table_rows"],
                  tasks=task_metrics(folder / "events"),
                  job_seconds=dict(list(job_seconds_by_description(folder / "events")
                                        .items())[:10]))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1m", choices=sorted(SIZES))
    parser.add_argument("--keep", action="store_true", help="keep the warehouses and logs")
    args = parser.parse_args(argv)
    data, meta = dataset(args.size)
    work = WORK_DIR / f"cluster-{args.size}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    load_before = round(os.getloadavg()[0], 1)
    local = bench_run("local", "local[2]", data, work, args.size)
    worker_memory = f"{int(EXECUTOR_MEMORY[args.size][:-1]) + 1}g"
    started = cluster.start(work / "cluster", workers=2, cores=1, memory=worker_memory)
    try:
        on_cluster = bench_run("cluster", started.master_url, data, work, args.size)
    finally:
        cluster.stop(work / "cluster")
    result = {
        "size": args.size, "ratings": meta["num_ratings"], "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "local": local, "cluster": on_cluster,
        "cluster_vs_local": round(on_cluster["wall_seconds"] / local["wall_seconds"], 2),
        "same_rows": local["table_rows"] == on_cluster["table_rows"],
        "rmse_difference": round(abs(local["rmse"] - on_cluster["rmse"]), 5),
        "load_average_before_after": [load_before, round(os.getloadavg()[0], 1)]}
    out = RESULTS_DIR / f"{datetime.now(UTC):%Y-%m-%d}-cluster-{args.size}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"bench.cluster {args.size}: local[2] {local['wall_seconds']:.0f} s, cluster "
          f"{on_cluster['wall_seconds']:.0f} s, ratio {result['cluster_vs_local']}; same rows "
          f"{result['same_rows']}, RMSE difference {result['rmse_difference']} -> {out}",
          file=sys.stderr)
    for key in local["tasks"]:
        print(f"  {key:<24} local {local['tasks'][key]:>10}   cluster "
              f"{on_cluster['tasks'][key]:>10}", file=sys.stderr)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
