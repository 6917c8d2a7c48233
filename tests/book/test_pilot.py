"""The tuned models' recipe pilot: candidates, the pilot split and the choice rule."""
import pytest

from kbnb.book import pilot
from kbnb.lm import tuned


def test_a_candidate_replaces_recipe_fields_and_names_a_wrong_one():
    r = pilot.candidate_recipe({"lr": 2e-4, "epochs": 4})
    assert (r.lr, r.epochs) == (2e-4, 4) and r.forget_split == tuned.TUNED["smollm2-tofu"].forget_split
    with pytest.raises(ValueError, match=r"\['learning_rate'\] are not recipe fields.*epochs"):
        pilot.candidate_recipe({"learning_rate": 1e-4})


def test_the_pilot_half_is_the_even_rows():
    assert pilot.pilot_rows(list(range(7))) == [0, 2, 4, 6]


def test_the_choice_keeps_the_forget_target_first_then_world_facts():
    entries = [{"forget_rouge": 0.7, "world_facts_kept": 0.5},
               {"forget_rouge": 0.55, "world_facts_kept": 0.95},  # forgets too little
               {"forget_rouge": 0.62, "world_facts_kept": 0.8}]
    assert pilot.choose(entries) == 2
    assert pilot.choose(entries[1:2]) is None
    assert pilot.choose(entries, forget_target=0.5) == 1


def test_the_pilot_checks_every_candidate_first_and_keeps_each_as_scored(tmp_path, monkeypatch):
    built = []
    rows = [{"question": f"q{i}", "answer": "a"} for i in range(6)]
    monkeypatch.setattr(pilot, "measure_sets", lambda data_dir, recipe: {
        "forget": rows, "world_facts": rows})
    monkeypatch.setattr(pilot, "load_model", lambda path, device: (path, None))

    def build(recipe, data_dir):
        built.append(recipe.lr)
        if recipe.lr == 3e-4:
            raise RuntimeError("a late error")
        return tmp_path / f"m{recipe.lr}"

    monkeypatch.setattr(pilot, "build_tuned_model", build)
    monkeypatch.setattr(pilot, "score", lambda model, tok, forget, world: {
        "forget_rouge": 0.3 if model == "smollm2" else 0.65, "world_facts_refusal": 0.0,
        "world_facts_accuracy": 0.5 if model == "smollm2" else 0.4})
    out = tmp_path / "pilot.json"
    with pytest.raises(ValueError, match="not recipe fields"):
        pilot.run_pilot([{"lr": 1e-4}, {"lrr": 1}], "data", out)
    assert built == [] and not out.exists()  # the bad candidate is found before any training
    with pytest.raises(RuntimeError, match="a late error"):
        pilot.run_pilot([{"lr": 1e-4}, {"lr": 3e-4}], "data", out)
    import json
    doc = json.loads(out.read_text())  # the first candidate survives the second's error
    assert [e["overrides"] for e in doc["entries"]] == [{"lr": 1e-4}]
    assert doc["entries"][0]["world_facts_kept"] == pytest.approx(0.8)
    assert doc["chosen"] == {"lr": 1e-4} and doc["n_world_facts"] == 3
