"""The pool layouts, one module each, and how a pool's layout is found (named by
DataSpec.format, or detected from the first row's columns)."""

from __future__ import annotations

from rap.rap_core.errors import PoolReadError
from rap.rap_core.io.layouts.base import Layout, RawSample, as_list
from rap.rap_core.io.layouts.columns import EASYR1, HF
from rap.rap_core.io.layouts.mmeureka import MMEUREKA
from rap.rap_core.io.layouts.openrlhf import OPENRLHF
from rap.rap_core.io.layouts.verl import VERL
from rap.rap_core.io.spec import DataSpec

LAYOUTS = {layout.name: layout for layout in (MMEUREKA, OPENRLHF, VERL, EASYR1, HF)}
__all__ = ["LAYOUTS", "Layout", "RawSample", "as_list", "detect_layout"]


def detect_layout(first: dict, spec: DataSpec) -> Layout:
    """The layout named by spec.format, or the one the first row's columns match."""
    if spec.format != "auto":
        layout = LAYOUTS[spec.format]
        missing = [c for c in layout.columns(spec) if c not in first]
        if missing:
            raise PoolReadError(f"{spec.path}: missing column(s) {missing} for format "
                                f"{spec.format}; columns found: {sorted(first)}")
        return layout
    found = [n for n in ("mmeureka", "openrlhf", "verl")
             if all(c in first for c in LAYOUTS[n].required)]
    if spec.question_key in first and spec.answer_key in first:
        found.append("easyr1")
    if len(found) > 1:
        raise PoolReadError(f"{spec.path}: the columns fit several formats ({', '.join(found)})"
                            "; pass format (--format) to choose one")
    if not found:
        missing = [k for k in (spec.question_key, spec.answer_key) if k not in first]
        raise PoolReadError(
            f"{spec.path}: missing column(s) {missing}; columns found: {sorted(first)}. Not "
            "MM-Eureka (conversations, answer), OpenRLHF-M (message, answer) or verl (prompt, "
            "reward_model) either: set question_key/answer_key/image_key to map the columns")
    return LAYOUTS[found[0]]
