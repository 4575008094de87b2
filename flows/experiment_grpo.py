"""`rap experiment --trainer grpo`: the paper's claim in miniature, with reinforcement learning.

Protocol (fixed before the arms were compared; README "A miniature of the paper's claim"):
per seed, a base model is trained on 2,000 easy-VQA training questions (600 vision steps, 300
answer steps); a pool of 1,000 other training questions (with `question_type`) is selected
from with the base model by RAP (M = 5), then, from the stored facts with no model call, by
RAP with a coverage floor of 1, `pass_band`, `random` of RAP's size and `random` stratified by
question type; the sixth arm is the whole pool. Each arm trains a copy of the base model with
the same GRPO budget (calibrated beforehand by `flows/experiment_calibration.py`, never on an
arm) and is evaluated greedily after 1/4, 1/2, 3/4 and all of the steps on (a) 1,000
in-distribution test questions and (b) a prior-balanced test where easy-VQA's wording alone
scores 50% on yes/no questions; at the end also (c) (a) without the image, and per question
type. Outcomes are compared per seed against the whole pool and against random.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import polars as pl

from rap.flows.experiment import Split, pool_file, split_questions, train_base_model
from rap.rap_core.demo.easy_vqa import Question, question_type, wording_guess
from rap.rap_core.demo.grpo import GrpoSettings, train_grpo
from rap.rap_core.demo.model import greedy_correct, save_model
from rap.rap_core.params import DataSpec, ModelSpec, RapParams, RolloutSettings, Thresholds
from rap.rap_core.settings import Settings
from rap.rap_core.store import open_store

ARMS = ("rap", "rap_floor", "pass_band", "random", "random_stratified", "full")
TYPES = ("yes/no", "color", "shape")
SETS = ("accuracy", "balanced_accuracy", "text_only")  # (a), (b), (c): the compared outcomes
TEST_SET_KEYS = ("test_questions", "balanced_questions", "wording_guess_test",
                 "wording_guess_balanced")


@dataclass(frozen=True)
class GrpoExperimentConfig:
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    base_questions: int = 2000
    base_vision_steps: int = 600
    base_steps: int = 300
    pool_size: int = 1000
    test_questions: int = 1000
    balanced_from: int = 3000  # other test questions the prior-balanced test is drawn from
    evaluations: int = 4  # on both tests after 1/4, 1/2, 3/4 and all of the steps
    grpo: GrpoSettings = field(default_factory=GrpoSettings)
    base_model: str | None = None  # a model folder to start from instead of training one
    arms: tuple[str, ...] = ARMS


def split(cfg: GrpoExperimentConfig, seed: int) -> Split:
    return split_questions(seed, cfg.base_questions, cfg.pool_size, cfg.test_questions,
                           calibration=cfg.pool_size, balanced=cfg.balanced_from)


def eval_steps(cfg: GrpoExperimentConfig) -> list[int]:
    n, steps = cfg.evaluations, cfg.grpo.steps
    return sorted({max(1, math.ceil(steps * k / n)) for k in range(1, n + 1)})


def evaluate(model, processor, tests: dict[str, list[Question]], text_only: bool = False
             ) -> dict:
    """Greedy accuracy with the image on each test set, overall and per question type
    (`accuracy...` on the in-distribution set "test", `<name>_accuracy...` on the others),
    and optionally the in-distribution set's accuracy without the image (`text_only`)."""
    out = {}
    for name, questions in tests.items():
        prefix = "" if name == "test" else f"{name}_"
        right = greedy_correct(model, processor, questions, True)
        out[f"{prefix}accuracy"] = float(np.mean(right))
        for kind in TYPES:
            of_kind = [r for r, q in zip(right, questions) if question_type(q.answer) == kind]
            out[f"{prefix}accuracy_{kind}"] = float(np.mean(of_kind)) if of_kind else float("nan")
    if text_only:
        out["text_only"] = float(np.mean(greedy_correct(model, processor, tests["test"], False)))
    return out


RETUNED = {  # arm: (method, thresholds given RAP's run and the seed); no model call
    "rap_floor": ("rap", lambda run, seed: Thresholds(coverage_floor=1.0)),
    "pass_band": ("pass_band", lambda run, seed: Thresholds()),
    "random": ("random", lambda run, seed: Thresholds(random_like=run, random_seed=seed)),
    "random_stratified": ("random", lambda run, seed: Thresholds(
        random_like=run, random_seed=seed, random_stratify=True)),
}


