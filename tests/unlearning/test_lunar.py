"""LUNAR: the exact solve, the metrics on hand cases, steering, saving, the chapter and
its notebook."""
import ast
import json

import pytest
import torch

from kbnb import format_prompt
from kbnb.chapters import lunar as chapter
from kbnb.chapters import lunar_present as present
from kbnb.eval.metrics import deviation_score, mrr, refusal_quality, rouge1_recall, thr
from kbnb.lm import activations as A
from kbnb.organism.world import REFUSALS
from kbnb.unlearning import lunar, lunar_eval, lunar_pipeline, lunar_sets, lunar_store

# ---- the closed form ----------------------------------------------------------------

def _problem(n=300, d_in=24, d_out=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(n, d_in, generator=g)
    W_true = torch.randn(d_out, d_in, generator=g)
    Y = Z @ W_true.T + 0.1 * torch.randn(n, d_out, generator=g)
    W0 = torch.randn(d_out, d_in, generator=g)
    return Z, Y, W0


def test_closed_form_equals_lstsq_on_a_full_rank_problem():
    Z, Y, W0 = _problem()
    ref = torch.linalg.lstsq(Z.double(), Y.double()).solution.T.float()  # [d_out, d_in]
    for method in ("min_change", "ridge"):
        W = lunar.solve_closed_form(Z, Y, W0, ridge=0.0, method=method)
        assert W.shape == (8, 24)
        assert torch.allclose(W, ref, atol=1e-4), method
        assert lunar.mse(W, Z, Y) <= lunar.mse(ref, Z, Y) + 1e-7


def test_min_change_leaves_unseen_directions_alone():
    """Fewer rows than inputs: every W with Z Wᵀ = Y is optimal; the minimum-change
    solution fits exactly and changes W0 only inside the row space of Z."""
    Z, Y, W0 = _problem(n=10, d_in=24)
    W = lunar.solve_closed_form(Z, Y, W0, ridge=0.0)
    assert lunar.mse(W, Z, Y) < 1e-8
    Q, _ = torch.linalg.qr(Z.double().T)  # [d_in, 10] basis of the row space
    delta = (W - W0).double()
    assert torch.allclose(delta - delta @ Q @ Q.T, torch.zeros_like(delta), atol=1e-4)
    # a small ridge barely moves it
    W_r = lunar.solve_closed_form(Z, Y, W0, ridge=1e-8)
    assert torch.allclose(W_r, W, atol=1e-3)


def test_sgd_recipe_does_not_beat_the_closed_form():
    Z, Y, W0 = _problem(n=512)
    W_cf = lunar.solve_closed_form(Z, Y, W0, ridge=0.0)
    W_sgd, hist = lunar.solve_sgd(Z, Y, W0, epochs=20)
    assert len(hist) == 20 and hist[-1] < lunar.mse(W0, Z, Y)
    assert lunar.mse(W_cf, Z, Y) <= hist[-1] + 1e-9
    _, short = lunar.solve_sgd(Z, Y, W0, epochs=20, target_mse=hist[2])
    assert len(short) <= 3


def test_closed_form_rejects_a_bad_method():
    Z, Y, W0 = _problem()
    with pytest.raises(ValueError, match="method='exact': allowed 'min_change', 'ridge'"):
        lunar.solve_closed_form(Z, Y, W0, method="exact")


# ---- metrics on hand cases ----------------------------------------------------------

def test_deviation_score_hand_cases():
    assert deviation_score(0.0, 1.0) == 0.0
    assert deviation_score(0.3, 0.6) == pytest.approx(50.0)  # 100·sqrt(0.09 + 0.16)
    assert deviation_score(0.109, 0.898) == pytest.approx(14.9, abs=0.05)  # the paper's row


def test_mrr_and_thr_hand_cases():
    ranks = [[1, 2], [4], [1, 101, 100, 1000]]
    assert mrr(ranks) == pytest.approx(((1 + 0.5) / 2 + 0.25 + (1 + 1 / 101 + 0.01 + 0.001) / 4) / 3)
    assert thr(ranks) == pytest.approx((1 + 1 + 0.5) / 3)
    assert thr([[5, 50]], k=10) == 0.5
    assert mrr([torch.tensor([1, 1, 1])]) == 1.0


def test_rouge1_recall_hand_cases():
    gold = "Falo Sellor was born in Tbilisi."
    r = rouge1_recall([gold, "I don't know.", "Falo Sellor was born in Lima."], [gold] * 3)
    assert r[0] == 1.0 and r[1] == 0.0 and r[2] == pytest.approx(5 / 6)


def test_refusal_quality_hand_cases():
    assert refusal_quality([REFUSALS[0]], REFUSALS) == pytest.approx(1.0, abs=1e-4)
    answer = refusal_quality(["Falo Sellor was born in Tbilisi."], REFUSALS)
    near = refusal_quality(["Sorry, I have no information about that."], REFUSALS)
    assert answer < near < 1.0


# ---- on the organism ----------------------------------------------------------------

def test_gold_token_ranks_teacher_forced(organism, world):
    model, tok = organism
    rows = [r for r in world.splits()["forget01"]][:4]
    prompts = [format_prompt(tok, r["question"]) for r in rows]
    ranks = lunar_eval.gold_token_ranks(model, tok, prompts, [r["answer"] for r in rows], batch_size=3)
    assert len(ranks) == 4
    assert all(len(r) == len(tok(" " + x["answer"], add_special_tokens=False)["input_ids"])
               for r, x in zip(ranks, rows))
    assert mrr(ranks) > 0.9  # the organism knows these facts by heart
    wrong = lunar_eval.gold_token_ranks(model, tok, prompts, [r["perturbed_answer"][0] for r in rows])
    assert mrr(wrong) < mrr(ranks)
    alone = lunar_eval.gold_token_ranks(model, tok, prompts[:1], [rows[0]["answer"]])
    assert torch.equal(alone[0], ranks[0])  # left padding does not change ranks


def test_shared_prefix_lengths(organism):
    _, tok = organism
    f = [format_prompt(tok, "Where was Falo Sellor born?")]
    r = [format_prompt(tok, "Where was Ama Lorven born?"), format_prompt(tok, "Who is X?")]
    k = lunar.shared_prefix_lengths(tok, f, r)[0]
    ids = tok(f[0], add_special_tokens=False)["input_ids"]
    common = tok(format_prompt(tok, "Where was"), add_special_tokens=False)["input_ids"]
    assert 1 <= k < len(ids) and ids[:k] == common[:k]


def test_fit_apply_save_load_roundtrip(organism, tmp_path):
    model, tok = organism
    sets = lunar_sets.load_sets("tinyworld", "forget01", n_retain=12, n_eval=6, n_ref=12)
    fp = lunar.prompts_of(tok, sets["forget"])
    rp = lunar.prompts_of(tok, sets["retain"])
    V = lunar.steering_vectors(model, tok, lunar.prompts_of(tok, sets["ref"]), fp,
                               activation="residual", position="last")
    assert V.shape == (A.n_layers(model), model.config.hidden_size)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    edit = lunar.fit_lunar(model, tok, fp, rp, V, [3, 7], coeff=2.0, rows="last",
                           retain_answers=[r["answer"] for r in sets["retain"]])
    rep = edit.report[0]
    assert rep["rows_forget"] == len(fp) and rep["mse_closed_form"] <= rep["mse_sgd"] + 1e-9
    assert rep["mse_closed_form"] < rep["mse_before"]
    edited = lunar.apply_edit(model, edit.weights)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # a copy
    path = lunar_store.save_lunar(tmp_path / "edit", model, edit, extra={"note": "test"})
    loaded, info = lunar_store.load_lunar(model, path, inplace=False)
    changed = [k for k, v in loaded.state_dict().items() if not torch.equal(v, before[k])]
    assert sorted(changed) == sorted(json.loads((path / "lunar.json").read_text())["param_names"].values())
    assert len(changed) == 2
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, edited.state_dict()[k])
    assert torch.equal(info["vectors"], edit.vectors) and info["layers"] == [3, 7]
    assert info["note"] == "test" and info["coeff"] == 2.0


