"""The report page of a selection run: one self-contained HTML file (styles, script, charts and
thumbnails inline; nothing fetched), built from the store alone.

Top: the run (method, keys, parameters), the funnel, every (state, stage, reason) count, the
composition per group (pool share against selected share, under-represented groups flagged),
and the distributions of D, acc_mm, acc_text and psi split into selected and dropped rows with
the thresholds drawn. Then one section per (state, stage, reason) with a seeded sample of
cards: thumbnails, question, reference answer, scores, and the first response with and
without the image with their grades. A filter box narrows the cards by text and reason.
"""

from __future__ import annotations

import base64
import io
from html import escape

import numpy as np
import polars as pl

from rap.rap_core.charts import axis_title, split_scores, threshold_cuts
from rap.rap_core.estimators.stored import reason_label
from rap.rap_core.params import dotted
from rap.rap_core.report import svg
from rap.rap_core.store.records import SelectionRun

GENERATOR = "rap report"
THUMB_PX = 160  # longest side of an embedded thumbnail
MAX_THUMBS = 4  # per card
TEXT_CHARS = 600  # question / response shown per card


def thumbnail(path: str) -> str | None:
    """A small JPEG of the image as a data URL, or None when it cannot be read."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((THUMB_PX, THUMB_PX))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=75)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, float) and value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4):
        return f"{value:.2e}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _short(text: str | None, limit: int = TEXT_CHARS) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit] + " …"


def group_key(row: dict) -> str:
    return " · ".join([row["state"], row["stage"], reason_label(row)])


def _response(label: str, text: str | None, correct: bool | None,
              missing: str = "not run") -> str:
    if text is None:
        return f'<div class="resp none"><span class="tag">{label}</span> {missing}</div>'
    mark, cls = ("✓", "ok") if correct else ("✗", "bad")
    return (f'<div class="resp {cls}"><span class="tag">{label} {mark}</span> '
            f'{escape(_short(text, 300))}</div>')


def card(row: dict, extra: str = "") -> str:
    """One sample's card (row: a report_cards row)."""
    images = []
    for path in (row.get("image_paths") or [])[:MAX_THUMBS]:
        url = thumbnail(path)
        images.append(f'<img src="{url}" alt="image of row {row["source_row"]}">' if url else
                      f'<div class="missing">image not readable:<br>{escape(path)}</div>')
    more = len(row.get("image_paths") or []) - MAX_THUMBS
    if more > 0:
        images.append(f'<div class="missing">+{more} more</div>')
    question = row.get("question")
    text = " ".join(str(row.get(k) or "") for k in ("question", "answer", "reason", "stage",
                                                    "state", "detail", "sample_id",
                                                    "group_name"))
    scores = " · ".join(f"{name} {_fmt(row.get(key))}" for name, key in (
        ("acc_mm", "acc_mm"), ("acc_text", "acc_text"), ("D", "d"), ("ψ", "psi"),
        ("difficulty", "difficulty")))
    shown = escape(_short(question)) if question else "<i>(no sample)</i>"
    body = [f'<div class="q">{shown}</div>']
    if row.get("answer") is not None:
        body.append(f'<div class="ref">reference answer: <b>{escape(str(row["answer"]))}</b></div>')
    body.append(f'<div class="scores">{scores}</div>')
    if row.get("sample_id"):
        body.append(_response("with image", row.get("mm_response"), row.get("mm_correct")))
        body.append(_response("without image", row.get("text_response"), row.get("text_correct"),
                              "not run (no right answer with the image: none could change "
                              "its decision)" if row.get("mm_response") is not None
                              else "not run"))
    if row.get("detail"):
        body.append(f'<div class="detail">{escape(_short(row["detail"], 300))}</div>')
    group = row.get("group_name")
    body.append(f'<div class="meta">row {row["source_row"]} · sample '
                f'{escape(str(row.get("sample_id") or "–"))}'
                f'{" · group " + escape(group) if group else ""}</div>{extra}')
    return (f'<article class="card" data-text="{escape(text.lower())}">'
            f'<div class="thumbs">{"".join(images)}</div><div class="body">{"".join(body)}'
            f'</div></article>')


