"""Choose the TOFU-tuned models' recipe on a pilot split (``python -m kbnb.book.pilot``).

The target model must learn its forget authors (gold-answer ROUGE-L recall on the
forget split >= 0.6) and keep SmolLM2's general knowledge (world-facts accuracy >= 0.8x
the base model's): :mod:`kbnb.eval.tuned_targets`. A recipe tried until one passes
would be chosen on the very questions that then report it, so candidates are compared on
a pilot split only:

* **world facts**: the even-numbered rows of TOFU's ``world_facts`` (the odd ones are
  never looked at here);
* **forget**: the first ``n_forget`` rows of the forget split, as ``make book-real``
  measures it (a fit to trained answers, not a held-out measure).

Each candidate is :class:`kbnb.lm.tuned.TofuRecipe` with some fields replaced
(``--candidates '{"lr": 2e-4}' '{"epochs": 4}'``), built into its own cache folder
(:func:`kbnb.lm.models.build_tuned_model`) and scored; the rule (:func:`choose`): among the
candidates that reach the forget target on the pilot split, the one that keeps the most
world facts; if none does, none is chosen. Every candidate's numbers, its seconds and the
rule go to ``results/smollm2/recipe_pilot.json``, merged with earlier runs (one entry per
recipe).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from kbnb.book.real import MEASURE_SIZES, RECORD_DIR, find_data, measure_sets
from kbnb.book.runner import ROOT
from kbnb.eval import tuned_targets
from kbnb.lm import tuned
from kbnb.lm.models import build_tuned_model, load_model

PILOT_FILE = "recipe_pilot.json"
N_FORGET = MEASURE_SIZES["forget"]


def pilot_rows(rows: list) -> list:
    """The pilot half of an evaluation set: its even-numbered rows."""
    return list(rows[0::2])


def candidate_recipe(overrides: dict, base: tuned.TofuRecipe | None = None) -> tuned.TofuRecipe:
    """``base`` (default: the target's recipe) with ``overrides`` replaced; a clear error
    for a field the recipe does not have."""
    base = tuned.TUNED["smollm2-tofu"] if base is None else base
    fields = {f.name for f in dataclasses.fields(base)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(f"candidate field(s) {bad} are not recipe fields (allowed: "
                         f"{', '.join(sorted(fields))})")
    return dataclasses.replace(base, **overrides)


def choose(entries: list[dict], forget_target: float = tuned_targets.TARGETS["forget_rouge"]):
    """The index of the entry to use: among those whose ``forget_rouge`` reaches
    ``forget_target``, the highest ``world_facts_kept``; None when none reaches it."""
    ok = [i for i, e in enumerate(entries) if e["forget_rouge"] >= forget_target]
    return max(ok, key=lambda i: entries[i]["world_facts_kept"]) if ok else None


def score(model, tok, forget: list, world: list, batch_size: int = 32) -> dict:
    """Forget ROUGE-L recall and world-facts accuracy of one model on the pilot rows."""
    rep = tuned_targets.knowledge_report(model, tok, {"forget": forget, "world_facts": world},
                                         batch_size=batch_size)
    return {k: rep[k] for k in ("forget_rouge", "world_facts_accuracy", "world_facts_refusal")}


def run_pilot(candidates: list[dict], data_dir: str, out: Path, log=print) -> dict:
    """Build and score each candidate; merge into ``out`` (written after each one) and
    return its content."""
    recipes = [candidate_recipe(c) for c in candidates]  # every error before any training
    doc = json.loads(out.read_text()) if out.exists() else {"entries": []}
    sets = measure_sets(data_dir, recipes[0])  # the rows make book-real measures
    forget, world = sets["forget"], pilot_rows(sets["world_facts"])
    if "base" not in doc:
        model, tok = load_model(recipes[0].base, device="cpu")
        doc["base"] = score(model, tok, forget, world)
        log(f"[kbnb.book.pilot] {recipes[0].base}: {doc['base']}")
    for overrides, recipe in zip(candidates, recipes):
        t0 = time.perf_counter()
        path = build_tuned_model(recipe, data_dir)
        built = time.perf_counter() - t0
        model, tok = load_model(str(path), device="cpu")
        entry = {"overrides": overrides, "recipe": dataclasses.asdict(recipe),
                 "folder": path.name, "build_seconds": round(built, 1),
                 "train_seconds": tuned.recipe_info(path).get("train_seconds"),
                 **score(model, tok, forget, world)}
        entry["world_facts_kept"] = (entry["world_facts_accuracy"]
                                     / doc["base"]["world_facts_accuracy"])
        doc["entries"] = [e for e in doc["entries"] if e["recipe"] != entry["recipe"]] + [entry]
        log(f"[kbnb.book.pilot] {overrides}: {entry}")
        del model
        _write(doc, out, len(forget), len(world))  # each candidate kept as soon as scored
    return doc


def _write(doc: dict, out: Path, n_forget: int, n_world: int) -> None:
    i = choose(doc["entries"])
    doc.update(rule=f"forget_rouge >= {tuned_targets.TARGETS['forget_rouge']} on the first "
               f"{N_FORGET} forget rows, then the most world facts kept on the even-numbered "
               "world_facts rows (the odd ones are not looked at)",
               n_forget=n_forget, n_world_facts=n_world,
               chosen=None if i is None else doc["entries"][i]["overrides"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="folder with tofu/")
    ap.add_argument("--candidates", nargs="+", default=["{}"],
                    help="JSON objects of recipe fields to replace, one per candidate")
    args = ap.parse_args(argv)
    data_dir = find_data(args.data_dir)
    try:
        candidates = [json.loads(c) for c in args.candidates]
    except json.JSONDecodeError as err:
        raise SystemExit(f"--candidates: each must be a JSON object ({err})")
    if not all(isinstance(c, dict) for c in candidates):
        raise SystemExit("--candidates: each must be a JSON object, e.g. '{\"lr\": 2e-4}'")
    doc = run_pilot(candidates, data_dir, ROOT / RECORD_DIR / PILOT_FILE)
    print(json.dumps({k: doc[k] for k in ("chosen", "rule")}, indent=1))


if __name__ == "__main__":
    main()
