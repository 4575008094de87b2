"""Reading pools: each supported layout, column mapping, and every kind of bad row."""

import json

import polars as pl
import pytest

from conftest import write_png
from rap.rap_core.keys import sample_id, sha256_bytes
from rap.rap_core.params import DataSpec
from rap.rap_core.io.readers import PoolReadError, read_pool


def rows_of(pool):
    return {r["source_row"]: r for r in pool.rows.iter_rows(named=True)}


@pytest.fixture
def pool_dir(tmp_path):
    d = tmp_path / "pool"
    write_png(d / "imgs" / "a.png", (255, 0, 0))
    write_png(d / "imgs" / "b.png", (0, 0, 255))
    (d / "imgs" / "broken.png").write_bytes(b"not a png at all")
    return d


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_relative_paths_resolve_against_the_file(pool_dir, tmp_path, monkeypatch):
    path = write_jsonl(pool_dir / "pool.jsonl", [
        {"problem": "<image>What color?", "answer": "red", "images": ["imgs/a.png"]},
        {"problem": "Which is blue? <image> or <image>", "answer": "second",
         "images": ["imgs/a.png", "imgs/b.png"]},
    ])
    monkeypatch.chdir(tmp_path)  # not the file's folder
    pool = read_pool(DataSpec(path=str(path)), tmp_path / "cache")
    assert pool.samples.height == 2
    first = pool.samples.row(0, named=True)
    assert first["image_paths"] == [str((pool_dir / "imgs" / "a.png").resolve())]
    red = (pool_dir / "imgs" / "a.png").read_bytes()
    # leading placeholders for all the images are the images-first prompt: stored without
    assert first["question"] == "What color?"
    assert first["sample_id"] == sample_id("What color?", "red", [sha256_bytes(red)])
    assert not (tmp_path / "cache").exists()  # files are referenced, not copied


def test_json_list_with_column_mapping(pool_dir, tmp_path):
    path = pool_dir / "pool.json"
    path.write_text(json.dumps([{"q": "What color?", "a": "blue", "img": "imgs/b.png"}]))
    spec = DataSpec(path=str(path), question_key="q", answer_key="a", image_key="img")
    pool = read_pool(spec, tmp_path / "cache")
    assert pool.samples["answer"].to_list() == ["blue"]
    assert len(pool.samples["image_paths"][0]) == 1


def test_parquet_with_embedded_bytes(pool_dir, tmp_path):
    data = (pool_dir / "imgs" / "a.png").read_bytes()
    path = pool_dir / "pool.parquet"
    pl.DataFrame({"problem": ["<image>color?"], "answer": ["red"],
                  "images": [[{"bytes": data, "path": None}]]}).write_parquet(path)
    pool = read_pool(DataSpec(path=str(path)), tmp_path / "cache")
    stored = pool.samples["image_paths"][0][0]
    assert stored.startswith(str(tmp_path / "cache"))
    assert open(stored, "rb").read() == data
    assert pool.samples["image_sha256"][0][0] == sha256_bytes(data)


def test_datasets_folder(pool_dir, tmp_path):
    from datasets import Dataset, Features, Image, Sequence, Value
    feats = Features({"problem": Value("string"), "answer": Value("string"),
                      "images": Sequence(Image())})
    ds = Dataset.from_dict({"problem": ["<image>color?", "shape?"], "answer": ["red", "x"],
                            "images": [[str(pool_dir / "imgs" / "a.png")],
                                       [str(pool_dir / "imgs" / "b.png")]]}, features=feats)
    ds.save_to_disk(str(tmp_path / "saved"))
    pool = read_pool(DataSpec(path=str(tmp_path / "saved")), tmp_path / "cache")
    assert pool.samples.height == 2
    assert pool.rows["row_status"].to_list() == ["ok", "ok"]


