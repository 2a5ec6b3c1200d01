"""The HTML of `reelhouse report`: one section per part of the warehouse (the data, rating
prediction, ranking, where the error is, tuning, metric history), each drawn from the rows
report.gather returns, and the page that holds them. A section whose table is not built yet
says which command builds it.

The page is one self-contained file: the stylesheet (report.css, shipped beside this module)
is inlined, the charts are inline SVG, there is no script and nothing is fetched.
"""

from __future__ import annotations

import math
from pathlib import Path

from pipelines.charts import (
    MODEL_NAMES,
    bar_chart,
    esc,
    format_value,
    hbar_chart,
    heatmap,
    line_chart,
)

# Package data (pyproject.toml), read as each page is rendered and inlined into it.
STYLESHEET = Path(__file__).with_name("report.css")
RUN_AXIS = "run finished (UTC, month-day hour:minute)"
# Models in the order every chart and table lists them: the trained ones, then the baselines.
MODEL_ORDER = ("als", "implicit_als", "explicit_als", "user_movie_bias", "movie_mean",
               "global_mean", "most_rated", "top_rated")


def _missing(what: str, command: str) -> str:
    return (f'<p class="missing">{esc(what)} is not in the warehouse yet: run '
            f'<code>{esc(command)}</code>.</p>')


def _figure(caption: str, chart: str, hint: str = "", wide: bool = False) -> str:
    hint_html = f'<div class="hint">{esc(hint)}</div>' if hint else ""
    css_class = ' class="wide"' if wide else ""
    return (f"<figure{css_class}><figcaption>{esc(caption)}</figcaption>{chart}{hint_html}"
            "</figure>")


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _models_in(rows: list[dict]) -> list[str]:
    present = {row["model"] for row in rows}
    return [m for m in MODEL_ORDER if m in present] + sorted(present - set(MODEL_ORDER))


def _bin_label(row: dict) -> str:
    low, high = row["min_ratings"], row["max_ratings"]
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def section_data(data: dict) -> str:
    parts = ["<h2>The data</h2>"]
    sparsity = (data.get("sparsity") or [None])[0]
    if sparsity:
        parts.append('<div class="cards">' + "".join(
            f'<div class="card"><div class="value">{esc(value)}</div>'
            f'<div class="label">{esc(label)}</div></div>'
            for value, label in (
                (f"{sparsity['num_ratings']:,}", "ratings"),
                (f"{sparsity['num_users']:,}", "users with ratings"),
                (f"{sparsity['num_movies']:,}", "movies with ratings"),
                (f"{(sparsity['density'] or 0) * 100:.2f}%", "of the user × movie matrix "
                                                             "filled (density)"))) + "</div>")
    figures = []
    distribution = data.get("rating_distribution")
    if distribution:
        figures.append(_figure("Rating distribution", bar_chart(
            [f"{row['rating']:g}" for row in distribution],
            [("ratings", [row["share"] for row in distribution])],
            "Share of ratings by rating value", "share of ratings", fmt="%",
            percent_axis=True), "How often each star value is given."))
    tail = data.get("long_tail")
    if tail:
        segments = {row["segment"]: row for row in data.get("long_tail_segments") or []}
        head = segments.get("head")
        notes = []
        if head:
            movies = sum(row["num_movies"] for row in segments.values())
            ratings = sum(row["num_ratings"] for row in segments.values())
            notes = [f"head: {head['num_movies']:,} movies ({head['num_movies'] / movies:.1%}) "
                     f"hold {head['num_ratings'] / ratings:.0%} of ratings"]
        figures.append(_figure("Popularity long tail", line_chart(
            [("ratings", [(0.0, 0.0)] + [(row["share_of_movies"],
                                          row["cumulative_share_of_ratings"]) for row in tail])],
            "Cumulative share of ratings by share of movies, most rated first",
            "share of movies (most rated first)", "cumulative share of ratings",
            percent_axes=(True, True), y_from_zero=True, markers=False, notes=notes),
            "A steep start and a long flat end: a few movies get most ratings."))
    histogram = data.get("activity_histogram")
    for entity, caption in (("user", "Ratings per user"), ("movie", "Ratings per movie")):
        bins = [row for row in histogram or [] if row["entity"] == entity]
        if bins:
            figures.append(_figure(caption, bar_chart(
                [_bin_label(row) for row in bins],
                [("count", [row["num_entities"] for row in bins])],
                f"{caption} (doubling bins)", f"{entity}s", fmt="int"),
                f"Number of {entity}s by how many ratings they have; bins double in width."))
    if not figures:
        return "".join(parts) + _missing("The marts", "reelhouse build")
    parts.append('<div class="grid2">' + "".join(figures) + "</div>")
    if sparsity:
        quantiles = ("min", "p25", "p50", "p75", "p90", "p99", "max")
        parts.append("<h3>Sparsity: ratings per user and per movie (exact quantiles)</h3>")
        parts.append(_table(["per", "mean", *quantiles], [
            [who, f"{sparsity[f'avg_ratings_per_{who}'] or 0:,.1f}",
             *[f"{sparsity[f'{q}_ratings_per_{who}'] or 0:,.0f}" for q in quantiles]]
            for who in ("user", "movie")]))
    return "".join(parts)


