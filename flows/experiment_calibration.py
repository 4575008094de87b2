"""`rap experiment --calibrate`: choose the GRPO miniature's budget for power, never on an arm.

Per calibration seed (not one of the experiment's), a base model is trained as the experiment
trains it; copies of it then get GRPO under each candidate budget on that seed's calibration
questions (training-split questions outside its base questions and its pool, as many as a
pool holds), and are evaluated on that seed's in-distribution and prior-balanced tests. A
budget has power when GRPO on a whole pool's worth of questions improves the base by at
least `MIN_GAIN` of test accuracy; the experiment's budget is fixed from this table before
any arm runs.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import polars as pl

from rap.rap_core.demo.grpo import GrpoSettings, train_grpo
from rap.rap_core.settings import Settings

MIN_GAIN = 0.03


@dataclass(frozen=True)
class Budget:
    name: str
    grpo: GrpoSettings
    base_steps: int = 300  # the base model's answer steps (vision steps: twice as many)


# Candidates at about the same GRPO compute per arm (steps x questions x answers), so the
# experiment's six arms and five seeds fit in about an hour on 2 cores.
CANDIDATES = (
    Budget("lr1e-4", GrpoSettings(lr=1e-4)),  # the earlier protocol's budget
    Budget("lr3e-4", GrpoSettings(lr=3e-4)),
    Budget("lr3e-5", GrpoSettings(lr=3e-5)),
    Budget("lr1e-4-kl", GrpoSettings(lr=1e-4, beta=0.04)),
    Budget("lr3e-4-kl", GrpoSettings(lr=3e-4, beta=0.04)),
    Budget("lr1e-4-8x4", GrpoSettings(lr=1e-4, prompts_per_step=8, generations=4)),
    Budget("weak-lr1e-4", GrpoSettings(lr=1e-4), base_steps=150),
    Budget("weak-lr1e-4-kl", GrpoSettings(lr=1e-4, beta=0.04), base_steps=150),
)



def candidates(names: str | None) -> tuple[Budget, ...]:
    """The candidates named (comma-separated; None: all); ValueError for an unknown name."""
    if not names:
        return CANDIDATES
    known = {b.name: b for b in CANDIDATES}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown or not wanted:
        raise ValueError(f"unknown candidate {', '.join(unknown) or '(none)'} "
                        f"(known: {', '.join(known)})")
    return tuple(known[n] for n in wanted)


def calibrate(settings: Settings, budgets=CANDIDATES, seeds: tuple[int, ...] = (10,),
              cfg=None, log=print) -> pl.DataFrame:
    """One row per seed x budget: the base's and the trained copy's accuracy on both tests."""
    import torch

    from rap.flows.experiment_grpo import (GrpoExperimentConfig, scores_line, evaluate, split,
                                           train_base)
    from rap.flows.report import markdown_table
    from rap.rap_core.tracking import log_record
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 8)))
    cfg = cfg or GrpoExperimentConfig()
    started, rows = time.perf_counter(), []
    for seed in seeds:
        data = split(cfg, seed)
        tests = {"test": data.test, "balanced": data.balanced}
        bases = {}
        for budget in budgets:
            if budget.base_steps not in bases:
                folder = (settings.data_dir / "experiments" / "grpo-calibration" / f"seed{seed}"
                          / f"base{budget.base_steps}")
                base_cfg = replace(cfg, base_steps=budget.base_steps,
                                   base_vision_steps=2 * budget.base_steps)
                model, processor, _ = train_base(base_cfg, seed, data, folder)
                bases[budget.base_steps] = (model, processor,
                                            evaluate(model, processor, tests, text_only=True))
                log(f"calibration seed {seed}: base ({budget.base_steps} answer steps) "
                    f"{scores_line(bases[budget.base_steps][2])}")
            model, processor, before = bases[budget.base_steps]
            trained = copy.deepcopy(model)
            stats = train_grpo(trained, processor, list(data.calibration),
                               replace(budget.grpo, seed=seed))
            after = evaluate(trained, processor, tests, text_only=True)
            rows.append({"seed": seed, "budget": budget.name, "base_steps": budget.base_steps,
                         "steps": budget.grpo.steps, "questions_per_step":
                         budget.grpo.prompts_per_step, "answers": budget.grpo.generations,
                         "lr": f"{budget.grpo.lr:g}", "beta": f"{budget.grpo.beta:g}",
                         "train_seconds": stats.train_seconds,
                         "base_accuracy": before["accuracy"], "accuracy": after["accuracy"],
                         "gain": after["accuracy"] - before["accuracy"],
                         "base_balanced": before["balanced_accuracy"],
                         "balanced": after["balanced_accuracy"],
                         "balanced_gain": after["balanced_accuracy"]
                         - before["balanced_accuracy"],
                         "text_only": after["text_only"],
                         "mean_reward": float(np.mean([r for _, r in stats.reward]))})
            log(f"calibration seed {seed}: {budget.name:<12} {stats.train_seconds:.0f} s -> "
                f"{scores_line(after)} (gain {rows[-1]['gain']:+.3f}, balanced "
                f"{rows[-1]['balanced_gain']:+.3f})")
    table = pl.DataFrame(rows)
    minutes = (time.perf_counter() - started) / 60
    text = (f"GRPO miniature calibration (seeds {list(seeds)}; GRPO on {cfg.pool_size} "
            f"calibration questions per budget; {minutes:.1f} min)\n\n"
            + markdown_table(table, 3) + "\n")
    out = settings.data_dir / "experiments" / "grpo-calibration.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    for row, budget in zip(rows, [b for _ in seeds for b in budgets]):
        log_record(settings, "-miniature-grpo-calibration", f"seed{row['seed']}-{row['budget']}",
                   params={**asdict(budget.grpo), "base_steps": budget.base_steps},
                   metrics={k: v for k, v in row.items()
                            if isinstance(v, (int, float)) and k != "seed"})
    log(text)
    log(f"written to {out}")
    return table
