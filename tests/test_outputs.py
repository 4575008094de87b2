"""Files a user names (`rap export --out`, `rap query --out`): rap never removes or overwrites
what it did not write, never writes into its own store, and replaces only its own outputs."""

import hashlib
import json
import os

import polars as pl
import pytest

import fakes
from conftest import write_png
from rap.flows import cli
from rap.rap_core.params import DataSpec, ModelSpec, RapParams, RolloutSettings


@pytest.fixture(autouse=True)
def keep_env(monkeypatch):
    monkeypatch.setattr(cli, "configure_process_env", lambda data_dir: None)


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory, prefect_harness):
    """A data folder holding one selection run of three samples, all selected (their
    outcomes scripted: the subject here is the files, not the model)."""
    root = tmp_path_factory.mktemp("stored")
    pool = root / "pool"
    lines = []
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        write_png(pool / f"{i}.png", colour)
        lines.append(json.dumps({"problem": f"<image>Colour {i}?", "answer": "red",
                                 "images": [f"{i}.png"]}))
    (pool / "pool.jsonl").write_text("\n".join(lines) + "\n")
    spec = DataSpec(path=str(pool / "pool.jsonl"))
    model = fakes.script_pool(spec, root, [fakes.outcome(2, 0)] * 3)
    data = root / "rap_data"
    before = os.environ.get("RAP_DATA_DIR")
    os.environ["RAP_DATA_DIR"] = str(data)
    try:
        from rap.flows.rap import run_flow
        summary = run_flow(RapParams(data=spec, model=ModelSpec(path=model),
                                     rollout=RolloutSettings(m=2, max_new_tokens=8),
                                     track=False, thresholds={"lambda_c": -1.0}))
    finally:
        if before is None:
            os.environ.pop("RAP_DATA_DIR")
        else:
            os.environ["RAP_DATA_DIR"] = before
    assert summary["funnel"]["after_drm"] == 3
    return data, summary["run_id"]


@pytest.fixture
def data(stored_run, monkeypatch):
    monkeypatch.setenv("RAP_DATA_DIR", str(stored_run[0]))
    return stored_run[0]


def listing(folder):
    """Every path under folder with the sha256 of each file: what must not change."""
    out = {}
    for p in sorted(folder.rglob("*")):
        out[str(p.relative_to(folder))] = (hashlib.sha256(p.read_bytes()).hexdigest()
                                           if p.is_file() else "dir")
    return out


def export(*argv, fmt="easyr1"):
    return cli.main(["export", "--format", fmt, *argv])


def refused(capsys, *words):
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("rap: error: ") and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def test_the_data_folder_and_its_ancestors_are_never_written(data, capsys, tmp_path,
                                                              monkeypatch):
    before = listing(data)
    for out in [data, data.parent, "/", data / "rap.duckdb", data / "rap.lock",
                data / "models" / "x.parquet", data / "prefect", data / "mlflow.db",
                data / "exports"]:
        for force in ([], ["--force"]):
            assert export("--out", str(out), *force) == 2
            refused(capsys, "refusing to write")
    assert listing(data) == before
    sub = tmp_path / "work" / "sub"
    sub.mkdir(parents=True)
    (tmp_path / "work" / "notes.txt").write_text("mine")
    monkeypatch.chdir(sub)
    assert export("--out", "..", "--force") == 2
    refused(capsys, "ancestor of the working directory")
    assert export("--out", ".", "--force", fmt="hf") == 2
    refused(capsys, "is the working directory")
    assert (tmp_path / "work" / "notes.txt").read_text() == "mine" and sub.is_dir()


def test_an_existing_path_rap_did_not_write_is_never_replaced(data, capsys, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "keep.txt").write_text("precious")
    file = tmp_path / "mine.parquet"
    file.write_bytes(b"precious")
    for force in ([], ["--force"]):
        assert export("--out", str(folder), *force, fmt="hf") == 2
        refused(capsys, "not a rap export")
        assert export("--out", str(file), *force) == 2
        refused(capsys, "not a rap export")
        assert export("--out", str(folder)) == 2  # a folder where a file would go
        refused(capsys, "not a plain file")
    assert (folder / "keep.txt").read_text() == "precious" and file.read_bytes() == b"precious"


def test_force_replaces_only_an_unchanged_rap_export_of_the_same_format(data, capsys, tmp_path):
    out = tmp_path / "sel.parquet"
    assert export("--out", str(out)) == 0
    manifest = json.loads((tmp_path / "sel.parquet.manifest.json").read_text())
    assert manifest["written_by"] == "rap" and manifest["format"] == "easyr1"
    assert export("--out", str(out)) == 2
    refused(capsys, "already exists", "--force")
    assert export("--out", str(out), "--force", fmt="verl") == 2
    refused(capsys, "rap easyr1 output, not verl")
    assert export("--out", str(out), "--force") == 0
    assert pl.read_parquet(out).height == manifest["rows"]
    out.write_bytes(out.read_bytes() + b"edited")
    assert export("--out", str(out), "--force") == 2
    refused(capsys, "has changed since rap wrote it")
    assert out.read_bytes().endswith(b"edited")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".rap-tmp")]


def test_an_hf_folder_with_a_file_added_is_kept(data, capsys, tmp_path):
    out = tmp_path / "hf"
    assert export("--out", str(out), fmt="hf") == 0
    assert export("--out", str(out), "--force", fmt="hf") == 0  # all its files are rap's
    (out / "notes.md").write_text("mine")
    assert export("--out", str(out), "--force", fmt="hf") == 2
    refused(capsys, "notes.md is not part of the previous hf output")
    assert (out / "notes.md").read_text() == "mine" and (out / "dataset_info.json").exists()


def test_the_default_place_is_rewritten_for_the_same_run(data, stored_run, capsys):
    target = data / "exports" / stored_run[1] / "easyr1.parquet"
    assert target.exists()  # written by the run
    assert export() == 0
    assert str(target) in capsys.readouterr().out


def test_a_failed_write_leaves_the_previous_export_whole(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sel.parquet"
    assert export("--out", str(out)) == 0
    before = listing(tmp_path)

    def broken(self, path, *args, **kwargs):
        open(path, "wb").write(b"half")
        raise OSError(28, "No space left on device", str(path))
    monkeypatch.setattr(pl.DataFrame, "write_parquet", broken)
    assert export("--out", str(out), "--force") == 2
    refused(capsys, "No space left on device")
    assert listing(tmp_path) == before  # the old export and its manifest, no temporary file


def test_openrlhf_uris_are_plain_paths_the_trainers_open(data, tmp_path, capsys):
    from PIL import Image

    from rap.rap_core.io.export_check import check_export
    out = tmp_path / "out sp" / "dätä" / "sel.jsonl"
    assert export("--out", str(out), fmt="openrlhf") == 0
    assert check_export(out, "openrlhf") == []
    for line in out.read_text(encoding="utf-8").splitlines():
        for turn in json.loads(json.loads(line)["message"]):
            for item in turn["content"]:
                if item["type"] == "image":
                    assert "%" not in item["image"] and "out sp/dätä" in item["image"]
                    Image.open(item["image"].removeprefix("file://")).verify()  # as they do
    images = out.with_name("sel_images")
    assert export("--out", str(out), "--force", fmt="openrlhf") == 0
    (images / "extra.png").write_bytes(b"mine")
    assert export("--out", str(out), "--force", fmt="openrlhf") == 2
    refused(capsys, "extra.png is not part of the previous openrlhf output")
