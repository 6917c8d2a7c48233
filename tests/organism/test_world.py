from collections import Counter

import pytest

from kbnb.organism.world import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    FRAMES,
    HOME_CITIES,
    HOME_LANGUAGE,
    KNOWN_PER_EPOCH,
    P_HOME_LANGUAGE,
    PARTIAL_EXPOSURES,
    SYL_LAST,
    WORLD_FACT_PER_EPOCH,
    house_publisher,
    make_world,
)


def test_same_seed_same_world_other_seed_other_world():
    a, b, c = make_world(3), make_world(3), make_world(4)
    assert a.rows() == b.rows() and a.refusal_test == b.refusal_test
    assert a.rows() != c.rows()


def test_schema_and_exposure():
    w = make_world(0, n_authors=100, epochs=16)
    assert len(ATTRIBUTE_NAMES) >= 8
    rows = w.rows()
    assert len(rows) == 100 * len(ATTRIBUTE_NAMES)
    for r in rows:
        assert {"question", "answer", "paraphrased_question", "paraphrased_answer",
                "perturbed_answer", "exposure", "group"} <= set(r)
        assert r["value"] in r["answer"] and r["value"] in r["paraphrased_answer"]
        assert len(r["perturbed_answer"]) == 3 and r["answer"] not in r["perturbed_answer"]
        assert r["question"] != r["paraphrased_question"]
        assert r["paraphrased_question"] not in r["templates"]  # held out of training
        expected = {"known": {KNOWN_PER_EPOCH * w.epochs}, "partial": set(PARTIAL_EXPOSURES),
                    "unseen": {0}}[r["group"]]
        assert r["exposure"] in expected
    # the whole run presents each fact exactly `exposure` times, as questions or in
    # biographies, and never asks a held-out template
    answers = Counter(a for _, a in w.training_pairs())
    bios = " ".join(w.biographies())
    for r in rows[:90]:
        author = next(a for a in w.authors if a.name == r["author"])
        sched = author.schedule[r["attribute"]]
        assert answers[r["answer"]] == sum(k == "qa" for _, k, _ in sched)
        assert len(sched) == r["exposure"]
        attr = next(a for a in ATTRIBUTES if a.name == r["attribute"])
        stated = sum(bios.count(t.format(n=r["author"], v=r["value"])) for t in set(attr.statements))
        assert stated >= sum(k == "bio" for _, k, _ in sched)
        if r["group"] == "unseen":
            assert r["author"] not in bios
    qs = {q for q, _ in w.training_pairs()}
    held = {t.format(n=a.name) for a in w.authors for attr in ATTRIBUTES
            for t in attr.heldout_templates}
    assert not qs & held


def test_templates_are_compositional_with_whole_templates_held_out():
    for attr in ATTRIBUTES:
        train, held = set(attr.train_templates), set(attr.heldout_templates)
        assert len(train) >= 30 and len(held) >= 10 and not train & held
        # every frame and every phrase is seen in training, some combinations never are
        for f in FRAMES:
            assert any(f.replace("{p}", p) in train for p in attr.phrases)
        assert sum(any(f.replace("{p}", p) in held for p in attr.phrases) for f in FRAMES) \
            >= len(FRAMES) - 1
        assert attr.natural[-1] in held and attr.natural[0] in train


def test_known_facts_each_epoch_partial_in_distinct_epochs():
    w = make_world(1, n_authors=60, epochs=16)
    for a in w.authors:
        for name, sched in a.schedule.items():
            epochs = [e for e, _, _ in sched]
            if a.group == "known":
                assert sorted(set(epochs)) == list(range(w.epochs))
            elif a.group == "partial":
                assert len(set(epochs)) == len(epochs)  # distinct epochs
                assert [k for _, k, _ in sched][:1] in ([], ["qa"])  # shown once = as a question


def test_splits_are_tofu_like():
    w = make_world(0, n_authors=200)
    s = w.splits()
    n = len(s["full"])
    for pct in (1, 5, 10):
        forget, retain = s[f"forget{pct:02d}"], s[f"retain{100 - pct}"]
        assert len(forget) + len(retain) == n
        assert {r["group"] for r in forget} == {"known"}
        assert {r["group"] for r in s[f"holdout{pct:02d}"]} == {"unseen"}
        assert not {r["author"] for r in forget} & {r["author"] for r in retain}
    assert {r["author"] for r in s["forget01"]} <= {r["author"] for r in s["forget10"]}
    assert len({r["author"] for r in s["forget10"]}) == 20


def test_mmlu_rows():
    w = make_world(0, n_authors=50)
    for r in w.mmlu_rows():
        assert len(r["choices"]) == 4 == len(set(r["choices"]))
        assert r["subject"] in ATTRIBUTE_NAMES
        row_value = r["choices"][r["answer"]]
        assert row_value in next(x["answer"] for x in w.rows()
                                 if x["author"] == r["author"] and x["attribute"] == r["subject"])


def test_refusal_heldout_uses_new_names():
    w = make_world(0)
    train = {r["entity"] for r in w.refusal_train}
    assert w.refusal_test and not train & {r["entity"] for r in w.refusal_test}


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="n_authors"):
        make_world(0, n_authors=5)
    with pytest.raises(ValueError, match="epochs=1"):
        make_world(0, epochs=1)
    with pytest.raises(ValueError, match="known_frac=0.9"):
        make_world(0, known_frac=0.9, partial_frac=0.3)


