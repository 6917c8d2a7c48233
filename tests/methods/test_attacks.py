"""Attacks on a LUNAR edit: each changes exactly what it claims to; the chapter's glue."""
import ast
import copy
import math

import pytest
import torch

from kbnb.chapters import lunar_attacks as chapter
from kbnb.lm import activations as A
from kbnb.methods import attacks as AT
from kbnb.unlearning import lunar as LU
from kbnb.unlearning import lunar_sets, lunar_store

LAYER = 5


def max_distinct_per_group(W: torch.Tensor, blocksize: int = 64) -> int:
    """The largest number of distinct values in any group of ``blocksize``
    consecutive weights of ``W`` (≤ 16 after 4-bit quantisation)."""
    G, pad = AT._groups(W.detach().float(), blocksize)
    if pad:  # the padding zeros are not weights
        last = G[-1, :blocksize - pad]
        body = max((len(torch.unique(g)) for g in G[:-1]), default=0)
        return max(body, len(torch.unique(last)))
    return max(len(torch.unique(g)) for g in G)


def _logits(model, tok, prompts):
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        return model(**enc, use_cache=False).logits


@pytest.fixture(scope="module")
def prompts(organism, world):
    _, tok = organism
    return LU.prompts_of(tok, world.splits()["forget01"][:6])


@pytest.fixture(scope="module")
def small_edit(organism):
    """A real LUNAR edit fitted here on forget01, and its sets."""
    model, tok = organism
    sets = lunar_sets.load_sets("tinyworld", "forget01", n_retain=20)
    edited, info = chapter.lunar_edit(model, tok, sets, layer=LAYER, coeff=2.0)
    return edited, info, sets


def test_bad_attack_names_are_rejected():
    with pytest.raises(ValueError, match="attacks='skip'.*'layer_skip'.*'paraphrase'"):
        AT.check_attacks(["reverse", "skip"])
    assert AT.check_attacks("reverse") == ["reverse"]


def test_skip_mlp_equals_a_model_without_that_mlp(organism, prompts):
    model, tok = organism
    ref = copy.deepcopy(model)
    with torch.no_grad():
        A.get_module(ref, LAYER).weight.zero_()
    base = _logits(model, tok, prompts)
    with A.skip(model, LAYER):
        skipped = _logits(model, tok, prompts)
    torch.testing.assert_close(skipped, _logits(ref, tok, prompts))
    assert (skipped - base).abs().max() > 1e-4  # the MLP mattered
    torch.testing.assert_close(_logits(model, tok, prompts), base)  # hook removed


def test_skip_block_equals_a_model_without_that_block(organism, prompts):
    model, tok = organism
    ref = copy.deepcopy(model)
    del A.get_layers(ref)[LAYER]
    ref.config.num_hidden_layers -= 1
    base = _logits(model, tok, prompts)
    with A.skip(model, [LAYER], "block"):
        skipped = _logits(model, tok, prompts)
    torch.testing.assert_close(skipped, _logits(ref, tok, prompts))
    assert (skipped - base).abs().max() > 1e-4


def test_layer_skip_removes_the_edit(organism, small_edit, prompts):
    """The edit lives in the skipped MLP, so with it skipped the edited model and the
    vanilla model compute the same thing."""
    model, tok = organism
    edited, info, _ = small_edit
    assert (_logits(edited, tok, prompts) - _logits(model, tok, prompts)).abs().max() > 1e-3
    with A.skip(edited, info["layers"]), A.skip(model, info["layers"]):
        torch.testing.assert_close(_logits(edited, tok, prompts), _logits(model, tok, prompts))


@pytest.mark.parametrize("rows", ["last", "prompt"])
def test_reverse_direction_subtracts_coeff_times_r_on_the_prompt(organism, prompts, rows):
    model, tok = organism
    d = model.config.hidden_size
    vectors = torch.zeros(A.n_layers(model), d)
    vectors[LAYER] = torch.arange(d, dtype=torch.float32) / d
    cap = lambda: A.capture(model, tok, prompts, layers=[LAYER], position="all")
    before = cap()
    with AT.reverse_direction(model, [LAYER], vectors, coeff=3.0, rows=rows):
        after = cap()
    for b, a in zip(before, after):  # [1, T, d] each
        diff = a[0] - b[0]
        expect = torch.zeros_like(diff)
        if rows == "last":
            expect[-1] = -3.0 * vectors[LAYER]
        else:
            expect[:] = -3.0 * vectors[LAYER]
        torch.testing.assert_close(diff, expect, atol=1e-5, rtol=0)
    # prompt only: a generated token (sequence length 1) is left alone
    mod = A.get_module(model, LAYER)
    x = torch.randn(2, 1, mod.in_features)
    with AT.reverse_direction(model, [LAYER], vectors, coeff=3.0, rows=rows):
        torch.testing.assert_close(mod(x), torch.nn.functional.linear(x, mod.weight))


