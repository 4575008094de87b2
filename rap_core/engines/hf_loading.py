"""Loading local Qwen2-VL / Qwen2.5-VL checkpoints without torchvision.

The stock processors of this family require a video processor (which needs torchvision);
the image-only subclasses below drop that slot so real checkpoints load on a lean install.
Folders rap saves name the stock class all the same (checkpoints.write_stock_processor_files),
for the trainers that load them with AutoProcessor.
"""

from __future__ import annotations

from pathlib import Path

from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor

from rap.rap_core.engines.checkpoints import model_family, upgrade_rap_folder


class Qwen2VLImageOnlyProcessor(Qwen2VLProcessor):
    """Qwen2-VL processor with no video processor."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor=image_processor, tokenizer=tokenizer,
                         video_processor=None, chat_template=chat_template, **kwargs)


class Qwen25VLImageOnlyProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor with no video processor."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor=image_processor, tokenizer=tokenizer,
                         video_processor=None, chat_template=chat_template, **kwargs)


FAMILIES = {
    "qwen2_vl": ("Qwen2VLForConditionalGeneration", Qwen2VLImageOnlyProcessor),
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", Qwen25VLImageOnlyProcessor),
}


def load_model_and_processor(model_dir: Path, device: str, dtype: str):
    """Load a checkpoint with sdpa attention, except the final text layer (eager, for the
    ACE maps; rap_core.engines.attention). The processor is always the image-only class, whatever
    the folder names; a folder rap wrote itself gets the stock processor files it lacks."""
    import torch
    import transformers

    from rap.rap_core.engines.attention import NAME as final_layer_eager
    family = model_family(model_dir)
    upgrade_rap_folder(model_dir)
    model_cls_name = FAMILIES[family][0]
    model_cls = getattr(transformers, model_cls_name)
    model = model_cls.from_pretrained(
        model_dir, dtype=getattr(torch, dtype),
        attn_implementation={"text_config": final_layer_eager, "vision_config": "sdpa"})
    model.to(device).eval()
    return model, load_processor(model_dir, family)


def load_processor(model_dir: Path, family: str | None = None):
    """The checkpoint's image-only processor, padding on the left (for generation)."""
    processor = FAMILIES[family or model_family(model_dir)][1].from_pretrained(model_dir)
    processor.tokenizer.padding_side = "left"
    return processor