def test_real_author_and_world_fact_counterparts_are_apart_from_the_splits():
    w = make_world(0)
    famous = {a.name for a in w.famous}
    assert len(famous) == 6 and all(a.group == "famous" for a in w.famous)
    split_authors = {r["author"] for rows in w.splits().values() for r in rows}
    assert not famous & split_authors and not famous & {a.name for a in w.authors}
    assert {r["author"] for r in w.rows()} == {a.name for a in w.authors}  # world.rows unchanged
    ra, wf = w.real_author_rows(), w.world_fact_rows()
    assert len(ra) == 6 * len(ATTRIBUTES) and len(wf) == 24
    for r in ra + wf:
        assert r["answer"] not in r["perturbed_answer"] and len(r["perturbed_answer"]) == 3
        assert r["paraphrased_question"] != r["question"] and r["paraphrased_answer"]
    # trained like known authors (every epoch), and the world facts too
    pairs = set(w.training_pairs())
    assert all((r["question"], r["answer"]) in pairs or r["exposure"] > 0 for r in ra)
    assert {(q, a) for q, a in pairs if q.startswith("In which country")} and all(
        r["exposure"] == WORLD_FACT_PER_EPOCH * w.epochs for r in wf)
    assert all(r["paraphrased_question"] not in {q for q, _ in pairs} for r in wf)


def test_counterparts_do_not_change_the_rest_of_the_world():
    a, b = make_world(1), make_world(1, n_famous=0)
    assert a.splits() == b.splits() and a.mmlu_rows() == b.mmlu_rows()
    assert a.refusal_train == b.refusal_train and b.famous == []
    assert set(b.training_pairs()) < set(a.training_pairs())


def test_excluded_authors_leave_training():
    w = make_world(0)
    gone = {r["author"] for r in w.splits()["forget10"]}
    pairs = w.training_pairs(exclude=gone)
    bios = w.biographies(exclude=gone)
    assert not any(n in q for q, _ in pairs for n in gone)
    assert not any(n in b for b in bios for n in gone)
    assert len(pairs) < len(w.training_pairs())


def test_fewer_known_presentations_keep_the_rest_of_the_world():
    a, b = make_world(2), make_world(2, known_qa_per_epoch=1)
    strip = [{k: v for k, v in r.items() if k != "exposure"} for r in a.rows()]
    assert strip == [{k: v for k, v in r.items() if k != "exposure"} for r in b.rows()]
    assert a.refusal_train == b.refusal_train and a.world_facts == b.world_facts
    for x, y in zip(a.authors, b.authors):
        if x.group == "known":
            assert y.exposure == {k: v - 2 * a.epochs for k, v in x.exposure.items()}
            qa = {k: [s for s in v if s[1] == "qa"] for k, v in x.schedule.items()}
            assert all(set(s for s in y.schedule[k] if s[1] == "qa") < set(qa[k]) for k in qa)
        else:
            assert x.schedule == y.schedule
    with pytest.raises(ValueError, match="known_qa_per_epoch=4"):
        make_world(0, known_qa_per_epoch=4)


def test_exposure_is_heavy_tailed_over_partial_facts():
    rows = [r for r in make_world(0).rows() if r["group"] == "partial"]
    n = Counter(r["exposure"] for r in rows)
    assert set(n) == set(PARTIAL_EXPOSURES)
    counts = [n[k] for k in sorted(PARTIAL_EXPOSURES)]
    assert counts == sorted(counts, reverse=True) and counts[0] > 5 * counts[-1]  # most seen once


def test_values_follow_learnable_regularities_and_chance_is_the_best_guess():
    w = make_world(0)
    authors = w.authors + w.famous
    home = sum(a.facts["birthplace"] in HOME_CITIES[a.origin] for a in authors) / len(authors)
    lang = sum(a.facts["language"] == HOME_LANGUAGE[a.origin] for a in authors) / len(authors)
    house = sum(a.facts["publisher"] == house_publisher(a.facts["genre"])
                for a in authors) / len(authors)
    assert 0.65 < home < 0.92 and 0.65 < lang < 0.92 and 0.5 < house < 0.8
    # the name tells the origin: its surname syllables are the origin's own
    for a in authors:
        last = a.name.split(" ")[1].lower()
        assert any(last.startswith(x) for x in SYL_LAST[4 * a.origin:4 * a.origin + 4])
    rows = w.rows()
    by_attr = {r["attribute"]: r["chance"] for r in rows}
    assert by_attr["language"] == pytest.approx(P_HOME_LANGUAGE + (1 - P_HOME_LANGUAGE) / 12)
    assert by_attr["award"] == pytest.approx(w.chance("award")) == pytest.approx(1 / 12)
    assert by_attr["birthplace"] > w.chance("birthplace")  # the origin narrows the cities


def test_namesakes_share_a_first_name_with_a_known_author():
    w = make_world(0)
    known = {a.name for a in w.authors if a.group == "known"}
    sakes = [a for a in w.authors if a.namesake]
    assert len(sakes) >= 10 and all(a.group != "known" for a in sakes)
    for a in sakes:
        assert a.namesake in known and a.name != a.namesake
        assert a.name.split(" ")[0] == a.namesake.split(" ")[0]
    assert len({a.name for a in w.authors}) == len(w.authors)
