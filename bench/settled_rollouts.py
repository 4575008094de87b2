"""Benchmark 7: what skipping settled rollouts saves. `rap select` with the default (text-only
rollouts only where a multimodal answer was right) against `--all-rollouts`, each in a fresh
data folder, on (1) the default pool with the shipped demo model and (2) the same pool with a
weak model (the GRPO miniature's base for seed 0: 2,000 questions, 600 + 300 steps; trained
here first, about 1.5 min, unless --weak DIR). Prints generated tokens, inference seconds and
whether the decisions (state, stage, reason of every row) are identical.

    .venv/bin/python bench/settled_rollouts.py [--n 1000] [--weak DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from common import machine, table


def weak_model(work: Path) -> str:
    from rap.flows.experiment_grpo import GrpoExperimentConfig, split, train_base
    cfg = GrpoExperimentConfig()
    out = work / "weak-base"
    train_base(cfg, 0, split(cfg, 0), out)
    return str(out)


def select(work: Path, name: str, model: str, n: int, all_rollouts: bool) -> tuple[dict, list]:
    """One `rap select` in its own process and data folder (so no Prefect result cache or
    loaded model is shared between the runs compared)."""
    import subprocess
    import sys

    from rap.rap_core.store import open_store
    data = work / name
    command = [str(Path(sys.executable).with_name("rap")), "select", "--limit", str(n),
               "--model", model, "--no-track", "--no-export"] + (
        ["--all-rollouts"] if all_rollouts else [])
    done = subprocess.run(command, env=dict(os.environ, RAP_DATA_DIR=str(data)), text=True,
                          capture_output=True, check=True)
    with open_store(data / "rap.duckdb", read_only=True) as store:
        run_id = store.con.execute("SELECT max(run_id) FROM selection_runs").fetchall()[0][0]
        decided = store.con.execute(
            "SELECT source_row, state, stage, reason FROM decisions WHERE run_id = $r "
            "ORDER BY source_row", {"r": run_id}).fetchall()
        phases = dict(store.con.execute(
            "SELECT condition, sum(len(token_ids)) FROM rollouts GROUP BY ALL").fetchall())
    out = done.stdout
    return {"inference_s": float(out.split("samples inferred ")[1].split("(")[1].split(" s")[0]),
            "tokens": {"multimodal": int(phases.get("mm", 0)),
                       "text-only": int(phases.get("text", 0))},
            "skipped": int(out.split("rollouts skipped for ")[1].split()[0])
            if "rollouts skipped for " in out else 0,
            "selected": len([d for d in decided if d[1] == "selected"])}, decided


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="pool rows (default 1000)")
    parser.add_argument("--weak", help="a weak model folder (default: train one)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rap-bench-settled-"))
    models = {"demo model": "builtin:easy-vqa-vlm", "weak base": args.weak or weak_model(work)}
    rows = []
    for label, model in models.items():
        runs = {}
        for mode in ("all rollouts", "settled skipped"):
            result, decided = select(work, f"{label}-{mode}".replace(" ", "-"), model, args.n,
                                     all_rollouts=mode == "all rollouts")
            runs[mode] = decided
            rows.append({
                "model": label, "mode": mode,
                "tokens multimodal": result["tokens"]["multimodal"],
                "tokens text-only": result["tokens"]["text-only"],
                "text-only skipped": result["skipped"],
                "inference s": result["inference_s"], "selected": result["selected"]})
        rows[-1]["same decisions"] = runs["all rollouts"] == runs["settled skipped"]
        rows[-2]["same decisions"] = ""
    print(machine())
    print(f"{args.n} easy-VQA rows, M = 5, default thresholds")
    print(table(rows))
    for label in models:
        a, b = [r for r in rows if r["model"] == label]
        saved = a["tokens multimodal"] + a["tokens text-only"] - b["tokens multimodal"] \
            - b["tokens text-only"]
        total = a["tokens multimodal"] + a["tokens text-only"]
        print(f"{label}: {saved:,} of {total:,} generated tokens saved "
              f"({saved / max(total, 1):.1%}), inference {a['inference s']} s -> "
              f"{b['inference s']} s")


if __name__ == "__main__":
    main()
