"""Parameters of one RAP selection run (the flow's typed parameter form).

Defaults are the paper's (README: How it runs); every field is recorded with each run.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic.fields import FieldInfo

from rap.rap_core.estimators import METHODS
from rap.rap_core.estimators.ace import AceThresholds
from rap.rap_core.estimators.cde import CdeThresholds
from rap.rap_core.estimators.coverage import CoverageThresholds
from rap.rap_core.estimators.drm import DrmThresholds
from rap.rap_core.estimators.pass_band import PassBandThresholds
from rap.rap_core.estimators.random_subset import RandomThresholds
from rap.rap_core.grading import GRADER_VERSION
from rap.rap_core.io.spec import BUILTIN_DATA, EASY_VQA_DEFAULT_ROWS, DataSpec  # noqa: F401
from rap.rap_core.keys import FactKeys, short_hash  # noqa: F401

BUILTIN_MODEL = "builtin:easy-vqa-vlm"  # trained on easy-VQA by this project (rap_core/demo/)
BUILTIN_RANDOM_MODEL = "builtin:tiny-qwen2-vl"  # same architecture, random weights
class ModelSpec(BaseModel):
    """Which model runs the rollouts, on what device and dtype."""

    path: str = Field(BUILTIN_MODEL, description="Local Qwen2-VL/Qwen2.5-VL checkpoint folder, "
                      f"{BUILTIN_MODEL} (the trained demo model) or {BUILTIN_RANDOM_MODEL} "
                      "(random weights)")
    device: str = Field("cpu", description="torch device, e.g. cpu, cuda, cuda:1")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        "float32", description="Model weights dtype; auto: bfloat16 on GPUs and CPUs with "
        "native bfloat16 (avx512_bf16/amx), float16 on older GPUs, else float32")
    system_prompt: str | None = Field(None, description="Optional system turn for every prompt")
    engine: Literal["transformers", "openai", "vllm"] = Field(
        "transformers", description="What generates the rollouts: transformers (in this "
        "process), openai (an OpenAI-compatible server: vLLM, SGLang, transformers serve; "
        "--model is then the local folder of the model it serves, for the attention pass) "
        "or vllm (vLLM's offline engine in this process; vLLM installed beside rap)")
    engine_url: str | None = Field(None, description="openai: the server's base URL, e.g. "
                                   "http://127.0.0.1:8000/v1")
    engine_model: str | None = Field(None, description="openai: the served model's name "
                                     "(default: the only model the server lists)")
    engine_concurrency: int = Field(16, ge=1, le=1024, description="openai: requests in "
                                    "flight at once")
    engine_timeout_s: float = Field(600.0, gt=0.0, description="openai: seconds one request "
                                    "may take before it is retried")

    @model_validator(mode="after")
    def _engine_url_given(self) -> "ModelSpec":
        if self.engine == "openai" and not self.engine_url:
            raise ValueError("engine openai needs engine_url (the server's base URL, e.g. "
                             "http://127.0.0.1:8000/v1)")
        if self.engine_url and not self.engine_url.startswith(("http://", "https://")):
            raise ValueError(f"engine_url {self.engine_url!r} is not an http(s) URL")
        return self

    def engine_config(self, served_model: str | None = None) -> "EngineConfig | None":
        """What load_engine needs besides the checkpoint (None: the transformers engine)."""
        if self.engine == "transformers":
            return None
        return EngineConfig(self.engine, self.engine_url, served_model or self.engine_model,
                            self.engine_concurrency, self.engine_timeout_s)


@dataclass(frozen=True)
class EngineConfig:
    """A serving engine's settings, hashable (load_engine caches one engine per process)."""

    kind: str
    url: str | None = None
    served_model: str | None = None
    concurrency: int = 16
    timeout_s: float = 600.0


class RolloutSettings(BaseModel):
    """How responses are sampled and graded; together they form the rollout settings key."""

    m: int = Field(5, ge=1, le=64, description="Responses per sample and condition")
    temperature: float = Field(1.0, ge=0.0, description="Sampling temperature")
    top_p: float = Field(0.99, gt=0.0, le=1.0, description="Nucleus sampling mass")
    max_new_tokens: int = Field(64, ge=1, description="Response length cap in tokens")
    seed: int = Field(0, description="Sampling seed (each rollout has its own stream)")

    @property
    def rows_per_prompt(self) -> int:
        """Sequences one prompt generates: M, or one at temperature 0 (greedy, repeated)."""
        return self.m if self.temperature else 1

    def key(self, engine: str = "transformers") -> str:
        """The rollout settings key; a serving engine's kind is part of it (its samples
        differ from transformers' at the same seed), the transformers engine's is not."""
        extra = () if engine == "transformers" else (engine,)
        return short_hash(self.model_dump(), GRADER_VERSION, *extra)


class AceSettings(BaseModel):
    """Which attention pass is stored; changing these needs a new attention pass."""

    head_reduce: Literal["mean", "max"] = Field(
        "mean", description="ACE: how the final layer's heads are reduced")
    response: Literal["first_correct", "first"] = Field(
        "first_correct", description="Which multimodal rollout is teacher-forced")

    def key(self, rollout_key: str) -> str:
        return short_hash(self.model_dump(), rollout_key)


