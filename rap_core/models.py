"""Resolving a model spec to a folder and a model key, without loading the model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import polars as pl

from rap_core import engine
from rap_core.keys import short_hash, weights_fingerprint
from rap_core.params import BUILTIN_MODEL, BUILTIN_RANDOM_MODEL, ModelSpec
from rap_core.prompts import TEMPLATE_VERSION
from rap_core.settings import Settings
from rap_core.tiny_model import ensure_tiny_model


@dataclass(frozen=True)
class ResolvedModel:
    path: str
    fingerprint: str
    model_key: str


def resolve_model(spec: ModelSpec, settings: Settings,
                  log: Callable[[str], None] = print) -> ResolvedModel:
    """Build (or train) the embedded model if asked for; fingerprint the weights; derive
    the key. `log` receives progress lines while the demo model trains."""
    if spec.path == BUILTIN_MODEL:
        path = str(_demo_model(settings, log))
    elif spec.path == BUILTIN_RANDOM_MODEL:
        path = str(ensure_tiny_model(settings.models_dir))
    elif engine.is_registered(spec.path):
        path = spec.path
    else:
        from rap_core.hf_loading import model_family  # transformers: not needed to retune
        path = str(Path(spec.path).expanduser().resolve())
        model_family(Path(path))
    fingerprint = (short_hash(path, length=32) if engine.is_registered(path)
                   else weights_fingerprint(Path(path), settings.data_dir / "fingerprints.json"))
    key = short_hash(fingerprint, spec.dtype, TEMPLATE_VERSION, spec.system_prompt)
    return ResolvedModel(path=path, fingerprint=fingerprint, model_key=key)


def _demo_model(settings: Settings, log: Callable[[str], None]) -> Path:
    from rap_core.demo_model import obtain_demo_model
    return obtain_demo_model(settings, log)[0]


def model_row(model: ResolvedModel, spec: ModelSpec) -> pl.DataFrame:
    return pl.DataFrame([{"model_key": model.model_key, "model_path": model.path,
                          "weights_fingerprint": model.fingerprint, "dtype": spec.dtype,
                          "template_version": TEMPLATE_VERSION,
                          "system_prompt": spec.system_prompt}],
                        schema_overrides={"system_prompt": pl.String})
