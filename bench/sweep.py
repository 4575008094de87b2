"""Benchmark 10: `rap sweep` against `rap retune`, both as commands (process start included),
on the default run's stored facts, in one run. Target: the 36-point grid
`--lambda-c 0:0.8:0.1 --lambda-a 1e-6,1e-5,1e-4,0.1` in under 3 s of wall time.

    .venv/bin/python bench/sweep.py [--data-dir rap_data] [--limit 1000] [--repeat 3]

With --data-dir, the latest run of that data folder is swept (nothing is written to it but
the one retune's run); without it, a fresh data folder gets the default selection first
(`rap select --limit N --no-track`, not timed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, table

GRID = ["--lambda-c", "0:0.8:0.1", "--lambda-a", "1e-6,1e-5,1e-4,0.1"]


def wall(args: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(args, env=env, text=True, capture_output=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="a data folder with a selection run already")
    parser.add_argument("--limit", type=int, default=1000, help="rows of the fresh selection")
    parser.add_argument("--repeat", type=int, default=3, help="timings of each command")
    args = parser.parse_args()
    rap = str(Path(sys.executable).with_name("rap"))
    data = Path(args.data_dir or tempfile.mkdtemp(prefix="rap-bench-sweep-")).resolve()
    env = dict(os.environ, RAP_DATA_DIR=str(data))
    print(f"machine: {machine()}")
    if not args.data_dir:
        seconds, _ = wall([rap, "select", "--limit", str(args.limit), "--no-track",
                           "--no-export"], env)
        print(f"default selection on {args.limit} rows first: {seconds:.1f} s (not timed)")
    rows, outputs = [], {}
    for name, cmd in (("rap sweep (36 points)", [rap, "sweep", *GRID]),
                      ("rap retune (1 point)", [rap, "retune", "--lambda-c", "0.3",
                                                "--no-track", "--no-export"])):
        times = []
        for _ in range(args.repeat if "sweep" in name else 1):
            seconds, outputs[name] = wall(cmd, env)
            times.append(seconds)
        rows.append({"command": name, "runs": len(times), "min s": min(times),
                     "median s": sorted(times)[len(times) // 2], "max s": max(times),
                     "s per point": min(times) / (36 if "sweep" in name else 1)})
    print(table(rows))
    points = outputs["rap sweep (36 points)"].splitlines()[0]
    sweep_s, retune_s = rows[0]["median s"], rows[1]["min s"]
    print(f"    {points}")
    print(f"    sweep of 36 points {sweep_s:.2f} s wall (target < 3 s: "
          f"{'met' if sweep_s < 3 else 'NOT met'}); one retune {retune_s:.2f} s, so 36 "
          f"retunes would take about {36 * retune_s:.0f} s ({36 * retune_s / sweep_s:.0f}x)")


if __name__ == "__main__":
    main()
