"""Configuration, read once: command-line flags win over environment variables over defaults."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.errors import ReelhouseError

# The source checkout (bench and tests run from it); not needed by an installed reelhouse.
CHECKOUT_DIR = Path(__file__).resolve().parent.parent
SCHEMA = "movielens"
STEPS = ("ingest", "build", "train", "evaluate", "report")  # what `reelhouse run` does
_URI_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_uri(path: str) -> bool:
    """s3a://bucket/x, hdfs://..., file:///x: a location for Hadoop's file systems."""
    return bool(_URI_SCHEME.match(path))


def normalise_warehouse(path: str) -> str:
    """A warehouse root as Spark wants it: URIs (s3a://, hdfs://, abfss://, file://) kept as they
    are, local paths made absolute so a table's LOCATION means the same from any directory."""
    path = path.strip()
    if not path:
        raise ReelhouseError(
            "The warehouse path is empty: pass --warehouse PATH or unset REELHOUSE_WAREHOUSE.")
    if is_uri(path):
        return path.rstrip("/")
    return str(Path(path).expanduser().resolve())


def packaged_project_dir() -> Path:
    """The SQL project that comes with reelhouse: the copy installed with the package (a wheel
    puts sql/ at pipelines/project, see pyproject.toml), else the checkout's sql/ (an editable
    install). Its generic tests are built in: every project can use them."""
    installed = Path(__file__).resolve().parent / "project"
    return installed if installed.is_dir() else CHECKOUT_DIR / "sql"


def default_project_dir() -> Path:
    """The SQL project to run (reelhouse_project.yml, models/, macros/, tests/, udfs/): the one
    named by REELHOUSE_PROJECT_DIR, else the packaged one."""
    named = os.environ.get("REELHOUSE_PROJECT_DIR")
    return Path(named).expanduser().resolve() if named else packaged_project_dir()


def default_jars_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("REELHOUSE_JARS_DIR") or Path(cache) / "reelhouse" / "jars")


@dataclass(frozen=True)
class Settings:
    warehouse: str = field(default_factory=lambda: normalise_warehouse(
        os.environ.get("REELHOUSE_WAREHOUSE", "warehouse")))
    master: str = field(default_factory=lambda: os.environ.get("REELHOUSE_MASTER", "local[*]"))
    driver_memory: str = field(
        default_factory=lambda: os.environ.get("REELHOUSE_DRIVER_MEMORY", "4g"))
    # Extra Spark settings, e.g. from `--conf key=value`; they win over ours.
    spark_conf: tuple[tuple[str, str], ...] = ()
    jars_dir: Path = field(default_factory=default_jars_dir)
    project_dir: Path = field(default_factory=default_project_dir)
    target_dir: Path = field(default_factory=lambda: Path("target").resolve())
    schema: str = SCHEMA
    # Models whose inputs are ready build side by side, up to this many at once (dbt's threads).
    threads: int = field(default_factory=lambda: int(os.environ.get("REELHOUSE_THREADS", "4")))

    @property
    def udfs_dir(self) -> Path:
        return self.project_dir / "udfs"

    @property
    def is_local(self) -> bool:
        return self.master.startswith("local")

    @property
    def uses_s3a(self) -> bool:
        """Whether S3A's jars are needed: the warehouse is on s3a://, or S3A is configured."""
        return self.warehouse.startswith("s3a://") or any(
            key.startswith("spark.hadoop.fs.s3a.") for key, _ in self.spark_conf)

    def table_location(self, table: str) -> str:
        """Where a table's Delta files live: <warehouse>/<schema>/<table>."""
        return f"{self.warehouse}/{self.schema}/{table}"

    @property
    def views_location(self) -> str:
        """Views have no data files; their SQL is kept here so every session can recreate them."""
        return f"{self.warehouse}/{self.schema}/_views"

    @property
    def checkpoint_location(self) -> str:
        return f"{self.warehouse}/_checkpoints"


def parse_conf(pairs: list[str] | None) -> tuple[tuple[str, str], ...]:
    """`--conf key=value` pairs, checked so a typo fails here and not deep inside Spark."""
    parsed = []
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ReelhouseError(f"--conf takes key=value, got {pair!r}.")
        parsed.append((key.strip(), value.strip()))
    return tuple(parsed)
