"""Speed, memory and scale: the whole reelhouse pipeline against the classic tutorial.

    .venv/bin/python -m bench [--sizes 100k,1m,10m,25m] [--keep] [--no-readme]

For each size it generates a synthetic MovieLens-shaped dataset (cached under
.reelhouse/bench-data), then, one after the other on the same data:
  1. `reelhouse run` on a fresh warehouse: ingest -> every model -> train -> evaluate ->
     report, JVM start included, with Spark's event log on (where the time goes);
  2. the tutorial-style script (bench/tutorial.py): load -> ALS with Spark's defaults ->
     RMSE -> recommendForAllUsers, and nothing else;
  3. up to --matched-max ratings: `reelhouse train` with Spark's ALS hyperparameters on the
     warehouse of step 1, so our fit and Spark's default fit are compared at equal RMSE;
  4. up to --blas-max ratings: the tutorial again with native BLAS switched off, so the
     effect of OpenBLAS is measured rather than assumed.
Every process is sampled for peak resident memory (JVM and Python apart). Results go to
bench/results/<date>-<size>.json; bench/README.md's table is rewritten from the newest result
of each size. Ratios are against the tutorial run in the same bench run, never against a
stored number. Not a test: it takes minutes to hours (25M: pass --time-limit).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from pipelines.generate import generate_dataset
from pipelines.settings import CHECKOUT_DIR, STEPS

BENCH_DIR = CHECKOUT_DIR / "bench"
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = CHECKOUT_DIR / ".reelhouse" / "bench"
DATA_DIR = CHECKOUT_DIR / ".reelhouse" / "bench-data"
REELHOUSE = [sys.executable, "-m", "pipelines.cli"]
SPARK_DEFAULT_ALS = ["--rank", "10", "--max-iter", "10", "--reg-param", "0.1", "--no-bias"]

# Users x movies of the GroupLens release each size stands for (25m: ml-25m's rated movies).
SIZES = {
    "10k": (10_000, 300, 800),  # not a release: the smoke size the test suite runs
    "100k": (100_000, 943, 1_682),
    "1m": (1_000_209, 6_040, 3_706),
    "10m": (10_000_054, 69_878, 10_677),
    "25m": (25_000_095, 162_541, 59_047),
}
DEFAULT_SIZES = ("100k", "1m", "10m", "25m")
# Driver heap per size: the default 4g up to 1M; the large sizes get room for ALS's blocks.
DRIVER_MEMORY = {"10k": "2g", "100k": "4g", "1m": "4g", "10m": "8g", "25m": "12g"}


# --- measuring a process ----------------------------------------------------------------------

def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _rss_and_kind(pid: int) -> tuple[int, str]:
    """Memory of a process and whether it is the JVM or Python. Proportional set size where
    the kernel gives it: pyspark's worker processes are forks sharing their pages, and their
    plain RSS summed counts the same pages many times."""
    try:
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
    except OSError:
        return 0, "gone"
    size = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    size = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return size, "jvm" if fields.get("Name", "").strip() == "java" else "python"


class PeakMemory:
    """Samples a process tree's resident memory every 0.2 s on a thread; keeps the peaks."""

    def __init__(self, pid: int):
        self.pid, self.peak = pid, {"jvm": 0, "python": 0, "total": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            now = {"jvm": 0, "python": 0}
            for pid in _descendants(self.pid):
                rss, kind = _rss_and_kind(pid)
                if kind in now:
                    now[kind] += rss
            now["total"] = now["jvm"] + now["python"]
            self.peak = {k: max(self.peak[k], now[k]) for k in self.peak}
            self._stop.wait(0.2)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {f"peak_{k}_mb": round(v / 2**20) for k, v in self.peak.items()}


def measured(command: list[str], log: Path, env: dict | None = None,
             time_limit: float | None = None) -> dict:
    """Run a command to the end (or until time_limit seconds, then kill its whole process
    group), its output to log; wall seconds, peak memory, exit code, whether it timed out."""
    started = time.monotonic()
    with open(log, "w") as out:
        # Its own process group: a kill reaches the JVM that pyspark started under it.
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})}, cwd=CHECKOUT_DIR,
                                   start_new_session=True)
        memory = PeakMemory(process.pid)
        timed_out = False
        try:
            code = process.wait(timeout=time_limit)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(process)
            code = process.returncode
        except BaseException:  # an interrupted bench leaves no run behind
            _kill_group(process)
            memory.stop()
            raise
    result = {"wall_seconds": round(time.monotonic() - started, 2), "exit_code": code,
              "timed_out": timed_out, **memory.stop(), "log": str(log)}
    if code != 0 and not timed_out:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise SystemExit(f"bench: {' '.join(command[:4])} ... failed ({code}):\n"
                         + "\n".join(tail))
    return result


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


