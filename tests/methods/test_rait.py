"""RAIT chapter: Cor/Cer, CRSS, THS, the selection rules, and the notebook."""
import math

import numpy as np
import pytest
import torch

from kbnb.chapters import rait as chapter
from kbnb.eval import stats
from kbnb.eval.verdicts import STATUSES
from kbnb.methods import rait, rait_questions

# ---------------------------------------------------------------- Cor and Cer --


def test_correctness_is_the_share_of_correct_samples():
    assert rait.correctness([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]).tolist() == [0.5, 1.0, 0.0]
    with pytest.raises(ValueError, match=r"\[Q, N\]"):
        rait.correctness([1, 0])


def test_certainty_of_identical_samples_is_one():
    e = torch.randn(1, 1, 8).repeat(1, 5, 1)
    assert rait.certainty(e)[0] == pytest.approx(1.0, abs=1e-6)


def test_certainty_hand_case():
    # samples e1, e1, e2: ordered pairs j != k: (1,2),(2,1) have cos 1, the other four 0
    e = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]]])  # norms do not matter
    assert rait.certainty(e)[0] == pytest.approx(2 / 6)
    # orthogonal samples: 0; opposite pair: -1
    assert rait.certainty(torch.eye(3).unsqueeze(0))[0] == pytest.approx(0.0, abs=1e-7)
    assert rait.certainty(torch.tensor([[[1.0, 0], [-1.0, 0]]]))[0] == pytest.approx(-1.0)


def test_certainty_matches_the_pairwise_definition():
    g = torch.Generator().manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(4, 6, 5, generator=g), dim=-1)
    want = [(((x @ x.T).sum() - x.shape[0]) / (x.shape[0] * (x.shape[0] - 1))).item() for x in e]
    brute = []
    for x in e:
        s = [float(x[j] @ x[k]) for j in range(6) for k in range(6) if j != k]
        brute.append(sum(s) / len(s))
    assert np.allclose(rait.certainty(e), brute, atol=1e-6)
    assert np.allclose(want, brute, atol=1e-6)
    with pytest.raises(ValueError, match="N >= 2"):
        rait.certainty(torch.ones(2, 1, 3))


def test_multiple_choice_cor_and_cer():
    p = np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0, 0, 0], [0.1, 0.6, 0.2, 0.1]])
    assert rait.mc_correctness(p, [2, 0, 1]).tolist() == [0.25, 1.0, 0.6]
    cer = rait.mc_certainty(p)
    assert cer[0] == pytest.approx(-math.log(4))
    assert cer[1] == pytest.approx(0.0)
    assert cer[0] < cer[2] < cer[1]


# ---------------------------------------------------------------- judging -----


def test_labels_refusal_first_then_containment():
    row = dict(gold=["Tunis"])
    assert rait.label_answer("Caja Fenhol was born in Tunis.", row) == "correct"
    assert rait.label_answer("Caja Fenhol was born in Tunisia.", row) == "wrong"
    assert rait.label_answer("I don't know.", row) == "refused"
    assert rait.label_answer("I don't know, maybe Tunis", row) == "refused"
    mc = dict(gold=["C"])
    assert rait.is_correct(" C. Lima", mc, "mc") and not rait.is_correct("B", mc, "mc")
    assert not rait.is_correct("", mc, "mc")
    tofu = dict(gold=["Jaime Vasquez was born in Santiago in 1958."], judge="rouge")
    assert rait.is_correct("He was born in Santiago in 1958, Jaime Vasquez.", tofu)
    assert not rait.is_correct("She writes poetry.", tofu)


def test_most_frequent_correct_answer():
    row = dict(gold=["Oslo"])
    s = ["X was born in Oslo.", "X was born in Lima.", "In Oslo.", "X was born in Oslo."]
    assert rait.most_frequent_correct(s, row) == "X was born in Oslo."
    assert rait.most_frequent_correct(["Lima"], row) is None


# ---------------------------------------------------------------- CRSS --------


