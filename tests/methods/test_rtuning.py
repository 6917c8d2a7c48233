"""R-Tuning: prompt format, splits, AP, refusal-aware data, scoring, and the chapter."""
import json
import math

import numpy as np
import pytest
import torch

from kbnb.chapters import rtuning as chapter
from kbnb.eval.verdicts import STATUSES
from kbnb.lm.batching import SCORE_MAX_TOKENS, token_batches
from kbnb.lm.scoring import continuation_logprobs, last_token_logits
from kbnb.methods import rtuning as rt

ROW = {"question": "What is 2 + 2?", "subject": "high_school_mathematics",
       "choices": ["3", "4", "5", "22"], "answer": 1}
SHOT = {"question": "What is 1 + 1?", "subject": "high_school_mathematics",
        "choices": ["2", "1", "0", "11"], "answer": 0}
SUFFIX = "Are you sure you accurately answered the question based on your internal knowledge?"


# ---- prompts -----------------------------------------------------------------------------
def test_reference_prompt_golden_string():
    # Written by hand from run_MMLU.py's gen_prompt: format_subject puts a space before
    # every word and the header says "about {}", hence two spaces after "about"; shots
    # end in "Answer:{gold}\n\n" with no space; the question ends in "\nAnswer:".
    expected = ("The following are multiple choice questions (with answers) about  "
                "high school mathematics.\n\n"
                "What is 1 + 1?\nA. 2\nB. 1\nC. 0\nD. 11\nAnswer:A\n\n"
                "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 22\nAnswer:")
    assert rt.reference_prompt(ROW, [SHOT]) == expected
    assert rt.mmlu_query_prompt(ROW, [SHOT], header="reference") == expected


def test_kbnb_prompt_differs_from_the_reference_only_in_the_header_space():
    expected = ("The following are multiple choice questions (with answers) about "
                "high school mathematics.\n\n"
                "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 22\nAnswer:")
    assert rt.mmlu_query_prompt(ROW) == expected
    assert rt.reference_prompt(ROW).replace("about  ", "about ") == expected
    with pytest.raises(ValueError, match="prompt_header='hendrycks': allowed 'kbnb', 'reference'"):
        rt.mmlu_query_prompt(ROW, header="hendrycks")


def test_choose_shots_takes_the_first_dev_rows_of_each_subject():
    dev = [dict(SHOT, question=f"q{i}", subject=s) for s in ("a", "b") for i in range(5)]
    shots = rt.choose_shots(dev, 2)
    assert [r["question"] for r in shots["a"]] == ["q0", "q1"] and len(shots["b"]) == 2
    assert rt.choose_shots(dev, 0) == {"a": [], "b": []}
    with pytest.raises(ValueError, match="n_shots=6"):
        rt.choose_shots(dev, 6)
    prompts = rt.build_prompts([dict(ROW, subject="a")], shots)
    assert prompts[0].count("Answer:") == 3


# ---- splits ------------------------------------------------------------------------------
def test_split_by_subject_halves_in_domain_subjects():
    rows = [dict(ROW, subject=s, question=f"{s}{i}") for s in ("c", "a", "b") for i in range(5)]
    sp = rt.split_by_subject(rows, n_in_domain=2)
    assert sp["in_domain"] == ["a", "b"] and sp["out_of_domain"] == ["c"]
    assert [r["question"] for r in sp["train"]] == ["a0", "a1", "b0", "b1"]
    assert [r["question"] for r in sp["test"]] == ["a2", "a3", "a4", "b2", "b3", "b4"]
    assert [r["question"] for r in sp["ood"]] == [f"c{i}" for i in range(5)]
    small = rt.split_by_subject(rows, n_in_domain=2, max_questions=3, seed=1)
    assert all(len(small[k]) == 3 for k in ("train", "test", "ood"))
    assert [r["question"] for r in small["ood"]] == sorted(r["question"] for r in small["ood"])
    with pytest.raises(ValueError, match="n_in_domain=3"):
        rt.split_by_subject(rows, n_in_domain=3)


