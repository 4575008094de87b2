"""Reading a pool into sample records, one validated row at a time.

Layouts (auto-detected from the first row's columns, or named by DataSpec.format):
  easyr1    JSONL / JSON / Parquet: question with `<image>` placeholders, answer, images as
            paths (relative to the file or image_dir), {bytes, path} structs or raw bytes
  hf        a `datasets` save_to_disk folder or Parquet with an Image feature (same columns)
  mmeureka  MM-Eureka JSONL: id, conversations (system/user turns), answer, image_urls
  openrlhf  OpenRLHF-M JSONL: message (stringified OpenAI-style turns with image items), answer
  verl      Parquet: prompt (chat list), images, reward_model.ground_truth, data_source,
            extra_info.index
Each layout is one module of io/layouts/; every layout becomes the same record (question,
answer, images, system prompt). A bad row becomes an error row with a specific code; it never
stops the read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from rap.rap_core.keys import sample_id, short_hash
from rap.rap_core.io.spec import BUILTIN_DATA, DataSpec
from rap.rap_core.io.groups import AUTO, DERIVED, column_value, columns_to_read, row_groups
from rap.rap_core.io.pool_files import BadRow, PoolReadError, easy_vqa_rows, file_rows
from rap.rap_core.io.layouts import Layout, RawSample, detect_layout
from rap.rap_core.io.pool_images import RowError, image_record, storable, unicode_text
from rap.rap_core.io.prompts import IMAGE_PLACEHOLDER, count_placeholders

SAMPLE_SCHEMA = {"sample_id": pl.String, "question": pl.String, "answer": pl.String,
                 "image_paths": pl.List(pl.String), "image_sha256": pl.List(pl.String),
                 "system": pl.String}
GROUP_SCHEMA = {"source_row": pl.Int64, "group_key": pl.String, "group_value": pl.String}
ROW_SCHEMA = {"source_row": pl.Int64, "sample_id": pl.String, "row_status": pl.String,
              "error_code": pl.String, "error_message": pl.String, "source_id": pl.String,
              "data_source": pl.String}


@dataclass
class Pool:
    """A read pool: unique samples, and one status row per input row."""

    source: str
    samples: pl.DataFrame
    rows: pl.DataFrame
    layout: str = "easyr1"
    # (source_row, group_key, group_value) of every row with a value; group_keys: the keys
    # read (a key no row has a value of is still read: its rows are all group (none))
    groups: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=GROUP_SCHEMA))
    group_keys: tuple[str, ...] = ()
    pool_id: str = field(init=False)

    def __post_init__(self):
        self.pool_id = short_hash(self.source, self.rows.select("source_row", "sample_id",
                                                                 "error_code").rows())


def _text(value, what: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise RowError(f"empty_{what}", f"{what} is missing")
    text = str(value).strip()
    if not text:
        raise RowError(f"empty_{what}", f"{what} is empty")
    return unicode_text(text, what)


def canonical_question(question: str, n_images: int) -> str:
    """Images-first is the same prompt with or without leading placeholders; store it one way
    (without), so a sample keeps its id through an export that writes them."""
    prefix = IMAGE_PLACEHOLDER * n_images
    if n_images and question.startswith(prefix) and count_placeholders(question) == n_images:
        return question[len(prefix):]
    return question


def source_fields(raw: dict) -> tuple[str | None, str | None]:
    """The row's own id in its file and its verl data_source, when it has them."""
    extra = raw.get("extra_info")
    sid = raw.get("id", extra.get("index") if isinstance(extra, dict) else None)
    source = raw.get("data_source")
    return (None if sid is None else str(sid)), (None if source is None else str(source))


def validate_row(sample: RawSample, base_dir: Path, images_dir: Path,
                 allow_outside: bool = False, checked: dict | None = None) -> dict:
    """One input row as a sample record, or RowError. checked: the images this read has
    verified already (each distinct image is verified once per read)."""
    question = _text(sample.question, "question")
    answer = _text(sample.answer, "answer")
    refs = sample.images
    n_slots = count_placeholders(question)
    if n_slots and n_slots != len(refs):
        raise RowError("placeholder_mismatch", f"question has {n_slots} <image> "
                       f"placeholder(s) but the row has {len(refs)} image(s)")
    question = canonical_question(question, len(refs))
    checked = {} if checked is None else checked
    paths, hashes = [], []
    for i, ref in enumerate(refs):
        path, digest = image_record(ref, base_dir, images_dir, allow_outside, f"image {i}", checked)
        paths.append(path)
        hashes.append(digest)
    system = unicode_text((sample.system or "").strip(), "system prompt") or None
    return {"sample_id": sample_id(question, answer, hashes, system), "question": question,
            "answer": answer, "image_paths": paths, "image_sha256": hashes, "system": system}


