"""verl Parquet: prompt (chat list), images, reward_model.ground_truth, data_source,
extra_info.index."""

from __future__ import annotations

from rap.rap_core.io.layouts.base import Layout, RawSample, as_list
from rap.rap_core.io.layouts.chat import from_chat
from rap.rap_core.io.spec import DataSpec


def read(raw: dict, spec: DataSpec) -> RawSample:
    system, question, refs = from_chat(raw.get("prompt"), "prompt")
    reward = raw.get("reward_model")
    truth = reward.get("ground_truth") if isinstance(reward, dict) else None
    return RawSample(question, truth, refs + as_list(raw.get("images")), system)


VERL = Layout("verl", ("prompt", "reward_model"), read)
