"""The model runner: build the selected models in dependency order, several at once, each
tested before it lands, and every table put back if any of them fails.

Which models exist, their folders' defaults and their tags come from the SQL project
(sql_project); rendering from rendering; how a model is written from materializations.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from pipelines import (
    data_tests,
    delta_log,
    fingerprints,
    materializations,
    progress,
    session,
    writes,
)
from pipelines.errors import ReelhouseError, spark_message
from pipelines.sql_project import Project


def compile_project(project: Project, selectors: list[str] | None = None) -> list[Path]:
    """Write each selected model's rendered SQL, and its tests, under target/compiled/."""
    out = project.settings.target_dir / "compiled"
    written = []
    for name in project.select(selectors):
        model = project.models[name]
        layer = model.path.parent.name
        path = out / layer / f"{name}.sql"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(fingerprints.render(project, model) + "\n")
        written.append(path)
        for index, test in enumerate(data_tests.data_tests(project, model)):
            test_path = out / "tests" / f"{name}__{index:02d}.sql"
            test_path.parent.mkdir(parents=True, exist_ok=True)
            test_path.write_text(f"-- {test.name} ({test.severity})\n{test.sql}\n")
    return written


def dependencies(project: Project, names: list[str]) -> dict[str, set[str]]:
    """For each selected model, the selected models it must wait for (refs and the models its
    relationships tests read)."""
    chosen = set(names)
    return {name: project.waits_for(name) & chosen for name in names}


def build(spark, project: Project, selectors: list[str] | None = None,
          force: bool = False) -> list[str]:
    """Materialise the selected models, each after the models it reads, testing each after it
    is built. Up to `settings.threads` models whose inputs are ready build side by side (as
    dbt's threads): most of a small model's time is Spark scheduling and Delta commits, not
    CPU, so overlapping them fills the cores. A table whose SQL and inputs are unchanged since
    it was built is skipped (unless force). If a model or a test fails, the models still
    running finish, then every table built by this call goes back to the version it had
    before, so a failed build leaves the warehouse as it was. Returns the models rebuilt.
    A small warehouse builds with Spark's small-data SQL settings (session.small_data_sql)."""
    with session.small_data_sql(spark, project.settings):
        return _build(spark, project, selectors, force)


def _build(spark, project: Project, selectors: list[str] | None, force: bool) -> list[str]:
    settings = project.settings
    names = project.select(selectors)
    waits_for = dependencies(project, names)
    # Of the models ready to start, the one with the most models downstream goes first, so the
    # long chain (ratings -> ratings_split -> the stats) is not queued behind a leaf such as
    # rejected_lines (at 10M ratings ratings waited 350 s for a thread that way).
    children = project.children()
    downstream = {name: len(project.walk(name, lambda n: children[n])) for name in names}
    before: dict[str, int | None] = {}
    finished: list[str] = []
    rebuilt: list[str] = []
    pending = list(names)
    running: dict[Future, str] = {}
    failure: BaseException | None = None
    pool = ThreadPoolExecutor(max_workers=max(1, settings.threads),
                              thread_name_prefix="reelhouse-model")
    try:
        while pending or running:
            ready = sorted((name for name in pending if waits_for[name] <= set(finished)),
                           key=lambda name: -downstream[name])
            for name in ready if failure is None else []:
                if len(running) >= settings.threads:
                    break
                pending.remove(name)
                if project.models[name].materialized != "view":
                    before[name] = delta_log.current_version(spark, settings, name)
                running[pool.submit(_build_one, spark, project, name, force)] = name
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                try:
                    line = future.result()
                except BaseException as exc:  # noqa: BLE001 - re-raised once the others stop
                    failure = failure or exc
                    continue
                finished.append(name)
                if line is not None:
                    rebuilt.append(name)
                model = project.models[name]
                progress.say(f"[{len(finished)}/{len(names)}] {model.materialized:<11} "
                             f"{settings.schema}.{name} "
                             f"{line if line is not None else 'up to date (inputs unchanged)'}")
        if failure is not None:
            raise failure
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        for name, error in writes.restore_all(spark, settings, before).items():
            progress.say(f"could not restore {name} to version {before[name]}: {error}")
        raise
    pool.shutdown(wait=True)
    return [name for name in names if name in rebuilt]  # in dependency order


def _build_one(spark, project: Project, name: str, force: bool) -> str | None:
    """Build and test one model (on a worker thread); the progress line's tail when it was
    rebuilt, None when it was up to date."""
    settings = project.settings
    model = project.models[name]
    started = time.monotonic()
    # Spark jobs carry the model's name: the UI and event log show where the time goes.
    spark.sparkContext.setJobDescription(f"model {settings.schema}.{name}")
    spark.sparkContext.setLocalProperty("spark.scheduler.pool", name)  # see session.py
    try:
        if not materializations.materialise(spark, project, model, force):
            return None
    except ReelhouseError:
        raise
    except Exception as exc:  # Spark's analysis or runtime error: one line says it
        raise ReelhouseError(
            f"Model {name} ({model.path.relative_to(settings.project_dir)}) failed: "
            f"{spark_message(exc)}") from exc
    finally:
        spark.sparkContext.setJobDescription(None)
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", None)
    rows = delta_log.rows_in_last_commit(spark, settings, name)
    rows = f", {rows:,} rows" if rows is not None and model.materialized != "view" else ""
    return f"ok ({time.monotonic() - started:.1f}s{rows})"
