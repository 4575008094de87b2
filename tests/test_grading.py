"""Answer extraction and grading on literal cases."""

import pytest

from rap_core.grading import extract_answer, grade, is_correct


@pytest.mark.parametrize("response, expected", [
    ("the shape is blue. answer: blue", "blue"),
    ("First answer: red\nthen Answer: green", "green"),
    ("so the result is \\boxed{\\frac{3}{4}} done", "\\frac{3}{4}"),
    ("nested \\boxed{x^{2}} and \\boxed{\\sqrt{2}}", "\\sqrt{2}"),
    ("some reasoning\ncircle", "circle"),
    ("a line far too long to be a final answer without any marker at all here", None),
    ("", None),
    # a marker with nothing after it on its line (sampled responses do this): the short
    # last line is all there is, and it grades wrong
    ("the shape is a red circle. answer: \n", "the shape is a red circle. answer:"),
    ("answer:", "answer:"),
    ("answer: \nblue", "blue"),
    ("answer:  red \nanswer:\t", "red"),
    ("\n\n  \n", None),
    ("\\boxed{}", ""),
])
def test_extract_answer(response, expected):
    assert extract_answer(response) == expected


@pytest.mark.parametrize("reference, response, correct", [
    ("blue", "the shape is a blue circle. answer: blue", True),
    ("blue", "answer: Blue.", True),
    ("blue", "answer: red", False),
    ("yes", "answer: no", False),
    ("3/4", "\\boxed{\\frac{3}{4}}", True),
    ("0.75", "answer: 3/4", True),
    ("12", "answer: 13", False),
    ("\\text{yes}", "answer: yes", True),
    ("B", "answer: (B)", True),
    ("rectangle", "no final answer marker but a very long last line of text here", False),
])
def test_grade(reference, response, correct):
    assert grade(reference, response)[1] is correct


def test_missing_answer_is_wrong():
    assert is_correct("blue", None) is False
    assert is_correct("blue", "   ") is False


def test_grading_works_off_the_main_thread():
    """Prefect may run tasks in worker threads, where SIGALRM timeouts are unavailable."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(is_correct, "0.5", "1/2").result() is True
