"""`reelhouse report`: one self-contained HTML file (inline SVG charts, inline CSS, no script,
nothing fetched: it opens offline) and a short summary on the terminal.

Only small aggregated tables reach Python: the report models of sql/reports (one row per model,
bucket, genre, histogram bin or run), a sample of at most ~200 points of the long-tail curve,
and the latest tuning grid. A table that does not exist yet leaves its section saying which
command builds it, so the report works from the first `reelhouse build` on.

The charts are drawn here as SVG (bars, grouped bars, lines, a heat map): a few hundred lines
instead of a plotting dependency, crisp at any zoom, and a few kilobytes each.
"""

from __future__ import annotations

import html
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from pipelines import delta_log, evaluate, naming, progress, registration
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
RUN_AXIS = "run finished (UTC, month-day hour:minute)"
MODEL_NAMES = {"als": "ALS", "global_mean": "global mean", "movie_mean": "movie mean",
               "user_movie_bias": "user + movie bias", "implicit_als": "implicit ALS",
               "explicit_als": "explicit ALS", "most_rated": "most rated",
               "top_rated": "top rated (Bayesian)", "rmse": "RMSE", "mae": "MAE"}
# Okabe-Ito colours: distinguishable with every common colour-vision deficiency.
MODEL_COLOURS = {"als": "#0072B2", "implicit_als": "#0072B2", "explicit_als": "#CC79A7",
                 "most_rated": "#E69F00", "top_rated": "#D55E00", "global_mean": "#999999",
                 "movie_mean": "#56B4E9", "user_movie_bias": "#009E73"}
OTHER_COLOURS = ("#4e79a7", "#f28e2b", "#76b7b2", "#b07aa1")
MODEL_ORDER = ("als", "implicit_als", "explicit_als", "user_movie_bias", "movie_mean",
               "global_mean", "most_rated", "top_rated")


# --- reading the warehouse (small tables only) ---------------------------------------------

def _plain(value):
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return value


def _query(spark, sql: str) -> list[dict]:
    return [{k: _plain(v) for k, v in row.asDict().items()} for row in spark.sql(sql).collect()]


def gather(spark, settings: Settings) -> dict:
    """Everything the report shows, as lists of plain dicts; None for a table not built yet.
    Each query returns at most a few hundred rows whatever the size of the warehouse."""
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


# --- SVG charts ------------------------------------------------------------------------------

def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]: steps of 1, 2, 2.5 or 5 times a power of ten."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = [first]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(first + len(ticks) * step)
    return ticks


def _tick_label(value: float, ticks: list[float], percent: bool = False) -> str:
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    if percent:
        value, step = value * 100, step * 100
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    if step > 0 and round(step / 10 ** -decimals, 6) % 1:  # a 2.5 step needs one more digit
        decimals += 1
    text = f"{value:,.{decimals}f}"
    return f"{text}%" if percent else text


def _format(value, fmt: str) -> str:
    if value is None:
        return "n/a"
    if fmt == "%":
        return f"{value * 100:.1f}%"
    if fmt == "int":
        return f"{value:,.0f}"
    return format(value, fmt)


def _colour(name: str, index: int) -> str:
    return MODEL_COLOURS.get(name) or OTHER_COLOURS[index % len(OTHER_COLOURS)]


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} '
            f'{height}" width="{width}" height="{height}" role="img" aria-label="{_esc(title)}">'
            f'<title>{_esc(title)}</title>' + "".join(body) + "</svg>")


def _legend(names: list[str], x: float, y: float) -> list[str]:
    parts, offset = [], 0.0
    for index, name in enumerate(names):
        label = MODEL_NAMES.get(name, name)
        parts.append(f'<rect x="{x + offset:.1f}" y="{y - 9}" width="11" height="11" '
                     f'fill="{_colour(name, index)}"/>'
                     f'<text x="{x + offset + 15:.1f}" y="{y}" class="legend">{_esc(label)}'
                     '</text>')
        offset += 15 + 6.2 * len(label) + 16
    return parts


def _x_labels_rotated(labels: list[str], spacing: float) -> tuple[bool, int]:
    """Whether category labels need turning to fit, and the bottom margin they need."""
    longest = max((len(label) for label in labels), default=0) * 6.4
    if longest + 6 <= spacing:
        return False, 46
    return True, int(26 + longest * 0.6)


