"""The inference engine interface, and one engine per process.

An engine does two things: sample M responses per prompt (with or without the images) and
teacher-force one response to reduce the final layer's attention to column log-sums. A faster
engine (vLLM, SGLang) only has to implement these two methods.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from rap.rap_core.params import EngineConfig, RolloutSettings
from rap.rap_core.errors import EngineConfigError
from rap.rap_core.io.prompts import build_messages


@dataclass(frozen=True)
class PromptItem:
    """One sample as the engine sees it."""

    sample_id: str
    question: str
    image_paths: tuple[str, ...]
    response_ids: tuple[int, ...] = field(default=())  # set for the attention pass
    system: str | None = None  # the sample's own system prompt (else the engine's)

    def messages(self, with_images: bool, system_prompt: str | None) -> list[dict]:
        """The sample's chat messages under one condition, with its own system prompt or
        else the engine's (rap_core.io.prompts: the same for every engine)."""
        return build_messages(self.question, len(self.image_paths), with_images,
                              self.system or system_prompt)


@dataclass(frozen=True)
class Response:
    text: str
    token_ids: tuple[int, ...]


class SampleError(Exception):
    """A sample this engine cannot process (e.g. prompt too long); code is snake_case."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class Engine(Protocol):
    def generate(self, items: list[PromptItem], with_images: bool,
                 rollout: RolloutSettings) -> list[list[Response] | SampleError]:
        """M sampled responses per item, or a SampleError for that item."""

    def attention_column_log_sums(self, items: list[PromptItem],
                                  head_reduce: str) -> list[np.ndarray | SampleError]:
        """Per response column j: sum over rows i >= j of log A[i, j] (final layer)."""


EngineLoader = Callable[[str, str, str, str | None], Engine]
# a serving engine: (config, local checkpoint path, device, dtype, system prompt, loader of
# the local engine that runs the attention pass) -> engine
ServingLoader = Callable[[EngineConfig, str, str, str, str | None, Callable[[], Engine]], Engine]
_LOADERS: dict[str, EngineLoader] = {}
_SERVING: dict[str, ServingLoader] = {}


def register_engine(prefix: str, loader: EngineLoader) -> None:
    """Route model paths starting with prefix to loader (e.g. a faster engine)."""
    _LOADERS[prefix] = loader
    load_engine.cache_clear()


def register_serving_engine(kind: str, loader: ServingLoader) -> None:
    """An engine kind (ModelSpec.engine) that generates elsewhere than transformers."""
    _SERVING[kind] = loader
    load_engine.cache_clear()


def is_registered(path: str) -> bool:
    """Whether path is routed to a registered engine other than transformers."""
    return any(prefix and path.startswith(prefix) for prefix in _LOADERS)


@functools.lru_cache(maxsize=1)
def load_engine(path: str, device: str, dtype: str, system_prompt: str | None,
                engine: EngineConfig | None = None) -> Engine:
    """Load once per process; tasks pass identifiers, never model objects. With a serving
    engine the local checkpoint is loaded only when its attention pass is asked for."""
    # the longest matching prefix wins; "" (the transformers engine) matches every path
    prefix = max((p for p in _LOADERS if path.startswith(p)), key=len, default=None)
    if prefix is None:
        raise EngineConfigError(f"no engine for model path {path!r}")
    local = functools.partial(_LOADERS[prefix], path, device, dtype, system_prompt)
    if engine is None:
        return local()
    if engine.kind not in _SERVING:
        raise EngineConfigError(f"no engine of kind {engine.kind!r}")
    return _SERVING[engine.kind](engine, path, device, dtype, system_prompt, local)


def run_isolated(items: list, batch_size: int, call: Callable[[list], list],
                 progress: Callable[[int, int], None] | None = None) -> list:
    """Call in batches; when a batch raises, retry its items one by one so one bad
    sample costs only itself. A batch that runs out of device memory is halved and
    retried (never lost), and later batches keep to the size that fitted. Returns one
    result or SampleError per item."""
    out: list = []
    size = batch_size
    while len(out) < len(items):
        if progress:
            progress(len(out), len(items))
        batch = items[len(out):len(out) + size]
        try:
            out.extend(call(batch))
        except EngineConfigError:
            raise
        except Exception as exc:
            if not _is_oom(exc):
                out.extend(_one_by_one(batch, call))
                continue
            _free_device_cache()
            if len(batch) > 1:
                size = (len(batch) + 1) // 2
                continue
            out.append(SampleError("out_of_memory", "one sample alone does not fit in "
                                   f"device memory ({type(exc).__name__}: {exc})"))
    return out


def _is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _free_device_cache() -> None:
    import sys
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _one_by_one(batch: list, call: Callable[[list], list]) -> list:
    results = []
    for item in batch:
        try:
            results.extend(call([item]))
        except EngineConfigError:
            raise
        except SampleError as exc:
            results.append(exc)
        except Exception as exc:  # recorded per sample, the run goes on
            results.append(SampleError("inference_failed", f"{type(exc).__name__}: {exc}"))
    return results
