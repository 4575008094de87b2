"""The group of every pool row: what kind of sample it is, so that a selection's composition
can be shown against the pool's and kept by the coverage floor.

A group key is a pool column (verl's `data_source`, an MM-Eureka or datasets column such as
`source`, `category`, `subject`; a dotted path reads inside a struct: `extra_info.split`) or a
key rap derives: `answer_kind` (from the reference answer by the grading rules). The builtin
easy-VQA pool's rows carry a `question_type` column (yes/no, color, shape). Ingest stores the
derived key, the conventional columns a row has and the column the run names, once per pool
row, so a retune can group by any of them without reading the pool again.
"""

from __future__ import annotations

from rap.rap_core.grading import answer_kind

AUTO = "auto"
NO_GROUP = "(none)"
DERIVED = ("answer_kind",)
# stored whenever a row has them: the usual group columns of RL pools (and the builtin pool's)
POOL_COLUMNS = ("data_source", "source", "category", "subject", "task", "type", "level",
                "question_type")
MAX_VALUE = 200  # characters of a stored group value


def column_value(raw: dict, column: str) -> str | None:
    """A row's value of a (dotted) column as text; None when the row lacks it or it is not a
    scalar (a list or struct is no group)."""
    value = raw
    for part in column.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if value is None or isinstance(value, (dict, list, tuple, bytes, bytearray)):
        return None
    if isinstance(value, float) and value != value:
        return None
    text = str(value).strip().encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:MAX_VALUE] or None


def columns_to_read(group_by: str) -> tuple[str, ...]:
    """The pool columns ingest stores: the conventional ones and the one a run names."""
    named = () if group_by in (AUTO, *DERIVED) or group_by in POOL_COLUMNS else (group_by,)
    return (*POOL_COLUMNS, *named)


def row_groups(raw: dict, record: dict | None, columns: tuple[str, ...]) -> dict[str, str]:
    """One row's group values by key (keys with no value are left out). `record` is the
    validated sample (None for a row that could not be read: no derived keys)."""
    found = {c: v for c in columns if (v := column_value(raw, c)) is not None}
    if record is not None:
        found["answer_kind"] = answer_kind(record["answer"])
    return found


def resolve_group_by(requested: str, stored: dict[str, int]) -> str:
    """The group key a run uses. auto: the first of data_source and question_type (the
    builtin pool's) that the pool's rows carry more than one value of, else answer_kind.
    `stored` is the number of distinct values of each key stored for the pool."""
    if requested != AUTO:
        return requested
    return next((key for key in ("data_source", "question_type") if stored.get(key, 0) > 1),
                "answer_kind")
