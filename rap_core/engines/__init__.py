"""Engines: what generates the rollouts and reads the attention (base.py: the interface and
the registry of engines by model-path prefix). The transformers engine (hf.py) is the
default; it is imported only when a model is loaded, so commands that load none stay fast."""

from rap_core.engines.base import register_engine


def _transformers(path: str, device: str, dtype: str, system_prompt: str | None):
    from rap_core.engines.hf import HFEngine
    return HFEngine(path, device, dtype, system_prompt)


register_engine("", _transformers)
