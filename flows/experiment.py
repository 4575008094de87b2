"""`rap experiment`: a miniature of the paper's claim on easy-VQA.

Per seed: train a deliberately weak base model on a small share of the training split;
select from a pool drawn from the rest with RAP (the `rap` flow, base model as the model);
continue training copies of the base model on (a) the RAP subset, (b) a random subset of
the same size, (c) the whole pool, each for the same number of epochs (optimiser steps
proportional to the subset size); evaluate each on the same test questions. Supervised
fine-tuning stands in for the paper's RL. An experiment, run by command, not in CI.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from rap.rap_core.demo.model import (Recipe, greedy_accuracy, new_model, save_model,
                                 training_examples, vision_targets)
from rap.rap_core.demo.easy_vqa import (Question, image_facts, load_split, prior_balanced,
                                    response)
from rap.rap_core.params import DataSpec, ModelSpec, RapParams, RolloutSettings
from rap.rap_core.settings import Settings
from rap.rap_core.store import open_store
from rap.rap_core.demo.training import Example, pretrain_vision, train

ARMS = ("rap", "random", "full")


@dataclass(frozen=True)
class ExperimentConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    base_questions: int = 2000  # share of the train split the base model sees
    base_vision_steps: int = 300
    base_steps: int = 150
    pool_size: int = 3000  # drawn from the rest of the train split
    epochs: float = 3.0  # per arm: steps = ceil(epochs * subset size / batch size)
    batch_size: int = 32
    lr: float = 1e-3
    test_questions: int = 1000


@dataclass(frozen=True)
class Split:
    base: list[Question]
    pool: list[Question]
    test: list[Question]
    calibration: list[Question] = ()  # train split, outside base and pool (budget tuning)
    balanced: list[Question] = ()  # test split, outside `test`, yes/no prior-balanced


def split_questions(seed: int, base: int, pool: int, test: int, calibration: int = 0,
                    balanced: int = 0) -> Split:
    """Base questions, a pool and calibration questions, disjoint (the train split), and the
    test questions (the test split: other images, other questions), drawn by seed; with
    `balanced`, that many other test-split questions made prior-balanced (easy_vqa.
    prior_balanced: fewer remain, the yes/no majority of each wording class is cut)."""
    train_q = load_split("train")
    order = np.random.default_rng(seed).permutation(len(train_q))
    test_all = load_split("test")
    picked = np.random.default_rng(1000 + seed).choice(
        len(test_all), size=min(test, len(test_all)), replace=False)
    rest = np.setdiff1d(np.arange(len(test_all)), picked)
    other = np.random.default_rng(2000 + seed).choice(
        rest, size=min(balanced, len(rest)), replace=False)
    return Split([train_q[i] for i in order[:base]],
                 [train_q[i] for i in order[base:base + pool]],
                 [test_all[i] for i in sorted(picked)],
                 [train_q[i] for i in order[base + pool:base + pool + calibration]],
                 prior_balanced([test_all[i] for i in sorted(other)], seed))


def train_base_model(questions: list[Question], seed: int, vision_steps: int, steps: int,
                     lr: float = 1e-3, batch_size: int = 32):
    """A base model by the demo recipe's method on `questions`: (model, processor, stats)."""
    recipe = Recipe(seed=seed, lr=lr, batch_size=batch_size)
    model, processor = new_model(recipe)
    pretrain_vision(model, processor, *vision_targets(questions), steps=vision_steps,
                    batch_size=batch_size, lr=lr, seed=seed)
    stats = train(model, processor, training_examples(questions, recipe, seed), lr=lr,
                  steps=steps, batch_size=batch_size, seed=seed)
    return model, processor, stats


def pool_file(folder: Path, questions: list[Question]) -> str:
    """The pool as a JSONL file rap selects from (question types as its groups)."""
    path = folder / "pool.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"problem": q.question, "answer": q.answer,
                                        "images": [q.image], "question_type": q.qtype})
                            + "\n" for q in questions))
    return str(path)


def _select(settings: Settings, seed: int, pool, base_dir) -> tuple[list[int], dict]:
    """The source rows RAP selects from the pool with the base model."""
    from rap.flows.rap import run_flow
    folder = settings.data_dir / "experiments" / f"seed{seed}"
    params = RapParams(data=DataSpec(path=pool_file(folder, pool)),
                       model=ModelSpec(path=str(base_dir)), rollout=RolloutSettings(seed=seed),
                       batch_size=16, export=False)
    summary = run_flow(params)
    with open_store(settings.duckdb_path, read_only=True) as store:
        decisions = store.query("queries/decisions_of_run", run_id=summary["run_id"])
    selected = decisions.filter(pl.col("state") == "selected")["source_row"].to_list()
    return selected, summary