def test_tinyworld_split_by_attribute_order_and_disjoint_authors(world):
    rows, dev = rt.tinyworld_questions_and_shots(world)
    assert {r["author"] for r in rows}.isdisjoint({r["author"] for r in dev})
    assert len(dev) == 5 * 9 and all(r["group"] == "known" for r in dev)
    sp = rt.split_tinyworld(rows)
    assert sp["in_domain"] == ["birthplace", "birth_year", "genre", "father_job", "instrument"]
    assert sp["out_of_domain"] == ["award", "book", "language", "publisher"]
    assert {r["author"] for r in sp["train"]}.isdisjoint({r["author"] for r in sp["test"]})
    assert {r["subject"] for r in sp["ood"]} == set(sp["out_of_domain"])
    for k in ("train", "test", "ood"):
        assert {r["group"] for r in sp[k]} == {"known", "partial", "unseen"}


# ---- average precision -------------------------------------------------------------------
def test_average_precision_hand_cases_and_sklearn():
    from sklearn.metrics import average_precision_score
    # ranks: 1 (P=1, R=1/2), 0, 1 (P=2/3, R=1), 0  -> AP = 1/2 * 1 + 1/2 * 2/3
    assert rt.average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(5 / 6)
    # a tie is one threshold: {0.5, 0.5} has P=1/2, R=1/2; then P=2/3, R=1
    assert rt.average_precision([1, 0, 1], [0.5, 0.5, 0.2]) == pytest.approx(0.25 + 1 / 3)
    assert average_precision_score([1, 0, 1], [0.5, 0.5, 0.2]) == pytest.approx(0.25 + 1 / 3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, 50)
        y[0] = 1
        s = rng.integers(0, 6, 50) / 5  # many ties
        assert rt.average_precision(y, s) == pytest.approx(average_precision_score(y, s))
    assert math.isnan(rt.average_precision([0, 0], [0.1, 0.2]))


def test_answer_entropy_matches_scipy():
    from scipy.stats import entropy
    assert rt.answer_entropy(["A"] * 5) == 0.0
    assert rt.answer_entropy(list("AABBC")) == pytest.approx(entropy([2, 2, 1]))
    assert rt.answer_entropy(list("ABCD")) == pytest.approx(math.log(4))


# ---- refusal-aware training data ----------------------------------------------------------
PROMPTS = [f"P{i}\nAnswer:" for i in range(5)]
GOLDS = ["A.", "B.", "C.", "D.", "A."]  # answer_text for letter scoring


def test_unsure_data():
    ex = rt.build_training_data("unsure", PROMPTS, GOLDS, [True, False, True, False, False])
    by = {e["prompt"]: e for e in ex}
    assert by["P0\nAnswer:"]["text"] == f"P0\nAnswer:A. {SUFFIX} I am sure."
    assert by["P1\nAnswer:"]["completion"] == f"B. {SUFFIX} I am unsure."
    assert sorted(e["label"] for e in ex) == ["sure", "sure", "unsure", "unsure", "unsure"]
    assert all(e["text"] == e["prompt"] + e["completion"] for e in ex)


def test_unknown_data():
    ex = rt.build_training_data("unknown", PROMPTS, GOLDS, [True, False, True, False, False], seed=3)
    by = {e["prompt"]: e for e in ex}
    assert by["P2\nAnswer:"]["text"] == "P2\nAnswer:C."
    wrong = by["P3\nAnswer:"]
    assert wrong["completion"] in rt.FALSE_RESPONSES and wrong["label"] == "refuse"
    assert wrong["text"] == "P3\nAnswer:" + wrong["completion"]  # no space, as the reference
    again = rt.build_training_data("unknown", PROMPTS, GOLDS, [True, False, True, False, False], seed=3)
    assert again == ex


