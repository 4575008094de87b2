"""Inline SVG charts for the report page (no script, no library, nothing fetched)."""

from __future__ import annotations

from html import escape

import numpy as np

SELECTED, DROPPED, LINE, POOL = "#2e7d32", "#b0b7c3", "#c62828", "#5c7cba"


def histogram(selected: np.ndarray, dropped: np.ndarray, title: str,
              thresholds: list[tuple[str, float]] = (), bins: int = 24,
              lo: float | None = None, hi: float | None = None) -> str:
    """Stacked counts of selected and dropped rows per bin, with a dashed line per threshold."""
    both = np.concatenate([selected, dropped])
    if both.size == 0:
        return f'<figure class="chart"><figcaption>{escape(title)}: no values</figcaption></figure>'
    lo = float(np.min(both)) if lo is None else lo
    hi = float(np.max(both)) if hi is None else hi
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    kept = np.histogram(np.clip(selected, lo, hi), edges)[0]
    gone = np.histogram(np.clip(dropped, lo, hi), edges)[0]
    width, height, pad_l, pad_b, pad_t = 360, 170, 34, 26, 8
    plot_w, plot_h = width - pad_l - 8, height - pad_b - pad_t
    top = max(int((kept + gone).max()), 1)

    def x(value: float) -> float:
        return pad_l + (value - lo) / (hi - lo) * plot_w

    def y(count: float) -> float:
        return pad_t + plot_h - count / top * plot_h

    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="{escape(title)}">']
    bar = plot_w / bins
    for i in range(bins):
        left = pad_l + i * bar
        if gone[i]:
            parts.append(f'<rect x="{left:.1f}" y="{y(gone[i] + kept[i]):.1f}" '
                         f'width="{bar - 1:.1f}" height="{y(kept[i]) - y(gone[i] + kept[i]):.1f}"'
                         f' fill="{DROPPED}"><title>{gone[i]} dropped in [{edges[i]:.3g}, '
                         f'{edges[i + 1]:.3g})</title></rect>')
        if kept[i]:
            parts.append(f'<rect x="{left:.1f}" y="{y(kept[i]):.1f}" width="{bar - 1:.1f}" '
                         f'height="{y(0) - y(kept[i]):.1f}" fill="{SELECTED}"><title>{kept[i]} '
                         f'selected in [{edges[i]:.3g}, {edges[i + 1]:.3g})</title></rect>')
    parts.append(f'<line x1="{pad_l}" y1="{y(0):.1f}" x2="{width - 8}" y2="{y(0):.1f}" '
                 'stroke="#555"/>')
    for value, anchor in ((lo, "start"), (hi, "end")):
        parts.append(f'<text x="{x(value):.1f}" y="{height - 8}" font-size="10" '
                     f'text-anchor="{anchor}">{value:.3g}</text>')
    parts.append(f'<text x="{pad_l - 4}" y="{pad_t + 8}" font-size="10" text-anchor="end">'
                 f'{top}</text>')
    for name, value in thresholds:
        if value is None or not np.isfinite(value):
            continue
        inside = lo <= value <= hi
        at = x(min(max(value, lo), hi))
        label = f"{name} = {value:.3g}" + ("" if inside else " (off the axis)")
        parts.append(f'<line x1="{at:.1f}" y1="{pad_t}" x2="{at:.1f}" y2="{y(0):.1f}" '
                     f'stroke="{LINE}" stroke-dasharray="4 3" stroke-width="1.5"/>')
        right = at > pad_l + plot_w / 2  # the label on the side with room
        parts.append(f'<text x="{at - 3 if right else at + 3:.1f}" y="{pad_t + 10}" '
                     f'font-size="10" text-anchor="{"end" if right else "start"}" '
                     f'fill="{LINE}">{escape(label)}</text>')
    parts.append("</svg>")
    legend = (f'<span class="key" style="background:{SELECTED}"></span>selected '
              f'{int(kept.sum())} <span class="key" style="background:{DROPPED}"></span>dropped '
              f'{int(gone.sum())}')
    return (f'<figure class="chart"><figcaption>{escape(title)}</figcaption>{"".join(parts)}'
            f'<div class="legend">{legend}</div></figure>')


def funnel(steps: list[tuple[str, int]]) -> str:
    """One horizontal bar per step of the funnel, scaled to the first."""
    if not steps:
        return ""
    width, row = 520, 24
    first = max(steps[0][1], 1)
    parts = [f'<svg viewBox="0 0 {width} {row * len(steps) + 4}" width="{width}" '
             f'height="{row * len(steps) + 4}" role="img" aria-label="funnel">']
    for i, (name, n) in enumerate(steps):
        bar = max(n / first * (width - 250), 1)
        parts.append(f'<text x="0" y="{i * row + 16}" font-size="12">{escape(name)}</text>'
                     f'<rect x="130" y="{i * row + 4}" width="{bar:.1f}" height="{row - 8}" '
                     f'fill="{SELECTED if i == len(steps) - 1 else "#5c7cba"}"/>'
                     f'<text x="{136 + bar:.1f}" y="{i * row + 16}" font-size="12">{n:,}</text>')
    parts.append("</svg>")
    return "".join(parts)


