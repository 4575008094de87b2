"""The vLLM engine's side of the contract, on the tiny model. vLLM itself cannot run on
these machines (README: "Rollouts from a serving engine"), so a stand-in `vllm` module
records what the engine asks of `LLM.generate` and answers like vLLM's RequestOutput; the
real vLLM runs in bench/gpu_check.sh."""

import sys
import types
from dataclasses import dataclass

import pytest

from rap.rap_core.engines import base as engine_mod
from rap.rap_core.engines.base import PromptItem
from rap.rap_core.errors import EngineConfigError
from rap.rap_core.params import EngineConfig, RolloutSettings


@dataclass
class SamplingParams:  # the fields rap sets, as vLLM names them
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    seed: int | None = None


class LLM:
    made: list = []

    def __init__(self, model, **kwargs):
        self.model, self.kwargs, self.calls = model, kwargs, []
        LLM.made.append(self)

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append((prompts, sampling_params))
        return [types.SimpleNamespace(outputs=[
            types.SimpleNamespace(text=f"answer: {i}", token_ids=[5, i])
            for i in range(p.n)]) for p in sampling_params]


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    LLM.made.clear()
    engine_mod.load_engine.cache_clear()
    yield
    engine_mod.load_engine.cache_clear()


def test_one_request_per_sample_with_its_images_seed_and_n(fake_vllm, tiny_model_dir,
                                                           tmp_path):
    from conftest import write_png
    image = str(write_png(tmp_path / "a.png"))
    items = [PromptItem("a", "what colour?", (image,)), PromptItem("b", "<image> and?", (image,))]
    engine = engine_mod.load_engine(str(tiny_model_dir), "cpu", "float32", None,
                                    EngineConfig("vllm"))
    rollout = RolloutSettings(m=3)
    out = engine.generate(items, True, rollout)
    assert [[r.text for r in rs] for rs in out] == [["answer: 0", "answer: 1", "answer: 2"]] * 2
    assert out[0][1].token_ids == (5, 1)
    prompts, params = LLM.made[0].calls[0]
    assert all(p["prompt"].count("<|image_pad|>") == 1 for p in prompts)
    assert all(len(p["multi_modal_data"]["image"]) == 1 for p in prompts)
    assert [p.n for p in params] == [3, 3] and params[0].seed != params[1].seed
    again = engine.generate(items[:1], True, rollout)  # a sample's seed is its own
    assert LLM.made[0].calls[1][1][0].seed == params[0].seed and again[0] == out[0]
    text, text_params = engine.requests(items, False, rollout)
    assert all("<|image_pad|>" not in p["prompt"] and "multi_modal_data" not in p for p in text)
    assert text_params[0].seed != params[0].seed  # the other condition draws other samples
    # the attention pass: vLLM shut down, then the transformers engine on the same folder
    ids = tuple(engine.processor.tokenizer.encode("red, answer: red", add_special_tokens=False))
    forced = [PromptItem("a", "what colour?", (image,), ids)]
    sums = engine.attention_column_log_sums(forced, "mean")
    assert engine.llm is None and len(sums[0]) == len(ids)
    engine.generate(items[:1], True, rollout)  # generating again starts vLLM again
    assert len(LLM.made) == 2


def test_without_vllm_the_engine_says_how_to_get_it(tiny_model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    engine_mod.load_engine.cache_clear()
    with pytest.raises(EngineConfigError, match="engine vllm needs vLLM"):
        engine_mod.load_engine(str(tiny_model_dir), "cpu", "float32", None,
                               EngineConfig("vllm"))
    engine_mod.load_engine.cache_clear()
