"""`rap experiment --trainer grpo`: the paper's claim in miniature, with reinforcement learning.

Protocol (fixed before the arms were compared; README "A miniature of the paper's claim"):
per seed, a base model is trained on 2,000 easy-VQA training questions (600 vision steps, 300
answer steps: 0.73 test accuracy, RAP keeps about 6% of a pool); a pool of 1,000 other
training questions is selected from with the base model by (a) RAP, then, from the stored
facts with no model call, (b) `pass_band` and (c) `random` of RAP's size; (d) is the whole
pool. Each arm trains a copy of the base model with the same GRPO budget (steps, questions per
step, answers per question), and is evaluated greedily on the same 1,000 test questions
after 1/4, 1/2, 3/4 and all of the steps (with the image; at the end also without it and per
question type).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import polars as pl

from rap.flows.experiment import Split, pool_file, split_questions, train_base_model
from rap.rap_core.demo.easy_vqa import Question, question_type
from rap.rap_core.demo.grpo import GrpoSettings, train_grpo
from rap.rap_core.demo.model import greedy_correct, save_model
from rap.rap_core.params import DataSpec, ModelSpec, RapParams, RolloutSettings, Thresholds
from rap.rap_core.settings import Settings
from rap.rap_core.store import open_store

ARMS = ("rap", "pass_band", "random", "full")
TYPES = ("yes/no", "color", "shape")


@dataclass(frozen=True)
class GrpoExperimentConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    base_questions: int = 2000
    base_vision_steps: int = 600
    base_steps: int = 300
    pool_size: int = 1000
    test_questions: int = 1000
    evaluations: int = 4  # after 1/4, 1/2, 3/4 and all of the steps
    grpo: GrpoSettings = field(default_factory=GrpoSettings)
    base_model: str | None = None  # a model folder to start from instead of training one


def split(cfg: GrpoExperimentConfig, seed: int) -> Split:
    return split_questions(seed, cfg.base_questions, cfg.pool_size, cfg.test_questions)


def eval_steps(cfg: GrpoExperimentConfig) -> list[int]:
    n, steps = cfg.evaluations, cfg.grpo.steps
    return sorted({max(1, math.ceil(steps * k / n)) for k in range(1, n + 1)})


def evaluate(model, processor, test: list[Question], text_only: bool = False) -> dict:
    """Greedy test accuracy with the image, per question type, and optionally without it."""
    right = greedy_correct(model, processor, test, True)
    out = {"accuracy": float(np.mean(right))}
    for kind in TYPES:
        of_kind = [r for r, q in zip(right, test) if question_type(q.answer) == kind]
        out[f"accuracy_{kind}"] = float(np.mean(of_kind)) if of_kind else float("nan")
    if text_only:
        out["text_only"] = float(np.mean(greedy_correct(model, processor, test, False)))
    return out


def select_arms(settings: Settings, seed: int, pool: list[Question], base_dir) -> tuple[
        dict[str, list[int]], dict]:
    """The pool rows each arm trains on: RAP with the base model (rollouts, attention), then
    pass_band and random re-selected from the stored facts (no model call)."""
    from rap.flows.rap import run_flow
    started = time.perf_counter()
    folder = settings.data_dir / "experiments" / "grpo" / f"seed{seed}"
    rap = run_flow(RapParams(data=DataSpec(path=pool_file(folder, pool)),
                             model=ModelSpec(path=str(base_dir)),
                             rollout=RolloutSettings(seed=seed), batch_size=16, export=False,
                             track=False))
    cost = {"selection_seconds": time.perf_counter() - started,
            "samples_inferred": rap["samples_inferred"],
            "rollouts": rap["samples_inferred"] * 2 * RolloutSettings().m,
            "selection_run": rap["run_id"]}
    runs = {"rap": rap["run_id"]}
    for method, th in (("pass_band", Thresholds()),
                       ("random", Thresholds(random_like=rap["run_id"], random_seed=seed))):
        runs[method] = run_flow(RapParams(mode="retune", base_run=rap["run_id"], method=method,
                                          thresholds=th, export=False,
                                          track=False))["run_id"]
    subsets = {}
    with open_store(settings.duckdb_path, read_only=True) as store:
        for arm, run_id in runs.items():
            decisions = store.query("queries/decisions_of_run", run_id=run_id)
            subsets[arm] = sorted(decisions.filter(pl.col("state") == "selected")
                                  ["source_row"].to_list())
    subsets["full"] = list(range(len(pool)))
    return subsets, cost


def train_base(cfg: GrpoExperimentConfig, seed: int, data: Split, out_dir):
    """The base model (trained on data.base, or cfg.base_model as it is), saved to out_dir
    for the selection runs."""
    if cfg.base_model:
        from transformers import Qwen2VLForConditionalGeneration

        from rap.rap_core.demo.training import TrainStats
        from rap.rap_core.engines.hf_loading import Qwen2VLImageOnlyProcessor
        model = Qwen2VLForConditionalGeneration.from_pretrained(cfg.base_model)
        processor = Qwen2VLImageOnlyProcessor.from_pretrained(cfg.base_model)
        save_model(model, processor, out_dir, {"experiment": "grpo", "seed": seed,
                                               "from": cfg.base_model})
        return model, processor, TrainStats(steps=0, examples_seen=0, seconds=0.0)
    model, processor, stats = train_base_model(data.base, seed, cfg.base_vision_steps,
                                               cfg.base_steps)
    save_model(model, processor, out_dir, {"experiment": "grpo", "seed": seed})
    return model, processor, stats


def run_seed(settings: Settings, cfg: GrpoExperimentConfig, seed: int, log=print) -> list[dict]:
    """One seed: the base model's row, then one row per arm."""
    data = split(cfg, seed)
    base_dir = settings.data_dir / "experiments" / "grpo" / f"seed{seed}" / "base"
    model, processor, base_stats = train_base(cfg, seed, data, base_dir)
    base_eval = evaluate(model, processor, data.test, text_only=True)
    log(f"seed {seed}: base model {base_eval['accuracy']:.3f} with the image, "
        f"{base_eval['text_only']:.3f} without ({base_stats.seconds:.0f} s to train)")
    subsets, cost = select_arms(settings, seed, data.pool, base_dir)
    log(f"seed {seed}: selection {cost['selection_seconds']:.0f} s ({cost['rollouts']} "
        f"rollouts): " + ", ".join(f"{a} {len(s)}" for a, s in subsets.items()))
    rows = [{"seed": seed, "arm": "base", "train_samples": len(data.base), "steps": 0,
             "train_seconds": base_stats.seconds, **base_eval, "curve": [],
             "reward": [], "zero_std": [], **cost}]
    at = eval_steps(cfg)
    for arm in ARMS:
        questions = [data.pool[i] for i in subsets[arm]]
        rows.append(_train_arm(model, processor, cfg, seed, arm, questions, data, at, base_eval,
                               cost, log))
    return rows