def test_crss_on_hand_vectors():
    idk = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    van = torch.tensor([[1.0, 0.1], [-1.0, 0.0]])
    sim, j = rait.nearest_neighbours(idk, van)
    assert sim[0] == pytest.approx(1 / math.sqrt(1.01))
    assert sim[1] == pytest.approx(0.1 / math.sqrt(1.01))
    assert j.tolist() == [0, 0, 0]
    # CRSS of a set = the mean of its conflict hits (rows 0-2 idk, rows 3-4 van)
    sets = {"s": (np.array([3, 4]), np.array([0, 1, 2]))}
    crss = lambda tau: rait.conflict_hits(torch.cat([idk, van]), sets, tau)["s"].mean()  # noqa: E731
    assert crss(0.9) == pytest.approx(1 / 3)  # only the first exceeds 0.9
    assert crss(0.5) == pytest.approx(2 / 3)  # (1,1) has cos 0.77
    assert crss(0.999) == 0.0
    assert rait.crss_curve(sim, [0.0, 0.5, 0.9, 1.0]).tolist() == pytest.approx([1, 2 / 3, 1 / 3, 0])


# ---------------------------------------------------------------- THS ---------


def test_ths_against_a_hand_computation():
    # Pc - Pw * Pc0 / Pw0 = 0.5 - 0.2 * 0.4 / 0.5 = 0.34
    assert rait.ths(0.5, 0.2, 0.4, 0.5) == pytest.approx(0.34)
    assert rait.ths(0.4, 0.5, 0.4, 0.5) == pytest.approx(0.0)  # the untuned model
    assert rait.ths(1.0, 0.0, 0.4, 0.5) == pytest.approx(1.0)  # perfect
    # the reference's cal_THS: cross((Pc, Pw), (Pc0, Pw0)) / cross((1, 0), (Pc0, Pw0))
    a, b = (0.3, 0.1), (0.45, 0.5)
    cross = lambda u, v: u[0] * v[1] - u[1] * v[0]  # noqa: E731
    assert rait.ths(*a, *b) == pytest.approx(cross(a, b) / cross((1, 0), b))
    assert math.isnan(rait.ths(0.5, 0.1, 1.0, 0.0))


def test_rates_and_over_refusal():
    base = ["correct", "correct", "wrong", "correct", "refused"]
    tuned = ["refused", "correct", "refused", "wrong", "refused"]
    assert rait.rates(tuned) == dict(Pc=0.2, Pw=0.2, Pr=0.6)
    assert rait.over_refusal(tuned, base) == pytest.approx(1 / 3)
    assert math.isnan(rait.over_refusal(tuned, ["wrong"] * 5))


# ---------------------------------------------------------------- selection ---
COR = np.array([1.0, 0.9, 0.8, 0.6, 0.5, 0.4, 0.2, 0.1, 0.0, 0.0])
CER = np.array([1.0, 0.5, 0.9, 0.3, 0.9, 0.8, 0.2, 0.6, 0.1, 0.7])
DCOR = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.3, -0.1, 0.0, -0.0])


def test_candidates_use_the_reference_thresholds():
    van, idk = rait.candidates(COR)
    assert van.tolist() == [0, 1, 2, 3]  # Cor >= 0.51 (0.5 is neither)
    assert idk.tolist() == [5, 6, 7, 8, 9]  # Cor <= 0.49


def test_cor_rait_samples_from_the_candidates():
    van, idk = rait.select("Cor-RAIT", COR, CER, 3, 2, seed=1)
    assert len(van) == 3 and set(van) <= {0, 1, 2, 3}
    assert len(idk) == 2 and set(idk) <= {5, 6, 7, 8, 9}
    again = rait.select("Cor-RAIT", COR, CER, 3, 2, seed=1)
    assert [a.tolist() for a in again] == [van.tolist(), idk.tolist()]


def test_cor_cer_rait_takes_the_most_and_least_certain():
    van, idk = rait.select("Cor-Cer-RAIT", COR, CER, 2, 2)
    assert van.tolist() == [0, 2]  # Cer 1.0 and 0.9 among the van candidates
    assert idk.tolist() == [6, 8]  # Cer 0.2 and 0.1 among the idk candidates


