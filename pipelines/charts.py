"""An SVG chart library for the HTML report: bars, grouped bars, horizontal bars, lines and a
heat map, each one `<svg>` string with its own `<title>` and tooltips. A few hundred lines
instead of a plotting dependency: crisp at any zoom, a few kilobytes each, nothing to fetch.
The look (fonts, grid, line widths) is the report's stylesheet (report.css): the charts only
name their parts by class.
"""

from __future__ import annotations

import html
import math

# A series named for a model (or a metric) has the same label and colour in every chart; the
# report's tables use the same labels.
MODEL_NAMES = {"als": "ALS", "global_mean": "global mean", "movie_mean": "movie mean",
               "user_movie_bias": "user + movie bias", "implicit_als": "implicit ALS",
               "explicit_als": "explicit ALS", "most_rated": "most rated",
               "top_rated": "top rated (Bayesian)", "rmse": "RMSE", "mae": "MAE"}
# Okabe-Ito colours: distinguishable with every common colour-vision deficiency.
MODEL_COLOURS = {"als": "#0072B2", "implicit_als": "#0072B2", "explicit_als": "#CC79A7",
                 "most_rated": "#E69F00", "top_rated": "#D55E00", "global_mean": "#999999",
                 "movie_mean": "#56B4E9", "user_movie_bias": "#009E73"}
OTHER_COLOURS = ("#4e79a7", "#f28e2b", "#76b7b2", "#b07aa1")


def esc(text) -> str:
    """Text made safe inside an element or a quoted attribute."""
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


def format_value(value, fmt: str) -> str:
    """A number as the charts and tables show it: "%" a percentage, "int" with thousands
    separators, else a format spec; None is "n/a"."""
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
            f'{height}" width="{width}" height="{height}" role="img" aria-label="{esc(title)}">'
            f'<title>{esc(title)}</title>' + "".join(body) + "</svg>")


def _legend(names: list[str], x: float, y: float) -> list[str]:
    parts, offset = [], 0.0
    for index, name in enumerate(names):
        label = MODEL_NAMES.get(name, name)
        parts.append(f'<rect x="{x + offset:.1f}" y="{y - 9}" width="11" height="11" '
                     f'fill="{_colour(name, index)}"/>'
                     f'<text x="{x + offset + 15:.1f}" y="{y}" class="legend">{esc(label)}'
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
                f'class="category-turned">{esc(text)}</text>')
    return f'<text x="{x:.1f}" y="{y}" class="category">{esc(text)}</text>'


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
            tip = f"{MODEL_NAMES.get(name, name)}, {category}: {format_value(value, fmt)}"
            body.append(f'<rect class="bar" x="{x:.1f}" y="{min(y0, y1):.1f}" '
                        f'width="{bar_w - 2:.1f}" height="{abs(y0 - y1):.1f}" '
                        f'fill="{_colour(name, s_index)}"><title>{esc(tip)}</title></rect>')
            if show_values:
                body.append(f'<text x="{x + (bar_w - 2) / 2:.1f}" y="{min(y0, y1) - 4:.1f}" '
                            f'class="value">{esc(format_value(value, fmt))}</text>')
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
                    f'class="tick-x">{esc(_tick_label(tick, ticks))}</text>')
    body.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" class="axis-label" '
                f'text-anchor="middle">{esc(x_label)}</text>')
    for c_index, category in enumerate(categories):
        y_top = top + row_h * c_index + 3
        body.append(f'<text x="{left - 6}" y="{y_top + row_h / 2 + 1:.1f}" class="hcategory">'
                    f'{esc(category)}</text>')
        for s_index, (name, vals) in enumerate(series):
            value = vals[c_index]
            if value is None:
                continue
            y = y_top + 10 * s_index
            tip = f"{MODEL_NAMES.get(name, name)}, {category}: {format_value(value, fmt)}"
            body.append(f'<rect class="bar" x="{left}" y="{y:.1f}" '
                        f'width="{plot_w * value / high:.1f}" height="9" '
                        f'fill="{_colour(name, s_index)}"><title>{esc(tip)}</title></rect>'
                        f'<text x="{left + plot_w * value / high + 3:.1f}" y="{y + 8:.1f}" '
                        f'class="hvalue">{esc(format_value(value, fmt))}</text>')
    if len(series) > 1:
        body += _legend([name for name, _ in series], left, 16)
    return _svg(width, height, title, body)


def _y_axis(ticks, y_of, left, plot_w, percent, label, top, plot_h) -> list[str]:
    parts = []
    for tick in ticks:
        y = y_of(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                     f'class="grid"/><text x="{left - 6}" y="{y + 4:.1f}" class="tick-y">'
                     f'{esc(_tick_label(tick, ticks, percent))}</text>')
    parts.append(f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" '
                 f'class="axis-label" text-anchor="middle">{esc(label)}</text>')
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
                f'text-anchor="middle">{esc(x_label)}</text>')
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
                            f'fill="{colour}"><title>{esc(MODEL_NAMES.get(name, name))}: '
                            f'{y:.4f}</title></circle>')
    for n, note in enumerate(notes):
        body.append(f'<text x="{left + plot_w - 4}" y="{top + plot_h - 10 - 16 * n}" '
                    f'class="note">{esc(note)}</text>')
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
            f'text-anchor="middle">{esc(col_title)}</text>',
            f'<text transform="translate(14 {top + cell_h * len(row_labels) / 2:.1f}) '
            f'rotate(-90)" class="axis-label" text-anchor="middle">{esc(row_title)}</text>']
    for c, label in enumerate(col_labels):
        body.append(f'<text x="{left + cell_w * (c + 0.5):.1f}" y="{top - 8}" '
                    f'class="category">{esc(label)}</text>')
    for r, label in enumerate(row_labels):
        y = top + cell_h * r
        body.append(f'<text x="{left - 8}" y="{y + cell_h / 2 + 4:.1f}" class="tick-y">'
                    f'{esc(label)}</text>')
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
                        f'fill="{fill}"{outline}><title>{esc(row_title)} {esc(label)}, '
                        f'{esc(col_title)} {esc(col_labels[c])}: {format_value(value, fmt)}'
                        f'</title></rect><text x="{x + (cell_w - 2) / 2:.1f}" '
                        f'y="{y + cell_h / 2 + 4:.1f}" class="cell" style="fill: {text_fill}">'
                        f'{esc(format_value(value, fmt))}</text>')
    body.append(f'<text x="{left}" y="{height - 12}" class="note-left">dark = lower validation '
                'RMSE (better); red outline = best</text>')
    return _svg(width, height, title, body)

