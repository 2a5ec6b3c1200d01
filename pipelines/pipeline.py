"""`reelhouse run`: ingest -> build, as one unit. If any step fails, every table goes back to the
Delta version it had when the run started (tables the run created are dropped), so a failed run
leaves the warehouse exactly as it was."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from pipelines import catalog, ingest, progress, runner
from pipelines.settings import Settings

DEFAULT_SYNTHETIC_RATINGS = 100_000


@contextmanager
def all_or_nothing(spark, settings: Settings):
    """Remember every table's version; on failure restore them all and drop new ones."""
    before = {table: catalog.current_version(spark, settings, table)
              for table in catalog.list_tables_on_storage(spark, settings)}
    try:
        yield
    except BaseException:
        progress.say("the run failed: putting every table back to its version before the run")
        catalog.register_warehouse(spark, settings)
        for table in catalog.list_tables_on_storage(spark, settings):
            try:
                catalog.restore(spark, settings, table, before.get(table))
            except Exception as exc:  # keep going: restore as much as possible, say what failed
                progress.say(f"could not restore {table}: {exc}")
        raise


def default_dataset(project_dir: Path, num_ratings: int = DEFAULT_SYNTHETIC_RATINGS) -> Path:
    """The built-in synthetic dataset used when `run` gets no --data (generated once)."""
    from pipelines.generate import generate_dataset

    out = project_dir / ".reelhouse" / "datasets" / f"synthetic-{num_ratings}"
    if not (out / "reelhouse_generator.json").exists():
        with progress.step(f"generating a synthetic dataset of {num_ratings:,} ratings in {out}"):
            generate_dataset(out, num_ratings, seed=42)
    return out


def run_pipeline(spark, settings: Settings, data_dir: Path, cli_vars: dict | None = None,
                 selectors: list[str] | None = None) -> None:
    project = runner.load_project(settings, cli_vars=cli_vars)  # bad models fail before ingest
    with all_or_nothing(spark, settings):
        with progress.step("ingest"):
            ingest.ingest_dataset(spark, settings, data_dir)
        with progress.step("build"):
            runner.build(spark, project, selectors)
