"""EasyR1 / HF layout: question, answer and images columns, named by the DataSpec (JSONL, JSON,
Parquet, or a datasets folder with an Image feature)."""

from __future__ import annotations

from rap.rap_core.io.layouts.base import Layout, RawSample, as_list
from rap.rap_core.io.spec import DataSpec


def read(raw: dict, spec: DataSpec) -> RawSample:
    """EasyR1 / HF layout: question, answer, images columns (names from the spec); a `system`
    column, when there is one, is the sample's system prompt."""
    system = raw.get("system")
    return RawSample(raw.get(spec.question_key), raw.get(spec.answer_key),
                     as_list(raw.get(spec.image_key)), system if isinstance(system, str) else None)


EASYR1 = Layout("easyr1", (), read)
HF = Layout("hf", (), read)
