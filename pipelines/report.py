"""`reelhouse report`: one self-contained HTML file (report_page: inline SVG charts, inline
CSS, no script, nothing fetched: it opens offline) and a short summary on the terminal.

Only small aggregated tables reach Python: the report models of sql/reports (one row per model,
bucket, genre, histogram bin or run), a sample of at most ~200 points of the long-tail curve,
and the latest tuning grid. A table that does not exist yet leaves its section saying which
command builds it, so the report works from the first `reelhouse build` on.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pipelines import delta_log, evaluate, naming, progress, registration
from pipelines.report_page import render_html
from pipelines.settings import Settings

REPORT_FILE = "report.html"
# Beside the report: the Delta version of each table it was made from, so a run that changed
# none of them can leave the report as it is (write_report(only_if_changed=True)).
INPUTS_FILE = "report.inputs.json"
REPORT_TABLES = ("sparsity", "rating_distribution", "activity_histogram", "long_tail",
                 "model_runs", "model_metrics", "ranking_metrics", "error_by_user_activity",
                 "error_by_movie_popularity", "error_by_genre", "metric_history",
                 "model_trials")
LONG_TAIL_POINTS = 200
HISTORY_RUNS = 50


def _plain(value):
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return value


def _query(spark, sql: str) -> list[dict]:
    return [{k: _plain(v) for k, v in row.asDict().items()} for row in spark.sql(sql).collect()]


def gather(spark, settings: Settings) -> dict:
    """Everything the report shows (what report_page draws), as lists of plain dicts; None for
    a table not built yet. Each query returns at most a few hundred rows whatever the size of
    the warehouse."""
    registration.register_warehouse(spark, settings)

    def table(name: str) -> str | None:
        assert name in REPORT_TABLES, f"{name} must be in REPORT_TABLES (what the report reads)"
        return naming.qualified(settings, name) \
            if registration.table_exists(spark, settings, name) else None

    def rows(name: str, sql: str) -> list[dict] | None:
        qualified = table(name)
        return None if qualified is None else _query(spark, sql.format(t=qualified))

    data = {
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "warehouse": settings.warehouse,
        "sparsity": rows("sparsity", "select * from {t}"),  # one row
        "rating_distribution": rows("rating_distribution",
                                    "select * from {t} order by rating"),  # one per value
        "activity_histogram": rows("activity_histogram",
                                   "select * from {t} order by entity, bin_index"),
        "long_tail": rows("long_tail", f"""
            with curve as (select *, count(*) over () as num_movies from {{t}})
            select popularity_rank, share_of_movies, cumulative_share_of_ratings, num_ratings,
                   segment
            from curve
            where popularity_rank = 1 or popularity_rank = num_movies
               or popularity_rank % greatest(1, ceil(num_movies / {LONG_TAIL_POINTS})) = 0
            order by popularity_rank"""),
        "long_tail_segments": rows("long_tail", """
            select segment, count(*) as num_movies, sum(num_ratings) as num_ratings
            from {t} group by segment order by segment"""),
        "latest_run": rows("model_runs", """
            select run_id, finished_at, params, train_rows, test_rows, prediction_rows,
                   cold_start_rows, fit_seconds, rmse, mae
            from {t} order by finished_at desc, run_id desc limit 1"""),
        "model_metrics": rows("model_metrics", "select * from {t}"),  # one row per model
        "ranking_metrics": rows("ranking_metrics",
                                "select * from {t} order by relevance, served desc, model, k"),
        "error_by_user_activity": rows("error_by_user_activity",
                                       "select * from {t} order by bucket_order, model"),
        "error_by_movie_popularity": rows("error_by_movie_popularity",
                                          "select * from {t} order by bucket_order, model"),
        "error_by_genre": rows("error_by_genre",
                               "select * from {t} order by num_predictions desc, genre"),
        "metric_history": rows("metric_history", f"""
            with runs as (
                select run_id, max(finished_at) as finished_at from {{t}} group by run_id
                order by finished_at desc, run_id desc limit {HISTORY_RUNS})
            select history.* from {{t}} as history join runs on history.run_id = runs.run_id
            order by history.finished_at, history.run_id, history.model"""),
        "tuning": rows("model_trials", _tuning_query(spark, table("model_trials"))),
    }
    return data


def _tuning_query(spark, qualified: str | None) -> str:
    """The latest tune's grid, one cell per (rank, regParam): the best score over the other
    settings (lowest validation RMSE, or highest validation NDCG@10 for a ranking tune).
    Trials recorded before the ranking objective have no objective column: all RMSE."""
    has_objective = qualified is not None and "objective" in spark.table(qualified).columns
    objective = "coalesce(objective, 'rmse')" if has_objective else "'rmse'"
    candidate = (f"not coalesce(implicit, false) and {objective} = 'ranking'" if has_objective
                 else "false")  # the rating model as a ranking candidate: not on the grid
    return f"""
        with trials as (select *, {objective} as tune_objective from {{t}}
                        where not ({candidate})),
        latest as (select max_by(tune_id, tuned_at) as tune_id from trials)
        select trials.tune_id, max(trials.tune_objective) as objective, trials.rank,
               trials.reg_param, min(trials.validation_rmse) as validation_rmse,
               max({'trials.validation_ndcg_at_10' if has_objective else 'null'})
                   as validation_ndcg_at_10,
               count(*) as num_trials
        from trials join latest on trials.tune_id = latest.tune_id
        group by trials.tune_id, trials.rank, trials.reg_param
        order by trials.rank, trials.reg_param"""


def summary_lines(data: dict) -> list[str]:
    """The terminal summary: the data, ALS against the best baseline, ranking, tuning."""
    lines = []
    sparsity = (data.get("sparsity") or [None])[0]
    if sparsity:
        lines.append(f"data: {sparsity['num_ratings']:,} ratings by {sparsity['num_users']:,} "
                     f"users on {sparsity['num_movies']:,} movies "
                     f"(density {(sparsity['density'] or 0) * 100:.2f}%)")
    run = evaluate.run_summary(data.get("model_metrics") or [], data.get("ranking_metrics") or [])
    if run.best_baseline is not None:
        als, best = run.als, run.best_baseline
        lines.append(f"test RMSE: ALS {als['rmse']:.4f}, best baseline {best['model']} "
                     f"{best['rmse']:.4f} ({(als['rmse'] / best['rmse'] - 1) * 100:+.1f}%)")
    if run.served is not None:
        lines.append(evaluate.ranking_line(run))
    trials = [row for row in data.get("tuning") or [] if row["validation_rmse"] is not None]
    if trials and trials[0]["objective"] != "ranking":
        best = min(trials, key=lambda row: row["validation_rmse"])
        lines.append(f"tuning: best rank {best['rank']}, regParam {best['reg_param']:g} "
                     f"(validation RMSE {best['validation_rmse']:.4f})")
    return lines


def report_inputs(spark, settings: Settings) -> dict:
    """The warehouse and the Delta version of every table the report reads (from the Delta
    logs: no Spark job)."""
    return {"warehouse": settings.warehouse,
            "versions": {table: delta_log.current_version(spark, settings, table)
                         for table in REPORT_TABLES}}


def write_report(spark, settings: Settings, out_dir: Path | None = None,
                 only_if_changed: bool = False) -> Path:
    """Write the HTML report into out_dir (default <target>/report), print the summary;
    returns the file. With only_if_changed (a pipeline run), a report made from the same
    table versions is left as it is: a run with nothing new skips its ~15 s of queries."""
    out_dir = Path(out_dir) if out_dir else settings.target_dir / "report"
    path = out_dir / REPORT_FILE
    inputs_path = out_dir / INPUTS_FILE
    inputs = json.dumps(report_inputs(spark, settings), sort_keys=True)
    if only_if_changed and path.exists() and inputs_path.exists() \
            and inputs_path.read_text() == inputs:
        progress.say(f"report up to date: {path} (no table it shows has changed)")
        return path
    data = gather(spark, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs_path.unlink(missing_ok=True)  # the report and its inputs change together
    path.write_text(render_html(data), encoding="utf-8")
    inputs_path.write_text(inputs)
    for line in summary_lines(data):
        print(line)
    progress.say(f"report written to {path}")
    return path