STEP_DONE = re.compile(rf"^reelhouse: ({'|'.join(STEPS)}) done \(([\d.]+)s[,)]")


def steps_from_log(log: Path) -> tuple[dict[str, float], str | None]:
    """The seconds of each step a run finished, read from its progress lines, and the step
    it was in when it stopped: what a timed-out run got through."""
    seconds, current = {}, None
    for line in log.read_text(errors="replace").splitlines():
        if match := STEP_DONE.match(line):
            seconds[match.group(1)] = float(match.group(2))
            current = None
        elif line.startswith("reelhouse: ") and line.endswith(" ...") and " " not in \
                line[len("reelhouse: "):-4]:
            current = line[len("reelhouse: "):-4]
    return seconds, current


def query(warehouse: Path, sql: str) -> list[dict]:
    """Rows of a query on a bench warehouse, through `reelhouse sql` (not timed)."""
    done = subprocess.run(REELHOUSE + ["sql", "--warehouse", str(warehouse), "--format", "json",
                                       "--conf", "spark.ui.enabled=false", sql],
                          capture_output=True, text=True, cwd=CHECKOUT_DIR)
    if done.returncode != 0:
        raise SystemExit(f"bench: query failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- where the time goes: Spark's event log --------------------------------------------------

def _job_label(description: str | None) -> str:
    """`model movielens.x` for the model's own jobs; Delta prefixes the jobs it runs to read a
    table's log ("Delta: model movielens.x: Filtering files for query"): those become
    `model movielens.x (Delta log)`."""
    text = description or "other"
    from_delta = text.startswith("Delta: ")
    while text.startswith("Delta: "):
        text = text[len("Delta: "):]
    base = text.split(": ")[0]
    return f"{base} (Delta log)" if from_delta else base


def spark_events(event_log_dir: Path, prefix: str):
    """The events of Spark's event log files under a folder whose line starts with `prefix`
    (e.g. '"SparkListenerJob'), parsed; other lines are skipped unparsed."""
    for path in event_log_dir.rglob("*"):
        if not path.is_file() or path.name.startswith((".", "appstatus")):
            continue
        with open(path) as events:
            for line in events:
                if prefix in line[:40]:
                    yield json.loads(line)


def job_seconds_by_description(event_log_dir: Path) -> dict[str, float]:
    """Seconds of Spark jobs grouped by their description (`step ingest`, `model
    movielens.ratings`, ...), from the event log. Models built side by side overlap, so the
    sum can exceed the wall time."""
    starts, totals = {}, {}
    for event in spark_events(event_log_dir, '"SparkListenerJob'):
        if event["Event"] == "SparkListenerJobStart":
            properties = event.get("Properties") or {}
            label = _job_label(properties.get("spark.job.description"))
            starts[event["Job ID"]] = (label, event["Submission Time"])
        elif event["Job ID"] in starts:
            label, start = starts.pop(event["Job ID"])
            totals[label] = totals.get(label, 0.0) + (event["Completion Time"] - start) / 1000
    return dict(sorted(((k, round(v, 1)) for k, v in totals.items()),
                       key=lambda item: -item[1]))


# --- one size ----------------------------------------------------------------------------------

def dataset(size: str) -> tuple[Path, dict]:
    num_ratings, num_users, num_movies = SIZES[size]
    folder = DATA_DIR / size
    meta_file = folder / "reelhouse_generator.json"
    if not meta_file.exists():
        print(f"bench: generating {num_ratings:,} ratings ({size})", file=sys.stderr)
        generate_dataset(folder, num_ratings, num_users=num_users, num_movies=num_movies,
                         seed=42)
    return folder, json.loads(meta_file.read_text())


def bench_size(size: str, args) -> dict:
    data, meta = dataset(size)
    load_before = round(os.getloadavg()[0], 1)
    work = WORK_DIR / size
    shutil.rmtree(work, ignore_errors=True)
    (work / "events").mkdir(parents=True)
    warehouse = work / "warehouse"
    env = {"REELHOUSE_DRIVER_MEMORY": DRIVER_MEMORY[size]}
    result = {"size": size, "ratings": meta["num_ratings"], "users": meta["num_users"],
              "movies": meta["num_movies"], "driver_memory": DRIVER_MEMORY[size],
              "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine()}

    print(f"bench {size}: reelhouse run ...", file=sys.stderr)
    summary_file = work / "run-summary.json"
    result["pipeline"] = measured(
        REELHOUSE + ["run", "--data", str(data), "--warehouse", str(warehouse),
                     "--summary", str(summary_file), "--conf", "spark.ui.enabled=false",
                     "--conf", "spark.eventLog.enabled=true",
                     "--conf", "spark.eventLog.compress=false",  # plain JSON lines to read back
                     "--conf", "spark.eventLog.rolling.enabled=false",
                     "--conf", f"spark.eventLog.dir=file://{work / 'events'}"],
        work / "run.log", env=env, time_limit=args.time_limit)
    result["pipeline"]["job_seconds"] = dict(
        list(job_seconds_by_description(work / "events").items())[:15])
    if result["pipeline"]["timed_out"]:
        # What it got through: the steps it finished and the one it was in.
        steps, stopped_in = steps_from_log(work / "run.log")
        result["pipeline"].update(step_seconds=steps, stopped_in=stopped_in, rmse=None,
                                  fit_seconds=None, train_rows=None)
        result["rows"] = {}
    else:
        summary = json.loads(summary_file.read_text())
        result["pipeline"].update(step_seconds=summary["step_seconds"],
                                  rmse=summary["model"]["rmse"],
                                  fit_seconds=round(summary["model"]["fit_seconds"], 2),
                                  train_rows=summary["model"]["train_rows"])
        result["rows"] = {table: summary["table_rows"].get(table) for table in (
            "raw_ratings", "ratings", "ratings_split", "predictions", "recommendations",
            "similar_movies")}

    print(f"bench {size}: tutorial-style script ...", file=sys.stderr)
    tutorial_json = work / "tutorial.json"
    result["tutorial"] = measured(
        [sys.executable, "-m", "bench.tutorial", str(data), "--result", str(tutorial_json),
         "--driver-memory", DRIVER_MEMORY[size]], work / "tutorial.log",
        time_limit=args.time_limit)
    if not result["tutorial"]["timed_out"]:
        result["tutorial"].update(json.loads(tutorial_json.read_text()))

    finished = not (result["pipeline"]["timed_out"] or result["tutorial"]["timed_out"])
    if meta["num_ratings"] <= args.matched_max and finished:
        print(f"bench {size}: reelhouse train with Spark's ALS hyperparameters ...",
              file=sys.stderr)
        result["matched_fit"] = measured(
            REELHOUSE + ["train", "--warehouse", str(warehouse), "--conf",
                         "spark.ui.enabled=false", *SPARK_DEFAULT_ALS],
            work / "matched.log", env=env)
        row = query(warehouse, "select rmse, fit_seconds from movielens.model_runs "
                               "order by started_at desc limit 1")[0]
        result["matched_fit"].update(rmse=row["rmse"], fit_seconds=round(row["fit_seconds"], 2))

    if meta["num_ratings"] <= args.blas_max and native_blas() and finished:
        print(f"bench {size}: tutorial-style with native BLAS off ...", file=sys.stderr)
        java_blas_json = work / "tutorial-java-blas.json"
        result["tutorial_java_blas"] = measured(
            [sys.executable, "-m", "bench.tutorial", str(data), "--result", str(java_blas_json),
             "--driver-memory", DRIVER_MEMORY[size]], work / "tutorial-java-blas.log",
            env={"JAVA_TOOL_OPTIONS": "-Ddev.ludovic.netlib.blas.allowNative=false "
                                      "-Ddev.ludovic.netlib.lapack.allowNative=false"})
        result["tutorial_java_blas"].update(json.loads(java_blas_json.read_text()))

    result["ratios"] = ratios(result)
    # Other work on the machine slows both sides; the load says how quiet it was.
    result["load_average_before_after"] = [load_before, round(os.getloadavg()[0], 1)]
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def ratios(result: dict) -> dict:
    """Each ratio whose two sides both finished (a timed-out side has none)."""
    pipeline, tutorial = result["pipeline"], result["tutorial"]
    if pipeline["timed_out"] or tutorial["timed_out"]:
        return {}
    found = {"pipeline_vs_tutorial": round(pipeline["wall_seconds"] / tutorial["wall_seconds"], 2),
             "our_fit_vs_spark_default_fit": round(
                 pipeline["fit_seconds"] / tutorial["seconds"]["fit"], 2)}
    if "matched_fit" in result:
        found["matched_fit_vs_spark_default_fit"] = round(
            result["matched_fit"]["fit_seconds"] / tutorial["seconds"]["fit"], 2)
    if "tutorial_java_blas" in result:
        found["native_blas_fit_vs_java_blas_fit"] = round(
            tutorial["seconds"]["fit"] / result["tutorial_java_blas"]["seconds"]["fit"], 2)
    return found


# --- the machine and the table -----------------------------------------------------------------

def native_blas() -> bool:
    return any(Path(d, "libblas.so.3").exists()
               for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"))


def machine() -> dict:
    import pyspark

    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    with open("/proc/meminfo") as meminfo:
        memory_kb = int(meminfo.readline().split()[1])
    return {"cores": os.cpu_count(), "memory_gb": round(memory_kb / 2**20),
            "cpu": _cpu_model(), "os": platform.platform(),
            "java": java.splitlines()[0] if java else "?", "spark": pyspark.__version__,
            "native_blas": native_blas(), "code": _code_version()}


def _code_version() -> str:
    """The commit measured (with "+changes" when the working tree differs from it)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=CHECKOUT_DIR)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    # The bench's own results files do not count as changes to the code measured.
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                  ":(exclude)bench/results")
    return commit + ("+changes" if changed else "")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def slope(points: list[tuple[float, float]]) -> float | None:
    """The exponent b of seconds = a * ratings^b (least squares on logs): 1.0 is linear."""
    if len(points) < 2:
        return None
    xs, ys = [math.log(x) for x, _ in points], [math.log(y) for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    covariance = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return covariance / sum((x - mx) ** 2 for x in xs)


def latest_results() -> list[dict]:
    newest: dict[str, dict] = {}
    for path in sorted(RESULTS_DIR.glob("*.json")):
        result = json.loads(path.read_text())
        if result.get("size") in DEFAULT_SIZES:
            newest[result["size"]] = result  # file names sort by date
    return [newest[size] for size in DEFAULT_SIZES if size in newest]


def markdown_table(results: list[dict]) -> str:
    if not results:
        return "No results yet: run `python -m bench`.\n"
    m = results[-1]["machine"]
    # Rows may come from different sessions, on different CPUs and code: each row's are named.
    where: dict[str, list[str]] = {}
    for r in results:
        key = f"{r['machine']['cpu']}, code {r['machine'].get('code', '?')}"
        where.setdefault(key, []).append(r["size"])
    lines = [
        f"Machine: {m['cores']} cores, {m['memory_gb']} GB, {m['java']}, "
        f"Spark {m['spark']}, native BLAS {'on' if m['native_blas'] else 'off'}. "
        + "; ".join(f"{', '.join(sizes)} on {key}" for key, sizes in where.items()) + ".",
        "",
        "| size | ratings | reelhouse run (s) | ingest / build / train / evaluate / report (s) "
        "| ALS fit (s) | RMSE | peak MB (JVM + Python) | tutorial (s) | tutorial fit (s) "
        "| tutorial RMSE | run ÷ tutorial | fit ÷ Spark fit | same-RMSE fit ÷ Spark fit "
        "| load before/after |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        p, t, ratio = r["pipeline"], r["tutorial"], r["ratios"]
        steps = " / ".join(_step(p, step) for step in STEPS)
        tutorial_fit = t.get("seconds", {}).get("fit")
        lines.append(
            f"| {r['size']} | {r['ratings']:,} | {_seconds(p)} | {steps} | "
            f"{_number(p['fit_seconds'], '.1f')} | {_number(p['rmse'], '.4f')} | "
            f"{p['peak_total_mb']:,} ({p['peak_jvm_mb']:,} + {p['peak_python_mb']:,}) | "
            f"{_seconds(t)} | {_number(tutorial_fit, '.1f')} | "
            f"{_number(t.get('rmse'), '.4f')} | {ratio.get('pipeline_vs_tutorial', 'n/a')} | "
            f"{ratio.get('our_fit_vs_spark_default_fit', 'n/a')} | "
            f"{ratio.get('matched_fit_vs_spark_default_fit', 'n/a')} | "
            f"{' / '.join(str(x) for x in r.get('load_average_before_after', []))} |")
    finished = [r for r in results if not r["pipeline"].get("timed_out")
                and not r["tutorial"].get("timed_out")]
    pipeline_slope = slope([(r["ratings"], r["pipeline"]["wall_seconds"]) for r in finished])
    tutorial_slope = slope([(r["ratings"], r["tutorial"]["wall_seconds"]) for r in finished])
    if pipeline_slope is not None:
        lines += ["", f"Cost curve (seconds ∝ ratings^b, least squares over the sizes that "
                      f"finished): reelhouse run b = {pipeline_slope:.2f}, tutorial b = "
                      f"{tutorial_slope:.2f} (b = 1 is linear)."]
    blas = [r for r in results if "native_blas_fit_vs_java_blas_fit" in r["ratios"]]
    for r in blas:
        lines.append(f"Native BLAS at {r['size']}: tutorial fit "
                     f"{r['tutorial']['seconds']['fit']:.1f} s with OpenBLAS vs "
                     f"{r['tutorial_java_blas']['seconds']['fit']:.1f} s with Java BLAS "
                     f"(ratio {r['ratios']['native_blas_fit_vs_java_blas_fit']}).")
    return "\n".join(lines) + "\n"


def _seconds(measurement: dict) -> str:
    """Wall seconds; "> N (stopped in step)" for a run stopped at the time limit."""
    if not measurement.get("timed_out"):
        return f"{measurement['wall_seconds']:.0f}"
    stopped_in = measurement.get("stopped_in")
    return f"> {measurement['wall_seconds']:.0f}" + (f" (stopped in {stopped_in})"
                                                     if stopped_in else " (stopped)")


def _step(pipeline: dict, step: str) -> str:
    seconds = pipeline["step_seconds"].get(step)
    return "–" if seconds is None else f"{seconds:.0f}"


def _number(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


TABLE_START, TABLE_END = "<!-- bench:table -->", "<!-- /bench:table -->"


def write_readme(results: list[dict]) -> None:
    readme = BENCH_DIR / "README.md"
    text = (readme.read_text() if readme.exists()
            else f"# Benchmarks\n\n{TABLE_START}\n{TABLE_END}\n")
    before, _, rest = text.partition(TABLE_START)
    _, _, after = rest.partition(TABLE_END)
    readme.write_text(f"{before}{TABLE_START}\n{markdown_table(results)}{TABLE_END}{after}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(DEFAULT_SIZES),
                        help=f"comma-separated, from {', '.join(SIZES)} "
                             f"(default {','.join(DEFAULT_SIZES)})")
    parser.add_argument("--matched-max", type=int, default=10_000_054,
                        help="largest size also trained with Spark's hyperparameters")
    parser.add_argument("--blas-max", type=int, default=1_000_209,
                        help="largest size also timed with native BLAS off")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="stop a run or tutorial script after this long and record the "
                             "steps it finished (default: no limit)")
    parser.add_argument("--keep", action="store_true", help="keep the bench warehouses")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR,
                        help="folder for the JSON results (default bench/results)")
    parser.add_argument("--no-readme", action="store_true",
                        help="do not rewrite bench/README.md's table")
    args = parser.parse_args(argv)
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"bench: unknown size {', '.join(unknown)}; sizes are "
                         f"{', '.join(SIZES)}")
    args.results.mkdir(parents=True, exist_ok=True)
    for size in sizes:
        result = bench_size(size, args)
        out = args.results / f"{datetime.now(UTC):%Y-%m-%d}-{size}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"bench {size}: run {_seconds(result['pipeline'])} vs tutorial "
              f"{_seconds(result['tutorial'])}, ratios {result['ratios']} -> {out}",
              file=sys.stderr)
    if not args.no_readme and args.results == RESULTS_DIR:
        write_readme(latest_results())


if __name__ == "__main__":
    main()
