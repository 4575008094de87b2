"""Writing a selection as the file each RL trainer loads as it is (FORMATS.md).

    easyr1    Parquet: `problem` (plain string, one `<image>` per image), `answer`, `images` as
              {bytes, path} structs (self-contained)
    verl      Parquet: `data_source`, chat-list `prompt` (placeholders = images), `images` as
              {bytes, path} structs (verl rejects bare paths), `ability`,
              `reward_model.ground_truth`, `extra_info.index` (the row in the pool: stable)
    openrlhf  JSONL for OpenRLHF-M / MM-Eureka: stringified OpenAI-style `message` with
              `file://` images copied next to the file, `answer`
    hf        a `datasets` folder (save_to_disk) with an Image sequence feature

Every export also writes `<out>.manifest.json`: format, rows, sha256 of each file, the
selection run and the pool it came from. Files are written under a temporary name and
renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from rap_core.keys import sha256_bytes, sha256_file
from rap_core.prompts import IMAGE_PLACEHOLDER, count_placeholders

EXPORT_FORMATS = ("easyr1", "verl", "openrlhf", "hf")
IMAGE_STRUCT = pl.Struct({"bytes": pl.Binary, "path": pl.String})
CHAT_TURN = pl.Struct({"role": pl.String, "content": pl.String})
DEFAULT_DATA_SOURCE = "rap"
DEFAULT_ABILITY = "multimodal"


class ExportError(ValueError):
    """The export cannot be written as asked (unknown format, nothing to write to)."""


def easyr1_problem(question: str, n_images: int) -> str:
    """One placeholder per image; a question without any gets them in front (images first)."""
    if n_images and count_placeholders(question) == 0:
        return IMAGE_PLACEHOLDER * n_images + question
    return question


def _image_structs(paths: list[str]) -> list[dict]:
    return [{"bytes": Path(p).read_bytes(), "path": Path(p).name} for p in paths]


def _replace(tmp: Path, out: Path) -> Path:
    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _tmp(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.is_dir():
        shutil.rmtree(tmp)
    return tmp


def _has_system(selected: pl.DataFrame) -> bool:
    """A `system` column is written only when some selected sample has its own prompt."""
    return "system" in selected.columns and bool(selected["system"].is_not_null().any())


def write_easyr1(selected: pl.DataFrame, out: Path) -> list[Path]:
    """selected: sample_id, question, answer, image_paths[, system]."""
    has_system = _has_system(selected)
    rows = [{"problem": easyr1_problem(r["question"], len(r["image_paths"])),
             "answer": r["answer"], "images": _image_structs(r["image_paths"]),
             "sample_id": r["sample_id"], **({"system": r["system"]} if has_system else {})}
            for r in selected.iter_rows(named=True)]
    schema = {"problem": pl.String, "answer": pl.String, "images": pl.List(IMAGE_STRUCT),
              "sample_id": pl.String, **({"system": pl.String} if has_system else {})}
    tmp = _tmp(out)
    pl.DataFrame(rows, schema=schema).write_parquet(tmp)
    return [_replace(tmp, out)]


def write_verl(selected: pl.DataFrame, out: Path, data_source: str | None = None) -> list[Path]:
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
    tmp = _tmp(out)
    pl.DataFrame(rows, schema=schema).write_parquet(tmp)
    return [_replace(tmp, out)]


def openrlhf_content(question: str, image_uris: list[str]) -> list[dict]:
    """OpenAI-style content items: text pieces and images in the question's order."""
    pieces = easyr1_problem(question, len(image_uris)).split(IMAGE_PLACEHOLDER)
    items = [{"type": "text", "text": pieces[0]}] if pieces[0] else []
    for uri, piece in zip(image_uris, pieces[1:]):
        items.append({"type": "image", "image": uri})
        if piece:
            items.append({"type": "text", "text": piece})
    return items


def write_openrlhf(selected: pl.DataFrame, out: Path) -> list[Path]:
    """JSONL with images copied into `<name>_images/` beside it (file:// URIs)."""
    images_dir = out.with_name(f"{out.stem}_images")
    images_dir.mkdir(parents=True, exist_ok=True)
    used, lines = set(), []
    for r in selected.iter_rows(named=True):
        uris = []
        for path in r["image_paths"]:
            data = Path(path).read_bytes()
            target = images_dir / f"{sha256_bytes(data)}{Path(path).suffix}"
            if not target.exists():
                target.write_bytes(data)
            used.add(target)
            uris.append(target.resolve().as_uri())
        message = ([{"role": "system", "content": r["system"]}] if r.get("system") else [])
        message.append({"role": "user", "content": openrlhf_content(r["question"], uris)})
        lines.append(json.dumps({"id": r["sample_id"], "message": json.dumps(message),
                                 "answer": r["answer"]}, ensure_ascii=False))
    tmp = _tmp(out)
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return [_replace(tmp, out), *sorted(used)]  # not images of earlier exports to this path


def write_hf(selected: pl.DataFrame, out: Path) -> list[Path]:
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
    tmp = _tmp(out)
    Dataset.from_dict(columns, features=Features(features)).save_to_disk(str(tmp))
    _replace(tmp, out)
    return sorted(p for p in out.rglob("*") if p.is_file())


def manifest_path(out: Path) -> Path:
    return out.with_name(f"{out.name}.manifest.json")


def write_export(selected: pl.DataFrame, fmt: str, out: Path, run_id: str, pool_id: str,
                 data_source: str | None = None) -> dict:
    """Write one export and its manifest; returns the manifest."""
    out = Path(out)
    if fmt == "easyr1":
        files = write_easyr1(selected, out)
    elif fmt == "verl":
        files = write_verl(selected, out, data_source)
    elif fmt == "openrlhf":
        files = write_openrlhf(selected, out)
    elif fmt == "hf":
        files = write_hf(selected, out)
    else:
        raise ExportError(f"unknown export format {fmt!r} (one of {', '.join(EXPORT_FORMATS)})")
    manifest = {
        "format": fmt, "path": str(out.resolve()), "rows": selected.height,
        "selection_run": run_id, "pool_id": pool_id,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": [{"path": str(f.resolve().relative_to(out.parent.resolve())),
                   "sha256": sha256_file(f), "bytes": f.stat().st_size} for f in files]}
    target = manifest_path(out)
    tmp = _tmp(target)
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    _replace(tmp, target)
    manifest["manifest_path"] = str(target.resolve())
    return manifest
