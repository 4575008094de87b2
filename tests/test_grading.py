"""Answer extraction and grading on literal cases."""

import pytest

from rap.rap_core.grading import extract_answer, grade, is_correct


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


@pytest.mark.parametrize("response, expected", [
    ("<think>so \\boxed{3}</think><answer>4</answer>", "4"),
    ("<think>...</think> <answer>the area is \\boxed{12 \\text{ cm}^2}</answer>",
     "12 \\text{ cm}^2"),
    ("<think>\\boxed{3}</think><answer>4", "3"),  # unclosed tag: fall back to \boxed{}
    ("unbalanced \\boxed{\\frac{3}{4} and answer: 5", "5"),
])
def test_extract_answer_tags_and_odd_input(response, expected):
    assert extract_answer(response) == expected


@pytest.mark.parametrize("reference, response, correct", [
    # LaTeX against plain numbers
    ("\\frac{3}{4}", "answer: 3/4", True),
    ("\\frac{3}{4}", "answer: 0.75", True),
    ("\\frac{3}{4}", "answer: \\dfrac{3}{4}", True),
    ("\\frac{3}{4}", "answer: $\\frac{3}{4}$", True),
    ("\\frac{3}{4}", "so it is \\boxed{0.75}", True),
    ("0.75", "\\boxed{\\frac{3}{4}}", True),
    ("\\frac{3}{4}", "answer: 4/3", False),
    ("\\frac{3}{4}", "answer: 0.7", False),
    ("2\\sqrt{3}", "answer: 2\\sqrt{3} cm", True),
    # units: dropped from the end of a number only
    ("12 cm", "answer: 12", True),
    ("12 cm", "answer: 12 cm", True),
    ("12 cm", "answer: 12cm", True),
    ("12 cm", "answer: 12 \\text{cm}", True),
    ("12 cm", "\\boxed{12 \\text{ cm}}", True),
    ("12\\text{ cm}", "answer: 12", True),
    ("12\\text{ cm}", "\\boxed{12 \\text{ cm}}", True),
    ("12 \\mathrm{cm}", "answer: 12cm", True),
    ("12", "answer: 12\\,\\mathrm{cm}", True),
    ("12 cm", "answer: 13 cm", False),
    ("12\\text{ cm}", "answer: 13", False),
    ("48", "answer: 48 cm^2", True),
    ("48", "answer: 48 cm²", True),
    ("48 \\text{cm}^{2}", "answer: 48", True),
    ("48", "answer: 48 square units", True),
    ("30", "answer: 30^\\circ", True),
    ("30", "answer: 30^{\\circ}", True),
    ("30", "answer: 30°", True),
    ("30", "answer: 30 degrees", True),
    ("30^\\circ", "answer: 30", True),
    ("30", "answer: 60°", False),
    ("50\\%", "answer: 50", True),
    ("50\\%", "answer: 50%", True),
    ("50", "answer: 50 percent", True),
    ("50\\%", "answer: 40%", False),
    ("in", "answer: in", True),  # a unit word alone is an answer, not a unit
    ("cm", "answer: m", False),
    ("the cat", "answer: cat", False),  # no word is dropped from a non-numeric answer
    # yes/no
    ("\\text{yes}", "answer: yes", True),
    ("yes", "answer: Yes.", True),
    ("yes", "answer: \\text{Yes}", True),
    ("yes", "answer: no", False),
])
def test_grade_math_and_units(reference, response, correct):
    assert grade(reference, response)[1] is correct


@pytest.mark.parametrize("reference, response, correct", [
    ("B", "answer: B", True),
    ("B", "answer: (B)", True),
    ("B", "answer: B.", True),
    ("B", "answer: B)", True),
    ("B", "\\boxed{\\text{B}}", True),
    ("B", "answer: option B", True),
    ("B", "answer: (B) 12 cm", True),
    ("B", "answer: B: 12 cm", True),
    ("B", "answer: B. 12 cm", True),
    ("B", "<answer>B</answer>", True),
    ("B", "answer: **B**", True),
    ("B", "answer: A", False),
    ("B", "answer: (C) 12 cm", False),
    ("B", "answer: 12 cm", False),  # without the question, a text is not a letter
    ("12 cm", "answer: B", False),
    ("12 cm", "answer: (B) 12 cm", True),  # the option text stated with its letter
    ("12 cm", "answer: (B) 10 cm", False),
])
def test_grade_choices(reference, response, correct):
    assert grade(reference, response)[1] is correct


LINES = "Find AB.\nA. 10 cm\nB. 12 cm\nC. 14 cm\nD. 16 cm"
PARENS = "What is the length of AB? (A) 10 cm (B) 12 cm (C) 14 cm (D) 16 cm"
COLONS = "In triangle A. B, find x.\nChoices:\nA: 10 cm\nB: 12 cm\nC: 14 cm\nD: 16 cm"
INLINE = "Find x. Choices: A:10 B:12 C:14 D:16"


