"""Parameters of one RAP selection run (the flow's typed parameter form).

Defaults are the paper's (RAP_METHOD.md); every field is recorded with each run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from rap_core.grading import GRADER_VERSION
from rap_core.keys import short_hash

BUILTIN_MODEL = "builtin:easy-vqa-vlm"  # trained on easy-VQA by this project (demo_model.py)
BUILTIN_RANDOM_MODEL = "builtin:tiny-qwen2-vl"  # same architecture, random weights
BUILTIN_DATA = "builtin:easy-vqa"
EASY_VQA_DEFAULT_ROWS = 1000


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


class ModelSpec(BaseModel):
    """Which model runs the rollouts, on what device and dtype."""

    path: str = Field(BUILTIN_MODEL, description="Local Qwen2-VL/Qwen2.5-VL checkpoint folder, "
                      f"{BUILTIN_MODEL} (the trained demo model) or {BUILTIN_RANDOM_MODEL} "
                      "(random weights)")
    device: str = Field("cpu", description="torch device, e.g. cpu, cuda, cuda:1")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    system_prompt: str | None = Field(None, description="Optional system turn for every prompt")


class RolloutSettings(BaseModel):
    """How responses are sampled and graded; together they form the rollout settings key."""

    m: int = Field(5, ge=1, le=64, description="Responses per sample and condition")
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(0.99, gt=0.0, le=1.0)
    max_new_tokens: int = Field(64, ge=1)
    seed: int = 0

    def key(self) -> str:
        return short_hash(self.model_dump(), GRADER_VERSION)


class AceSettings(BaseModel):
    """Which attention pass is stored; changing these needs a new attention pass."""

    head_reduce: Literal["mean", "max"] = "mean"
    response: Literal["first_correct", "first"] = Field(
        "first_correct", description="Which multimodal rollout is teacher-forced")

    def key(self, rollout_key: str) -> str:
        return short_hash(self.model_dump(), rollout_key)


class Thresholds(BaseModel):
    """Everything `retune` may change without a model call."""

    lambda_c: float = Field(0.5, description="Keep x iff D(x) > lambda_c")
    sigma: float = Field(2.0, gt=0.0, description="ACE attention scale")
    lambda_a: float = Field(0.1, gt=0.0, description="ACE threshold on psi")
    ace_min_run: int = Field(4, ge=1, description="Columns with fewer rows are ignored")
    ace_direction: Literal["drop_above", "drop_below"] = "drop_above"
    ace_score: Literal["product", "length_normalised"] = "product"
    drm_k: int | Literal["auto"] = Field("auto", description="Replacements, or auto: "
                                         "the survivors with acc_mm = 1")
    drm_require_positive_d: bool = True

    @field_validator("drm_k")
    @classmethod
    def _k_non_negative(cls, v):
        if isinstance(v, int) and v < 0:
            raise ValueError("drm_k must be >= 0 or 'auto'")
        return v


class RapParams(BaseModel):
    """All parameters of the `rap` flow."""

    mode: Literal["select", "retune"] = Field(
        "select", description="select: infer what is missing, then select; retune: "
        "re-select a previous run's pool from stored facts, never loading a model")
    base_run: str | None = Field(None, description="retune: the run to re-select "
                                 "(default: the latest run)")
    data: DataSpec = DataSpec()
    model: ModelSpec = ModelSpec()
    rollout: RolloutSettings = RolloutSettings()
    ace: AceSettings = AceSettings()
    thresholds: Thresholds = Thresholds()
    shard_size: int = Field(256, ge=1, description="Samples per inference task")
    batch_size: int = Field(8, ge=1, description="Samples per forward/generate call")
    export: bool = Field(True, description="Write the selected subset as EasyR1 Parquet")
    track: bool = Field(True, description="Log the run to MLflow")
