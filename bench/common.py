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


def synchronize(device: str) -> None:
    """Wait for a GPU's queued work before reading a clock (nothing to wait for on a CPU)."""
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def model_path(name: str, work: Path) -> str:
    """builtin:easy-vqa-vlm (trained demo model, trained once into ./rap_data/models if
    missing) or a folder; work holds the MLflow record of a training."""
    from rap.rap_core.models import resolve_model
    from rap.rap_core.params import ModelSpec
    from rap.rap_core.settings import Settings
    settings = Settings(data_dir=Path("rap_data").resolve(),
                        mlflow_tracking_uri=f"sqlite:///{work / 'm.db'}")
    return resolve_model(ModelSpec(path=name), settings, log=print).path


def data_folder(folder: Path) -> Path:
    """Point this process's rap at `folder` as the CLI does before a writing command: the
    folder created and checked, and (the first time) Prefect's home and database in it. A
    folder or database that cannot be used ends the benchmark at once, with one line."""
    import sqlite3

    from rap.rap_core.settings import Settings, configure_process_env
    from rap.rap_core.store import StoreError
    from rap.rap_core.store.preflight import prepare_data_dir
    os.environ["RAP_DATA_DIR"] = str(folder)
    settings = Settings.from_env()
    try:
        prepare_data_dir(settings)
    except StoreError as exc:
        sys.exit(f"bench: error: {exc}")
    configure_process_env(settings.data_dir)  # Prefect's home: the first folder's (setdefault)
    home = Path(os.environ["PREFECT_HOME"])
    if "PREFECT_API_URL" not in os.environ:  # else a running server holds the database
        try:
            home.mkdir(parents=True, exist_ok=True)
            sqlite3.connect(home / "prefect.db").close()
        except (OSError, sqlite3.Error) as exc:
            sys.exit(f"bench: error: Prefect's temporary server could not open its database "
                     f"in {home} ({exc}); set PREFECT_HOME or RAP_DATA_DIR to a writable "
                     "folder")
    return settings.data_dir


def flow_bench(name: str, work: Path):
    """For benchmarks that run the flow: the process set up as the CLI does (first store
    under work), the model resolved and loaded once, outside any timing. (run_flow, path,
    engine)"""
    data_folder(work / "store0")
    from rap.flows.rap import run_flow
    from rap.rap_core.engines.base import load_engine
    path = model_path(name, work)
    return run_flow, path, load_engine(path, "cpu", "float32", None)


def easy_vqa_samples(n: int, images_dir: Path):
    from rap.rap_core.params import DataSpec
    from rap.rap_core.io.readers import read_pool
    return read_pool(DataSpec(limit=n), images_dir).samples


# Qwen2-VL-2B-Instruct's published shapes (config.json of the checkpoint)
QWEN2_VL_2B_TEXT = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                        num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                        max_position_embeddings=32768,
                        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                         "mrope_section": [16, 24, 24]})
QWEN2_VL_2B_VISION = dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16,
                          mlp_ratio=4, patch_size=14, spatial_merge_size=2,
                          temporal_patch_size=2)


def random_engine(text: dict, vision: dict | None = None, dtype: str = "float32",
                  device: str = "cpu", seed: int = 0, processor: dict | None = None):
    """An HFEngine over a random-weight Qwen2-VL of the given shapes, built in memory with
    the engine's attention (nothing downloaded, nothing written); processor: the image
    processor's sizes (build_processor's arguments)."""
    import torch

    from rap.rap_core.engines.attention import NAME
    from rap.rap_core.engines.hf import HFEngine
    from rap.rap_core.demo.tiny_model import build_model, build_processor
    processor = build_processor("qwen2_vl", **(processor or {}))
    processor.tokenizer.padding_side = "left"
    vision = {"hidden_size": text["hidden_size"], **(vision or {})}  # merger -> text width
    model = build_model(processor.tokenizer, seed, "qwen2_vl", text=text, vision=vision,
                        dtype=getattr(torch, dtype),
                        attn_implementation={"text_config": NAME, "vision_config": "sdpa"})
    return HFEngine.from_loaded(model.to(device), processor, device)


class PeakMemory:
    """Peak memory of a block above what was in use when it started: the CUDA allocator's
    peak on a GPU; on a CPU the process's peak RSS (VmHWM, reset through clear_refs), which
    tracks tensors only when malloc returns large blocks at once (see cpu_exact_malloc)."""

    def __init__(self, device: str):
        self.device = device

    def __enter__(self):
        import torch
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")
            self.base = _status_kb("VmRSS") * 1024
        return self

    def __exit__(self, *exc):
        import torch
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.peak = _status_kb("VmHWM") * 1024 - self.base
        self.mb = self.peak / 2**20


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def cpu_exact_malloc() -> None:
    """Re-exec this script with glibc returning every block of 64 KiB or more to the OS on
    free, so that peak RSS measures tensors, not memory malloc keeps for reuse."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != "65536":
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
        os.environ["MALLOC_TRIM_THRESHOLD_"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
