"""A deterministic engine for machinery tests: each sample's outcome is scripted.

Registered under the model path prefix "fake:"; the rest of the path names a JSON plan
{sample_id: {"answer", "mm_correct", "text_correct", "col_log_sums"}}.
"""

from __future__ import annotations

import json

import numpy as np

from rap_core.engine import Response, SampleError, register_engine


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
            k = p["mm_correct" if with_images else "text_correct"]
            texts = [f"answer: {p['answer'] if i < k else 'wrong'}" for i in range(rollout.m)]
            out.append([Response(t, (1, 2, 3, 4, 5, 6)) for t in texts])
        return out

    def attention_column_log_sums(self, items, head_reduce):
        self.calls["attention"] += 1
        return [np.array(self.plan[it.sample_id]["col_log_sums"], dtype=float) for it in items]


def install(plan_path):
    """Route 'fake:<plan_path>' to a FakeEngine; returns the model path to use."""
    def loader(path, device, dtype, system_prompt):
        return FakeEngine(json.loads(open(path.removeprefix("fake:")).read()))
    register_engine("fake:", loader)
    return f"fake:{plan_path}"