def test_reverse_direction_undoes_the_edit_on_the_last_token(organism, small_edit, prompts):
    """A rows='last' edit adds ~coeff·r at the last prompt token; reversing it brings
    the down-projection's output there back close to the vanilla one."""
    model, tok = organism
    edited, info, _ = small_edit
    l = info["layers"][0]
    cap = lambda m: A.capture(m, tok, prompts, layers=[l], position="last")[0]
    van, ed = cap(model), cap(edited)
    with AT.reverse_direction(edited, [l], info["vectors"], info["coeff"], info["rows"]):
        rev = cap(edited)
    assert (rev - van).norm(dim=1).mean() < 0.5 * (ed - van).norm(dim=1).mean()


def test_quantize_rtn_hand_case():
    w = torch.tensor([0.7, -0.35, 0.1, 0.0, -0.7, 0.05, 0.3, -0.2])
    q = AT.quantize_rtn(w, blocksize=4)
    s1, s2 = 0.7 / 7, 0.7 / 7
    torch.testing.assert_close(q, torch.tensor([7, -4, 1, 0, -7, 0, 3, -2]) * torch.tensor(
        [s1] * 4 + [s2] * 4), atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["nf4", "rtn"])
def test_quantized_weights_take_at_most_16_values_per_group(organism, method):
    pytest.importorskip("bitsandbytes") if method == "nf4" else None
    model, _ = organism
    q, info = AT.quantize_model(model, method=method, blocksize=64)
    assert info["method"] == {"nf4": "bitsandbytes-nf4", "rtn": "rtn-int4"}[method]
    mods = AT.quantized_linears(q)
    assert info["n_weights"] == len(mods) > 0
    orig = dict(AT.quantized_linears(model))
    for name, m in mods:
        assert max_distinct_per_group(m.weight, 64) <= 16
        assert max_distinct_per_group(orig[name].weight, 64) > 16  # the original was not
        err = (m.weight - orig[name].weight).abs().max() / orig[name].weight.abs().max()
        assert 0 < err < 0.2
    torch.testing.assert_close(q.get_input_embeddings().weight, model.get_input_embeddings().weight)


def test_quantize_falls_back_and_says_so(organism, monkeypatch):
    model, _ = organism

    def broken(W, blocksize=64):
        raise RuntimeError("no backend")

    monkeypatch.setattr(AT, "quantize_nf4", broken)
    q, info = AT.quantize_model(model, method="auto")
    assert info["method"].startswith("rtn-int4 (fallback: RuntimeError: no backend")
    assert all(max_distinct_per_group(m.weight, 64) <= 16 for _, m in AT.quantized_linears(q))
    with pytest.raises(ValueError, match="method='int3'"):
        AT.quantize_model(model, method="int3")


def test_paraphrase_rows(world):
    rows = world.splits()["forget01"][:3]
    para, n = AT.paraphrase_rows(rows)
    assert n == 3
    assert [p["question"] for p in para] == [r["paraphrased_question"] for r in rows]
    assert [p["original_question"] for p in para] == [r["question"] for r in rows]
    assert all(p["question"] != r["question"] for p, r in zip(para, rows))
    plain = [{"question": "Q1", "answer": "a"}, {"question": "Q2", "answer": "b"}]
    para, n = AT.paraphrase_rows(plain, {"Q2": "Q2 rephrased"})
    assert n == 1 and [p["question"] for p in para] == ["Q1", "Q2 rephrased"]


def test_tofu_paraphrases(data_dir):
    lookup = AT.tofu_paraphrases(data_dir)
    from kbnb.data.loaders import load_tofu
    rows = load_tofu("forget01", data_dir)
    para, n = AT.paraphrase_rows(rows, lookup)
    assert n == len(rows)


