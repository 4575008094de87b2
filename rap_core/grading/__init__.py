"""Rule-based answer grading, like the RL reward: extract the final answer, then compare.

Short labels (yes, blue, B) are compared after normalisation; anything that looks like math
goes through math-verify, in a helper process with a hard time limit (math_judge). A
number's unit (cm, cm², °, %) is dropped before comparing, and a choice letter stands for its
option's text when the question lists options. GRADER_VERSION is part of every rollout key:
bump it whenever a change here could flip a grade.
"""

from __future__ import annotations

import re
import time

from rap.rap_core.grading import math_judge

GRADER_VERSION = "grader-v3"

_ANSWER_RE = re.compile(r"answer(?:\s+is)?\s*[:：][ \t]*(\S[^\n]*)", re.IGNORECASE)
_TEXT_RE = re.compile(r"\\(?:text|textrm|textbf|textit|mathrm|mbox)\{([^{}]*)\}")
_MATHY_RE = re.compile(r"[\d\\^=/]")
_SPACING_RE = re.compile(r"\\[,;:! ]|\\q?quad\b|~")
_FRAC_RE = re.compile(r"\\[dt]frac\b")
MAX_LAST_LINE = 40
# math-verify runs in a helper process that is killed past the limit (math_judge): a
# comparison may take MATH_TIMEOUT seconds, and all those of one grade GRADE_TIMEOUT together.
MATH_TIMEOUT = 5
GRADE_TIMEOUT = 10
# The cheap guards still come first, so that the usual slow cases cost no helper restart:
# sympy evaluates numeric power towers and big factorials exactly (10^{10^{10}} never ends).
MAX_MATH_LEN = 200
_UNSAFE_MATH_RE = re.compile(r"\d\s*\^\s*\{?\s*[\d.]+\s*\^|\^\s*\{?\s*-?\d{8}|\d{5}\s*!|[)}]\s*!")

# A number, possibly in LaTeX (2\sqrt{3}, \frac{40}{3}, 4\pi); units are only dropped after one.
_NUMBER_RE = re.compile(r"[-+]?(?:\d|[.,/{}()\s]|\\(?:frac|sqrt|pi)(?![a-z]))+")
_LENGTH = (r"(?:mm|cm|dm|km|m|in|inch|inches|ft|foot|feet|yd|yards?|mi|miles?|units?"
           r"|(?:milli|centi|kilo)?met(?:er|re)s?)")
_POWER = r"(?:\^\s*\{?\s*[23]\s*\}?|[²³])"
_SIZE = rf"(?:(?:sq\.?|square|cubic)\s+{_LENGTH}|{_LENGTH}\s*{_POWER}?)"
_ANGLE = r"(?:\^\s*\{?\s*\\circ\s*\}?|°|\\circ|\\degree|degrees?|deg)"
_PERCENT = r"(?:\\?%|percent)"
_MATH_UNIT_RE = re.compile(rf"\s*(?:{_SIZE}|{_ANGLE})\s*$", re.IGNORECASE)
_ANY_UNIT_RE = re.compile(rf"\s*(?:{_SIZE}|{_ANGLE}|{_PERCENT})\s*$", re.IGNORECASE)
_PERCENT_RE = re.compile(rf"\s*{_PERCENT}\s*$", re.IGNORECASE)

# Choice answers: "B", "(B)", "B.", "option B", or a letter that leads its option's text.
_BARE_CHOICE_RE = re.compile(r"(?:(?:option|choice)\s*)?\(?([a-z])\)?[.:)]?", re.IGNORECASE)
_LED_CHOICE_RE = re.compile(
    r"(?:(?:option|choice)\s*)?(?:\(([A-Z])\)|([A-Z])\s*(?:[:：)]|\.(?!\d)))\s*(\S.*)",
    re.DOTALL)
# An option marker inside a question: "(B)", "B.", "B:", "B)" not glued to a word before it.
_OPTION_RE = re.compile(r"(?<![A-Za-z0-9\\])(?:\(([A-Z])\)|([A-Z])\s*[.:：)．])")


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


def _answer_tag(text: str) -> str | None:
    """The last closed <answer>...</answer> (MM-Eureka's format)."""
    end = text.rfind("</answer>")
    start = text.rfind("<answer>", 0, end) if end >= 0 else -1
    return text[start + len("<answer>"):end] if start >= 0 else None


def extract_answer(response: str) -> str | None:
    """The final answer: the last <answer></answer> tag (or a \\boxed{} in it), else the last
    \\boxed{}, else the last 'answer: X', else a short last line."""
    tagged = _answer_tag(response)
    if tagged is not None:
        boxed = _last_boxed(tagged)
        return (tagged if boxed is None else boxed).strip()
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


def _drop_unit(text: str, unit_re: re.Pattern) -> str:
    """text without a trailing unit, but only when what is left is a number."""
    match = unit_re.search(text)
    if match and re.search(r"\d", text[:match.start()]) \
            and _NUMBER_RE.fullmatch(text[:match.start()]):
        return text[:match.start()].strip()
    return text


def _canon(text: str) -> str:
    """normalise_label, plus LaTeX spacing, markdown bold, \\dfrac and units dropped."""
    text = normalise_label(_SPACING_RE.sub(" ", text).strip().strip("*"))
    return _drop_unit(_FRAC_RE.sub(r"\\frac", text), _ANY_UNIT_RE)


def _math_form(text: str) -> str:
    """What math-verify sees: no $, \\text{} or length/angle unit; a percent as \\%."""
    text = _SPACING_RE.sub(" ", _TEXT_RE.sub(r"\1", text).replace("$", ""))
    text = _drop_unit(re.sub(r"\s+", " ", text).strip().strip("*").strip(), _MATH_UNIT_RE)
    return _PERCENT_RE.sub(r"\\%", text)