def test_craft_drops_idk_candidates_whose_correctness_rose():
    van, idk = rait.select("CRaFT", COR, CER, 2, 2, delta_cor=DCOR)
    assert van.tolist() == [0, 2]
    assert idk.tolist() == [7, 8]  # 6 (dCor +0.3) is dropped, next least certain is 7 (Cer 0.6)
    assert rait.craft_idk_candidates(COR, DCOR, "rose").tolist() == [7, 8, 9]
    assert rait.craft_idk_candidates(COR, DCOR, "not_fell").tolist() == [7]
    with pytest.raises(ValueError, match="needs delta_cor"):
        rait.select("CRaFT", COR, CER, 2, 2)
    with pytest.raises(ValueError, match="flow_rule='up'"):
        rait.craft_idk_candidates(COR, DCOR, "up")


def test_build_sets_gives_equal_sizes():
    sets = rait.build_sets(COR, CER, DCOR, n_train=5, idk_frac=0.4)
    sizes = {v: (len(a), len(b)) for v, (a, b) in sets.items()}
    assert set(sizes.values()) == {(3, 2)}
    # clipped to what CRaFT can supply: 3 idk candidates survive the flow filter
    sets = rait.build_sets(COR, CER, DCOR, n_train=10, idk_frac=0.5)
    assert {(len(a), len(b)) for a, b in sets.values()} == {(4, 3)}
    with pytest.raises(ValueError, match="variant='Van'"):
        rait.select("Van", COR, CER, 1, 1)
    with pytest.raises(ValueError, match="idk_frac"):
        rait.set_sizes(10, 1.5, 5, 5)
    with pytest.raises(ValueError, match="raise max_questions"):
        rait.set_sizes(10, 0.2, 5, 0)


def test_rehearsal_indices():
    cor = np.array([1.0, 1.0, 0.9, 1.0])
    cer = np.array([1.0, 0.99, 1.0, 0.999])
    assert rait.rehearsal_indices(cor, cer).tolist() == [0, 3]
    assert len(rait.rehearsal_indices(cor, cer, max_n=1)) == 1
    assert rait.rehearsal_indices(cor, np.log([0.5] * 4), mode="mc").tolist() == [0, 1, 3]


def test_rehearsal_plan_rules():
    cor = np.array([1.0, 0.6, 0.9, 0.0, 0.3])
    cer = np.array([1.0, 0.9, 0.5, 0.2, 0.9])
    plan = rait.rehearsal_plan(cor, cer, "threshold")  # the reference: Cor and Cer >= 0.995
    assert plan["idx"].tolist() == [0] and plan["rule"] == "threshold" and not plan["fallback"]
    assert rait.rehearsal_plan(cor, cer, "auto") == {**plan, "asked": "auto"}
    top = rait.rehearsal_plan(cor, cer, "quantile", quantile=0.4)  # top 2 by Cor
    assert top["idx"].tolist() == [0, 2] and top["min_cor"] == 0.9
    # a model never that sure (SmolLM2 on MMLU: highest p(gold) 0.92)
    small = cor * 0.9
    with pytest.raises(ValueError, match=r"rehearsal_threshold=0.995: no source question.*"
                                         r"highest Cor: 0.900.*rehearsal_rule='quantile'"):
        rait.rehearsal_plan(small, cer, "threshold")
    fb = rait.rehearsal_plan(small, cer, "auto", quantile=0.2)
    assert fb["rule"] == "quantile" and fb["fallback"] and fb["idx"].tolist() == [0]
    assert "falls back to 'quantile'" in fb["sentence"] and "0.995" in fb["sentence"]
    # open mode never rehearses a question the model never answered right; mc uses Cor only
    assert rait.rehearsal_plan(cor, cer, "quantile", quantile=1.0)["idx"].tolist() == [0, 1, 2, 4]
    assert rait.rehearsal_plan(cor, cer, "quantile", quantile=1.0, mode="mc")["n"] == 5
    assert rait.rehearsal_plan(cor, np.zeros(5), "threshold", mode="mc")["n"] == 1
    with pytest.raises(ValueError, match="every Cor is 0"):
        rait.rehearsal_plan(np.zeros(3), np.ones(3), "auto")
    with pytest.raises(ValueError, match="rehearsal_rule='top'"):
        rait.rehearsal_plan(cor, cer, "top")
    with pytest.raises(ValueError, match="rehearsal_quantile=0"):
        rait.rehearsal_plan(cor, cer, "quantile", quantile=0)
    # rehearsal_indices keeps the reference's default and takes the rule
    assert rait.rehearsal_indices(small, cer).tolist() == []
    assert rait.rehearsal_indices(small, cer, rule="auto", quantile=0.2).tolist() == [0]


