"""The raw rows of a pool file, one at a time: JSONL lines, the elements of a JSON array,
Parquet rows, a datasets folder. A row that cannot be parsed (invalid or too deeply nested
JSON, bytes that are not UTF-8, not an object) comes out as a BadRow, never ends the read;
only a file that cannot be read at all is a PoolReadError."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from rap.rap_core.io.spec import EASY_VQA_DEFAULT_ROWS, question_type
from rap.rap_core.errors import PoolReadError


def easy_vqa_rows(limit: int | None):
    from easy_vqa import get_train_image_paths, get_train_questions
    questions, answers, image_ids = get_train_questions()
    paths = get_train_image_paths()
    n = min(limit or EASY_VQA_DEFAULT_ROWS, len(questions))
    for i in range(n):
        yield {"problem": questions[i], "answer": answers[i], "images": [paths[image_ids[i]]],
               "question_type": question_type(answers[i])}


class BadRow(dict):
    """An input row that cannot be parsed: an error row, not the end of the read."""

    def __init__(self, message: str, code: str = "bad_json"):
        super().__init__()
        self.message, self.code = message, code


def _unparsable(exc: Exception, where: str) -> BadRow:
    """The error row for a row's JSON text that json could not turn into a value."""
    if isinstance(exc, RecursionError):
        return BadRow(f"{where} is nested too deeply to be read")
    if isinstance(exc, json.JSONDecodeError):
        return BadRow(f"{where} is not valid JSON ({exc})")
    # e.g. an integer longer than Python's digit limit
    return BadRow(f"{where} could not be read ({exc})")


def _parsed(text: str, where: str):
    """One row's JSON text as a dict, or a BadRow saying why not."""
    try:
        row = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return _unparsable(exc, where)
    return row if isinstance(row, dict) else BadRow(f"{where} is not an object")


def _jsonl_rows(path: Path):
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield BadRow(f"line {number} is not valid UTF-8 ({exc.reason} at byte "
                              f"{exc.start})", "bad_encoding")
                continue
            yield _parsed(line.removeprefix("\ufeff") if number == 1 else line, f"line {number}")


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_STRUCTURE = re.compile(r'["\[\]{},]')
_STRING_END = re.compile(r'["\\]')
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


def _string_end(text: str, pos: int) -> int:
    """Just past the closing quote of the JSON string whose body starts at pos."""
    while match := _STRING_END.search(text, pos):
        if match.group() == '"':
            return match.end()
        pos = match.end() + 1  # skip the escaped character
    return len(text)


def _element_end(text: str, pos: int) -> int:
    """Where the array element starting at pos ends, valid JSON or not: the next `,` or `]`
    outside strings and brackets (the end of the text when there is none)."""
    depth = 0
    while match := _STRUCTURE.search(text, pos):
        char, pos = match.group(), match.end()
        if char == '"':
            pos = _string_end(text, pos)
        elif char in "[{":
            depth += 1
        elif char in "]}" and depth:
            depth -= 1
        elif char in ",]" and not depth:
            return match.start()
    return len(text)


def _array_element(decoder: json.JSONDecoder, text: str, pos: int, number: int):
    """Element `number` of a top-level array, starting at pos: (row or BadRow, the position
    of the `,` or `]` after it)."""
    where = f"row {number}"
    try:
        row, end = decoder.raw_decode(text, pos)
        end = _WHITESPACE.match(text, end).end()
        if end < len(text) and text[end] not in ",]":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, end)
    except (ValueError, RecursionError) as exc:
        return _unparsable(exc, where), _element_end(text, pos)
    if _UNDECODED.search(text, pos, end):
        return BadRow(f"{where} is not valid UTF-8", "bad_encoding"), end
    return (row if isinstance(row, dict) else BadRow(f"{where} is not an object")), end


def _json_array_rows(text: str, pos: int):
    """The rows of a top-level JSON array, element by element from just after its `[`: a bad
    element is its own error row."""
    decoder = json.JSONDecoder()
    number = 0
    while (pos := _WHITESPACE.match(text, pos).end()) < len(text) and text[pos] != "]":
        number += 1
        row, pos = _array_element(decoder, text, pos, number)
        yield row
        if text.startswith(",", pos):
            pos += 1


def _json_rows(path: Path):
    """A .json pool: a top-level array of rows (read element by element) or {"data": [...]}."""
    text = path.read_bytes().decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    start = _WHITESPACE.match(text).end()
    if text.startswith("[", start):
        yield from _json_array_rows(text, start + 1)
        return
    if _UNDECODED.search(text):
        raise PoolReadError(f"{path}: not valid UTF-8")
    try:
        data = json.loads(text)
    except RecursionError:
        raise PoolReadError(f"{path}: nested too deeply to be read as JSON") from None
    except ValueError as exc:
        raise PoolReadError(f"{path}: not valid JSON ({exc})") from None
    rows = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise PoolReadError(f'{path}: expected an array of rows or an object with a "data" '
                            "array")
    for number, row in enumerate(rows, 1):
        yield row if isinstance(row, dict) else BadRow(f"row {number} is not an object")


def file_rows(path: Path):
    suffix = path.suffix.lower()
    if path.is_dir():
        from datasets import load_from_disk
        try:
            table = load_from_disk(str(path)).data
        except Exception as exc:
            raise PoolReadError(f"{path}: not a readable datasets folder ({exc})") from exc
        # the Arrow storage holds images as {bytes, path} structs: read them undecoded
        for batch in table.to_batches():
            yield from batch.to_pylist()
    elif suffix == ".jsonl":
        yield from _jsonl_rows(path)
    elif suffix == ".json":
        yield from _json_rows(path)
    elif suffix == ".parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:
            raise PoolReadError(f"{path}: not a readable Parquet file ({exc})") from exc
        yield from frame.iter_rows(named=True)
    else:
        raise PoolReadError(f"{path}: unknown pool format {suffix!r} "
                            "(expected .jsonl, .json, .parquet or a datasets folder)")
