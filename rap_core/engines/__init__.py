"""Engines: what generates the rollouts and reads the attention (base.py: the interface and
the registries). The transformers engine (hf.py) is the default, routed by model path; the
serving engines (openai_api.py: an OpenAI-compatible server; vllm_offline.py: vLLM in this
process) generate elsewhere and leave the attention pass to it. Each is imported only when
loaded, so commands that load none stay fast."""

from rap.rap_core.engines.base import register_engine, register_serving_engine


def _transformers(path: str, device: str, dtype: str, system_prompt: str | None):
    from rap.rap_core.engines.hf import HFEngine
    return HFEngine(path, device, dtype, system_prompt)


def _openai(config, path: str, device: str, dtype: str, system_prompt: str | None, local):
    from rap.rap_core.engines.openai_api import OpenAIEngine
    return OpenAIEngine(config, local, _tokenizer_dir(path), system_prompt)


def _vllm(config, path: str, device: str, dtype: str, system_prompt: str | None, local):
    from rap.rap_core.engines.vllm_offline import VllmEngine
    return VllmEngine(path, device, dtype, system_prompt, local)


def _tokenizer_dir(path: str) -> str | None:
    """The local checkpoint folder whose tokenizer re-tokenises a server's text (none for
    a path routed to another registered engine)."""
    from rap.rap_core.engines.base import is_registered
    return None if is_registered(path) else path


register_engine("", _transformers)
register_serving_engine("openai", _openai)
register_serving_engine("vllm", _vllm)