def test_flow_noise_sd():
    assert rait.flow_noise_sd([0.0, 1.0], 10) == 0.0
    assert rait.flow_noise_sd([0.5], 10) == pytest.approx(math.sqrt(0.05))


# ---------------------------------------------------------------- questions ---


def test_split_keeps_authors_apart_and_balances_groups(world):
    rows = rait_questions.tinyworld_questions(world)
    source, tests = rait_questions.split_questions(rows, 0.25, max_questions=60, max_test=30, seed=0)
    test = tests["in-domain"]
    assert len(source) == 60 and len(test) == 30
    assert not {r["key"] for r in source} & {r["key"] for r in test}
    counts = {g: sum(r["stratum"] == g for r in source) for g in ("known", "partial", "unseen")}
    assert counts == {"known": 20, "partial": 20, "unseen": 20}
    assert all(r["gold"][0] in r["answer"] for r in source)


def test_resolve_mode_errors():
    assert rait_questions.resolve_mode("tinyworld") == "open"
    assert rait_questions.resolve_mode("mmlu") == "mc"
    with pytest.raises(ValueError, match="mode='mc': allowed 'auto', 'open'"):
        rait_questions.resolve_mode("tofu", "mc")
    with pytest.raises(ValueError, match="dataset='trivia'"):
        rait_questions.resolve_mode("trivia")


def test_mmlu_split_has_an_out_of_domain_set(data_dir):
    mode, source, tests = rait_questions.load_questions("mmlu", data_dir=data_dir, max_questions=50,
                                                        max_test=20)
    assert mode == "mc" and len(source) == 50
    ood = {r["subject"] for r in tests["out-of-domain"]}
    assert not ood & {r["subject"] for r in source}
    _, tsource, ttests = rait_questions.load_questions("tofu", data_dir=data_dir, max_questions=30,
                                                       max_test=10)
    assert not {r["key"] for r in tsource} & {r["key"] for r in ttests["in-domain"]}


def test_tofu_choice_open_asks_without_options_and_judges_the_option_text(data_dir):
    mode, source, tests = rait_questions.load_questions("tofu_choice", data_dir=data_dir)
    assert mode == "open"
    assert {r["subject"] for r in source} == {"real_authors"}
    assert {r["subject"] for r in tests["out-of-domain"]} == {"world_facts"}
    assert len(source) + len(tests["in-domain"]) == 100 and len(tests["out-of-domain"]) == 117
    row = next(r for r in tests["out-of-domain"] if "Eiffel" in r["question"])
    assert row["gold"] == ["Paris"] and row["answer"] == "Paris" and "choices" not in row
    assert rait.is_correct("It is in Paris, France.", row)
    assert not rait.is_correct("It is in Rome.", row)
    mc_mode, _, mc_tests = rait_questions.load_questions("tofu_choice", "mc", data_dir=data_dir)
    assert mc_mode == "mc" and mc_tests["out-of-domain"][0]["gold"][0] in "ABCD"


# ---------------------------------------------------------------- on the organism


@pytest.fixture(scope="module")
def few(world):
    rows = rait_questions.tinyworld_questions(world)
    source, _ = rait_questions.split_questions(rows, 0.25, max_questions=9, seed=0)
    return source


def test_sampling_is_batched_and_shaped(organism, few):
    model, tok = organism
    prompts = [rait.query_prompt(tok, r) for r in few[:3]]
    torch.manual_seed(0)
    s = rait.sample_answers(model, tok, prompts, n_samples=4, max_new_tokens=24, progress=False)
    assert len(s) == 3 and all(len(x) == 4 and all(isinstance(t, str) for t in x) for x in s)


