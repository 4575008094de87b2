"""Hostile and broken input: each bad row ends as its own error (or is converted), the rest of
the run completes, and every input row is accounted for."""

import json
import os

import numpy as np
import polars as pl
import pytest
from PIL import Image

from conftest import write_png
from rap.rap_core.io import readers
from rap.rap_core.io.images import load_rgb
from rap.rap_core.params import DataSpec, ModelSpec, RapParams, RolloutSettings
from rap.rap_core.io.readers import PoolReadError, read_pool
from rap.rap_core.store import open_store


def test_image_modes_become_plain_rgb(tmp_path):
    gradient = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0..65520
    Image.fromarray(gradient).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    low, high = load_rgb(str(tmp_path / "deep.png")).getextrema()[0]
    assert low == 0 and 250 <= high <= 255  # scaled, not clipped to white
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert load_rgb(str(tmp_path / "clear.png")).getpixel((0, 0)) == (255, 255, 255)
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.save(tmp_path / "pal.png", transparency=0)
    assert load_rgb(str(tmp_path / "pal.png")).getpixel((0, 0)) == (255, 255, 255)
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    red = load_rgb(str(tmp_path / "cmyk.jpg")).getpixel((0, 0))
    assert red[0] > 200 and red[1] < 60
    Image.new("L", (4000, 3000), 128).save(tmp_path / "big.png")
    shrunk = load_rgb(str(tmp_path / "big.png"), max_pixels=200_000)
    assert shrunk.mode == "RGB" and shrunk.width * shrunk.height <= 200_000
    assert abs(shrunk.width / shrunk.height - 4 / 3) < 0.02


