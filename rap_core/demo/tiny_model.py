"""builtin:tiny-qwen2-vl, a random-init tiny Qwen2-VL built from a config, fully offline,
and the tokenizer/processor/model builders the trained demo model (demo/model.py) shares.

Tokenizer (byte-level BPE trained on easy-VQA text), image processor and weights are all
built in code from a fixed seed, so the same version always gives the same files. The model
is random-init: it exercises the whole pipeline but has learned nothing. The folder names the
stock processor (checkpoints.write_stock_processor_files), so RL trainers load it as they
load a published Qwen2-VL.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from rap.rap_core.engines.checkpoints import (TINY_MARKER, upgrade_rap_folder, write_json,
                                  write_stock_processor_files)

TINY_MODEL_VERSION = "tiny-qwen2-vl-v1"
MARKER_FILE = TINY_MARKER
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _corpus() -> list[str]:
    """Text the tokenizer is trained on: easy-VQA questions and answers plus answer phrasing."""
    from easy_vqa import get_answers, get_train_questions
    questions, answers, _ = get_train_questions()
    lines = sorted(set(questions))[:3000] + get_answers()
    lines += [f"the shape is a {a}. answer: {a}" for a in get_answers()]
    lines += ["\\boxed{", "answer:", "the image shows", "yes", "no"]
    return lines


def _train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=QWEN_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def build_processor(family: str = "qwen2_vl", min_pixels: int = 112 * 112,
                    max_pixels: int = 224 * 224, patch_size: int = 14):
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    from rap.rap_core.engines.hf_loading import FAMILIES
    vocab, merges = _train_tokenizer()
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", unk_token=None)
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIALS[1:]})
    image_processor = Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels,
                                               patch_size=patch_size, merge_size=2,
                                               temporal_patch_size=2)
    processor_cls = FAMILIES[family][1]
    return processor_cls(image_processor=image_processor, tokenizer=tok,
                         chat_template=CHAT_TEMPLATE)


VISION_CONFIGS = {
    "qwen2_vl": dict(depth=2, embed_dim=64, hidden_size=64, num_heads=4, mlp_ratio=2,
                     patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
    "qwen2_5_vl": dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4,
                       out_hidden_size=64, patch_size=14, spatial_merge_size=2,
                       temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1]),
}


TEXT_CONFIG = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                   rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                    "mrope_section": [4, 2, 2]})


def build_model(tokenizer, seed: int, family: str = "qwen2_vl", text: dict | None = None,
                vision: dict | None = None, **from_config):
    """A random-init model of the family; text/vision override the tiny default sizes (a
    vocab_size above the tokenizer's only adds unused rows); from_config goes to
    _from_config (dtype, attn_implementation)."""
    import torch
    import transformers

    from rap.rap_core.engines.hf_loading import FAMILIES
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = {**TEXT_CONFIG, "vocab_size": len(tokenizer), **(text or {}),
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"]}
    model_cls = getattr(transformers, FAMILIES[family][0])
    config = model_cls.config_class(
        text_config=text, vision_config={**VISION_CONFIGS[family], **(vision or {})},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    model = (model_cls._from_config(config, **from_config) if from_config
             else model_cls(config)).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def build_tiny_model(out_dir: Path, seed: int = 0, family: str = "qwen2_vl") -> Path:
    """Build the tiny model (qwen2_vl or qwen2_5_vl) into out_dir atomically (a finished
    build already there is kept); return it."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f"{out_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    processor = build_processor(family)
    model = build_model(processor.tokenizer, seed, family)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    write_stock_processor_files(tmp)
    _mark(tmp, seed, family)
    if (out_dir / "config.json").exists():  # another process finished the same build first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
    return out_dir


def ensure_tiny_model(models_dir: Path, seed: int = 0) -> Path:
    """Return the cached tiny model folder, building it on first use."""
    target = Path(models_dir) / f"{TINY_MODEL_VERSION}-seed{seed}"
    if not (target / "config.json").exists():
        build_tiny_model(target, seed)
    elif not (target / MARKER_FILE).is_file():
        # built by an older version (no marker then): it is rap's by its path
        try:
            _mark(target, seed, "qwen2_vl")
        except OSError:  # read-only: it still loads as before
            return target
    upgrade_rap_folder(target)
    return target


def _mark(folder: Path, seed: int, family: str) -> None:
    write_json(folder / MARKER_FILE, {"version": TINY_MODEL_VERSION, "seed": seed,
                                      "family": family})
