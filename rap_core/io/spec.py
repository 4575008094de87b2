"""What a pool is to rap: where it is read from and how its columns are named (DataSpec),
and the embedded default pool."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

BUILTIN_DATA = "builtin:easy-vqa"
EASY_VQA_DEFAULT_ROWS = 1000
# easy-VQA's vocabulary; the builtin pool's rows carry their question type as a column
COLORS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
SHAPES = ("circle", "rectangle", "triangle")
QUESTION_TYPES = ("yes/no", "color", "shape")


def question_type(answer: str) -> str:
    """An easy-VQA question's type, from its answer."""
    if answer in COLORS:
        return "color"
    if answer in SHAPES:
        return "shape"
    return "yes/no"


class DataSpec(BaseModel):
    """Which pool to read and how its columns are named."""

    path: str = Field(BUILTIN_DATA, description="Pool file/folder (JSONL, JSON, Parquet, "
                      "datasets save_to_disk folder) or builtin:easy-vqa")
    limit: int | None = Field(None, ge=1, description="Read at most this many rows (default: "
                              f"all; builtin:easy-vqa reads its first {EASY_VQA_DEFAULT_ROWS:,})")
    question_key: str = Field("problem", description="Column holding the question text")
    answer_key: str = Field("answer", description="Column holding the reference answer")
    image_key: str = Field("images", description="Column holding the image(s)")
    image_dir: str | None = Field(None, description="Folder relative image paths resolve "
                                  "against (default: the data file's folder)")
    allow_outside_paths: bool = Field(False, description="Accept relative image paths that "
                                      "lead outside the data folder (via .. or a symlink)")
    format: Literal["auto", "easyr1", "mmeureka", "openrlhf", "verl", "hf"] = Field(
        "auto", description="Pool layout: auto (from the columns), easyr1, mmeureka (MM-Eureka "
        "conversations), openrlhf (OpenRLHF-M message), verl, hf (datasets folder / parquet)")
