"""The demo model's recipe, and which folder builtin:easy-vqa-vlm is, without training code.

The weights the current Recipe trains ship with rap in rap_core/demo/easy-vqa-demo-v1/
(weights, tokenizer and processor files, rap_demo.json). Their rap_demo.json adds a `shipped`
record to the training metadata: the recipe's hash and the sha256 of every file. The shipped
folder is used only while both match (a changed recipe, or an edited, truncated or missing
file, would otherwise pass for the demo model), and is never written to. A folder trained by
`rap demo-model --retrain` in the data folder is used instead when there is one.
After changing the recipe, regenerate the shipped files: python -m rap.rap_core.demo.model
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from rap.rap_core.engines.checkpoints import DEMO_MARKER
from rap.rap_core.errors import ModelLoadError
from rap.rap_core.keys import sha256_file, short_hash

DEMO_MODEL_VERSION = "easy-vqa-demo-v1"
META_FILE = DEMO_MARKER
SHIPPED_DIR = Path(__file__).resolve().parent / DEMO_MODEL_VERSION
REGENERATE = "python -m rap.rap_core.demo.model"


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the demo model's weights."""

    seed: int = 0
    vision_steps: int = 1800  # stage 1: the vision tower learns colour and shape
    vision_lr: float = 2e-3
    steps: int = 650  # stage 2: the whole model learns to answer
    batch_size: int = 32
    lr: float = 1e-3
    text_only_share: float = 0.2
    # share of questions that state their answer, among text-only / with-image examples:
    # reading them is learned where the image cannot tell
    hint_share_text_only: float = 0.5
    hint_share_image: float = 0.1
    hidden_size: int = 128
    layers: int = 4
    vision_depth: int = 2
    vision_width: int = 64
    image_side: int = 56  # easy-VQA's 64 px images are resized to this
    patch_size: int = 7
    threads: int = 2  # the thread count changes float sums: fixed, for the same weights

    def text_config(self) -> dict:
        head_dim = self.hidden_size // 4
        third = head_dim // 8
        return dict(hidden_size=self.hidden_size, intermediate_size=self.hidden_size * 3,
                    num_hidden_layers=self.layers, num_attention_heads=4,
                    num_key_value_heads=2,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                     "mrope_section": [head_dim // 2 - 2 * third, third, third]})

    def vision_config(self) -> dict:
        return dict(depth=self.vision_depth, embed_dim=self.vision_width,
                    hidden_size=self.hidden_size, patch_size=self.patch_size)


def recipe_hash(recipe: Recipe = Recipe()) -> str:
    return short_hash(asdict(recipe), length=10)


def demo_model_dir(models_dir: Path, recipe: Recipe = Recipe()) -> Path:
    """Where the recipe trains into in the data folder: one folder per recipe, so a changed
    recipe never reuses another recipe's weights."""
    return Path(models_dir) / f"{DEMO_MODEL_VERSION}-{recipe_hash(recipe)}"


def read_meta(model_dir: Path) -> dict | None:
    path = Path(model_dir) / META_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file in the folder but the metadata that records them."""
    return {p.name: sha256_file(p) for p in sorted(Path(folder).iterdir())
            if p.is_file() and p.name != META_FILE}


def shipped_problem(recipe: Recipe = Recipe(), folder: Path = SHIPPED_DIR) -> str | None:
    """Why the shipped folder cannot stand for the model `recipe` trains; None if it can."""
    record = ((read_meta(folder) if folder.is_dir() else None) or {}).get("shipped")
    if record is None:
        return f"the shipped demo model is missing ({folder})"
    if record["recipe_hash"] != recipe_hash(recipe):
        return (f"the shipped demo model was trained by another recipe (hash "
                f"{record['recipe_hash']}, current {recipe_hash(recipe)}); regenerate it with "
                f"`{REGENERATE}`")
    found = file_hashes(folder)
    changed = sorted(name for name in record["files"].keys() | found.keys()
                     if record["files"].get(name) != found.get(name))
    if changed:
        return (f"the shipped demo model's files differ from those it was shipped with "
                f"({', '.join(changed)} in {folder}); restore them, or regenerate them with "
                f"`{REGENERATE}`")
    return None


def locate_demo_model(models_dir: Path, recipe: Recipe = Recipe()) -> tuple[Path, str | None]:
    """The folder builtin:easy-vqa-vlm is, with a line to show when it is not the shipped
    one: trained in the data folder if it was, else the shipped weights. Never trains."""
    own = demo_model_dir(models_dir, recipe)
    if read_meta(own) is not None:
        return own, (f"demo model: using {own}, trained in the data folder (rap demo-model "
                     f"--retrain), not the weights shipped with rap; remove it to use those")
    problem = shipped_problem(recipe)
    if problem is not None:
        raise ModelLoadError(f"{problem}; or train it by the current recipe into the data "
                             f"folder: rap demo-model --retrain")
    return SHIPPED_DIR, None
