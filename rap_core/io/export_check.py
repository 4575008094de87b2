"""Checking a trainer file against that trainer's rules (README: Train on the result), row by row.

Each violation names the row, the rule and what is wrong, so a file that a trainer would
reject (or silently shorten) is caught before a training job starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rap.rap_core.io.prompts import count_placeholders


@dataclass(frozen=True)
class Violation:
    row: int | None  # None: the file as a whole
    rule: str
    message: str

    def __str__(self) -> str:
        where = "file" if self.row is None else f"row {self.row}"
        return f"{where}: [{self.rule}] {self.message}"


def _decodable(data: bytes) -> bool:
    from rap.rap_core.io.images import image_format
    try:
        image_format(data)
        return True
    except Exception:
        return False


def _rows(path: Path, fmt: str) -> list[dict]:
    if fmt == "hf":
        from datasets import load_from_disk
        return load_from_disk(str(path)).data.to_pylist()
    if path.suffix == ".parquet":
        import polars as pl
        return pl.read_parquet(path).to_dicts()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, list) else data.get("data", [])
    raise ValueError(f"unsupported file type {path.suffix!r}")


def _text(row: dict, key: str, i: int, out: list, rule: str) -> str | None:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        out.append(Violation(i, rule, f"{key} must be a non-empty string, got {value!r:.60}"))
        return None
    return value


def _image_structs(images, i: int, out: list, base: Path, allow_path: bool) -> int:
    """Checks each image element; returns how many there are."""
    if not isinstance(images, list):
        out.append(Violation(i, "images_list", f"images must be a list, got {images!r:.60}"))
        return 0
    for k, image in enumerate(images):
        if isinstance(image, str):
            if not allow_path:
                out.append(Violation(i, "images_bare_path", f"images[{k}] is a bare path "
                                     "string; verl needs {bytes, path} or {image: path}"))
            elif not (base / image).is_file():
                out.append(Violation(i, "image_missing", f"images[{k}] not found: {image}"))
            continue
        if not isinstance(image, dict):
            out.append(Violation(i, "image_struct", f"images[{k}] is {type(image).__name__}, "
                                 "not a {bytes, path} struct"))
            continue
        data, ref = image.get("bytes"), image.get("path") or image.get("image")
        if data:
            if not _decodable(data):
                out.append(Violation(i, "image_unreadable", f"images[{k}] bytes are not an "
                                     "image"))
        elif not ref or not (base / str(ref).removeprefix("file://")).is_file():
            out.append(Violation(i, "image_missing", f"images[{k}] has no bytes and no "
                                 f"readable path ({ref!r})"))
    return len(images)


def _check_easyr1(rows: list[dict], base: Path) -> list[Violation]:
    out: list[Violation] = []
    for i, row in enumerate(rows):
        problem = row.get("problem")
        if isinstance(problem, list):
            out.append(Violation(i, "problem_plain_string", "problem is a chat list; EasyR1 "
                                 "wants a plain string"))
            problem = None
        elif _text(row, "problem", i, out, "problem_plain_string") is None:
            problem = None
        _text(row, "answer", i, out, "answer")
        n = _image_structs(row.get("images"), i, out, base, allow_path=True)
        if problem is not None and n and count_placeholders(problem) != n:
            out.append(Violation(i, "placeholders_match_images", f"problem has "
                                 f"{count_placeholders(problem)} <image> placeholder(s) for "
                                 f"{n} image(s)"))
    return out


def _check_verl(rows: list[dict], base: Path) -> list[Violation]:
    out: list[Violation] = []
    seen: dict = {}
    for i, row in enumerate(rows):
        _text(row, "data_source", i, out, "data_source")
        prompt = row.get("prompt")
        placeholders = 0
        if not isinstance(prompt, list) or not prompt or not all(
                isinstance(t, dict) and isinstance(t.get("content"), str) and t.get("role")
                for t in prompt):
            out.append(Violation(i, "prompt_chat_list", "prompt must be a list of {role, "
                                 "content} messages with string content"))
        else:
            placeholders = sum(count_placeholders(t["content"]) for t in prompt)
        n = _image_structs(row.get("images"), i, out, base, allow_path=False)
        if placeholders != n:
            out.append(Violation(i, "placeholders_match_images", f"prompt has {placeholders} "
                                 f"<image> placeholder(s) for {n} image(s)"))
        reward = row.get("reward_model")
        truth = reward.get("ground_truth") if isinstance(reward, dict) else None
        if not isinstance(truth, str) or not truth.strip():
            out.append(Violation(i, "reward_model_ground_truth", "reward_model.ground_truth "
                                 "is missing or empty"))
        extra = row.get("extra_info")
        index = extra.get("index") if isinstance(extra, dict) else None
        if index is None:
            out.append(Violation(i, "extra_info_index", "extra_info.index is missing"))
        elif index in seen:
            out.append(Violation(i, "extra_info_index", f"extra_info.index {index} repeats "
                                 f"row {seen[index]}"))
        else:
            seen[index] = i
    return out


def _check_openrlhf(rows: list[dict], base: Path) -> list[Violation]:
    out: list[Violation] = []
    for i, row in enumerate(rows):
        _text(row, "answer", i, out, "answer")
        message = row.get("message")
        if not isinstance(message, str):
            out.append(Violation(i, "message_string", "message must be a JSON string (the "
                                 "stringified message list)"))
            continue
        try:
            turns = json.loads(message)
        except ValueError as exc:
            out.append(Violation(i, "message_json", f"message is not valid JSON ({exc})"))
            continue
        if not isinstance(turns, list) or not any(
                isinstance(t, dict) and t.get("role") == "user" for t in turns):
            out.append(Violation(i, "message_user_turn", "message has no user turn"))
            continue
        for t in turns:
            content = t.get("content") if isinstance(t, dict) else None
            for item in content if isinstance(content, list) else []:
                if isinstance(item, dict) and item.get("type") == "image":
                    uri = str(item.get("image") or "")
                    if not uri.startswith("file://"):
                        out.append(Violation(i, "image_file_uri", f"image {uri!r:.60} is not "
                                             "a file:// URI"))
                    elif not Path(uri.removeprefix("file://")).is_file():
                        out.append(_missing_image(i, uri))
    return out


def _missing_image(i: int, uri: str) -> Violation:
    from urllib.parse import unquote
    if unquote(uri) != uri and Path(unquote(uri).removeprefix("file://")).is_file():
        return Violation(i, "image_uri_encoded", f"image {uri!r:.80} is percent-encoded; the "
                         "trainers strip file:// and open the rest as it is: write the path "
                         "unencoded")
    return Violation(i, "image_missing", f"image not found: {uri}")


CHECKS = {"easyr1": _check_easyr1, "verl": _check_verl, "openrlhf": _check_openrlhf,
          "hf": _check_easyr1}
REQUIRED = {"easyr1": ("problem", "answer", "images"), "hf": ("problem", "answer", "images"),
            "verl": ("data_source", "prompt", "images", "reward_model", "extra_info"),
            "openrlhf": ("message", "answer")}
SUFFIXES = {"easyr1": (".parquet", ".jsonl", ".json"), "verl": (".parquet", ".json"),
            "openrlhf": (".jsonl",)}


def check_export(path: Path, fmt: str) -> list[Violation]:
    """Every violation of fmt's rules in the file (an empty list: the trainer loads it)."""
    path = Path(path)
    if not path.exists():
        return [Violation(None, "exists", f"{path} does not exist")]
    if fmt == "hf" and not path.is_dir():
        return [Violation(None, "hf_folder", "an hf export is a datasets save_to_disk folder")]
    if fmt in SUFFIXES and path.suffix not in SUFFIXES[fmt]:
        return [Violation(None, "file_type", f"{fmt} reads {', '.join(SUFFIXES[fmt])} files, "
                          f"not {path.suffix or 'a folder'}")]
    try:
        rows = _rows(path, fmt)
    except Exception as exc:
        return [Violation(None, "readable", f"cannot read {path}: {exc}")]
    if not rows:
        return [Violation(None, "rows", "the file has no rows")]
    missing = [c for c in REQUIRED[fmt] if c not in rows[0]]
    if missing:
        return [Violation(None, "columns", f"missing column(s) {missing}")]
    base = path if path.is_dir() else path.parent
    return CHECKS[fmt](rows, base)