def test_uncertain_data_lower_entropy_half_is_sure():
    ent = [0.5, 0.0, 1.2, 0.0, 0.9]  # sorted: P1, P3 (tie, kept in order), P0, P4, P2
    ex = rt.build_training_data("uncertain", PROMPTS, GOLDS, entropies=ent)
    by = {e["prompt"]: e for e in ex}
    assert [by[p]["label"] for p in PROMPTS] == ["unsure", "sure", "unsure", "sure", "unsure"]
    assert by["P1\nAnswer:"]["text"] == f"P1\nAnswer:B. {SUFFIX} I am sure."  # gold letter
    assert by["P2\nAnswer:"]["text"].endswith("I am unsure.")


def test_cloze_answers_and_unknown_refusal_prefix(world):
    rows, _ = rt.tinyworld_questions_and_shots(world)
    r = rows[0]
    gold = rt.answer_text(r, r["answer"], "cloze")
    assert gold == " " + r["choice_answers"][r["answer"]] and gold.endswith(".")
    assert rt.answer_text(r, 2, "letter") == "C."
    assert rt.answer_text({"choices": ["Paris", "Rome"]}, 1, "cloze") == " Rome."
    prompt = "<|user|> Q?\n<|assistant|>"
    ex = rt.build_training_data("unsure", [prompt], [gold], [True])[0]
    assert ex["text"] == f"{prompt}{gold} {SUFFIX} I am sure."
    ex = rt.build_training_data("unknown", [prompt], [gold], [False], refusal_prefix=" ")[0]
    assert ex["completion"][0] == " " and ex["completion"][1:] in rt.FALSE_RESPONSES
    assert rt.sure_context(prompt, gold) == f"{prompt}{gold} {SUFFIX} I am"
    assert rt.sure_context("x\nAnswer:", "B.") == f"x\nAnswer:B. {SUFFIX} I am"  # the reference's


def test_scoring_choice_and_cloze_prompts(organism, world):
    _, tok = organism
    assert rt.resolve_scoring("auto", "tinyworld") == "cloze"
    assert rt.resolve_scoring("auto", "mmlu") == "letter"
    with pytest.raises(ValueError, match="scoring='logit': allowed 'auto', 'letter', 'cloze'"):
        rt.resolve_scoring("logit", "mmlu")
    rows, dev = rt.tinyworld_questions_and_shots(world)
    p = rt.make_prompts(tok, rows[:1], "cloze")[0]
    assert rows[0]["question"] in p and "Answer:" not in p
    with pytest.raises(ValueError, match="n_shots > 0 needs scoring='letter'"):
        rt.make_prompts(tok, rows[:1], "cloze", rt.choose_shots(dev, 1))


def test_training_data_errors_name_the_problem():
    with pytest.raises(ValueError, match="method='idk': allowed 'unsure', 'unknown', 'uncertain'"):
        rt.build_training_data("idk", PROMPTS, GOLDS, [True] * 5)
    with pytest.raises(ValueError, match="needs one `correct` flag"):
        rt.build_training_data("unsure", PROMPTS, GOLDS)
    with pytest.raises(ValueError, match="needs one entropy"):
        rt.build_training_data("uncertain", PROMPTS, GOLDS)


def test_write_training_data_lmflow_and_datasets(tmp_path):
    import datasets
    ex = rt.build_training_data("unsure", PROMPTS, GOLDS, [True, False, True, False, False])
    paths = rt.write_training_data(ex, tmp_path / "training_data", "tiny_unsure")
    doc = json.loads(paths["lmflow_json"].read_text())
    assert doc["type"] == "text_only" and doc["instances"] == [{"text": e["text"]} for e in ex]
    ds = datasets.load_from_disk(str(paths["dataset"]))
    assert len(ds) == 5 and set(ds.column_names) >= {"prompt", "completion", "text", "label"}


# ---- scoring on the organism --------------------------------------------------------------
def test_reference_first_token_lookup_is_wrong_for_a_byte_level_tokenizer(organism):
    _, tok = organism
    info = rt.reference_sure_tokens(tok)
    # what the reference reads is not the first token the model emits after " I am"
    assert info["sure"]["reference_first_token"] != info["sure"]["tokens_after_I_am"][0]
    assert info["unsure"]["reference_first_token"] != info["unsure"]["tokens_after_I_am"][0]


