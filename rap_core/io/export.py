"""Writing a selection as the file each RL trainer loads as it is (README: Train on the result).

    easyr1    Parquet: `problem` (plain string, one `<image>` per image), `answer`, `images` as
              {bytes, path} structs (self-contained)
    verl      Parquet: `data_source`, chat-list `prompt` (placeholders = images), `images` as
              {bytes, path} structs (verl rejects bare paths), `ability`,
              `reward_model.ground_truth`, `extra_info.index` (the row in the pool: stable)
    openrlhf  JSONL for OpenRLHF-M / MM-Eureka: stringified OpenAI-style `message` with
              `file://` images copied next to the file, `answer`
    hf        a `datasets` folder (save_to_disk) with an Image sequence feature

Every export also writes `<out>.manifest.json`: format, rows, sha256 of each file, the
selection run and the pool it came from. Where an export may be written, what it may
replace, and the write-then-rename: rap_core/io/outputs.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from rap.rap_core.keys import sha256_bytes
from rap.rap_core.io.outputs import (Claim, OutputError, claim, finish, manifest_record,
                              refuse_forbidden, writing)
from rap.rap_core.io.prompts import IMAGE_PLACEHOLDER, count_placeholders

EXPORT_FORMATS = ("easyr1", "verl", "openrlhf", "hf")
IMAGE_STRUCT = pl.Struct({"bytes": pl.Binary, "path": pl.String})
CHAT_TURN = pl.Struct({"role": pl.String, "content": pl.String})
DEFAULT_DATA_SOURCE = "rap"
DEFAULT_ABILITY = "multimodal"


class ExportError(OutputError):
    """The export cannot be written as asked (unknown format, nothing to write to)."""


def easyr1_problem(question: str, n_images: int) -> str:
    """One placeholder per image; a question without any gets them in front (images first)."""
    if n_images and count_placeholders(question) == 0:
        return IMAGE_PLACEHOLDER * n_images + question
    return question


def _image_structs(paths: list[str]) -> list[dict]:
    return [{"bytes": Path(p).read_bytes(), "path": Path(p).name} for p in paths]


def _has_system(selected: pl.DataFrame) -> bool:
    """A `system` column is written only when some selected sample has its own prompt."""
    return "system" in selected.columns and bool(selected["system"].is_not_null().any())


def write_easyr1(selected: pl.DataFrame, out: Claim) -> list[Path]:
    """selected: sample_id, question, answer, image_paths[, system]."""
    has_system = _has_system(selected)
    rows = [{"problem": easyr1_problem(r["question"], len(r["image_paths"])),
             "answer": r["answer"], "images": _image_structs(r["image_paths"]),
             "sample_id": r["sample_id"], **({"system": r["system"]} if has_system else {})}
            for r in selected.iter_rows(named=True)]
    schema = {"problem": pl.String, "answer": pl.String, "images": pl.List(IMAGE_STRUCT),
              "sample_id": pl.String, **({"system": pl.String} if has_system else {})}
    tmp = out.temp_file(out.out)
    pl.DataFrame(rows, schema=schema).write_parquet(tmp)
    return [out.place(tmp, out.out)]


def write_verl(selected: pl.DataFrame, out: Claim, data_source: str | None = None
               ) -> list[Path]:
    rows = []
    for r in selected.iter_rows(named=True):
        problem = easyr1_problem(r["question"], len(r["image_paths"]))
        prompt = ([{"role": "system", "content": r["system"]}] if r.get("system") else [])
        prompt.append({"role": "user", "content": problem})
        rows.append({
            "data_source": data_source or r.get("data_source") or DEFAULT_DATA_SOURCE,
            "prompt": prompt, "images": _image_structs(r["image_paths"]),
            "ability": DEFAULT_ABILITY,
            "reward_model": {"style": "rule", "ground_truth": r["answer"]},
            "extra_info": {"split": "train", "index": int(r["source_row"]),
                           "sample_id": r["sample_id"], "question": problem,
                           "answer": r["answer"]}})
    schema = {"data_source": pl.String, "prompt": pl.List(CHAT_TURN),
              "images": pl.List(IMAGE_STRUCT), "ability": pl.String,
              "reward_model": pl.Struct({"style": pl.String, "ground_truth": pl.String}),
              "extra_info": pl.Struct({"split": pl.String, "index": pl.Int64,
                                       "sample_id": pl.String, "question": pl.String,
                                       "answer": pl.String})}
    tmp = out.temp_file(out.out)
    pl.DataFrame(rows, schema=schema).write_parquet(tmp)
    return [out.place(tmp, out.out)]


def openrlhf_content(question: str, image_uris: list[str]) -> list[dict]:
    """OpenAI-style content items: text pieces and images in the question's order."""
    pieces = easyr1_problem(question, len(image_uris)).split(IMAGE_PLACEHOLDER)
    items = [{"type": "text", "text": pieces[0]}] if pieces[0] else []
    for uri, piece in zip(image_uris, pieces[1:]):
        items.append({"type": "image", "image": uri})
        if piece:
            items.append({"type": "text", "text": piece})
    return items


