"""Fault injection with real processes: a chain of `reelhouse run`s, each killed with SIGKILL
at a step boundary or inside a long step, each rerun picking up where the last one died, while
a BI client queries the Thrift server throughout.

The warehouse first holds a finished run on dataset A (every table at its 'previous' version);
then a second ratings file B lands beside A's, and the chain runs on A+B. An uninterrupted run
on a copy of the same warehouse gives each table's 'new' row count and the RMSE to end with.
After every kill each table must be readable and hold its previous or its new row count (a
killed run may leave some tables new and others previous, never a part of one), the lock must
be left for the next run to take over, and that run must record the killed one. The chain ends
with one run that completes: every table then equals the uninterrupted run."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipelines import pipeline, registration, run_ids
from pipelines.settings import STEPS

from .. import conftest
from .harness import (
    AtLine,
    AtNewFiles,
    KillPoint,
    Readers,
    Run,
    TableCounter,
    free_port,
    lock_holder,
    runs_java,
    start_server,
    stop_server,
    table_versions,
    wait_for_server,
    wait_for_tables,
)

# In chain order: each run dies at its point, the next one resumes (fingerprints skip what
# a killed run committed) and goes on to the next point.
KILL_POINTS = (
    KillPoint("ingest: MERGE of the new ratings file into raw_ratings",
              AtNewFiles("movielens/raw_ratings")),
    KillPoint("ingest -> build boundary", AtLine("reelhouse: ingest done")),
    KillPoint("build: the ratings model being written", AtNewFiles("movielens/ratings")),
    KillPoint("build -> train boundary", AtLine("reelhouse: build done")),
    # ALS checkpoints every 5 iterations: a checkpoint file means the fit is half done.
    KillPoint("train: inside the ALS fit", AtNewFiles("_checkpoints")),
    KillPoint("train: writing movielens.recommendations",
              AtNewFiles("movielens/recommendations")),
    KillPoint("evaluate: the model_metrics report being written",
              AtNewFiles("movielens/model_metrics")),
    KillPoint("evaluate -> report boundary: the HTML report starting",
              AtLine("reelhouse: report ...")),
)
STARTED = time.monotonic()
RUN_SECONDS = 900  # per run, generous: other Spark JVMs share the 2 cores
HISTORY_TABLES = {"pipeline_runs"}  # one row per run of this warehouse: compared on its own
READ_TABLES = ("raw_ratings", "ratings", "predictions", "test_predictions")
TRAIN_OUTPUTS = ("user_factors", "movie_factors", "predictions", "recommendations",
                 "similar_movies")


@dataclass
class Fault:
    point: KillPoint
    run_id: str
    pid: int
    exit_code: int
    versions: dict[str, int]  # every table's version on storage right after the kill
    lock: dict | None  # the lock file as the killed run left it
    next_run_took_over: bool = False
    counts: dict[str, int] = field(default_factory=dict)  # their rows at those versions


@dataclass
class Chain:
    warehouse: str
    data: Path
    workdir: Path  # the runs' working directory (their HTML report lands there)
    previous: dict[str, int]
    new: dict[str, int] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    final: dict[str, int] = field(default_factory=dict)
    final_lock: dict | None = None
    statuses: dict[str, str] = field(default_factory=dict)  # pipeline_runs: run_id -> status
    model: dict = field(default_factory=dict)
    reference_model: dict = field(default_factory=dict)
    readers: Readers | None = None
    runs: list[Run] = field(default_factory=list)
    java: str = ""  # what the runs and the server start on


# --- the scenario ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Dataset A in the ml-latest layout (no bad lines) and, kept aside, ratings file B: every
    fifth rating, so B adds ratings to most users and movies and every table changes."""
    from pipelines.generate import generate_dataset

    folder = tmp_path_factory.mktemp("faults") / "ml-synthetic"
    generate_dataset(folder, 2000, num_users=50, num_movies=150, seed=11)
    header, *rows = (folder / "ratings.csv").read_text().splitlines(keepends=True)
    (folder / "ratings.csv").write_text(header + "".join(r for i, r in enumerate(rows) if i % 5))
    return folder, header + "".join(r for i, r in enumerate(rows) if not i % 5)


