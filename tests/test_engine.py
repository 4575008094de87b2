"""The transformers engine on the tiny real model: generation, attention, per-sample errors."""

import numpy as np
import pytest
import torch

from rap.rap_core.engines.attention import final_layer_weights
from rap.rap_core.engines.attention_stats import column_log_sums
from rap.rap_core.engines.base import EngineConfigError, PromptItem, SampleError, run_isolated
from rap.rap_core.engines.hf import HFEngine
from rap.rap_core.engines.inference import infer_attention, infer_rollouts, run_bucketed
from rap.rap_core.params import DataSpec, RolloutSettings
from rap.rap_core.io.prompts import build_messages
from rap.rap_core.io.readers import read_pool

ROLLOUT = RolloutSettings(m=3, max_new_tokens=12)


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return HFEngine(str(tiny_model_dir), "cpu", "float32", None)


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    return read_pool(DataSpec(limit=4), tmp_path_factory.mktemp("img")).samples


def items(shard, response_ids=None):
    return [PromptItem(r["sample_id"], r["question"], tuple(r["image_paths"]),
                       tuple(response_ids[i]) if response_ids else ())
            for i, r in enumerate(shard.iter_rows(named=True))]


def test_text_only_prompt_removes_the_image_slots():
    mm = build_messages("Compare <image> with <image>.", 2, True)
    text = build_messages("Compare <image> with <image>.", 2, False)
    assert [c["type"] for c in mm[0]["content"]] == ["text", "image", "text", "image", "text"]
    assert text[0]["content"] == [{"type": "text", "text": "Compare with ."}]
    assert [c["type"] for c in build_messages("What?", 1, True)[0]["content"]] == ["image", "text"]


def test_generate_m_responses_reproducibly(engine, shard):
    out = engine.generate(items(shard), True, ROLLOUT)
    assert len(out) == shard.height and all(len(r) == ROLLOUT.m for r in out)
    assert all(0 < len(r.token_ids) <= ROLLOUT.max_new_tokens for rs in out for r in rs)
    assert engine.generate(items(shard), True, ROLLOUT) == out
    assert engine.generate(items(shard), True, ROLLOUT.model_copy(update={"seed": 1})) != out


def test_a_samples_rollouts_do_not_depend_on_its_batch(engine, shard):
    """Resumed runs, other batch sizes and shard splits must reproduce the same facts."""
    together = engine.generate(items(shard), True, ROLLOUT)
    alone = engine.generate(items(shard)[2:3], True, ROLLOUT)
    assert alone[0] == together[2]
    assert len({r.text for r in together[2]}) > 1  # the M rollouts differ from each other


def test_multimodal_inputs_carry_pixels_and_text_only_do_not(engine, shard):
    mm = engine._encode(items(shard)[:1], True)
    text = engine._encode(items(shard)[:1], False)
    assert "pixel_values" in mm and (mm["input_ids"] == engine.image_token_id).sum() > 1
    assert "pixel_values" not in text and (text["input_ids"] == engine.image_token_id).sum() == 0


def test_prompt_too_long_is_a_sample_error(engine, shard):
    long = RolloutSettings(m=1, max_new_tokens=engine.context)
    out = engine.generate(items(shard)[:2], False, long)
    assert all(isinstance(r, SampleError) and r.code == "prompt_too_long" for r in out)


def test_attention_pass_keeps_only_the_final_layer_and_matches_full_maps(engine, shard):
    gen = engine.generate(items(shard), True, ROLLOUT)
    responses = [g[0].token_ids for g in gen]
    batch = items(shard, responses)
    sums = engine.attention_column_log_sums(batch, "mean")
    assert [len(s) for s in sums] == [len(r) for r in responses]
    single = engine.attention_column_log_sums(batch[1:2], "mean")[0]
    np.testing.assert_allclose(single, sums[1], atol=1e-4)
    inputs = engine._encode(batch[1:2], True)
    engine._append_responses(inputs, batch[1:2])
    with torch.inference_mode(), final_layer_weights():
        full = engine.model(**inputs, output_attentions=True, use_cache=False).attentions
    size = len(responses[1])
    block = full[-1][0].mean(0)[-size:, -size:]
    np.testing.assert_allclose(column_log_sums(block), single, atol=1e-6)


