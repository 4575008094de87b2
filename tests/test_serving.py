"""Rollouts from an OpenAI-compatible server: a real `transformers serve` process (from the
pinned transformers) serving the demo model, started and stopped here by PID (servers.py).
vLLM cannot run on this machine (README: Scaling out); its engine is covered by
bench/gpu_check.sh."""

import json

import httpx
import polars as pl
import pytest

from rap.rap_core.engines import base as engine_mod
from rap.rap_core.engines import openai_api
from rap.rap_core.engines.base import PromptItem, SampleError
from rap.rap_core.errors import EngineConfigError
from rap.rap_core.params import DataSpec, EngineConfig, ModelSpec, RapParams, RolloutSettings
from rap.rap_core.store import open_store
from servers import Server, served_folder

N, SHARD = 12, 4
ROLLOUT = RolloutSettings(m=3, max_new_tokens=32)


@pytest.fixture(scope="module")
def server(demo_model_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("server")
    server = Server(served_folder(demo_model_dir, workdir / "served"), workdir).start()
    yield server
    server.stop()


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(openai_api, "BACKOFF_S", 0.05)


def easy_vqa_items(n: int) -> list[PromptItem]:
    from easy_vqa import get_train_image_paths, get_train_questions
    questions, _, image_ids = get_train_questions()
    paths = get_train_image_paths()
    return [PromptItem(f"s{i}", questions[i], (paths[image_ids[i]],)) for i in range(n)]


def served(server, **kw) -> ModelSpec:
    return ModelSpec(engine="openai", engine_url=server.url, engine_concurrency=4, **kw)


def test_the_server_engine_samples_m_responses_and_matches_transformers_greedily(
        server, demo_model_dir):
    items = easy_vqa_items(4)
    engine = openai_api.OpenAIEngine(EngineConfig("openai", server.url, None, 4, 60.0),
                                     lambda: None, str(demo_model_dir), None)
    assert engine.served == server.model  # the only model the server lists
    from rap.rap_core.engines.hf import HFEngine
    local = HFEngine(str(demo_model_dir), "cpu", "float32", None)
    greedy = RolloutSettings(m=2, temperature=0.0, max_new_tokens=32)
    for with_images in (True, False):  # same prompt, image and template as transformers'
        want = [r[0].text for r in local.generate(items, with_images, greedy)]
        got = engine.generate(items, with_images, greedy)
        assert [r[0].text for r in got] == want and all(len(r) == 2 for r in got)
    sampled = engine.generate(items, True, ROLLOUT)
    assert all(len(r) == ROLLOUT.m for r in sampled)
    # transformers serve ignores n and refuses return_token_ids: learnt, then M requests
    # per sample with one seed each, and the ids from the local tokenizer
    assert engine.supports_n is False and engine.optional["return_token_ids"] is False
    assert engine.optional["generation_config"] is True  # it samples only when told to
    eos = engine.tokenizer().eos_token_id
    for responses in sampled:
        for r in responses:
            assert r.token_ids[-1] == eos and engine.tokenizer().decode(
                r.token_ids, skip_special_tokens=True) == r.text
    texts = {r.text for responses in sampled for r in responses}
    assert len(texts) > len(items)  # sampled, not greedy


def test_a_server_that_fails_is_retried_then_recorded_per_sample(fast_retries):
    """429 and 5xx are retried with backoff; a sample whose requests keep failing becomes
    engine_unavailable; a refused request is the sample's own error; n is honoured."""
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        body = json.loads(request.content)
        text = body["messages"][-1]["content"][-1]["text"]
        calls["n"] += 1
        if "busy" in text and calls["n"] % 3:
            return httpx.Response(429, headers={"retry-after": "0"})
        if "down" in text:
            return httpx.Response(503, text="overloaded")
        if "long" in text:
            return httpx.Response(400, text="This model's maximum context length is 32")
        return httpx.Response(200, json={"choices": [
            {"index": i, "finish_reason": "stop", "token_ids": [7, i],
             "message": {"content": f"answer: {i}"}} for i in range(body.get("n", 1))]})

    engine = openai_api.OpenAIEngine(EngineConfig("openai", "http://x/v1", "m", 2, 5.0),
                                     lambda: None, None, None,
                                     transport=httpx.MockTransport(handler))
    items = [PromptItem(sid, q, ()) for sid, q in
             [("a", "fine"), ("b", "busy"), ("c", "down"), ("d", "too long")]]
    out = engine.generate(items, False, ROLLOUT)
    assert [r.text for r in out[0]] == ["answer: 0", "answer: 1", "answer: 2"]
    assert out[0][1].token_ids == (7, 1)  # the server's ids, when it returns them
    assert len(out[1]) == 3 and engine.stats["retries"] >= 1
    assert isinstance(out[2], SampleError) and out[2].code == "engine_unavailable"
    assert "after 4 attempts: HTTP 503" in str(out[2])
    assert isinstance(out[3], SampleError) and out[3].code == "prompt_too_long"
    assert engine.supports_n is True
    with pytest.raises(EngineConfigError, match="does not serve 'other'"):
        openai_api.OpenAIEngine(EngineConfig("openai", "http://x/v1", "other", 2, 5.0),
                                lambda: None, None, None, transport=httpx.MockTransport(handler))


def test_no_server_at_the_url_is_a_clear_error():
    with pytest.raises(EngineConfigError, match="does not answer GET /models"):
        openai_api.served_model_name("http://127.0.0.1:9/v1", None, timeout_s=2)
    with pytest.raises(ValueError, match="engine openai needs engine_url"):
        ModelSpec(engine="openai")


def rows(settings, statement, **params):
    with open_store(settings.duckdb_path, read_only=True) as store:
        return store.con.sql(statement, params=params).pl()


def counts(settings, keys) -> dict:
    frame = rows(settings, "SELECT condition, count(*) AS n, count(DISTINCT sample_id) AS s, "
                 "count(correct) AS graded FROM rollouts WHERE model_key = $m "
                 "AND settings_key = $k GROUP BY condition", m=keys["model_key"],
                 k=keys["settings_key"])
    return {r["condition"]: r for r in frame.to_dicts()}


def select(server, rollout: RolloutSettings = ROLLOUT) -> dict:
    from rap.flows.rap import run_flow
    return run_flow(RapParams(data=DataSpec(limit=N), model=served(server), rollout=rollout,
                              shard_size=SHARD, track=False, export=False))


@pytest.mark.usefixtures("prefect_harness")
def test_a_server_stopped_mid_run_leaves_errors_that_the_next_run_completes(
        settings, server, fast_retries):
    from rap.flows import rap as flow_mod

    def stop_after_first_shard(todo, done):
        if done.get("multimodal", 0) >= SHARD:
            server.stop()

    rollout = ROLLOUT.model_copy(update={"seed": 1})  # not the other test's cached shards
    engine_mod.load_engine.cache_clear()
    flow_mod.PROGRESS_LISTENERS.append(stop_after_first_shard)
    try:
        broken = select(server, rollout)
    finally:
        flow_mod.PROGRESS_LISTENERS.remove(stop_after_first_shard)
    errors = rows(settings, "SELECT stage, error_code, count(*) AS n FROM inference_errors "
                  "GROUP BY ALL ORDER BY stage").to_dicts()
    # the first shard's samples with a right multimodal answer met the stopped server in
    # the text-only phase; the others in the multimodal one
    settled = rows(settings, "SELECT count(DISTINCT sample_id) AS n FROM rollouts "
                   "WHERE condition = 'mm' AND correct AND settings_key = $k",
                   k=broken["settings_key"])["n"][0]
    assert errors == [{"stage": "multimodal", "error_code": "engine_unavailable",
                       "n": N - SHARD},
                      {"stage": "text_only", "error_code": "engine_unavailable", "n": settled}]
    assert broken["funnel"]["errors"] == N - SHARD + settled
    assert sum(r["n"] for r in broken["reasons"]) == N  # the run went on, rows conserved
    server.start()
    healed = select(server, rollout)
    assert healed["samples_inferred"] == N - SHARD + settled  # only what was missing
    assert rows(settings, "SELECT count(*) AS n FROM inference_errors")["n"][0] == 0
    assert healed["funnel"]["errors"] == 0
    assert counts(settings, healed)["mm"]["s"] == N
    stored = rows(settings, "SELECT sample_id FROM attention_stats")
    assert pl.Series(stored["sample_id"]).n_unique() == N


@pytest.mark.usefixtures("prefect_harness")
def test_select_through_the_server_end_to_end(settings, server):
    first = select(server)
    assert first["samples_inferred"] == N and first["funnel"]["pool_rows"] == N
    c = counts(settings, first)
    assert c["mm"]["n"] == N * ROLLOUT.m and c["mm"]["graded"] == c["mm"]["n"]
    right = rows(settings, "SELECT count(DISTINCT sample_id) AS n FROM rollouts "
                 "WHERE condition = 'mm' AND correct AND settings_key = $k",
                 k=first["settings_key"])["n"][0]
    assert c["text"]["s"] == right and c["text"]["n"] == right * ROLLOUT.m  # settled: skipped
    assert sum(r["n"] for r in first["reasons"]) == N  # every row accounted for
    attention = rows(settings, "SELECT count(*) AS n FROM attention_stats "
                     "WHERE ace_key = $a", a=first["ace_key"])["n"][0]
    assert attention == N  # the ACE pass ran locally over the server's responses
    engine_row = rows(settings, "SELECT engine, served_model FROM models WHERE model_key = $m",
                      m=first["model_key"]).to_dicts()
    assert engine_row == [{"engine": "openai", "served_model": server.model}]
    assert first["model_key"] != select_key_of_transformers(settings)
    again = select(server)
    assert again["samples_inferred"] == 0 and again["samples_stored"] == N
    # a retune loads nothing and asks no server: stopped (the last test of the module), it
    # still re-selects
    server.stop()
    loads = engine_mod.load_engine.cache_info().misses
    from rap.flows.rap import run_flow
    retuned = run_flow(RapParams(mode="retune", lambda_c=0.0, track=False, export=False))
    assert engine_mod.load_engine.cache_info().misses == loads
    assert retuned["model_key"] == first["model_key"] and retuned["samples_inferred"] == 0


def select_key_of_transformers(settings) -> str:
    from rap.rap_core.models import resolve_model
    return resolve_model(ModelSpec(), settings, log=lambda _: None).model_key
