"""The unlearning chapter's results table with one seed (no model)."""
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