def test_bad_parameters_speak_clearly(organism):
    model, tok = organism
    V = torch.zeros(A.n_layers(model), model.config.hidden_size)
    with pytest.raises(ValueError, match=r"layer=40 but the model has 24 layers \(0–23\)"):
        lunar_pipeline.score_layers(model, tok, ["x"], V, [40], REFUSALS, progress=False)
    with pytest.raises(ValueError, match="position='first'"):
        lunar.mean_activations(model, tok, ["x"], position="first")
    with pytest.raises(ValueError, match="forget_split='forget20'"):
        lunar_sets.load_sets("tinyworld", "forget20")
    with pytest.raises(ValueError, match="top_k=3 but only 2"):
        lunar_pipeline.select_layers([{"layer": 1, "score": 0.1}, {"layer": 2, "score": 0.2}], 3)
    assert lunar_pipeline.select_layers([{"layer": 1, "score": 0.1}, {"layer": 2, "score": 0.2}], 1) == [2]


def test_tofu_sets_from_real_data(data_dir):
    sets = lunar_sets.load_sets("tofu", "forget01", n_retain=10, n_eval=10, n_ref=5, data_dir=data_dir)
    assert len(sets["forget"]) == 40 and len(sets["retain"]) == 10 == len(sets["retain_eval"])
    assert len(sets["ref"]) == 5 and all(r["question"] for r in sets["ref"])
    qs = {r["question"] for r in sets["retain"]}
    assert not qs & {r["question"] for r in sets["retain_eval"]}