class Thresholds(CoverageThresholds, RandomThresholds, PassBandThresholds, DrmThresholds,
                 AceThresholds, CdeThresholds):
    """Everything `retune` may change without a model call: every estimator's thresholds,
    flat (each estimator module defines its own; rap_core/estimators)."""


class RunnerSpec(BaseModel):
    """Where the inference shards run; never part of a fact's key (same seed, same facts)."""

    kind: Literal["local", "ray"] = Field(
        "local", description="local: in the flow's process; ray: shards as Prefect tasks on "
        "Ray (pip install .[ray]), each worker loading the model once")
    address: str | None = Field(None, description="Ray cluster to join (e.g. ray://head:10001 "
                                "or auto); none: start a local Ray for the run")
    num_gpus: float | None = Field(None, ge=0.0, description="GPUs per shard task (default: "
                                   "1 when the Ray cluster has GPUs, else 0)")
    num_cpus: float = Field(1.0, gt=0.0, description="CPUs per shard task")


class RapParams(BaseModel):
    """All parameters of the `rap` flow."""

    mode: Literal["select", "retune"] = Field(
        "select", description="select: infer what is missing, then select; retune: "
        "re-select a previous run's pool from stored facts, never loading a model")
    base_run: str | None = Field(None, description="retune: the run to re-select "
                                 "(default: the latest run)")
    method: str = Field("rap", description="Selection method: rap (CDE -> ACE -> DRM), "
                        "pass_band (multimodal pass rate in a band) or random (a seeded "
                        "subset); only the facts it needs are inferred")
    data: DataSpec = DataSpec()
    model: ModelSpec = ModelSpec()
    rollout: RolloutSettings = RolloutSettings()
    ace: AceSettings = AceSettings()
    thresholds: Thresholds = Thresholds()
    runner: RunnerSpec = RunnerSpec()
    all_rollouts: bool = Field(False, description="Also run the text-only rollouts of samples "
                               "none of whose multimodal rollouts is right (they cannot pass "
                               "CDE at lambda_c >= 0 nor be DRM replacements); a select at "
                               "lambda_c < 0 runs them anyway; needed to retune later with "
                               "lambda_c < 0")
    shard_size: int = Field(256, ge=1, description="Samples per inference task")
    batch_size: Union[Literal["auto"], Annotated[int, Field(ge=1)]] = Field(
        "auto", description="Samples per forward/generate call; auto: on CUDA as many as "
        "the device's free memory holds (KV cache and activations of the shard's longest "
        "prompt plus max_new_tokens), elsewhere 8; a batch that runs out of memory is split")
    export: bool = Field(True, description="Write the selected subset as EasyR1 Parquet")
    wait_for_lock: float = Field(0.0, ge=0.0, le=86400.0, description="Seconds to wait for "
                                 "another run writing the same data folder (0: stop at once)")
    track: bool = Field(True, description="Log the run to MLflow")

    @field_validator("batch_size", mode="before")
    @classmethod
    def _auto_or_positive(cls, value):
        if value == "auto":
            return value
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            value = int(value)
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("must be auto or a whole number of samples >= 1")
        return value

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in METHODS:
            raise ValueError(f"unknown method {value!r} (one of {', '.join(sorted(METHODS))})")
        return value


# The flow's parameters are flat (`prefect deployment run rap/retune --param lambda_c=0.3`);
# each maps onto one field of RapParams, which keeps them grouped for the code.
FLOW_PARAMETERS: dict[str, tuple[str | None, str]] = {
    "mode": (None, "mode"), "run": (None, "base_run"), "method": (None, "method"),
    "data": ("data", "path"), "limit": ("data", "limit"),
    "question_key": ("data", "question_key"), "answer_key": ("data", "answer_key"),
    "image_key": ("data", "image_key"), "image_dir": ("data", "image_dir"),
    "format": ("data", "format"), "allow_outside_paths": ("data", "allow_outside_paths"),
    "model": ("model", "path"), "device": ("model", "device"), "dtype": ("model", "dtype"),
    "system_prompt": ("model", "system_prompt"),
    "engine": ("model", "engine"), "engine_url": ("model", "engine_url"),
    "engine_model": ("model", "engine_model"),
    "engine_concurrency": ("model", "engine_concurrency"),
    "engine_timeout_s": ("model", "engine_timeout_s"),
    "m": ("rollout", "m"), "temperature": ("rollout", "temperature"),
    "top_p": ("rollout", "top_p"), "max_new_tokens": ("rollout", "max_new_tokens"),
    "seed": ("rollout", "seed"),
    "head_reduce": ("ace", "head_reduce"), "ace_response": ("ace", "response"),
    **{name: ("thresholds", name) for name in Thresholds.model_fields},
    "runner": ("runner", "kind"), "ray_address": ("runner", "address"),
    "ray_num_gpus": ("runner", "num_gpus"), "ray_num_cpus": ("runner", "num_cpus"),
    "all_rollouts": (None, "all_rollouts"),
    "shard_size": (None, "shard_size"), "batch_size": (None, "batch_size"),
    "export": (None, "export"), "track": (None, "track"),
    "wait_for_lock": (None, "wait_for_lock"),
}


