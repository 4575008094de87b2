"""A deterministic engine for machinery tests: each sample's outcome is scripted.

Registered under the model path prefix "fake:"; the rest of the path names a JSON plan
{sample_id: {"answer", "mm_correct", "text_correct", "col_log_sums", "error", "context"}}:
of M rollouts, the first `mm_correct` (with the image) or `text_correct` (without) give the
answer; `error` fails the sample; `context` fails it as prompt_too_long when max_new_tokens
exceeds it. `script_pool` writes a plan for a pool's samples, in pool order.
"""

from __future__ import annotations

import json

import numpy as np

from rap.rap_core.engines.base import Response, SampleError, register_engine


class FakeEngine:
    def __init__(self, plan: dict):
        self.plan = plan
        self.calls = {"generate": 0, "attention": 0}

    def generate(self, items, with_images, rollout):
        self.calls["generate"] += 1
        out = []
        for it in items:
            p = self.plan[it.sample_id]
            if p.get("error"):
                out.append(SampleError(p["error"], "scripted failure"))
                continue
            if rollout.max_new_tokens > p.get("context", rollout.max_new_tokens):
                out.append(SampleError("prompt_too_long", f"max_new_tokens "
                                       f"{rollout.max_new_tokens} > context {p['context']}"))
                continue
            k = p["mm_correct" if with_images else "text_correct"]
            texts = [f"answer: {p['answer'] if i < k else 'wrong'}" for i in range(rollout.m)]
            out.append([Response(t, (1, 2, 3, 4, 5, 6)) for t in texts])
        return out

    def attention_column_log_sums(self, items, head_reduce):
        self.calls["attention"] += 1
        return [np.array(self.plan[it.sample_id]["col_log_sums"], dtype=float) for it in items]


LOADS: list[str] = []  # every FakeEngine load, by model path: "was the model loaded?"


def install(plan_path):
    """Route 'fake:<plan_path>' to a FakeEngine; returns the model path to use."""
    def loader(path, device, dtype, system_prompt):
        LOADS.append(path)
        return FakeEngine(json.loads(open(path.removeprefix("fake:")).read()))
    register_engine("fake:", loader)
    return f"fake:{plan_path}"


def outcome(mm_correct: int, text_correct: int, hot: bool = False, error: str | None = None,
            **extra) -> dict:
    """One sample's script; `hot` attention is over-trusted (psi far above any lambda_a)."""
    return {"mm_correct": mm_correct, "text_correct": text_correct, "error": error,
            "col_log_sums": [-0.1 if hot else -20.0] * 6, **extra}


def script_pool(spec, folder, outcomes: list[dict]) -> str:
    """A plan giving the samples `spec` reads (in pool order) these outcomes, installed;
    returns the model path to use."""
    from rap.rap_core.io.readers import read_pool
    samples = read_pool(spec, folder / "images").samples
    assert samples.height == len(outcomes), (samples.height, len(outcomes))
    plan = {sid: {"answer": answer, **o} for sid, answer, o in
            zip(samples["sample_id"], samples["answer"], outcomes)}
    path = folder / "plan.json"
    path.write_text(json.dumps(plan))
    return install(path)
