"""The embedded default model: a tiny Qwen2-VL trained by this project on easy-VQA.

Random init from a seed, then supervised training on the train split with a share of
text-only examples (so the text-only condition reflects a learned language prior) and a
share of questions whose text states the answer (a prior to exploit). Same recipe, same
weights. The recipe, and which folder the default model is, are in recipe.py: the
weights trained by the current recipe ship with rap, so it is trained here only by `rap
demo-model --retrain` (into the data folder), or when the shipped files do not match the
recipe. After changing the recipe, regenerate the shipped files (a test fails until then):

    python -m rap.rap_core.demo.model               # trains by the recipe (~4.5 min on 2 cores)
    python -m rap.rap_core.demo.model --from DIR    # or ships a folder trained by it already
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from rap.rap_core.demo.recipe import (DEMO_MODEL_VERSION, META_FILE, SHIPPED_DIR, Recipe,
                                  demo_model_dir, file_hashes, locate_demo_model, read_meta,
                                  recipe_hash, shipped_problem)
from rap.rap_core.demo.easy_vqa import (COLORS, SHAPES, TRAIN_HINTS, Question, image_facts,
                                    load_split, response, stated_fact, with_hint)
from rap.rap_core.engines.checkpoints import upgrade_rap_folder, write_stock_processor_files
from rap.rap_core.errors import ModelLoadError

__all__ = ["DEMO_MODEL_VERSION", "META_FILE", "Recipe", "demo_model_dir", "read_meta",
           "obtain_demo_model", "train_demo_model"]

def training_examples(questions: list[Question], recipe: Recipe,
                      seed: int | None = None) -> list:
    """One example per question: image kept or removed, hint added or not, by a seeded draw."""
    from rap.rap_core.demo.training import Example  # torch: only when training
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
    from rap.rap_core.demo.tiny_model import build_model, build_processor
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

    from rap.rap_core.demo.training import pretrain_vision, train
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
    correct = greedy_correct(model, processor, questions, with_images, batch_size)
    return sum(correct) / max(1, len(questions))


def greedy_correct(model, processor, questions: list[Question], with_images: bool,
                   batch_size: int = 64) -> list[bool]:
    """Per question: is the greedy answer right (graded as CDE grades)?"""
    from rap.rap_core.engines.base import PromptItem
    from rap.rap_core.grading import grade
    from rap.rap_core.engines.hf import HFEngine
    from rap.rap_core.params import RolloutSettings
    processor.tokenizer.padding_side = "left"
    engine = HFEngine.from_loaded(model, processor)
    rollout = RolloutSettings(m=1, temperature=0.0, max_new_tokens=24)
    correct = []
    for start in range(0, len(questions), batch_size):
        chunk = questions[start:start + batch_size]
        items = [PromptItem(str(i), q.question, (q.image,)) for i, q in enumerate(chunk)]
        for q, responses in zip(chunk, engine.generate(items, with_images, rollout)):
            correct.append(bool(grade(q.answer, responses[0].text)[1]))
    return correct


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


def log_demo_model(settings, model_dir: Path, meta: dict) -> str:
    """Record a training of the demo model (recipe, test accuracy, loss curve) in MLflow."""
    from rap.rap_core.tracking import log_record
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


def obtain_demo_model(settings, log: Callable[[str], None], retrain: bool = False,
                      recipe: Recipe = Recipe(), evaluate_on: int = 1000,
                      progress: Callable[[str, int, int, float], None] | None = None
                      ) -> tuple[Path, dict | None]:
    """The demo model's folder as locate_demo_model finds it, else (or when retrain) trained
    by `recipe` into the data folder, which is then used from then on. A training is logged
    to `log` as it goes, summarised and recorded in MLflow (a failed record is reported, the
    model is still used). `progress` (stage, step, steps, loss) replaces the progress lines."""
    if not retrain:
        try:
            path, note = locate_demo_model(settings.models_dir, recipe)
        except ModelLoadError as exc:
            log(f"demo model: {exc}; training it by the current recipe now")
        else:
            if note:
                log(note)
                upgrade_rap_folder(path)  # one saved by an older version: no retraining for that
            return path, None
    target = demo_model_dir(settings.models_dir, recipe)
    trained = train_demo_model(target, recipe, progress=progress or progress_reporter(log),
                               evaluate_on=evaluate_on)
    acc = trained["test_accuracy"]
    log(f"demo model trained in {trained['seconds']:.0f} s -> {target}; easy-VQA test "
        f"accuracy {acc['with_image']:.1%} with the image, {acc['text_only']:.1%} "
        f"text only ({acc['questions']} questions, greedy); rap uses this folder from now on, "
        f"not the weights shipped with rap (remove it to use those)")
    try:
        log_demo_model(settings, target, trained)
    except Exception as exc:  # the record can be made again with --retrain
        log(f"MLflow logging of the demo model failed: {exc}")
    return target, trained


def ship(trained: Path, folder: Path = SHIPPED_DIR) -> Path:
    """Copy a folder trained by the current recipe to the shipped folder, with the `shipped`
    record (recipe hash, sha256 of each file) that recipe.shipped_problem checks."""
    meta = read_meta(trained)
    if meta is None or meta["recipe"] != asdict(Recipe()):
        raise SystemExit(f"{trained} was not trained by the current recipe")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(trained, folder)
    for path in folder.iterdir():
        path.chmod(0o644)  # installed for every user (save_pretrained writes weights 0600)
    meta["shipped"] = {"recipe_hash": recipe_hash(), "files": file_hashes(folder)}
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return folder


def main(argv: list[str] | None = None) -> None:
    """Regenerate the shipped demo model (see the module docstring)."""
    import argparse
    import tempfile
    parser = argparse.ArgumentParser(prog="python -m rap.rap_core.demo.model",
                                     description="regenerate the shipped demo model")
    parser.add_argument("--from", dest="source", type=Path,
                        help="a folder trained by the current recipe (default: train one now)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source or Path(tmp) / DEMO_MODEL_VERSION
        if args.source is None:
            train_demo_model(source, Recipe(), progress=progress_reporter(print))
        print(f"shipped: {ship(source)}")
    print(shipped_problem() or "it matches the current recipe")


if __name__ == "__main__":
    main()