def distributions(run: SelectionRun, scores: pl.DataFrame) -> str:
    """D, acc_mm, acc_text and log10 psi of every row, selected against dropped, with the
    run's thresholds (its stored parameters; the threshold columns for runs of older rap)."""
    cuts = threshold_cuts(run.method, {**run.model_dump(),
                                       **(run.parameters or {}).get("thresholds", {})})
    charts = []
    for column, title, lo, hi in (("d", "D = acc_mm − acc_text", -1.0, 1.0),
                                  ("acc_mm", "acc_mm (with the image)", 0.0, 1.0),
                                  ("acc_text", "acc_text (without it)", 0.0, 1.0),
                                  ("psi", "ψ (ACE)", None, None)):
        selected, dropped = split_scores(scores, column)
        charts.append(svg.histogram(selected, dropped, axis_title(column, title),
                                    cuts.get(column, []), lo=lo, hi=hi))
    return "".join(charts)


def composition(run: SelectionRun, coverage: pl.DataFrame) -> str:
    """The run's composition per group: the chart, the under-represented groups and, with a
    coverage floor, each group's floor and shortfall."""
    from rap.rap_core.estimators.coverage import largest, under_represented
    th = run.thresholds
    group_by, floor = th.get("group_by", "group"), th.get("coverage_floor", 0.0)
    shown = largest(coverage, 12)
    low = under_represented(coverage, th.get("coverage_warn", 0.6))
    notes = [f"under-represented: {x}" for x in low]
    if floor:
        notes.append(f"coverage floor {floor:g}: each group keeps at least {floor:g} × its pool "
                     "share of the selection (column floor_rows; shortfall: too few solvable "
                     "rejects)")
    columns = ["group", "pool_rows", "pool_share", "selected_rows", "selected_share", "ratio",
               *(["floor_rows", "shortfall"] if floor else [])]
    return (f'<h2>Composition by {escape(group_by)}</h2><div class="cols"><div>'
            f'{svg.composition(shown.to_dicts(), group_by)}</div><div>'
            + "".join(f'<p class="warn">{escape(n)}</p>' for n in notes)
            + f'{_table(shown.to_dicts(), columns)}</div></div>')


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(_fmt(r.get(c)))}</td>" for c in columns)
                   + "</tr>" for r in rows)
    return f'<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def groups_html(cards: pl.DataFrame, counts: dict[str, int], key=group_key,
                card_of=card) -> str:
    """One section per group of cards (key: a card's group), in the order of counts."""
    by_group: dict[str, list[dict]] = {}
    for row in cards.iter_rows(named=True):
        by_group.setdefault(key(row), []).append(row)
    sections = []
    for group, n in counts.items():
        rows = by_group.get(group, [])
        sections.append(
            f'<section class="group" data-group="{escape(group)}"><h3>{escape(group)} '
            f'<small>{n:,} row{"s" if n != 1 else ""} · '
            f'<span class="shown">{len(rows)}</span> of {len(rows)} '
            f'shown</small></h3><div class="grid">{"".join(card_of(r) for r in rows)}</div>'
            '</section>')
    return "".join(sections)


def document(title: str, body: str) -> str:
    """A whole self-contained page: the report style, the title, then body."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="generator" content="{GENERATOR}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{STYLE}</style></head>
<body><h1>{escape(title)}</h1>
{body}
</body></html>
"""


def page(title: str, header: str, counts: dict[str, int], sections: str) -> str:
    options = "".join(f'<option value="{escape(k)}">{escape(k)} ({n:,})</option>'
                      for k, n in counts.items())
    return document(title, f"""{header}
<h2>Samples</h2>
<div class="filters">
<input id="filter" type="search" placeholder="filter by question, answer or reason">
<select id="reason"><option value="">every reason</option>{options}</select>
<span><b id="count">0</b> cards shown</span></div>
{sections}
<script>{SCRIPT}</script>""")


