"""Content keys: sample ids, weights fingerprints and model keys."""

import json
import os

import pytest

from rap.rap_core.engines.checkpoints import ModelLoadError, model_family
from rap.rap_core.keys import sample_id, weights_fingerprint
from rap.rap_core.models import resolve_model
from rap.rap_core.params import AceSettings, ModelSpec, RolloutSettings


def test_sample_id_is_content_and_unambiguous():
    assert sample_id("q", "a", ["h"]) == sample_id("q", "a", ["h"])
    assert sample_id("q", "a", ["h"]) != sample_id("q", "a", ["h2"])
    assert sample_id("ab", "c", []) != sample_id("a", "bc", [])  # field boundaries count


def test_weights_fingerprint_follows_the_bytes(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x00" * 64)
    cache = tmp_path / "cache.json"
    first = weights_fingerprint(tmp_path, cache)
    assert weights_fingerprint(tmp_path, cache) == first and cache.exists()
    weights.write_bytes(b"\x01" * 64)
    os.utime(weights, ns=(1, 1))
    assert weights_fingerprint(tmp_path, cache) != first


def test_model_key_covers_dtype_and_system_prompt(settings, tiny_model_dir):
    base = resolve_model(ModelSpec(path=str(tiny_model_dir)), settings)
    bf16 = resolve_model(ModelSpec(path=str(tiny_model_dir), dtype="bfloat16"), settings)
    system = resolve_model(ModelSpec(path=str(tiny_model_dir), system_prompt="Think."), settings)
    assert len({base.model_key, bf16.model_key, system.model_key}) == 3
    assert base.fingerprint == bf16.fingerprint


def test_auto_dtype_is_keyed_as_the_dtype_it_resolves_to(settings, tiny_model_dir, monkeypatch):
    import rap.rap_core.models as models
    for has_bf16, want in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(models, "_cpu_has_bf16", lambda: has_bf16)
        auto = resolve_model(ModelSpec(path=str(tiny_model_dir), dtype="auto"), settings)
        fixed = resolve_model(ModelSpec(path=str(tiny_model_dir), dtype=want), settings)
        assert (auto.dtype, auto.model_key) == (want, fixed.model_key)
    assert models.resolve_dtype("cuda:0", "float16") == "float16"


def test_settings_keys_change_with_any_field():
    r = RolloutSettings()
    assert r.key() == RolloutSettings().key() != RolloutSettings(top_p=0.9).key()
    assert AceSettings().key(r.key()) != AceSettings(head_reduce="max").key(r.key())
    assert AceSettings().key(r.key()) != AceSettings().key(RolloutSettings(m=3).key())


def test_unsupported_model_folders_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        model_family(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(ModelLoadError, match="'llava' is not supported"):
        model_family(tmp_path)