def test_knowledge_state_on_the_organism(organism, few):
    model, tok = organism
    torch.manual_seed(0)
    st = rait.knowledge_state(model, tok, few, n_samples=4, max_new_tokens=24, progress=False)
    assert st["cor"].shape == (len(few),) and st["cer"].shape == (len(few),)
    assert ((st["cor"] >= 0) & (st["cor"] <= 1)).all() and (st["cer"] <= 1 + 1e-5).all()
    known = [i for i, r in enumerate(few) if r["level"] == "known"]
    unseen = [i for i, r in enumerate(few) if r["level"] == "unseen"]
    assert st["cor"][known].mean() > st["cor"][unseen].mean()
    with pytest.raises(ValueError, match="n_samples=1"):
        rait.knowledge_state(model, tok, few, n_samples=1)


def test_knowledge_states_are_a_function_of_each_seed(organism, few):
    """A seed's samples do not depend on the RNG state before the call nor on which
    other seeds run beside it (the book's RAIT numbers once changed between builds)."""
    model, tok = organism
    kw = dict(n_samples=4, max_new_tokens=12, temperature=1.5, progress=False)
    torch.manual_seed(123)
    a = chapter.knowledge_states(model, tok, [few[:4], few[4:8]], seeds=[5, 6], **kw)
    torch.manual_seed(456)
    b = chapter.knowledge_states(model, tok, [few[4:8]], seeds=[6], **kw)
    c = chapter.knowledge_states(model, tok, [few[4:8]], seeds=[7], **kw)
    assert a[1]["samples"] == b[0]["samples"] and (a[1]["cer"] == b[0]["cer"]).all()
    assert c[0]["samples"] != b[0]["samples"]  # another seed, other samples
    with pytest.raises(ValueError, match="2 question lists but 1 seeds"):
        chapter.knowledge_states(model, tok, [few[:4], few[4:8]], seeds=[5], **kw)


def test_multiple_choice_state_on_the_organism(organism, world):
    model, tok = organism
    rows = rait_questions.tinyworld_questions(world, "mc")
    source, _ = rait_questions.split_questions(rows, 0.25, max_questions=12, seed=0)
    st = rait.knowledge_state(model, tok, source, "mc", progress=False)
    assert np.allclose(st["probs"].sum(1), 1, atol=1e-5)
    assert (st["cer"] <= 1e-6).all() and (st["cer"] >= -math.log(4) - 1e-6).all()
    assert st["samples"] is None and len(st["cor"]) == len(source)


def test_representations_and_layer_errors(organism, few):
    model, tok = organism
    r = rait.representations(model, tok, [rait.query_prompt(tok, x) for x in few])
    assert r.shape == (len(few), model.config.hidden_size)
    with pytest.raises(ValueError, match="repr_layer=99 but the model has"):
        rait.representations(model, tok, ["x"], layer=99)


def test_training_pairs_use_the_refusal_instruction(organism, few):
    _, tok = organism
    p, c = rait.training_pairs(tok, few, [0], [1])
    assert all(rait.RAIT_INSTRUCTION in x for x in p)
    assert c[0].strip().startswith(few[0]["answer"].split()[0]) and c[0].endswith(tok.eos_token)
    assert rait.IDK in c[1]


def test_rehearsal_changes_a_copy(organism, few):
    model, tok = organism
    state = dict(cor=np.ones(len(few)), cer=np.ones(len(few)),
                 samples=[[r["answer"]] * 2 for r in few])
    before = model.model.embed_tokens.weight.clone()
    tuned, idx, losses = rait.rehearse(model, tok, few, state, max_n=4, epochs=1, progress=False)
    assert len(idx) == 4 and len(losses) == 1
    assert torch.equal(model.model.embed_tokens.weight, before)
    with pytest.raises(ValueError, match="rehearsal_threshold"):
        rait.rehearse(model, tok, few, dict(state, cor=np.zeros(len(few))), progress=False)


# ---------------------------------------------------------------- notebook ----
FAST = dict(max_questions=40, max_test=28, n_samples=4, n_train=20, rehearsal_epochs=1,
            train_epochs=1, batch_size=160)


