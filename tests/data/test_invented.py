"""kbnb.data.invented: questions about things that do not exist, with refusals."""
import re

import pytest

from kbnb.data.invented import KINDS, invented_questions
from kbnb.eval.metrics import is_refusal


def test_invented_questions_are_deterministic_disjoint_and_refused():
    a = invented_questions(48, 24, seed=0)
    assert a == invented_questions(48, 24, seed=0)
    assert a != invented_questions(48, 24, seed=1)
    assert len(a["train"]) == 48 and len(a["heldout"]) == 24
    assert {r["kind"] for r in a["train"]} == set(range(len(KINDS)))  # every kind in turn
    words = [set(re.findall(r"[A-Z][a-z]{3,}", r["question"])) for r in a["train"]]
    held = [set(re.findall(r"[A-Z][a-z]{3,}", r["question"])) for r in a["heldout"]]
    common = {"What", "Which", "Dynamics", "Mount", "Empire", "Prize", "Literature", "Republic",
              "Dawn", "Who", "How"}
    train_names = set().union(*words) - common
    assert not (set().union(*held) - common) & train_names  # no name in both lists
    assert all(is_refusal(r["answer"]) for r in a["train"] + a["heldout"])
    with pytest.raises(ValueError, match="n_train=-1"):
        invented_questions(-1, 2)


def test_real_questions_leave_out_what_the_evaluation_asks():
    from kbnb.data.invented import REAL, real_questions
    every = real_questions()
    assert len(every) == sum(len(names) for _, names in REAL)
    kept = real_questions(["Who founded the Apple company?", "The Titanic sank in 1912."])
    gone = {r["question"] for r in every} - {r["question"] for r in kept}
    assert gone == {"Who founded the company Apple?"}  # whole words only: Titan stays
