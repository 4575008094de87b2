"""Inference tasks, one shard (hundreds of samples) per task run.

The model is loaded once per process (rap_core.engines.base.load_engine) from identifiers passed
in; it is never passed between tasks. Cache key: the task, the model key, the settings key
and the shard's sample ids, so a re-submitted shard returns its persisted result.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import polars as pl
from prefect import get_run_logger, task

from rap.rap_core.engines.base import load_engine
from rap.rap_core.engines.inference import ShardResult, infer_attention, infer_rollouts
from rap.rap_core.keys import short_hash
from rap.rap_core.models import ResolvedModel
from rap.rap_core.params import ModelSpec, RolloutSettings

PROGRESS_EVERY_S = 15.0


def shard_cache_key(context, parameters) -> str:
    """Identity of a shard's work: never the model object or the frame's memory."""
    return short_hash(context.task.name, parameters["model"].model_key, parameters["fact_key"],
                      parameters["shard"]["sample_id"].to_list(), length=32)


class _Progress:
    """Passes a shard's progress to report; logs it at most every PROGRESS_EVERY_S seconds."""

    def __init__(self, name: str, report: Callable[[int, int], None] | None):
        self.name, self.report, self.last = name, report, time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if self.report:
            self.report(done, total)
        if time.monotonic() - self.last >= PROGRESS_EVERY_S:
            self.last = time.monotonic()
            get_run_logger().info("%s: %d/%d samples of this shard", self.name, done, total)


def _engine(model: ResolvedModel, spec: ModelSpec):
    return load_engine(model.path, spec.device, model.dtype, spec.system_prompt,
                       spec.engine_config(model.served_model))


def _batch(engine, batch_size: int | str) -> int | str:
    """A serving engine wants more samples per call than a forward pass holds."""
    per_call = getattr(engine, "samples_per_call", 0)
    if batch_size == "auto":
        return per_call or "auto"
    return max(batch_size, per_call)


def _log_auto(stage: str, asked: int | str, result: ShardResult, rows_per_item: int) -> None:
    if asked == "auto" and result.batch_size:
        get_run_logger().info("%s: batch size auto -> %d prompts a call (%d rows)", stage,
                              result.batch_size, result.batch_size * rows_per_item)


def _rollouts(stage, shard, model, spec, rollout, batch_size, fact_key, report) -> ShardResult:
    engine = _engine(model, spec)
    result = infer_rollouts(engine, shard, stage, rollout, _batch(engine, batch_size),
                            model.model_key, fact_key, _Progress(stage, report))
    _log_auto(stage, batch_size, result, rollout.rows_per_prompt)
    if getattr(engine, "stats", None):  # a server: requests, retries, whose token ids
        get_run_logger().info("%s: engine %s so far: %s", stage, spec.engine, ", ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in engine.stats.items()))
    return result


@task(name="text-only-inference", cache_key_fn=shard_cache_key, persist_result=True)
def text_only_inference(shard: pl.DataFrame, model: ResolvedModel, spec: ModelSpec,
                        rollout: RolloutSettings, batch_size: int | str, fact_key: str,
                        report=None) -> ShardResult:
    """M responses per sample with the image placeholders removed (T=0)."""
    return _rollouts("text_only", shard, model, spec, rollout, batch_size, fact_key, report)


@task(name="multimodal-inference", cache_key_fn=shard_cache_key, persist_result=True)
def multimodal_inference(shard: pl.DataFrame, model: ResolvedModel, spec: ModelSpec,
                         rollout: RolloutSettings, batch_size: int | str, fact_key: str,
                         report=None) -> ShardResult:
    """M responses per sample with the images (T=1)."""
    return _rollouts("multimodal", shard, model, spec, rollout, batch_size, fact_key, report)


@task(name="attention-extraction", cache_key_fn=shard_cache_key, persist_result=True)
def attention_extraction(shard: pl.DataFrame, model: ResolvedModel, spec: ModelSpec,
                         head_reduce: str, batch_size: int | str, fact_key: str,
                         report=None) -> ShardResult:
    """Final-layer attention over one teacher-forced response per sample, reduced to S_j."""
    result = infer_attention(_engine(model, spec), shard, head_reduce, batch_size,
                             model.model_key, fact_key, _Progress("attention", report))
    _log_auto("attention", batch_size, result, 1)
    return result
