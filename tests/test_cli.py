"""The command line: flags map onto parameters, queries are read-only, errors are clear."""

import pytest

from rap.flows import cli
from rap.rap_core.store import open_store


@pytest.fixture(autouse=True)
def keep_env(monkeypatch):
    """The CLI sets process-wide Prefect paths; tests already have theirs."""
    monkeypatch.setattr(cli, "configure_process_env", lambda data_dir: None)


def parse(*argv):
    return cli.parse_params(list(argv))


def test_only_given_flags_override_defaults():
    p = parse("select", "--data", "pool.jsonl", "--m", "3", "--lambda-c", "0.3",
              "--drm-k", "7", "--dtype", "bfloat16", "--drm-allow-nonpositive-d")
    assert p.mode == "select" and p.data.path == "pool.jsonl" and p.data.limit is None
    assert p.rollout.m == 3 and p.rollout.temperature == 1.0
    assert p.thresholds.lambda_c == 0.3 and p.thresholds.drm_k == 7
    assert p.thresholds.drm_require_positive_d is False and p.model.dtype == "bfloat16"
    r = parse("retune", "--run", "R1", "--sigma", "3")
    assert r.mode == "retune" and r.base_run == "R1" and r.thresholds.sigma == 3.0
    assert r.thresholds.drm_require_positive_d is True


def test_bad_values_are_refused_with_the_field_named(capsys):
    assert cli.main(["select", "--dtype", "int8"]) == 2
    assert "dtype" in capsys.readouterr().err
    assert cli.main(["retune", "--sigma", "-1"]) == 2
    assert "sigma" in capsys.readouterr().err


def test_query_is_read_only_and_prints_a_table(data_dir, settings, capsys):
    with open_store(settings.duckdb_path):
        pass
    assert cli.main(["query", "SELECT 41 + 1 AS answer"]) == 0
    assert "42" in capsys.readouterr().out
    assert cli.main(["query", "DELETE FROM samples"]) == 2
    assert "read-only" in capsys.readouterr().err.lower()


def test_query_without_a_store_says_what_to_do(data_dir, capsys):
    assert cli.main(["query", "SELECT 1"]) == 2
    assert "rap select" in capsys.readouterr().err


@pytest.mark.parametrize("argv,field", [
    (["validate", "--share", "1.5"], "--share"), (["validate", "--n", "0"], "--n"),
    (["experiment", "--epochs", "0"], "--epochs")])
def test_validate_and_experiment_refuse_out_of_range_values(argv, field, capsys):
    assert cli.main(argv) == 2
    assert field in capsys.readouterr().err


