"""GRPO with TRL on the demo model family: it learns what the reward asks, all-equal groups
teach nothing, and the experiment's arms get disjoint data and equal steps."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import torch

from rap.flows.experiment_grpo import GrpoExperimentConfig, at_share, differences, eval_steps, \
    split, time_to_reach
from rap.rap_core.demo.easy_vqa import load_split
from rap.rap_core.demo.grpo import GrpoSettings, grader_reward, train_grpo
from rap.rap_core.grading import extract_answer


def load(folder):
    from transformers import Qwen2VLForConditionalGeneration

    from rap.rap_core.engines.hf_loading import Qwen2VLImageOnlyProcessor
    torch.manual_seed(0)
    return (Qwen2VLForConditionalGeneration.from_pretrained(folder),
            Qwen2VLImageOnlyProcessor.from_pretrained(folder))


def yes_no_questions(n=32):
    return [q for q in load_split("train") if q.answer in ("yes", "no")][:n]


def says_no(prompts, completions, **_):
    """A toy reward the model can learn: answer "no", whatever the question."""
    return [1.0 if extract_answer(c[-1]["content"]) == "no" else 0.0 for c in completions]


def test_grpo_raises_the_reward_on_a_learnable_toy_task(demo_model_dir):
    model, processor = load(demo_model_dir)
    settings = GrpoSettings(steps=30, prompts_per_step=4, generations=4,
                            max_completion_length=24, lr=1e-3, seed=0)
    stats = train_grpo(model, processor, yes_no_questions(), settings, reward=says_no)
    rewards = [r for _, r in stats.reward]
    assert stats.steps == 30 and len(rewards) == 30
    assert np.mean(rewards[-8:]) > np.mean(rewards[:8]) + 0.2, rewards


def test_all_equal_groups_have_zero_advantage_and_change_nothing(demo_model_dir):
    model, processor = load(demo_model_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = train_grpo(model, processor, yes_no_questions(8),
                       GrpoSettings(steps=3, prompts_per_step=2, generations=4,
                                    max_completion_length=16, lr=1e-2),
                       reward=lambda prompts, completions, **_: [1.0] * len(completions))
    assert [z for _, z in stats.zero_std] == [1.0, 1.0, 1.0]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_grader_reward_grades_as_cde():
    done = [[{"role": "assistant", "content": "the shape is red. answer: red"}],
            [{"role": "assistant", "content": "answer: blue"}], [{"role": "assistant",
                                                                   "content": "no idea"}]]
    assert grader_reward(None, done, answer=["red", "red", "red"]) == [1.0, 0.0, 0.0]


def test_the_arms_data_is_disjoint_from_base_and_test():
    cfg = GrpoExperimentConfig(base_questions=300, pool_size=200, test_questions=100)
    data = split(cfg, seed=1)
    key = (lambda q: (q.question, q.image))
    assert len(data.base) == 300 and len(data.pool) == 200 and len(data.test) == 100
    assert not {key(q) for q in data.base} & {key(q) for q in data.pool}
    assert not {q.image for q in data.test} & {q.image for q in data.base + data.pool}
    assert split(cfg, seed=1) == data and split(cfg, seed=2) != data  # seeded


def test_evaluation_points_and_reading_the_curves():
    assert eval_steps(GrpoExperimentConfig()) == [30, 60, 90, 120]
    assert eval_steps(GrpoExperimentConfig(grpo=GrpoSettings(steps=3))) == [1, 2, 3]
    row = {"steps": 120, "accuracy": 0.8, "curve": [
        {"step": 0, "train_seconds": 0.0, "accuracy": 0.7},
        {"step": 30, "train_seconds": 10.0, "accuracy": 0.75},
        {"step": 60, "train_seconds": 20.0, "accuracy": 0.79},
        {"step": 120, "train_seconds": 40.0, "accuracy": 0.8}]}
    row = {**row, "balanced_accuracy": row["accuracy"],
           "curve": [{**p, "balanced_accuracy": p["accuracy"]} for p in row["curve"]]}
    assert at_share(row, 0.25) == 0.75 and at_share(row, 0.5, "accuracy") == 0.79
    assert time_to_reach(row, 0.79) == 20.0 and time_to_reach(row, 0.9) is None
    assert time_to_reach(row, 0.7, "accuracy") == 10.0  # the base point does not count


def test_per_seed_differences_against_the_whole_pool_and_random():
    rows = [{"seed": s, "arm": a, "accuracy": acc, "balanced_accuracy": bal, "text_only": 0.5}
            for s, a, acc, bal in [(0, "rap", 0.6, 0.7), (0, "random", 0.7, 0.6),
                                   (0, "full", 0.8, 0.5), (1, "rap", 0.5, 0.8),
                                   (1, "random", 0.7, 0.6), (1, "full", 0.7, 0.6)]]
    diffs = differences(pl.DataFrame(rows), arms=("rap", "random", "full"))
    rap_full = diffs.filter((pl.col("arm") == "rap") & (pl.col("against") == "full")).row(
        0, named=True)
    assert rap_full["seeds"] == 2 and abs(rap_full["accuracy_diff"] - (-0.2)) < 1e-9
    assert rap_full["accuracy_diff_sd"] < 1e-9  # -0.2 in both seeds
    assert abs(rap_full["balanced_accuracy_diff"] - 0.2) < 1e-9
    assert rap_full["balanced_accuracy_ahead"] == 2 and rap_full["accuracy_ahead"] == 0
    assert set(zip(diffs["arm"], diffs["against"])) == {
        ("rap", "full"), ("random", "full"), ("rap", "random"), ("full", "random")}


def test_rap_experiment_grpo_end_to_end_with_minimal_sizes(settings, demo_model_dir,
                                                          prefect_harness, monkeypatch):
    """The CLI command, small: six arms train the same number of steps (with a KL term),
    the random arms are RAP's size, the stratified one in the pool's question-type shares,
    and the tables, curves and MLflow records are written."""
    import mlflow

    from rap.flows import cli
    monkeypatch.setattr(cli, "configure_process_env", lambda data_dir: None)
    assert cli.main(["experiment", "--seeds", "0", "--pool-size", "40", "--steps", "3",
                     "--generations", "2", "--questions-per-step", "2", "--beta", "0.04",
                     "--test-questions", "20", "--balanced-from", "40",
                     "--base-model", str(demo_model_dir)]) == 0
    table = (settings.data_dir / "experiments" / "grpo.md").read_text()
    arms = ("rap", "rap_floor", "pass_band", "random", "random_stratified", "full")
    for arm in ("base",) + arms:
        assert f"| {arm} |" in table
    assert "| rap_floor | full |" in table and "| rap | random |" in table  # differences
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("rap-miniature-grpo")
    runs = {r.info.run_name: r.data for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {f"seed0-{arm}" for arm in ("base",) + arms} | {"summary"}
    trained = [runs[f"seed0-{arm}"] for arm in arms]
    assert {d.metrics["steps"] for d in trained if d.metrics["train_samples"] > 0} == {3.0}
    size = runs["seed0-rap"].metrics["train_samples"]
    assert runs["seed0-random"].metrics["train_samples"] == size
    assert runs["seed0-random_stratified"].metrics["train_samples"] == size
    assert runs["seed0-rap_floor"].metrics["train_samples"] == size  # the floor swaps rows
    pool = [json.loads(line) for line in (settings.data_dir / "experiments" / "grpo" / "seed0"
                                          / "pool.jsonl").read_text().splitlines()]
    shares = {t: sum(r["question_type"] == t for r in pool) / len(pool)
              for t in ("yes/no", "color", "shape")}
    stratified = runs["seed0-random_stratified"].metrics
    for kind, share in shares.items():
        assert abs(stratified[f"share_{kind}"] - share) <= 1 / size + 1e-9
    for name in ("accuracy", "balanced_accuracy", "text_only", "balanced_accuracy_yes/no"):
        assert 0 <= runs["seed0-full"].metrics[name] <= 1
    run_id = {r.info.run_name: r.info.run_id
              for r in client.search_runs([experiment.experiment_id])}["seed0-full"]
    for curve in ("curve.accuracy", "curve.balanced_accuracy"):
        assert [m.step for m in client.get_metric_history(run_id, curve)] == [0, 1, 2, 3]
    assert [m.step for m in client.get_metric_history(run_id, "curve.reward")] == [1, 2, 3]
    assert {"full.balanced_accuracy", "rap.text_only"} <= set(runs["summary"].metrics)


def test_calibration_runs_a_budget_on_calibration_questions(settings, demo_model_dir):
    """Calibration trains on the seed's calibration questions (never the pool) and reports
    the gain over the base model on both tests."""
    from rap.flows.experiment_calibration import Budget, calibrate
    cfg = GrpoExperimentConfig(pool_size=30, test_questions=20, balanced_from=40,
                               base_model=str(demo_model_dir))
    budgets = (Budget("tiny", GrpoSettings(steps=2, prompts_per_step=2, generations=2)),)
    table = calibrate(settings, budgets, seeds=(0,), cfg=cfg, log=lambda m: None)
    row = table.row(0, named=True)
    assert (row["budget"], row["steps"]) == ("tiny", 2)
    assert abs(row["gain"] - (row["accuracy"] - row["base_accuracy"])) < 1e-9
    assert "| tiny |" in (settings.data_dir / "experiments" / "grpo-calibration.md").read_text()
    data = split(cfg, 0)
    key = (lambda q: (q.question, q.image))
    assert len(data.calibration) == 30
    assert not {key(q) for q in data.calibration} & {key(q) for q in data.pool + data.base}