def test_bad_rows_become_specific_errors(pool_dir, tmp_path):
    path = write_jsonl(pool_dir / "bad.jsonl", [
        {"problem": "ok <image>", "answer": "red", "images": ["imgs/a.png"]},
        {"problem": "q", "answer": "red", "images": ["imgs/missing.png"]},
        {"problem": "q", "answer": "red", "images": ["imgs/broken.png"]},
        {"problem": "  ", "answer": "red", "images": ["imgs/a.png"]},
        {"problem": "q", "answer": None, "images": ["imgs/a.png"]},
        {"problem": "<image><image>", "answer": "red", "images": ["imgs/a.png"]},
        {"problem": "<image>", "answer": "red", "images": ["imgs/a.png", "imgs/b.png"]},
        {"problem": "ok <image>", "answer": "red", "images": ["imgs/a.png"]},
        {"problem": "text only", "answer": "4", "images": []},
    ])
    pool = read_pool(DataSpec(path=str(path)), tmp_path / "cache")
    rows = rows_of(pool)
    codes = {i: rows[i]["error_code"] for i in rows}
    assert codes == {0: None, 1: "image_missing", 2: "image_unreadable", 3: "empty_question",
                     4: "empty_answer", 5: "placeholder_mismatch",
                     6: "placeholder_mismatch", 7: None, 8: None}
    assert "missing.png" in rows[1]["error_message"]
    assert "2 <image> placeholder(s) but the row has 1" in rows[5]["error_message"]
    assert rows[7]["row_status"] == "duplicate" and rows[7]["sample_id"] == rows[0]["sample_id"]
    assert pool.samples.height == 2  # the duplicate is one sample, counted once
    assert pool.rows.height == 9


def test_missing_column_refuses_the_whole_pool(pool_dir, tmp_path):
    path = write_jsonl(pool_dir / "cols.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(PoolReadError, match=r"missing column\(s\) \['problem'\]"):
        read_pool(DataSpec(path=str(path)), tmp_path)


def test_empty_and_unknown_inputs(pool_dir, tmp_path):
    (pool_dir / "empty.jsonl").write_text("")
    with pytest.raises(PoolReadError, match="no rows"):
        read_pool(DataSpec(path=str(pool_dir / "empty.jsonl")), tmp_path)
    (pool_dir / "pool.csv").write_text("a,b\n")
    with pytest.raises(PoolReadError, match="unknown pool format"):
        read_pool(DataSpec(path=str(pool_dir / "pool.csv")), tmp_path)
    with pytest.raises(PoolReadError, match="not found"):
        read_pool(DataSpec(path=str(pool_dir / "nope.jsonl")), tmp_path)


def test_builtin_easy_vqa_slice(tmp_path):
    pool = read_pool(DataSpec(limit=25), tmp_path)
    assert pool.rows.height == 25
    assert set(pool.rows["row_status"]) <= {"ok", "duplicate"}
    again = read_pool(DataSpec(limit=25), tmp_path)
    assert again.pool_id == pool.pool_id
    assert again.samples["sample_id"].to_list() == pool.samples["sample_id"].to_list()


def test_each_distinct_image_is_verified_once_per_read(pool_dir, tmp_path, monkeypatch):
    from rap.rap_core.io import images
    calls = []
    real = images.image_format
    monkeypatch.setattr(images, "image_format",
                        lambda data: calls.append(len(data)) or real(data))
    names = ["imgs/a.png", "imgs/b.png", "imgs/broken.png", "imgs/../imgs/a.png"]
    path = write_jsonl(pool_dir / "shared.jsonl", [
        {"problem": f"<image>q{i}", "answer": "a", "images": [names[i % 4]]} for i in range(20)])
    pool = read_pool(DataSpec(path=str(path)), tmp_path / "cache")
    assert len(calls) == 3  # a.png under two names is one file
    errors = pool.rows.filter(pl.col("error_code").is_not_null())
    assert errors.height == 5 and set(errors["error_code"]) == {"image_unreadable"}
    assert all(m.startswith("image 0: not a readable image") for m in errors["error_message"])
    assert pool.samples.height == 15
    read_pool(DataSpec(path=str(path)), tmp_path / "cache")
    assert len(calls) == 6  # verified again by the next read
    data = (pool_dir / "imgs" / "a.png").read_bytes()
    embedded = pool_dir / "embedded.parquet"
    pl.DataFrame({"problem": [f"<image>q{i}" for i in range(6)], "answer": ["a"] * 6,
                  "images": [[{"bytes": data, "path": None}]] * 6}).write_parquet(embedded)
    calls.clear()
    assert read_pool(DataSpec(path=str(embedded)), tmp_path / "cache").samples.height == 6
    assert calls == [len(data)]