def _math_equal(gold: str, pred: str, deadline: float) -> bool:
    """Equal per math-verify; False once the grade's deadline (time.monotonic()) is past."""
    timeout = min(MATH_TIMEOUT, deadline - time.monotonic())
    return timeout > 0 and math_judge.equal(gold, pred, timeout)


def _same(reference: str, extracted: str, deadline: float) -> bool:
    """Equal as labels, or (when both look mathematical) as math."""
    gold, pred = _canon(reference), _canon(extracted)
    if gold == pred:
        return True
    if not (_MATHY_RE.search(gold) and _MATHY_RE.search(pred)):
        return False
    gold, pred = _math_form(reference), _math_form(extracted)
    if max(len(gold), len(pred)) > MAX_MATH_LEN or _UNSAFE_MATH_RE.search(gold + " " + pred):
        return False
    return _math_equal(gold, pred, deadline)


def _choice(text: str) -> tuple[str | None, str]:
    """(choice letter, the option text that follows it) if text reads as a choice."""
    text = _SPACING_RE.sub(" ", _TEXT_RE.sub(r"\1", text).replace("$", "")).strip().strip("*")
    bare = _BARE_CHOICE_RE.fullmatch(text.strip(" .,;:!\"'"))
    if bare:
        return bare.group(1).upper(), ""
    led = _LED_CHOICE_RE.fullmatch(text)
    if led:
        return led.group(1) or led.group(2), led.group(3).strip()
    return None, ""


def _options(question: str) -> dict[str, str]:
    """The options a question lists ('A. 10 cm' lines, or inline 'A:10 B:12'), by letter.

    Options must run A, B, C... in order; of several such runs (a stray 'A.' in the text
    starts one) the longest wins, the later on a tie. Fewer than two options is none."""
    runs: list[list[re.Match]] = []
    waiting: dict[str, list[list[re.Match]]] = {}  # runs by the letter they need next
    for mark in _OPTION_RE.finditer(question):
        letter = mark.group(1) or mark.group(2)
        extended = waiting.pop(letter, [])
        if letter == "A":
            runs.append([])
            extended.append(runs[-1])
        for run in extended:
            run.append(mark)
        waiting.setdefault(chr(ord(letter) + 1), []).extend(extended)
    best = max(reversed(runs), key=len, default=[])
    if len(best) < 2:
        return {}
    options = {}
    for mark, following in zip(best, best[1:] + [None]):
        text = question[mark.end():following.start() if following else len(question)]
        options[mark.group(1) or mark.group(2)] = text.split("\n")[0].strip(" \t,;")
    return options


def _option_for(options: dict[str, str], answer: str, deadline: float) -> str | None:
    """The one option letter whose text the answer states, if any."""
    for same in (lambda text: normalise_label(text) == normalise_label(answer),
                 lambda text: _canon(text) == _canon(answer),
                 lambda text: _same(text, answer, deadline)):
        hits = [letter for letter, text in options.items() if text and same(text)]
        if hits:
            return hits[0] if len(hits) == 1 else None
    return None


def is_correct(reference: str, extracted: str | None, *, question: str | None = None) -> bool:
    """Grade one extracted answer against the reference answer.

    A choice letter matches the same letter. When the question lists options, any other
    answer stands for the one option whose text it states (none or several: wrong); without
    them, a letter leading an option's text ('(B) 12 cm') stands for that text. Math
    comparisons take GRADE_TIMEOUT seconds at most in all; one that runs out counts as wrong."""
    if extracted is None or not extracted.strip() or not reference.strip():
        return False
    deadline = time.monotonic() + GRADE_TIMEOUT
    gold_letter, gold_text = _choice(reference)
    pred_letter, pred_text = _choice(extracted)
    if not (gold_letter or pred_letter):
        return _same(reference, extracted, deadline)
    options = _options(question) if question and gold_letter != pred_letter else {}
    if options:
        # a letter that names no option is an answer like any other ('O' in 'A. O  B. P')
        if gold_letter not in options:
            gold_letter = _option_for(options, reference, deadline)
        if pred_letter not in options:
            pred_letter = _option_for(options, extracted, deadline)
        return gold_letter is not None and gold_letter == pred_letter
    if gold_letter and pred_letter:
        return gold_letter == pred_letter
    return _same(gold_text or reference, pred_text or extracted, deadline)


def grade(reference: str, response: str, *,
          question: str | None = None) -> tuple[str | None, bool]:
    """(extracted answer, correct) for one response."""
    extracted = extract_answer(response)
    return extracted, is_correct(reference, extracted, question=question)


ANSWER_KINDS = ("yes/no", "choice", "number", "short text", "other text")
_LATEX_NAME_RE = re.compile(r"\\[a-zA-Z]+")
_WORD_RE = re.compile(r"[a-zA-Z]{2,}")  # a word: "3 apples" is text, "2x + 1" is math
_YES_NO = {"yes", "no", "true", "false"}


def answer_kind(reference: str) -> str:
    """What kind of answer a reference is, by the rules `is_correct` grades it with: yes/no,
    a multiple-choice letter, a number (anything the grader compares as math: a number,
    fraction or expression), short text (one or two words) or other text."""
    label = normalise_label(reference)
    if label in _YES_NO:
        return "yes/no"
    if _choice(reference)[0]:  # "B", "(B)", or a letter leading its option's text
        return "choice"
    math = _LATEX_NAME_RE.sub(" ", _canon(reference))
    if _MATHY_RE.search(math) and not _WORD_RE.search(math):  # "12", "x^2+1", "\\frac{1}{2}"
        return "number"
    return "short text" if len(label.split()) <= 2 else "other text"
