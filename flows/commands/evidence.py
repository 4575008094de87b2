"""The demo model, the planted-prior validation and the GRPO miniature."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

from rap.flows.commands.common import open_range, say
from rap.rap_core.settings import Settings

def demo_model(settings: Settings, retrain: bool) -> str:
    from rap.flows.terminal import TrainingBars, terminal_progress
    from rap.rap_core.demo.model import obtain_demo_model, read_meta
    with terminal_progress() as progress:
        path, trained = obtain_demo_model(settings, say, retrain=retrain,
                                          progress=progress and TrainingBars(progress))
    meta = trained or read_meta(path)
    acc, fit, vision = meta["test_accuracy"], meta["train"], meta["vision"]
    source = ("trained now" if trained else "shipped with rap" if meta.get("shipped")
              else "trained earlier in the data folder")
    return "\n".join([
        f"demo model {meta['version']} ({source}): {path}",
        f"  trained in {meta['seconds']:.0f} s: vision tower {vision['steps']} steps "
        f"({vision['seconds']:.0f} s), then {fit['steps']} steps on {fit['examples_seen']} "
        f"easy-VQA examples ({fit['seconds']:.0f} s), final loss {fit['final_loss']:.3f}",
        f"  test accuracy (greedy, {acc['questions']} test questions): "
        f"{acc['with_image']:.1%} with the image, {acc['text_only']:.1%} text only",
        f"  use it: rap select (default) or --model {path}"])



def demo_model_command(settings: Settings,
                       retrain: Annotated[bool, typer.Option(
                           help="train it again from scratch (minutes)")] = False) -> None:
    """Show the embedded easy-VQA model (shipped with rap) and its test accuracy, or train
    it again."""
    print(demo_model(settings, retrain))


def validate_command(settings: Settings,
                     n: Annotated[int, typer.Option(min=2, max=9673,
                                                    help="test questions")] = 1000,
                     share: Annotated[float, typer.Option(
                         callback=open_range(0.0, 1.0),
                         help="share rewritten to give the answer away, in (0, 1)")] = 0.3,
                     seed: int = 0,
                     model: Annotated[Optional[str], typer.Option(
                         help="model folder", show_default="the demo model")] = None,
                     phrasing: Annotated[Literal["seen", "unseen"], typer.Option(
                         help="plant statements in phrasings the demo model was trained to "
                         "read (seen) or in new ones (unseen)")] = "seen") -> None:
    """Planted language priors (ROC AUC of D) and the funnel by question type, on easy-VQA
    test questions."""
    from rap.flows.validate import validate
    report = validate(settings, n=n, share=share, seed=seed, model=model, phrasing=phrasing)
    print(report["text"])
    print(f"\nreport written to {report['report_path']}")


def _seed_list(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of integers")
    return seeds


def experiment_command(settings: Settings,
                       trainer: Annotated[Literal["grpo", "sft"], typer.Option(
                           help="grpo: reinforcement learning on each arm's subset with "
                           "equal steps (the paper's setting); sft: supervised continuation, "
                           "equal epochs (the earlier stand-in)")] = "grpo",
                       seeds: Annotated[Optional[str], typer.Option(
                           callback=_seed_list, help="comma-separated seeds",
                           show_default="grpo 0,1,2,3,4; sft 0,1,2; --calibrate 10")] = None,
                       calibrate: Annotated[bool, typer.Option(
                           "--calibrate", help="grpo: instead of the arms, run the candidate "
                           "GRPO budgets on calibration questions (never an arm) and report "
                           "each one's gain over the base model")] = False,
                       budgets: Annotated[Optional[str], typer.Option(
                           help="--calibrate: comma-separated candidate names",
                           show_default="all of flows/experiment_calibration.CANDIDATES")
                       ] = None,
                       pool_size: Annotated[Optional[int], typer.Option(
                           min=10, max=30000, help="training questions the methods select "
                           "from", show_default="grpo 1000, sft 3000")] = None,
                       steps: Annotated[int, typer.Option(
                           min=1, max=100000, help="grpo: GRPO steps per arm")] = 120,
                       generations: Annotated[int, typer.Option(
                           min=2, max=64, help="grpo: answers sampled per question (the "
                           "group)")] = 8,
                       questions_per_step: Annotated[int, typer.Option(
                           min=1, max=1024, help="grpo: questions per GRPO step")] = 4,
                       lr: Annotated[float, typer.Option(
                           callback=open_range(0.0, 1.0), help="grpo: learning rate")] = 3e-5,
                       beta: Annotated[float, typer.Option(
                           min=0.0, max=10.0, help="grpo: KL term's weight (0: none, TRL's "
                           "default)")] = 0.0,
                       test_questions: Annotated[int, typer.Option(
                           min=10, max=9673, help="grpo: test questions evaluated")] = 1000,
                       balanced_from: Annotated[int, typer.Option(
                           min=10, max=8000, help="grpo: other test questions the "
                           "prior-balanced test is drawn from (about half remain)")] = 3000,
                       base_questions: Annotated[int, typer.Option(
                           min=10, max=20000, help="grpo: questions the base model is "
                           "trained on")] = 2000,
                       base_steps: Annotated[int, typer.Option(
                           min=1, max=100000, help="grpo: the base model's answer steps "
                           "(vision steps: twice as many)")] = 300,
                       base_model: Annotated[Optional[str], typer.Option(
                           help="grpo: start every seed from this model folder instead of "
                           "training a base model")] = None,
                       epochs: Annotated[float, typer.Option(
                           callback=open_range(0.0, 100.0),
                           help="sft: epochs over each subset")] = 3.0) -> None:
    """A miniature of the paper's claim: GRPO on six arms (RAP, RAP with a coverage floor,
    pass_band, random and stratified random of RAP's size, the whole pool), five seeds, on an
    in-distribution and a prior-balanced test (about 46 min on 2 cores); --calibrate: the
    budget's calibration runs; --trainer sft: the earlier supervised stand-in."""
    if trainer == "sft":
        from rap.flows.experiment import ExperimentConfig, run_experiment
        run_experiment(settings, ExperimentConfig(seeds=seeds or (0, 1, 2),
                                                  pool_size=pool_size or 3000,
                                                  epochs=epochs), log=say)
        return
    from rap.flows.experiment_grpo import GrpoExperimentConfig, run_grpo_experiment
    from rap.rap_core.demo.grpo import GrpoSettings
    cfg = GrpoExperimentConfig(
        seeds=seeds or (0, 1, 2, 3, 4), pool_size=pool_size or 1000,
        test_questions=test_questions, balanced_from=balanced_from,
        base_questions=base_questions, base_steps=base_steps,
        base_vision_steps=2 * base_steps, base_model=base_model,
        grpo=GrpoSettings(steps=steps, generations=generations,
                          prompts_per_step=questions_per_step, lr=lr, beta=beta))
    if calibrate:
        from rap.flows.experiment_calibration import calibrate as run_calibration, candidates
        try:
            chosen = candidates(budgets)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--budgets")
        run_calibration(settings, chosen, seeds=seeds or (10,), cfg=cfg, log=say)
        return
    run_grpo_experiment(settings, cfg, log=say)
