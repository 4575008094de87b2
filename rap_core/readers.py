"""Reading a pool into sample records, one validated row at a time.

Layouts (auto-detected from the first row's columns, or named by DataSpec.format):
  easyr1    JSONL / JSON / Parquet: question with `<image>` placeholders, answer, images as
            paths (relative to the file or image_dir), {bytes, path} structs or raw bytes
  hf        a `datasets` save_to_disk folder or Parquet with an Image feature (same columns)
  mmeureka  MM-Eureka JSONL: id, conversations (system/user turns), answer, image_urls
  openrlhf  OpenRLHF-M JSONL: message (stringified OpenAI-style turns with image items), answer
  verl      Parquet: prompt (chat list), images, reward_model.ground_truth, data_source,
            extra_info.index
Every layout becomes the same record (question, answer, images, system prompt). A bad row
becomes an error row with a specific code; it never stops the read.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from rap_core.keys import sample_id, short_hash
from rap_core.params import BUILTIN_DATA, DataSpec
from rap_core.pool_files import BadRow, PoolReadError, easy_vqa_rows, file_rows
from rap_core.pool_images import RowError, image_record, storable, unicode_text
from rap_core.prompts import IMAGE_PLACEHOLDER, count_placeholders

SAMPLE_SCHEMA = {"sample_id": pl.String, "question": pl.String, "answer": pl.String,
                 "image_paths": pl.List(pl.String), "image_sha256": pl.List(pl.String),
                 "system": pl.String}
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


def _as_list(images) -> list:
    if images is None:
        return []
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]


def canonical_question(question: str, n_images: int) -> str:
    """Images-first is the same prompt with or without leading placeholders; store it one way
    (without), so a sample keeps its id through an export that writes them."""
    prefix = IMAGE_PLACEHOLDER * n_images
    if n_images and question.startswith(prefix) and count_placeholders(question) == n_images:
        return question[len(prefix):]
    return question


@dataclass
class RawSample:
    """One input row in the common shape, before its images are checked."""

    question: object
    answer: object
    images: list
    system: str | None = None


# --- layouts: each turns one raw row into a RawSample (or RowError) --------------------------

def _from_columns(raw: dict, spec: DataSpec) -> RawSample:
    """EasyR1 / HF layout: question, answer, images columns (names from the spec); a `system`
    column, when there is one, is the sample's system prompt."""
    system = raw.get("system")
    return RawSample(raw.get(spec.question_key), raw.get(spec.answer_key),
                     _as_list(raw.get(spec.image_key)), system if isinstance(system, str) else None)


def _chat_text(content, where: str) -> tuple[str, list]:
    """A chat turn's content as text with <image> placeholders, and its image references."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, (list, tuple)):
        raise RowError("bad_message", f"{where}: content is neither text nor a list of items")
    text, images = "", []
    for item in content:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            part = item.get("text") or ""
            if not isinstance(part, str):
                raise RowError("bad_message", f"{where}: a text item is not a string "
                               f"({type(part).__name__})")
            text += part
        elif kind in ("image", "image_url"):
            ref = item.get("image") or item.get("image_url")
            images.append(ref.get("url") if isinstance(ref, dict) else ref)
            text += IMAGE_PLACEHOLDER
        else:
            raise RowError("bad_message", f"{where}: unsupported content item {item!r:.80}")
    return text, images


def _from_chat(messages, where: str) -> tuple[str | None, str, list]:
    """(system, user text, images) of a chat list; several user turns are joined."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise RowError("bad_message", f"{where} is not a list of chat messages")
    system, user, images = None, [], []
    for turn in messages:
        if not isinstance(turn, dict):
            raise RowError("bad_message", f"{where}: a turn is not an object")
        role = turn.get("role") or turn.get("from")
        text, refs = _chat_text(turn.get("content", turn.get("value")), where)
        if role == "system":
            system = text.strip() or None
        elif role in ("user", "human"):
            user.append(text)
            images += refs
    if not user:
        raise RowError("bad_message", f"{where} has no user turn")
    return system, "\n".join(user), images


