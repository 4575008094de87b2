"""What a model folder must be, checked from its config.json alone (no transformers import,
so commands that never load a model start fast)."""

from __future__ import annotations

import json
from pathlib import Path

SUPPORTED_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")


class ModelLoadError(ValueError):
    """The model folder cannot be used by this project."""


def model_family(model_dir: Path) -> str:
    """The checkpoint's model_type, checked against the supported families."""
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"{model_dir}: no config.json; --model must be a local "
                             "transformers checkpoint folder")
    model_type = json.loads(config_path.read_text()).get("model_type", "")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelLoadError(f"{model_dir}: model_type {model_type!r} is not supported "
                             f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})")
    return model_type
