"""The bench command end to end at its smoke size (10k ratings): the full pipeline and the
tutorial-style script run on the same generated data, and the result file holds what
bench/README.md's table is made of. A smoke test of the command, never a timed test: no
assertion here is about speed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from pipelines.settings import CHECKOUT_DIR

STEPS = ("ingest", "build", "train", "evaluate", "report")


def test_bench_smoke_size_runs_both_sides_and_writes_its_result(tmp_path):
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench", "--sizes", "10k", "--results", str(tmp_path),
         "--no-readme", "--matched-max", "0", "--blas-max", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=CHECKOUT_DIR,
        start_new_session=True)
    try:
        _, stderr = bench.communicate(timeout=1200)
    finally:  # the bench's own Spark processes go with it, whatever happened
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
    assert bench.returncode == 0, stderr[-2000:]
    [result_file] = tmp_path.glob("*-10k.json")
    result = json.loads(result_file.read_text())

    pipeline, tutorial = result["pipeline"], result["tutorial"]
    assert result["ratings"] == 10_000 and result["rows"]["ratings"] == 10_000
    assert set(STEPS) <= set(pipeline["step_seconds"])
    assert pipeline["peak_jvm_mb"] > 100 and pipeline["peak_python_mb"] > 10
    assert 0.3 < pipeline["rmse"] < 1.5 and 0.3 < tutorial["rmse"] < 1.5
    assert pipeline["fit_seconds"] > 0 and tutorial["seconds"]["fit"] > 0
    # Spark's event log was read: the jobs are named after the steps and models they ran for.
    assert any(label.startswith("model movielens.") for label in pipeline["job_seconds"])
    assert result["ratios"]["pipeline_vs_tutorial"] == round(
        pipeline["wall_seconds"] / tutorial["wall_seconds"], 2)
    assert result["machine"]["cores"] >= 1 and result["machine"]["spark"].startswith("4.")


def test_a_process_past_the_time_limit_is_killed_and_its_finished_steps_kept(tmp_path):
    from bench.__main__ import measured, steps_from_log

    script = ("import time\n"
              "print('reelhouse: ingest ...', flush=True)\n"
              "print('reelhouse: ingest done (2.5s)', flush=True)\n"
              "print('reelhouse: build ...', flush=True)\n"
              "time.sleep(600)\n")
    log = tmp_path / "run.log"
    result = measured([sys.executable, "-c", script], log, time_limit=3)
    assert result["timed_out"] and result["exit_code"] == -signal.SIGKILL
    assert result["wall_seconds"] < 60
    assert steps_from_log(log) == ({"ingest": 2.5}, "build")


def test_the_table_shows_a_timed_out_size_without_ratios():
    from bench.__main__ import markdown_table

    machine = {"cores": 2, "cpu": "x", "memory_gb": 24, "java": "17", "spark": "4.2.0",
               "native_blas": False, "code": "abc1234"}
    stopped = {"wall_seconds": 900.4, "timed_out": True, "stopped_in": "train",
               "step_seconds": {"ingest": 120.0, "build": 600.0}, "fit_seconds": None,
               "rmse": None, "peak_total_mb": 9000, "peak_jvm_mb": 8800, "peak_python_mb": 200}
    tutorial = {"wall_seconds": 900.1, "timed_out": True, "peak_total_mb": 1,
                "peak_jvm_mb": 1, "peak_python_mb": 0}
    table = markdown_table([{"size": "25m", "ratings": 25_000_095, "machine": machine,
                             "pipeline": stopped, "tutorial": tutorial, "ratios": {}}])
    row = next(line for line in table.splitlines() if line.startswith("| 25m"))
    assert "> 900 (stopped in train)" in row and "120 / 600 / – / – / –" in row
    assert "> 900 (stopped)" in row and "code abc1234" in table
