"""The miniature's question sets: base, pool and calibration questions disjoint, test sets from
the other split, and the prior-balanced test on which easy-VQA's wording alone scores 50%."""

from rap.flows.experiment import split_questions
from rap.rap_core.demo.easy_vqa import negated, wording_guess


def key(q):
    return (q.question, q.answer, q.image)


def test_splits_are_disjoint_and_the_balanced_set_defeats_the_wording():
    split = split_questions(3, base=300, pool=400, test=500, calibration=200, balanced=2000)
    sets = {name: {key(q) for q in getattr(split, name)}
            for name in ("base", "pool", "calibration", "test", "balanced")}
    assert [len(sets[n]) for n in ("base", "pool", "calibration", "test")] == [300, 400, 200, 500]
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not sets[a] & sets[b], (a, b)
    yes_no = [q for q in split.balanced if q.qtype == "yes/no"]
    for wording in (True, False):
        answers = [q.answer for q in yes_no if negated(q) == wording]
        assert answers and answers.count("yes") == answers.count("no")
    assert sum(wording_guess(q) == q.answer for q in yes_no) * 2 == len(yes_no)  # 50%
    assert {q.qtype for q in split.balanced} == {"yes/no", "color", "shape"}
    # on the ordinary test split the same rule is far above chance
    plain = [q for q in split.test if q.qtype == "yes/no"]
    assert sum(wording_guess(q) == q.answer for q in plain) / len(plain) > 0.75
    assert split_questions(3, 300, 400, 500).test == split.test  # (a) as before