def test_recovery_and_conclusion():
    assert AT.recovery(0.55, 0.1, 1.0) == pytest.approx(0.5)
    assert math.isnan(AT.recovery(0.5, 0.5, 0.5))

    def res(**r1):
        return {k: {"metrics": {"rouge1_forget": v, "refusal_rate_forget": 0.0, "rq_forget": 0.2,
                                "rouge1_retain_eval": 0.9}} for k, v in r1.items()}

    text = chapter.conclusion(res(vanilla=1.0, lunar=0.2, layer_skip=0.22, quantize=0.21))
    assert "LUNAR lowers forget ROUGE-1 recall (1.00 before, 0.20 after)" in text
    assert "No attack brings back" in text
    assert "skip edited MLP (forget ROUGE-1 0.22, 2% of the forgotten recall back)" in text
    text = chapter.conclusion(res(vanilla=1.0, lunar=0.2, layer_skip=1.0, reverse=0.3))
    assert "Knowledge comes back under 1 of 2 attacks: skip edited MLP" in text
    assert "stays forgotten under reverse direction" in text
    text = chapter.conclusion(res(vanilla=0.1, lunar=0.1, quantize=0.1))
    assert "does not lower" in text and "nothing to recover" in text


def test_lunar_edit_saves_and_loads(organism, small_edit, tmp_path):
    model, tok = organism
    _, _, sets = small_edit
    edited, info = chapter.lunar_edit(model, tok, sets, layer=LAYER, coeff=2.0,
                                      save_to=tmp_path / "lunar")
    assert info["layers"] == [LAYER] and "saved to" in info["source"]
    loaded, info2 = chapter.lunar_edit(model, tok, sets, lunar_dir=str(tmp_path))  # the run folder
    assert info2["layers"] == [LAYER] and info2["coeff"] == 2.0 and info2["rows"] == "last"
    torch.testing.assert_close(A.get_module(loaded, LAYER).weight, A.get_module(edited, LAYER).weight)
    torch.testing.assert_close(info2["vectors"], info["vectors"])
    with pytest.raises(ValueError, match="layer=3 but the edit"):
        chapter.lunar_edit(model, tok, sets, lunar_dir=str(tmp_path), layer=3)
    with pytest.raises(FileNotFoundError, match="no saved LUNAR edit"):
        chapter.lunar_edit(model, tok, sets, lunar_dir=str(tmp_path / "nothing"))


def test_evaluate_attacks_on_the_organism(organism, small_edit):
    model, tok = organism
    edited, info, sets = small_edit
    sets = dict(sets, forget=sets["forget"][:8], retain_eval=sets["retain_eval"][:8])
    res = AT.evaluate_attacks(model, copy.deepcopy(edited), tok, sets, ["layer_skip", "paraphrase",
                              "quantize"], info["layers"], info["vectors"], info["coeff"],
                              sets["refusals"], rows=info["rows"], max_new_tokens=12,
                              progress=False)
    assert list(res) == ["vanilla", "vanilla_paraphrase", "lunar", "layer_skip", "paraphrase",
                         "quantize"]
    assert res["quantize"]["quant"]["method"]
    assert res["paraphrase"]["n_paraphrased"] == 8
    # skipping the edited MLP of an edit that only lives there gives vanilla-like output
    assert res["layer_skip"]["metrics"]["rouge1_forget"] >= res["lunar"]["metrics"]["rouge1_forget"]
    table = chapter.attack_table(res)
    assert list(table.columns[:5]) == ["name", "forget ROUGE-1", "refusal rate", "RQ", "retain ROUGE-1"]
    assert not math.isnan(table.loc["attack: skip edited MLP", "recovered share"])


def test_lunar_edit_picks_the_main_edit_of_a_lunar_run(organism, small_edit, tmp_path):
    """A LUNAR chapter's run folder holds several edits (per seed, main and top-k) and an
    index: the attacks take its main edit of their seed, or the one named by ``edit``."""
    model, tok = organism
    _, _, sets = small_edit
    e0 = chapter.lunar_edit(model, tok, sets, layer=LAYER, coeff=2.0)[1]
    fp = LU.prompts_of(tok, sets["forget"])
    rp = LU.prompts_of(tok, sets["retain"])
    edits = {s: LU.fit_lunar(model, tok, fp, rp, e0["vectors"], [l], coeff=2.0, compare=False)
             for s, l in ((0, LAYER), (1, LAYER + 1))}
    top = {0: LU.fit_lunar(model, tok, fp, rp, e0["vectors"], [LAYER, 2], coeff=2.0,
                           compare=False)}
    lunar_store.save_edits(tmp_path, model, {"lunar": edits, "lunar_topk": top},
                             sets={"dataset": "tinyworld", "forget_split": "forget01"})
    assert chapter.lunar_edit(model, tok, sets, lunar_dir=str(tmp_path), seed=1)[1]["layers"] == [LAYER + 1]
    info = chapter.lunar_edit(model, tok, sets, lunar_dir=str(tmp_path), edit="lunar_topk", seed=0)[1]
    assert info["layers"] == [LAYER, 2]
    with pytest.raises(ValueError, match="seeds 0 only"):
        chapter.lunar_edit(model, tok, sets, lunar_dir=str(tmp_path), edit="lunar_topk", seed=1)
    args = chapter.set_args(lunar_store.edit_index(tmp_path), "tinyworld", "forget05", 300)
    assert args == {"dataset": "tinyworld", "forget_split": "forget01"}
    with pytest.raises(ValueError, match="fitted on 'tinyworld'"):
        chapter.set_args(lunar_store.edit_index(tmp_path), "tofu", "forget05", 300)


