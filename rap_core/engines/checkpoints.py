"""What a model folder must be, checked from its config.json alone (no transformers import,
so commands that never load a model start fast), and the processor files rap adds to the
folders it writes itself."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from rap.rap_core.errors import ModelLoadError

SUPPORTED_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")
# files that mark a folder as written by rap (demo.recipe.META_FILE, demo.tiny_model.MARKER_FILE):
# only such folders are ever changed in place
DEMO_MARKER = "rap_demo.json"
TINY_MARKER = "rap_tiny.json"
RAP_MARKERS = (DEMO_MARKER, TINY_MARKER)
# the processor a stock AutoProcessor.from_pretrained (a trainer's) should build per family
STOCK_PROCESSORS = {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor"}
# Qwen2VLVideoProcessor's fields beyond those it shares with the image processor, as
# transformers 5.24 saves them; written by hand because the class needs torchvision
VIDEO_ONLY_FIELDS = {"do_sample_frames": False, "max_frames": 768, "max_video_tokens": 128000,
                     "min_frames": 4, "return_metadata": False,
                     "video_processor_type": "Qwen2VLVideoProcessor"}


def model_family(model_dir: Path) -> str:
    """The checkpoint's model_type, checked against the supported families."""
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"{model_dir}: no config.json; --model must be a local "
                             "transformers checkpoint folder")
    try:
        model_type = json.loads(config_path.read_text()).get("model_type", "")
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise ModelLoadError(f"{config_path}: not a JSON object ({exc})") from None
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelLoadError(f"{model_dir}: model_type {model_type!r} is not supported "
                             f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})")
    return model_type


def write_json(path: Path, content: dict) -> None:
    """Atomically (a loader in another process never reads half a file), formatted as
    transformers formats its configs."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps(content, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                       encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_stock_processor_files(model_dir: Path) -> list[str]:
    """Make a folder saved with rap's image-only processor (hf_loading) load as the stock
    processor in AutoProcessor.from_pretrained where torchvision is installed: the stock class
    named in the configs, a video processor config, and the image processor config flat as
    well (transformers 4 reads only that). rap's loader names its own class and reads none of
    these. Files already right are left alone; returns the names written."""
    model_dir = Path(model_dir)
    stock = STOCK_PROCESSORS[model_family(model_dir)]
    processor = json.loads((model_dir / "processor_config.json").read_text())
    image = processor["image_processor"]
    video = {k: v for k, v in image.items() if k != "image_processor_type"}
    tokenizer = json.loads((model_dir / "tokenizer_config.json").read_text())
    files = {"preprocessor_config.json": {**image, "processor_class": stock},
             "video_preprocessor_config.json": {**video, **VIDEO_ONLY_FIELDS,
                                                "processor_class": stock},
             "tokenizer_config.json": {**tokenizer, "processor_class": stock},
             # last: an interrupted upgrade still names rap's class, so it is done again
             "processor_config.json": {**processor, "processor_class": stock}}
    written = []
    for name, content in files.items():
        path = model_dir / name
        if not path.is_file() or json.loads(path.read_text()) != content:
            write_json(path, content)
            written.append(name)
    return written


def _shipped(model_dir: Path) -> bool:
    """The demo model shipped with rap: never changed (its files are checked against the
    sha256 its rap_demo.json records, demo_recipe.shipped_problem)."""
    try:
        return "shipped" in json.loads((model_dir / DEMO_MARKER).read_text())
    except (OSError, ValueError):
        return False


def upgrade_rap_folder(model_dir: Path) -> list[str]:
    """Add the stock processor files (write_stock_processor_files) in place to a folder an
    older rap version wrote. Only folders with rap's marker and the layout rap saves are
    touched, never a user's checkpoint nor the shipped demo model; the weights fingerprint
    (keys.weights_fingerprint: config.json and weights) does not cover these files, so the
    model key is unchanged. Returns the names written."""
    model_dir = Path(model_dir)
    if not (any((model_dir / m).is_file() for m in RAP_MARKERS)
            and (model_dir / "processor_config.json").is_file()
            and (model_dir / "tokenizer_config.json").is_file()) or _shipped(model_dir):
        return []
    try:
        return write_stock_processor_files(model_dir)
    except (OSError, KeyError):  # read-only, or not rap's layout: rap needs none of these
        return []
