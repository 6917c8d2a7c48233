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
