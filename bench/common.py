"""Shared by the benchmarks: a pool of easy-VQA samples, the model, a timer, a table."""

from __future__ import annotations

import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def machine() -> str:
    import torch
    cores = os.cpu_count()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {cores} cores, {device}, " \
           f"torch {torch.__version__}"


@contextmanager
def timed(into: dict, name: str):
    start = time.perf_counter()
    yield
    into[name] = time.perf_counter() - start


def table(rows: list[dict]) -> str:
    cols = list(rows[0])
    width = {c: max(len(c), *(len(_cell(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.rjust(width[c]) for c in cols)]
    lines += ["  ".join(_cell(r[c]).rjust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def _cell(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def model_path(settings, name: str) -> str:
    """builtin:easy-vqa-vlm (trained demo model, trained once if missing) or a folder."""
    from rap_core.models import resolve_model
    from rap_core.params import ModelSpec
    return resolve_model(ModelSpec(path=name), settings, log=print).path


def easy_vqa_samples(n: int, images_dir: Path):
    from rap_core.params import DataSpec
    from rap_core.readers import read_pool
    return read_pool(DataSpec(limit=n), images_dir).samples