@pytest.fixture
def hostile_pool(tmp_path):
    """One row of each kind of trouble; the expected end of each row."""
    d = tmp_path / "pool"
    good = write_png(d / "good.png", (200, 30, 30))
    full = good.read_bytes()
    (d / "truncated.png").write_bytes(full[:len(full) // 2])
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("this is not an image\n")
    Image.new("L", (8000, 6250), 90).save(d / "huge.png")  # 50 megapixels
    Image.new("CMYK", (40, 40), (0, 200, 200, 0)).save(d / "cmyk.jpg")
    Image.fromarray((np.arange(1600).reshape(40, 40) * 40).astype(np.uint16)).save(d / "d16.png")
    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.save(d / "pal.png", transparency=0)
    Image.new("RGBA", (40, 40), (0, 255, 0, 128)).save(d / "rgba.png")
    write_png(tmp_path / "outside.png", (1, 2, 3))
    os.symlink(tmp_path / "outside.png", d / "link.png")
    os.mkfifo(d / "pipe.png")  # opening it would block the read forever
    (d / "folder.png").mkdir()

    def row(image, q="<image>What colour?", answer="red", **extra):
        return json.dumps({"problem": q, "answer": answer,
                           "images": [image] if image else [], **extra})
    lines = [
        (row("good.png", id="s1"), "ok"),
        (row("truncated.png"), "image_unreadable"),
        (row("empty.png"), "image_unreadable"),
        (row("text.png"), "image_unreadable"),
        (row("huge.png", q="<image>How big?"), "ok"),
        (row("cmyk.jpg"), "ok"),
        (row("d16.png"), "ok"),
        (row("pal.png"), "ok"),
        (row("rgba.png"), "ok"),
        (row("../outside.png"), "image_outside_data"),
        (row("link.png"), "image_outside_data"),
        (None, "bad_encoding"),
        ('{"problem": "<image>q", "answer": NaN, "images": ["good.png"]}', "empty_answer"),
        (row("good.png", q="<image>How many?", answer=42), "ok"),
        (row("good.png", id="s1"), "duplicate"),
        (row("good.png", q="<image>Which shade?", id="s1"), "ok"),
        (row(None, q="What is 2+2?", answer="4"), "ok"),
        ('{"problem": ' + "[" * 10000 + "]" * 10000 + "}", "bad_json"),
        ('{"problem": "q", "answer": 1' + "0" * 5000 + "}", "bad_json"),  # over int digits
        ("[1, 2]", "bad_json"),
        (row("good.png", q="<image>caf\ud800?"), "bad_encoding"),  # lone surrogates
        (row("good.png", answer="r\udce9d"), "bad_encoding"),
        (row("good.png", id="s\ud800"), "bad_encoding"),
        (row("/dev/zero"), "image_unreadable"),
        (row("pipe.png"), "image_unreadable"),
        (row("folder.png"), "image_unreadable"),
        (row("good.png", q="<image>Still read after all that?"), "ok"),
    ]
    path = d / "pool.jsonl"
    with open(path, "wb") as f:
        for text, _ in lines:
            f.write(b'{"problem": "caf\xe9 <image>", "answer": "x", "images": []}\n'
                    if text is None else text.encode() + b"\n")
    return path, [expected for _, expected in lines]


def test_every_hostile_row_is_read_as_expected(hostile_pool, tmp_path):
    path, expected = hostile_pool
    pool = read_pool(DataSpec(path=str(path)), tmp_path / "cache")
    got = [r["error_code"] or r["row_status"] for r in pool.rows.iter_rows(named=True)]
    assert got == expected
    rows = pool.rows.to_dicts()
    assert "line 12 is not valid UTF-8" in rows[11]["error_message"]
    assert "leads outside" in rows[9]["error_message"]
    # same source id, other content: two samples, both traceable to the id
    assert rows[0]["source_id"] == rows[15]["source_id"] == "s1"
    assert rows[0]["sample_id"] != rows[15]["sample_id"]
    answers = dict(zip(pool.samples["question"], pool.samples["answer"]))
    assert answers["How many?"] == "42"
    assert rows[17]["error_message"] == "line 18 is nested too deeply to be read"
    assert rows[18]["error_message"].startswith("line 19 could not be read (Exceeds the limit")
    assert rows[19]["error_message"] == "line 20 is not an object"
    assert rows[20]["error_message"] == ("question is not valid Unicode: lone surrogate "
                                         "'\\ud800' at character 10")
    assert "answer is not valid Unicode" in rows[21]["error_message"]
    # the same text for the same file in every run: no object address; an empty file says so
    assert rows[3]["error_message"] == "image 0: not a readable image (cannot identify image file)"
    assert rows[2]["error_message"] == \
        f"image 0: the image file {path.parent / 'empty.png'} is empty (0 bytes)"
    again = read_pool(DataSpec(path=str(path)), tmp_path / "cache2").rows.to_dicts()
    assert [r["error_message"] for r in again] == [r["error_message"] for r in rows]
    assert rows[22]["source_id"] == "s\\ud800"  # escaped, so the error row can be stored
    assert rows[23]["error_message"] == ("image 0: /dev/zero is not a regular file "
                                         "(a character device)")
    assert rows[24]["error_message"].endswith("pipe.png is not a regular file (a named pipe)")
    assert rows[25]["error_message"].endswith("folder.png is not a regular file (a folder)")
    allowed = read_pool(DataSpec(path=str(path), allow_outside_paths=True), tmp_path / "c2")
    assert [r["row_status"] for r in allowed.rows.to_dicts()][9:11] == ["ok", "duplicate"]


def test_json_array_is_read_element_by_element(tmp_path):
    write_png(tmp_path / "a.png")
    good = json.dumps({"problem": "<image>Which colour?", "answer": "red",
                       "images": ["a.png"]})
    elements = [good, '{"problem": ' + "[" * 10000 + ' "a,]}" ' + "]" * 10000 + "}", "3",
                '{"problem": "q", "answer": 1' + "0" * 5000 + "}", '{"problem": "a" "b"}',
                json.dumps({"problem": "q", "answer": "a", "images": []})]
    path = tmp_path / "pool.json"
    path.write_bytes(("\ufeff[\n" + ",\n".join(elements) + ",\n").encode()
                     + b'{"problem": "caf\xe9", "answer": "a", "images": []},\n{"problem": "cut')
    rows = read_pool(DataSpec(path=str(path)), tmp_path / "cache").rows.to_dicts()
    assert [r["error_code"] or r["row_status"] for r in rows] == [
        "ok", "bad_json", "bad_json", "bad_json", "bad_json", "ok", "bad_encoding", "bad_json"]
    assert rows[1]["error_message"] == "row 2 is nested too deeply to be read"
    assert rows[2]["error_message"] == "row 3 is not an object"
    assert rows[3]["error_message"].startswith("row 4 could not be read (Exceeds the limit")
    assert rows[4]["error_message"].startswith("row 5 is not valid JSON (Expecting ',' ")
    assert rows[6]["error_message"] == "row 7 is not valid UTF-8"
    assert rows[7]["error_message"].startswith("row 8 is not valid JSON (Unterminated string")
    bom = tmp_path / "bom.jsonl"  # a byte-order mark does not cost the first row
    bom.write_text("\ufeff" + good + "\n", encoding="utf-8")
    assert read_pool(DataSpec(path=str(bom)), tmp_path / "cache").rows["row_status"][0] == "ok"
    wrapped = tmp_path / "wrapped.json"  # the {"data": [...]} form is parsed whole
    wrapped.write_text('{"data": ' + "[" * 10000 + "]" * 10000 + "}")
    with pytest.raises(PoolReadError, match="nested too deeply to be read as JSON"):
        read_pool(DataSpec(path=str(wrapped)), tmp_path / "cache")
    wrapped.write_text(json.dumps({"data": [json.loads(good), [1]]}))
    rows = read_pool(DataSpec(path=str(wrapped)), tmp_path / "cache").rows.to_dicts()
    assert [r["error_message"] for r in rows] == [None, "row 2 is not an object"]


def test_empty_embedded_images(tmp_path):
    path = tmp_path / "pool.parquet"
    pl.DataFrame({"problem": ["<image>a?", "<image>b?"], "answer": ["x", "y"],
                  "images": [[{"bytes": b"", "path": None}], [{"bytes": b"", "path": None}]]}
                 ).write_parquet(path)
    raw = tmp_path / "raw.parquet"
    pl.DataFrame({"problem": ["<image>a?"], "answer": ["x"], "images": [[b""]]}).write_parquet(raw)
    for pool_path in (path, raw):
        rows = read_pool(DataSpec(path=str(pool_path)), tmp_path / "cache").rows.to_dicts()
        assert {(r["error_code"], r["error_message"]) for r in rows} == {
            ("image_unreadable", "image 0: the embedded image is empty (0 bytes)")}


def test_bad_chat_items_and_unexpected_failures_stay_in_their_row(tmp_path, monkeypatch):
    def message(text):
        return [{"role": "user", "content": [{"type": "text", "text": text}]}]
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        {"message": message("What is 2+2?"), "answer": "4"},
        {"message": message(5), "answer": "4"},
        {"message": "[" * 10000 + "]" * 10000, "answer": "4"},
        {"message": message("boom"), "answer": "4"},
        {"message": message("What is 3+3?"), "answer": "6"}]))
    real = readers.canonical_question
    monkeypatch.setattr(readers, "canonical_question", lambda q, n: 1 / 0 if q == "boom"
                        else real(q, n))
    rows = read_pool(DataSpec(path=str(path)), tmp_path / "cache").rows.to_dicts()
    assert [(r["error_code"], r["error_message"]) for r in rows] == [
        (None, None), ("bad_message", "message: a text item is not a string (int)"),
        ("bad_message", "message is nested too deeply to be read"),
        ("bad_row", "row could not be read: ZeroDivisionError: division by zero"),
        (None, None)]