def select_arms(settings: Settings, seed: int, pool: list[Question], base_dir,
                arms=ARMS) -> tuple[dict[str, list[int]], dict]:
    """The pool rows each arm trains on: RAP with the base model (rollouts, attention), then
    the other selections re-selected from RAP's stored facts (no model call). Groups are the
    question types (the pool file's `question_type`)."""
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
    for arm in (a for a in arms if a in RETUNED):
        method, thresholds = RETUNED[arm]
        runs[arm] = run_flow(RapParams(mode="retune", base_run=rap["run_id"], method=method,
                                       thresholds=thresholds(rap["run_id"], seed), export=False,
                                       track=False))["run_id"]
    subsets = {}
    with open_store(settings.duckdb_path, read_only=True) as store:
        for arm, run_id in runs.items():
            decisions = store.query("queries/decisions_of_run", run_id=run_id)
            subsets[arm] = sorted(decisions.filter(pl.col("state") == "selected")
                                  ["source_row"].to_list())
    subsets["full"] = list(range(len(pool)))
    return {arm: subsets[arm] for arm in arms}, cost


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
    tests = {"test": data.test, "balanced": data.balanced}
    base_dir = settings.data_dir / "experiments" / "grpo" / f"seed{seed}" / "base"
    model, processor, base_stats = train_base(cfg, seed, data, base_dir)
    base_eval = evaluate(model, processor, tests, text_only=True)
    sets = test_sets(data)
    log(f"seed {seed}: tests: {sets['test_questions']} in-distribution, "
        f"{sets['balanced_questions']} prior-balanced (the wording alone: "
        f"{sets['wording_guess_test']:.3f} and {sets['wording_guess_balanced']:.3f} of their "
        f"yes/no questions)")
    log(f"seed {seed}: base model: {scores_line(base_eval)} ({base_stats.seconds:.0f} s to "
        "train)")
    subsets, cost = select_arms(settings, seed, data.pool, base_dir, cfg.arms)
    log(f"seed {seed}: selection {cost['selection_seconds']:.0f} s ({cost['rollouts']} "
        f"rollouts): " + ", ".join(f"{a} {len(s)}" for a, s in subsets.items()))
    rows = [{"seed": seed, "arm": "base", "train_samples": len(data.base), "steps": 0,
             "train_seconds": base_stats.seconds, **base_eval, "curve": [],
             "reward": [], "zero_std": [], **cost, **_composition([]), **sets}]
    at = eval_steps(cfg)
    for number, arm in enumerate(cfg.arms, 1):
        questions = [data.pool[i] for i in subsets[arm]]
        rows.append(_train_arm(model, processor, cfg, seed, arm, questions, tests, at,
                               base_eval, cost, lambda m: log(
                                   f"seed {seed} arm {number}/{len(cfg.arms)} {m}")))
    return rows


def test_sets(data: Split) -> dict:
    """The test sets' sizes and what the wording-only rule scores on their yes/no questions
    (easy_vqa.wording_guess; 0.5 on the prior-balanced set by construction)."""
    def guess(questions):
        yes_no = [q for q in questions if q.qtype == "yes/no"]
        return (sum(wording_guess(q) == q.answer for q in yes_no) / len(yes_no)
                if yes_no else float("nan"))
    return {"test_questions": len(data.test), "balanced_questions": len(data.balanced),
            "wording_guess_test": guess(data.test),
            "wording_guess_balanced": guess(data.balanced)}


def _composition(questions: list[Question]) -> dict:
    """The share of each question type in an arm's training questions."""
    return {f"share_{kind}": (sum(q.qtype == kind for q in questions) / len(questions)
                              if questions else None) for kind in TYPES}


def scores_line(result: dict) -> str:
    return (f"test {result['accuracy']:.3f}, balanced {result['balanced_accuracy']:.3f}, "
            f"text only {result['text_only']:.3f}")