def test_set_args_without_a_lunar_run_take_the_lunar_chapter_defaults():
    assert chapter.set_args({}, "tofu", "forget01", 20) == dict(
        dataset="tofu", forget_split="forget01", n_retain=20, n_eval=90, n_ref=None)


def test_attacks_params_hash_the_checked_attacks():
    p = chapter.Params(attacks="reverse")
    assert p.run_params()["attacks"] == ["reverse"] and "module" not in p.run_params()
    with pytest.raises(ValueError, match="attacks='finetune'"):
        chapter.Params(attacks=["finetune"])
    with pytest.raises(ValueError, match="blocksize=0"):
        chapter.Params(blocksize=0)


def test_the_attacks_module_imports_no_chapter_code(repo_root):
    """kbnb.methods.attacks holds the attacks only: no import of chapter or report code."""
    tree = ast.parse((repo_root / "kbnb" / "methods" / "attacks.py").read_text())
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not [m for m in mods if m.startswith(("kbnb.report", "kbnb.chapters", "kbnb.book"))]
    for name in ("lunar_edit", "record_and_check", "conclusion", "set_args", "plot_attacks",
                 "skip_mlp", "skip_block", "max_distinct_per_group"):
        assert not hasattr(AT, name), name


# ---------------------------------------------------------------- notebook ----
FAST = dict(forget_split="forget01", n_retain=20, max_new_tokens=16, n_examples=2)


@pytest.mark.slow
def test_lunar_attacks_notebook(tmp_path, organism, run_notebook):
    doc = run_notebook("lunar_attacks", tmp_path, **FAST)
    m = doc["metrics"]
    assert doc["params"]["forget_split"] == "forget01" and doc["params"]["lunar_dir"] == ""
    seeds = doc["params"]["seeds"]
    assert len(seeds) >= 2 and set(m["settings"]) == set(map(str, seeds))
    s = m["settings"][str(seeds[0])]
    assert list(s) == ["vanilla", "vanilla_paraphrase", "lunar", "layer_skip",
                       "block_skip", "reverse", "paraphrase", "quantize"]
    assert m["quant_method"].startswith(("bitsandbytes-nf4", "rtn-int4"))
    assert s["lunar"]["rouge1_forget"] < s["vanilla"]["rouge1_forget"]  # the edit forgot something
    for name in ("vanilla", "lunar", "quantize"):
        assert 0 <= s[name]["rouge1_forget"] <= 1 and 0 <= s[name]["refusal_rate_forget"] <= 1
        assert "rq_forget" in s[name] and "rouge1_retain_eval" in s[name]
    for a in ("layer_skip", "block_skip", "reverse", "paraphrase", "quantize"):
        assert f"recovery_{a}" in m["headline"] and f"{a}_holds" in m["checks"]
    assert m["seed_report"]["vanilla"] == 0.57
    run = next((tmp_path / "runs").glob("lunar_attacks-*"))
    assert (run / f"lunar-seed{seeds[0]}" / "lunar.json").exists()
    assert (run / "fig_attacks.png").exists()
    # reusing the LUNAR chapter's edits (lunar_dir) is covered by
    # test_lunar_edit_picks_the_main_edit_of_a_lunar_run


@pytest.mark.slow
def test_lunar_attacks_notebook_rejects_a_bad_attack(tmp_path, run_notebook):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match="attacks='finetune': allowed 'layer_skip'"):
        run_notebook("lunar_attacks", tmp_path, **FAST, attacks=["reverse", "finetune"])