def test_final_layer_eager_matches_an_all_eager_model(engine, shard, tiny_model_dir):
    """sdpa in the other layers changes nothing but rounding: same greedy responses, same
    final-layer maps as a model that runs every layer eager, with left padding in the batch."""
    import transformers
    reference = transformers.Qwen2VLForConditionalGeneration.from_pretrained(
        tiny_model_dir, attn_implementation={"text_config": "eager", "vision_config": "sdpa"})
    eager = HFEngine.from_loaded(reference.eval(), engine.processor)
    greedy = RolloutSettings(m=1, temperature=0.0, max_new_tokens=12)
    batch = items(shard)[:3]
    batch[1] = PromptItem(batch[1].sample_id, batch[1].question + " Answer in one word, "
                          "please, and think before you answer.", batch[1].image_paths)
    out = engine.generate(batch, True, greedy)
    assert out == eager.generate(batch, True, greedy)
    forced = [PromptItem(it.sample_id, it.question, it.image_paths, o[0].token_ids)
              for it, o in zip(batch, out)]
    for got, want in zip(engine.attention_column_log_sums(forced, "max"),
                         eager.attention_column_log_sums(forced, "max")):
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert engine.model.config.get_text_config()._attn_implementation == "rap_final_eager"


def test_bad_sample_costs_only_itself(engine, shard):
    good = items(shard)[:3]
    broken = PromptItem("bad", "what?", ("/nonexistent.png",))
    out = run_isolated(good[:1] + [broken] + good[1:], 2,
                       lambda batch: engine.generate(batch, True, ROLLOUT))
    assert isinstance(out[1], SampleError) and out[1].code == "inference_failed"
    assert "nonexistent.png" in str(out[1])
    assert all(isinstance(r, list) for i, r in enumerate(out) if i != 1)


def test_bucketing_batches_similar_lengths_and_keeps_the_order():
    lengths = [50, 5, 40, 10, 45]
    batch_items = [PromptItem(str(i), "q" * n, ()) for i, n in enumerate(lengths)]
    seen = []

    def call(batch):
        seen.append([it.sample_id for it in batch])
        if "3" in seen[-1]:
            raise RuntimeError("sample 3 fails; its batch is retried item by item")
        return [it.sample_id for it in batch]
    out = run_bucketed(batch_items, False, 2, call)
    assert out[:3] == ["0", "1", "2"] and out[4] == "4" and isinstance(out[3], SampleError)
    assert seen[:3] == [["1", "3"], ["1"], ["3"]] and seen[3:] == [["2", "4"], ["0"]]
    assert run_bucketed(batch_items[:3], False, 2, call, bucket=False) == list("012")


def test_config_errors_fail_loudly():
    def call(batch):
        raise EngineConfigError("processor drops images")
    with pytest.raises(EngineConfigError):
        run_isolated([1, 2], 1, call)


def test_shard_results_are_graded_frames(engine, shard):
    res = infer_rollouts(engine, shard, "multimodal", ROLLOUT, 2, "m", "s")
    assert res.facts.height == shard.height * ROLLOUT.m and res.errors.is_empty()
    assert set(res.facts["condition"]) == {"mm"}
    chosen = res.facts.filter(res.facts["rollout_index"] == 0).join(
        shard.select("sample_id", "question", "image_paths"), on="sample_id")
    att = infer_attention(engine, chosen, "max", 2, "m", "a")
    lengths = dict(zip(chosen["sample_id"], chosen["token_ids"].list.len()))
    assert dict(zip(att.facts["sample_id"], att.facts["response_len"])) == lengths


