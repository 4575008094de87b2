"""Resolving a model spec to a folder and a model key, without loading the model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import polars as pl

from rap.rap_core.engines import base as engine
from rap.rap_core.keys import short_hash, weights_fingerprint
from rap.rap_core.params import BUILTIN_MODEL, BUILTIN_RANDOM_MODEL, ModelSpec
from rap.rap_core.io.prompts import TEMPLATE_VERSION
from rap.rap_core.settings import Settings
from rap.rap_core.demo.tiny_model import ensure_tiny_model


@dataclass(frozen=True)
class ResolvedModel:
    path: str
    fingerprint: str
    model_key: str
    dtype: str = "float32"  # concrete: "auto" is resolved before the key is derived
    engine: str = "transformers"
    served_model: str | None = None  # engine openai: the name the server serves it under


def resolve_model(spec: ModelSpec, settings: Settings,
                  log: Callable[[str], None] = print) -> ResolvedModel:
    """Find (or build) the embedded model if asked for; fingerprint the weights; derive
    the key. `log` receives a line when the demo model is not the shipped one."""
    if spec.path == BUILTIN_MODEL:
        path = str(_demo_model(settings, log))
    elif spec.path == BUILTIN_RANDOM_MODEL:
        path = str(ensure_tiny_model(settings.models_dir))
    elif engine.is_registered(spec.path):
        path = spec.path
    else:
        from rap.rap_core.engines.checkpoints import model_family
        path = str(Path(spec.path).expanduser().resolve())
        model_family(Path(path))
    fingerprint = (short_hash(path, length=32) if engine.is_registered(path)
                   else weights_fingerprint(Path(path), settings.data_dir / "fingerprints.json"))
    dtype = resolve_dtype(spec.device, spec.dtype)
    served = served_model(spec)
    # a served model is another model: its name joins the local checkpoint's fingerprint
    extra = () if served is None else ("openai", served)
    key = short_hash(fingerprint, dtype, TEMPLATE_VERSION, spec.system_prompt, *extra)
    return ResolvedModel(path=path, fingerprint=fingerprint, model_key=key, dtype=dtype,
                         engine=spec.engine, served_model=served)


def served_model(spec: ModelSpec) -> str | None:
    """engine openai: the served model's name (the one given, else the only one the server
    lists; asking the server only when none is given)."""
    if spec.engine != "openai":
        return None
    if spec.engine_model:
        return spec.engine_model
    from rap.rap_core.engines.openai_api import served_model_name
    return served_model_name(spec.engine_url, None)


def resolve_dtype(device: str, dtype: str) -> str:
    """auto -> the fastest dtype the device computes natively (on an avx512_bf16 CPU a 2B
    model runs about 2.5x faster in bf16 than in fp32; the tiny demo model gains nothing)."""
    if dtype != "auto":
        return dtype
    import torch
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return "float32"  # the load fails with torch's own message
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "cpu" and _cpu_has_bf16():
        return "bfloat16"
    return "float32"


def _cpu_has_bf16() -> bool:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def _demo_model(settings: Settings, log: Callable[[str], None]) -> Path:
    """The shipped weights, or the ones `rap demo-model --retrain` left in the data folder
    (said in `log`); never trains."""
    from rap.rap_core.demo.recipe import locate_demo_model
    path, note = locate_demo_model(settings.models_dir)
    if note:
        log(note)
    return path


def model_row(model: ResolvedModel, spec: ModelSpec) -> pl.DataFrame:
    return pl.DataFrame([{"model_key": model.model_key, "model_path": model.path,
                          "weights_fingerprint": model.fingerprint, "dtype": model.dtype,
                          "template_version": TEMPLATE_VERSION,
                          "system_prompt": spec.system_prompt, "engine": model.engine,
                          "served_model": model.served_model}],
                        schema_overrides={"system_prompt": pl.String, "served_model": pl.String})