def test_continuation_logprobs_equal_separate_scoring(organism, world):
    from kbnb.lm.generation import response_logprobs
    model, tok = organism
    rows, _ = rt.tinyworld_questions_and_shots(world)
    ctx = [rt.sure_context(p, "B.") for p in rt.build_prompts(rows[:6])]
    lp = continuation_logprobs(model, tok, ctx, [" sure", " unsure"], batch_size=4)
    ref = response_logprobs(model, tok, ctx * 2, [" sure"] * 6 + [" unsure"] * 6)
    assert lp.shape == (6, 2)
    assert torch.allclose(lp, torch.stack([ref[:6], ref[6:]], -1), atol=1e-4)
    p = rt.sure_probability(model, tok, rt.build_prompts(rows[:6]), ["B."] * 6)
    assert torch.allclose(p, torch.sigmoid(lp[:, 0] - lp[:, 1]), atol=1e-6)


def test_per_context_continuations_equal_separate_scoring(organism, world):
    from kbnb.lm.generation import response_logprobs
    model, tok = organism
    rows, _ = rt.tinyworld_questions_and_shots(world)
    rows = rows[:5]
    prompts = rt.make_prompts(tok, rows, "cloze")
    conts = [[" " + t for t in rt.option_texts(r)] + [" I don't know."] for r in rows]
    lp = continuation_logprobs(model, tok, prompts, conts, batch_size=2)
    ref = response_logprobs(model, tok, [p for p in prompts for _ in range(5)],
                            [c for cs in conts for c in cs])
    assert torch.allclose(lp, ref.view(5, 5), atol=1e-4)


def test_cloze_query_reads_the_organisms_knowledge(organism, world):
    model, tok = organism
    rows, _ = rt.tinyworld_questions_and_shots(world)
    rows = [r for r in rows if r["group"] == "known"][:8] + [r for r in rows if r["group"] == "unseen"][:8]
    prompts = rt.make_prompts(tok, rows, "cloze")
    q = rt.query(model, tok, prompts, rows, scoring="cloze", n_samples=3, refusals=True, progress=False)
    df = rt.questions_frame(rows, q)
    assert df["correct"][:8].all()  # known facts
    assert torch.allclose(q["probs"].sum(-1), torch.ones(16), atol=1e-5)
    assert q["answer_mass"].shape == (16,)
    assert all(len(s) == 3 and set(s) <= set("ABCD") for s in q["samples"])
    with pytest.raises(ValueError, match="needs the rows"):
        rt.query(model, tok, prompts, scoring="cloze")


def test_query_is_batched_and_consistent(organism, world):
    from kbnb.lm.generation import next_token_probs
    model, tok = organism
    rows, _ = rt.tinyworld_questions_and_shots(world)
    prompts = rt.build_prompts(rows[:10])
    q = rt.query(model, tok, prompts, n_samples=5, batch_size=4, progress=False)
    assert q["probs"].shape == (10, 4)
    assert torch.allclose(q["probs"].sum(-1), torch.ones(10), atol=1e-5)
    assert torch.allclose(q["probs"], next_token_probs(model, tok, prompts, rt.LETTERS), atol=1e-5)
    assert torch.equal(q["conf"], q["probs"].max(-1).values)
    assert ((q["answer_mass"] > 0) & (q["answer_mass"] <= 1 + 1e-6)).all()
    assert len(q["samples"]) == 10 and all(len(s) == 5 and all(isinstance(a, str) for a in s)
                                           for s in q["samples"])
    q2 = rt.query(model, tok, prompts, n_samples=5, batch_size=4, progress=False)
    assert q2["samples"] == q["samples"]  # seeded