def _x_label(x: float, y: float, text: str, rotated: bool) -> str:
    if rotated:
        return (f'<text transform="translate({x:.1f} {y - 4}) rotate(-35)" '
                f'class="category-turned">{_esc(text)}</text>')
    return f'<text x="{x:.1f}" y="{y}" class="category">{_esc(text)}</text>'


def bar_chart(categories: list[str], series: list[tuple[str, list]], title: str,
              y_label: str = "", fmt: str = ".3f", width: int = 560, height: int = 300,
              percent_axis: bool = False) -> str:
    """Vertical bars, grouped by category, one colour per series; values on the bars."""
    left, right, top = 62, 14, 34 if len(series) > 1 else 14
    rotated, bottom = _x_labels_rotated(categories, (width - left - right) / max(len(categories),
                                                                                  1))
    height += bottom - 46
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, vs in series for v in vs if v is not None]
    ticks = nice_ticks(min(0.0, min(values, default=0.0)), max(values, default=1.0) or 1.0)
    low, high = ticks[0], ticks[-1]

    def y_of(value: float) -> float:
        return top + plot_h * (1 - (value - low) / (high - low))

    body = _y_axis(ticks, y_of, left, plot_w, percent_axis, y_label, top, plot_h)
    group_w = plot_w / max(len(categories), 1)
    bar_w = min(56.0, group_w * 0.8 / max(len(series), 1))
    show_values = len(categories) * len(series) <= 24
    for c_index, category in enumerate(categories):
        group_x = left + group_w * c_index + (group_w - bar_w * len(series)) / 2
        for s_index, (name, vals) in enumerate(series):
            value = vals[c_index] if c_index < len(vals) else None
            if value is None:
                continue
            x, y0, y1 = group_x + bar_w * s_index, y_of(max(low, 0.0)), y_of(value)
            tip = f"{MODEL_NAMES.get(name, name)}, {category}: {_format(value, fmt)}"
            body.append(f'<rect class="bar" x="{x:.1f}" y="{min(y0, y1):.1f}" '
                        f'width="{bar_w - 2:.1f}" height="{abs(y0 - y1):.1f}" '
                        f'fill="{_colour(name, s_index)}"><title>{_esc(tip)}</title></rect>')
            if show_values:
                body.append(f'<text x="{x + (bar_w - 2) / 2:.1f}" y="{min(y0, y1) - 4:.1f}" '
                            f'class="value">{_esc(_format(value, fmt))}</text>')
        body.append(_x_label(left + group_w * (c_index + 0.5), top + plot_h + 16, category,
                             rotated))
    if len(series) > 1:
        body += _legend([name for name, _ in series], left, 16)
    return _svg(width, height, title, body)


def hbar_chart(categories: list[str], series: list[tuple[str, list]], title: str,
               x_label: str = "", fmt: str = ".3f", width: int = 560) -> str:
    """Horizontal grouped bars, for many categories with long names (genres)."""
    left, right, top, bottom = 150, 50, 34 if len(series) > 1 else 12, 40
    row_h = 6 + 10 * len(series)
    plot_w = width - left - right
    height = top + bottom + row_h * len(categories)
    values = [v for _, vs in series for v in vs if v is not None]
    ticks = nice_ticks(0.0, max(values, default=1.0) or 1.0)
    high = ticks[-1]
    body = []
    for tick in ticks:
        x = left + plot_w * tick / high
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" '
                    f'class="grid"/><text x="{x:.1f}" y="{height - bottom + 14}" '
                    f'class="tick-x">{_esc(_tick_label(tick, ticks))}</text>')
    body.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" class="axis-label" '
                f'text-anchor="middle">{_esc(x_label)}</text>')
    for c_index, category in enumerate(categories):
        y_top = top + row_h * c_index + 3
        body.append(f'<text x="{left - 6}" y="{y_top + row_h / 2 + 1:.1f}" class="hcategory">'
                    f'{_esc(category)}</text>')
        for s_index, (name, vals) in enumerate(series):
            value = vals[c_index]
            if value is None:
                continue
            y = y_top + 10 * s_index
            tip = f"{MODEL_NAMES.get(name, name)}, {category}: {_format(value, fmt)}"
            body.append(f'<rect class="bar" x="{left}" y="{y:.1f}" '
                        f'width="{plot_w * value / high:.1f}" height="9" '
                        f'fill="{_colour(name, s_index)}"><title>{_esc(tip)}</title></rect>'
                        f'<text x="{left + plot_w * value / high + 3:.1f}" y="{y + 8:.1f}" '
                        f'class="hvalue">{_esc(_format(value, fmt))}</text>')
    if len(series) > 1:
        body += _legend([name for name, _ in series], left, 16)
    return _svg(width, height, title, body)