@pytest.mark.parametrize("question", [LINES, PARENS, COLONS, INLINE])
@pytest.mark.parametrize("reference, response, correct", [
    ("B", "answer: 12 cm", True),
    ("B", "answer: 12", True),
    ("B", "\\boxed{12\\text{ cm}}", True),
    ("B", "answer: 14 cm", False),
    ("B", "answer: 11", False),
    ("B", "answer: B", True),
    ("B", "answer: (C) 12 cm", False),  # the letter is the answer
    ("12 cm", "answer: B", True),
    ("12", "answer: (B)", True),
    ("12 cm", "answer: C", False),
    ("12 cm", "answer: E", False),
    ("12 cm", "answer: 12", True),
])
def test_grade_choices_with_question(question, reference, response, correct):
    assert grade(reference, response, question=question)[1] is correct


@pytest.mark.parametrize("question, reference, extracted, correct", [
    # several options state the answer: it does not pick one
    ("A. 12 cm\nB. 12 m", "A", "12", False),
    ("A. 12 cm\nB. 12 m", "A", "12 cm", True),
    # no options in the question: plain comparison
    ("How long is AB?", "B", "12 cm", False),
    ("How long is AB?", "12 cm", "12", True),
    ("Is the shape a circle? A: yes B: no", "A", "yes", True),
    ("Is the shape a circle? A: yes B: no", "yes", "B", False),
    # options that are letters themselves: the option letter still decides
    ("Which point is the centre? A. O B. P C. Q", "O", "A", True),
    ("Which point is the centre? A. O B. P C. Q", "O", "B", False),
    ("Which point is the centre? A. O B. P C. Q", "A", "O", True),
    ("Which point is the centre? A. O B. P C. Q", "A", "P", False),
    ("Which point is the centre? A. O B. P C. Q", "C", "Q", True),
])
def test_is_correct_with_question(question, reference, extracted, correct):
    assert is_correct(reference, extracted, question=question) is correct


@pytest.mark.parametrize("reference, extracted", [
    ("", "12"), ("12", ""), ("\\frac{3}{4", "\\frac{3}{4}"), ("}{", "{{"), ("B", "(("),
    ("12", "{" * 3000), ("12", "1+" * 2500 + "1"), ("B", "A. " * 2000),
])
def test_odd_input_is_graded_not_raised(reference, extracted):
    assert is_correct(reference, extracted, question=extracted) in (True, False)


def test_long_response_is_graded_quickly():
    import time
    response = "reasoning " * 499 + "\\boxed{12}"
    assert len(response) == 5000
    started = time.perf_counter()
    assert grade("12 cm", response) == ("12", True)
    assert grade("12", "answer" + " " * 5000 + "x")[1] is False
    assert grade("12", "x" * 5000) == (None, False)
    assert grade("B", "answer: " + "B" * 5000, question="A. " * 2500)[1] is False
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("extracted", [
    "2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2",
    "9^{9^{9^{9}}}", "10^{10^{10}}", "2^{100000000}", "1000000!", "(100!)!", "10^{100}!",
])
def test_explosive_math_is_not_evaluated(extracted):
    """sympy would compute these exactly: minutes, and forever off the main thread."""
    import time
    started = time.perf_counter()
    assert is_correct("12", extracted) is False
    assert time.perf_counter() - started < 1


def test_labels_do_not_call_math_verify(monkeypatch):
    import rap.rap_core.grading as grading

    def fail(*_):
        raise AssertionError("math-verify called for plain labels")
    monkeypatch.setattr(grading, "_math_equal", fail)
    assert grade("B", "answer: (B) 12 cm")[1] is True
    assert grade("B", "answer: C", question=PARENS)[1] is False
    assert grade("yes", "answer: Yes.")[1] is True
    assert grade("12 cm", "answer: 12cm")[1] is True
    assert grade("blue", "answer: red")[1] is False


def test_grader_version():
    from rap.rap_core.grading import GRADER_VERSION
    assert GRADER_VERSION == "grader-v3"


# A power sympy evaluates exactly, in C, where no signal can stop it: minutes of CPU.
EXPLOSIVE = "answer: (2^{999999})^{999999}"
TIMEOUT_SCRIPT = r"""
import json, os, sys, threading, time
from rap.rap_core.grading import grade

def timed(results, key):
    started = time.perf_counter()
    results[key] = [grade("1", sys.argv[1]), time.perf_counter() - started]
    print(key, results[key], file=sys.stderr, flush=True)  # which one hung, if one does

def children():
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid():
            pids.append((int(entry), fields[0]))
    return pids

results = {}
worker = threading.Thread(target=timed, args=(results, "thread"))
worker.start()
timed(results, "main")
worker.join()
results["children"] = children()  # both helpers were killed: none left, not even a zombie
results["after"] = grade("\\frac{3}{4}", "answer: 0.75")
print(json.dumps(results))
"""