def composition(rows: list[dict], group_by: str) -> str:
    """Per group, its share of the pool and of the selection as two bars (rows: a run's
    coverage table, largest group first)."""
    if not rows:
        return ""
    width, row, label_w, bar_w = 560, 34, 150, 300
    top = max(max(r["pool_share"] or 0, r["selected_share"] or 0) for r in rows) or 1.0
    height = row * len(rows) + 6
    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="pool and selected share by {escape(group_by)}">']
    for i, r in enumerate(rows):
        y0 = i * row + 3
        name = r["group"] if len(r["group"]) <= 22 else r["group"][:21] + "…"
        parts.append(f'<text x="0" y="{y0 + 18}" font-size="12"><title>{escape(r["group"])}'
                     f'</title>{escape(name)}</text>')
        for j, (key, color, what) in enumerate((("pool_share", POOL, "pool"),
                                                ("selected_share", SELECTED, "selected"))):
            share = r[key] or 0.0
            n = r["pool_rows" if key == "pool_share" else "selected_rows"]
            length = max(share / top * bar_w, 1)
            y = y0 + j * 13
            parts.append(f'<rect x="{label_w}" y="{y}" width="{length:.1f}" height="11" '
                         f'fill="{color}"><title>{escape(r["group"])}: {n:,} {what} rows '
                         f'({share:.1%})</title></rect><text x="{label_w + length + 4:.1f}" '
                         f'y="{y + 10}" font-size="10">{share:.0%}</text>')
    parts.append("</svg>")
    legend = (f'<span class="key" style="background:{POOL}"></span>pool '
              f'<span class="key" style="background:{SELECTED}"></span>selected')
    return (f'<figure class="chart"><figcaption>share of the pool and of the selection, by '
            f'{escape(group_by)}</figcaption>{"".join(parts)}<div class="legend">{legend}'
            '</div></figure>')


PALETTE = ("#5c7cba", "#2e7d32", "#c77c02", "#8e44ad", "#c62828", "#00838f", "#6d4c41",
           "#7cb342", "#d81b60", "#455a64", "#f4511e", "#3949ab", "#9e9d24")


def lines(xs: list[float], series: dict[str, list[float | None]], title: str, x_label: str,
          mark: float | None = None, y_max: float | None = None) -> str:
    """One line per series over xs (a log axis when xs span more than 100x and are all
    positive), with a dashed line at `mark` (the run's own value)."""
    points = [(x, y) for ys in series.values() for x, y in zip(xs, ys) if y is not None]
    if not xs or not points:
        return f'<figure class="chart"><figcaption>{escape(title)}: no values</figcaption></figure>'
    log = min(xs) > 0 and max(xs) / min(xs) > 100
    scale = (lambda v: float(np.log10(v))) if log else float
    lo, hi = scale(min(xs)), scale(max(xs))
    hi = hi if hi > lo else lo + 1
    top = y_max if y_max is not None else max(y for _, y in points) or 1.0
    width, height, pad_l, pad_b, pad_t, pad_r = 380, 190, 40, 28, 10, 10
    plot_w, plot_h = width - pad_l - pad_r, height - pad_b - pad_t

    def x(v: float) -> float:
        return pad_l + (scale(v) - lo) / (hi - lo) * plot_w

    def y(v: float) -> float:
        return pad_t + plot_h - v / top * plot_h

    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<line x1="{pad_l}" y1="{y(0):.1f}" x2="{width - pad_r}" y2="{y(0):.1f}" '
             'stroke="#555"/>',
             f'<text x="{pad_l - 4}" y="{pad_t + 8}" font-size="10" text-anchor="end">'
             f'{f"{top:,.0f}" if top >= 10 else f"{top:.3g}"}</text>']
    for v, anchor in ((min(xs), "start"), (max(xs), "end")):
        parts.append(f'<text x="{x(v):.1f}" y="{height - 14}" font-size="10" '
                     f'text-anchor="{anchor}">{v:g}</text>')
    parts.append(f'<text x="{pad_l + plot_w / 2:.1f}" y="{height - 2}" font-size="10" '
                 f'text-anchor="middle">{escape(x_label)}{" (log axis)" if log else ""}</text>')
    legend = []
    for i, (name, ys) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        kept = [(x(a), y(b)) for a, b in zip(xs, ys) if b is not None]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in kept)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                     f'stroke-width="1.8"><title>{escape(name)}</title></polyline>')
        parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.4" fill="{color}"><title>'
                  f'{escape(name)} at {a:g}: {b:.3g}</title></circle>'
                  for (px, py), (a, b) in zip(kept, [(a, b) for a, b in zip(xs, ys)
                                                     if b is not None])]
        legend.append(f'<span class="key" style="background:{color}"></span>{escape(name)}')
    if mark is not None and (mark > 0 or not log) and min(xs) <= mark <= max(xs):
        at = x(mark)
        right = at > pad_l + plot_w / 2  # the label on the side with room
        parts.append(f'<line x1="{at:.1f}" y1="{pad_t}" x2="{at:.1f}" y2="{y(0):.1f}" '
                     f'stroke="{LINE}" stroke-dasharray="4 3" stroke-width="1.5"/>'
                     f'<text x="{at - 3 if right else at + 3:.1f}" y="{pad_t + 10}" '
                     f'font-size="10" text-anchor="{"end" if right else "start"}" '
                     f'fill="{LINE}">the run: {mark:g}</text>')
    parts.append("</svg>")
    return (f'<figure class="chart"><figcaption>{escape(title)}</figcaption>{"".join(parts)}'
            f'<div class="legend">{" ".join(legend)}</div></figure>')