def test_qwen2_5_vl_checkpoints_work_too(tmp_path, shard):
    from rap.rap_core.demo.tiny_model import build_tiny_model
    model_dir = build_tiny_model(tmp_path / "q25", family="qwen2_5_vl")
    q25 = HFEngine(str(model_dir), "cpu", "float32", None)
    assert type(q25.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    gen = q25.generate(items(shard)[:2], True, ROLLOUT)
    sums = q25.attention_column_log_sums(items(shard[:2], [g[0].token_ids for g in gen]), "mean")
    assert [len(s) for s in sums] == [len(g[0].token_ids) for g in gen]


def test_a_checkpoint_laid_out_like_the_published_ones_loads(tmp_path, tiny_model_dir, shard):
    """Published Qwen2-VL folders name the stock processor (which needs torchvision) and
    keep the image processor in preprocessor_config.json."""
    import json
    import shutil
    real = tmp_path / "Qwen2-VL-style"
    shutil.copytree(tiny_model_dir, real)
    config = json.loads((real / "processor_config.json").read_text())["image_processor"]
    (real / "processor_config.json").unlink()
    (real / "preprocessor_config.json").write_text(
        json.dumps({**config, "processor_class": "Qwen2VLProcessor"}))
    (real / "video_preprocessor_config.json").write_text(
        json.dumps({**config, "video_processor_type": "Qwen2VLVideoProcessor"}))
    tok = json.loads((real / "tokenizer_config.json").read_text())
    (real / "tokenizer_config.json").write_text(json.dumps({**tok,
                                                            "processor_class": "Qwen2VLProcessor"}))
    loaded = HFEngine(str(real), "cpu", "float32", None)
    inputs = loaded._encode(items(shard)[:1], True)
    assert "pixel_values" in inputs and (inputs["input_ids"] == loaded.image_token_id).sum() > 1


def oom(message="CUDA out of memory. Tried to allocate 2.00 GiB"):
    return torch.OutOfMemoryError(message)


def test_a_batch_out_of_memory_is_split_and_later_batches_keep_the_size():
    sizes = []

    def call(batch):
        sizes.append(len(batch))
        if len(batch) > 3:
            raise oom()
        return [x * 10 for x in batch]
    assert run_isolated(list(range(11)), 8, call) == [x * 10 for x in range(11)]
    assert sizes == [8, 4, 2, 2, 2, 2, 2, 1]  # 8 and 4 ran out; then 2 a call


def test_one_sample_too_large_for_memory_costs_only_itself():
    def call(batch):
        if 3 in batch:
            raise oom()
        return list(batch)
    out = run_isolated([1, 2, 3, 4], 4, call)
    assert out[:2] == [1, 2] and out[3] == 4
    assert isinstance(out[2], SampleError) and out[2].code == "out_of_memory"


def test_out_of_memory_in_generate_splits_and_keeps_every_rollout(engine, shard, monkeypatch):
    """A forced out-of-memory above 2 prompts' rows: the shard is still complete and its
    facts are the ones a small batch gives (batch invariance)."""
    small = infer_rollouts(engine, shard, "multimodal", ROLLOUT, 1, "m", "s")
    real = engine.model.generate
    rows_seen = []

    def limited(**kwargs):
        rows = kwargs["input_ids"].shape[0] * kwargs.get("num_return_sequences", 1)
        rows_seen.append(rows)
        if rows > 2 * ROLLOUT.m:
            raise oom()
        return real(**kwargs)
    monkeypatch.setattr(engine.model, "generate", limited)
    split = infer_rollouts(engine, shard, "multimodal", ROLLOUT, 4, "m", "s")
    assert split.errors.is_empty() and split.facts.equals(small.facts)
    assert rows_seen[0] == 4 * ROLLOUT.m and max(rows_seen[1:]) == 2 * ROLLOUT.m


def test_auto_batch_size_fills_the_free_memory(engine, shard, monkeypatch):
    from rap.rap_core.engines import batching
    from rap.rap_core.engines.inference import resolve_batch_size
    prompts = items(shard)
    assert resolve_batch_size(engine, prompts, "auto", True, 5, 64) == batching.DEFAULT_BATCH
    assert resolve_batch_size(object(), prompts, "auto", True, 5, 64) == batching.DEFAULT_BATCH
    assert resolve_batch_size(engine, prompts, 3, True, 5, 64) == 3
    # the prompt lengths it sizes by are the processed ones, without processing the images
    for with_images in (True, False):
        encoded = engine._encode(prompts, with_images)
        assert engine._prompt_token_counts(prompts, with_images) == \
            engine._prompt_lengths(encoded)
    shapes = batching.Shapes.of(engine.model)
    longest = max(engine._prompt_token_counts(prompts, True))
    row = batching.generation_row_bytes(shapes, longest, 64)
    monkeypatch.setattr(engine, "device", "cuda:0")
    for free_rows, want in ((1, 1), (2 * 5 / batching.MEMORY_SHARE + 1, 2), (10**6, 4)):
        monkeypatch.setattr(torch.cuda, "mem_get_info",
                            lambda device, free=int(free_rows * row): (free, 2 * free))
        assert engine.batch_size_for(prompts, True, 5, 64) == want
    attention_row = batching.attention_row_bytes(shapes, longest + 64)
    assert attention_row > batching.attention_row_bytes(shapes, longest)


def test_cpu_engines_keep_large_blocks_on_the_heap_unless_malloc_is_configured():
    """glibc's mallopt, once per process; a user's (or a benchmark's) MALLOC_* wins."""
    import subprocess
    import sys
    code = ("from rap.rap_core.engines.hf import keep_large_blocks_on_heap as k;"
            "print(k(), k())")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MALLOC_")}
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    assert plain == ["True", "True"]
    chosen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**env, "MALLOC_ARENA_MAX": "2"}, check=True).stdout.split()
    assert chosen == ["False", "False"]