def _train_arm(base_model, processor, cfg, seed, arm, questions, tests, at, base_eval, cost,
               log) -> dict:
    row = {"seed": seed, "arm": arm, "train_samples": len(questions), **cost,
           **_composition(questions)}
    if not questions:
        log(f"{arm}: nothing selected, no training")
        return {**row, "steps": 0, "train_seconds": 0.0, **base_eval, "curve": [],
                "reward": [], "zero_std": []}
    model = copy.deepcopy(base_model)
    final = at[-1]

    def on_eval(step: int) -> dict:
        result = evaluate(model, processor, tests, text_only=step == final)
        log(f"{arm:<17} step {step:>4}/{cfg.grpo.steps} test {result['accuracy']:.3f}, "
            f"balanced {result['balanced_accuracy']:.3f}")
        return result
    stats = train_grpo(model, processor, questions, replace(cfg.grpo, seed=seed),
                       evaluate=on_eval, eval_at=at)
    last = stats.evaluations[-1]
    keys = ("step", "train_seconds", "accuracy", "balanced_accuracy")
    curve = [{"step": 0, "train_seconds": 0.0, "accuracy": base_eval["accuracy"],
              "balanced_accuracy": base_eval["balanced_accuracy"]}] + [
        {k: e[k] for k in keys} for e in stats.evaluations]
    log(f"{arm:<17} {len(questions):>5} questions, {stats.steps} steps, "
        f"{stats.train_seconds:.0f} s -> {scores_line(last)}, mean reward "
        f"{np.mean([r for _, r in stats.reward]):.3f}")
    return {**row, "steps": stats.steps, "train_seconds": stats.train_seconds,
            **{k: v for k, v in last.items() if k not in ("step", "train_seconds")},
            "curve": curve, "reward": stats.reward, "zero_std": stats.zero_std}


def at_share(row: dict, share: float, key: str = "balanced_accuracy") -> float:
    """Accuracy at the first evaluation at or after `share` of the steps."""
    steps = row["steps"]
    points = [p for p in row["curve"] if p["step"] >= share * steps]
    return points[0][key] if points else row[key]


def time_to_reach(row: dict, target: float, key: str = "balanced_accuracy") -> float | None:
    """Training seconds until the first evaluation at or above target (None: not reached)."""
    return next((p["train_seconds"] for p in row["curve"][1:] if p[key] >= target), None)


def per_seed_table(rows: list[dict]) -> pl.DataFrame:
    full = {r["seed"]: r["balanced_accuracy"] for r in rows if r["arm"] == "full"}
    out = []
    for r in rows:
        reach = (None if r["arm"] == "base" or r["seed"] not in full
                 else time_to_reach(r, full[r["seed"]]))
        out.append({"seed": r["seed"], "arm": r["arm"], "train_samples": r["train_samples"],
                    **{f"share_{t}": r[f"share_{t}"] for t in TYPES},
                    "steps": r["steps"], "train_seconds": r["train_seconds"],
                    "accuracy_half": at_share(r, 0.5, "accuracy"),
                    "balanced_q1": at_share(r, 0.25), "balanced_half": at_share(r, 0.5),
                    **{k: r[k] for k in SETS},
                    **{f"accuracy_{t}": r[f"accuracy_{t}"] for t in TYPES},
                    **{f"balanced_accuracy_{t}": r[f"balanced_accuracy_{t}"] for t in TYPES},
                    "mean_reward": float(np.mean([v for _, v in r["reward"]]))
                    if r["reward"] else None,
                    "zero_advantage_share": float(np.mean([v for _, v in r["zero_std"]]))
                    if r["zero_std"] else None,
                    "seconds_to_full_final": reach})
    return pl.DataFrame(out)


def _arm_order(arms) -> pl.Expr:
    return pl.col("arm").replace_strict({a: i for i, a in enumerate(("base",) + tuple(arms))})


def summarise(per_seed: pl.DataFrame, arms=ARMS) -> pl.DataFrame:
    """Mean over seeds of every number, with the sd of the three outcomes."""
    numbers = [c for c in per_seed.columns if c not in ("seed", "arm")]
    return (per_seed.group_by("arm").agg(
        [pl.len().alias("seeds")]
        + [pl.col(c).mean().alias(c) for c in numbers]
        + [pl.col(c).std().alias(f"{c}_sd") for c in SETS]
        + [pl.col("seconds_to_full_final").is_not_null().sum().alias("reached_full")])
        .sort(_arm_order(arms)))


