"""The page of a threshold sweep (`rap sweep --report`): per swept threshold, the rows after
each stage and the share of each group in the selection against its values, the others held
at the run's own values, with the run's value marked; then every point as a table. One
self-contained HTML file, the style of the report page."""

from __future__ import annotations

import math
from html import escape

import polars as pl

from rap.rap_core.report import svg
from rap.rap_core.report.page import _table, document
from rap.rap_core.sweep import Sweep, shown


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)):
        return math.isclose(a, float(b), rel_tol=1e-9)
    return str(a) == str(b)


def _held(found: Sweep, name: str):
    """The value a curve over another threshold holds `name` at: the run's own when the grid
    has it, else the grid's first."""
    values = found.table[name].unique(maintain_order=True).to_list()
    return next((v for v in values if _same(v, found.current[name])), values[0])


def curves(found: Sweep, name: str) -> str:
    """The two charts over one swept threshold (none when its values are not numbers)."""
    table = found.table
    method = found.current["method"] if found.current["method"] in set(table["method"]) \
        else table["method"][0]
    rows = table.filter(pl.col("method") == method)
    for other in found.swept:
        if other != name:
            held = _held(found, other)
            rows = rows.filter(pl.Series([_same(v, held) for v in rows[other]]))
    if rows.is_empty() or not rows.schema[name].is_numeric():
        return ""
    rows = rows.sort(name)
    xs = [float(v) for v in rows[name]]
    stages = {c.removeprefix("after_").upper(): rows[c].to_list()
              for c in rows.columns if c.startswith("after_")}
    shares = {c.removeprefix("share."): rows[c].to_list()
              for c in rows.columns if c.startswith("share.")}
    held = ", ".join(f"{o} = {_held(found, o)}" for o in found.swept if o != name)
    mark = found.current[name]
    return (f'<h2>{escape(name)}</h2><p class="small">method {escape(method)}'
            f'{"; " + escape(held) if held else ""}</p><div class="charts">'
            + svg.lines(xs, stages, f"rows after each stage against {name} (of "
                        f"{rows['pool_rows'][0]:,})", name, mark)
            + svg.lines(xs, shares, f"share of each group in the selection against {name}",
                        name, mark, y_max=1.0) + "</div>")


def sweep_page(found: Sweep) -> str:
    table = found.table
    columns = [c for c in table.columns if not c.startswith("share.")]
    values = "; ".join(f"{n}: " + ", ".join(shown(v) for v in
                                            table[n].unique(maintain_order=True))
                       for n in found.swept)
    title = f"rap sweep — run {found.run_id}"
    notes = "".join(f'<p class="warn">missing facts at some points: {escape(n)}</p>'
                    for n in found.notes)
    return document(title, f"""<p class="lead">{table.height} points selected from the
stored facts of run <b>{escape(found.run_id)}</b> (nothing written to the store); swept
{escape(values)}. The dashed line is the run's own value.</p>{notes}
{"".join(curves(found, n) for n in found.swept)}
<h2>Every point</h2>{_table(table.select(columns).to_dicts(), columns)}""")