def run_seed(settings: Settings, cfg: ExperimentConfig, seed: int, log=print) -> list[dict]:
    """One seed of the experiment: one result row per arm (and the base model)."""
    data = split_questions(seed, cfg.base_questions, cfg.pool_size, cfg.test_questions)
    base_q, pool, test = data.base, data.pool, data.test
    model, processor, stats = train_base_model(base_q, seed, cfg.base_vision_steps,
                                               cfg.base_steps, cfg.lr, cfg.batch_size)
    base_dir = settings.data_dir / "experiments" / f"seed{seed}" / "base"
    save_model(model, processor, base_dir, {"experiment": asdict(cfg), "seed": seed})
    rows = [{"seed": seed, "arm": "base", "train_samples": len(base_q), "steps": stats.steps,
             "train_seconds": stats.seconds,
             "accuracy": greedy_accuracy(model, processor, test, True)}]
    log(f"seed {seed}: base model {rows[0]['accuracy']:.3f} on {len(test)} test questions")

    selected, summary = _select(settings, seed, pool, base_dir)
    log(f"seed {seed}: RAP kept {len(selected)} of {len(pool)} (run {summary['run_id']})")
    facts = image_facts(pool)
    examples = [Example(q.question, response(q, facts[q.image_id]), q.image) for q in pool]
    picked = np.random.default_rng(2000 + seed).choice(len(pool), size=len(selected),
                                                       replace=False)
    subsets = {"rap": selected, "random": sorted(picked.tolist()), "full": range(len(pool))}
    for arm in ARMS:
        subset = [examples[i] for i in subsets[arm]]
        arm_model = copy.deepcopy(model)
        steps = max(1, math.ceil(cfg.epochs * len(subset) / cfg.batch_size))
        stats = (train(arm_model, processor, subset, steps=steps, batch_size=cfg.batch_size,
                       lr=cfg.lr, seed=seed) if subset else None)
        rows.append({"seed": seed, "arm": arm, "train_samples": len(subset),
                     "steps": stats.steps if stats else 0,
                     "train_seconds": stats.seconds if stats else 0.0,
                     "accuracy": greedy_accuracy(arm_model, processor, test, True),
                     "selection_run": summary["run_id"]})
        log(f"seed {seed}: {arm:<6} {len(subset):>5} samples, {rows[-1]['steps']:>4} steps, "
            f"{rows[-1]['train_seconds']:6.1f} s -> accuracy {rows[-1]['accuracy']:.3f}")
    return rows


def summarise(rows: list[dict]) -> pl.DataFrame:
    """Mean and standard deviation over seeds, per arm."""
    frame = pl.DataFrame(rows)
    order = {a: i for i, a in enumerate(("base",) + ARMS)}
    return (frame.group_by("arm").agg(
        seeds=pl.len(), train_samples=pl.col("train_samples").mean(),
        steps=pl.col("steps").mean(), train_seconds=pl.col("train_seconds").mean(),
        accuracy=pl.col("accuracy").mean(), accuracy_std=pl.col("accuracy").std())
        .sort(pl.col("arm").replace_strict(order)))


def run_experiment(settings: Settings, cfg: ExperimentConfig = ExperimentConfig(),
                   log=print) -> tuple[pl.DataFrame, pl.DataFrame]:
    import torch

    from rap.flows.report import markdown_table
    from rap.rap_core.tracking import log_record
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 8)))
    rows = [row for seed in cfg.seeds for row in run_seed(settings, cfg, seed, log)]
    per_seed, table = pl.DataFrame(rows), summarise(rows)
    text = ("Miniature experiment (easy-VQA, SFT continuation; mean over seeds "
            f"{list(cfg.seeds)})\n\n" + markdown_table(table, 3) + "\n\nPer seed:\n\n"
            + markdown_table(per_seed.drop("selection_run"), 3) + "\n")
    out = settings.data_dir / "experiments" / "miniature.md"
    out.write_text(text)
    for row in rows:
        log_record(settings, "-miniature", f"seed{row['seed']}-{row['arm']}",
                   params={**asdict(cfg), "seed": row["seed"], "arm": row["arm"]},
                   metrics={k: row[k] for k in ("accuracy", "train_seconds", "steps",
                                                "train_samples")},
                   tags={"selection_run": row.get("selection_run", "")})
    log_record(settings, "-miniature", "summary", params=asdict(cfg),
               metrics={f"{r['arm']}.{k}": r[k] for r in table.to_dicts()
                        for k in ("accuracy", "train_seconds")},
               artifacts={"miniature.md": text})
    log(text)
    log(f"written to {out}")
    return table, per_seed
