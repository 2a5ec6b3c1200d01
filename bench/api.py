"""The HTTP API under load: model load time, the API process's memory, and latency and
throughput of its endpoints under concurrent clients, per warehouse.

    .venv/bin/python -m bench.api --warehouse small=/path/to/warehouse --warehouse 25m=/other

For each warehouse it starts `reelhouse api` on a free loopback port, times it until it
answers, reads the model's own load time from its log and its resident memory from /proc,
then drives each endpoint with wrk (Debian's `wrk`; --connections clients, one wrk thread,
--duration seconds each, after a warm-up): GET /health first, the framework's floor in the
same process and run, then GET /users/{id}/recommendations over a sample of the warehouse's
users, POST /recommendations with ten ratings of movies the model knows, and GET /movies?q=.
Ratios are against /health's throughput in the same run. Results go to
bench/results/<date>-api-<name>.json and the table in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from urllib.parse import quote

import numpy as np

from bench.__main__ import BENCH_DIR, machine
from pipelines import served_model
from pipelines.settings import Settings

TABLE_START, TABLE_END = "<!-- bench:api -->", "<!-- /bench:api -->"
WORKLOADS = ("health", "user_list", "fold_in", "search")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lua_script(workload: str, model: served_model.ServedModel, rng) -> str:
    """A wrk script that cycles through many different requests of one kind."""
    if workload == "health":
        return 'request = function() return wrk.format("GET", "/health") end\n'
    if workload == "user_list":
        users = rng.choice(model.known_users, size=min(5000, len(model.known_users)),
                           replace=False)
        paths = [f"/users/{int(u)}/recommendations" for u in users]
    elif workload == "search":
        words = sorted({w for key in model.titles.keys[:5000] for w in key.split()
                        if len(w) > 3})
        paths = [f"/movies?q={quote(w)}&limit=10" for w in rng.choice(words, size=min(500,
                                                                                len(words)))]
    else:
        movies = model.candidate_ids
        bodies = []
        for _ in range(500):
            picks = rng.choice(movies, size=10, replace=False)
            low, high = model.scale  # whole stars, valid on every GroupLens scale
            ratings = rng.choice(np.arange(np.ceil(low), np.floor(high) + 1), size=10)
            bodies.append(json.dumps({"ratings": [{"movie_id": int(m), "rating": float(r)}
                                                  for m, r in zip(picks, ratings,
                                                                  strict=True)], "n": 10}))
        listed = ",\n".join(f"[[{body}]]" for body in bodies)
        return (f"local bodies = {{\n{listed}\n}}\nlocal i = 0\n"
                'wrk.headers["Content-Type"] = "application/json"\n'
                "request = function()\n  i = i + 1\n"
                '  return wrk.format("POST", "/recommendations", nil, '
                "bodies[(i % #bodies) + 1])\nend\n")
    listed = ",\n".join(f'"{p}"' for p in paths)
    return (f"local paths = {{\n{listed}\n}}\nlocal i = 0\n"
            "request = function()\n  i = i + 1\n"
            '  return wrk.format("GET", paths[(i % #paths) + 1])\nend\n')


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> dict:
    """Requests/s, p50/p90/p99 latency (ms), errors from wrk --latency's report."""
    percentiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", output, re.M))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)
    total = re.search(r"(\d+) requests in", output)
    if not {"50", "90", "99"} <= set(percentiles):
        raise SystemExit(f"wrk printed no latency distribution:\n{output[-1500:]}")
    return {"requests_per_second": float(rps.group(1)) if rps else 0.0,
            "p50_ms": _ms(percentiles["50"]), "p90_ms": _ms(percentiles["90"]),
            "p99_ms": _ms(percentiles["99"]), "requests": int(total.group(1)) if total else 0,
            "errors": (int(non_2xx.group(1)) if non_2xx else 0)
            + (sum(map(int, socket.groups())) if socket else 0)}


def run_wrk(url: str, script: Path, connections: int, seconds: float) -> dict:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
               "-s", str(script), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed: {done.stderr.strip()[:300]}")
    return parse_wrk(done.stdout)