@pytest.fixture(scope="module")
def chain(spark, tmp_path_factory, dataset):
    global STARTED  # the chain's clock starts here, not when the module was collected
    STARTED = time.monotonic()
    folder, ratings_b = dataset
    settings = conftest.fresh_warehouse(spark, tmp_path_factory, "chain")
    port = free_port()
    server = start_server(settings.warehouse, port)  # its JVM starts while run A works
    readers, background = None, ThreadPoolExecutor(max_workers=1)
    try:
        for key, value in conftest.SMALL_DATA_SQL_CONF.items():  # as the chain's processes
            spark.conf.set(key, value)  # have them (the session's own, whatever a test left)
        run_in_this_process(spark, settings, folder)  # dataset A: the 'previous' state
        print(f"run on dataset A done ({clock()})")
        counter = TableCounter(spark, settings.warehouse)
        chain = Chain(settings.warehouse, folder, tmp_path_factory.mktemp("runs"),
                      previous=counter.counts(), java=runs_java(settings.jars_dir))
        print(f"the chain's runs start on {chain.java} and log their stderr in {chain.workdir}")
        reference = copy_warehouse(settings, tmp_path_factory)
        (folder / "ratings-b.csv").write_text(ratings_b)  # what the chain and reference load
        # The reference is only needed to judge what the chain saw, at the end: it runs in
        # this process while the chain's runs work in theirs.
        uninterrupted = background.submit(uninterrupted_run, spark, reference, folder)

        wait_for_server(server, RUN_SECONDS)
        wait_for_tables(port, READ_TABLES, 120)
        readers = chain.readers = Readers(port, READ_TABLES)
        readers.start()
        try:
            run_killed_chain(chain, counter)
        finally:
            for run in chain.runs:  # a failed chain leaves no run behind
                run.stop()
        readers.stop()

        chain.new, chain.reference_model = uninterrupted.result()
        print(f"uninterrupted reference run on A+B done ({clock()})")
        chain.final = counter.counts()
        chain.final_lock = lock_holder(settings.warehouse)
        chain.statuses = pipeline_statuses(spark, settings.warehouse)
        chain.model = model_state(spark, settings.warehouse)
        return chain
    finally:
        background.shutdown(wait=True)
        if readers is not None:
            readers.stop()
        stop_server(server)


def clock() -> str:
    """Seconds since the chain started, for its log and summary line."""
    return f"{time.monotonic() - STARTED:.0f}s"


def run_in_this_process(spark, settings, folder) -> None:
    """A run in the test's own Spark session (no JVM to start) of every step but the HTML
    report, which changes no table: nothing the chain compares comes from it, and the report
    of the uninterrupted run would take CPU from the chain's first runs."""
    conftest.reset_catalog(spark)
    registration.register_udfs(spark, settings)
    registration.register_warehouse(spark, settings)
    steps = tuple(step for step in STEPS if step != "report")
    pipeline.run_pipeline(spark, settings, folder, run_ids.new_run_id(), steps=steps)


def copy_warehouse(settings, tmp_path_factory):
    """A second warehouse holding exactly the first one's tables (Delta logs use relative
    paths, so a copied table is the same table)."""
    copy = conftest.test_settings(tmp_path_factory.mktemp("reference") / "warehouse")
    shutil.copytree(settings.warehouse, copy.warehouse)
    return copy


def uninterrupted_run(spark, settings, folder) -> tuple[dict[str, int], dict]:
    """The reference: A+B in one run that nobody kills; its row counts and model."""
    run_in_this_process(spark, settings, folder)
    return TableCounter(spark, settings.warehouse).counts(), model_state(spark, settings.warehouse)


def run_killed_chain(chain: Chain, counter: TableCounter) -> None:
    """Each run is killed at its point; after each kill the warehouse is inspected; a last
    run must complete. What a kill left is read from storage at once (the tables' versions
    from their log file names, the lock file); their rows are counted at those versions on
    another thread while the next run starts (a Delta version never changes)."""
    with ThreadPoolExecutor(max_workers=1) as counting:
        counted = []
        for point in KILL_POINTS:
            fired = point.trigger.arm(chain.warehouse)  # before the run can write anything
            run = start_next_run(chain)
            if not run.wait_until(fired, RUN_SECONDS):
                pytest.fail(f"the run ended (exit {run.process.returncode}) before the kill "
                            f"point {point.name!r}:\n{run.stderr[-3000:]}")
            exit_code = run.kill()
            print(f"killed run {run.run_id} at {point.name!r} ({clock()})")
            fault = Fault(point, run.run_id, run.process.pid, exit_code,
                          table_versions(chain.warehouse), lock_holder(chain.warehouse))
            chain.faults.append(fault)
            counted.append(counting.submit(counter.counts, fault.versions))
        final = start_next_run(chain)
        exit_code = final.finish(RUN_SECONDS)
        assert exit_code == 0, final.stderr[-3000:]
        print(f"run {final.run_id} completed ({clock()})")
        for fault, counts in zip(chain.faults, counted, strict=True):
            fault.counts = counts.result()


def start_next_run(chain: Chain) -> Run:
    """Start a run; once it has started, note whether it took over the last killed run's lock."""
    run = Run(chain.warehouse, chain.data, chain.workdir)
    chain.runs.append(run)
    if chain.faults:
        killed = chain.faults[-1]
        run.wait_until(lambda r: r.run_id is not None, RUN_SECONDS)
        killed.next_run_took_over = run.said(f"taking over the lock left by run {killed.run_id}")
    return run


def read_table(spark, warehouse: str, table: str, columns: str):
    return spark.sql(f"select {columns} from delta.`{warehouse}/movielens/{table}`").collect()


def pipeline_statuses(spark, warehouse: str) -> dict[str, str]:
    return {r.run_id: r.status for r in read_table(spark, warehouse, "pipeline_runs",
                                                   "run_id, status")}