def section_models(data: dict) -> str:
    parts = ["<h2>Rating prediction: ALS against baselines</h2>"]
    metrics = data.get("model_metrics")
    run = (data.get("latest_run") or [None])[0]
    if run:
        parts.append(f'<p class="meta">Latest run <code>{esc(run["run_id"])}</code>, '
                     f'finished {esc(run["finished_at"])}: {run["train_rows"] or 0:,} train '
                     f'rows, {run["prediction_rows"] or 0:,} test rows scored '
                     f'({run["cold_start_rows"] or 0:,} cold-start rows left out). '
                     f'Parameters: <code>{esc(run["params"])}</code></p>')
    if not metrics:
        return "".join(parts) + _missing("model_metrics", "reelhouse train && "
                                                          "reelhouse evaluate")
    models = _models_in(metrics)
    by_model = {row["model"]: row for row in metrics}
    chart = bar_chart([MODEL_NAMES.get(m, m) for m in models],
                      [("rmse", [by_model[m]["rmse"] for m in models]),
                       ("mae", [by_model[m]["mae"] for m in models])],
                      "Test RMSE and MAE by model", "error (stars)")
    parts.append('<div class="grid2">' + _figure(
        "Test error, every model on the same test rows", chart,
        "Lower is better. Baselines learn from the train rows only.") + "<div>" + _table(
        ["model", "RMSE", "MAE", "mean error", "vs global mean", "test rows"],
        [[MODEL_NAMES.get(m, m), format_value(by_model[m]["rmse"], ".4f"),
          format_value(by_model[m]["mae"], ".4f"), format_value(by_model[m]["mean_error"], "+.4f"),
          format_value(by_model[m]["rmse_improvement_over_global_mean"], "%"),
          format_value(by_model[m]["num_predictions"], "int")] for m in models]) + "</div></div>")

    ranking = data.get("ranking_metrics")
    parts.append("<h2>Ranking: the served lists against most-rated and top-rated</h2>")
    if not ranking:
        return "".join(parts) + _missing("ranking_metrics", "reelhouse evaluate")
    largest = max(row["k"] for row in ranking)
    names = [("precision_at_k", "precision"), ("recall_at_k", "recall"), ("ndcg_at_k", "NDCG"),
             ("map_at_k", "MAP"), ("hit_rate", "hit rate")]
    served = next((row["model"] for row in ranking if row["served"]), None)
    for relevance, caption in (
            ("any", "relevant = any held-out rating (the standard protocol)"),
            ("threshold", "relevant = a held-out rating ≥ {threshold:g}")):
        rows = [row for row in ranking if row["relevance"] == relevance]
        if not rows:
            continue
        at_k = {row["model"]: row for row in rows if row["k"] == largest}
        ranked_models = _models_in(list(at_k.values()))
        chart = bar_chart([label for _, label in names],
                          [(m, [at_k[m][key] for key, _ in names]) for m in ranked_models],
                          f"Ranking metrics at k = {largest}", f"value at k = {largest}")
        lift = ""
        if served in at_k and at_k[served]["ndcg_lift_over_most_rated"] is not None:
            lift = (f" NDCG@{largest} of the served model is "
                    f"{at_k[served]['ndcg_lift_over_most_rated']:.2f}× most-rated's.")
        threshold = rows[0]["relevance_threshold"]
        parts.append('<div class="grid2">' + _figure(
            f"Top-{largest} quality, {caption.format(threshold=threshold or 0)}", chart,
            f"Served: {MODEL_NAMES.get(served, served)} (fit on train for these lists, refit "
            f"on every rating to serve).{lift} Every list comes from train ratings only and "
            "skips the user's train movies; averaged over users with a relevant test item. "
            "Higher is better. Coverage: share of the train catalogue listed to anyone; mean "
            "popularity: train ratings of a listed movie.")
            + "<div>" + _table(
                ["model", "k", "precision", "recall", "NDCG", "MAP", "hit rate", "coverage",
                 "mean popularity"],
                [[MODEL_NAMES.get(row["model"], row["model"])
                  + (" (served)" if row["served"] else ""), row["k"],
                  *[format_value(row[key], ".4f") for key, _ in names],
                  format_value(row["catalog_coverage"], "%"), format_value(row["mean_popularity"],
                                                                  ",.0f")]
                 for row in rows]) + "</div></div>")
    return "".join(parts)


