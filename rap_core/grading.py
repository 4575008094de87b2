"""Rule-based answer grading, like the RL reward: extract the final answer, then compare.

Short labels (yes, blue, B) are compared after normalisation; anything that looks like math
goes through math-verify. GRADER_VERSION is part of every rollout key: bump it whenever a
change here could flip a grade.
"""

from __future__ import annotations

import re
import threading

GRADER_VERSION = "grader-v2"

_ANSWER_RE = re.compile(r"answer\s*(?:is)?\s*[:：][ \t]*(\S[^\n]*)", re.IGNORECASE)
_TEXT_RE = re.compile(r"\\(?:text|mathrm|textbf)\{([^{}]*)\}")
_MATHY_RE = re.compile(r"[\d\\^=/]")
MAX_LAST_LINE = 40


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j]
    return None


def extract_answer(response: str) -> str | None:
    """The final answer: last \\boxed{}, else the last 'answer: X', else a short last line."""
    boxed = _last_boxed(response)
    if boxed is not None:
        return boxed.strip()
    matches = _ANSWER_RE.findall(response)
    if matches:
        return matches[-1].strip()
    lines = [ln.strip() for ln in response.strip().splitlines() if ln.strip()]
    if lines and len(lines[-1]) <= MAX_LAST_LINE:
        return lines[-1]
    return None


def normalise_label(text: str) -> str:
    """Lower-case, unwrap \\text{}, drop $ and surrounding punctuation, collapse spaces."""
    text = _TEXT_RE.sub(r"\1", text)
    text = text.replace("$", "").strip().lower()
    text = re.sub(r"\s+", " ", text)
    text = text.strip(" .,;:!\"'")
    if len(text) >= 3 and text[0] == "(" and text[-1] == ")":
        text = text[1:-1].strip()
    return text


def _math_equal(gold: str, pred: str) -> bool:
    from math_verify import parse, verify
    # math-verify's timeout uses SIGALRM, which only works in the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        gold_parsed = parse(f"${gold}$", parsing_timeout=timeout)
        pred_parsed = parse(f"${pred}$", parsing_timeout=timeout)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # a malformed response is simply not correct
        return False


def is_correct(reference: str, extracted: str | None) -> bool:
    """Grade one extracted answer against the reference answer."""
    if extracted is None or not extracted.strip():
        return False
    gold, pred = normalise_label(reference), normalise_label(extracted)
    if gold == pred:
        return True
    if _MATHY_RE.search(gold) and _MATHY_RE.search(pred):
        return _math_equal(reference, extracted)
    return False


def grade(reference: str, response: str) -> tuple[str | None, bool]:
    """(extracted answer, correct) for one response."""
    extracted = extract_answer(response)
    return extracted, is_correct(reference, extracted)