def _train_arm(base_model, processor, cfg, seed, arm, questions, data, at, base_eval, cost,
               log) -> dict:
    row = {"seed": seed, "arm": arm, "train_samples": len(questions), **cost}
    if not questions:
        log(f"seed {seed}: {arm}: nothing selected, no training")
        return {**row, "steps": 0, "train_seconds": 0.0, **base_eval, "curve": [],
                "reward": [], "zero_std": []}
    model = copy.deepcopy(base_model)
    final = at[-1]

    def on_eval(step: int) -> dict:
        result = evaluate(model, processor, data.test, text_only=step == final)
        log(f"seed {seed}: {arm:<9} step {step:>4}/{cfg.grpo.steps} accuracy "
            f"{result['accuracy']:.3f}")
        return result
    stats = train_grpo(model, processor, questions, replace(cfg.grpo, seed=seed),
                       evaluate=on_eval, eval_at=at)
    last = stats.evaluations[-1]
    curve = [{"step": 0, "train_seconds": 0.0, "accuracy": base_eval["accuracy"]}] + [
        {k: e[k] for k in ("step", "train_seconds", "accuracy")} for e in stats.evaluations]
    log(f"seed {seed}: {arm:<9} {len(questions):>5} questions, {stats.steps} steps, "
        f"{stats.train_seconds:.0f} s -> accuracy {last['accuracy']:.3f}, text only "
        f"{last.get('text_only', float('nan')):.3f}, mean reward "
        f"{np.mean([r for _, r in stats.reward]):.3f}")
    return {**row, "steps": stats.steps, "train_seconds": stats.train_seconds,
            **{k: v for k, v in last.items() if k not in ("step", "train_seconds")},
            "curve": curve, "reward": stats.reward, "zero_std": stats.zero_std}


