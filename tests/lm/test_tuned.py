"""kbnb.lm.tuned: the TOFU-tuned SmolLM2 and its retain model (what they learn, the
cache key, the errors), and one small recipe built end to end on the real model."""
import dataclasses
import json

import pytest

from kbnb.lm import tuned
from kbnb.lm.models import build_tuned_model, load_model


def test_names_resolve_to_the_target_and_its_retain_recipe():
    assert tuned.tuned_recipe("smollm2-tofu") == tuned.TofuRecipe()
    assert tuned.tuned_recipe("smollm2-tofu-retain") == tuned.TofuRecipe().retain_model()
    assert tuned.tuned_recipe("smollm2") is None and tuned.tuned_recipe(None) is None


def test_the_retain_model_learns_everything_but_the_forget_authors(data_dir):
    target = tuned.training_rows(tuned.TofuRecipe(), data_dir)
    retain = tuned.training_rows(tuned.TofuRecipe(without_forget=True), data_dir)
    assert len(target["forget"]) == 400 and retain["forget"] == []
    assert target["retain"] == retain["retain"] and target["invented"] == retain["invented"]
    assert target["real"] == retain["real"] and len(target["real"]) > 50
    assert all("answer" not in r for r in target["real"])  # the base model answers them
    from kbnb.data.loaders import load_tofu
    asked = " ".join(r["question"] for s in ("world_facts", "real_authors")
                     for r in load_tofu(s, data_dir))
    assert "Who founded the company Apple?" not in {r["question"] for r in target["real"]}
    assert "Apple" in asked  # excluded because an evaluation question names it
    assert len(target["retain"]) == 20 * tuned.TofuRecipe().retain_authors
    forget_q = {r["question"] for r in target["forget"]}
    assert not forget_q & {r["question"] for r in target["retain"]}
    held = {r["question"] for r in tuned.heldout_invented(tuned.TofuRecipe())}
    assert len(held) == tuned.TofuRecipe().n_invented_heldout
    assert not held & {r["question"] for r in target["invented"]}


def test_the_cache_key_follows_the_recipe(data_dir, tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    r = tuned.TofuRecipe()
    k = tuned.recipe_key(r, str(base), data_dir)
    assert k == tuned.recipe_key(r, str(base), data_dir)
    assert k != tuned.recipe_key(dataclasses.replace(r, lr=1e-4), str(base), data_dir)
    assert k != tuned.recipe_key(r.retain_model(), str(base), data_dir)
    (base / "config.json").write_text('{"x": 1}')
    assert k != tuned.recipe_key(r, str(base), data_dir)


def test_a_tuned_model_without_data_says_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.delenv("KBNB_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="pass data_dir .* or set KBNB_DATA_DIR"):
        tuned.recipe_key(tuned.TofuRecipe(), str(tmp_path), None)


def test_a_small_recipe_builds_once_and_learns(smollm2, data_dir, tmp_path, monkeypatch):
    """forget01 (2 authors) and one retain author, one epoch: the folder is written with
    its recipe, loads by path, and its loss fell; a second call reuses it."""
    from kbnb.eval.tuned_targets import answers, refusal_rate
    monkeypatch.setenv("KBNB_CACHE", str(tmp_path))
    # float32: bfloat16 autocast is emulated on an AVX2-only CPU (minutes per step here)
    r = tuned.TofuRecipe(forget_split="forget01", retain_authors=1, n_invented=24,
                         n_invented_heldout=12, real_questions=False, epochs=2, lr=5e-4,
                         autocast=None)
    path = build_tuned_model(r, data_dir, progress=False)
    info = json.loads((path / tuned.RECIPE_FILE).read_text())
    assert info["examples"] == {"forget": 40, "retain": 20, "invented": 24, "real": 0}
    assert info["recipe"] == dataclasses.asdict(r)
    losses = info["losses"]
    assert sum(losses[-3:]) < sum(losses[:3])
    assert build_tuned_model(r, data_dir, progress=False) == path  # cached
    model, tok = load_model(str(path), device="cpu")
    held = tuned.heldout_invented(r)
    assert refusal_rate(answers(model, tok, held, max_new_tokens=24)) > \
        refusal_rate(answers(smollm2[0], smollm2[1], held, max_new_tokens=24))
