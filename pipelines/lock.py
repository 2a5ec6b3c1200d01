"""One pipeline run at a time per warehouse, safe for cron and orchestrators.

The lock is a file created with O_EXCL (atomic on a local or network file system) holding the
run's id, host, pid and the process's start time. A second run finds it and stops at once,
naming the active run. A lock whose process is gone (killed, machine rebooted) is stale: the
next run renames it away (only one contender can win the rename) and takes over. For a warehouse
on object storage, the lock lives in the local cache and guards runs started on this machine.

The run that takes over records the killed run in pipeline_runs when it ends, with its own row
(at its start that would be its first Delta write, seconds of a cold JVM before any work).
Until then the killed runs are listed in its lock file, so if it is killed too, the next run
takes them over with the lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pipelines import progress
from pipelines.errors import ReelhouseError
from pipelines.settings import Settings


class AlreadyRunning(ReelhouseError):
    """Another run holds the warehouse; its own exit code so schedulers can tell it apart."""

    exit_code = 3


def lock_path(settings: Settings) -> Path:
    if "://" not in settings.warehouse or settings.warehouse.startswith("file:"):
        return Path(settings.warehouse.removeprefix("file:")) / "_run.lock"
    digest = hashlib.sha1(settings.warehouse.encode()).hexdigest()[:16]
    return settings.jars_dir.parent / "locks" / f"{digest}.lock"


def _process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process: tells a live run from a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _is_alive(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # another machine's run: we cannot see it, so we must not break its lock
    pid = int(holder.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    started = _process_start_time(pid)
    return started is None or started == holder.get("process_start")


def _unrecorded(holder: dict) -> list[dict]:
    """A killed run's holder, then the killed runs it had taken over and not yet recorded."""
    own = {key: holder.get(key) for key in ("run_id", "host", "pid", "started_at")}
    return [own] + list(holder.get("abandoned") or [])


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@contextmanager
def run_lock(settings: Settings, run_id: str):
    """Hold the warehouse's run lock for the body; yields the killed runs this run must record
    (the stale holder taken over, and those it had taken over in turn; empty if none)."""
    path = lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
          "process_start": _process_start_time(os.getpid()),
          "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
    taken_over = None
    for _attempt in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:  # someone holds it: alive, or a killed run's leftover
            holder = _read(path)
            if holder and _is_alive(holder):
                raise AlreadyRunning(
                    f"Run {holder.get('run_id')} (pid {holder.get('pid')} on "
                    f"{holder.get('host')}, started {holder.get('started_at')}) is already "
                    f"running on this warehouse: wait for it to finish; nothing was changed."
                ) from None
            stale = path.with_name(f"{path.name}.stale-{os.getpid()}")
            try:
                os.rename(path, stale)  # atomic: of two contenders only one gets the file
            except FileNotFoundError:
                continue
            taken_over = _read(stale) or holder
            stale.unlink(missing_ok=True)
            progress.say(f"taking over the lock left by run {taken_over.get('run_id')} "
                         f"(pid {taken_over.get('pid')} is gone)")
            continue
        me["abandoned"] = _unrecorded(taken_over) if taken_over else []
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    else:
        raise AlreadyRunning(f"Could not take the run lock {path}: another run is starting.")
    try:
        yield me["abandoned"]
    finally:
        if _read(path).get("run_id") == run_id:
            path.unlink(missing_ok=True)