def _y_axis(ticks, y_of, left, plot_w, percent, label, top, plot_h) -> list[str]:
    parts = []
    for tick in ticks:
        y = y_of(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                     f'class="grid"/><text x="{left - 6}" y="{y + 4:.1f}" class="tick-y">'
                     f'{_esc(_tick_label(tick, ticks, percent))}</text>')
    parts.append(f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" '
                 f'class="axis-label" text-anchor="middle">{_esc(label)}</text>')
    return parts


def line_chart(series: list[tuple[str, list[tuple[float, float | None]]]], title: str,
               x_label: str = "", y_label: str = "",
               x_ticks: list[tuple[float, str]] | None = None, width: int = 560,
               height: int = 300, percent_axes: tuple[bool, bool] = (False, False),
               y_from_zero: bool = False, markers: bool = True,
               notes: tuple[str, ...] = ()) -> str:
    """Lines through (x, y) points, one colour per series; None breaks a line."""
    left, right, top = 62, 16, 34 if len(series) > 1 else 14
    rotated, bottom = _x_labels_rotated([label for _, label in x_ticks or []], (
        width - left - right) / max(len(x_ticks or []), 1))
    height += bottom - 46
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts if y is not None]
    x_low, x_high = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x_ticks is not None or x_high == x_low:  # categories (runs): half a slot of margin
        x_low, x_high = x_low - 0.5, x_high + 0.5
    y_ticks = nice_ticks(0.0 if y_from_zero else min(ys, default=0.0), max(ys, default=1.0))
    y_low, y_high = y_ticks[0], y_ticks[-1]

    def x_of(x: float) -> float:
        return left + plot_w * (x - x_low) / (x_high - x_low)

    def y_of(y: float) -> float:
        return top + plot_h * (1 - (y - y_low) / (y_high - y_low))

    body = _y_axis(y_ticks, y_of, left, plot_w, percent_axes[1], y_label, top, plot_h)
    if x_ticks is None:
        ticks = nice_ticks(x_low, x_high)
        x_ticks = [(t, _tick_label(t, ticks, percent_axes[0])) for t in ticks
                   if x_low - 1e-9 <= t <= x_high + 1e-9]
    for x, label in x_ticks:
        body.append(_x_label(x_of(x), top + plot_h + 16, label, rotated))
    body.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" class="axis-label" '
                f'text-anchor="middle">{_esc(x_label)}</text>')
    for index, (name, points) in enumerate(series):
        colour = _colour(name, index)
        segment: list[str] = []
        for x, y in points + [(None, None)]:
            if y is None:
                if len(segment) > 1:
                    body.append(f'<polyline class="line" points="{" ".join(segment)}" '
                                f'stroke="{colour}"/>')
                segment = []
                continue
            segment.append(f"{x_of(x):.1f},{y_of(y):.1f}")
            if markers:
                body.append(f'<circle cx="{x_of(x):.1f}" cy="{y_of(y):.1f}" r="3.5" '
                            f'fill="{colour}"><title>{_esc(MODEL_NAMES.get(name, name))}: '
                            f'{y:.4f}</title></circle>')
    for n, note in enumerate(notes):
        body.append(f'<text x="{left + plot_w - 4}" y="{top + plot_h - 10 - 16 * n}" '
                    f'class="note">{_esc(note)}</text>')
    if len(series) > 1:
        body += _legend([name for name, _ in series], left, 16)
    return _svg(width, height, title, body)