def openrlhf_images_dir(out: Path) -> Path:
    return out.with_name(f"{out.stem}_images")


def write_openrlhf(selected: pl.DataFrame, out: Claim) -> list[Path]:
    """JSONL with images copied into `<name>_images/` beside it. The URIs are `file://` and
    the path as it is (not percent-encoded): the trainers strip `file://` and open the rest."""
    images_dir = openrlhf_images_dir(out.out)
    tmp_images = out.temp_dir(images_dir)
    names, lines = set(), []
    for r in selected.iter_rows(named=True):
        uris = []
        for path in r["image_paths"]:
            data = Path(path).read_bytes()
            name = f"{sha256_bytes(data)}{Path(path).suffix}"
            if name not in names:
                (tmp_images / name).write_bytes(data)
                names.add(name)
            uris.append("file://" + str(images_dir.resolve() / name))
        message = ([{"role": "system", "content": r["system"]}] if r.get("system") else [])
        message.append({"role": "user", "content": openrlhf_content(r["question"], uris)})
        lines.append(json.dumps({"id": r["sample_id"], "message": json.dumps(message),
                                 "answer": r["answer"]}, ensure_ascii=False))
    tmp = out.temp_file(out.out)
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    out.place(tmp_images, images_dir)
    return [out.place(tmp, out.out), *sorted(images_dir / n for n in names)]


def write_hf(selected: pl.DataFrame, out: Claim) -> list[Path]:
    from datasets import Dataset, Features, Image, Sequence, Value
    has_system = _has_system(selected)
    columns = {"problem": [easyr1_problem(r["question"], len(r["image_paths"]))
                           for r in selected.iter_rows(named=True)],
               "answer": selected["answer"].to_list(),
               "images": [_image_structs(p) for p in selected["image_paths"].to_list()],
               "sample_id": selected["sample_id"].to_list()}
    features = {"problem": Value("string"), "answer": Value("string"),
                "images": Sequence(Image()), "sample_id": Value("string")}
    if has_system:
        columns["system"] = selected["system"].to_list()
        features["system"] = Value("string")
    tmp = out.temp_dir(out.out)
    Dataset.from_dict(columns, features=Features(features)).save_to_disk(str(tmp))
    target = out.place(tmp, out.out)
    return sorted(p for p in target.rglob("*") if p.is_file())


def claim_export(fmt: str, out: Path, data_dir: Path, *, force: bool = False,
                 replaceable=None) -> Claim:
    """Check the export's target against the output rules (rap_core/io/outputs.py)."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r} (one of {', '.join(EXPORT_FORMATS)})")
    out = refuse_forbidden(out, data_dir)
    side = (openrlhf_images_dir(out),) if fmt == "openrlhf" else ()
    return claim(out, fmt, data_dir, force=force, side=side, folder=fmt == "hf",
                 replaceable=replaceable)


def write_export(selected: pl.DataFrame, fmt: str, out: Path, run_id: str, pool_id: str,
                 data_dir: Path, data_source: str | None = None, *, force: bool = False,
                 replaceable=None) -> dict:
    """Write one export and its manifest; returns the manifest. Refuses (OutputError) any
    target the output rules forbid, before anything is written."""
    target = claim_export(fmt, out, data_dir, force=force, replaceable=replaceable)
    with writing(target):
        if fmt == "easyr1":
            files = write_easyr1(selected, target)
        elif fmt == "verl":
            files = write_verl(selected, target, data_source)
        elif fmt == "openrlhf":
            files = write_openrlhf(selected, target)
        else:
            files = write_hf(selected, target)
        return finish(target, manifest_record(target, files, rows=selected.height,
                                              selection_run=run_id, pool_id=pool_id))