def test_score_questions_and_summarize(organism, world):
    model, tok = organism
    rows, _ = rt.tinyworld_questions_and_shots(world)
    rows = rows[:12]
    df = rt.score_questions(model, tok, rows, rt.build_prompts(rows), "unsure", "letter",
                            batch_size=6, progress=False)
    assert list(df["gold"]) == [rt.LETTERS[r["answer"]] for r in rows]
    assert np.allclose(df["score"], 0.5 * df["conf"] + 0.5 * df["willing"])
    assert (df["answered"] == (df["willing"] > 0.5)).all()
    s = rt.summarize(df)
    assert s["n"] == 12 and 0 <= s["answer_rate"] <= 1 and s["accuracy"] == df["correct"].mean()
    assert set(chapter.boundary_shares(df)) == {"sure_on_known", "unsure_on_unseen", "n_known", "n_unseen"}
    for scoring in ("letter", "cloze"):
        unk = rt.score_questions(model, tok, rows, rt.make_prompts(tok, rows, scoring), "unknown",
                                 scoring, batch_size=6, progress=False)
        assert ((unk["willing"] > 0) & (unk["willing"] <= 1 + 1e-6)).all()
    cl = rt.score_questions(model, tok, rows, rt.make_prompts(tok, rows, "cloze"), "uncertain",
                            "cloze", batch_size=6, progress=False)
    assert ((cl["willing"] >= 0) & (cl["willing"] <= 1)).all()


# ---- the chapter ---------------------------------------------------------------------------
FAST = dict(max_questions=60, epochs=1, batch_size=64)


@pytest.mark.slow
def test_rtuning_notebook(tmp_path, organism, run_notebook):
    doc = run_notebook("rtuning", tmp_path, **FAST)
    m = doc["metrics"]
    assert doc["params"]["method"] == "unsure" and doc["params"]["n_shots"] == 0
    assert doc["params"]["scoring"] == "cloze"
    assert m["split_sizes"] == {"train": 60, "test": 60, "ood": 60}
    assert doc["params"]["seeds"] == m["seeds"] == [0, 1]
    for s in ("0", "1"):
        for when in ("before", "after"):
            for k in ("test", "ood"):
                assert set(m["summary"][s][when][k]) >= {"accuracy", "answer_rate",
                                                         "answered_accuracy", "ap_conf",
                                                         "ap_score"}
        assert sum(m["training_labels"][s].values()) == 60
    assert 0 <= m["boundary_shares"]["sure_on_known"] <= 1
    assert set(m["headline"]) == set(chapter.HEADLINES)
    assert m["headline"]["ap_test_tuned"]["ci_method"] == "t interval on the logit scale over seeds"
    assert m["headline"]["ap_test_tuned"]["values"] == m["per_seed"]["ap_test_tuned"]
    assert set(m["checks"]) == {"ap_gain_test", "ap_gain_ood", "sure_on_known_target",
                                "unsure_on_unseen_target"}
    assert {c["status"] for c in m["checks"].values()} <= set(STATUSES)
    runs = list((tmp_path / "runs").glob("rtuning-*"))[0]
    lmflow = json.loads((runs / "training_data" / "seed0" / "tinyworld_unsure.json").read_text())
    assert lmflow["type"] == "text_only" and len(lmflow["instances"]) == 60
    assert (runs / "fig_pr.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["unknown", "uncertain"])
def test_rtuning_notebook_other_methods(tmp_path, organism, method, run_notebook):
    doc = run_notebook("rtuning", tmp_path, method=method, max_questions=24, epochs=1)
    m = doc["metrics"]
    assert doc["params"]["method"] == method
    want = {"unknown": {"answer", "refuse"}, "uncertain": {"sure", "unsure"}}[method]
    labels = m["training_labels"]["0"]
    assert set(labels) <= want and sum(labels.values()) == 24
    if method == "uncertain":
        assert labels["sure"] == 12  # the lower-entropy half


@pytest.mark.slow
def test_rtuning_notebook_mmlu_smoke(tmp_path, organism, data_dir, run_notebook):
    """The real-MMLU path runs end to end on the organism (numbers meaningless)."""
    doc = run_notebook("rtuning", tmp_path, dataset="mmlu", data_dir=str(data_dir), max_questions=4,
                       n_shots=1, epochs=1)
    m = doc["metrics"]
    assert m["n_shots"] == 1 and m["scoring"] == "letter"
    assert m["split_sizes"] == {"train": 4, "test": 4, "ood": 4}
    assert len(m["in_domain_subjects"]) == 28 and len(m["out_of_domain_subjects"]) == 29
    assert m["known_accuracy"] is None and "sure_on_known" not in m["boundary_shares"]


@pytest.mark.slow
def test_rtuning_notebook_rejects_a_bad_method(tmp_path, run_notebook):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError,
                       match="method='idk': allowed 'unsure', 'unknown', 'uncertain'"):
        run_notebook("rtuning", tmp_path, method="idk")