def at_share(row: dict, share: float) -> float:
    """Accuracy at the first evaluation at or after `share` of the steps."""
    steps = row["steps"]
    points = [p for p in row["curve"] if p["step"] >= share * steps]
    return points[0]["accuracy"] if points else row["accuracy"]


def time_to_reach(row: dict, target: float) -> float | None:
    """Training seconds until the first evaluation at or above target (None: not reached)."""
    return next((p["train_seconds"] for p in row["curve"][1:] if p["accuracy"] >= target), None)


def per_seed_table(rows: list[dict]) -> pl.DataFrame:
    full = {r["seed"]: r["accuracy"] for r in rows if r["arm"] == "full"}
    out = []
    for r in rows:
        reach = None if r["arm"] == "base" else time_to_reach(r, full[r["seed"]])
        out.append({"seed": r["seed"], "arm": r["arm"], "train_samples": r["train_samples"],
                    "steps": r["steps"], "train_seconds": r["train_seconds"],
                    "accuracy_q1": at_share(r, 0.25), "accuracy_half": at_share(r, 0.5),
                    "accuracy": r["accuracy"], "text_only": r.get("text_only"),
                    **{f"accuracy_{t}": r[f"accuracy_{t}"] for t in TYPES},
                    "mean_reward": float(np.mean([v for _, v in r["reward"]]))
                    if r["reward"] else None,
                    "zero_advantage_share": float(np.mean([v for _, v in r["zero_std"]]))
                    if r["zero_std"] else None,
                    "seconds_to_full_final": reach})
    return pl.DataFrame(out)


def summarise(per_seed: pl.DataFrame) -> pl.DataFrame:
    order = {a: i for i, a in enumerate(("base",) + ARMS)}
    numbers = [c for c in per_seed.columns if c not in ("seed", "arm")]
    return (per_seed.group_by("arm").agg(
        [pl.len().alias("seeds")]
        + [pl.col(c).mean().alias(c) for c in numbers]
        + [pl.col("accuracy").std().alias("accuracy_sd"),
           pl.col("seconds_to_full_final").is_not_null().sum().alias("reached_full")])
        .sort(pl.col("arm").replace_strict(order)))


def run_grpo_experiment(settings: Settings, cfg: GrpoExperimentConfig = GrpoExperimentConfig(),
                        log=print) -> tuple[pl.DataFrame, pl.DataFrame]:
    import torch

    from rap.flows.report import markdown_table
    from rap.rap_core.tracking import log_record
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 8)))
    started = time.perf_counter()
    rows = [row for seed in cfg.seeds for row in run_seed(settings, cfg, seed, log)]
    per_seed = per_seed_table(rows)
    table = summarise(per_seed)
    minutes = (time.perf_counter() - started) / 60
    text = (f"GRPO miniature (easy-VQA; seeds {list(cfg.seeds)}; {cfg.grpo.steps} steps x "
            f"{cfg.grpo.prompts_per_step} questions x {cfg.grpo.generations} answers per arm; "
            f"{minutes:.1f} min)\n\n" + markdown_table(table, 3)
            + "\n\nPer seed:\n\n" + markdown_table(per_seed, 3) + "\n")
    out = settings.data_dir / "experiments" / "grpo.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    config = {**asdict(cfg), "grpo": asdict(cfg.grpo)}
    for row, record in zip(rows, per_seed.to_dicts()):
        log_record(settings, "-miniature-grpo", f"seed{row['seed']}-{row['arm']}",
                   params={**config, "seed": row["seed"], "arm": row["arm"]},
                   metrics={k: v for k, v in record.items()
                            if isinstance(v, (int, float)) and k != "seed" and v == v},
                   tags={"selection_run": row.get("selection_run", "")},
                   curves={"curve.accuracy": [(p["step"], p["accuracy"]) for p in row["curve"]],
                           "curve.reward": row["reward"],
                           "curve.zero_advantage_share": row["zero_std"]})
    log_record(settings, "-miniature-grpo", "summary", params=config,
               metrics={f"{r['arm']}.{k}": r[k] for r in table.to_dicts()
                        for k in ("accuracy", "train_seconds") if r[k] is not None},
               artifacts={"grpo.md": text})
    log(text)
    log(f"written to {out}")
    return table, per_seed