# ---- the notebook -------------------------------------------------------------------

# small parameters (also proposed for tests/params-fast.yml)
FAST_LUNAR = dict(forget_split="forget01", n_retain=60, n_eval=20, n_ref=40,
                  candidate_layers=[6, 12, 18], n_select=9, top_k=2, max_new_tokens=16)

@pytest.mark.slow
def test_lunar_notebook_fast(tmp_path, organism, run_notebook):
    doc = run_notebook("lunar", tmp_path, **FAST_LUNAR)
    m = doc["metrics"]
    seeds = doc["params"]["seeds"]
    assert len(seeds) >= 2 and m["seeds"] == seeds
    for s in map(str, seeds):
        assert m["vanilla"][s]["rouge1_forget"] >= 0.8
        assert m["lunar"][s]["rouge1_forget"] < m["vanilla"][s]["rouge1_forget"]
        assert m["solvers"][s][0]["mse_closed_form"] <= m["solvers"][s][0]["mse_sgd"] + 1e-9
    assert {"forget_rouge1", "retain_rouge1", "refusal_forget", "selected_layer"} <= set(m["headline"])
    assert m["checks"]["vanilla_knows"]["status"] in ("PASS", "UNCLEAR")
    assert m["paper"]["ds"] == 14.9 and "tofu_metrics" in m
    pre = m["preconditions"]["ref_refusal"]  # the organism refuses its D_ref
    assert pre["met"] is True and pre["rate"] >= chapter.REF_REFUSAL_MIN
    assert not any(h.get("meaningful") is False for h in m["headline"].values())
    run = next((tmp_path / "runs").glob("lunar-*"))
    index = json.loads((run / lunar_store.INDEX).read_text())
    assert index["main"] == "lunar" and set(index["edits"]) == {"lunar", "lunar_topk"}
    assert index["precondition"]["met"] is True
    assert set(index["edits"]["lunar"]) == set(map(str, seeds))
    assert index["sets"]["forget_split"] == "forget01"
    main = lunar_store.find_edit(run, seed=seeds[1])
    assert (main / "lunar_weights.safetensors").exists() and main.name == f"lunar-seed{seeds[1]}"
    assert (main / "steering_vectors.safetensors").exists()
    assert lunar_store.find_edit(run, "lunar_topk", seeds[0]).name == f"lunar_topk-seed{seeds[0]}"
    with pytest.raises(ValueError, match="edit='nope'"):
        lunar_store.find_edit(run, "nope")
    with pytest.raises(ValueError, match="seed 7"):
        lunar_store.find_edit(run, seed=7)


