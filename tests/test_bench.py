"""Benchmarks that cannot rot: every script in bench/ runs at the smallest sizes that still take
its whole path, in its own process as a user runs it, and the figures it prints (or writes as
JSON) are there and finite. The runs share the session's Prefect server (PREFECT_API_URL)
except one, which starts from a data folder that does not exist yet, as a new user would."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
NUMBER = r"(-?\d[\d,]*\.?\d*(?:e[-+]?\d+)?|nan|inf)"

# script: (arguments, figures: patterns whose groups must all be finite numbers)
CASES = {
    "attention_memory.py": (["--layers", "1,2", "--batch", "1", "--response-len", "4"], [
        rf"ACE peak / plain peak by layers: 1: {NUMBER}, 2: {NUMBER}",
        rf"skips the logits: 1: {NUMBER}, 2: {NUMBER}",
        rf"ACE peak MB from 1 to 2 layers: {NUMBER} -> {NUMBER} \(x{NUMBER}"]),
    "engine.py": (["--batches", "1,2", "--n", "2", "--m", "2", "--max-new-tokens", "3",
                   "--layers", "1", "--profile"], [
        rf"multimodal, batch 2: rap {NUMBER} tokens/s, {NUMBER}x transformers' sampler's "
        rf"seconds per token, {NUMBER} of the machine's limit",
        rf"text-only, batch 1: rap {NUMBER} tokens/s",
        rf"decode step, multimodal, 4 rows: {NUMBER} ms",
        rf"sampler\s+{NUMBER} ms\s+{NUMBER}%"]),
    "engines.py": (["--n", "2", "--m", "2", "--concurrency", "2", "--retokenise-n", "2"], [
        rf"transformers serve, 2 in flight: {NUMBER}x the transformers engine",
        rf"demo model: {NUMBER} of {NUMBER} responses \({NUMBER}%\)",
        rf"random weights: {NUMBER} of {NUMBER} responses \({NUMBER}%\)"]),
    "gpu_check.py": (["--shapes", "small", "--device", "cpu", "--n", "2",
                      "--m", "2", "--max-new-tokens", "4", "--batch", "2",
                      "--batches", "1,auto", "--static-batch", "1", "--flow-n", "4",
                      "--flow-max-new-tokens", "4", "--budget-s", "300"], []),
    "large_model.py": (["--layers", "1", "--n", "1", "--m", "2", "--max-new-tokens", "2"], [
        rf"M=2 in one call vs 2 calls: {NUMBER}x faster",
        rf"ACE peak / plain peak: {NUMBER} \(target <= 1.3\); vs a plain pass without "
        rf"logits: {NUMBER}"]),
    "orchestration.py": (["--n", "8", "--rounds", "1"], [
        rf"flow throughput / bare loop throughput per round: {NUMBER}"]),
    "report_size.py": (["--n", "300"], [rf"\n\s+8\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}",
                                        rf"\n\s+50\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}"]),
    "retune.py": (["--n", "2000", "--rerun-n", "4"], [
        rf"retune total {NUMBER} s", rf"rerun: {NUMBER} samples inferred, {NUMBER}% of the",
        rf"with a running server {NUMBER}%", rf"does nothing costs {NUMBER} s"]),
    "rollouts.py": (["--n", "2", "--m", "2", "--batches", "1", "2"], [
        rf"one batched call vs M calls: {NUMBER}x faster",
        rf"bucketed vs pool order: {NUMBER}x", rf"bfloat16 vs float32: {NUMBER}x"]),
    "scaling.py": (["--sizes", "4", "8"], [
        rf"largest pool / smallest: {NUMBER}", rf"DuckDB writes at most {NUMBER}%"]),
    "settled_rollouts.py": (["--n", "4", "--weak", "DEMO"], [
        rf"demo model: {NUMBER} of {NUMBER} generated tokens saved \({NUMBER}%\)",
        rf"weak base: {NUMBER} of {NUMBER} generated tokens saved \({NUMBER}%\)"]),
    "sweep.py": (["--limit", "8", "--repeat", "1"], [
        rf"sweep of 36 points {NUMBER} s wall", rf"one retune {NUMBER} s"]),
    "gpu_check.sh": (["--shapes", "small", "--device", "cpu", "--budget-s", "1"], []),
}
FRESH = "orchestration.py"  # its own temporary Prefect server and a data folder not yet made


def test_every_bench_script_has_a_smoke_run():
    scripts = {p.name for p in BENCH.iterdir() if p.suffix in (".py", ".sh")} - {"common.py"}
    assert scripts == set(CASES)


@pytest.fixture(scope="module")
def runs(prefect_api_url, tmp_path_factory, demo_model_dir):
    """Every script once, three at a time: {script: (returncode, output, seconds, folder)}."""

    def run(script: str):
        folder = tmp_path_factory.mktemp(script.split(".")[0])
        args = [a.replace("DEMO", str(demo_model_dir)) for a in CASES[script][0]]
        env = dict(os.environ, RAP_DATA_DIR=str(folder / "not-yet" / "data"),
                   OUT=str(folder), PYTHON=sys.executable,
                   OMP_NUM_THREADS="1")  # three runs at a time on two cores
        if script != FRESH:
            env["PREFECT_API_URL"] = prefect_api_url
        else:
            env.pop("PREFECT_API_URL", None)
            env.pop("PREFECT_HOME", None)
        if script == "gpu_check.py":
            args += ["--out", str(folder / "gpu_check.json")]
        command = (["bash", str(BENCH / script)] if script.endswith(".sh")
                   else [sys.executable, str(BENCH / script)]) + args
        start = time.perf_counter()
        done = subprocess.run(command, cwd=folder, env=env, text=True, capture_output=True,
                              timeout=600)
        return script, (done.returncode, done.stdout + done.stderr,
                        time.perf_counter() - start, folder)

    with ThreadPoolExecutor(max_workers=3) as pool:  # much of each run is waiting on a server
        results = dict(pool.map(run, sorted(CASES, key=lambda s: s != "engines.py")))
    print("\nbench smoke runs: " + ", ".join(f"{s} {r[2]:.1f} s" for s, r in results.items()))
    return results


@pytest.mark.parametrize("script", sorted(CASES))
def test_bench_script_runs_and_prints_finite_figures(runs, script):
    code, output, _, folder = runs[script]
    assert code == 0, output[-4000:]
    for pattern in CASES[script][1]:
        found = re.search(pattern, output)
        assert found, f"{pattern!r} not in the output of {script}:\n{output[-3000:]}"
        for value in found.groups():
            assert math.isfinite(float(value.replace(",", ""))), (pattern, found.group(0))


def test_the_gpu_check_records_every_step_it_ran_or_skipped(runs):
    steps = ["build", "save checkpoint", "flow (transformers)", "transformers engine",
             "static cache", "ACE pass memory", "flow (vllm)"]
    ran = json.loads((runs["gpu_check.py"][3] / "gpu_check.json").read_text())
    for name in steps[:-1]:
        assert "seconds" in ran[name] and "failed" not in ran[name], (name, ran[name])
    assert ran["build"]["dtype"] == "float32"  # the CPU's default
    assert ran["flow (transformers)"]["funnel"]["pool_rows"] == 4
    engine = ran["transformers engine"]["rows"]
    assert [(r["condition"], r["batch"]) for r in engine] == [
        (c, b) for c in ("multimodal", "text-only") for b in ("1", "auto")]
    assert all(math.isfinite(r["tokens/s"]) and 0 < r["share of ceiling"] for r in engine)
    assert [r["prompts"] for r in engine] == [1, 2, 1, 2]  # auto on a CPU: 8, capped at --n
    assert "skipped" in ran["flow (vllm)"] or "seconds" in ran["flow (vllm)"]
    # a budget of one second: every step named as skipped, the JSON written all the same
    cut = json.loads((runs["gpu_check.sh"][3] / "gpu_check.json").read_text())
    assert all(cut[name]["skipped"].startswith("would not fit") for name in steps), cut
    assert "would not fit" in runs["gpu_check.sh"][1]


def test_a_benchmark_in_an_unwritable_folder_stops_at_once_with_one_line(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the data folder should be")
    env = dict(os.environ, RAP_DATA_DIR=str(blocked))
    env.pop("PREFECT_API_URL", None)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'bench'); "
                           "from common import data_folder; import os; from pathlib import "
                           f"Path; data_folder(Path({str(blocked / 'data')!r}))"],
                          cwd=BENCH.parent, env=env, text=True, capture_output=True, timeout=60)
    assert done.returncode == 1 and time.perf_counter() - start < 30
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), done.stderr