def test_whole_input_refusals(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(PoolReadError, match="no rows"):
        read_pool(DataSpec(path=str(tmp_path / "empty.jsonl")), tmp_path)
    (tmp_path / "cols.jsonl").write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(PoolReadError, match=r"missing column\(s\) \['problem'\]"):
        read_pool(DataSpec(path=str(tmp_path / "cols.jsonl")), tmp_path)


@pytest.mark.usefixtures("prefect_harness")
def test_the_run_completes_and_accounts_for_every_row(hostile_pool, tiny_model_dir, settings):
    from rap.flows.rap import run_flow
    path, expected = hostile_pool
    summary = run_flow(RapParams(data=DataSpec(path=str(path)),
                                 model=ModelSpec(path=str(tiny_model_dir)),
                                 rollout=RolloutSettings(m=2, max_new_tokens=8), track=False))
    by_state = {}
    for r in summary["reasons"]:
        by_state[r["state"]] = by_state.get(r["state"], 0) + r["n"]
    assert sum(by_state.values()) == len(expected) == summary["funnel"]["pool_rows"]
    assert by_state["error"] == sum(e not in ("ok", "duplicate") for e in expected)
    with open_store(settings.duckdb_path, read_only=True) as store:
        decided = dict(store.con.execute(
            "SELECT source_row, coalesce(stage || ':' || reason, state) FROM decisions "
            "WHERE run_id = $r", {"r": summary["run_id"]}).fetchall())
        rollouts = store.con.execute("SELECT count(DISTINCT sample_id) FROM rollouts "
                                     "WHERE condition = 'mm'").fetchone()[0]
    assert decided[11] == "ingest:bad_encoding" and decided[14].endswith("duplicate_row")
    assert decided[16].endswith("cde_no_image")
    assert decided[17] == "ingest:bad_json" and decided[22] == "ingest:bad_encoding"
    assert decided[23] == decided[24] == "ingest:image_unreadable"
    # the converted and the huge images were inferred like any other
    ok_with_image = sum(e == "ok" for e in expected) - 1  # minus the text-only row
    assert rollouts == ok_with_image