def _from_mmeureka(raw: dict, spec: DataSpec) -> RawSample:
    system, question, refs = _from_chat(raw.get("conversations"), "conversations")
    return RawSample(question, raw.get("answer"), refs + _as_list(raw.get("image_urls")), system)


def _from_openrlhf(raw: dict, spec: DataSpec) -> RawSample:
    message = raw.get("message")
    if isinstance(message, str):
        try:
            message = json.loads(message)
        except RecursionError:
            raise RowError("bad_message", "message is nested too deeply to be read") from None
        except ValueError as exc:
            raise RowError("bad_message", f"message is not valid JSON ({exc})") from exc
    system, question, refs = _from_chat(message, "message")
    return RawSample(question, raw.get("answer"), refs, system)


def _from_verl(raw: dict, spec: DataSpec) -> RawSample:
    system, question, refs = _from_chat(raw.get("prompt"), "prompt")
    reward = raw.get("reward_model")
    truth = reward.get("ground_truth") if isinstance(reward, dict) else None
    return RawSample(question, truth, refs + _as_list(raw.get("images")), system)


@dataclass(frozen=True)
class Layout:
    name: str
    required: tuple[str, ...]  # columns that identify the layout
    read: object

    def columns(self, spec: DataSpec) -> tuple[str, ...]:
        return (spec.question_key, spec.answer_key) if self.name in ("easyr1", "hf") \
            else self.required


LAYOUTS = {
    "mmeureka": Layout("mmeureka", ("conversations", "answer"), _from_mmeureka),
    "openrlhf": Layout("openrlhf", ("message", "answer"), _from_openrlhf),
    "verl": Layout("verl", ("prompt", "reward_model"), _from_verl),
    "easyr1": Layout("easyr1", (), _from_columns),
    "hf": Layout("hf", (), _from_columns),
}


def detect_layout(first: dict, spec: DataSpec) -> Layout:
    """The layout named by spec.format, or the one the first row's columns match."""
    if spec.format != "auto":
        layout = LAYOUTS[spec.format]
        missing = [c for c in layout.columns(spec) if c not in first]
        if missing:
            raise PoolReadError(f"{spec.path}: missing column(s) {missing} for format "
                                f"{spec.format}; columns found: {sorted(first)}")
        return layout
    found = [n for n in ("mmeureka", "openrlhf", "verl")
             if all(c in first for c in LAYOUTS[n].required)]
    if spec.question_key in first and spec.answer_key in first:
        found.append("easyr1")
    if len(found) > 1:
        raise PoolReadError(f"{spec.path}: the columns fit several formats ({', '.join(found)})"
                            "; pass format (--format) to choose one")
    if not found:
        missing = [k for k in (spec.question_key, spec.answer_key) if k not in first]
        raise PoolReadError(
            f"{spec.path}: missing column(s) {missing}; columns found: {sorted(first)}. Not "
            "MM-Eureka (conversations, answer), OpenRLHF-M (message, answer) or verl (prompt, "
            "reward_model) either: set question_key/answer_key/image_key to map the columns")
    return LAYOUTS[found[0]]


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


def read_pool(spec: DataSpec, images_dir: Path) -> Pool:
    """Read and validate every row; duplicates of an earlier row are marked, not re-scored.
    Any failure inside one row is that row's error; only PoolReadError ends the read."""
    rows_iter, base_dir = _raw_rows(spec)
    samples, rows, seen, layout, checked = [], [], set(), None, {}
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
            continue
        status = "duplicate" if rec["sample_id"] in seen else "ok"
        rows.append((i, rec["sample_id"], status, None, None, source_id, data_source))
        if status == "ok":
            seen.add(rec["sample_id"])
            samples.append(rec)
    if not rows:
        raise PoolReadError(f"{spec.path}: the pool has no rows")
    return Pool(source=spec.path, samples=pl.DataFrame(samples, schema=SAMPLE_SCHEMA),
                rows=pl.DataFrame(rows, schema=ROW_SCHEMA, orient="row"),
                layout=_layout_name(layout, spec))