def section_breakdowns(data: dict) -> str:
    parts = ["<h2>Where the error is</h2>"]
    figures = []
    for key, bucket, caption, x_hint in (
            ("error_by_user_activity", "activity_bucket", "Test RMSE by user activity",
             "train ratings of the user"),
            ("error_by_movie_popularity", "popularity_bucket", "Test RMSE by movie popularity",
             "train ratings of the movie")):
        rows = data.get(key)
        if not rows:
            continue
        buckets = []
        for row in rows:
            high = row["max_train_ratings"]
            label = (f"{row[bucket]} ({row['min_train_ratings']}–{high})" if high is not None
                     else f"{row[bucket]} ({row['min_train_ratings']}+)")
            if label not in buckets:
                buckets.append(label)
        models = _models_in(rows)
        values = {(row["model"], row["bucket_order"]): row["rmse"] for row in rows}
        orders = sorted({row["bucket_order"] for row in rows})
        figures.append(_figure(caption, bar_chart(
            buckets, [(m, [values.get((m, o)) for o in orders]) for m in models],
            caption, "test RMSE", width=560),
            f"Buckets by {x_hint} (vars set the bounds); empty buckets have no bars."))
    genres = data.get("error_by_genre")
    if genres:
        shown = [m for m in ("als", "user_movie_bias", "global_mean")
                 if any(r["model"] == m for r in genres)]
        sizes: dict[str, int] = {}
        for row in genres:
            if row["model"] == "als":
                sizes[row["genre"]] = row["num_predictions"]
        order = sorted(sizes, key=lambda g: (-sizes[g], g))[:24]
        values = {(row["model"], row["genre"]): row["rmse"] for row in genres}
        figures.append(_figure("Test RMSE by genre", hbar_chart(
            [f"{g} ({sizes[g]:,})" for g in order],
            [(m, [values.get((m, g)) for g in order]) for m in shown],
            "Test RMSE by genre", "test RMSE", width=1100),
            "Genres by number of test rows (in brackets), largest first; a movie counts in "
            "each of its genres.", wide=True))
    if not figures:
        return "".join(parts) + _missing("The error breakdowns", "reelhouse evaluate")
    return "".join(parts) + '<div class="grid2">' + "".join(figures) + "</div>"