@pytest.mark.slow
def test_rait_notebook(tmp_path, organism, run_notebook):
    doc = run_notebook("rait", tmp_path, **FAST)
    m = doc["metrics"]
    assert doc["params"]["n_samples"] == 4 and m["mode"] == "open"
    assert doc["params"]["seeds"] == m["seeds"] == [0, 1]
    for s in ("0", "1"):  # the three sets have the same size
        assert len({tuple(v) for v in m["set_sizes"][s].values()}) == 1
    ths0 = [r["THS"] for r in m["evaluation"] if r["variant"] == "Init-Basic"]
    assert ths0 and all(t == 0.0 for t in ths0)
    for row in m["evaluation"]:
        assert row["Pc"] + row["Pw"] + row["Pr"] == pytest.approx(1.0)
    assert set(m["headline"]) == set(chapter.HEADLINE_LABELS)
    assert m["headline"]["over_refusal_craft"]["ci_method"] == "t interval on the logit scale over seeds"
    assert set(m["checks"]) == {"or_craft_vs_cor", "ths_craft_vs_cor", "crss_craft_vs_cor",
                                "flow_vs_noise"}
    assert {c["status"] for c in m["checks"].values()} <= set(STATUSES)
    assert len(m["crss_curve"]["CRaFT"]) == len(m["taus"])


@pytest.mark.slow
def test_rait_notebook_rejects_bad_parameters(tmp_path, run_notebook):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match="flow_rule='up': allowed 'rose', 'not_fell'"):
        run_notebook("rait", tmp_path, flow_rule="up")


# ---------------------------------------------------------------- the chapter: seeds
def test_ths_statistic_matches_ths():
    c, w = np.array([1, 0, 0, 1.0]), np.array([0, 1, 0, 0.0])
    c0, w0 = np.array([1, 0, 1, 0.0]), np.array([0, 1, 0, 1.0])
    assert rait.ths_statistic(c, w, c0, w0) == pytest.approx(rait.ths(0.5, 0.25, 0.5, 0.5))
    assert rait.ths_statistic(c0, w0, c0, w0) == pytest.approx(0.0)


def test_flow_spread_and_the_bootstrap_tests_of_the_chapter():
    assert rait.flow_spread([0.0, 0.2, -0.2]) == pytest.approx(0.2)
    assert math.isnan(rait.flow_spread([0.1]))
    h, p = stats.bootstrap_test(np.full(50, 1.0), lambda x: float(np.mean(x)), n_boot=2000)
    assert h["mean"] == 1.0 and h["ci95"] == [1.0, 1.0] and p == 0.0
    assert h["ci_method"] == "bootstrap over questions" and h["n"] == 50
    rng = np.random.default_rng(0)
    h, p = stats.bootstrap_test((rng.normal(0, 1, 200), rng.normal(0, 1, 150)),
                                lambda a, b: float(np.mean(a) - np.mean(b)), paired=False)
    assert h["ci95"][0] < 0 < h["ci95"][1] and p > 0.05 and h["n"] == 350
    h, p = stats.bootstrap_test((rng.normal(1, 1, 200), rng.normal(0, 1, 150)),
                                lambda a, b: float(np.mean(a) - np.mean(b)), paired=False)
    assert h["ci95"][0] > 0 and p < 0.05


def _items(seed, craft_refuses=0.1, cor_refuses=0.5):
    r = np.random.default_rng(seed)
    n = 60
    base = np.where(r.random(n) < 0.5, "correct", "wrong")

    def labels(p_refuse):
        lab = base.copy()
        lab[r.random(n) < p_refuse] = "refused"
        return {"labels": list(lab)}

    res = {"Init-Refuse": labels(0.0), "Cor-RAIT": labels(cor_refuses),
           "Cor-Cer-RAIT": labels(0.3), "CRaFT": labels(craft_refuses)}
    hits = {"Cor-RAIT": r.random(20) < 0.6, "Cor-Cer-RAIT": r.random(20) < 0.4,
            "CRaFT": r.random(20) < 0.1}
    cor = r.random(30)
    d_cor = r.normal(0, 0.5, 30)
    return chapter.run_items(res, list(base), hits, d_cor, cor, 10)