def differences(per_seed: pl.DataFrame, arms=ARMS) -> pl.DataFrame:
    """Per arm, the per-seed differences of each outcome against the whole pool and against
    random of the same size (mean, sd, and how many seeds the arm was ahead)."""
    out = []
    for against in ("full", "random"):
        if against not in arms:
            continue
        ref = per_seed.filter(pl.col("arm") == against).select(
            "seed", *[pl.col(c).alias(f"ref_{c}") for c in SETS])
        for arm in (a for a in arms if a != against):
            joined = per_seed.filter(pl.col("arm") == arm).join(ref, on="seed")
            row = {"arm": arm, "against": against, "seeds": joined.height}
            for c in SETS:
                d = (joined[c] - joined[f"ref_{c}"]).to_list()
                row[f"{c}_diff"] = float(np.mean(d)) if d else None
                row[f"{c}_diff_sd"] = float(np.std(d, ddof=1)) if len(d) > 1 else None
                row[f"{c}_ahead"] = sum(x > 0 for x in d)
            out.append(row)
    return pl.DataFrame(out)


def run_grpo_experiment(settings: Settings, cfg: GrpoExperimentConfig = GrpoExperimentConfig(),
                        log=print) -> tuple[pl.DataFrame, pl.DataFrame]:
    import torch

    from rap.flows.report import markdown_table
    from rap.rap_core.tracking import log_record
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 8)))
    started = time.perf_counter()

    def timed(message: str) -> None:
        log(f"[{(time.perf_counter() - started) / 60:5.1f} min] {message}")
    rows = [row for seed in cfg.seeds for row in run_seed(settings, cfg, seed, timed)]
    per_seed = per_seed_table(rows)
    table, diffs = summarise(per_seed, cfg.arms), differences(per_seed, cfg.arms)
    sets = pl.DataFrame([{"seed": r["seed"], **{k: r[k] for k in TEST_SET_KEYS}}
                         for r in rows if r["arm"] == "base"])
    minutes = (time.perf_counter() - started) / 60
    text = (f"GRPO miniature (easy-VQA; seeds {list(cfg.seeds)}; {cfg.grpo.steps} steps x "
            f"{cfg.grpo.prompts_per_step} questions x {cfg.grpo.generations} answers per arm, "
            f"lr {cfg.grpo.lr:g}, beta {cfg.grpo.beta:g}; {minutes:.1f} min)\n\n"
            "accuracy: the in-distribution test (a); balanced_accuracy: the prior-balanced "
            "test (b, the primary outcome); text_only: (a) without the image (c)\n\n"
            + markdown_table(table, 3)
            + "\n\nPer-seed differences (arm minus `against`, same seed):\n\n"
            + markdown_table(diffs, 3)
            + "\n\nTest sets (wording_guess: the wording-only rule on their yes/no "
            "questions):\n\n" + markdown_table(sets, 3)
            + "\n\nPer seed:\n\n" + markdown_table(per_seed, 3) + "\n")
    out = settings.data_dir / "experiments" / "grpo.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    config = {**asdict(cfg), "grpo": asdict(cfg.grpo)}
    for row, record in zip(rows, per_seed.to_dicts()):
        log_record(settings, "-miniature-grpo", f"seed{row['seed']}-{row['arm']}",
                   params={**config, "seed": row["seed"], "arm": row["arm"]},
                   metrics={k: v for k, v in {**record, **{
                       k: row[k] for k in TEST_SET_KEYS if k in row}}.items()
                            if isinstance(v, (int, float)) and k != "seed" and v == v},
                   tags={"selection_run": row.get("selection_run", "")},
                   curves={**{f"curve.{k}": [(p["step"], p[k]) for p in row["curve"]]
                              for k in ("accuracy", "balanced_accuracy")},
                           "curve.reward": row["reward"],
                           "curve.zero_advantage_share": row["zero_std"]})
    log_record(settings, "-miniature-grpo", "summary", params=config,
               metrics={f"{r['arm']}.{k}": r[k] for r in table.to_dicts()
                        for k in (*SETS, "train_seconds") if r[k] is not None},
               artifacts={"grpo.md": text})
    log(text)
    log(f"written to {out}")
    return table, per_seed
