"""What every layout turns a raw row into (RawSample), and what a layout is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rap.rap_core.io.spec import DataSpec


@dataclass
class RawSample:
    """One input row in the common shape, before its images are checked."""

    question: object
    answer: object
    images: list
    system: str | None = None


def as_list(images) -> list:
    if images is None:
        return []
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]


@dataclass(frozen=True)
class Layout:
    name: str
    required: tuple[str, ...]  # columns that identify the layout
    read: Callable[[dict, DataSpec], RawSample]

    def columns(self, spec: DataSpec) -> tuple[str, ...]:
        return (spec.question_key, spec.answer_key) if self.name in ("easyr1", "hf") \
            else self.required