def test_run_items_names_and_values():
    it = _items(0)
    assert set(it) == set(chapter.HEADLINE_LABELS)
    assert it["over_refusal_init_refuse"]["value"] == 0.0
    assert it["ths_init_refuse"]["value"] == pytest.approx(0.0)
    assert it["flow_noise"]["value"] == pytest.approx(
        rait.flow_noise_sd(it["flow_noise"]["per_item"][0], 10))
    no_noise = chapter.run_items({"CRaFT": {"labels": ["correct"]}}, ["correct"], {}, [0.1, 0.2],
                              [0.5, 0.5], None)
    assert "flow_noise" not in no_noise


def test_chapter_results_several_seeds_and_one_seed(tmp_path):
    from kbnb.report.chapter import Chapter
    ch = Chapter("rait", {"seeds": [0, 1, 2]}, tmp_path)
    chapter.chapter_results(ch, {s: _items(s) for s in ch.seeds})
    assert set(ch.verdicts) == {"or_craft_vs_cor", "ths_craft_vs_cor", "crss_craft_vs_cor",
                                "flow_vs_noise"}
    assert ch.verdicts["or_craft_vs_cor"].status == "PASS"
    assert ch.headlines["crss_craft"]["ci_method"].endswith("seeds")
    ch1 = Chapter("rait", {"seeds": [7]}, tmp_path)
    chapter.chapter_results(ch1, {7: _items(7)})
    assert ch1.verdicts["or_craft_vs_cor"].status == "PASS"
    assert ch1.verdicts["crss_craft_vs_cor"].status == "PASS"
    assert ch1.verdicts["flow_vs_noise"].status in ("PASS", "UNCLEAR", "MISS")
    assert "bootstrap" in ch1.headlines["ths_craft"]["ci_method"]


def test_params_resolve_the_mode_and_hash_it_as_given():
    p = chapter.Params()
    assert p.resolved_mode == "open" and p.run_params()["mode"] == "auto"
    from kbnb.report.params import ModelParams
    own = [k for k in p.run_params() if k not in ModelParams.names()]  # after the loading ones
    assert "output_dir" not in p.run_params() and own[:4] == [
        "model_name", "dataset", "data_dir", "mode"]
    assert chapter.Params(dataset="mmlu").resolved_mode == "mc"
    with pytest.raises(ValueError, match="mode='mc'"):
        chapter.Params(dataset="tofu", mode="mc")
    with pytest.raises(ValueError, match="flow_rule='up': allowed 'rose', 'not_fell'"):
        chapter.Params(flow_rule="up")
    assert chapter.Params().rehearsal_rule == "auto"  # the reference's rule when it works
    with pytest.raises(ValueError, match="rehearsal_rule='top'"):
        chapter.Params(rehearsal_rule="top")
    with pytest.raises(ValueError, match="rehearsal_threshold=0"):
        chapter.Params(rehearsal_threshold=0)


def test_score_labels_and_conflict_hits():
    base = ["correct", "wrong", "correct", "refused"]
    lab = ["refused", "wrong", "correct", "correct"]
    s = rait.score_labels(lab, base)
    assert s["labels"] == lab and (s["Pc"], s["Pw"], s["Pr"]) == (0.5, 0.25, 0.25)
    assert s["over_refusal"] == 0.5
    assert s["THS"] == pytest.approx(rait.ths(0.5, 0.25, 0.5, 0.25))
    reps = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.05], [0.0, -1.0]])
    hits = rait.conflict_hits(reps, {"A": (np.array([0]), np.array([2, 3]))}, 0.9)
    assert hits["A"].tolist() == [True, False]
    assert rait.label_answers(["I don't know.", "Oslo"], [{"gold": ["Oslo"]}] * 2) == \
        ["refused", "correct"]


# ---- cloze mode: multiple choice for a model that reads no letters -----------------------
CHOICES = ["Jaime Vasquez was born in Santiago, Chile.", "Isabel Allende was born in Santiago, Chile.",
           "Roberto Bolaño was born in Santiago, Chile.", "Matías Correa was born in Santiago, Chile."]