def model_state(spark, warehouse: str) -> dict:
    """The latest training run, its RMSE, the report's ALS RMSE, and which runs the published
    output tables came from (all the latest one's, for a consistent model)."""
    runs = read_table(spark, warehouse, "model_runs", "run_id, finished_at, rmse")
    latest = max(runs, key=lambda r: (r.finished_at, r.run_id))
    metrics = read_table(spark, warehouse, "model_metrics", "model, rmse")
    return {
        "model_runs": len(runs), "latest_run": latest.run_id, "rmse": latest.rmse,
        "report_rmse": next(r.rmse for r in metrics if r.model == "als"),
        "output_runs": {t: sorted({r.run_id for r in read_table(spark, warehouse, t,
                                                                 "distinct run_id")})
                        for t in TRAIN_OUTPUTS},
    }


# --- what must hold ------------------------------------------------------------------------------

def neither_previous_nor_new(chain: Chain, counts: dict[str, int]) -> dict[str, tuple]:
    """Tables whose row count is a part of something: {table: (count, previous, new)}."""
    return {table: (n, chain.previous.get(table), chain.new.get(table))
            for table, n in counts.items()
            if table not in HISTORY_TABLES and n not in (chain.previous.get(table),
                                                         chain.new.get(table))}


def rows_lost(chain: Chain) -> int:
    return sum(max(n - chain.final.get(table, 0), 0) for table, n in chain.new.items()
               if table not in HISTORY_TABLES)


def recovered(fault: Fault, chain: Chain) -> bool:
    """Killed outright, lock left behind, taken over by the next run, recorded as killed, and
    no table left part-written."""
    return (fault.exit_code == -9 and (fault.lock or {}).get("run_id") == fault.run_id
            and fault.next_run_took_over and chain.statuses.get(fault.run_id) == "killed"
            and not neither_previous_nor_new(chain, fault.counts))


def test_every_kill_left_each_table_at_its_previous_or_new_row_count(chain):
    assert len(chain.faults) == len(KILL_POINTS)
    for fault in chain.faults:
        assert fault.exit_code == -9, fault.point.name
        assert neither_previous_nor_new(chain, fault.counts) == {}, fault.point.name
        assert set(chain.previous) - HISTORY_TABLES <= set(fault.counts), fault.point.name


def test_the_next_run_takes_over_the_lock_and_records_the_killed_run(chain):
    for fault in chain.faults:
        assert fault.lock["run_id"] == fault.run_id and fault.lock["pid"] == fault.pid
        assert fault.next_run_took_over, fault.point.name
        assert chain.statuses[fault.run_id] == "killed", fault.point.name
    assert chain.final_lock is None  # the completed run released it
    assert sorted(chain.statuses.values()) == ["killed"] * len(KILL_POINTS) + ["succeeded"] * 2


def test_the_final_warehouse_equals_an_uninterrupted_run(chain):
    assert {t: n for t, n in chain.final.items() if t not in HISTORY_TABLES} == \
        {t: n for t, n in chain.new.items() if t not in HISTORY_TABLES}
    model, reference = chain.model, chain.reference_model
    assert model["model_runs"] == reference["model_runs"]  # killed trains recorded no run
    # Every published output comes from the latest finished run, none from a killed one.
    assert all(runs == [model["latest_run"]] for runs in model["output_runs"].values()), model
    # The same data, seed and ALS blocks: the same model, to the last digit.
    assert model["rmse"] == reference["rmse"]
    # The report's RMSE is a SQL average over partitions, whose order of addition varies
    # from run to run: equal to the last few bits.
    assert model["report_rmse"] == pytest.approx(reference["report_rmse"], rel=1e-12)


def test_clients_querying_throughout_never_fail_nor_see_a_partial_table(chain):
    readers = chain.readers
    assert readers.errors == []
    # Throughout: every run of the chain, killed or not, was queried while it ran.
    for run in chain.runs:
        assert any(run.started <= t <= run.ended for t in readers.answered_at), run.run_id
    for table in READ_TABLES:
        seen = {result[table] for result in readers.results}
        assert seen <= {chain.previous[table], chain.new[table]}, table


def test_the_runs_start_from_the_jvm_start_cache_where_one_was_recorded(chain):
    if "with a start cache" not in chain.java:
        pytest.skip(f"the chain's runs start on {chain.java}")
    # A JVM that cannot use its cache (another build, a changed class path) says so on stderr
    # ("[warning][aot] ...") and starts without it.
    refusals = [line for run in chain.runs for line in run.lines if "][aot]" in line]
    assert refusals == []


def test_summary_every_fault_recovered_and_no_row_lost(chain, capsys):
    injected = len(chain.faults)
    recovered_runs = sum(recovered(fault, chain) for fault in chain.faults)
    lost = rows_lost(chain)
    readers = chain.readers
    with capsys.disabled():
        print(f"\nfault injection: {injected} faults injected, {recovered_runs} runs recovered, "
              f"{lost} rows lost, {len(readers.results):,} reader queries, "
              f"{len(readers.errors)} reader errors, {clock()} from the chain's start "
              f"(runs on {chain.java})")
    assert injected == recovered_runs == len(KILL_POINTS)
    assert lost == 0
