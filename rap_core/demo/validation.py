"""Evidence that RAP's signals pick out what they claim to, on easy-VQA.

Planted language priors: a known share of test-split questions is rewritten so that the
text alone gives the answer away; CDE's D(x) should be low exactly there. Question types:
the funnel split by yes/no, colour and shape questions (and planted ones).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from rap.rap_core.demo.easy_vqa import TRAIN_HINTS, UNSEEN_HINTS, load_split, with_hint

GROUP_ORDER = ("yes/no", "color", "shape", "planted")


def roc_auc(scores, labels) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both positive and negative samples")
    ranks = pl.Series(scores).rank("average").to_numpy()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def precision_recall(predicted, labels) -> tuple[float, float]:
    """Precision and recall of boolean predictions (nan where undefined)."""
    predicted = np.asarray(predicted, dtype=bool)
    labels = np.asarray(labels, dtype=bool)
    hits = float((predicted & labels).sum())
    precision = hits / predicted.sum() if predicted.any() else float("nan")
    recall = hits / labels.sum() if labels.any() else float("nan")
    return precision, recall


def planted_pool(out_path: Path, n: int, share: float, seed: int = 0,
                 phrasing: str = "seen") -> pl.DataFrame:
    """Write an EasyR1 JSONL of n test-split questions, `share` of them rewritten to give the
    answer away (in phrasings the demo model was trained to read, or `unseen` ones); return
    the truth per source row (planted flag, question type)."""
    hints = {"seen": TRAIN_HINTS, "unseen": UNSEEN_HINTS}[phrasing]
    questions = load_split("test")
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(questions), size=min(n, len(questions)), replace=False)
    planted = rng.random(len(picked)) < share
    templates = rng.integers(len(hints), size=len(picked))
    rows, truth = [], []
    for row, (i, plant, t) in enumerate(zip(picked, planted, templates)):
        q = questions[i]
        text = with_hint(q, hints[t]) if plant else q.question
        rows.append({"problem": text, "answer": q.answer, "images": [q.image]})
        truth.append({"source_row": row, "planted": bool(plant), "question_type": q.qtype})
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return pl.DataFrame(truth)


def planted_report(decisions: pl.DataFrame, truth: pl.DataFrame, lambda_c: float) -> dict:
    """How well D(x) separates planted from untouched samples."""
    scored = decisions.join(truth, on="source_row").filter(pl.col("d").is_not_null())
    labels = scored["planted"].to_numpy()
    d = scored["d"].to_numpy()
    precision, recall = precision_recall(d <= lambda_c, labels)
    by_type = {}
    # "open": colour and shape questions, whose phrasing alone does not give the answer
    for name, types in [("yes/no", ["yes/no"]), ("color", ["color"]), ("shape", ["shape"]),
                        ("open", ["color", "shape"])]:
        part = scored.filter(pl.col("question_type").is_in(types))
        if part["planted"].any() and not part["planted"].all():
            by_type[name] = roc_auc(-part["d"].to_numpy(), part["planted"].to_numpy())
    return {"samples": scored.height, "planted": int(labels.sum()),
            "unscored": decisions.height - scored.height,
            "auroc": roc_auc(-d, labels), "auroc_by_type": by_type,
            "lambda_c": lambda_c, "precision": precision, "recall": recall,
            "mean_d_planted": float(d[labels].mean()), "mean_d_untouched": float(d[~labels].mean())}


def stage_breakdown(decisions: pl.DataFrame, group: str,
                    stages: tuple[str, ...] = ("cde", "ace")) -> pl.DataFrame:
    """The funnel per group: rows in, after each filter stage (after_cde, after_ace), selected,
    and the count of each drop reason (one column per reason)."""
    counts = decisions.group_by(group).agg(
        rows=pl.len(),
        **{f"after_{s}": pl.col("passed").list.contains(s).sum() for s in stages},
        selected=(pl.col("state") == "selected").sum(),
        mean_d=pl.col("d").mean(), mean_acc_mm=pl.col("acc_mm").mean())
    reasons = (decisions.filter(pl.col("state") != "selected")
               .group_by(group, "reason").len()
               .pivot(on="reason", index=group, values="len"))
    order = {g: i for i, g in enumerate(GROUP_ORDER)}
    return (counts.join(reasons, on=group, how="left").fill_null(0)
            .sort(pl.col(group).replace_strict(order, default=len(order))))


def with_groups(decisions: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Decisions labelled by question type, planted samples as a group of their own."""
    return decisions.join(truth, on="source_row").with_columns(
        group=pl.when(pl.col("planted")).then(pl.lit("planted"))
        .otherwise(pl.col("question_type")))