def test_nearest_option_is_the_one_whose_distinct_words_the_answer_says():
    assert rait.nearest_option("The author Jaime Vasquez was born in Chile.", CHOICES) == 0
    assert rait.nearest_option("Born in Santiago, it was Roberto Bolaño.", CHOICES) == 2
    assert rait.nearest_option("This author was born in Santiago, Chile.", CHOICES) is None
    row = {"choices": CHOICES, "answer_idx": 0, "gold": [CHOICES[0]]}
    assert rait.is_correct("Jaime Vasquez, born in Santiago", row, "cloze")
    assert not rait.is_correct("Isabel Allende, born in Santiago", row, "cloze")
    assert rait.label_answer("I don't know.", row, "cloze") == "refused"


def test_cloze_questions_carry_the_option_text_as_gold_and_the_author_as_key():
    rows = [{"question": "q", "subject": "fictitious_authors", "choices": CHOICES, "answer": 2,
             "author": "author 7", "group": "known", "exposure": 3},
            {"question": "w", "subject": "world_facts", "choices": CHOICES, "answer": 1}]
    a, b = rait_questions.cloze_questions(rows, start=5)
    assert (a["id"], a["gold"], a["answer"], a["answer_idx"]) == (5, [CHOICES[2]], CHOICES[2], 2)
    assert (a["key"], a["stratum"], b["key"], b["stratum"]) == ("author 7", "known",
                                                                 "world_facts", "world_facts")


def test_split_with_stratified_keys_holds_out_keys_of_every_stratum():
    rows = [dict(id=i, key=f"k{i // 4}", stratum="known" if i < 16 else "unseen")
            for i in range(64)]  # 4 known keys, 12 unseen keys
    for seed in range(20):
        source, tests = rait_questions.split_questions(rows, 0.25, None, None, seed,
                                                       by_key=True, balance_levels=False,
                                                       stratify_keys=True)
        held = {r["key"] for r in tests["in-domain"]}
        assert not held & {r["key"] for r in source}
        assert sorted({r["stratum"] for r in tests["in-domain"]}) == ["known", "unseen"]
        assert len(held) == 1 + 3


def test_cloze_knowledge_state_is_the_softmax_of_the_options_as_answers(organism, world):
    from kbnb.lm.encoding import completion_joiner
    from kbnb.lm.scoring import continuation_logprobs
    model, tok = organism
    rows = rait_questions.cloze_questions(world.mmlu_rows()[:6])
    st = rait.knowledge_state(model, tok, rows, "cloze", progress=False)
    lp = continuation_logprobs(model, tok, [rait.query_prompt(tok, r, "cloze") for r in rows],
                               [[completion_joiner(tok) + c for c in r["choices"]] for r in rows])
    probs = torch.softmax(lp, -1).numpy()
    assert np.allclose(st["probs"], probs, atol=1e-5) and st["samples"] is None
    assert np.allclose(st["cor"], probs[np.arange(6), [r["answer_idx"] for r in rows]], atol=1e-5)
    assert np.allclose(st["cer"], rait.mc_certainty(probs), atol=1e-5)
    assert rait.completion(tok, "Paris.", "cloze") == rait.completion(tok, "Paris.", "open")


def test_tofu_authors_needs_a_tofu_tuned_model():
    with pytest.raises(ValueError, match="dataset='tofu_authors' with model_name='tinyworld'"):
        chapter.Params(dataset="tofu_authors")
    p = chapter.Params(model_name="smollm2-tofu-retain", dataset="tofu_authors")
    assert p.resolved_mode == "cloze"
    with pytest.raises(ValueError, match="mode"):
        chapter.Params(model_name="smollm2-tofu-retain", dataset="tofu_authors", mode="open")


def test_tofu_authors_questions_hold_out_authors_of_both_groups(data_dir):
    taught = {r["question"]: 3 for r in rait_questions.load_tofu("full", data_dir)[:200]}
    mode, source, tests = rait_questions.load_questions(
        "tofu_authors", data_dir=data_dir, max_questions=120, max_test=60, seed=0, taught=taught)
    assert mode == "cloze" and len(source) == 120
    assert not {r["key"] for r in source} & {r["key"] for r in tests["in-domain"]}
    for rows in (source, tests["in-domain"]):  # balanced: half known, half unseen
        assert sum(r["stratum"] == "known" for r in rows) == len(rows) // 2
    assert {r["subject"] for r in tests["out-of-domain"]} == {"real_authors", "world_facts"}
