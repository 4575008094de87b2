"""Reading a pool into sample records, one validated row at a time.

Inputs: EasyR1-layout JSONL / JSON / Parquet (question with `<image>` placeholders, answer,
images as paths relative to the file, {bytes, path} structs or raw bytes), a `datasets`
folder written by save_to_disk, or the embedded easy-VQA default. A bad row becomes an
error row with a specific code; it never stops the read.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from rap_core.keys import sample_id, sha256_bytes, short_hash
from rap_core.params import BUILTIN_DATA, EASY_VQA_DEFAULT_ROWS, DataSpec
from rap_core.prompts import count_placeholders

SAMPLE_SCHEMA = {"sample_id": pl.String, "question": pl.String, "answer": pl.String,
                 "image_paths": pl.List(pl.String), "image_sha256": pl.List(pl.String)}
ROW_SCHEMA = {"source_row": pl.Int64, "sample_id": pl.String, "row_status": pl.String,
              "error_code": pl.String, "error_message": pl.String}


class PoolReadError(ValueError):
    """The pool as a whole cannot be read (missing file, unknown format, missing column)."""


class RowError(Exception):
    """One row is unusable; code is a snake_case reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Pool:
    """A read pool: unique samples, and one status row per input row."""

    source: str
    samples: pl.DataFrame
    rows: pl.DataFrame
    pool_id: str = field(init=False)

    def __post_init__(self):
        self.pool_id = short_hash(self.source, self.rows.select("source_row", "sample_id",
                                                                 "error_code").rows())


def _image_bytes(ref, base_dir: Path) -> tuple[bytes, Path | None]:
    """Bytes of one image reference and the file it came from (None for embedded bytes)."""
    if isinstance(ref, dict):
        if ref.get("bytes"):
            return ref["bytes"], None
        ref = ref.get("path") or ref.get("image")
    if isinstance(ref, (bytes, bytearray)):
        return bytes(ref), None
    if not isinstance(ref, str) or not ref:
        raise RowError("image_unreadable", f"unsupported image reference {ref!r:.80}")
    path = Path(ref.removeprefix("file://"))
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise RowError("image_missing", f"image file not found: {path}")
    return path.read_bytes(), path.resolve()


def _check_decodable(data: bytes, where: str) -> str:
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
            return (img.format or "png").lower()
    except Exception as exc:
        raise RowError("image_unreadable", f"{where}: not a readable image ({exc})") from exc


def _store_image(data: bytes, path: Path | None, images_dir: Path, fmt: str) -> str:
    """Files stay where they are; embedded bytes get a content-addressed file."""
    if path is not None:
        return str(path)
    target = images_dir / f"{sha256_bytes(data)}.{fmt}"
    if not target.exists():
        images_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    return str(target)


def _text(value, what: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise RowError(f"empty_{what}", f"{what} is missing")
    text = str(value).strip()
    if not text:
        raise RowError(f"empty_{what}", f"{what} is empty")
    return text


def _as_list(images) -> list:
    if images is None:
        return []
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]


def validate_row(raw: dict, spec: DataSpec, base_dir: Path, images_dir: Path) -> dict:
    """One input row as a sample record, or RowError."""
    question = _text(raw.get(spec.question_key), "question")
    answer = _text(raw.get(spec.answer_key), "answer")
    refs = _as_list(raw.get(spec.image_key))
    n_slots = count_placeholders(question)
    if n_slots and n_slots != len(refs):
        raise RowError("placeholder_mismatch", f"question has {n_slots} <image> "
                       f"placeholder(s) but the row has {len(refs)} image(s)")
    paths, hashes = [], []
    for i, ref in enumerate(refs):
        data, path = _image_bytes(ref, base_dir)
        fmt = _check_decodable(data, f"image {i}")
        hashes.append(sha256_bytes(data))
        paths.append(_store_image(data, path, images_dir, fmt))
    return {"sample_id": sample_id(question, answer, hashes), "question": question,
            "answer": answer, "image_paths": paths, "image_sha256": hashes}


def _easy_vqa_rows(limit: int | None):
    from easy_vqa import get_train_image_paths, get_train_questions
    questions, answers, image_ids = get_train_questions()
    paths = get_train_image_paths()
    n = min(limit or EASY_VQA_DEFAULT_ROWS, len(questions))
    for i in range(n):
        yield {"problem": questions[i], "answer": answers[i], "images": [paths[image_ids[i]]]}


def _file_rows(path: Path):
    suffix = path.suffix.lower()
    if path.is_dir():
        from datasets import load_from_disk
        # the Arrow storage holds images as {bytes, path} structs: read them undecoded
        for batch in load_from_disk(str(path)).data.to_batches():
            yield from batch.to_pylist()
    elif suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
    elif suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        yield from (data if isinstance(data, list) else data.get("data", []))
    elif suffix == ".parquet":
        yield from pl.read_parquet(path).iter_rows(named=True)
    else:
        raise PoolReadError(f"{path}: unknown pool format {suffix!r} "
                            "(expected .jsonl, .json, .parquet or a datasets folder)")


def _raw_rows(spec: DataSpec):
    if spec.path == BUILTIN_DATA:
        return _easy_vqa_rows(spec.limit), Path.cwd()
    path = Path(spec.path).expanduser()
    if not path.exists():
        raise PoolReadError(f"pool not found: {path}")
    base = Path(spec.image_dir).expanduser() if spec.image_dir else (
        path if path.is_dir() else path.parent)
    return _file_rows(path), base.resolve()


def _required_columns(first: dict, spec: DataSpec) -> None:
    missing = [k for k in (spec.question_key, spec.answer_key) if k not in first]
    if missing:
        raise PoolReadError(f"{spec.path}: missing column(s) {missing}; columns found: "
                            f"{sorted(first)} (set question_key/answer_key to map them)")


def read_pool(spec: DataSpec, images_dir: Path) -> Pool:
    """Read and validate every row; duplicates of an earlier row are marked, not re-scored."""
    rows_iter, base_dir = _raw_rows(spec)
    samples, rows, seen = [], [], set()
    for i, raw in enumerate(rows_iter):
        if spec.limit is not None and i >= spec.limit:
            break
        if i == 0:
            _required_columns(raw, spec)
        try:
            rec = validate_row(raw, spec, base_dir, images_dir)
        except RowError as err:
            rows.append((i, None, "error", err.code, str(err)))
            continue
        status = "duplicate" if rec["sample_id"] in seen else "ok"
        rows.append((i, rec["sample_id"], status, None, None))
        if status == "ok":
            seen.add(rec["sample_id"])
            samples.append(rec)
    if not rows:
        raise PoolReadError(f"{spec.path}: the pool has no rows")
    return Pool(source=spec.path, samples=pl.DataFrame(samples, schema=SAMPLE_SCHEMA),
                rows=pl.DataFrame(rows, schema=ROW_SCHEMA, orient="row"))
