"""GRPO with TRL on the demo model family: it learns what the reward asks, all-equal groups
teach nothing, and the experiment's arms get disjoint data and equal steps."""

from __future__ import annotations

import json

import numpy as np
import torch

from rap.flows.experiment_grpo import GrpoExperimentConfig, at_share, eval_steps, split, \
    time_to_reach
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
    assert at_share(row, 0.25) == 0.75 and at_share(row, 0.5) == 0.79
    assert time_to_reach(row, 0.79) == 20.0 and time_to_reach(row, 0.9) is None
    assert time_to_reach(row, 0.7) == 10.0  # the base point does not count


def test_rap_experiment_grpo_end_to_end_with_minimal_sizes(settings, demo_model_dir,
                                                          prefect_harness, monkeypatch):
    """The CLI command, small: every arm trains the same number of steps, the table and the
    MLflow records are written."""
    import mlflow

    from rap.flows import cli
    monkeypatch.setattr(cli, "configure_process_env", lambda data_dir: None)
    assert cli.main(["experiment", "--seeds", "0", "--pool-size", "40", "--steps", "3",
                     "--generations", "2", "--questions-per-step", "2",
                     "--test-questions", "20", "--base-model", str(demo_model_dir)]) == 0
    table = (settings.data_dir / "experiments" / "grpo.md").read_text()
    for arm in ("| base |", "| rap |", "| pass_band |", "| random |", "| full |"):
        assert arm in table
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("rap-miniature-grpo")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"seed0-base", "seed0-rap", "seed0-pass_band", "seed0-random",
                         "seed0-full", "summary"}
    trained = [runs[f"seed0-{arm}"].data for arm in ("rap", "pass_band", "random", "full")]
    assert {d.metrics["steps"] for d in trained if d.metrics["train_samples"] > 0} == {3.0}
    assert runs["seed0-rap"].data.metrics["train_samples"] == \
        runs["seed0-random"].data.metrics["train_samples"]
    history = client.get_metric_history(runs["seed0-full"].info.run_id, "curve.accuracy")
    assert [m.step for m in history] == [0, 1, 2, 3]
    rewards = client.get_metric_history(runs["seed0-full"].info.run_id, "curve.reward")
    assert [m.step for m in rewards] == [1, 2, 3]
    assert json.loads(json.dumps(runs["summary"].data.metrics))  # a summary was logged
