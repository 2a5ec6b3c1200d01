"""One pipeline run at a time per warehouse, safe for cron and orchestrators.

The lock is a file beside the tables, `<warehouse>/_run.lock`, holding the run's id, host,
pid and the process's start time, created only if no such file exists: with O_EXCL on a local
or network file system, and on object storage with a conditional PUT (If-None-Match: *,
through Hadoop's S3A), which the store itself makes atomic. So two machines sharing a warehouse
cannot run at once either. A second run finds the file and stops at once, naming the active
run. A lock whose process is gone (killed, machine rebooted) is stale: the next run on the same
host takes it over (locally by a rename only one contender can win). A lock held from another
host is never broken: its process cannot be seen from here (remove the file by hand once that
run is known to be dead).

The run that takes over records the killed run in pipeline_runs when it ends, with its own row
(at its start that would be its first Delta write, seconds of a cold JVM before any work).
Until then the killed runs are listed in its lock file, so if it is killed too, the next run
takes them over with the lock.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pipelines import progress, storage
from pipelines.errors import ReelhouseError
from pipelines.settings import Settings


class AlreadyRunning(ReelhouseError):
    """Another run holds the warehouse; its own exit code so schedulers can tell it apart."""

    exit_code = 3


LOCK_FILE = "_run.lock"


def on_object_storage(settings: Settings) -> bool:
    """Whether the lock lives on a Hadoop file system (s3a://, abfss://, hdfs://) and so needs
    a Spark session to take: everything but a local path or file: URI."""
    return "://" in settings.warehouse and not settings.warehouse.startswith("file:")


def lock_path(settings: Settings) -> Path:
    """The lock of a warehouse on the local file system."""
    return Path(settings.warehouse.removeprefix("file:")) / LOCK_FILE


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


class LocalLock:
    """The lock file on a local or network file system."""

    def __init__(self, settings: Settings):
        self.path = lock_path(settings)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def create(self, holder: dict) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump(holder, handle)
        return True

    def read(self) -> dict:
        return _read(self.path)

    def take_away(self, holder: dict) -> dict | None:
        """Move a stale lock aside; what it held, or None if another contender was first."""
        stale = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
        try:
            os.rename(self.path, stale)  # atomic: of two contenders only one gets the file
        except FileNotFoundError:
            return None
        taken = _read(stale) or holder
        stale.unlink(missing_ok=True)
        return taken

    def release(self, run_id: str) -> None:
        if self.read().get("run_id") == run_id:
            self.path.unlink(missing_ok=True)


class StorageLock:
    """The lock file on the warehouse's Hadoop file system (object storage)."""

    def __init__(self, settings: Settings, spark):
        self.spark, self.location = spark, f"{settings.warehouse}/{LOCK_FILE}"

    def create(self, holder: dict) -> bool:
        return storage.create_new_file(self.spark, self.location, json.dumps(holder))

    def read(self) -> dict:
        try:
            return json.loads(storage.read_text(self.spark, self.location) or "{}")
        except ValueError:
            return {}

    def take_away(self, holder: dict) -> dict | None:
        """Delete a stale lock if it still holds the same run (object stores cannot rename
        atomically; the check narrows the race between two contenders to one request)."""
        if self.read().get("run_id") != holder.get("run_id"):
            return None
        storage.delete_path(self.spark, self.location)
        return holder

    def release(self, run_id: str) -> None:
        if self.read().get("run_id") == run_id:
            storage.delete_path(self.spark, self.location)


@contextmanager
def run_lock(settings: Settings, run_id: str, spark=None):
    """Hold the warehouse's run lock for the body; yields the killed runs this run must record
    (the stale holder taken over, and those it had taken over in turn; empty if none). A
    warehouse on object storage needs `spark`, whose Hadoop file system reaches it."""
    if on_object_storage(settings) and spark is None:
        raise ValueError("a Spark session is needed for a lock on object storage")
    store = StorageLock(settings, spark) if on_object_storage(settings) else LocalLock(settings)
    me = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
          "process_start": _process_start_time(os.getpid()),
          "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
    taken_over = None
    for _attempt in range(3):
        me["abandoned"] = _unrecorded(taken_over) if taken_over else []
        if store.create(me):
            break
        holder = store.read()  # someone holds it: alive, or a killed run's leftover
        if holder and _is_alive(holder):
            raise AlreadyRunning(
                f"Run {holder.get('run_id')} (pid {holder.get('pid')} on "
                f"{holder.get('host')}, started {holder.get('started_at')}) is already "
                f"running on this warehouse: wait for it to finish; nothing was changed.")
        taken = store.take_away(holder)
        if taken is not None:
            taken_over = taken
            progress.say(f"taking over the lock left by run {taken_over.get('run_id')} "
                         f"(pid {taken_over.get('pid')} is gone)")
    else:
        raise AlreadyRunning(f"Could not take the run lock of {settings.warehouse}: another "
                             "run is starting.")
    try:
        yield me["abandoned"]
    finally:
        store.release(run_id)
