"""GRPO on the demo model family with TRL's GRPOTrainer: the model answers each question M
times (a group) from its own sampling, each answer is rewarded 1/0 by the project's grader
(the grading CDE uses), advantages are normalised within the group, and the clipped policy
ratio is maximised (TRL's defaults: no KL term, epsilon 0.2; with `beta`, a KL term to the
starting weights).

The processor is the project's image-only class (rap_core.engines.hf_loading): the stock
Qwen2-VL processor needs torchvision for its video half, which this install does not have.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rap.rap_core.demo.easy_vqa import Question
from rap.rap_core.grading import grade


@dataclass(frozen=True)
class GrpoSettings:
    steps: int = 120
    prompts_per_step: int = 4
    generations: int = 8  # the group size M: answers sampled per question
    max_completion_length: int = 32
    lr: float = 3e-5  # the miniature's calibrated budget (README)
    temperature: float = 1.0
    beta: float = 0.0  # KL to the reference model (TRL's default: none)
    epsilon: float = 0.2  # ratio clip
    seed: int = 0


@dataclass
class GrpoStats:
    steps: int = 0
    train_seconds: float = 0.0  # optimisation alone, evaluations excluded
    reward: list[tuple[int, float]] = field(default_factory=list)  # mean reward per step
    zero_std: list[tuple[int, float]] = field(default_factory=list)  # share of groups with
    # all-equal rewards (zero advantage: they teach nothing)
    evaluations: list[dict] = field(default_factory=list)  # {"step", "train_seconds", ...}


def grader_reward(prompts, completions, answer, **_) -> list[float]:
    """1.0 when the graded answer is right, else 0.0 (one value per completion)."""
    def text(completion) -> str:
        return completion[-1]["content"] if isinstance(completion, list) else completion
    return [1.0 if grade(ref, text(c))[1] else 0.0 for c, ref in zip(completions, answer)]


def grpo_dataset(questions: Iterable[Question]):
    """TRL's conversational layout: the question as the user turn, the image beside it
    (TRL puts it before the text, as the demo model was trained), the reference answer."""
    from datasets import Dataset
    return Dataset.from_list([{"prompt": [{"role": "user", "content": q.question}],
                               "image": q.image, "answer": q.answer} for q in questions])


def train_grpo(model, processor, questions: list[Question], settings: GrpoSettings,
               evaluate: Callable[[int], dict] | None = None, eval_at: Iterable[int] = (),
               reward: Callable = grader_reward,
               progress: Callable[[int, int, float], None] | None = None) -> GrpoStats:
    """settings.steps GRPO steps over questions (sampled with replacement across epochs);
    evaluate(step) is called after each step in eval_at, outside the training clock."""
    import torch
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    stats, points = GrpoStats(), set(eval_at)
    clock = {"start": time.perf_counter(), "paused": 0.0}

    class Record(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                stats.reward.append((state.global_step, float(logs["reward"])))
                stats.zero_std.append((state.global_step,
                                       float(logs.get("frac_reward_zero_std", 0.0))))

        def on_step_end(self, args, state, control, model=None, **kwargs):
            step = state.global_step
            trained = time.perf_counter() - clock["start"] - clock["paused"]
            if progress:
                progress(step, settings.steps, trained)
            if evaluate is None or step not in points:
                return
            paused = time.perf_counter()
            model.eval()
            with torch.no_grad():
                result = evaluate(step)
            model.train()
            stats.evaluations.append({"step": step, "train_seconds": trained, **result})
            clock["paused"] += time.perf_counter() - paused

    batch = settings.prompts_per_step * settings.generations
    named = model.config._name_or_path
    with tempfile.TemporaryDirectory(prefix="rap-grpo-") as scratch:
        if settings.beta:
            # TRL builds the KL term's reference model from the policy's config path; a model
            # built in memory has none, so the starting weights are saved for it to load
            model.save_pretrained(f"{scratch}/reference")
            model.config._name_or_path = f"{scratch}/reference"
        args = GRPOConfig(
            output_dir=scratch, max_steps=settings.steps, per_device_train_batch_size=batch,
            num_generations=settings.generations,
            max_completion_length=settings.max_completion_length,
            learning_rate=settings.lr, temperature=settings.temperature, beta=settings.beta,
            epsilon=settings.epsilon, seed=settings.seed, data_seed=settings.seed,
            logging_steps=1, report_to=[], save_strategy="no", disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(), bf16=False)
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args,
                              train_dataset=grpo_dataset(questions), processing_class=processor,
                              callbacks=[Record()])
        trainer.remove_callback(PrinterCallback)  # our progress and records instead
        clock.update(start=time.perf_counter(), paused=0.0)
        with warnings.catch_warnings():  # TRL calls transformers' renamed checkpointing API
            warnings.simplefilter("ignore", FutureWarning)
            trainer.train()
        stats.train_seconds = time.perf_counter() - clock["start"] - clock["paused"]
    model.config._name_or_path = named
    stats.steps = trainer.state.global_step
    model.eval()
    return stats