def test_server_commands_parse_and_bound_ports(capsys):
    assert cli.parse_command(["server", "start"]) == (
        ["server", "start"], {"host": "127.0.0.1", "port": 4200})
    assert cli.parse_command(["server", "worker", "--port", "4300", "--wait", "5"]) == (
        ["server", "worker"], {"port": 4300, "wait": 5.0})
    assert cli.parse_command(["server", "deploy"])[1]["port"] is None
    assert cli.main(["server", "deploy", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert cli.main(["server"]) != 0  # an action is required


def test_select_and_retune_flags_come_from_the_parameter_model():
    """Every flat flow parameter is a select flag; retune has the run, the method and the
    thresholds, nothing about pool, model or rollouts."""
    from rap.rap_core.params import FLOW_PARAMETERS, Thresholds
    select = {p.name for p in cli.selection_options("select")}
    retune = {p.name for p in cli.selection_options("retune")}
    assert select == set(FLOW_PARAMETERS) - {"mode", "run"}
    assert set(Thresholds.model_fields) | {"run", "method"} <= retune
    assert not retune & {"data", "model", "m", "temperature", "head_reduce", "runner"}


def test_help_lists_the_commands_and_the_threshold_panels(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(c in out for c in ("select", "retune", "query", "compare", "export", "server"))
    assert cli.main(["retune", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Thresholds: cde" in out and "--lambda-c" in out and "--drm-allow-nonpositive-d" in out


def test_commands_that_load_no_model_import_neither_torch_nor_transformers(tiny_model_dir,
                                                                           tmp_path):
    """A rerun, retune or query must not pay for importing the model stack (5 s here)."""
    import os
    import subprocess
    import sys
    code = ("import sys; import rap.flows.cli, rap.flows.rap, rap.rap_core.demo.model\n"
            "from rap_core.models import resolve_model\n"
            "from rap_core.params import ModelSpec\nfrom rap_core.settings import Settings\n"
            f"resolve_model(ModelSpec(path={str(tiny_model_dir)!r}), Settings.from_env())\n"
            "rap.flows.cli.main(['runs'])\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ, RAP_DATA_DIR=str(tmp_path)))
    assert out.stdout.strip() == "[]"


def test_supported_model_types_match_the_loaders():
    from rap.rap_core.engines.checkpoints import SUPPORTED_MODEL_TYPES
    from rap.rap_core.engines.hf_loading import FAMILIES
    assert set(SUPPORTED_MODEL_TYPES) == set(FAMILIES)


def test_runner_flags_and_the_missing_ray_extra(monkeypatch, capsys):
    import sys

    from rap.rap_core.params import RunnerSpec
    from rap.flows.runners import RunnerError, ray_task_runner
    runner = parse("select", "--runner", "ray", "--ray-address", "ray://head:10001",
                   "--ray-num-gpus", "0.5").runner
    assert (runner.kind, runner.address, runner.num_gpus, runner.num_cpus) == (
        "ray", "ray://head:10001", 0.5, 1.0)
    assert cli.main(["select", "--runner", "spark"]) == 2
    assert "runner" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "prefect_ray", None)  # as if the extra were not installed
    with pytest.raises(RunnerError, match=r"pip install '\.\[ray\]'"):
        with ray_task_runner(RunnerSpec(kind="ray")):
            pass


def _refused(argv: list[str]) -> list[str]:
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(argv) == 2
    return err.getvalue().strip().splitlines()


def test_bounds_and_unparsable_lines_are_one_line_naming_the_flag():
    assert _refused(["select", "--m", "0"]) == ["rap: error: --m must be at least 1 (got 0)"]
    assert _refused(["retune", "--lambda-a", "0"]) == [
        "rap: error: --lambda-a must be more than 0 (got 0.0)"]
    assert _refused(["select", "--engine", "openai"]) == [
        "rap: error: engine openai needs engine_url (the server's base URL, e.g. "
        "http://127.0.0.1:8000/v1)"]
    assert _refused(["select", "--format", "nope"]) == [
        "rap: error: Invalid value for '--format': 'nope' is not one of 'auto', 'easyr1', "
        "'mmeureka', 'openrlhf', 'verl', 'hf'. (`rap select --help` lists the options)"]
    assert _refused(["select", "--no-such-flag"]) == [
        "rap: error: No such option: --no-such-flag (`rap select --help` lists the options)"]


def test_a_missing_pool_or_model_is_one_line_before_prefect_starts(tmp_path):
    """Checked by the command line itself: no Prefect, no model stack, no traceback."""
    import os
    import subprocess
    import sys
    (tmp_path / "empty_model").mkdir()
    code = ("import sys; import rap.flows.cli\n"
            "for argv in (['select', '--data', '/nonexistent.jsonl'],\n"
            "             ['select', '--data', 'builtin:nope'],\n"
            f"             ['select', '--model', {str(tmp_path / 'empty_model')!r}],\n"
            "             ['select', '--model', 'builtin:nope']):\n"
            "    assert rap.flows.cli.main(argv) == 2, argv\n"
            "print(sorted(m for m in ('prefect', 'torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=dict(os.environ, RAP_DATA_DIR=str(tmp_path / "d")))
    assert done.stdout.strip() == "[]"
    assert done.stderr.strip().splitlines() == [
        "rap: error: pool not found: /nonexistent.jsonl",
        "rap: error: unknown builtin pool 'builtin:nope' (rap has builtin:easy-vqa)",
        f"rap: error: {tmp_path / 'empty_model'}: no config.json; --model must be a local "
        "transformers checkpoint folder",
        "rap: error: unknown builtin model 'builtin:nope' (rap has builtin:easy-vqa-vlm and "
        "builtin:tiny-qwen2-vl)"]