# flat parameters besides the thresholds that a retune not given them takes from its base run
INHERITED_CHOICES = ("track",)


def _group_model(group: str | None) -> type[BaseModel]:
    return RapParams if group is None else RapParams.model_fields[group].annotation


def flow_parameter_fields() -> dict[str, FieldInfo]:
    """Each flat parameter's field (type, default, constraints, description). A threshold is
    optional: not given (None) means its default for a selection, the base run's value for
    a retune."""
    fields = {}
    for name, (group, field) in FLOW_PARAMETERS.items():
        info = _group_model(group).model_fields[field]
        fields[name] = (_not_given_means_inherited(info) if group == "thresholds"
                        or name in INHERITED_CHOICES else info)
    return fields


def _not_given_means_inherited(info: FieldInfo) -> FieldInfo:
    optional = copy.copy(info)
    optional.annotation = Optional[info.annotation]
    default = "" if info.default is None else f"default {info.default}; "
    optional.description = f"{info.description} ({default}a retune: the base run's)"
    optional.default = None
    return optional


def params_from_flat(values: dict) -> RapParams:
    """RapParams from flat flow parameters (unknown names are refused; a threshold given as
    None is not given)."""
    nested: dict = {}
    for name, value in values.items():
        if name not in FLOW_PARAMETERS:
            raise ValueError(f"unknown rap parameter {name!r}")
        group, field = FLOW_PARAMETERS[name]
        if (group == "thresholds" or name in INHERITED_CHOICES) and value is None:
            continue
        (nested if group is None else nested.setdefault(group, {}))[field] = value
    return RapParams.model_validate(nested)


def flat_params(params: RapParams) -> dict:
    """The flat flow parameters that reproduce params (thresholds not given stay None)."""
    dumped, given = params.model_dump(), params.thresholds.model_fields_set
    return {name: (None if name in INHERITED_CHOICES and field not in params.model_fields_set
                   else dumped[field]) if group is None else
            None if group == "thresholds" and field not in given else dumped[group][field]
            for name, (group, field) in FLOW_PARAMETERS.items()}


def dotted(params: dict, prefix: str = "") -> dict[str, str]:
    """Nested parameters as {"group.field": text} ("" for None), as MLflow and the report
    page show them."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(dotted(value, f"{name}."))
        else:
            flat[name] = "" if value is None else str(value)
    return flat


# thresholds that selection_runs also keeps as columns (runs of older rap kept some there only)
LEGACY_THRESHOLDS = ("lambda_c", "sigma", "lambda_a", "ace_min_run", "ace_direction",
                     "ace_score", "drm_require_positive_d")


def legacy_columns(run) -> dict:
    """A stored run's threshold columns (a SelectionRun), for inherit_base_run."""
    return run.model_dump(include=set(LEGACY_THRESHOLDS) | {"drm_k"})


def inherit_base_run(params: RapParams, base: dict, columns: dict) -> RapParams:
    """A retune's whole parameters: the base run's pool, model, rollout settings and
    attention pass (the facts it re-selects), its thresholds except those given, and its
    tracking choice unless given.
    `base` is the base run's stored parameters, `columns` its threshold columns (older runs
    kept some thresholds there only)."""
    stored = {**columns, **base.get("thresholds", {})}
    given = params.thresholds.model_dump(include=params.thresholds.model_fields_set)
    update: dict = {"thresholds": Thresholds.model_validate(
        {**{k: v for k, v in stored.items() if k in Thresholds.model_fields}, **given})}
    for group in ("data", "model", "rollout", "ace"):
        try:
            update[group] = type(getattr(params, group)).model_validate(base[group])
        except (KeyError, TypeError, ValueError):  # a run of an older rap: keep the defaults
            pass
    for name in INHERITED_CHOICES:
        if name not in params.model_fields_set and isinstance(base.get(name), bool):
            update[name] = base[name]
    return params.model_copy(update=update)


_BOUNDS = (("greater than or equal to", "must be at least"),
           ("less than or equal to", "must be at most"),
           ("greater than", "must be more than"), ("less than", "must be less than"))


def explain(exc) -> str:
    """A pydantic ValidationError of the run's parameters as one line naming the flag:
    `--m must be at least 1 (got 0)`."""
    error = exc.errors()[0]
    loc = tuple(str(part) for part in error.get("loc", ()))
    by_field = {(group, field): name for name, (group, field) in FLOW_PARAMETERS.items()}
    name = (by_field.get(loc[:2]) or by_field.get((None, loc[0])) if len(loc) >= 1 else None)
    message = error["msg"].removeprefix("Value error, ")
    if not name:  # a check across fields: its message names them
        return message
    for said, plain in _BOUNDS:
        if message.startswith(f"Input should be {said} "):
            message = f"{plain} {message.removeprefix(f'Input should be {said} ')}"
            break
    else:
        message = f"{message[0].lower()}{message[1:]}"
    got = error.get("input")
    shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
    return f"--{name.replace('_', '-')} {message}{shown}"
