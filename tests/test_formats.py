"""Real pool layouts in (MM-Eureka, OpenRLHF-M, verl, HF), trainer files out (EasyR1, verl,
OpenRLHF-M, HF), the round trip between them, and the checker catching each planted rule."""

import json

import polars as pl
import pytest

from conftest import write_png
from rap.rap_core.io.export import EXPORT_FORMATS, write_export
from rap.rap_core.io.export_check import check_export
from rap.rap_core.keys import sample_id, sha256_bytes, sha256_file
from rap.rap_core.params import DataSpec
from rap.rap_core.io.readers import PoolReadError, read_pool

SYSTEM = "You are a careful visual reasoner. Put the final answer in \\boxed{}."


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "data"
    return {name: write_png(d / "img" / f"{name}.png", color)
            for name, color in [("red", (220, 20, 20)), ("blue", (20, 20, 220)),
                                ("green", (20, 200, 20))]}


def jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def read(path, tmp_path, **kw):
    return read_pool(DataSpec(path=str(path), **kw), tmp_path / "cache")


def status(pool):
    return [(r["row_status"], r["error_code"]) for r in pool.rows.iter_rows(named=True)]


def test_mm_eureka_jsonl(images, tmp_path):
    path = jsonl(tmp_path / "data" / "eureka.jsonl", [
        {"id": "e1", "conversations": [{"role": "system", "content": SYSTEM},
                                       {"role": "user", "content": "What colour is it?"}],
         "answer": "red", "image_urls": [images["red"].resolve().as_uri()]},
        {"id": "e2", "conversations": [{"role": "user", "content":
                                        "<image> left, <image> right: which is blue?"}],
         "answer": "right", "image_urls": ["img/red.png", "img/blue.png"]},
        {"id": "e3", "conversations": [{"role": "user", "content": "2+2?"}],
         "answer": "4", "image_urls": []},
        {"id": "e4", "conversations": [{"role": "system", "content": SYSTEM}],
         "answer": "x", "image_urls": ["img/red.png"]},
        {"id": "e5", "conversations": [{"role": "user", "content": "q"}], "answer": "x",
         "image_urls": ["file:///nowhere/gone.png"]},
    ])
    pool = read(path, tmp_path)
    assert pool.layout == "mmeureka"
    assert status(pool) == [("ok", None), ("ok", None), ("ok", None), ("error", "bad_message"),
                            ("error", "image_missing")]
    first, second, text_only = pool.samples.iter_rows(named=True)
    assert first["system"] == SYSTEM and first["question"] == "What colour is it?"
    red = sha256_bytes(images["red"].read_bytes())
    assert first["sample_id"] == sample_id("What colour is it?", "red", [red], SYSTEM)
    assert second["question"] == "<image> left, <image> right: which is blue?"
    assert second["image_paths"] == [str(images["red"].resolve()),
                                     str(images["blue"].resolve())]
    assert text_only["image_paths"] == []  # CDE drops it as cde_no_image, not an error
    assert pool.rows["source_id"].to_list() == ["e1", "e2", "e3", "e4", "e5"]


def test_openrlhf_message_strings(images, tmp_path):
    def message(*turns):
        return json.dumps(list(turns))
    uri = images["blue"].resolve().as_uri()
    path = jsonl(tmp_path / "data" / "lmm.jsonl", [
        {"message": message({"role": "system", "content": SYSTEM},
                            {"role": "user", "content": [{"type": "image", "image": uri},
                                                         {"type": "text", "text": "Colour?"}]}),
         "answer": "blue"},
        {"message": message({"role": "user", "content": [
            {"type": "text", "text": "Compare "}, {"type": "image", "image": "img/red.png"},
            {"type": "text", "text": " and "}, {"type": "image", "image": "img/green.png"},
            {"type": "text", "text": ": which is green?"}]}), "answer": "second"},
        {"message": "[{not json", "answer": "x"},
        {"message": message({"role": "user", "content": "Just text: 3*3?"}), "answer": "9"},
    ])
    pool = read(path, tmp_path)
    assert pool.layout == "openrlhf"
    assert status(pool) == [("ok", None), ("ok", None), ("error", "bad_message"), ("ok", None)]
    first, second, text_only = pool.samples.iter_rows(named=True)
    assert (first["question"], first["system"]) == ("Colour?", SYSTEM)
    assert second["question"] == "Compare <image> and <image>: which is green?"
    assert len(second["image_paths"]) == 2 and text_only["image_paths"] == []