# ---- the chapter: seeds, headlines, checks -------------------------------------------------
def _frame(correct, conf, score=None, answered=None, group=None):
    import pandas as pd
    n = len(correct)
    df = pd.DataFrame({"gold": ["A"] * n, "correct": np.array(correct, bool),
                       "conf": np.array(conf, float)})
    df["score"] = df["conf"] if score is None else np.array(score, float)
    df["answered"] = np.ones(n, bool) if answered is None else np.array(answered, bool)
    if group is not None:
        df["group"] = group
    return df


def test_by_prompt_scores_each_distinct_prompt_once():
    import pandas as pd
    calls = []

    def fn(rows, prompts):
        calls.append(list(prompts))
        return pd.DataFrame({"q": [r["q"] for r in rows], "p": prompts})

    a = chapter.by_prompt(fn, [[{"q": 1}, {"q": 2}], [{"q": 2}, {"q": 3}]], [["p1", "p2"], ["p2", "p3"]])
    assert calls == [["p1", "p2", "p3"]]
    assert a[0]["p"].tolist() == ["p1", "p2"] and a[1]["p"].tolist() == ["p2", "p3"]
    assert a[1]["q"].tolist() == [2, 3]
    with pytest.raises(ValueError, match="rows but"):
        chapter.by_prompt(fn, [[{"q": 1}]], [["p1", "p2"]])


def test_run_items_values_and_statistics():
    g = ["known", "unseen", "known", "unseen"]
    before = {k: _frame([1, 0, 1, 0], [0.9, 0.8, 0.4, 0.3]) for k in ("test", "ood")}
    after = {k: _frame([1, 0, 1, 1], [0.9, 0.2, 0.8, 0.1], score=[0.9, 0.2, 0.8, 0.1],
                       answered=[1, 0, 1, 1], group=g) for k in ("test", "ood")}
    it = chapter.run_items(before, after)
    assert set(it) == set(chapter.HEADLINES)
    assert it["acc_test_before"]["value"] == pytest.approx(0.5)
    assert it["acc_test_after"]["value"] == pytest.approx(0.75)
    assert it["ap_test_untuned"]["value"] == pytest.approx(rt.average_precision([1, 0, 1, 0],
                                                                                [0.9, 0.8, 0.4, 0.3]))
    assert it["ap_test_tuned"]["statistic"] is rt.average_precision
    assert it["ap_test_tuned"]["statistic"](*it["ap_test_tuned"]["per_item"]) == \
        pytest.approx(it["ap_test_tuned"]["value"])
    assert it["sure_on_known"]["value"] == 1.0  # both known answered, in both splits
    assert it["unsure_on_unseen"]["value"] == 0.5
    bad = {"test": before["test"].iloc[:3], "ood": before["ood"]}
    with pytest.raises(ValueError, match="not the same questions"):
        chapter.run_items(bad, after)


