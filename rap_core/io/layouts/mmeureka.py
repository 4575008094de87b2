"""MM-Eureka JSONL: id, conversations (system/user turns), answer, image_urls."""

from __future__ import annotations

from rap.rap_core.io.layouts.base import Layout, RawSample, as_list
from rap.rap_core.io.layouts.chat import from_chat
from rap.rap_core.io.spec import DataSpec


def read(raw: dict, spec: DataSpec) -> RawSample:
    system, question, refs = from_chat(raw.get("conversations"), "conversations")
    return RawSample(question, raw.get("answer"), refs + as_list(raw.get("image_urls")), system)


MMEUREKA = Layout("mmeureka", ("conversations", "answer"), read)
