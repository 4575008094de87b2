"""The embedded default model: a tiny Qwen2-VL trained by this project on easy-VQA.

Random init from a seed, then supervised training on the train split with a share of
text-only examples (so the text-only condition reflects a learned language prior) and a
share of questions whose text states the answer (a prior to exploit). Same recipe, same
weights. Built on first use into the data folder and cached there.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from rap_core.checkpoints import DEMO_MARKER, upgrade_rap_folder, write_stock_processor_files
from rap_core.easy_vqa_data import (COLORS, SHAPES, TRAIN_HINTS, Question, image_facts,
                                    load_split, response, stated_fact, with_hint)
from rap_core.keys import short_hash

DEMO_MODEL_VERSION = "easy-vqa-demo-v1"
META_FILE = DEMO_MARKER


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the demo model's weights."""

    seed: int = 0
    vision_steps: int = 1800  # stage 1: the vision tower learns colour and shape
    vision_lr: float = 2e-3
    steps: int = 650  # stage 2: the whole model learns to answer
    batch_size: int = 32
    lr: float = 1e-3
    text_only_share: float = 0.2
    # share of questions that state their answer, among text-only / with-image examples:
    # reading them is learned where the image cannot tell
    hint_share_text_only: float = 0.5
    hint_share_image: float = 0.1
    hidden_size: int = 128
    layers: int = 4
    vision_depth: int = 2
    vision_width: int = 64
    image_side: int = 56  # easy-VQA's 64 px images are resized to this
    patch_size: int = 7
    threads: int = 2  # the thread count changes float sums: fixed, for the same weights

    def text_config(self) -> dict:
        head_dim = self.hidden_size // 4
        third = head_dim // 8
        return dict(hidden_size=self.hidden_size, intermediate_size=self.hidden_size * 3,
                    num_hidden_layers=self.layers, num_attention_heads=4,
                    num_key_value_heads=2,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                     "mrope_section": [head_dim // 2 - 2 * third, third, third]})

    def vision_config(self) -> dict:
        return dict(depth=self.vision_depth, embed_dim=self.vision_width,
                    hidden_size=self.hidden_size, patch_size=self.patch_size)


def training_examples(questions: list[Question], recipe: Recipe,
                      seed: int | None = None) -> list:
    """One example per question: image kept or removed, hint added or not, by a seeded draw."""
    from rap_core.training import Example  # torch: only when training
    rng = np.random.default_rng(recipe.seed if seed is None else seed)
    facts = image_facts(questions)
    text_only = rng.random(len(questions)) < recipe.text_only_share
    hinted = rng.random(len(questions)) < np.where(
        text_only, recipe.hint_share_text_only, recipe.hint_share_image)
    templates = rng.integers(len(TRAIN_HINTS), size=len(questions))
    # without the image, a stated answer is what the reasoning can rest on: it is repeated
    return [Example(question=with_hint(q, TRAIN_HINTS[t]) if h else q.question,
                    response=(f"{stated_fact(q)}. answer: {q.answer}" if h and no_img
                              else response(q, facts[q.image_id])),
                    image=None if no_img else q.image)
            for q, no_img, h, t in zip(questions, text_only, hinted, templates)]


def vision_targets(questions: list[Question]) -> tuple[list[str], dict[str, list[int]]]:
    """Each image once, with its colour and shape class (-1 where its questions don't tell)."""
    facts = image_facts(questions)
    paths = {q.image_id: q.image for q in questions}
    ids = sorted(paths)
    return [paths[i] for i in ids], {
        "color": [COLORS.index(facts[i]["color"]) if "color" in facts[i] else -1 for i in ids],
        "shape": [SHAPES.index(facts[i]["shape"]) if "shape" in facts[i] else -1 for i in ids]}


def new_model(recipe: Recipe):
    """Random-init model and its processor (the project's offline tokenizer)."""
    from rap_core.tiny_model import build_model, build_processor
    side = recipe.image_side
    processor = build_processor("qwen2_vl", min_pixels=side * side, max_pixels=side * side,
                                patch_size=recipe.patch_size)
    model = build_model(processor.tokenizer, recipe.seed, "qwen2_vl",
                        text=recipe.text_config(), vision=recipe.vision_config())
    return model, processor


def save_model(model, processor, out_dir: Path, meta: dict) -> Path:
    """Write atomically: a finished folder is never half-replaced. It names the stock
    processor, so RL trainers load it as they load a published Qwen2-VL."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f"{out_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    write_stock_processor_files(tmp)
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    old = out_dir.with_name(f"{out_dir.name}.{os.getpid()}.old")
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return out_dir


def train_demo_model(out_dir: Path, recipe: Recipe = Recipe(),
                     progress: Callable[[str, int, int, float], None] | None = None,
                     evaluate_on: int = 1000) -> dict:
    """Train, evaluate on the test split, save; returns the metadata written beside it."""
    import torch

    from rap_core.training import pretrain_vision, train
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        model, processor = new_model(recipe)
        questions = load_split("train")
        vision = pretrain_vision(model, processor, *vision_targets(questions),
                                 steps=recipe.vision_steps, batch_size=recipe.batch_size,
                                 lr=recipe.vision_lr, seed=recipe.seed,
                                 progress=progress and (lambda *a: progress("vision", *a)))
        stats = train(model, processor, training_examples(questions, recipe),
                      steps=recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr,
                      seed=recipe.seed,
                      progress=progress and (lambda *a: progress("answers", *a)))
        accuracy = evaluate_on_test_split(model, processor, evaluate_on)
    finally:
        torch.set_num_threads(threads)
    meta = {"version": DEMO_MODEL_VERSION, "recipe": asdict(recipe),
            "vision": {"steps": vision.steps, "seconds": round(vision.seconds, 1),
                       "final_loss": vision.final_loss},
            "train": {"steps": stats.steps, "examples_seen": stats.examples_seen,
                      "seconds": round(stats.seconds, 1), "final_loss": stats.final_loss,
                      "losses": stats.losses},
            "test_accuracy": accuracy, "seconds": round(time.perf_counter() - started, 1)}
    save_model(model, processor, out_dir, meta)
    return meta


def evaluate_on_test_split(model, processor, n: int = 1000, seed: int = 0) -> dict:
    """Greedy accuracy on a seeded sample of n test questions, with and without the image."""
    questions = load_split("test")
    picked = np.random.default_rng(seed).choice(len(questions), size=min(n, len(questions)),
                                                replace=False)
    sample = [questions[i] for i in sorted(picked)]
    return {"questions": len(sample),
            "with_image": round(greedy_accuracy(model, processor, sample, True), 4),
            "text_only": round(greedy_accuracy(model, processor, sample, False), 4)}


def greedy_accuracy(model, processor, questions: list[Question], with_images: bool,
                    batch_size: int = 64) -> float:
    from rap_core.engine import PromptItem
    from rap_core.grading import grade
    from rap_core.hf_engine import HFEngine
    from rap_core.params import RolloutSettings
    processor.tokenizer.padding_side = "left"
    engine = HFEngine.from_loaded(model, processor)
    rollout = RolloutSettings(m=1, temperature=0.0, max_new_tokens=24)
    correct = 0
    for start in range(0, len(questions), batch_size):
        chunk = questions[start:start + batch_size]
        items = [PromptItem(str(i), q.question, (q.image,)) for i, q in enumerate(chunk)]
        for q, responses in zip(chunk, engine.generate(items, with_images, rollout)):
            correct += grade(q.answer, responses[0].text)[1]
    return correct / max(1, len(questions))


def demo_model_dir(models_dir: Path, recipe: Recipe = Recipe()) -> Path:
    """One folder per recipe: a changed recipe never reuses another recipe's weights."""
    return Path(models_dir) / f"{DEMO_MODEL_VERSION}-{short_hash(asdict(recipe), length=10)}"


def read_meta(model_dir: Path) -> dict | None:
    path = Path(model_dir) / META_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def progress_reporter(emit: Callable[[str], None], every: float = 0.1):
    """A progress callback (stage, step, steps, loss) that emits a line when a stage starts
    and about every `every` of its steps."""
    state = {"last": 0.0, "started": time.perf_counter()}

    def report(stage: str, step: int, steps: int, loss: float) -> None:
        if step == 0:
            state.update(last=0.0, started=time.perf_counter())
            emit(f"demo model training ({stage}): {steps} steps")
            return
        if step / steps - state["last"] < every and step != steps:
            return
        state["last"] = step / steps
        elapsed = time.perf_counter() - state["started"]
        eta = elapsed / step * (steps - step)
        emit(f"demo model training ({stage}): step {step}/{steps} ({step / steps:.0%}), "
             f"loss {loss:.3f}, {elapsed:.0f} s elapsed, about {eta:.0f} s left")
    return report


def ensure_demo_model(models_dir: Path, retrain: bool = False, seed: int = 0,
                      progress: Callable[[str, int, int, float], None] | None = None
                      ) -> tuple[Path, dict | None]:
    """The cached demo model folder, trained on first use (or again when retrain);
    with the training metadata when it was trained by this call."""
    recipe = Recipe(seed=seed)
    target = demo_model_dir(models_dir, recipe)
    if not retrain and read_meta(target) is not None:
        upgrade_rap_folder(target)  # one saved by an older version: no retraining for that
        return target, None
    return target, train_demo_model(target, recipe, progress=progress)


def log_demo_model(settings, model_dir: Path, meta: dict) -> str:
    """Record a training of the demo model (recipe, test accuracy, loss curve) in MLflow."""
    from rap_core.tracking import log_record
    acc = meta["test_accuracy"]
    return log_record(
        settings, "-demo-model", model_dir.name,
        params={"recipe": meta["recipe"], "model_dir": str(model_dir)},
        metrics={"test_accuracy_with_image": acc["with_image"],
                 "test_accuracy_text_only": acc["text_only"], "test_questions": acc["questions"],
                 "seconds": meta["seconds"], "vision_seconds": meta["vision"]["seconds"],
                 "vision_final_loss": meta["vision"]["final_loss"],
                 "train_seconds": meta["train"]["seconds"],
                 "final_loss": meta["train"]["final_loss"]},
        tags={"version": DEMO_MODEL_VERSION, "folder": model_dir.name},
        series={"train_loss": meta["train"]["losses"]},
        artifacts={META_FILE: json.dumps(meta, indent=2)})


def obtain_demo_model(settings, log: Callable[[str], None], retrain: bool = False
                      ) -> tuple[Path, dict | None]:
    """ensure_demo_model with progress lines to `log`; a fresh training is summarised and
    recorded in MLflow (a failed record is reported, the model is still used)."""
    target, trained = ensure_demo_model(settings.models_dir, retrain=retrain,
                                        progress=progress_reporter(log))
    if trained:
        acc = trained["test_accuracy"]
        log(f"demo model trained in {trained['seconds']:.0f} s -> {target}; easy-VQA test "
            f"accuracy {acc['with_image']:.1%} with the image, {acc['text_only']:.1%} "
            f"text only ({acc['questions']} questions, greedy)")
        try:
            log_demo_model(settings, target, trained)
        except Exception as exc:  # the record can be made again with --retrain
            log(f"MLflow logging of the demo model failed: {exc}")
    return target, trained