def _mix(low: str, high: str, share: float) -> str:
    a = [int(low[i:i + 2], 16) for i in (1, 3, 5)]
    b = [int(high[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * share):02x}" for x, y in zip(a, b, strict=True))


def heatmap(row_labels: list[str], col_labels: list[str], values: list[list[float | None]],
            title: str, row_title: str, col_title: str, fmt: str = ".4f",
            higher_is_better: bool = False) -> str:
    """A grid of cells coloured from dark (best value) to light (worst); the best cell
    outlined. Lower is better unless higher_is_better."""
    cell_w, cell_h, left, top = 86, 34, 92, 44
    width = left + cell_w * len(col_labels) + 16
    height = top + cell_h * len(row_labels) + 40
    present = [v for row in values for v in row if v is not None]
    low, high = (min(present), max(present)) if present else (0.0, 1.0)
    best = (max(present) if higher_is_better else min(present)) if present else None
    body = [f'<text x="{left + cell_w * len(col_labels) / 2:.1f}" y="14" class="axis-label" '
            f'text-anchor="middle">{_esc(col_title)}</text>',
            f'<text transform="translate(14 {top + cell_h * len(row_labels) / 2:.1f}) '
            f'rotate(-90)" class="axis-label" text-anchor="middle">{_esc(row_title)}</text>']
    for c, label in enumerate(col_labels):
        body.append(f'<text x="{left + cell_w * (c + 0.5):.1f}" y="{top - 8}" '
                    f'class="category">{_esc(label)}</text>')
    for r, label in enumerate(row_labels):
        y = top + cell_h * r
        body.append(f'<text x="{left - 8}" y="{y + cell_h / 2 + 4:.1f}" class="tick-y">'
                    f'{_esc(label)}</text>')
        for c, value in enumerate(values[r]):
            x = left + cell_w * c
            if value is None:
                body.append(f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                            'class="empty-cell"/>')
                continue
            share = 0.0 if high == low else (value - low) / (high - low)
            share = 1.0 - share if higher_is_better else share
            fill = _mix("#0b5d3b", "#f4f1c9", share)
            text_fill = "#ffffff" if share < 0.5 else "#1b1b1b"
            outline = ' stroke="#d62728" stroke-width="3"' if value == best else ""
            body.append(f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                        f'fill="{fill}"{outline}><title>{_esc(row_title)} {_esc(label)}, '
                        f'{_esc(col_title)} {_esc(col_labels[c])}: {_format(value, fmt)}'
                        f'</title></rect><text x="{x + (cell_w - 2) / 2:.1f}" '
                        f'y="{y + cell_h / 2 + 4:.1f}" class="cell" style="fill: {text_fill}">'
                        f'{_esc(_format(value, fmt))}</text>')
    body.append(f'<text x="{left}" y="{height - 12}" class="note-left">dark = lower validation '
                'RMSE (better); red outline = best</text>')
    return _svg(width, height, title, body)


# --- the page --------------------------------------------------------------------------------

CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       sans-serif; color: #1b1b1b; background: #fafafa; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 20px; margin: 36px 0 6px;
     border-bottom: 2px solid #e3e3e3; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 14px 0 4px; }
.meta, .hint { color: #5a5a5a; font-size: 13px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr));
         gap: 12px; margin: 16px 0; }
.card { background: #fff; border: 1px solid #e3e3e3; border-radius: 8px; padding: 10px 14px; }
.card .value { font-size: 22px; font-weight: 600; } .card .label { color: #5a5a5a; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(540px, 1fr));
         gap: 18px; }
figure { background: #fff; border: 1px solid #e3e3e3; border-radius: 8px; margin: 0;
         padding: 10px 12px; overflow-x: auto; }
figcaption { font-weight: 600; margin-bottom: 6px; } figure.wide { grid-column: 1 / -1; }
svg.chart { display: block; max-width: 100%; height: auto; }
svg text { font-family: inherit; fill: #333; }
.grid { stroke: #e6e6e6; stroke-width: 1; }
.tick-y { font-size: 11px; text-anchor: end; } .tick-x { font-size: 11px; text-anchor: middle; }
.category { font-size: 11.5px; text-anchor: middle; } .hcategory { font-size: 11.5px;
  text-anchor: end; } .category-turned { font-size: 11.5px; text-anchor: end; }
.value { font-size: 10.5px; text-anchor: middle; } .hvalue { font-size: 10px; }
.legend { font-size: 12px; } .axis-label { font-size: 12px; fill: #555; }
.note { font-size: 12px; text-anchor: end; fill: #444; } .note-left { font-size: 11px;
  fill: #555; }
.cell { font-size: 12px; text-anchor: middle; } .empty-cell { fill: #f0f0f0; }
.line { fill: none; stroke-width: 2.2; }
table { border-collapse: collapse; background: #fff; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #e3e3e3; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f2f2f2; }
.missing { background: #fff8e1; border: 1px solid #f0d98c; border-radius: 8px;
           padding: 10px 14px; }
code { background: #f0f0f0; padding: 1px 4px; border-radius: 3px; }
"""


def _missing(what: str, command: str) -> str:
    return (f'<p class="missing">{_esc(what)} is not in the warehouse yet: run '
            f'<code>{_esc(command)}</code>.</p>')


def _figure(caption: str, chart: str, hint: str = "", wide: bool = False) -> str:
    hint_html = f'<div class="hint">{_esc(hint)}</div>' if hint else ""
    css_class = ' class="wide"' if wide else ""
    return (f"<figure{css_class}><figcaption>{_esc(caption)}</figcaption>{chart}{hint_html}"
            "</figure>")


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>"
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
            f'<div class="card"><div class="value">{_esc(value)}</div>'
            f'<div class="label">{_esc(label)}</div></div>'
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
        parts.append(f'<p class="meta">Latest run <code>{_esc(run["run_id"])}</code>, '
                     f'finished {_esc(run["finished_at"])}: {run["train_rows"] or 0:,} train '
                     f'rows, {run["prediction_rows"] or 0:,} test rows scored '
                     f'({run["cold_start_rows"] or 0:,} cold-start rows left out). '
                     f'Parameters: <code>{_esc(run["params"])}</code></p>')
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
        [[MODEL_NAMES.get(m, m), _format(by_model[m]["rmse"], ".4f"),
          _format(by_model[m]["mae"], ".4f"), _format(by_model[m]["mean_error"], "+.4f"),
          _format(by_model[m]["rmse_improvement_over_global_mean"], "%"),
          _format(by_model[m]["num_predictions"], "int")] for m in models]) + "</div></div>")

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
                  *[_format(row[key], ".4f") for key, _ in names],
                  _format(row["catalog_coverage"], "%"), _format(row["mean_popularity"],
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
    body = (f"<h1>reelhouse report</h1><p class=\"meta\">Generated {_esc(data['generated_at'])} "
            f"from <code>{_esc(data['warehouse'])}</code></p>"
            + section_data(data) + section_models(data) + section_breakdowns(data)
            + section_tuning(data) + section_history(data))
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>reelhouse report</title><style>{CSS}</style></head>"
            f"<body><main>{body}</main></body></html>\n")


def summary_lines(data: dict) -> list[str]:
    """The terminal summary: the data, ALS against the best baseline, ranking, tuning."""
    lines = []
    sparsity = (data.get("sparsity") or [None])[0]
    if sparsity:
        lines.append(f"data: {sparsity['num_ratings']:,} ratings by {sparsity['num_users']:,} "
                     f"users on {sparsity['num_movies']:,} movies "
                     f"(density {(sparsity['density'] or 0) * 100:.2f}%)")
    metrics = {row["model"]: row for row in data.get("model_metrics") or []}
    als = metrics.get("als")
    baselines = [row for m, row in metrics.items() if m != "als" and row["rmse"] is not None]
    if als and als["rmse"] is not None and baselines:
        best = min(baselines, key=lambda row: row["rmse"])
        lines.append(f"test RMSE: ALS {als['rmse']:.4f}, best baseline {best['model']} "
                     f"{best['rmse']:.4f} ({(als['rmse'] / best['rmse'] - 1) * 100:+.1f}%)")
    ranking = [row for row in data.get("ranking_metrics") or [] if row["relevance"] == "any"]
    if ranking:
        largest = max(row["k"] for row in ranking)
        at_k = {row["model"]: SimpleNamespace(**row) for row in ranking if row["k"] == largest}
        served = next((row for row in at_k.values() if row.served), None)
        if served is not None:
            lines.append(evaluate.ranking_line(served, at_k))
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