def test_chapter_results_several_seeds_and_one_seed(tmp_path):
    from kbnb.report.chapter import Chapter
    g = ["known", "unseen"] * 20
    rng = np.random.default_rng(0)

    def items(seed):
        r = np.random.default_rng(seed)
        y = r.random(40) < 0.5
        before = {k: _frame(y, r.random(40)) for k in ("test", "ood")}
        after = {k: _frame(y, r.random(40), score=0.9 * y + 0.1 * r.random(40),
                           answered=np.array(g) == "known", group=g) for k in ("test", "ood")}
        return chapter.run_items(before, after)

    ch = Chapter("rtuning", {"seeds": [0, 1, 2]}, tmp_path)
    chapter.chapter_results(ch, {s: items(s) for s in ch.seeds})
    assert set(ch.headlines) == set(chapter.HEADLINES)
    assert ch.headlines["ap_test_tuned"]["ci_method"].endswith("seeds")
    assert set(ch.verdicts) == {"ap_gain_test", "ap_gain_ood", "sure_on_known_target",
                                "unsure_on_unseen_target"}
    assert ch.verdicts["ap_gain_test"].status == "PASS"  # a perfect score vs a random one
    ch1 = Chapter("rtuning", {"seeds": [4]}, tmp_path)
    chapter.chapter_results(ch1, {4: items(4)})
    assert "bootstrap" in ch1.headlines["ap_test_tuned"]["ci_method"]
    assert ch1.verdicts["ap_gain_ood"].status == "PASS"
    assert ch1.verdicts["ap_gain_ood"].result.n == 40
    del rng


def test_params_resolve_scoring_and_shots_and_hash_them_resolved():
    p = chapter.Params()
    assert (p.resolved_scoring, p.resolved_shots) == ("cloze", 0)
    # the hashed parameters are what the notebook hashed before Params: resolved values
    assert p.run_params() == dict(
        model_name="tinyworld", dataset="tinyworld", data_dir="", scoring="cloze", n_shots=0,
        prompt_header="kbnb", method="unsure", n_samples=5, temperature=0.7, epochs=10,
        lr=1e-3, train_batch_size=16, lora=False, autocast="none", max_questions=400,
        batch_size=64,
        seeds=[0, 1, 2], device="auto", dtype="auto", device_map=None, load_in_4bit=False,
        load_in_8bit=False, trust_remote_code=False)  # ModelParams' loading fields
    m = chapter.Params(dataset="mmlu").run_params()
    assert (m["scoring"], m["n_shots"]) == ("letter", 5)
    assert chapter.Params(dataset="mmlu", scoring="cloze").resolved_shots == 0
    assert chapter.Params(dataset="mmlu", n_shots=1).resolved_shots == 1
    with pytest.raises(ValueError, match="n_shots=2 needs scoring='letter'"):
        chapter.Params(n_shots=2)
    with pytest.raises(ValueError, match="n_samples"):
        chapter.Params(n_samples=1)
    with pytest.raises(ValueError, match="n_shots"):
        chapter.Params(n_shots=-2)


def test_refusal_aware_examples_use_the_gold_answers_and_the_flags():
    rows = [dict(ROW), dict(SHOT)]
    prompts = rt.build_prompts(rows)
    ex = rt.refusal_aware_examples(None, None, rows, prompts, [True, False], "unsure", "letter",
                                   seed=3)
    want = rt.build_training_data("unsure", prompts, ["B.", "A."], [True, False], seed=3)
    assert ex == want


# ---- memory: token budget and last-position logits (issue 20) ----------------------------
def test_organism_scoring_batches_never_reach_the_token_budget(organism, world):
    """The organism's chapter batches (64 prompts) stay exactly ``batch_size`` prompts, so
    its numbers do not depend on the budget."""
    from kbnb.lm.encoding import encode_prompt
    model, tok = organism
    rows, _ = rt.tinyworld_questions_and_shots(world)
    prompts = rt.make_prompts(tok, rows, "cloze")
    ctx = [rt.sure_context(p, rt.answer_text(r, 0, "cloze")) for p, r in zip(prompts, rows)]
    for ps, per_row in ((prompts, 4 + len(rt.FALSE_RESPONSES)), (ctx, 2)):
        lengths = [len(encode_prompt(tok, p)) for p in ps]
        assert 64 * max(lengths) * per_row <= SCORE_MAX_TOKENS
        got = token_batches(lengths, 64, per_row=per_row)
        assert [(r.start, r.stop) for r in got] == \
            [(s, min(s + 64, len(ps))) for s in range(0, len(ps), 64)]


