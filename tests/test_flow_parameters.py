"""The flow's flat parameters: one per RapParams field, typed, bounded and described."""

import pytest
from pydantic import BaseModel, ValidationError

from rap.flows.report import selection_markdown
from rap.rap_core.params import (FLOW_PARAMETERS, RapParams, Thresholds, flat_params,
                             params_from_flat)


def _leaves(model: type[BaseModel], group=None):
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            yield from _leaves(sub, name)
        else:
            yield group, name


def test_every_field_is_one_flat_parameter():
    assert sorted(FLOW_PARAMETERS.values(), key=str) == sorted(_leaves(RapParams), key=str)


def test_flat_round_trip_and_refusals():
    params = params_from_flat({"mode": "retune", "run": "R1", "lambda_c": 0.3, "m": 2,
                               "data": "pool.jsonl", "ace_response": "first", "drm_k": 4})
    assert params.mode == "retune" and params.base_run == "R1"
    assert params.thresholds.lambda_c == 0.3 and params.rollout.m == 2
    assert params.data.path == "pool.jsonl" and params.ace.response == "first"
    assert params_from_flat(flat_params(params)) == params
    assert params_from_flat({}) == RapParams()
    with pytest.raises(ValueError, match="unknown rap parameter 'lambda'"):
        params_from_flat({"lambda": 1})
    with pytest.raises(ValidationError):
        params_from_flat({"m": 0})
    with pytest.raises(ValidationError):
        Thresholds(drm_k=-1)


def test_flow_form_has_types_bounds_defaults_and_descriptions():
    from rap.flows.rap import rap
    schema = rap.parameters.model_dump()["properties"]
    assert list(schema) == list(FLOW_PARAMETERS)
    defaults = flat_params(RapParams())
    for name, prop in schema.items():
        assert prop.get("description"), name
        assert prop.get("default") == defaults[name], name
    assert (schema["m"]["minimum"], schema["m"]["maximum"]) == (1, 64)
    assert schema["mode"]["enum"] == ["select", "retune"]
    # thresholds are optional: empty means the default, or a retune's base run's value
    assert {"type": "number"} in schema["lambda_c"]["anyOf"]
    assert {"type": "null"} in schema["lambda_c"]["anyOf"] and defaults["lambda_c"] is None
    assert "a retune: the base run's" in schema["lambda_c"]["description"]
    assert {"minimum": 0, "type": "integer"} in schema["drm_k"]["anyOf"]
    assert {"minimum": 1, "type": "integer"} in schema["batch_size"]["anyOf"]
    assert defaults["batch_size"] == "auto" and "auto" in str(schema["batch_size"]["anyOf"])
    assert "Args:" not in rap.description


@pytest.mark.parametrize("given, kept", [("auto", "auto"), (16, 16), ("16", 16), (" 8 ", 8)])
def test_batch_size_is_auto_or_a_whole_number(given, kept):
    assert params_from_flat({"batch_size": given}).batch_size == kept


@pytest.mark.parametrize("given", [0, -1, "0", 1.5, "1.5", "big", True, None])
def test_a_batch_size_that_is_neither_is_refused_in_one_line(given):
    with pytest.raises(ValidationError, match="must be auto or a whole number of samples >= 1"):
        params_from_flat({"batch_size": given})


def test_selection_markdown_names_funnel_reasons_and_places():
    summary = {
        "run_id": "R1", "mode": "select", "samples_inferred": 5, "samples_stored": 2,
        "funnel": {"pool_rows": 9, "after_cde": 4, "after_ace": 3, "after_drm": 3,
                   "errors": 1, "duplicates": 1, "readmitted_from_cde": 1,
                   "readmitted_from_ace": 0},
        "reasons": [{"state": "selected", "stage": "ace", "reason": "passed_cde_ace", "n": 2},
                    {"state": "selected", "stage": "drm", "reason": "drm_hard_replacement",
                     "readmitted_from": "cde", "n": 1},
                    {"state": "dropped", "stage": "cde", "reason": "cde_language_prior",
                     "n": 4},
                    {"state": "dropped", "stage": "ace", "reason": "ace_low_attention",
                     "n": 1},
                    {"state": "error", "stage": "ingest", "reason": "image_missing", "n": 2}],
        "duckdb_path": "/d/rap.duckdb", "export_path": "/d/exports/R1/easyr1.parquet",
        "mlflow_run_id": "abc123", "pool_id": "P", "model_key": "M", "settings_key": "S"}
    text = selection_markdown(summary, "sqlite:///d/mlflow.db")
    assert "# RAP select run `R1`" in text and "| after DRM (selected) | 3 |" in text
    assert "| dropped | cde | cde_language_prior | 4 |" in text
    # every row once, the selected side included
    assert "image_missing" in text and "ace_low_attention" in text
    assert "| selected | ace | passed_cde_ace | 2 |" in text
    assert "| selected | drm | drm_hard_replacement (was dropped by CDE) | 1 |" in text
    assert "re-admitted after a drop by CDE 1, ACE 0" in text
    assert "`abc123`" in text and "/d/exports/R1/easyr1.parquet" in text
    untracked = selection_markdown({**summary, "mlflow_run_id": None, "export_path": None,
                                    "reasons": []}, "x")
    assert "MLflow run: not tracked" in untracked and "No rows." in untracked
