"""Writing a selection as a file an RL trainer loads as it is.

EasyR1 layout: `problem` (plain string with `<image>` placeholders), `answer`, `images` as a
list of {bytes, path} structs (the HF Image feature), so the file is self-contained.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from rap_core.prompts import IMAGE_PLACEHOLDER, count_placeholders

IMAGE_STRUCT = pl.Struct({"bytes": pl.Binary, "path": pl.String})


def easyr1_problem(question: str, n_images: int) -> str:
    """EasyR1 needs one placeholder per image; prepend them when the question has none."""
    if n_images and count_placeholders(question) == 0:
        return IMAGE_PLACEHOLDER * n_images + question
    return question


def write_easyr1(selected: pl.DataFrame, out_path: Path) -> Path:
    """selected: sample_id, question, answer, image_paths. Written atomically."""
    rows = [{"problem": easyr1_problem(r["question"], len(r["image_paths"])),
             "answer": r["answer"],
             "images": [{"bytes": Path(p).read_bytes(), "path": Path(p).name}
                        for p in r["image_paths"]],
             "sample_id": r["sample_id"]}
            for r in selected.iter_rows(named=True)]
    frame = pl.DataFrame(rows, schema={"problem": pl.String, "answer": pl.String,
                                       "images": pl.List(IMAGE_STRUCT), "sample_id": pl.String})
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".parquet.tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, out_path)
    return out_path