def memory_mb(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {key: round(int(fields[name].split()[0]) / 1024)
            for key, name in (("rss_mb", "VmRSS"), ("peak_rss_mb", "VmHWM"))}


def bench_warehouse(name: str, warehouse: str, args) -> dict:
    settings = Settings(warehouse=warehouse)
    model = served_model.load(settings)  # here only to pick requests the model can answer
    rng = np.random.default_rng(7)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "api", "--warehouse", warehouse,
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        if not line.startswith("READY "):
            raise SystemExit(f"reelhouse api did not start: {process.stderr.read()[-1000:]}")
        ready_seconds = time.monotonic() - started
        memory_loaded = memory_mb(process.pid)
        result = {"name": name, "warehouse": warehouse, "run_id": model.run_id,
                  "users": len(model.known_users), "movies": len(model.movies),
                  "rank": int(model.list_factors.matrix.shape[1]),
                  "ready_seconds": round(ready_seconds, 2), "memory_loaded": memory_loaded,
                  "connections": args.connections, "seconds": args.duration,
                  "date": date.today().isoformat(), "machine": machine(), "workloads": {}}
        with tempfile.TemporaryDirectory() as scratch:
            for workload in WORKLOADS:
                script = Path(scratch) / f"{workload}.lua"
                script.write_text(lua_script(workload, model, rng))
                run_wrk(url, script, args.connections, min(2, args.duration))  # warm-up
                result["workloads"][workload] = run_wrk(url, script, args.connections,
                                                        args.duration)
                print(f"{name} {workload}: {result['workloads'][workload]}", flush=True)
        result["memory_after"] = memory_mb(process.pid)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    loaded = re.search(r"loaded in ([\d.]+)s", err)
    result["load_seconds"] = float(loaded.group(1)) if loaded else None
    floor = result["workloads"]["health"]["requests_per_second"] or 1.0
    for measured in result["workloads"].values():
        measured["ratio_to_health"] = round(measured["requests_per_second"] / floor, 3)
    return result


def markdown_table(results: list[dict]) -> str:
    if not results:
        return ""
    first = results[0]
    lines = [f"Machine: {first['machine']['cores']} cores ({first['machine']['cpu']}), "
             f"code {', '.join(sorted({r['machine']['code'] for r in results}))}; wrk, "
             f"{first['connections']} connections, one wrk thread, "
             f"{first['seconds']} s per endpoint after a 2 s warm-up.", "",
             "| warehouse | users × movies (rank) | model load (s) | ready (s) | RSS loaded / "
             "after (MB) | endpoint | req/s | p50 (ms) | p90 (ms) | p99 (ms) | errors | "
             "req/s ÷ /health |",
             "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for i, (workload, m) in enumerate(r["workloads"].items()):
            head = (f"| {r['name']} | {r['users']:,} × {r['movies']:,} ({r['rank']}) | "
                    f"{r['load_seconds']} | {r['ready_seconds']} | "
                    f"{r['memory_loaded']['rss_mb']:,} / {r['memory_after']['rss_mb']:,} "
                    if i == 0 else "| | | | | ")
            lines.append(f"{head}| {ENDPOINTS[workload]} | {m['requests_per_second']:,.0f} | "
                         f"{m['p50_ms']:.2f} | {m['p90_ms']:.2f} | {m['p99_ms']:.2f} | "
                         f"{m['errors']} | {m['ratio_to_health']:.2f} |")
    return "\n".join(lines) + "\n"


ENDPOINTS = {"health": "GET /health", "user_list": "GET /users/{id}/recommendations",
             "fold_in": "POST /recommendations (10 ratings)", "search": "GET /movies?q="}


def write_readme(results: list[dict]) -> None:
    readme = BENCH_DIR / "README.md"
    text = readme.read_text()
    if TABLE_START not in text:
        text += f"\n## The HTTP API\n\n{TABLE_START}\n{TABLE_END}\n"
    before, _, rest = text.partition(TABLE_START)
    _, _, after = rest.partition(TABLE_END)
    readme.write_text(f"{before}{TABLE_START}\n{markdown_table(results)}{TABLE_END}{after}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.api",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--warehouse", action="append", required=True, metavar="NAME=PATH",
                        help="a built warehouse to serve; may repeat")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=15, help="seconds per endpoint")
    parser.add_argument("--no-write", action="store_true",
                        help="print only: no results file, no README table")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("bench.api needs wrk: apt-get install -y wrk")
    results = []
    for pair in args.warehouse:
        name, sep, path = pair.partition("=")
        if not sep:
            raise SystemExit(f"--warehouse takes NAME=PATH, got {pair!r}")
        results.append(bench_warehouse(name, path, args))
    print(markdown_table(results))
    if args.no_write:
        return
    (BENCH_DIR / "results").mkdir(exist_ok=True)
    for result in results:
        path = BENCH_DIR / "results" / f"{result['date']}-api-{result['name']}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
    write_readme(results)


if __name__ == "__main__":
    main()
