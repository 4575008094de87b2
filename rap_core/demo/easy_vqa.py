"""easy-VQA as training and validation material: question types, image facts, responses,
and questions rewritten so that the text gives the answer away.

Every response is a short reasoning line and a final answer
(`the shape is a blue circle. answer: blue`), so the attention pass has a reasoning span
to read and the grader's `answer:` rule applies.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from rap.rap_core.io.spec import COLORS, QUESTION_TYPES, SHAPES, question_type  # noqa: F401

_NEGATION = re.compile(r"\b(not|no)\b")

# The text states the fact the question asks about. The demo model is trained with
# TRAIN_HINTS (it learns to read them, as real VLMs read captions); validation plants them
# into unseen test questions, or plants UNSEEN_HINTS, phrasings it was never trained on.
TRAIN_HINTS = ("{fact}. {q}", "{q} note: {fact}.", "hint: {fact}. {q}")
UNSEEN_HINTS = ("as the caption says, {fact}: {q}", "{q} (we know {fact})")


@dataclass(frozen=True)
class Question:
    question: str
    answer: str
    image_id: int
    image: str  # path

    @property
    def qtype(self) -> str:
        return question_type(self.answer)


def negated(q: Question) -> bool:
    """Whether a question's wording carries a negation ("not", "no")."""
    return bool(_NEGATION.search(q.question))


def wording_guess(q: Question) -> str:
    """The answer easy-VQA's wording predicts for a yes/no question without the image: "yes"
    with a negation, else "no" (right 82% of the time on the train split)."""
    return "yes" if negated(q) else "no"


def prior_balanced(questions: list[Question], seed: int) -> list[Question]:
    """The questions with their yes/no ones resampled so that, among those with a negation
    and among those without, yes and no are equally frequent (the wording alone then scores
    50%); colour and shape questions are kept. Order: as given."""
    rng = np.random.default_rng(seed)
    cells: dict[tuple[bool, str], list[int]] = defaultdict(list)
    for i, q in enumerate(questions):
        if q.qtype == "yes/no":
            cells[(negated(q), q.answer)].append(i)
    keep = {i for i, q in enumerate(questions) if q.qtype != "yes/no"}
    for wording in (True, False):
        yes, no = cells[(wording, "yes")], cells[(wording, "no")]
        n = min(len(yes), len(no))
        for cell in (yes, no):
            keep.update(int(i) for i in rng.choice(cell, size=n, replace=False))
    return [q for i, q in enumerate(questions) if i in keep]


def _asked(question: str) -> str | None:
    """The colour or shape a yes/no question names."""
    words = question.rstrip("?").split()
    return next((w for w in words if w in COLORS or w in SHAPES), None)


def _present(q: Question) -> bool:
    """Whether the colour/shape a yes/no question names is in the image."""
    return (q.answer == "yes") != bool(_NEGATION.search(q.question))


def _phrase(value: str) -> str:
    return f"{value} shape" if value in COLORS else value


def load_split(split: str) -> list[Question]:
    """All questions of easy-VQA's train or test split, in the package's order."""
    import easy_vqa
    get_q = {"train": easy_vqa.get_train_questions, "test": easy_vqa.get_test_questions}[split]
    get_p = {"train": easy_vqa.get_train_image_paths, "test": easy_vqa.get_test_image_paths}[split]
    questions, answers, image_ids = get_q()
    paths = get_p()
    return [Question(q, a, i, paths[i]) for q, a, i in zip(questions, answers, image_ids)]


def image_facts(questions: list[Question]) -> dict[int, dict[str, str]]:
    """Colour and shape of each image, as far as its questions reveal them."""
    facts: dict[int, dict[str, str]] = defaultdict(dict)
    for q in questions:
        if q.qtype != "yes/no":
            facts[q.image_id][q.qtype] = q.answer
            continue
        asked = _asked(q.question)
        if asked and _present(q):
            facts[q.image_id]["color" if asked in COLORS else "shape"] = asked
    return facts


def response(q: Question, facts: dict[str, str]) -> str:
    """The reasoning line (what is seen; for yes/no also the fact asked about) and the
    answer: `the shape is a blue circle, so there is no red shape. answer: no`."""
    color, shape = facts.get("color"), facts.get("shape")
    if color and shape:
        seen = f"the shape is a {color} {shape}"
    elif color or shape:
        seen = f"the shape is {color}" if color else f"the shape is a {shape}"
    else:
        seen = ""
    if q.qtype == "yes/no":
        seen = f"{seen}, so {stated_fact(q)}" if seen else stated_fact(q)
    return f"{seen}. answer: {q.answer}"


def stated_fact(q: Question) -> str:
    """A sentence that gives the answer away."""
    if q.qtype == "color":
        return f"the shape is {q.answer}"
    if q.qtype == "shape":
        return f"the shape is a {q.answer}"
    asked = _asked(q.question) or "shape"
    return f"there is {'a' if _present(q) else 'no'} {_phrase(asked)}"


def with_hint(q: Question, template: str) -> str:
    return template.format(fact=stated_fact(q), q=q.question)