def test_explosive_math_times_out_in_any_thread():
    """Off the main thread nothing stopped sympy, and on it SIGALRM can't interrupt C code.

    Run in a child process, so that a regression fails here instead of hanging the suite."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from rap.rap_core.grading import MATH_TIMEOUT
    try:
        done = subprocess.run([sys.executable, "-c", TIMEOUT_SCRIPT, EXPLOSIVE],
                              cwd=Path(__file__).parents[1], capture_output=True, text=True,
                              timeout=30)
    except subprocess.TimeoutExpired as hung:
        pytest.fail(f"grading hung: {hung.stderr}")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    for key in ("thread", "main"):
        (extracted, correct), seconds = results[key]
        assert (extracted, correct) == ("(2^{999999})^{999999}", False)
        assert MATH_TIMEOUT <= seconds < 20
    assert results["children"] == []
    assert results["after"] == ["0.75", True]  # a fresh helper after the killed ones


@pytest.fixture
def fresh_helpers():
    """No helper left from other tests (a new one runs math_judge.COMMAND), none left after."""
    from rap.rap_core.grading import math_judge
    math_judge.shutdown()
    yield math_judge
    math_judge.shutdown()


def _reaped(pid: int) -> bool:
    """pid is no child of ours any more, not even a zombie waiting to be reaped."""
    import os
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not os.path.exists(f"/proc/{pid}")
    return False


def _fake_helper(on_request: str) -> list[str]:
    import sys
    return [sys.executable, "-c", "import sys, time\n"
            "print('{\"ready\": true}', flush=True)\n"
            f"for line in sys.stdin:\n    {on_request}\n"]


def test_one_deadline_for_all_comparisons_of_a_grade(fresh_helpers, monkeypatch):
    """Every option is compared with the answer; together they get GRADE_TIMEOUT."""
    import time
    import rap.rap_core.grading as grading
    monkeypatch.setattr(fresh_helpers, "COMMAND", _fake_helper("time.sleep(60)"))
    monkeypatch.setattr(grading, "MATH_TIMEOUT", 0.4)
    monkeypatch.setattr(grading, "GRADE_TIMEOUT", 1.0)
    question = " ".join(f"{letter}. {n}+{n}" for n, letter in enumerate("ABCDEFGH"))
    started = time.perf_counter()
    assert grade("B", "answer: 7", question=question)[1] is False
    assert 1.0 <= time.perf_counter() - started < 2  # each of 8 alone: 3.2 s
    assert not fresh_helpers._live


def test_broken_helper_counts_as_not_equal_and_is_replaced(fresh_helpers, monkeypatch):
    for on_request in ("print('garbage', flush=True)", "print('{}', flush=True)",
                       "sys.exit(1)"):
        monkeypatch.setattr(fresh_helpers, "COMMAND", _fake_helper(on_request))
        for _ in range(2):  # the second comparison runs in a new helper
            assert fresh_helpers.equal("1", "1", timeout=5) is False
            assert not fresh_helpers._live and not fresh_helpers._idle
    monkeypatch.setattr(fresh_helpers, "COMMAND",
                        _fake_helper("print('{\"equal\": true}', flush=True)"))
    assert fresh_helpers.equal("1", "2", timeout=5) is True
    [helper] = fresh_helpers._idle
    helper.proc.kill()  # dies while idle: the next comparison just uses a new helper
    helper.proc.wait()
    assert fresh_helpers.equal("1", "2", timeout=5) is True
    assert helper not in fresh_helpers._live
    fresh_helpers.shutdown()
    assert _reaped(helper.proc.pid)


def test_a_helper_that_cannot_start_raises(fresh_helpers, monkeypatch):
    """Rather than grading every math answer wrong."""
    import sys
    monkeypatch.setattr(fresh_helpers, "COMMAND", [sys.executable, "-c", "print('hello')"])
    with pytest.raises(RuntimeError, match="did not start"):
        fresh_helpers.equal("1", "1", timeout=5)
    assert not fresh_helpers._live


def test_timed_out_helper_is_killed_and_reaped(fresh_helpers, monkeypatch):
    import time
    monkeypatch.setattr(fresh_helpers, "COMMAND", _fake_helper(
        "print('{\"equal\": true}', flush=True); sys.stdin.readline(); time.sleep(60)"))
    assert fresh_helpers.equal("1", "1", timeout=5) is True
    [helper] = fresh_helpers._idle
    started = time.perf_counter()
    assert fresh_helpers.equal("1", "1", timeout=0.3) is False
    assert time.perf_counter() - started < 1
    assert _reaped(helper.proc.pid) and not fresh_helpers._live


def test_concurrent_grading_matches_sequential():
    from concurrent.futures import ThreadPoolExecutor
    cases = [("\\frac{3}{4}", "answer: 0.75", None), ("\\frac{3}{4}", "answer: 4/3", None),
             ("2\\sqrt{3}", "answer: \\sqrt{12}", None), ("0.5", "\\boxed{\\frac{1}{2}}", None),
             ("x^2+1", "answer: 1+x^2", None), ("\\frac{40}{3}", "answer: 13.33", None),
             ("B", "answer: 12", LINES), ("B", "answer: 14 cm", PARENS),
             ("12 cm", "answer: 12", None), ("30", "answer: 60°", None)] * 6
    expected = [grade(*case[:2], question=case[2]) for case in cases]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda case: grade(*case[:2], question=case[2]), cases))
    assert got == expected
    assert [correct for _, correct in expected[:10]] == [True, False] + [True] * 3 + [False] \
        + [True, False, True, False]
