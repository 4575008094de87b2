"""The model folders rap writes load as the stock Qwen2-VL processor in a trainer's
AutoProcessor (the files checked here; the load itself needs torchvision), rap keeps loading
them with its image-only class, and folders of older versions are upgraded in place."""

import ast
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import write_png

from rap.rap_core.engines.checkpoints import (DEMO_MARKER, STOCK_PROCESSORS, TINY_MARKER,
                                  VIDEO_ONLY_FIELDS)
from rap.rap_core.engines.hf_loading import FAMILIES, load_model_and_processor
from rap.rap_core.io.prompts import build_messages
from rap.rap_core.demo.tiny_model import TINY_MODEL_VERSION

STOCK = "Qwen2VLProcessor"
NEW_FILES = ("preprocessor_config.json", "video_preprocessor_config.json")


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _old_layout(src: Path, dst: Path, marker: str | None = None) -> Path:
    """A copy of src as rap saved it before: its image-only class named, no video config,
    no tiny-model marker."""
    shutil.copytree(src, dst)
    for name in (*NEW_FILES, TINY_MARKER):
        (dst / name).unlink()
    for name in ("processor_config.json", "tokenizer_config.json"):
        config = _json(dst / name)
        (dst / name).write_text(json.dumps({**config,
                                            "processor_class": "Qwen2VLImageOnlyProcessor"}))
    if marker:
        (dst / marker).write_text("{}")
    return dst


def _snapshot(folder: Path) -> dict:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir())}


def _encode(processor, image: Path) -> dict:
    from PIL import Image
    text = processor.apply_chat_template(build_messages("What color is the shape?", 1, True),
                                         add_generation_prompt=True, tokenize=False)
    return processor(text=[text], images=[Image.open(image).convert("RGB")],
                     return_tensors="pt")


def test_the_tiny_model_folder_names_the_stock_processor_and_has_a_video_config(
        tiny_model_dir):
    processor = _json(tiny_model_dir / "processor_config.json")
    image = processor["image_processor"]
    assert processor["processor_class"] == STOCK
    assert _json(tiny_model_dir / "tokenizer_config.json")["processor_class"] == STOCK
    assert _json(tiny_model_dir / "preprocessor_config.json") == {**image,
                                                                  "processor_class": STOCK}
    video = _json(tiny_model_dir / "video_preprocessor_config.json")
    assert set(video) == {  # as transformers 5.24 saves a Qwen2VLVideoProcessor, plus the class
        "do_convert_rgb", "do_normalize", "do_rescale", "do_resize", "do_sample_frames",
        "image_mean", "image_std", "max_frames", "max_video_tokens", "merge_size",
        "min_frames", "patch_size", "processor_class", "resample", "rescale_factor",
        "return_metadata", "size", "temporal_patch_size", "video_processor_type"}
    assert video["video_processor_type"] == "Qwen2VLVideoProcessor"
    assert video["processor_class"] == STOCK
    for key in ("size", "patch_size", "merge_size", "temporal_patch_size", "image_mean",
                "image_std", "resample"):
        assert video[key] == image[key], key
    assert _json(tiny_model_dir / TINY_MARKER)["version"] == TINY_MODEL_VERSION


def test_stock_names_and_video_fields_follow_the_installed_transformers():
    """The video config is written by hand (its class needs torchvision): its own fields
    must still be the class's defaults after a transformers upgrade."""
    import transformers
    for family, (_, image_only) in FAMILIES.items():
        assert image_only.__bases__[0].__name__ == STOCK_PROCESSORS[family]
    source = (Path(transformers.__file__).parent / "models" / "qwen2_vl"
              / "video_processing_qwen2_vl.py")
    cls = next(n for n in ast.walk(ast.parse(source.read_text()))
               if isinstance(n, ast.ClassDef) and n.name == "Qwen2VLVideoProcessor")
    defaults = {t.id: ast.literal_eval(n.value) for n in cls.body if isinstance(n, ast.Assign)
                for t in n.targets if isinstance(t, ast.Name)
                and isinstance(n.value, ast.Constant)}
    for key in ("do_sample_frames", "max_frames", "max_video_tokens", "min_frames"):
        assert VIDEO_ONLY_FIELDS[key] == defaults[key], key