def section_tuning(data: dict) -> str:
    trials = data.get("tuning")
    if not trials:
        return ("<h2>Tuning</h2>" + '<p class="hint">No tuning trials yet: '
                "<code>reelhouse tune</code> fills <code>movielens.model_trials</code> and "
                "this section shows its rank × regParam grid.</p>")
    ranking = trials[0]["objective"] == "ranking"
    key, label, pick = (("validation_ndcg_at_10", "validation NDCG@10", max) if ranking
                        else ("validation_rmse", "validation RMSE", min))
    ranks = sorted({row["rank"] for row in trials})
    regs = sorted({row["reg_param"] for row in trials})
    values = {(row["rank"], row["reg_param"]): row[key] for row in trials}
    best = pick((row for row in trials if row[key] is not None), key=lambda row: row[key],
                default=None)
    chart = heatmap([str(r) for r in ranks], [f"{g:g}" for g in regs],
                    [[values.get((r, g)) for g in regs] for r in ranks],
                    f"{label[0].upper()}{label[1:]} by rank and regParam"
                    f"{' (implicit ALS)' if ranking else ''}", "rank", "regParam",
                    higher_is_better=ranking)
    hint = (f"Tune {trials[0]['tune_id']} ({'ranking: the list model' if ranking else 'RMSE: the rating model'}): "  # noqa: E501
            f"{sum(r['num_trials'] for r in trials)} trials; each cell is the "
            f"{'highest' if ranking else 'lowest'} {label} over the other settings.")
    if best:
        hint += (f" Best: rank {best['rank']}, regParam {best['reg_param']:g} "
                 f"({best[key]:.4f}); train with it: reelhouse train --params best")
    return "<h2>Tuning</h2>" + _figure("Tuning grid (latest tune)", chart, hint)


def section_history(data: dict) -> str:
    parts = ["<h2>Metric history</h2>"]
    history = data.get("metric_history")
    if not history:
        return "".join(parts) + _missing("metric_history", "reelhouse evaluate")
    runs: list[str] = []
    for row in history:
        if row["run_id"] not in runs:
            runs.append(row["run_id"])
    index = {run: i for i, run in enumerate(runs)}
    finished = {row["run_id"]: row["finished_at"] for row in history}
    step = max(1, math.ceil(len(runs) / 12))
    ticks = [(i, str(finished[runs[i]])[5:16] if finished[runs[i]] else runs[i][:11])
             for i in range(0, len(runs), step)]

    def series(metric: str) -> list[tuple[str, list]]:
        result = []
        for model in _models_in(history):
            values = {row["run_id"]: row[metric] for row in history if row["model"] == model}
            if any(v is not None for v in values.values()):
                result.append((model, [(index[r], values.get(r)) for r in runs]))
        return result

    figures = [_figure("Test RMSE of every run", line_chart(
        series("rmse"), "Test RMSE by run", RUN_AXIS, "test RMSE", x_ticks=ticks),
        "Runs before their evaluation show ALS only (as train recorded it).")]
    ranked = series("ndcg_at_k")
    if ranked:
        k = next(row["k"] for row in history if row["k"] is not None)
        figures.append(_figure(f"NDCG@{k} of every evaluated run", line_chart(
            ranked, f"NDCG@{k} by run", RUN_AXIS, f"NDCG@{k}", x_ticks=ticks)))
    parts.append('<div class="grid2">' + "".join(figures) + "</div>")
    parts.append('<p class="hint">predictions and recommendations hold the latest run only; '
                 "an older run's come back with Delta time travel, e.g. <code>select * from "
                 "movielens.predictions version as of N</code> with N from <code>select "
                 "output_versions['predictions'] from movielens.model_runs where run_id = "
                 "'…'</code>.</p>")
    return "".join(parts)


def render_html(data: dict) -> str:
    """The whole report as one HTML document: inline CSS and SVG, no script, no links out."""
    body = (f"<h1>reelhouse report</h1><p class=\"meta\">Generated {esc(data['generated_at'])} "
            f"from <code>{esc(data['warehouse'])}</code></p>"
            + section_data(data) + section_models(data) + section_breakdowns(data)
            + section_tuning(data) + section_history(data))
    css = STYLESHEET.read_text(encoding="utf-8")
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>reelhouse report</title><style>\n{css}</style></head>"
            f"<body><main>{body}</main></body></html>\n")

