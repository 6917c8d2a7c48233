"""The unlearning chapter's results table with one seed (no model)."""
import pytest

from kbnb.chapters.unlearning_figures import TABLE_METRICS, results_table
from kbnb.eval import stats


def test_one_seed_table_shows_not_measurable_cells_even_for_tiny_values():
    """With one seed each method's headline has no interval; a tiny value (below 1e-3,
    shown in scientific notation with its interval otherwise) must not crash the table."""
    tiny = stats.not_measurable(2e-5, 1, "one seed", "seeds", [2e-5])
    base = {k: 0.5 for k in TABLE_METRICS}
    t = results_table({"untouched model": base}, {"ga": {k: tiny for k in TABLE_METRICS}})
    assert all("not measurable, n = 1" in v for v in t.loc["GradAscent"])
    h = stats.headline(per_seed=[2e-5, 3e-5, 4e-5])
    t = results_table({"untouched model": base}, {"ga": {k: h for k in TABLE_METRICS}})
    assert t.loc["GradAscent", "forget quality"].startswith("3.00e-05 (")


def test_lunars_reference_prompts_are_chosen_by_ref_set(world, data_dir):
    """The suite's LUNAR row can use the prompts a TOFU-tuned model learned to refuse
    (``ref_set='invented'``) instead of the harmful instructions; ``auto`` keeps the
    earlier sets and the earlier run folders."""
    from kbnb.chapters import unlearning as chapter
    from kbnb.data import invented
    from kbnb.data.loaders import load_refusal
    organism = chapter.chapter_ref_rows("tinyworld", world)
    assert [r["question"] for r in organism] == [r["question"] for r in world.refusal_train]
    harmful = chapter.chapter_ref_rows("tofu", None, data_dir)
    assert harmful == load_refusal("train", data_dir)
    made_up = chapter.chapter_ref_rows("tofu", None, data_dir, "invented")
    heldout = invented.invented_questions(invented.N_TRAIN, invented.N_HELDOUT)["heldout"]
    assert [r["question"] for r in made_up] == [r["question"] for r in heldout]
    with pytest.raises(ValueError, match="ref_set"):
        chapter.chapter_ref_rows("tofu", None, data_dir, "harmless")
    with pytest.raises(ValueError, match="ref_set"):
        chapter.Params(ref_set="harmless").validate()
    assert "ref_set" not in chapter.Params().run_params()
    assert chapter.Params(ref_set="invented", tune=False).run_params()["ref_set"] == "invented"