def _raw_rows(spec: DataSpec):
    if spec.path == BUILTIN_DATA:
        return easy_vqa_rows(spec.limit), Path.cwd()
    path = Path(spec.path).expanduser()
    if not path.exists():
        raise PoolReadError(f"pool not found: {path}")
    base = Path(spec.image_dir).expanduser() if spec.image_dir else (
        path if path.is_dir() else path.parent)
    return file_rows(path), base.resolve()


def _layout_name(layout: Layout | None, spec: DataSpec) -> str:
    if layout is None:
        return "unknown"
    if layout.name == "easyr1" and spec.path != BUILTIN_DATA and Path(spec.path).is_dir():
        return "hf"
    return layout.name


def _row_error(exc: Exception) -> RowError:
    """The error row an exception from reading one row becomes."""
    if isinstance(exc, RowError):
        return exc
    return RowError("bad_row", f"row could not be read: {type(exc).__name__}: {exc}")


def read_pool(spec: DataSpec, images_dir: Path, group_by: str = AUTO) -> Pool:
    """Read and validate every row; duplicates of an earlier row are marked, not re-scored.
    Any failure inside one row is that row's error; only PoolReadError ends the read (and a
    group column `group_by` that no row has)."""
    rows_iter, base_dir = _raw_rows(spec)
    samples, rows, seen, layout, checked = [], [], set(), None, {}
    columns, groups = columns_to_read(group_by), []
    for i, raw in enumerate(rows_iter):
        if spec.limit is not None and i >= spec.limit:
            break
        if isinstance(raw, BadRow):
            rows.append((i, None, "error", raw.code, storable(raw.message), None, None))
            continue
        layout = layout or detect_layout(raw, spec)
        source_id = data_source = None
        try:
            source_id, data_source = source_fields(raw)
            unicode_text(source_id or "", "id")
            unicode_text(data_source or "", "data_source")
            rec = validate_row(layout.read(raw, spec), base_dir, images_dir,
                               spec.allow_outside_paths, checked)
        except Exception as exc:  # one bad row costs only itself
            err = _row_error(exc)
            rows.append((i, None, "error", err.code, storable(str(err)),
                         storable(source_id), storable(data_source)))
            groups += [(i, k, v) for k, v in row_groups(raw, None, columns).items()]
            continue
        status = "duplicate" if rec["sample_id"] in seen else "ok"
        rows.append((i, rec["sample_id"], status, None, None, source_id, data_source))
        groups += [(i, k, v) for k, v in row_groups(raw, rec, columns).items()]
        if status == "ok":
            seen.add(rec["sample_id"])
            samples.append(rec)
    if not rows:
        raise PoolReadError(f"{spec.path}: the pool has no rows")
    groups_frame = pl.DataFrame(groups, schema=GROUP_SCHEMA, orient="row")
    _check_group_column(group_by, groups_frame, spec)
    keys = (*DERIVED, *columns)
    return Pool(source=spec.path, samples=pl.DataFrame(samples, schema=SAMPLE_SCHEMA),
                rows=pl.DataFrame(rows, schema=ROW_SCHEMA, orient="row"),
                layout=_layout_name(layout, spec), groups=groups_frame, group_keys=keys)


def has_column(spec: DataSpec, column: str) -> bool:
    """Whether some row of the pool has `column` (a dotted path) with a group value: the raw
    rows are scanned until one does, without reading any image."""
    rows, _ = _raw_rows(spec)
    for i, raw in enumerate(rows):
        if spec.limit is not None and i >= spec.limit:
            break
        if not isinstance(raw, BadRow) and column_value(raw, column) is not None:
            return True
    return False


def _check_group_column(group_by: str, groups: pl.DataFrame, spec: DataSpec) -> None:
    """A group column the run names must be a column of the pool (of at least one row)."""
    if group_by != AUTO and group_by not in DERIVED and not (
            groups["group_key"] == group_by).any():
        raise missing_group_column(group_by, spec)


def missing_group_column(group_by: str, spec: DataSpec) -> PoolReadError:
    return PoolReadError(f"--group-by {group_by}: no row of {spec.path} has a column "
                         f"{group_by!r} with a text or number value (a dotted name reads "
                         "inside a struct, e.g. extra_info.split; derived: answer_kind)")
