"""kbnb.eval.tuned_targets: the TOFU-tuned model's targets, judged."""
import numpy as np

from kbnb.eval import tuned_targets as tuned


def test_targets_pass_and_fail_on_their_thresholds():
    base = {"world_facts_accuracy": 0.5}
    good = {"forget_rouge": 0.7, "invented_refusal": 0.9, "world_facts_accuracy": 0.45}
    t = tuned.check_tuned_targets(good, base, fq_target=1e-5, fq_retain=1.0)
    assert all(v["pass"] for v in t.values())
    assert t["world_facts_kept"]["value"] == 0.9
    bad = {"forget_rouge": 0.59, "invented_refusal": 0.79, "world_facts_accuracy": 0.39}
    t = tuned.check_tuned_targets(bad, base, fq_target=0.02, fq_retain=0.9)
    assert not any(v["pass"] for v in t.values())
    missing = tuned.check_tuned_targets({}, {}, np.nan, 1.0)
    assert not missing["forget_rouge"]["pass"] and not missing["world_facts_kept"]["pass"]


def test_forget_quality_of_a_model_with_itself_is_one():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 1, 50), rng.uniform(0.5, 2, 50)
    fq_t, fq_r = tuned.forget_quality_pair(b, a)
    assert fq_r == 1.0 and fq_t < 0.01
    assert tuned.open_accuracy(["It is Paris.", "Rome"], [{"answer": "Paris"}, {"answer": "Madrid"}]) == 0.5
    assert tuned.refusal_rate(["I'm sorry, I don't know.", "Paris."]) == 0.5


def test_short_answer_sets_are_answered_at_their_own_length(monkeypatch):
    lengths = {}

    def fake_answers(model, tok, rows, n_new, batch_size, progress, desc):
        lengths[desc] = n_new
        return ["I don't know." if desc == "invented" else "It is Paris."] * len(rows)

    monkeypatch.setattr(tuned, "answers", fake_answers)
    sets = {"forget": [{"question": "q", "answer": "It is Paris."}],
            "invented": [{"question": "q"}], "world_facts": [{"question": "q", "answer": "Rome"}]}
    rep = tuned.knowledge_report(None, None, sets, max_new_tokens=64, short_new_tokens=24)
    assert lengths == {"forget": 64, "invented": 24, "world_facts": 64}
    assert rep["new_tokens_invented"] == 24 and rep["forget_rouge"] == 1.0
    assert rep["invented_refusal"] == 1.0 and rep["world_facts_accuracy"] == 0.0
    tuned.knowledge_report(None, None, sets, max_new_tokens=64)
    assert lengths["invented"] == 64
