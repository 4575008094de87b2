"""One shard of inference: engine calls in batches, results as frames of raw facts.

Rollouts are graded here (the grade is a fact of the rollout key); errors are per sample.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import polars as pl

from rap.rap_core.engines.base import Engine, PromptItem, SampleError, run_isolated
from rap.rap_core.engines.batching import DEFAULT_BATCH
from rap.rap_core.grading import grade
from rap.rap_core.params import RolloutSettings

CONDITIONS = {"text_only": ("text", False), "multimodal": ("mm", True)}
ROLLOUT_SCHEMA = {"sample_id": pl.String, "model_key": pl.String, "settings_key": pl.String,
                  "condition": pl.String, "rollout_index": pl.Int32, "response": pl.String,
                  "token_ids": pl.List(pl.Int32), "extracted_answer": pl.String,
                  "correct": pl.Boolean}
ATTENTION_SCHEMA = {"sample_id": pl.String, "model_key": pl.String, "ace_key": pl.String,
                    "rollout_index": pl.Int32, "response_len": pl.Int32,
                    "col_log_sums": pl.List(pl.Float64)}
ERROR_SCHEMA = {"sample_id": pl.String, "model_key": pl.String, "fact_key": pl.String,
                "stage": pl.String, "error_code": pl.String, "error_message": pl.String}


@dataclass
class ShardResult:
    """Facts from one shard: rows to store, errors to store."""

    facts: pl.DataFrame
    errors: pl.DataFrame
    engine_s: float = 0.0  # wall time inside engine calls (the rest is bookkeeping)
    batch_size: int = 0  # prompts per call it started with ('auto' resolved)


def _items(shard: pl.DataFrame, with_responses: bool = False) -> list[PromptItem]:
    return [PromptItem(r["sample_id"], r["question"], tuple(r["image_paths"]),
                       tuple(r["token_ids"]) if with_responses else (), r.get("system"))
            for r in shard.iter_rows(named=True)]


def length_order(items: list[PromptItem], with_images: bool) -> list[int]:
    """Indices of items sorted by a prompt-length estimate, so a batch pads to similar
    lengths (length bucketing). Results do not depend on a sample's batch."""
    def length(i: int) -> tuple[int, int]:
        it = items[i]
        text = len(it.question) + len(it.system or "") + len(it.response_ids) * 4
        return (len(it.image_paths) if with_images else 0, text)
    return sorted(range(len(items)), key=length)


def run_bucketed(items: list[PromptItem], with_images: bool, batch_size: int, call,
                 progress=None, bucket: bool = True) -> list:
    """run_isolated over length-sorted items; results come back in the items' order."""
    order = length_order(items, with_images) if bucket else list(range(len(items)))
    done = run_isolated([items[i] for i in order], batch_size, call, progress)
    results: list = [None] * len(items)
    for position, index in enumerate(order):
        results[index] = done[position]
    return results


def resolve_batch_size(engine: Engine, items: list[PromptItem], batch_size: int | str,
                       with_images: bool, rows_per_item: int, new_tokens: int) -> int:
    """An int as given; 'auto' as the engine sizes it for these items (new_tokens 0: the
    attention pass), or the default for an engine that does not."""
    if batch_size != "auto":
        return int(batch_size)
    if not items:
        return DEFAULT_BATCH
    size_for = getattr(engine, "batch_size_for", None)
    return size_for(items, with_images, rows_per_item, new_tokens) if size_for \
        else DEFAULT_BATCH


def _errors(sample_id: str, err: SampleError, model_key: str, fact_key: str, stage: str):
    return {"sample_id": sample_id, "model_key": model_key, "fact_key": fact_key,
            "stage": stage, "error_code": err.code, "error_message": str(err)}


def infer_rollouts(engine: Engine, shard: pl.DataFrame, stage: str, rollout: RolloutSettings,
                   batch_size: int | str, model_key: str, settings_key: str,
                   progress=None, bucket: bool = True) -> ShardResult:
    """M graded responses per sample under one condition ('text_only' or 'multimodal')."""
    condition, with_images = CONDITIONS[stage]
    items = _items(shard)
    batch_size = resolve_batch_size(engine, items, batch_size, with_images,
                                    rollout.rows_per_prompt, rollout.max_new_tokens)
    start = time.perf_counter()
    results = run_bucketed(items, with_images, batch_size,
                           lambda batch: engine.generate(batch, with_images, rollout),
                           progress, bucket)
    engine_s = time.perf_counter() - start
    facts, errors = [], []
    for item, answer, result in zip(items, shard["answer"], results):
        if isinstance(result, SampleError):
            errors.append(_errors(item.sample_id, result, model_key, settings_key, stage))
            continue
        for index, response in enumerate(result):
            extracted, correct = grade(answer, response.text, question=item.question)
            facts.append({"sample_id": item.sample_id, "model_key": model_key,
                          "settings_key": settings_key, "condition": condition,
                          "rollout_index": index, "response": response.text,
                          "token_ids": list(response.token_ids),
                          "extracted_answer": extracted, "correct": correct})
    return ShardResult(pl.DataFrame(facts, schema=ROLLOUT_SCHEMA),
                       pl.DataFrame(errors, schema=ERROR_SCHEMA), engine_s, batch_size)


def infer_attention(engine: Engine, shard: pl.DataFrame, head_reduce: str,
                    batch_size: int | str, model_key: str, ace_key: str, progress=None,
                    bucket: bool = True) -> ShardResult:
    """Column log-sums of the final layer's attention over each sample's chosen response."""
    items = _items(shard, with_responses=True)
    batch_size = resolve_batch_size(engine, items, batch_size, True, 1, 0)
    start = time.perf_counter()
    results = run_bucketed(items, True, batch_size,
                           lambda batch: engine.attention_column_log_sums(batch, head_reduce),
                           progress, bucket)
    engine_s = time.perf_counter() - start
    facts, errors = [], []
    for item, index, result in zip(items, shard["rollout_index"], results):
        if isinstance(result, SampleError):
            errors.append(_errors(item.sample_id, result, model_key, ace_key, "attention"))
            continue
        facts.append({"sample_id": item.sample_id, "model_key": model_key, "ace_key": ace_key,
                      "rollout_index": index, "response_len": len(result),
                      "col_log_sums": [float(x) for x in result]})
    return ShardResult(pl.DataFrame(facts, schema=ATTENTION_SCHEMA),
                       pl.DataFrame(errors, schema=ERROR_SCHEMA), engine_s, batch_size)


def failed_shard(shard: pl.DataFrame, stage: str, model_key: str, fact_key: str,
                 message: str) -> ShardResult:
    """A shard whose task kept failing: every sample gets the error, no facts."""
    schema = ATTENTION_SCHEMA if stage == "attention" else ROLLOUT_SCHEMA
    error = SampleError("shard_failed", message)
    errors = [_errors(sample_id, error, model_key, fact_key, stage)
              for sample_id in shard["sample_id"]]
    return ShardResult(pl.DataFrame([], schema=schema), pl.DataFrame(errors, schema=ERROR_SCHEMA))
