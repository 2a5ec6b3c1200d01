"""A Spark standalone cluster on this machine: a master and workers started from the installed
pyspark, for trying reelhouse off `local[*]` and for the tests.

pyspark's pip wheel has `bin/spark-class` but not the `sbin/` scripts, so the master and each
worker are started with `spark-class org.apache.spark.deploy.{master.Master,worker.Worker}`,
bound to one address (loopback by default), each worker with its own cores, memory and work
folder. The processes outlive the command that started them; their pids, ports and logs are
kept in one folder, which `stop` reads. A real cluster is started by its own tooling: point
`--master` at it (README, "Scaling").
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines import jvm, progress
from pipelines.errors import ReelhouseError
from pipelines.session import LOG4J_OPTION

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
STATE_FILE = "cluster.json"


@dataclass(frozen=True)
class Cluster:
    master_url: str  # spark://host:port, for --master
    web_url: str  # the master's web UI; /json/ says which workers are alive
    pids: tuple[int, ...]  # the master's first
    folder: str

    def workers_alive(self) -> tuple[int, int]:
        """(alive workers, their cores), from the master's JSON status page."""
        try:
            with urllib.request.urlopen(f"{self.web_url}/json/", timeout=5) as response:
                state = json.load(response)
        except (urllib.error.URLError, OSError, ValueError):
            return 0, 0
        alive = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
        return len(alive), sum(int(w.get("cores", 0)) for w in alive)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _alive(pid: int) -> bool:
    try:  # our own child that exited is a zombie until reaped: reap it
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(folder: Path) -> Cluster | None:
    try:
        return Cluster(**{**json.loads((folder / STATE_FILE).read_text()),
                          "folder": str(folder)})
    except (OSError, ValueError, TypeError):
        return None


def _spawn(folder: Path, name: str, args: list[str]) -> subprocess.Popen:
    from pipelines.serve import spark_home

    home = spark_home()
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_DIRS": str(folder / "tmp"),
           # the daemons' own JVM options: our log4j settings (errors only) as for executors
           "SPARK_DAEMON_JAVA_OPTS": LOG4J_OPTION}
    log = open(folder / f"{name}.log", "ab")  # noqa: SIM115 (the child keeps it open)
    return subprocess.Popen([str(home / "bin" / "spark-class"), *args], env=env,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)  # not stopped by the caller's Ctrl-C


def _log_tail(folder: Path, name: str, lines: int = 3) -> str:
    try:
        text = (folder / f"{name}.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text[-lines:]) or "(empty log)"


def start(folder: Path, workers: int = 2, cores: int = 1, memory: str = "2g",
          host: str = "127.0.0.1", wait_seconds: float = 90) -> Cluster:
    """Start a master and `workers` workers of `cores` cores and `memory` each; returns once
    every worker has registered with the master."""
    if workers < 1 or cores < 1:
        raise ReelhouseError("A cluster needs at least one worker with at least one core.")
    jvm.check_java()
    running = read_state(folder)
    if running and any(_alive(pid) for pid in running.pids):
        raise ReelhouseError(f"A cluster is already running from {folder} at "
                             f"{running.master_url}: stop it first (reelhouse cluster stop).")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tmp").mkdir(exist_ok=True)
    port, web_port = _free_port(host), _free_port(host)
    master_url, web_url = f"spark://{host}:{port}", f"http://{host}:{web_port}"
    processes = [_spawn(folder, "master", [MASTER_CLASS, "--host", host, "--port", str(port),
                                           "--webui-port", str(web_port)])]
    for n in range(1, workers + 1):
        work_dir = folder / f"worker-{n}"
        work_dir.mkdir(exist_ok=True)
        processes.append(_spawn(folder, f"worker-{n}", [
            WORKER_CLASS, "--host", host, "--cores", str(cores), "--memory", memory,
            "--work-dir", str(work_dir), "--webui-port", str(_free_port(host)), master_url]))
    cluster = Cluster(master_url, web_url, tuple(p.pid for p in processes), str(folder))
    (folder / STATE_FILE).write_text(json.dumps(
        {k: v for k, v in asdict(cluster).items() if k != "folder"}))
    deadline = time.monotonic() + wait_seconds
    with progress.step(f"cluster at {master_url}: {workers} workers x {cores} cores, "
                       f"{memory} each") as info:
        while (alive := cluster.workers_alive())[0] < workers:
            names = ["master"] + [f"worker-{n}" for n in range(1, workers + 1)]
            dead = [name for name, p in zip(names, processes, strict=True)
                    if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                stop(folder)
                why = (f"{dead[0]} exited: {_log_tail(folder, dead[0])}" if dead else
                       f"{alive[0]} of {workers} workers registered in {wait_seconds:.0f} s")
                raise ReelhouseError(f"The cluster did not start ({why}); logs in {folder}.")
            time.sleep(0.5)
        info["result"] = f"{alive[1]} cores"
    return cluster


def stop(folder: Path, wait_seconds: float = 30) -> int:
    """Stop the cluster started from `folder` (workers first, then the master); returns how
    many processes were still running."""
    cluster = read_state(folder)
    if cluster is None:
        return 0
    running = [pid for pid in reversed(cluster.pids) if _alive(pid)]
    for pid in running:
        try:
            os.killpg(pid, signal.SIGTERM)  # the process group: spark-class and its JVM
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait_seconds
    while any(_alive(pid) for pid in running) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in running:
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    (folder / STATE_FILE).unlink(missing_ok=True)
    return len(running)
