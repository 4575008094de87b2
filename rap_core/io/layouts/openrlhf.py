"""OpenRLHF-M / LMM-R1 JSONL: message (stringified OpenAI-style turns with image items), answer."""

from __future__ import annotations

import json

from rap.rap_core.io.layouts.base import Layout, RawSample
from rap.rap_core.io.layouts.chat import from_chat
from rap.rap_core.io.pool_images import RowError
from rap.rap_core.io.spec import DataSpec


def read(raw: dict, spec: DataSpec) -> RawSample:
    message = raw.get("message")
    if isinstance(message, str):
        try:
            message = json.loads(message)
        except RecursionError:
            raise RowError("bad_message", "message is nested too deeply to be read") from None
        except ValueError as exc:
            raise RowError("bad_message", f"message is not valid JSON ({exc})") from exc
    system, question, refs = from_chat(message, "message")
    return RawSample(question, raw.get("answer"), refs, system)


OPENRLHF = Layout("openrlhf", ("message", "answer"), read)