def _verl_rows(images):
    return [
        {"data_source": "hiyouga/geometry3k", "ability": "math",
         "prompt": [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": "<image>Find the colour."}],
         "images": [{"bytes": images["red"].read_bytes(), "path": "red.png"}],
         "reward_model": {"style": "rule", "ground_truth": "red"},
         "extra_info": {"split": "train", "index": 7}},
        {"data_source": "hiyouga/geometry3k", "ability": "math",
         "prompt": [{"role": "user", "content": "<image><image>Which one is green?"}],
         "images": [{"bytes": None, "path": "img/blue.png"},
                    {"bytes": None, "path": "img/green.png"}],
         "reward_model": {"style": "rule", "ground_truth": "second"},
         "extra_info": {"split": "train", "index": 8}},
        {"data_source": "x", "ability": "math",
         "prompt": [{"role": "user", "content": "<image><image>two slots"}],
         "images": [{"bytes": images["red"].read_bytes(), "path": "red.png"}],
         "reward_model": {"style": "rule", "ground_truth": "a"},
         "extra_info": {"split": "train", "index": 9}},
        {"data_source": "x", "ability": "math",
         "prompt": [{"role": "user", "content": "<image>no truth"}],
         "images": [{"bytes": images["red"].read_bytes(), "path": "red.png"}],
         "reward_model": {"style": "rule", "ground_truth": ""},
         "extra_info": {"split": "train", "index": 10}},
    ]


def test_verl_parquet(images, tmp_path):
    path = tmp_path / "data" / "verl.parquet"
    pl.DataFrame(_verl_rows(images)).write_parquet(path)
    pool = read(path, tmp_path)
    assert pool.layout == "verl"
    assert status(pool) == [("ok", None), ("ok", None), ("error", "placeholder_mismatch"),
                            ("error", "empty_answer")]
    first, second = pool.samples.iter_rows(named=True)
    assert (first["question"], first["answer"], first["system"]) == (
        "Find the colour.", "red", SYSTEM)
    assert second["question"] == "Which one is green?" and len(second["image_paths"]) == 2
    assert pool.rows["source_id"].to_list() == ["7", "8", "9", "10"]
    assert set(pool.rows["data_source"]) == {"hiyouga/geometry3k", "x"}


def test_parquet_with_an_image_feature_and_image_dir(images, tmp_path):
    from datasets import Dataset, Features, Image, Value
    feats = Features({"question": Value("string"), "label": Value("string"),
                      "image": Image()})
    Dataset.from_dict({"question": ["Colour?"], "label": ["green"],
                       "image": [str(images["green"])]}, features=feats
                      ).to_parquet(str(tmp_path / "hf.parquet"))
    pool = read(tmp_path / "hf.parquet", tmp_path, format="hf", question_key="question",
                answer_key="label", image_key="image")
    assert status(pool) == [("ok", None)] and pool.layout == "hf"
    # relative paths resolve against --image-dir, never the working directory
    path = jsonl(tmp_path / "elsewhere.jsonl", [
        {"problem": "Colour?", "answer": "red", "images": ["img/red.png"]}])
    pool = read(path, tmp_path, image_dir=str(tmp_path / "data"))
    assert pool.samples["image_paths"][0].to_list() == [str(images["red"].resolve())]


def test_layout_detection_is_explicit_when_ambiguous(images, tmp_path):
    both = jsonl(tmp_path / "both.jsonl", [
        {"problem": "q", "answer": "a", "images": [], "message": "[]"}])
    with pytest.raises(PoolReadError, match="several formats .*openrlhf, easyr1.*--format"):
        read(both, tmp_path)
    assert read(both, tmp_path, format="easyr1").layout == "easyr1"
    with pytest.raises(PoolReadError, match=r"missing column\(s\) \['prompt', 'reward_model'\] "
                       "for format verl"):
        read(both, tmp_path, format="verl")
    neither = jsonl(tmp_path / "neither.jsonl", [{"q": "x", "a": "y"}])
    with pytest.raises(PoolReadError, match="Not MM-Eureka .* question_key"):
        read(neither, tmp_path)


def test_bad_lines_and_system_prompts_as_identity(images, tmp_path):
    row = {"problem": "Colour?", "answer": "red", "images": ["img/red.png"]}
    path = jsonl(tmp_path / "data" / "mixed.jsonl", [
        row, "{broken json", {**row, "system": SYSTEM}, "[1, 2]", row])
    pool = read(path, tmp_path)
    assert status(pool) == [("ok", None), ("error", "bad_json"), ("ok", None),
                            ("error", "bad_json"), ("duplicate", None)]
    assert "line 2 is not valid JSON" in pool.rows["error_message"][1]
    # the same question under another system prompt is another sample
    assert pool.samples.height == 2 and pool.samples["system"].to_list() == [None, SYSTEM]


def _selected(pool) -> pl.DataFrame:
    """A pool's samples in the shape the store gives exporters (first row of each)."""
    rows = pool.rows.filter(pl.col("row_status") == "ok").select(
        "sample_id", "source_row", "source_id", "data_source")
    return pool.samples.join(rows, on="sample_id").sort("source_row")


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_export_round_trip_and_manifest(fmt, images, tmp_path):
    source = tmp_path / "data" / "verl.parquet"
    pl.DataFrame(_verl_rows(images)[:2]).write_parquet(source)
    pool = read(source, tmp_path)
    selected = _selected(pool)
    name = {"easyr1": "out.parquet", "verl": "out.parquet", "openrlhf": "out.jsonl",
            "hf": "out"}[fmt]
    out = tmp_path / "export" / name
    manifest = write_export(selected, fmt, out, "RUN1", pool.pool_id, tmp_path / "rap_data")
    assert check_export(out, fmt) == []
    back = read(out, tmp_path, format=fmt)
    assert back.samples["sample_id"].to_list() == selected["sample_id"].to_list()
    assert back.samples["system"].to_list() == [SYSTEM, None]
    saved = json.loads((out.parent / f"{out.name}.manifest.json").read_text())
    assert saved["format"] == fmt and saved["rows"] == 2 and saved["selection_run"] == "RUN1"
    assert saved["pool_id"] == pool.pool_id and manifest["files"] == saved["files"]
    for entry in saved["files"]:
        assert sha256_file(out.parent / entry["path"]) == entry["sha256"]


def test_verl_export_follows_verl(images, tmp_path):
    source = tmp_path / "data" / "verl.parquet"
    pl.DataFrame(_verl_rows(images)[:2]).write_parquet(source)
    selected = _selected(read(source, tmp_path))
    write_export(selected, "verl", tmp_path / "v.parquet", "R", "P", tmp_path / "rap_data")
    rows = pl.read_parquet(tmp_path / "v.parquet").to_dicts()
    assert [r["extra_info"]["index"] for r in rows] == [0, 1]  # the pool rows: stable
    assert rows[0]["prompt"] == [{"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": "<image>Find the colour."}]
    assert rows[1]["prompt"][0]["content"].count("<image>") == len(rows[1]["images"]) == 2
    assert all(isinstance(im["bytes"], bytes) for r in rows for im in r["images"])
    assert rows[0]["reward_model"] == {"style": "rule", "ground_truth": "red"}
    assert rows[0]["data_source"] == "hiyouga/geometry3k"
    write_export(selected, "verl", tmp_path / "w.parquet", "R", "P", tmp_path / "rap_data",
                 data_source="mine")
    assert set(pl.read_parquet(tmp_path / "w.parquet")["data_source"]) == {"mine"}


def _rules(path, fmt):
    return {(v.row, v.rule) for v in check_export(path, fmt)}


def test_checker_catches_each_verl_rule(images, tmp_path):
    good = _verl_rows(images)[0]

    def at(index, **change):
        return {**good, "extra_info": {"split": "train", "index": index}, **change}
    path = tmp_path / "v.parquet"
    pl.DataFrame([at(1), at(2, prompt=[{"role": "user", "content": "<image><image>x"}]),
                  at(3, reward_model={"style": "rule", "ground_truth": ""}),
                  at(1), at(5, data_source="")]).write_parquet(path)
    assert _rules(path, "verl") == {(1, "placeholders_match_images"),
                                    (2, "reward_model_ground_truth"), (3, "extra_info_index"),
                                    (4, "data_source")}
    bare = tmp_path / "bare.json"  # a bare path string cannot share a parquet column
    bare.write_text(json.dumps([{
        "data_source": "x", "prompt": [{"role": "user", "content": "<image>x"}],
        "images": ["img/red.png"], "reward_model": {"ground_truth": "a"},
        "extra_info": {"index": 1}}]))
    assert _rules(bare, "verl") == {(0, "images_bare_path")}


def test_checker_catches_each_easyr1_and_openrlhf_rule(images, tmp_path):
    red = images["red"].read_bytes()
    easy = tmp_path / "data" / "e.json"
    easy.write_text(json.dumps([
        {"problem": "<image>ok", "answer": "red", "images": ["img/red.png"]},
        {"problem": [{"role": "user", "content": "x"}], "answer": "a", "images": []},
        {"problem": "<image><image>x", "answer": "a", "images": ["img/red.png"]},
        {"problem": "<image>x", "answer": "", "images": ["img/red.png"]},
        {"problem": "<image>x", "answer": "a", "images": ["img/gone.png"]},
    ]))
    assert _rules(easy, "easyr1") == {(1, "problem_plain_string"),
                                      (2, "placeholders_match_images"), (3, "answer"),
                                      (4, "image_missing")}
    broken = tmp_path / "b.parquet"
    pl.DataFrame({"problem": ["<image>x"], "answer": ["a"],
                  "images": [[{"bytes": b"not an image", "path": "x.png"}]]}).write_parquet(
        broken)
    assert _rules(broken, "easyr1") == {(0, "image_unreadable")}
    uri = images["red"].resolve().as_uri()
    spaced = tmp_path / "a dir" / "red.png"
    spaced.parent.mkdir()
    spaced.write_bytes(red)
    ok = json.dumps([{"role": "user", "content": [{"type": "image", "image": uri},
                                                  {"type": "text", "text": "q"}]}])
    lmm = jsonl(tmp_path / "o.jsonl", [
        {"message": ok, "answer": "red"},
        {"message": json.loads(ok), "answer": "red"},
        {"message": "[{oops", "answer": "red"},
        {"message": json.dumps([{"role": "system", "content": "s"}]), "answer": "red"},
        {"message": ok.replace(uri, "/abs/red.png"), "answer": "red"},
        {"message": ok.replace(uri, "file:///gone/red.png"), "answer": ""},
        {"message": ok.replace(uri, spaced.as_uri()), "answer": "red"},  # %20: trainers fail
        {"message": ok.replace(uri, "file://" + str(spaced)), "answer": "red"},
    ])
    assert _rules(lmm, "openrlhf") == {(1, "message_string"), (2, "message_json"),
                                      (3, "message_user_turn"), (4, "image_file_uri"),
                                      (5, "image_missing"), (5, "answer"),
                                      (6, "image_uri_encoded")}
    assert red  # the fixture image is real


def test_checker_refuses_whole_files(images, tmp_path):
    assert _rules(tmp_path / "none.parquet", "verl") == {(None, "exists")}
    (tmp_path / "x.csv").write_text("a\n")
    assert _rules(tmp_path / "x.csv", "verl") == {(None, "file_type")}
    assert _rules(tmp_path / "x.csv", "hf") == {(None, "hf_folder")}
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    assert _rules(empty, "openrlhf") == {(None, "rows")}
    cols = tmp_path / "c.parquet"
    pl.DataFrame({"problem": ["x"]}).write_parquet(cols)
    assert _rules(cols, "verl") == {(None, "columns")}