def test_last_token_logits_equal_the_full_logits(organism, world):
    from kbnb.lm.encoding import encode_batch, last_logits_only, model_inputs
    from kbnb.lm.generation import next_token_logits
    model, tok = organism
    rows, _ = rt.tinyworld_questions_and_shots(world)
    prompts = rt.make_prompts(tok, rows[:16], "cloze")
    assert last_logits_only(model) == {"logits_to_keep": 1}
    with torch.no_grad():
        full = model(**model_inputs(model, encode_batch(tok, prompts))).logits[:, -1].float()
    assert torch.equal(last_token_logits(model, tok, prompts), full)
    assert torch.equal(next_token_logits(model, tok, prompts, batch_size=16), full)


def test_query_under_a_tight_token_budget_gives_the_same_answers(organism, world):
    model, tok = organism
    rows, _ = rt.tinyworld_questions_and_shots(world)
    rows = rows[:10]
    for scoring in ("letter", "cloze"):
        prompts = rt.make_prompts(tok, rows, scoring)
        a = rt.query(model, tok, prompts, rows, scoring=scoring, batch_size=8, progress=False)
        b = rt.query(model, tok, prompts, rows, scoring=scoring, batch_size=8, progress=False,
                     max_tokens=40)
        assert torch.allclose(a["probs"], b["probs"], atol=1e-5)
        assert torch.equal(a["pred"], b["pred"])
    p1 = rt.sure_probability(model, tok, prompts, ["B."] * 10, batch_size=8)
    p2 = rt.sure_probability(model, tok, prompts, ["B."] * 10, batch_size=8, max_tokens=50)
    assert torch.allclose(p1, p2, atol=1e-5)


def test_tofu_choice_rows_split_real_authors_in_domain_and_world_facts_out(data_dir):
    from kbnb.data.loaders import load_tofu_choice
    rows = load_tofu_choice(data_dir)
    assert len(rows) == 217 and all(len(r["choices"]) == 4 for r in rows)
    assert rows[0]["choices"][rows[0]["answer"]] in rows[0]["choices"]
    sp = rt.split_by_subject(rows, 1, 0, 0)
    assert sp["in_domain"] == ["real_authors"] and sp["out_of_domain"] == ["world_facts"]
    assert (len(sp["train"]), len(sp["test"]), len(sp["ood"])) == (50, 50, 117)
    assert rt.make_prompts(None, rows[:1], "letter", rt.choose_shots([], 0))[0].rstrip().endswith(
        "Answer:")


def _author_rows():
    rows = []
    for a in range(10):
        group = "known" if a < 4 else "unseen"
        rows += [{"question": f"q{a}-{i}", "subject": "authors", "author": f"author {a}",
                  "group": group, "exposure": 3 if group == "known" else 0,
                  "choices": list("abcd"), "answer": 0} for i in range(5)]
    return rows


def test_split_by_author_halves_each_group_by_author_and_keeps_the_ood_rows():
    rows = _author_rows()
    ood = [{"question": f"o{i}", "subject": "world", "choices": list("abcd"), "answer": 1}
           for i in range(7)]
    sp = rt.split_by_author(rows, ood, 0, seed=0)
    train_a = {r["author"] for r in sp["train"]}
    test_a = {r["author"] for r in sp["test"]}
    assert not train_a & test_a and len(train_a) + len(test_a) == 10
    for split in ("train", "test"):  # 2 of the 4 known authors, 3 of the 6 unseen
        groups = [r["group"] for r in sp[split]]
        assert (groups.count("known"), groups.count("unseen")) == (10, 15)
    assert sp["ood"] == ood
    assert (sp["in_domain"], sp["out_of_domain"]) == (["authors"], ["world"])
    assert rt.split_by_author(rows, ood, 0, seed=0) == sp
    assert {r["author"] for r in rt.split_by_author(rows, ood, 0, seed=1)["train"]} != train_a
    cut = rt.split_by_author(rows, ood, 6, seed=0)
    assert [len(cut[k]) for k in ("train", "test", "ood")] == [6, 6, 6]
    with pytest.raises(ValueError, match="'known' has 1 author"):
        rt.split_by_author([r for r in rows if r["author"] != "author 1" and
                            r["author"] != "author 2" and r["author"] != "author 3"], ood)
