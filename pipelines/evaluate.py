"""`reelhouse evaluate`: build the report models in sql/reports/ (error of ALS against
baselines, ranking metrics against most-rated and top-rated baselines, error breakdowns,
exploration tables, metric history) from the marts and what `reelhouse train` wrote. A step
of `reelhouse run`, after train. All the metrics are SQL; this module only checks the inputs
exist, builds the models with the runner and prints a two-line summary.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines import naming, progress, registration, runner, sql_project
from pipelines.errors import ReelhouseError
from pipelines.settings import Settings


def ranking_cutoffs(value) -> list[int]:
    """The k values of var('ranking_ks'), checked before any SQL runs (the model checks them
    too, but a failure inside a Spark job reaches the user as a stack of wrappers)."""
    parts = [part.strip() for part in str(value).split(",")]
    if not all(part.isdigit() and int(part) >= 1 for part in parts):
        raise ReelhouseError(f"var ranking_ks must list whole numbers >= 1 separated by commas "
                             f"(e.g. --var ranking_ks=5,10), got {value!r}.")
    return sorted({int(part) for part in parts})


BUILD_TAG = "build"  # models `reelhouse build` / run's build step make (reelhouse_project.yml)
EVALUATE_TAG = "evaluate"  # models that read train's output: built by evaluate, after train


def report_models(project: sql_project.Project) -> list[str]:
    """Every model the evaluate step builds, in dependency order."""
    return project.tagged(EVALUATE_TAG)


def warehouse_models(project: sql_project.Project,
                     selectors: list[str] | None = None) -> list[str]:
    """The models `reelhouse run` builds before training: the selected models tagged build
    (the evaluate-tagged ones read train's output and are built after it)."""
    return [name for name in project.select(selectors) if BUILD_TAG in project.models[name].tags]


def build_warehouse_models(spark, project: sql_project.Project, selectors: list[str] | None = None,
                           force: bool = False) -> list[str]:
    """`reelhouse run`'s build step: the selected models less the reports (built by
    `evaluate` once train has written what they read); returns the models rebuilt."""
    names = warehouse_models(project, selectors)
    return runner.build(spark, project, names, force=force) if names else []


def missing_inputs(spark, project: sql_project.Project, names: list[str]) -> list[str]:
    """Tables the given models read that are neither among them nor in the warehouse."""
    schema = project.settings.schema
    needed = set()
    for name in names:
        model = project.models[name]
        needed |= set(model.sources)
        needed |= {f"{schema}.{ref}" for ref in model.refs if ref not in names}
    return sorted(table for table in needed if not spark.catalog.tableExists(table))


def evaluate(spark, settings: Settings, cli_vars: dict | None = None,
             force: bool = False) -> list[str]:
    """Build every report model (each tested after it is built; a failure rolls them all
    back); returns the models rebuilt."""
    project = sql_project.load_project(settings, cli_vars=cli_vars)
    ranking_cutoffs(project.vars["ranking_ks"])  # declared in reelhouse_project.yml
    names = report_models(project)
    registration.register_warehouse(spark, settings)
    missing = missing_inputs(spark, project, names)
    if missing:
        raise ReelhouseError(
            f"Evaluation needs {', '.join(missing)}, which the warehouse does not have yet: "
            "run `reelhouse run` (or `reelhouse build` then `reelhouse train`) first.")
    rebuilt = runner.build(spark, project, names, force=force)
    for line in summary(spark, settings):
        progress.say(line)
    return rebuilt


@dataclass(frozen=True)
class RunSummary:
    """A run's headline numbers, computed once for both terminal summaries (`evaluate` and
    `report`): the rating model against its best baseline on test RMSE, and the served lists
    at the largest k on the standard protocol (any held-out rating relevant)."""
    als: dict | None  # the rating model's model_metrics row, when a baseline is there too
    best_baseline: dict | None  # the baseline with the lowest test RMSE
    served: dict | None  # the served model's ranking_metrics row at the largest k
    ranking: dict[str, dict]  # every list model's row at that k, by model


def run_summary(model_metrics: list[dict], ranking_metrics: list[dict]) -> RunSummary:
    """The headline numbers from the rows of model_metrics and ranking_metrics."""
    errors = {row["model"]: row for row in model_metrics}
    als = errors.get("als")
    baselines = [row for model, row in errors.items() if model != "als" and row["rmse"] is not None]
    best = None
    if als is not None and als["rmse"] is not None and baselines:
        best = min(baselines, key=lambda row: row["rmse"])
    standard = [row for row in ranking_metrics if row["relevance"] == "any"]
    largest = max((row["k"] for row in standard), default=None)
    ranking = {row["model"]: row for row in standard if row["k"] == largest}
    return RunSummary(als=als if best is not None else None, best_baseline=best,
                      served=next((row for row in ranking.values() if row["served"]), None),
                      ranking=ranking)


def summary(spark, settings: Settings) -> list[str]:
    """The rating model against its best baseline, and the served lists against most-rated on
    the standard protocol (two tiny tables read: one row per model, and per model, k and
    relevance)."""
    def rows(name: str) -> list[dict]:
        return [row.asDict() for row in spark.table(naming.qualified(settings, name)).collect()]

    run = run_summary(rows("model_metrics"), rows("ranking_metrics"))
    lines = []
    if run.best_baseline is not None:
        als, best = run.als, run.best_baseline
        verdict = "beats" if als["rmse"] < best["rmse"] else "does NOT beat"
        lines.append(f"test RMSE: rating model (explicit ALS) {als['rmse']:.4f} {verdict} the "
                     f"best baseline ({best['model']} {best['rmse']:.4f}) on "
                     f"{als['num_predictions']:,} test rows")
    if run.served is not None:
        lines.append(ranking_line(run))
    return lines


def ranking_line(run: RunSummary) -> str:
    """'lists served by …: NDCG@k …, lift over most-rated …' for the terminal and report."""
    served = run.served
    line = (f"lists served by {served['model']} (refit on every rating to serve): "
            f"NDCG@{served['k']} {_number(served['ndcg_at_k'])}, precision@{served['k']} "
            f"{_number(served['precision_at_k'])} on {served['num_evaluated_users']:,} test "
            "users (any held-out rating relevant, train movies excluded)")
    popular = run.ranking.get("most_rated")
    if popular is not None and served["ndcg_lift_over_most_rated"] is not None:
        line += (f"; most-rated {_number(popular['ndcg_at_k'])}, lift "
                 f"{served['ndcg_lift_over_most_rated']:.2f}x")
    others = [f"{model} {_number(row['ndcg_at_k'])}" for model, row in sorted(run.ranking.items())
              if model not in (served["model"], "most_rated")]
    return line + (f" ({', '.join(others)})" if others else "")


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