def test_raps_loader_gives_the_same_processor_outputs_as_with_the_old_files(tiny_model_dir,
                                                                            tmp_path):
    old = _old_layout(tiny_model_dir, tmp_path / "old")
    image = write_png(tmp_path / "red.png", size=(48, 40))
    _, new_processor = load_model_and_processor(tiny_model_dir, "cpu", "float32")
    _, old_processor = load_model_and_processor(old, "cpu", "float32")
    assert type(new_processor) is type(old_processor) is FAMILIES["qwen2_vl"][1]
    assert getattr(new_processor, "video_processor", None) is None
    new, before = _encode(new_processor, image), _encode(old_processor, image)
    assert set(new) == set(before)
    assert (new["input_ids"] == new_processor.image_token_id).sum() > 1
    for key in before:
        assert torch.equal(new[key], before[key]), key


def test_an_old_tiny_model_folder_is_upgraded_in_place_with_the_same_model_key(
        tiny_model_dir, settings):
    from rap.rap_core.keys import weights_fingerprint
    from rap.rap_core.models import resolve_model
    from rap.rap_core.params import BUILTIN_RANDOM_MODEL, ModelSpec
    folder = _old_layout(tiny_model_dir, settings.models_dir / tiny_model_dir.name)
    fingerprint = weights_fingerprint(folder)
    before = resolve_model(ModelSpec(path=str(folder)), settings)  # a path: not upgraded
    assert not (folder / "video_preprocessor_config.json").exists()
    after = resolve_model(ModelSpec(path=BUILTIN_RANDOM_MODEL), settings)
    assert Path(after.path) == folder and after.model_key == before.model_key
    assert weights_fingerprint(folder) == fingerprint
    # exactly the files a fresh build writes
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {
        p.name: p.read_bytes() for p in tiny_model_dir.iterdir()}
    unchanged = _snapshot(folder)
    resolve_model(ModelSpec(path=BUILTIN_RANDOM_MODEL), settings)
    assert _snapshot(folder) == unchanged  # done once: nothing rewritten on later loads


def test_an_old_demo_model_folder_is_upgraded_on_load(tiny_model_dir, tmp_path):
    from rap.rap_core.keys import weights_fingerprint
    folder = _old_layout(tiny_model_dir, tmp_path / "demo", marker=DEMO_MARKER)
    fingerprint = weights_fingerprint(folder)
    load_model_and_processor(folder, "cpu", "float32")
    assert _json(folder / "processor_config.json")["processor_class"] == STOCK
    assert _json(folder / "tokenizer_config.json")["processor_class"] == STOCK
    for name in NEW_FILES:
        assert (folder / name).read_bytes() == (tiny_model_dir / name).read_bytes()
    assert weights_fingerprint(folder) == fingerprint


@pytest.mark.parametrize("layout", ["old", "current"])
def test_a_users_folder_is_never_modified(tiny_model_dir, settings, tmp_path, layout):
    from rap.rap_core.models import resolve_model
    from rap.rap_core.params import ModelSpec
    if layout == "old":
        folder = _old_layout(tiny_model_dir, tmp_path / "user")
    else:  # rap's current files, the marker removed: then edits are the user's own
        folder = tmp_path / "user"
        shutil.copytree(tiny_model_dir, folder)
        (folder / TINY_MARKER).unlink()
        (folder / "video_preprocessor_config.json").unlink()
    before = _snapshot(folder)
    resolve_model(ModelSpec(path=str(folder)), settings)
    load_model_and_processor(folder, "cpu", "float32")
    assert _snapshot(folder) == before