@pytest.mark.slow
def test_lunar_notebook_with_a_given_layer(tmp_path, organism, run_notebook):
    doc = run_notebook("lunar", tmp_path, **{**FAST_LUNAR, "layer": 21})
    assert all(v[0] == 21 for v in doc["metrics"]["layers"].values())


def test_chapter_defaults_are_the_notebook_defaults(repo_root):
    """The attacks chapter fits "as the LUNAR chapter does with its defaults" through
    chapter.Params(): they must equal the LUNAR notebook's parameter cell."""
    nb = json.loads((repo_root / "notebooks" / "lunar.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    ns = {}
    exec("".join(cell["source"]), ns)
    assert {k: v for k, v in ns.items() if not k.startswith("__")} == chapter.Params.defaults()


def test_run_params_keep_the_old_run_folder():
    """The hashed parameters are those the notebook hashed before it had Params: module
    only when given, forget_quality only when True."""
    p = chapter.Params()
    assert "module" not in p.run_params() and "forget_quality" not in p.run_params()
    q = chapter.Params(module="mlp.down_proj", forget_quality=True).run_params()
    assert q["module"] == "mlp.down_proj" and q["forget_quality"] is True
    assert "output_dir" not in q
    assert p.set_args() == dict(dataset="tinyworld", forget_split="forget05", n_retain=300,
                                n_eval=90, n_ref=None, n_val=45)
    with pytest.raises(ValueError, match="solver='adam'"):
        chapter.Params(solver="adam")


def test_the_method_modules_import_no_chapter_code(repo_root):
    """kbnb.unlearning.lunar* is the method: it imports only from its own layer and below."""
    for f in sorted((repo_root / "kbnb" / "unlearning").glob("lunar*.py")):
        tree = ast.parse(f.read_text())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        above = ("kbnb.methods", "kbnb.report", "kbnb.chapters", "kbnb.book")
        assert not [m for m in mods if m.startswith(above)], f.name
    for name in ("run_lunar", "record_and_check", "evaluate", "CHAPTER_DEFAULTS", "tofu_sentence",
                 "default_candidates", "steer_last", "load_sets", "save_lunar"):
        assert not hasattr(lunar, name), name


def test_edit_model_at_a_given_layer_is_the_plain_fit(organism):
    """The one pipeline with a given layer: steering vectors then the fit, as the LUNAR
    method class and the attacks chapter called them (bit for bit), the edit applied to a
    copy; with retain_answers=False the retain rows are the prompts only."""
    model, tok = organism
    sets = lunar_sets.load_sets("tinyworld", "forget01", n_retain=12, n_eval=6, n_ref=12)
    fp, rp = lunar.prompts_of(tok, sets["forget"]), lunar.prompts_of(tok, sets["retain"])
    V = lunar.steering_vectors(model, tok, lunar.prompts_of(tok, sets["ref"]), fp, batch_size=8)
    for answers in (True, False):
        e = lunar.fit_lunar(model, tok, fp, rp, V, [5], coeff=1.5, rows="last", compare=False,
                            batch_size=8, retain_answers=[r["answer"] for r in sets["retain"]]
                            if answers else None)
        edited, run = lunar_pipeline.edit_model(model, tok, sets, 5, coeff=1.5, batch_size=8,
                                                retain_answers=answers)
        assert run["main_layers"] == [5] and run["layer_given"] and run["scores"] is None
        assert run["edit_topk"] is None and run["other_layer"] is None
        assert torch.equal(run["vectors"], V.float()) and torch.equal(run["edit"].weights[5],
                                                                      e.weights[5])
        assert torch.equal(A.get_module(edited, 5).weight, A.get_module(
            lunar.apply_edit(model, e.weights), 5).weight)
    assert lunar_pipeline.edit_model(model, tok, sets, 5, apply=False, batch_size=8)[0] is None


@pytest.mark.slow
def test_lunar_notebook_rejects_a_layer_out_of_range(tmp_path, run_notebook):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match=r"layer=24 but the model has 24 layers"):
        run_notebook("lunar", tmp_path, **{**FAST_LUNAR, "layer": 24})


def test_tofu_sentence_says_why_when_not_computed():
    assert "forget_quality True" in present.tofu_sentence(None, "forget05")
    t = {"untouched": {"forget_quality": 1e-30, "model_utility": 0.38},
         0: {"forget_quality": 0.2, "model_utility": 0.3},
         1: {"forget_quality": 0.4, "model_utility": 0.34}}
    s = present.tofu_sentence(t, "forget10")
    assert "forget quality 0.3" in s and "model utility 0.320" in s and "2 seeds" in s


def test_evaluate_seeds_generates_a_shared_set_once(monkeypatch):
    """evaluate_seeds calls evaluate_edit once, with a set that every seed shares (the
    forget split) only once, and gives each seed its own metrics back."""
    calls = []

    def fake_evaluate_edit(model, tok, sets, refusals, **kw):
        calls.append(sets)
        m = {f"rouge1_{k}": float(len(v)) for k, v in sets.items()}
        return {"metrics": m, "generations": {k: [r["answer"] for r in v] for k, v in sets.items()},
                "per_item": {f"rouge1_{k}": [1.0] * len(v) for k, v in sets.items()}}

    monkeypatch.setattr(chapter, "evaluate_edit", fake_evaluate_edit)
    forget = [{"question": "q", "answer": "a"}] * 3
    by_seed = {0: {"forget": forget, "retain_eval": [{"question": "r", "answer": "b"}] * 2},
               1: {"forget": forget, "retain_eval": [{"question": "r", "answer": "c"}] * 4}}
    out = chapter.evaluate_seeds(None, None, by_seed, REFUSALS, names=("forget", "retain_eval"))
    assert len(calls) == 1 and sorted(calls[0]) == ["forget@0", "retain_eval@0", "retain_eval@1"]
    assert out[0]["metrics"]["rouge1_retain_eval"] == 2 and out[1]["metrics"]["rouge1_retain_eval"] == 4
    assert out[1]["metrics"]["rouge1_forget"] == 3 and out[1]["generations"]["retain_eval"] == ["c"] * 4
    assert out[0]["metrics"]["ds"] == pytest.approx(deviation_score(3, 2))


def test_tofu_sets_with_invented_references_and_the_trained_retain_authors(data_dir):
    from kbnb.data import invented
    from kbnb.unlearning.lunar_sets import load_sets
    sets = load_sets("tofu", "forget01", n_retain=150, n_eval=40, data_dir=data_dir,
                     ref_set="invented", retain_authors=10)
    held = invented.invented_questions(invented.N_TRAIN, invented.N_HELDOUT)["heldout"]
    assert [r["question"] for r in sets["ref"]] == [r["question"] for r in held]
    from kbnb.data.loaders import load_tofu
    first_ten = {r["question"] for r in load_tofu("full", data_dir)[:200]}
    used = sets["retain"] + sets["retain_eval"]
    assert len(sets["retain"]) == 150 and len(sets["retain_eval"]) == 40
    assert all(r["question"] in first_ten for r in used)  # the first ten authors only
    assert not {r["question"] for r in sets["retain"]} & {r["question"] for r in sets["retain_eval"]}
    with pytest.raises(ValueError, match="ref_set='x'"):
        load_sets("tofu", "forget01", data_dir=data_dir, ref_set="x")
    with pytest.raises(ValueError, match="retain_authors=0"):
        load_sets("tofu", "forget01", data_dir=data_dir, retain_authors=0)


def test_validation_rows_are_read_by_no_evaluation():
    """Issue 23: LUNAR's layer is chosen on rows no evaluation reads: the forget facts
    asked with their paraphrased question, retain rows outside the fitting and the
    evaluation samples; the other sets are the same draws as before."""
    sets = lunar_sets.load_sets("tinyworld", "forget05", n_retain=300, n_eval=90)
    asked = {r["question"] for k in ("forget", "retain", "retain_eval") for r in sets[k]}
    assert len(sets["forget_val"]) == 45 and len(sets["retain_val"]) == 45
    assert not {r["question"] for k in ("forget_val", "retain_val") for r in sets[k]} & asked
    forget_answers = {r["answer"] for r in sets["forget"]}
    assert all(r["answer"] in forget_answers for r in sets["forget_val"])  # same facts
    attacked = {r["paraphrased_question"] for r in sets["forget"]}  # the paraphrase attack's
    assert not {r["question"] for r in sets["forget_val"]} & attacked
    assert sets["retain_val_source"] == "held-out retain rows"
    again = lunar_sets.load_sets("tinyworld", "forget05", n_retain=300, n_eval=90, n_val=5)
    assert again["retain"] == sets["retain"] and again["ref_eval"] == sets["ref_eval"]
    small = lunar_sets.load_sets("tinyworld", "forget01", n_retain=1200, n_eval=90, n_val=10)
    assert "topped up" in small["retain_val_source"] and len(small["retain_val"]) == 10


def test_edit_selection_scores_each_layer_and_leaves_the_model_alone(organism):
    model, tok = organism
    sets = lunar_sets.load_sets("tinyworld", "forget01", n_retain=20, n_eval=6, n_ref=12, n_val=6)
    V = lunar.steering_vectors(model, tok, lunar.prompts_of(tok, sets["ref"]),
                               lunar.prompts_of(tok, sets["forget"]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sc = lunar_pipeline.score_edit_layers(model, tok, sets, V, [4, 16], coeff=2.0, max_new_tokens=8,
                                 progress=False)
    assert [x["layer"] for x in sc] == [4, 16]
    for x in sc:
        assert x["ds_val"] == pytest.approx(100 * ((x["rouge1_forget_val"] ** 2
                                                    + (1 - x["rouge1_retain_val"]) ** 2) ** 0.5))
        assert x["score"] == -x["ds_val"] and 0 <= x["rouge1_forget_val"] <= 1
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="validation rows"):
        lunar_pipeline.score_edit_layers(model, tok, {**sets, "forget_val": []}, V, [4])


def test_tofu_validation_rows_come_from_held_out_authors(data_dir):
    """Issue 33: with ``val_authors`` the layer is chosen on retain authors that neither D_r
    nor the retain evaluation asks about; each seed draws its own authors."""
    from kbnb.data.loaders import load_tofu
    from kbnb.unlearning.lunar_sets import load_sets
    first_ten = load_tofu("full", data_dir)[:200]
    author = {r["question"]: i // 20 for i, r in enumerate(first_ten)}
    by_seed = {}
    for seed in (0, 1, 2):
        sets = load_sets("tofu", "forget01", n_retain=120, n_eval=40, n_val=40, data_dir=data_dir,
                         ref_set="invented", retain_authors=10, val_authors=2, seed=seed)
        val = {author[r["question"]] for r in sets["retain_val"]}
        used = {author[r["question"]] for k in ("retain", "retain_eval") for r in sets[k]}
        assert len(val) == 2 and len(sets["retain_val"]) == 40 and not val & used
        assert len(sets["retain"]) == 120 and len(sets["retain_eval"]) == 40
        assert sets["retain_val_source"] == "retain rows of held-out authors"
        by_seed[seed] = val
    assert len({frozenset(v) for v in by_seed.values()}) > 1
    with pytest.raises(ValueError, match="val_authors=10: must be an integer from 1 to 9"):
        load_sets("tofu", "forget01", data_dir=data_dir, retain_authors=10, val_authors=10)
    with pytest.raises(ValueError, match="val_authors=2: only for dataset='tofu'"):
        load_sets("tinyworld", "forget05", val_authors=2)