def run_report(store, run_id: str | None, per_reason: int = 8, seed: int = 0) -> tuple[str, dict]:
    """The page of one run (the latest when run_id is None), and figures about it."""
    from rap.rap_core.estimators.stored import run_coverage, run_funnel
    run = store.selection_run(run_id, "report")
    funnel = run_funnel(store, run.run_id)
    coverage = run_coverage(store, run)
    reasons = store.query("queries/reasons_of_run", run_id=run.run_id)
    scores = store.query("queries/report_scores", run_id=run.run_id)
    cards = store.query("queries/report_cards", run_id=run.run_id, per_reason=per_reason,
                        seed=seed)
    counts = {group_key(r): int(r["n"]) for r in reasons.sort(
        ["state", "stage", "n"], descending=[True, False, True]).iter_rows(named=True)}
    steps = [("pool rows", funnel["pool_rows"])] + [
        (k.removeprefix("after_").upper(), v) for k, v in funnel.items()
        if k.startswith("after_")]
    params = run.parameters or {}
    keys = {k: getattr(run, k) for k in ("pool_id", "model_key", "settings_key", "ace_key")}
    parameter_rows = [{"name": k, "value": v} for k, v in {**dotted(keys),
                                                              **dotted(params)}.items()]
    header = (
        f'<p class="lead">{escape(run.mode)} run <b>{escape(run.run_id)}</b>, method '
        f'<b>{escape(run.method)}</b> ({" → ".join(s.upper() for s in run.stages)}'
        f'{" → " + run.rebalancer.upper() if run.rebalancer else ""}'
        f'{" → COVERAGE" if run.thresholds.get("coverage_floor") else ""}), '
        f'{funnel["pool_rows"]:,} rows → <b>{funnel["selected"]:,} selected</b>'
        f'{", base run " + escape(run.base_run) if run.base_run else ""}; made '
        f'{escape(str(run.created_at))[:19]} UTC.</p>'
        f'<div class="cols"><div><h2>Funnel</h2>{svg.funnel(steps)}'
        f'<p class="small">errors {funnel["errors"]:,} · duplicates {funnel["duplicates"]:,}'
        + "".join(f" · re-admitted from {k.removeprefix('readmitted_from_').upper()} {v:,}"
                  for k, v in funnel.items() if k.startswith("readmitted_from_"))
        + f'</p></div><div><h2>Every row, by outcome</h2>'
        f'{_table(reasons.to_dicts(), ["state", "stage", "reason", "readmitted_from", "n"])}'
        f'</div></div>{composition(run, coverage)}<h2>Distributions</h2>'
        f'<div class="charts">{distributions(run, scores)}'
        f'</div><details><summary>Parameters and keys</summary>'
        f'{_table(parameter_rows, ["name", "value"])}'
        f'</details>')
    html = page(f"rap report — run {run.run_id}", header, counts, groups_html(cards, counts))
    return html, {"run_id": run.run_id, "cards": cards.height, "groups": len(counts)}


def compare_report(store, run_a: str, run_b: str, per_group: int = 8,
                   seed: int = 0) -> tuple[str, dict]:
    """Two runs on one pool side by side: what each selected that the other did not."""
    from rap.rap_core.compare import compare_runs
    found = compare_runs(store, run_a, run_b)
    a, b = found["a"], found["b"]
    rows = store.query("queries/report_compare_cards", run_a=a.run_id, run_b=b.run_id,
                       per_group=per_group, seed=seed)
    names = {"a_only": f"selected by {a.run_id} ({a.method}) only",
             "b_only": f"selected by {b.run_id} ({b.method}) only",
             "both": "selected by both"}
    totals = store.query("queries/report_compare_counts", run_a=a.run_id, run_b=b.run_id)
    counts = {names[r["side"]]: int(r["n"]) for r in totals.iter_rows(named=True)}

    def card_of(row: dict) -> str:
        other = (f'<div class="detail">{escape(a.run_id)}: {escape(row["a_state"])} · '
                 f'{escape(row["a_reason"])}<br>{escape(b.run_id)}: {escape(row["b_state"])} · '
                 f'{escape(row["b_reason"])}</div>')
        return card({**row, "state": row["a_state"], "stage": row["a_stage"],
                     "reason": row["a_reason"], "detail": None}, other)

    o = found["overlap"]
    header = (f'<p class="lead">Runs <b>{escape(a.run_id)}</b> ({escape(a.method)}, '
              f'{o.get("n_a", 0):,} selected) and <b>{escape(b.run_id)}</b> '
              f'({escape(b.method)}, {o.get("n_b", 0):,} selected) on pool '
              f'{escape(a.pool_id)}: both selected {o.get("n_both", 0):,}.</p>'
              f'{_table(found["crosstab"].to_dicts(), found["crosstab"].columns)}')
    html = page(f"rap compare — {a.run_id} vs {b.run_id}", header, counts,
                groups_html(rows, counts, lambda row: names[row["side"]], card_of))
    return html, {"cards": rows.height, "groups": len(counts)}


STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2433;background:#fafbfc}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:22px 0 8px}
h3{font-size:15px;margin:18px 0 8px}h3 small{font-weight:normal;color:#667}
.lead{font-size:15px}.small{color:#556;font-size:12px}
.cols{display:flex;flex-wrap:wrap;gap:32px}.charts{display:flex;flex-wrap:wrap;gap:18px}
.chart{margin:0;background:#fff;border:1px solid #e1e4ea;border-radius:6px;padding:8px}
.chart figcaption{font-weight:600;font-size:13px}.legend{font-size:12px;color:#445}
.key{display:inline-block;width:10px;height:10px;margin:0 4px 0 8px;border-radius:2px}
table{border-collapse:collapse;font-size:12.5px;background:#fff}
td,th{border:1px solid #e1e4ea;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f6}details{margin:16px 0}summary{cursor:pointer;font-weight:600}
.filters{position:sticky;top:0;background:#fafbfc;padding:8px 0;z-index:1;display:flex;gap:10px;
 align-items:center;border-bottom:1px solid #e1e4ea}
.filters input{flex:1;max-width:420px;padding:6px 8px}.filters select{padding:5px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:12px}
.card{display:flex;gap:10px;background:#fff;border:1px solid #e1e4ea;border-radius:6px;padding:10px}
.thumbs{display:flex;flex-direction:column;gap:4px;flex:0 0 auto}
.thumbs img{width:96px;height:auto;border-radius:4px;border:1px solid #ddd}
.missing{width:96px;font-size:11px;color:#a33;word-break:break-all;border:1px dashed #c99;
 padding:4px;border-radius:4px}
.body{min-width:0;flex:1}.q{font-weight:600;margin-bottom:4px}.ref{font-size:13px}
.scores{font:12px ui-monospace,monospace;color:#334;margin:4px 0}
.resp{font-size:12.5px;margin:3px 0;padding:3px 6px;border-radius:4px;background:#f4f6f8}
.resp.ok{border-left:3px solid #2e7d32}.resp.bad{border-left:3px solid #c62828}
.resp.none{color:#889}.tag{font-weight:600;font-size:11.5px;color:#445}
.detail{font-size:12px;color:#445;margin-top:4px}.warn{color:#a04000;font-weight:600}
.meta{font-size:11px;color:#889;margin-top:4px}
"""

SCRIPT = """
(function(){
  const text=document.getElementById('filter'), reason=document.getElementById('reason');
  function apply(){
    const t=text.value.trim().toLowerCase(), g=reason.value; let total=0;
    document.querySelectorAll('section.group').forEach(function(s){
      const on=!g||s.dataset.group===g; let n=0;
      s.querySelectorAll('.card').forEach(function(c){
        const show=on&&(!t||c.dataset.text.indexOf(t)>=0); c.hidden=!show; if(show){n++;}
      });
      s.hidden=!on||(t!==''&&n===0); s.querySelector('.shown').textContent=n; total+=n;
    });
    document.getElementById('count').textContent=total;
  }
  text.addEventListener('input',apply); reason.addEventListener('change',apply); apply();
})();
"""


